//! Unit, property and randomized tests of the codec. Each strictness test names the rule it proves.

mod connect;
mod control;
mod fixed_header;
mod fuzz;
mod properties;
mod publish;
mod roundtrip;
mod strategies;
mod subscribe;

use bytes::BytesMut;

use crate::{
    decode_packet, encode_packet, encoded_len, DecodeError, EncodeError, Packet, ProtocolVersion,
};

pub(crate) const V31: ProtocolVersion = ProtocolVersion::V3_1;
pub(crate) const V311: ProtocolVersion = ProtocolVersion::V3_1_1;
pub(crate) const V5: ProtocolVersion = ProtocolVersion::V5;
pub(crate) const ALL: [ProtocolVersion; 3] = [V31, V311, V5];

/// Builds packet bytes by hand, so tests can write what the encoder never would.
#[derive(Default, Clone)]
pub(crate) struct B(pub Vec<u8>);

impl B {
    pub fn new() -> B {
        B(Vec::new())
    }
    pub fn u8(mut self, v: u8) -> B {
        self.0.push(v);
        self
    }
    pub fn u16(mut self, v: u16) -> B {
        self.0.extend_from_slice(&v.to_be_bytes());
        self
    }
    pub fn u32(mut self, v: u32) -> B {
        self.0.extend_from_slice(&v.to_be_bytes());
        self
    }
    pub fn raw(mut self, v: &[u8]) -> B {
        self.0.extend_from_slice(v);
        self
    }
    /// A length-prefixed string or binary field.
    pub fn str(self, v: impl AsRef<[u8]>) -> B {
        let v = v.as_ref();
        self.u16(v.len() as u16).raw(v)
    }
    pub fn varint(mut self, mut v: usize) -> B {
        loop {
            let mut b = (v & 0x7F) as u8;
            v >>= 7;
            if v > 0 {
                b |= 0x80;
            }
            self.0.push(b);
            if v == 0 {
                return self;
            }
        }
    }
    /// A property section holding the given property bytes.
    pub fn props(self, p: B) -> B {
        self.varint(p.0.len()).raw(&p.0)
    }
    /// The whole packet: `byte1`, remaining length, then the bytes built so far.
    pub fn frame(self, byte1: u8) -> Vec<u8> {
        let mut out = B::new().u8(byte1).varint(self.0.len()).0;
        out.extend_from_slice(&self.0);
        out
    }
}

pub(crate) fn dec(bytes: &[u8], v: ProtocolVersion) -> Result<Option<Packet>, DecodeError> {
    let mut buf = BytesMut::from(bytes);
    decode_packet(&mut buf, v, usize::MAX)
}

/// Decode one whole packet that must be accepted and must consume every byte.
#[track_caller]
pub(crate) fn dec_ok(bytes: &[u8], v: ProtocolVersion) -> Packet {
    let mut buf = BytesMut::from(bytes);
    match decode_packet(&mut buf, v, usize::MAX) {
        Ok(Some(p)) => {
            assert!(buf.is_empty(), "{} bytes left over", buf.len());
            p
        }
        other => panic!("expected a packet from {bytes:02X?}, got {other:?}"),
    }
}

#[track_caller]
pub(crate) fn dec_err(bytes: &[u8], v: ProtocolVersion) -> DecodeError {
    match dec(bytes, v) {
        Err(e) => e,
        other => panic!("expected an error from {bytes:02X?} ({v}), got {other:?}"),
    }
}

#[track_caller]
pub(crate) fn malformed(bytes: &[u8], v: ProtocolVersion) {
    let e = dec_err(bytes, v);
    assert!(
        matches!(e, DecodeError::Malformed { .. }),
        "expected Malformed, got {e:?}"
    );
    assert_eq!(e.reason_code(), crate::ReasonCode::MALFORMED_PACKET);
}

#[track_caller]
pub(crate) fn protocol(bytes: &[u8], v: ProtocolVersion) {
    let e = dec_err(bytes, v);
    assert!(
        matches!(e, DecodeError::Protocol { .. }),
        "expected Protocol, got {e:?}"
    );
    assert_eq!(e.reason_code(), crate::ReasonCode::PROTOCOL_ERROR);
}

/// Encode, check `encoded_len`, and return the bytes.
#[track_caller]
pub(crate) fn enc(p: &Packet, v: ProtocolVersion) -> Vec<u8> {
    let mut buf = BytesMut::new();
    encode_packet(p, v, &mut buf).unwrap_or_else(|e| panic!("cannot encode {p:?}: {e}"));
    assert_eq!(buf.len(), encoded_len(p, v));
    buf.to_vec()
}

#[track_caller]
pub(crate) fn enc_err(p: &Packet, v: ProtocolVersion) -> EncodeError {
    let mut buf = BytesMut::from(&b"prefix"[..]);
    let e = encode_packet(p, v, &mut buf).expect_err("encoding should fail");
    assert_eq!(&buf[..], b"prefix", "a failed encode must append nothing");
    e
}

/// Encode, compare with the expected wire bytes, decode back, and check every prefix is incomplete.
#[track_caller]
pub(crate) fn wire(p: &Packet, v: ProtocolVersion, expected: &[u8]) {
    assert_eq!(enc(p, v), expected, "encoding of {p:?} for {v}");
    assert_eq!(&dec_ok(expected, v), p);
    crate::fuzzing::check_round_trip(p, v);
    for i in 0..expected.len() {
        assert_eq!(dec(&expected[..i], v), Ok(None), "prefix of {i} bytes");
    }
}
