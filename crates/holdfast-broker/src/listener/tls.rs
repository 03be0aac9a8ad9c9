//! TLS for `tls` and `wss` listeners: certificates from PEM files, optional client-certificate
//! verification against a CA, and reload (on SIGHUP) that affects new connections only.

use std::path::Path;
use std::sync::Arc;

use parking_lot::RwLock;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::{RootCertStore, ServerConfig};
use tracing::{info, warn};

use crate::config::ListenerConfig;

/// The TLS configuration of one listener, swapped whole on reload.
#[derive(Debug)]
pub struct TlsCell {
    listener: ListenerConfig,
    current: RwLock<Arc<ServerConfig>>,
}

impl TlsCell {
    pub fn load(listener: &ListenerConfig) -> Result<TlsCell, String> {
        Ok(TlsCell {
            current: RwLock::new(server_config(listener)?),
            listener: listener.clone(),
        })
    }

    pub fn acceptor(&self) -> tokio_rustls::TlsAcceptor {
        tokio_rustls::TlsAcceptor::from(self.current.read().clone())
    }

    /// Re-reads the certificate, key and CA; on error the old configuration stays.
    pub fn reload(&self) {
        match server_config(&self.listener) {
            Ok(cfg) => {
                *self.current.write() = cfg;
                info!(addr = %self.listener.bind, "TLS certificates reloaded");
            }
            Err(e) => {
                warn!(addr = %self.listener.bind, error = %e, "TLS certificates not reloaded")
            }
        }
    }
}

fn read_certs(path: &Path, what: &str) -> Result<Vec<CertificateDer<'static>>, String> {
    let iter = CertificateDer::pem_file_iter(path)
        .map_err(|e| format!("{what} {}: {e}", path.display()))?;
    let certs = iter
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("{what} {}: {e}", path.display()))?;
    if certs.is_empty() {
        return Err(format!(
            "{what} {}: no PEM certificate in it",
            path.display()
        ));
    }
    Ok(certs)
}

/// Builds a rustls server configuration (ring provider) from the listener's PEM files.
pub fn server_config(l: &ListenerConfig) -> Result<Arc<ServerConfig>, String> {
    let (Some(cert), Some(key)) = (&l.cert, &l.key) else {
        return Err("a TLS listener needs `cert` and `key`".into());
    };
    let certs = read_certs(cert, "cert")?;
    let key =
        PrivateKeyDer::from_pem_file(key).map_err(|e| format!("key {}: {e}", key.display()))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?;
    let builder = match &l.client_ca {
        Some(ca) => {
            let mut roots = RootCertStore::empty();
            for c in read_certs(ca, "client_ca")? {
                roots
                    .add(c)
                    .map_err(|e| format!("client_ca {}: {e}", ca.display()))?;
            }
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                .build()
                .map_err(|e| format!("client_ca {}: {e}", ca.display()))?;
            builder.with_client_cert_verifier(verifier)
        }
        None => builder.with_no_client_auth(),
    };
    let cfg = builder
        .with_single_cert(certs, key)
        .map_err(|e| format!("cert/key {}: {e}", cert.display()))?;
    Ok(Arc::new(cfg))
}

/// The identity a verified client certificate gives: its subject Common Name, else its first DNS
/// subject alternative name.
pub fn cert_identity(certs: Option<&[CertificateDer<'_>]>) -> Option<Arc<str>> {
    let der = certs?.first()?;
    let (_, cert) = x509_parser::parse_x509_certificate(der.as_ref()).ok()?;
    if let Some(cn) = cert
        .subject()
        .iter_common_name()
        .next()
        .and_then(|cn| cn.as_str().ok())
    {
        return Some(Arc::from(cn));
    }
    let san = cert.subject_alternative_name().ok()??;
    san.value.general_names.iter().find_map(|n| match n {
        x509_parser::extensions::GeneralName::DNSName(d) => Some(Arc::from(*d)),
        _ => None,
    })
}
