//! The byte stream under MQTT: TCP, TLS over TCP (feature `tls`), WebSocket over either (feature
//! `ws`). Built once per client, so bad TLS options fail at start rather than on every reconnect.

use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;

use crate::{ClientError, ClientOptions};

pub(crate) trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

#[derive(Clone)]
pub(crate) struct Transport {
    host: String,
    port: u16,
    #[cfg(feature = "tls")]
    tls: Option<tls::Connector>,
    /// WebSocket request path.
    #[cfg_attr(not(feature = "ws"), allow(dead_code))]
    ws_path: Option<String>,
}

impl Transport {
    pub fn new(o: &ClientOptions) -> Result<Transport, ClientError> {
        #[cfg(not(feature = "tls"))]
        if o.tls.is_some() {
            return Err(ClientError::Invalid(
                "TLS needs holdfast-client built with the `tls` feature".into(),
            ));
        }
        if let Some(path) = &o.websocket {
            if !cfg!(feature = "ws") {
                return Err(ClientError::Invalid(
                    "WebSocket needs holdfast-client built with the `ws` feature".into(),
                ));
            }
            if !path.starts_with('/') || path.chars().any(|c| c.is_whitespace()) {
                return Err(ClientError::Invalid(format!(
                    "WebSocket path {path:?}: must start with '/' and contain no spaces"
                )));
            }
        }
        Ok(Transport {
            host: o.host.clone(),
            port: o.port,
            #[cfg(feature = "tls")]
            tls: match &o.tls {
                Some(t) => Some(tls::Connector::new(&o.host, t)?),
                None => None,
            },
            ws_path: o.websocket.clone(),
        })
    }

    fn is_tls(&self) -> bool {
        #[cfg(feature = "tls")]
        return self.tls.is_some();
        #[cfg(not(feature = "tls"))]
        false
    }

    /// A new connection, ready for CONNECT.
    pub async fn open(&self) -> Result<Box<dyn Io>, ClientError> {
        let tcp = TcpStream::connect((self.host.as_str(), self.port)).await?;
        tcp.set_nodelay(true)?;
        #[cfg(feature = "tls")]
        let stream: Box<dyn Io> = match &self.tls {
            Some(c) => c.connect(tcp).await?,
            None => Box::new(tcp),
        };
        #[cfg(not(feature = "tls"))]
        let stream: Box<dyn Io> = Box::new(tcp);
        #[cfg(feature = "ws")]
        if let Some(path) = &self.ws_path {
            return ws::connect(stream, &self.url(path)).await;
        }
        Ok(stream)
    }

    /// `ws://host:port/path` (`wss` with TLS); an IPv6 host in brackets.
    #[cfg_attr(not(feature = "ws"), allow(dead_code))]
    fn url(&self, path: &str) -> String {
        let scheme = if self.is_tls() { "wss" } else { "ws" };
        let host = if self.host.contains(':') && !self.host.starts_with('[') {
            format!("[{}]", self.host)
        } else {
            self.host.clone()
        };
        format!("{scheme}://{host}:{}{path}", self.port)
    }
}

#[cfg(feature = "tls")]
mod tls {
    use std::sync::Arc;

    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};

    use super::Io;
    use crate::{ClientError, TlsOptions};

    #[derive(Clone)]
    pub(crate) struct Connector {
        connector: tokio_rustls::TlsConnector,
        name: ServerName<'static>,
    }

    impl Connector {
        pub fn new(host: &str, t: &TlsOptions) -> Result<Connector, ClientError> {
            let config = client_config(t)?;
            let name = t.server_name.clone().unwrap_or_else(|| host.to_string());
            let name = ServerName::try_from(name.clone())
                .map_err(|e| ClientError::Invalid(format!("TLS server name {name:?}: {e}")))?;
            Ok(Connector {
                connector: tokio_rustls::TlsConnector::from(Arc::new(config)),
                name,
            })
        }

        pub async fn connect(
            &self,
            tcp: tokio::net::TcpStream,
        ) -> Result<Box<dyn Io>, ClientError> {
            let stream = self.connector.connect(self.name.clone(), tcp).await?;
            Ok(Box::new(stream))
        }
    }

    fn bad(what: &str, e: &dyn std::fmt::Display) -> ClientError {
        ClientError::Invalid(format!("{what}: {e}"))
    }

    /// The roots: the CA file's certificates, or else the system's.
    fn roots(t: &TlsOptions) -> Result<rustls::RootCertStore, ClientError> {
        let mut roots = rustls::RootCertStore::empty();
        match &t.ca_file {
            Some(ca) => {
                let what = format!("CA file {}", ca.display());
                for c in CertificateDer::pem_file_iter(ca).map_err(|e| bad(&what, &e))? {
                    let c = c.map_err(|e| bad(&what, &e))?;
                    roots.add(c).map_err(|e| bad(&what, &e))?;
                }
                if roots.is_empty() {
                    return Err(bad(&what, &"no certificate in it"));
                }
            }
            None => {
                let certs = rustls_native_certs::load_native_certs()
                    .map_err(|e| bad("system root certificates", &e))?;
                // Some system stores hold certificates rustls cannot parse: skip those.
                let (added, _ignored) = roots.add_parsable_certificates(certs);
                if added == 0 {
                    return Err(ClientError::Invalid(
                        "no system root certificates found: give a CA file (or set SSL_CERT_FILE)"
                            .into(),
                    ));
                }
            }
        }
        Ok(roots)
    }

    pub(crate) fn client_config(t: &TlsOptions) -> Result<rustls::ClientConfig, ClientError> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| bad("TLS", &e))?
            .with_root_certificates(roots(t)?);
        match (&t.cert_file, &t.key_file) {
            (Some(cert), Some(key)) => {
                let what = format!("certificate file {}", cert.display());
                let certs = CertificateDer::pem_file_iter(cert)
                    .map_err(|e| bad(&what, &e))?
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(|e| bad(&what, &e))?;
                let key = PrivateKeyDer::from_pem_file(key)
                    .map_err(|e| bad(&format!("key file {}", key.display()), &e))?;
                builder
                    .with_client_auth_cert(certs, key)
                    .map_err(|e| bad("client certificate", &e))
            }
            (None, None) => Ok(builder.with_no_client_auth()),
            _ => Err(ClientError::Invalid(
                "give both a client certificate and its key".into(),
            )),
        }
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        #[test] // No CA file: the system's roots (this test needs some; Debian has ca-certificates).
        fn system_roots_without_a_ca_file() {
            if std::env::var_os("SSL_CERT_FILE").is_some() {
                return; // the override is exercised by the `holdfast pub` test instead
            }
            match roots(&TlsOptions::default()) {
                Ok(r) => assert!(!r.is_empty()),
                // A system without roots must say so clearly, never panic or connect unverified.
                Err(ClientError::Invalid(why)) => assert!(why.contains("root"), "{why}"),
                Err(e) => panic!("{e}"),
            }
            assert!(client_config(&TlsOptions::default()).is_ok() || cfg!(not(unix)));
        }

        #[test] // A missing or empty CA file is an error naming the file.
        fn bad_ca_file_is_a_clear_error() {
            let dir = tempfile::tempdir().unwrap();
            let missing = dir.path().join("nope.pem");
            let t = TlsOptions {
                ca_file: Some(missing.clone()),
                ..TlsOptions::default()
            };
            let e = client_config(&t).unwrap_err().to_string();
            assert!(e.contains("nope.pem"), "{e}");
            let empty = dir.path().join("empty.pem");
            std::fs::write(&empty, "not a certificate\n").unwrap();
            let t = TlsOptions {
                ca_file: Some(empty),
                ..TlsOptions::default()
            };
            let e = client_config(&t).unwrap_err().to_string();
            assert!(e.contains("no certificate"), "{e}");
        }

        #[test]
        fn certificate_without_key_is_refused() {
            let t = TlsOptions {
                cert_file: Some("c.pem".into()),
                ..TlsOptions::default()
            };
            // Roots may or may not load here; either way no panic and an error.
            assert!(client_config(&t).is_err());
        }
    }
}

#[cfg(feature = "ws")]
mod ws {
    //! MQTT over WebSocket [MQTT-6.0.0]: binary frames, subprotocol `mqtt`. A packet may span
    //! frames and a frame may hold several packets: the adapter is a plain byte stream.

    use std::io;
    use std::pin::Pin;
    use std::task::{ready, Context, Poll};

    use futures_util::{Sink, Stream};
    use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    use tokio_tungstenite::tungstenite::http::HeaderValue;
    use tokio_tungstenite::tungstenite::Message;
    use tokio_tungstenite::WebSocketStream;

    use super::Io;
    use crate::ClientError;

    const MAX_FRAME: usize = 64 * 1024;

    pub(super) async fn connect(
        stream: Box<dyn Io>,
        url: &str,
    ) -> Result<Box<dyn Io>, ClientError> {
        let mut req = url
            .into_client_request()
            .map_err(|e| ClientError::Invalid(format!("WebSocket URL {url}: {e}")))?;
        // [MQTT-6.0.0-3] the client offers the "mqtt" subprotocol; tungstenite refuses a
        // response that selects another one or none.
        req.headers_mut()
            .insert("Sec-WebSocket-Protocol", HeaderValue::from_static("mqtt"));
        let (ws, _) = tokio_tungstenite::client_async(req, stream)
            .await
            .map_err(|e| ClientError::Io(format!("WebSocket handshake with {url}: {e}")))?;
        Ok(Box::new(WsIo {
            ws,
            frame: Vec::new(),
            at: 0,
        }))
    }

    struct WsIo {
        ws: WebSocketStream<Box<dyn Io>>,
        /// The binary frame being read, from `at`.
        frame: Vec<u8>,
        at: usize,
    }

    fn other(e: impl std::fmt::Display) -> io::Error {
        io::Error::other(format!("WebSocket: {e}"))
    }

    impl AsyncRead for WsIo {
        fn poll_read(
            mut self: Pin<&mut Self>,
            cx: &mut Context<'_>,
            buf: &mut ReadBuf<'_>,
        ) -> Poll<io::Result<()>> {
            loop {
                let this = &mut *self;
                if this.at < this.frame.len() {
                    let n = buf.remaining().min(this.frame.len() - this.at);
                    buf.put_slice(&this.frame[this.at..this.at + n]);
                    this.at += n;
                    return Poll::Ready(Ok(()));
                }
                match ready!(Pin::new(&mut this.ws).poll_next(cx)) {
                    Some(Ok(Message::Binary(b))) => {
                        this.frame = b;
                        this.at = 0;
                    }
                    // tungstenite answers pings itself.
                    Some(Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_))) => {}
                    // [MQTT-6.0.0-1] MQTT travels in binary frames only.
                    Some(Ok(Message::Text(_))) => {
                        return Poll::Ready(Err(io::Error::new(
                            io::ErrorKind::InvalidData,
                            "WebSocket text frame: MQTT needs binary frames",
                        )))
                    }
                    // End of stream: the caller sees EOF.
                    Some(Ok(Message::Close(_))) | None => return Poll::Ready(Ok(())),
                    Some(Err(e)) => return Poll::Ready(Err(other(e))),
                }
            }
        }
    }

    impl AsyncWrite for WsIo {
        fn poll_write(
            mut self: Pin<&mut Self>,
            cx: &mut Context<'_>,
            buf: &[u8],
        ) -> Poll<io::Result<usize>> {
            let ws = &mut self.ws;
            ready!(Pin::new(&mut *ws).poll_ready(cx)).map_err(other)?;
            // Bounded frames: servers limit their size (Holdfast and tungstenite: 16 MiB).
            let n = buf.len().min(MAX_FRAME);
            Pin::new(&mut *ws)
                .start_send(Message::Binary(buf[..n].to_vec()))
                .map_err(other)?;
            Poll::Ready(Ok(n))
        }

        fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
            Pin::new(&mut self.ws).poll_flush(cx).map_err(other)
        }

        fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
            Pin::new(&mut self.ws).poll_close(cx).map_err(other)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test] // WebSocket options are checked when the client starts, not at every reconnect.
    fn websocket_options_are_checked_up_front() {
        let o = ClientOptions::new("::1", 8080, "c").with_websocket("/mqtt");
        match Transport::new(&o) {
            #[cfg(feature = "ws")]
            Ok(t) => assert_eq!(t.url("/mqtt"), "ws://[::1]:8080/mqtt"),
            #[cfg(not(feature = "ws"))]
            Err(ClientError::Invalid(why)) => assert!(why.contains("`ws` feature"), "{why}"),
            other => panic!("{:?}", other.err()),
        }
        for bad in ["mqtt", "/a b", ""] {
            let o = ClientOptions::new("h", 1, "c").with_websocket(bad);
            assert!(
                matches!(Transport::new(&o), Err(ClientError::Invalid(_))),
                "{bad:?}"
            );
        }
    }
}
