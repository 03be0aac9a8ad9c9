//! The fuzzing oracle shared by the cargo-fuzz target (`fuzz/fuzz_targets/decode.rs`) and the
//! randomized test in this crate. Not part of the stable API.

use bytes::BytesMut;

use crate::{
    decode_packet, encode_packet, encoded_len, read_fixed_header, DecodeError, Packet,
    ProtocolVersion, MAX_PACKET_SIZE,
};

const VERSIONS: [ProtocolVersion; 3] = [
    ProtocolVersion::V3_1,
    ProtocolVersion::V3_1_1,
    ProtocolVersion::V5,
];

/// Decode `data` as a stream of packets with every protocol version and several maximum packet sizes.
/// Panics if the codec breaks one of its promises: a decoded packet must re-encode to exactly
/// `encoded_len` bytes, decode back to an equal packet, and be incomplete for every strict prefix;
/// `Ok(None)` must consume nothing; a decoded packet must consume exactly its fixed header's length.
pub fn fuzz_decode(data: &[u8]) {
    fuzz_decode_counted(data);
}

/// [`fuzz_decode`], returning how many packets were decoded (to check a corpus exercises the codec).
pub fn fuzz_decode_counted(data: &[u8]) -> usize {
    let mut decoded = 0;
    for version in VERSIONS {
        for max in [usize::MAX, MAX_PACKET_SIZE, data.len(), 64, 2] {
            decoded += check_stream(data, version, max);
        }
    }
    decoded
}

fn check_stream(data: &[u8], version: ProtocolVersion, max: usize) -> usize {
    let mut buf = BytesMut::from(data);
    let mut decoded = 0;
    loop {
        let before = buf.len();
        let header = read_fixed_header(&buf, max);
        match decode_packet(&mut buf, version, max) {
            Ok(None) => {
                assert_eq!(buf.len(), before, "Ok(None) consumed bytes");
                match header {
                    Ok(None) => {}
                    Ok(Some(h)) => assert!(
                        h.packet_len() > before,
                        "complete packet reported incomplete"
                    ),
                    Err(e) => panic!("read_fixed_header failed with {e} but decode_packet did not"),
                }
                return decoded;
            }
            Ok(Some(packet)) => {
                let h = match header {
                    Ok(Some(h)) => h,
                    other => panic!("decoded a packet but read_fixed_header gave {other:?}"),
                };
                assert!(h.packet_len() <= max);
                assert_eq!(
                    before - buf.len(),
                    h.packet_len(),
                    "decoded packet consumed a wrong length"
                );
                check_round_trip(&packet, version);
                decoded += 1;
            }
            Err(e) => {
                let _ = e.reason_code();
                if let DecodeError::TooLarge { size, max: m } = e {
                    assert!(size > m && m == max);
                }
                return decoded;
            }
        }
    }
}

/// Encode `packet` for `version`, decode it back and compare; also check every strict prefix is
/// reported incomplete (for small packets, to keep fuzzing fast).
pub fn check_round_trip(packet: &Packet, version: ProtocolVersion) {
    let version = match packet {
        Packet::Connect(c) => c.protocol,
        _ => version,
    };
    let mut out = BytesMut::new();
    if let Err(e) = encode_packet(packet, version, &mut out) {
        panic!("decoded packet does not re-encode: {e}: {packet:?}");
    }
    assert_eq!(
        out.len(),
        encoded_len(packet, version),
        "encoded_len disagrees: {packet:?}"
    );
    let wire = out.clone().freeze();
    let again = match decode_packet(&mut out, version, wire.len()) {
        Ok(Some(p)) => p,
        other => panic!("re-encoded packet does not decode: {other:?}: {packet:?} as {wire:?}"),
    };
    assert!(out.is_empty(), "re-encoded packet left bytes behind");
    assert_eq!(&again, packet, "round trip changed the packet");
    if wire.len() <= 64 {
        for i in 0..wire.len() {
            let mut prefix = BytesMut::from(&wire[..i]);
            assert_eq!(
                decode_packet(&mut prefix, version, usize::MAX),
                Ok(None),
                "prefix of {i} bytes"
            );
            assert_eq!(prefix.len(), i);
        }
    }
}
