//! One MQTT connection over TCP: batched non-blocking reads and writes, a zero-allocation parser for
//! the packets of the hot path (PUBLISH and its acknowledgements), the project's codec for the rest.

use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use bytes::{Buf, BytesMut};
use holdfast_proto::{
    decode_packet, encode_packet, read_fixed_header, ConnAck, Connect, Packet, Properties,
    ProtocolVersion, Publish, QoS, MAX_PACKET_SIZE,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt, Interest};
use tokio::net::TcpStream;
use tokio::time::{sleep_until, timeout, Instant};

use crate::payload::Stamp;
use crate::BenchError;

/// Read buffer growth step; one read takes up to this much at once.
const READ_CHUNK: usize = 64 * 1024;
/// Stop reading after this much in one go, to process it before the buffer grows further.
const READ_BATCH: usize = 256 * 1024;
/// How long a setup step (CONNACK, SUBACK) may take.
pub const SETUP_TIMEOUT: Duration = Duration::from_secs(10);
/// Keep Alive asked for in CONNECT (some brokers refuse 0).
pub const KEEP_ALIVE_S: u16 = 60;
/// Send PINGREQ after this long without writing anything.
pub const PING_AFTER: Duration = Duration::from_secs(KEEP_ALIVE_S as u64 / 2);
/// PINGREQ on the wire.
pub const PINGREQ: [u8; 2] = [0xC0, 0x00];

/// A packet of the hot path, parsed in place; `Other` needs the full codec.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Frame<'a> {
    Publish {
        qos: u8,
        packet_id: u16,
        payload: &'a [u8],
    },
    PubAck {
        packet_id: u16,
        reason: u8,
    },
    PubRec {
        packet_id: u16,
        reason: u8,
    },
    PubRel {
        packet_id: u16,
    },
    PubComp {
        packet_id: u16,
        reason: u8,
    },
    Other,
}

fn malformed(why: &str) -> BenchError {
    BenchError::Protocol(format!("malformed packet from the broker: {why}"))
}

/// Parses the packet at the front of `buf`: `Ok(None)` until it is complete, else the frame and the
/// number of bytes it takes. Framing and the first byte are checked by the codec; PUBLISH bodies are
/// checked for their lengths, QoS and packet identifier without copying anything.
#[inline]
pub fn parse_frame(buf: &[u8], v5: bool) -> Result<Option<(Frame<'_>, usize)>, BenchError> {
    let header = match read_fixed_header(buf, MAX_PACKET_SIZE) {
        Ok(Some(h)) => h,
        Ok(None) => return Ok(None),
        Err(e) => return Err(BenchError::Protocol(format!("from the broker: {e}"))),
    };
    let total = header.packet_len();
    if buf.len() < total {
        return Ok(None);
    }
    let body = &buf[header.header_len..total];
    let id_at = |i: usize| -> Result<u16, BenchError> {
        match body.get(i..i + 2) {
            Some(&[0, 0]) => Err(malformed("packet identifier 0")),
            Some(b) => Ok(u16::from_be_bytes([b[0], b[1]])),
            None => Err(malformed("packet too short")),
        }
    };
    let reason = || body.get(2).copied().unwrap_or(0);
    let frame = match header.packet_type() {
        3 => {
            let qos = (header.flags() >> 1) & 0x03;
            let topic_len = usize::from(u16::from_be_bytes(
                body.get(..2)
                    .ok_or(malformed("PUBLISH without topic"))?
                    .try_into()
                    .expect("two bytes"),
            ));
            let mut at = 2 + topic_len;
            let packet_id = if qos > 0 {
                let id = id_at(at)?;
                at += 2;
                id
            } else {
                0
            };
            if v5 {
                let (props_len, n) =
                    varint(body.get(at..).unwrap_or(&[])).ok_or(malformed("PUBLISH properties"))?;
                at += n + props_len;
            }
            let payload = body.get(at..).ok_or(malformed("PUBLISH too short"))?;
            Frame::Publish {
                qos,
                packet_id,
                payload,
            }
        }
        4 => Frame::PubAck {
            packet_id: id_at(0)?,
            reason: reason(),
        },
        5 => Frame::PubRec {
            packet_id: id_at(0)?,
            reason: reason(),
        },
        6 => Frame::PubRel {
            packet_id: id_at(0)?,
        },
        7 => Frame::PubComp {
            packet_id: id_at(0)?,
            reason: reason(),
        },
        _ => Frame::Other,
    };
    Ok(Some((frame, total)))
}

/// A variable byte integer and its length in bytes.
fn varint(buf: &[u8]) -> Option<(usize, usize)> {
    let mut value = 0usize;
    for (i, &b) in buf.iter().take(4).enumerate() {
        value |= usize::from(b & 0x7F) << (7 * i);
        if b & 0x80 == 0 {
            return Some((value, i + 1));
        }
    }
    None
}

/// Decodes a packet `parse_frame` left to the codec (`Frame::Other`), from its exact bytes.
pub fn decode_other(bytes: &[u8], version: ProtocolVersion) -> Result<Packet, BenchError> {
    let mut buf = BytesMut::from(bytes);
    match decode_packet(&mut buf, version, MAX_PACKET_SIZE) {
        Ok(Some(p)) => Ok(p),
        Ok(None) => Err(malformed("incomplete packet")),
        Err(e) => Err(BenchError::Protocol(format!("from the broker: {e}"))),
    }
}

/// The four-byte acknowledgements, written without the codec on the hot path (for MQTT 5 the
/// reason code Success and empty properties may be left out, MQTT 5.0 section 3.4.2.1).
#[inline]
pub fn put_ack(out: &mut BytesMut, packet_type_flags: u8, packet_id: u16) {
    let id = packet_id.to_be_bytes();
    out.extend_from_slice(&[packet_type_flags, 2, id[0], id[1]]);
}
pub const PUBACK: u8 = 0x40;
pub const PUBREC: u8 = 0x50;
pub const PUBREL: u8 = 0x62;
pub const PUBCOMP: u8 = 0x70;

/// A PUBLISH encoded once by the codec; each message copies it and patches the packet identifier
/// and the payload stamp in place.
#[derive(Debug, Clone)]
pub struct PublishTemplate {
    bytes: Vec<u8>,
    id_at: Option<usize>,
    payload_at: usize,
}

impl PublishTemplate {
    pub fn new(
        topic: &str,
        qos: QoS,
        size: usize,
        version: ProtocolVersion,
    ) -> Result<PublishTemplate, BenchError> {
        let packet = Packet::Publish(Publish {
            dup: false,
            qos,
            retain: false,
            topic: topic.into(),
            packet_id: (qos != QoS::AtMostOnce).then_some(1),
            payload: vec![0u8; size].into(),
            properties: Properties::default(),
        });
        let mut buf = BytesMut::new();
        encode_packet(&packet, version, &mut buf)
            .map_err(|e| BenchError::Usage(format!("cannot encode PUBLISH: {e}")))?;
        let header = read_fixed_header(&buf, MAX_PACKET_SIZE)
            .ok()
            .flatten()
            .expect("the codec's own output");
        let id_at = (qos != QoS::AtMostOnce).then_some(header.header_len + 2 + topic.len());
        Ok(PublishTemplate {
            payload_at: buf.len() - size,
            bytes: buf.to_vec(),
            id_at,
        })
    }

    /// Bytes per message on the wire.
    pub fn len(&self) -> usize {
        self.bytes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }

    #[inline]
    pub fn write(&self, out: &mut BytesMut, packet_id: u16, stamp: &Stamp) {
        let start = out.len();
        out.extend_from_slice(&self.bytes);
        let msg = &mut out[start..];
        if let Some(at) = self.id_at {
            msg[at..at + 2].copy_from_slice(&packet_id.to_be_bytes());
        }
        stamp.write(&mut msg[self.payload_at..]);
    }
}

/// One connection to the broker with its read and write buffers.
pub struct Conn {
    stream: TcpStream,
    pub rbuf: BytesMut,
    pub wbuf: BytesMut,
    pub version: ProtocolVersion,
    last_write: Instant,
}

impl Conn {
    /// Opens a TCP connection, sends `connect` and waits for a successful CONNACK.
    pub async fn open(addr: SocketAddr, connect: &Connect) -> Result<(Conn, ConnAck), BenchError> {
        let stream = timeout(SETUP_TIMEOUT, TcpStream::connect(addr))
            .await
            .map_err(|_| BenchError::Connect(format!("{addr}: TCP connect timed out")))?
            .map_err(|e| BenchError::Connect(format!("{addr}: {e}")))?;
        stream.set_nodelay(true).ok();
        let mut conn = Conn {
            stream,
            rbuf: BytesMut::with_capacity(4096),
            wbuf: BytesMut::with_capacity(4096),
            version: connect.protocol,
            last_write: Instant::now(),
        };
        conn.send(&Packet::Connect(Box::new(connect.clone())))
            .await?;
        match conn.recv().await? {
            Packet::ConnAck(ack) if !ack.reason.is_error() => Ok((conn, ack)),
            Packet::ConnAck(ack) => Err(BenchError::Connect(format!(
                "{addr}: CONNACK refused the connection with reason {}",
                ack.reason
            ))),
            other => Err(BenchError::Protocol(format!(
                "expected CONNACK, got {}",
                other.name()
            ))),
        }
    }

    /// The socket itself, for holding idle connections cheaply.
    pub fn into_stream(self) -> TcpStream {
        self.stream
    }

    /// Appends `packet` to the write buffer.
    pub fn queue(&mut self, packet: &Packet) -> Result<(), BenchError> {
        encode_packet(packet, self.version, &mut self.wbuf)
            .map_err(|e| BenchError::Usage(format!("cannot encode {}: {e}", packet.name())))
    }

    /// Queues `packet` and writes everything queued.
    pub async fn send(&mut self, packet: &Packet) -> Result<(), BenchError> {
        self.queue(packet)?;
        self.flush().await
    }

    /// Writes everything queued, waiting as needed.
    pub async fn flush(&mut self) -> Result<(), BenchError> {
        self.stream.write_all(&self.wbuf).await.map_err(io_err)?;
        self.wbuf.clear();
        self.last_write = Instant::now();
        Ok(())
    }

    /// Reads until a whole packet is there and decodes it with the codec (setup steps only).
    pub async fn recv(&mut self) -> Result<Packet, BenchError> {
        let deadline = Instant::now() + SETUP_TIMEOUT;
        loop {
            match decode_packet(&mut self.rbuf, self.version, MAX_PACKET_SIZE) {
                Ok(Some(p)) => return Ok(p),
                Ok(None) => {}
                Err(e) => return Err(BenchError::Protocol(format!("from the broker: {e}"))),
            }
            if !self.pump(Some(deadline)).await? && Instant::now() >= deadline {
                return Err(BenchError::Protocol("the broker did not answer".into()));
            }
        }
    }

    /// Writes what the socket takes now, without waiting.
    pub fn try_flush(&mut self) -> Result<(), BenchError> {
        while !self.wbuf.is_empty() {
            match self.stream.try_write(&self.wbuf) {
                Ok(n) => {
                    self.wbuf.advance(n);
                    self.last_write = Instant::now();
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) => return Err(io_err(e)),
            }
        }
        Ok(())
    }

    /// Reads what has arrived, without waiting; true if anything was read.
    pub fn try_read(&mut self) -> Result<bool, BenchError> {
        let mut total = 0;
        while total < READ_BATCH {
            if self.rbuf.capacity() - self.rbuf.len() < READ_CHUNK / 4 {
                self.rbuf.reserve(READ_CHUNK);
            }
            match self.stream.try_read_buf(&mut self.rbuf) {
                Ok(0) => return Err(BenchError::Closed),
                Ok(n) => total += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) => return Err(io_err(e)),
            }
        }
        Ok(total > 0)
    }

    /// Waits until the socket is readable (or writable, while output is queued) or `deadline`
    /// passes, then reads what arrived and writes what it can. True if anything was read.
    /// Cancel-safe: nothing is lost when the future is dropped.
    pub async fn pump(&mut self, deadline: Option<Instant>) -> Result<bool, BenchError> {
        if self.wbuf.is_empty() {
            // Nothing to write: one read. Through AsyncRead, a read that does not fill the buffer
            // clears the socket's readiness, which saves the read that would return EAGAIN.
            if self.rbuf.capacity() - self.rbuf.len() < READ_CHUNK / 4 {
                self.rbuf.reserve(READ_CHUNK);
            }
            let read = self.stream.read_buf(&mut self.rbuf);
            let n = match deadline {
                Some(d) => tokio::select! {
                    biased;
                    r = read => r,
                    _ = sleep_until(d) => return Ok(false),
                },
                None => read.await,
            }
            .map_err(io_err)?;
            return if n == 0 {
                Err(BenchError::Closed)
            } else {
                Ok(true)
            };
        }
        let interest = Interest::READABLE | Interest::WRITABLE;
        let ready = match deadline {
            Some(d) => tokio::select! {
                biased;
                r = self.stream.ready(interest) => r.map_err(io_err)?,
                _ = sleep_until(d) => return Ok(false),
            },
            None => self.stream.ready(interest).await.map_err(io_err)?,
        };
        let mut read = false;
        if ready.is_readable() || ready.is_read_closed() {
            read = self.try_read()?;
        }
        if !self.wbuf.is_empty() {
            self.try_flush()?;
        }
        Ok(read)
    }

    /// When a PINGREQ is due if nothing else is written.
    pub fn ping_due(&self) -> Instant {
        self.last_write + PING_AFTER
    }

    /// Queues a PINGREQ if nothing was written for [`PING_AFTER`], keeping the connection alive.
    pub fn keep_alive(&mut self, now: Instant) {
        if now >= self.ping_due() && self.wbuf.is_empty() {
            self.wbuf.extend_from_slice(&PINGREQ);
        }
    }

    /// Sends DISCONNECT (best effort) and closes.
    pub async fn close(mut self) {
        self.wbuf.clear();
        if self.queue(&Packet::Disconnect(Default::default())).is_ok() {
            let _ = timeout(Duration::from_secs(1), self.flush()).await;
        }
        let _ = self.stream.shutdown().await;
    }
}

fn io_err(e: io::Error) -> BenchError {
    match e.kind() {
        io::ErrorKind::ConnectionReset
        | io::ErrorKind::BrokenPipe
        | io::ErrorKind::UnexpectedEof => BenchError::Closed,
        _ => BenchError::Io(e.to_string()),
    }
}

/// A CONNECT for a bench client.
pub fn connect_packet(
    client_id: String,
    version: ProtocolVersion,
    clean: bool,
    session_expiry: Option<u32>,
) -> Connect {
    let mut properties = Properties::default();
    if version.is_v5() {
        properties.session_expiry_interval = session_expiry;
    }
    Connect {
        protocol: version,
        clean_start: clean,
        keep_alive: KEEP_ALIVE_S,
        client_id,
        will: None,
        username: None,
        password: None,
        properties,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn roundtrip(version: ProtocolVersion, qos: QoS) {
        let t = PublishTemplate::new("hfb/x/7", qos, 64, version).unwrap();
        let stamp = Stamp {
            publisher: 7,
            seq: 42,
            sent_ns: 99,
        };
        let mut out = BytesMut::new();
        t.write(&mut out, 0x1234, &stamp);
        t.write(&mut out, 0x0102, &Stamp { seq: 43, ..stamp });
        assert_eq!(out.len(), 2 * t.len());
        let bytes = out.to_vec();
        // The fast parser and the codec agree on both messages.
        let (frame, n) = parse_frame(&bytes, version.is_v5()).unwrap().unwrap();
        assert_eq!(n, t.len());
        let Frame::Publish {
            qos: q,
            packet_id,
            payload,
        } = frame
        else {
            panic!("{frame:?}")
        };
        assert_eq!(q, qos.as_u8());
        assert_eq!(Stamp::read(payload), Some(stamp));
        let Some(Packet::Publish(p)) = decode_packet(&mut out, version, MAX_PACKET_SIZE).unwrap()
        else {
            panic!()
        };
        assert_eq!(&*p.topic, "hfb/x/7");
        assert_eq!(p.payload.len(), 64);
        assert_eq!(p.payload.as_ref(), payload);
        let want_id = (qos != QoS::AtMostOnce).then_some(0x1234);
        assert_eq!(p.packet_id, want_id);
        assert_eq!(packet_id, want_id.unwrap_or(0));
        let Some(Packet::Publish(p)) = decode_packet(&mut out, version, MAX_PACKET_SIZE).unwrap()
        else {
            panic!()
        };
        assert_eq!(Stamp::read(&p.payload).unwrap().seq, 43);
        assert!(out.is_empty());
    }

    #[test]
    fn publish_template_patches_decode_with_the_codec() {
        for version in [ProtocolVersion::V3_1_1, ProtocolVersion::V5] {
            for qos in [QoS::AtMostOnce, QoS::AtLeastOnce, QoS::ExactlyOnce] {
                roundtrip(version, qos);
            }
        }
    }

    #[test]
    fn acks_parse_in_place_and_decode_with_the_codec() {
        let mut out = BytesMut::new();
        put_ack(&mut out, PUBACK, 1);
        put_ack(&mut out, PUBREC, 2);
        put_ack(&mut out, PUBREL, 3);
        put_ack(&mut out, PUBCOMP, 0xFFFF);
        let mut at = 0;
        let mut frames = vec![];
        while let Some((f, n)) = parse_frame(&out[at..], true).unwrap() {
            frames.push(f);
            at += n;
        }
        assert_eq!(
            frames,
            [
                Frame::PubAck {
                    packet_id: 1,
                    reason: 0
                },
                Frame::PubRec {
                    packet_id: 2,
                    reason: 0
                },
                Frame::PubRel { packet_id: 3 },
                Frame::PubComp {
                    packet_id: 0xFFFF,
                    reason: 0
                },
            ]
        );
        for version in [ProtocolVersion::V3_1_1, ProtocolVersion::V5] {
            let mut copy = out.clone();
            while let Some(p) = decode_packet(&mut copy, version, MAX_PACKET_SIZE).unwrap() {
                assert!(matches!(
                    p,
                    Packet::PubAck(_) | Packet::PubRec(_) | Packet::PubRel(_) | Packet::PubComp(_)
                ));
            }
        }
    }

    #[test]
    fn v5_ack_reason_and_partial_frames() {
        // PUBACK 0x10 (no matching subscribers) with the reason code present.
        let buf = [0x40, 3, 0, 9, 0x10];
        assert_eq!(
            parse_frame(&buf, true).unwrap(),
            Some((
                Frame::PubAck {
                    packet_id: 9,
                    reason: 0x10
                },
                5
            ))
        );
        assert_eq!(parse_frame(&buf[..4], true).unwrap(), None, "incomplete");
        assert_eq!(parse_frame(&[], true).unwrap(), None);
        assert!(parse_frame(&[0x40, 2, 0, 0], false).is_err(), "id 0");
        assert!(parse_frame(&[0x00, 0], false).is_err(), "type 0");
        // A QoS 1 PUBLISH whose body ends inside the packet identifier.
        assert!(parse_frame(&[0x32, 4, 0, 1, b'a', 0], false).is_err());
        assert_eq!(
            parse_frame(&[0xD0, 0], false).unwrap(),
            Some((Frame::Other, 2))
        );
        assert_eq!(
            decode_other(&[0xD0, 0], ProtocolVersion::V3_1_1).unwrap(),
            Packet::PingResp
        );
    }
}
