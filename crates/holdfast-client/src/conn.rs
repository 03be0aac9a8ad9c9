//! One TCP connection, framed with the holdfast-proto codec.

use bytes::BytesMut;
use holdfast_proto::{decode_packet, encode_packet, Packet, ProtocolVersion, MAX_PACKET_SIZE};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::Instant;

use crate::ClientError;

pub(crate) struct Conn {
    stream: TcpStream,
    version: ProtocolVersion,
    rbuf: BytesMut,
    wbuf: BytesMut,
    /// When something was last written: keep alive counts from there.
    pub last_write: Instant,
}

impl Conn {
    pub async fn open(host: &str, port: u16, version: ProtocolVersion) -> Result<Conn, ClientError> {
        let stream = TcpStream::connect((host, port)).await?;
        stream.set_nodelay(true)?;
        Ok(Conn {
            stream,
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

    pub async fn flush(&mut self) -> Result<(), ClientError> {
        if self.wbuf.is_empty() {
            return Ok(());
        }
        self.stream.write_all(&self.wbuf).await?;
        self.wbuf.clear();
        self.last_write = Instant::now();
        Ok(())
    }

    /// The next packet. Cancel-safe: bytes read stay in the buffer.
    pub async fn read(&mut self) -> Result<Packet, ClientError> {
        loop {
            match decode_packet(&mut self.rbuf, self.version, MAX_PACKET_SIZE) {
                Ok(Some(p)) => return Ok(p),
                Ok(None) => {}
                Err(e) => return Err(ClientError::Protocol(e.to_string())),
            }
            if self.stream.read_buf(&mut self.rbuf).await? == 0 {
                return Err(ClientError::Io("connection closed by the server".into()));
            }
        }
    }

    pub async fn shutdown(&mut self) {
        let _ = self.stream.shutdown().await;
    }
}
