//! One connection (TCP, or TLS with the `tls` feature), framed with the holdfast-proto codec.

use bytes::BytesMut;
use holdfast_proto::{decode_packet, encode_packet, Packet, ProtocolVersion, MAX_PACKET_SIZE};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadHalf, WriteHalf};
use tokio::net::TcpStream;
use tokio::time::Instant;

use crate::{ClientError, TlsOptions};

trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

/// Reading and writing go on at the same time ([`Conn::step`]), so a peer that writes while it
/// waits for us to read never deadlocks with us.
pub(crate) struct Conn {
    reader: ReadHalf<Box<dyn Io>>,
    writer: WriteHalf<Box<dyn Io>>,
    version: ProtocolVersion,
    rbuf: BytesMut,
    wbuf: BytesMut,
    /// Bytes were written since the last flush (TLS buffers records).
    needs_flush: bool,
    /// When something was last written: keep alive counts from there.
    pub last_write: Instant,
}

impl Conn {
    pub async fn open(
        host: &str,
        port: u16,
        tls: Option<&TlsOptions>,
        version: ProtocolVersion,
    ) -> Result<Conn, ClientError> {
        let tcp = TcpStream::connect((host, port)).await?;
        tcp.set_nodelay(true)?;
        let stream: Box<dyn Io> = match tls {
            None => Box::new(tcp),
            Some(t) => tls_stream(host, t, tcp).await?,
        };
        let (reader, writer) = tokio::io::split(stream);
        Ok(Conn {
            reader,
            writer,
            needs_flush: false,
            version,
            rbuf: BytesMut::with_capacity(8192),
            wbuf: BytesMut::with_capacity(8192),
            last_write: Instant::now(),
        })
    }

    /// Encodes `p` into the write buffer; [`Conn::flush`] writes it.
    pub fn send(&mut self, p: &Packet) -> Result<(), ClientError> {
        encode_packet(p, self.version, &mut self.wbuf)
            .map_err(|e| ClientError::Invalid(format!("cannot encode {}: {e}", p.name())))
    }

    /// Writes everything buffered, waiting as long as it takes (connect, disconnect).
    pub async fn flush(&mut self) -> Result<(), ClientError> {
        self.writer.write_all(&self.wbuf).await?;
        self.writer.flush().await?;
        self.wbuf.clear();
        self.needs_flush = false;
        self.last_write = Instant::now();
        Ok(())
    }

    /// The next packet, waiting for it.
    pub async fn read(&mut self) -> Result<Packet, ClientError> {
        loop {
            if let Some(p) = self.step().await? {
                return Ok(p);
            }
        }
    }

    /// Reads and writes at once until a packet is complete (`Some`) or some bytes went out
    /// (`None`). Cancel-safe: bytes read stay in the buffer, bytes not written stay queued.
    pub async fn step(&mut self) -> Result<Option<Packet>, ClientError> {
        if let Some(p) = self.decode()? {
            return Ok(Some(p));
        }
        let writing = !self.wbuf.is_empty() || self.needs_flush;
        let Conn {
            reader,
            writer,
            rbuf,
            wbuf,
            needs_flush,
            ..
        } = self;
        let wrote = tokio::select! {
            n = reader.read_buf(rbuf) => {
                if n? == 0 {
                    return Err(ClientError::Io("connection closed by the server".into()));
                }
                false
            }
            w = write_step(writer, wbuf, needs_flush), if writing => {
                w?;
                true
            }
        };
        if wrote {
            self.last_write = Instant::now();
            return Ok(None);
        }
        self.decode()
    }

    fn decode(&mut self) -> Result<Option<Packet>, ClientError> {
        decode_packet(&mut self.rbuf, self.version, MAX_PACKET_SIZE)
            .map_err(|e| ClientError::Protocol(e.to_string()))
    }

    pub async fn shutdown(&mut self) {
        let _ = self.writer.shutdown().await;
    }
}

async fn write_step(
    w: &mut WriteHalf<Box<dyn Io>>,
    buf: &mut BytesMut,
    needs_flush: &mut bool,
) -> Result<(), ClientError> {
    if buf.is_empty() {
        w.flush().await?;
        *needs_flush = false;
    } else {
        if w.write_buf(buf).await? == 0 {
            return Err(ClientError::Io("connection closed while writing".into()));
        }
        *needs_flush = true;
    }
    Ok(())
}

#[cfg(not(feature = "tls"))]
async fn tls_stream(_: &str, _: &TlsOptions, _: TcpStream) -> Result<Box<dyn Io>, ClientError> {
    Err(ClientError::Invalid(
        "TLS needs holdfast-client built with the `tls` feature".into(),
    ))
}

#[cfg(feature = "tls")]
async fn tls_stream(
    host: &str,
    t: &TlsOptions,
    tcp: TcpStream,
) -> Result<Box<dyn Io>, ClientError> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
    use std::sync::Arc;

    let bad = |what: &str, e: &dyn std::fmt::Display| ClientError::Invalid(format!("{what}: {e}"));
    let ca = t
        .ca_file
        .as_ref()
        .ok_or_else(|| ClientError::Invalid("TLS needs a CA file".into()))?;
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_file_iter(ca).map_err(|e| bad("CA file", &e))? {
        let c = c.map_err(|e| bad("CA file", &e))?;
        roots.add(c).map_err(|e| bad("CA certificate", &e))?;
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| bad("TLS", &e))?
        .with_root_certificates(roots);
    let config = match (&t.cert_file, &t.key_file) {
        (Some(cert), Some(key)) => {
            let certs = CertificateDer::pem_file_iter(cert)
                .map_err(|e| bad("certificate file", &e))?
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| bad("certificate file", &e))?;
            let key = PrivateKeyDer::from_pem_file(key).map_err(|e| bad("key file", &e))?;
            builder
                .with_client_auth_cert(certs, key)
                .map_err(|e| bad("client certificate", &e))?
        }
        (None, None) => builder.with_no_client_auth(),
        _ => {
            return Err(ClientError::Invalid(
                "give both a certificate and a key".into(),
            ))
        }
    };
    let name = t.server_name.clone().unwrap_or_else(|| host.to_string());
    let name = ServerName::try_from(name).map_err(|e| bad("server name", &e))?;
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let stream = connector.connect(name, tcp).await?;
    Ok(Box::new(stream))
}
