//! Hand-built MQTT packets over a plain `std::net::TcpStream`, independent of any codec crate,
//! for tests that must send what a well-behaved client library never would.

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use super::TIMEOUT;

pub const PINGREQ: [u8; 2] = [0xC0, 0x00];
pub const PINGRESP: [u8; 2] = [0xD0, 0x00];
pub const DISCONNECT_V4: [u8; 2] = [0xE0, 0x00];

/// MQTT Variable Byte Integer (remaining length).
pub fn varint(mut n: usize) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let mut b = (n % 128) as u8;
        n /= 128;
        if n > 0 {
            b |= 0x80;
        }
        out.push(b);
        if n == 0 {
            return out;
        }
    }
}

/// Two-byte length prefixed bytes (UTF-8 string or binary data).
pub fn lp(b: &[u8]) -> Vec<u8> {
    let mut out = (b.len() as u16).to_be_bytes().to_vec();
    out.extend_from_slice(b);
    out
}

/// Fixed header byte + remaining length + body.
pub fn packet(first: u8, body: &[u8]) -> Vec<u8> {
    let mut out = vec![first];
    out.extend(varint(body.len()));
    out.extend_from_slice(body);
    out
}

/// v5 property block: length + properties.
pub fn props(p: &[u8]) -> Vec<u8> {
    let mut out = varint(p.len());
    out.extend_from_slice(p);
    out
}

/// A CONNECT packet, field by field.
#[derive(Clone)]
pub struct Connect {
    pub protocol_name: Vec<u8>,
    pub level: u8,
    /// `None`: computed from the other fields; `Some`: sent as is.
    pub flags: Option<u8>,
    pub clean: bool,
    pub keep_alive: u16,
    /// v5 CONNECT properties (without the length); ignored for levels below 5.
    pub properties: Vec<u8>,
    pub client_id: Vec<u8>,
    pub will: Option<Will>,
}

/// The will fields of a CONNECT.
#[derive(Clone)]
pub struct Will {
    pub topic: Vec<u8>,
    pub payload: Vec<u8>,
    pub qos: u8,
    pub retain: bool,
    /// v5 will properties (without the length); ignored for levels below 5.
    pub properties: Vec<u8>,
}

impl Connect {
    pub fn v4(client_id: &str) -> Connect {
        Connect {
            protocol_name: b"MQTT".to_vec(),
            level: 4,
            flags: None,
            clean: true,
            keep_alive: 30,
            properties: vec![],
            client_id: client_id.as_bytes().to_vec(),
            will: None,
        }
    }

    pub fn v5(client_id: &str) -> Connect {
        Connect {
            level: 5,
            ..Connect::v4(client_id)
        }
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut flags = 0u8;
        if self.clean {
            flags |= 0x02;
        }
        if let Some(will) = &self.will {
            flags |= 0x04 | (will.qos << 3);
            if will.retain {
                flags |= 0x20;
            }
        }
        let flags = self.flags.unwrap_or(flags);
        let mut body = lp(&self.protocol_name);
        body.push(self.level);
        body.push(flags);
        body.extend(self.keep_alive.to_be_bytes());
        if self.level >= 5 {
            body.extend(props(&self.properties));
        }
        body.extend(lp(&self.client_id));
        if let Some(will) = &self.will {
            if self.level >= 5 {
                body.extend(props(&will.properties));
            }
            body.extend(lp(&will.topic));
            body.extend(lp(&will.payload));
        }
        packet(0x10, &body)
    }
}

/// A PUBLISH; `props` is `Some` for v5 (property block without its length).
pub fn publish(
    topic: &[u8],
    qos: u8,
    retain: bool,
    pkid: u16,
    payload: &[u8],
    props_v5: Option<&[u8]>,
) -> Vec<u8> {
    let first = 0x30 | (qos << 1) | u8::from(retain);
    let mut body = lp(topic);
    if qos > 0 {
        body.extend(pkid.to_be_bytes());
    }
    if let Some(p) = props_v5 {
        body.extend(props(p));
    }
    body.extend_from_slice(payload);
    packet(first, &body)
}

/// A SUBSCRIBE with one filter; `first` is normally 0x82.
pub fn subscribe(first: u8, pkid: u16, filter: &[u8], options: u8, v5: bool) -> Vec<u8> {
    let mut body = pkid.to_be_bytes().to_vec();
    if v5 {
        body.push(0); // no properties
    }
    body.extend(lp(filter));
    body.push(options);
    packet(first, &body)
}

/// A v5 DISCONNECT with a reason code and no properties.
pub fn disconnect_v5(reason: u8) -> Vec<u8> {
    packet(0xE0, &[reason, 0])
}

/// One packet as received.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RawPacket {
    pub first: u8,
    pub body: Vec<u8>,
}

impl RawPacket {
    pub fn kind(&self) -> u8 {
        self.first >> 4
    }
    pub fn is_connack(&self) -> bool {
        self.first == 0x20
    }
    pub fn is_disconnect(&self) -> bool {
        self.first == 0xE0
    }
    /// CONNACK return code (3.1.1) / reason code (5), or DISCONNECT reason code (0 when the
    /// remaining length is 0).
    pub fn reason(&self) -> u8 {
        match self.kind() {
            2 => self.body.get(1).copied().unwrap_or(0xFF),
            14 => self.body.first().copied().unwrap_or(0),
            _ => panic!("no reason code in {self:?}"),
        }
    }
    /// The v5 properties of a CONNACK or DISCONNECT as (identifier, raw value bytes).
    pub fn v5_properties(&self) -> Vec<(u8, Vec<u8>)> {
        let start = match self.kind() {
            2 => 2,
            14 if self.body.len() > 1 => 1,
            _ => return vec![],
        };
        let mut i = start;
        let (len, n) = read_varint(&self.body[i..]).expect("property length");
        i += n;
        let end = i + len;
        let mut out = Vec::new();
        while i < end {
            let id = self.body[i];
            i += 1;
            let size = match id {
                0x01 | 0x17 | 0x19 | 0x24 | 0x25 | 0x28 | 0x29 | 0x2A => 1,
                0x13 | 0x21 | 0x22 | 0x23 => 2,
                0x02 | 0x11 | 0x18 | 0x27 => 4,
                0x0B => read_varint(&self.body[i..]).expect("varint property").1,
                0x26 => {
                    let a = u16::from_be_bytes([self.body[i], self.body[i + 1]]) as usize;
                    let b =
                        u16::from_be_bytes([self.body[i + 2 + a], self.body[i + 3 + a]]) as usize;
                    4 + a + b
                }
                _ => 2 + u16::from_be_bytes([self.body[i], self.body[i + 1]]) as usize,
            };
            out.push((id, self.body[i..i + size].to_vec()));
            i += size;
        }
        out
    }
    pub fn v5_property(&self, id: u8) -> Option<Vec<u8>> {
        self.v5_properties()
            .into_iter()
            .find(|(i, _)| *i == id)
            .map(|(_, v)| v)
    }
}

/// Decodes a Variable Byte Integer: (value, bytes used); `None` if incomplete or longer than
/// four bytes.
pub fn read_varint(b: &[u8]) -> Option<(usize, usize)> {
    let mut value = 0usize;
    for (i, byte) in b.iter().enumerate().take(4) {
        value |= ((byte & 0x7F) as usize) << (7 * i);
        if byte & 0x80 == 0 {
            return Some((value, i + 1));
        }
    }
    None
}

pub enum ReadResult {
    Packet(RawPacket),
    Closed(String),
    Timeout,
}

/// A raw client connection.
pub struct RawConn {
    stream: TcpStream,
    buf: Vec<u8>,
}

impl RawConn {
    pub fn open(addr: SocketAddr) -> RawConn {
        let stream = TcpStream::connect_timeout(&addr, TIMEOUT).expect("TCP connect to broker");
        stream.set_nodelay(true).expect("nodelay");
        stream
            .set_read_timeout(Some(Duration::from_millis(50)))
            .expect("read timeout");
        RawConn {
            stream,
            buf: Vec::new(),
        }
    }

    /// Writes bytes; errors are ignored because the broker may legitimately close the
    /// connection before a malformed packet is fully written.
    pub fn send(&mut self, bytes: &[u8]) {
        let _ = self.stream.write_all(bytes);
        let _ = self.stream.flush();
    }

    /// The next whole packet within `timeout`, or the close of the connection.
    pub fn read(&mut self, timeout: Duration) -> ReadResult {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(p) = self.take_packet() {
                return ReadResult::Packet(p);
            }
            let mut chunk = [0u8; 4096];
            match self.stream.read(&mut chunk) {
                Ok(0) => return ReadResult::Closed("EOF".into()),
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
                Err(e)
                    if matches!(
                        e.kind(),
                        ErrorKind::WouldBlock | ErrorKind::TimedOut | ErrorKind::Interrupted
                    ) =>
                {
                    if Instant::now() >= deadline {
                        return ReadResult::Timeout;
                    }
                }
                Err(e) => return ReadResult::Closed(format!("{e}")),
            }
        }
    }

    fn take_packet(&mut self) -> Option<RawPacket> {
        if self.buf.len() < 2 {
            return None;
        }
        let (len, n) = read_varint(&self.buf[1..])?;
        if self.buf.len() < 1 + n + len {
            return None;
        }
        let first = self.buf[0];
        let body = self.buf[1 + n..1 + n + len].to_vec();
        self.buf.drain(..1 + n + len);
        Some(RawPacket { first, body })
    }

    /// The next packet; panics on close or timeout.
    pub fn expect_packet(&mut self, what: &str) -> RawPacket {
        match self.read(TIMEOUT) {
            ReadResult::Packet(p) => p,
            ReadResult::Closed(why) => panic!("connection closed ({why}) while waiting for {what}"),
            ReadResult::Timeout => panic!("no {what} within {TIMEOUT:?}"),
        }
    }

    /// Waits for the broker to close the connection and returns every packet it sent first.
    /// Panics if the connection is still open after `TIMEOUT`.
    pub fn expect_closed(&mut self, context: &str) -> Vec<RawPacket> {
        let deadline = Instant::now() + TIMEOUT;
        let mut got = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.read(left) {
                ReadResult::Packet(p) => got.push(p),
                ReadResult::Closed(_) => return got,
                ReadResult::Timeout => panic!(
                    "{context}: the broker did not close the connection within {TIMEOUT:?} \
                     (received before: {got:?}, unparsed bytes: {:02x?})",
                    self.buf
                ),
            }
        }
    }

    /// CONNECT and a successful CONNACK; returns the CONNACK.
    pub fn handshake(&mut self, connect: &Connect) -> RawPacket {
        self.send(&connect.encode());
        let ack = self.expect_packet("CONNACK");
        assert!(ack.is_connack(), "expected CONNACK, got {ack:?}");
        assert_eq!(ack.reason(), 0, "CONNACK refused: {ack:?}");
        ack
    }
}

static ALIVE: AtomicU32 = AtomicU32::new(0);

/// Asserts that the broker still serves a fresh, well-behaved MQTT 3.1.1 client:
/// CONNECT/CONNACK, SUBSCRIBE/SUBACK, PUBLISH delivered back, PINGREQ/PINGRESP.
pub fn assert_broker_alive(addr: SocketAddr) {
    let id = format!("alive-{}", ALIVE.fetch_add(1, Ordering::Relaxed));
    let mut c = RawConn::open(addr);
    c.handshake(&Connect::v4(&id));
    c.send(&subscribe(0x82, 1, b"alive/check", 0, false));
    let suback = c.expect_packet("SUBACK");
    assert_eq!(
        suback,
        RawPacket {
            first: 0x90,
            body: vec![0, 1, 0]
        },
        "SUBACK"
    );
    c.send(&publish(b"alive/check", 0, false, 0, b"ok", None));
    let p = c.expect_packet("PUBLISH");
    assert_eq!(
        p,
        RawPacket {
            first: 0x30,
            body: [lp(b"alive/check"), b"ok".to_vec()].concat()
        }
    );
    c.send(&PINGREQ);
    let pong = c.expect_packet("PINGRESP");
    assert_eq!(pong.first, 0xD0, "PINGRESP");
    c.send(&DISCONNECT_V4);
}

// ---------------------------------------------------------------- durability tests

/// PUBACK, PUBREC, PUBREL and PUBCOMP (MQTT 3.1.1 form, also valid in 5: reason 0, no properties).
pub fn puback(pkid: u16) -> Vec<u8> {
    packet(0x40, &pkid.to_be_bytes())
}
pub fn pubrec(pkid: u16) -> Vec<u8> {
    packet(0x50, &pkid.to_be_bytes())
}
pub fn pubrel(pkid: u16) -> Vec<u8> {
    packet(0x62, &pkid.to_be_bytes())
}
pub fn pubcomp(pkid: u16) -> Vec<u8> {
    packet(0x70, &pkid.to_be_bytes())
}

/// A PUBLISH with the DUP flag set (a resend) [MQTT-3.3.1-1].
pub fn publish_dup(topic: &[u8], qos: u8, retain: bool, pkid: u16, payload: &[u8]) -> Vec<u8> {
    let mut p = publish(topic, qos, retain, pkid, payload, None);
    p[0] |= 0x08;
    p
}

/// The fields of a received MQTT 3.1.1 PUBLISH.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RawPublish {
    pub dup: bool,
    pub qos: u8,
    pub retain: bool,
    pub topic: String,
    /// 0 for QoS 0.
    pub pkid: u16,
    pub payload: Vec<u8>,
}

impl RawPacket {
    /// The packet identifier of a PUBACK, PUBREC, PUBREL, PUBCOMP, SUBACK or UNSUBACK.
    pub fn packet_id(&self) -> u16 {
        assert!(self.body.len() >= 2, "no packet id in {self:?}");
        u16::from_be_bytes([self.body[0], self.body[1]])
    }

    /// The Session Present flag of a CONNACK.
    pub fn session_present(&self) -> bool {
        assert!(self.is_connack(), "not a CONNACK: {self:?}");
        self.body.first().is_some_and(|f| f & 1 == 1)
    }

    /// Decodes an MQTT 3.1.1 PUBLISH (no properties); `None` for other packets.
    pub fn as_publish_v4(&self) -> Option<RawPublish> {
        if self.kind() != 3 {
            return None;
        }
        let qos = (self.first >> 1) & 3;
        let b = &self.body;
        let tlen = u16::from_be_bytes([*b.first()?, *b.get(1)?]) as usize;
        let topic = String::from_utf8(b.get(2..2 + tlen)?.to_vec()).ok()?;
        let mut i = 2 + tlen;
        let mut pkid = 0;
        if qos > 0 {
            pkid = u16::from_be_bytes([*b.get(i)?, *b.get(i + 1)?]);
            i += 2;
        }
        Some(RawPublish {
            dup: self.first & 0x08 != 0,
            qos,
            retain: self.first & 1 == 1,
            topic,
            pkid,
            payload: b[i..].to_vec(),
        })
    }
}

impl RawConn {
    /// Like `open`, but `None` when nothing accepts the connection (the broker is down).
    pub fn try_open(addr: SocketAddr, timeout: Duration) -> Option<RawConn> {
        let stream = TcpStream::connect_timeout(&addr, timeout).ok()?;
        stream.set_nodelay(true).ok()?;
        stream
            .set_read_timeout(Some(Duration::from_millis(20)))
            .ok()?;
        Some(RawConn {
            stream,
            buf: Vec::new(),
        })
    }

    /// Writes bytes; `false` when the connection is gone.
    pub fn try_send(&mut self, bytes: &[u8]) -> bool {
        self.stream.write_all(bytes).is_ok()
    }

    /// Every packet that arrives within `d` (stops early on close).
    pub fn packets_within(&mut self, d: Duration) -> Vec<RawPacket> {
        let deadline = Instant::now() + d;
        let mut got = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return got;
            }
            match self.read(left) {
                ReadResult::Packet(p) => got.push(p),
                _ => return got,
            }
        }
    }
}
