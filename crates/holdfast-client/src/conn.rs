//! One connection over a [`Transport`] stream, framed with the holdfast-proto codec.

use std::time::Duration;

use bytes::BytesMut;
use holdfast_proto::{
    decode_packet, encode_packet, Disconnect, Packet, ProtocolVersion, ReasonCode, MAX_PACKET_SIZE,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt, ReadHalf, WriteHalf};
use tokio::time::Instant;

use crate::transport::{Io, Transport};
use crate::ClientError;

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
    /// Why the server's bytes could not be decoded: the reason code of our DISCONNECT.
    pub violation: Option<ReasonCode>,
}

impl Conn {
    pub async fn open(
        transport: &Transport,
        version: ProtocolVersion,
    ) -> Result<Conn, ClientError> {
        let stream = transport.open().await?;
        let (reader, writer) = tokio::io::split(stream);
        Ok(Conn {
            reader,
            writer,
            needs_flush: false,
            violation: None,
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
            if let Some(p) = self.step(true).await? {
                return Ok(p);
            }
        }
    }

    /// Bytes are waiting to be written or flushed.
    pub fn writing(&self) -> bool {
        !self.wbuf.is_empty() || self.needs_flush
    }

    /// Reads (if `reading`) and writes at once until a packet is complete (`Some`) or some bytes
    /// went out (`None`). Cancel-safe: bytes read stay in the buffer, bytes not written stay
    /// queued. Not reading and nothing to write: pending forever.
    pub async fn step(&mut self, reading: bool) -> Result<Option<Packet>, ClientError> {
        if reading {
            if let Some(p) = self.decode()? {
                return Ok(Some(p));
            }
        }
        let writing = self.writing();
        if !reading && !writing {
            return std::future::pending().await;
        }
        let Conn {
            reader,
            writer,
            rbuf,
            wbuf,
            needs_flush,
            ..
        } = self;
        let wrote = tokio::select! {
            n = reader.read_buf(rbuf), if reading => {
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
        decode_packet(&mut self.rbuf, self.version, MAX_PACKET_SIZE).map_err(|e| {
            self.violation = Some(e.reason_code());
            ClientError::Protocol(e.to_string())
        })
    }

    pub async fn shutdown(&mut self) {
        let _ = self.writer.shutdown().await;
    }

    /// Ends the connection after a protocol violation by the server: MQTT 5 tells it why with
    /// DISCONNECT and `reason` [MQTT-4.13.1-1]; a peer that does not read gets a second at most.
    pub async fn close_with(&mut self, reason: ReasonCode) {
        if self.version.is_v5() {
            let d = Disconnect {
                reason,
                ..Disconnect::default()
            };
            let _ = self.send(&Packet::Disconnect(d));
            let _ = tokio::time::timeout(Duration::from_secs(1), self.flush()).await;
        }
        let _ = tokio::time::timeout(Duration::from_secs(1), self.shutdown()).await;
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
