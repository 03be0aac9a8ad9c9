//! Fixed header: remaining length encoding, limits, and incomplete input.

use bytes::BytesMut;

use super::*;
use crate::{read_fixed_header, FixedHeader, MAX_PACKET_SIZE, MAX_REMAINING_LENGTH};

fn header(bytes: &[u8]) -> Result<Option<FixedHeader>, DecodeError> {
    read_fixed_header(bytes, usize::MAX)
}

#[test]
fn empty_and_one_byte_are_incomplete() {
    assert_eq!(header(&[]), Ok(None));
    assert_eq!(header(&[0x30]), Ok(None));
    assert_eq!(header(&[0x30, 0x80]), Ok(None));
    assert_eq!(header(&[0x30, 0xFF, 0xFF, 0xFF]), Ok(None));
}

#[test] // MQTT 5.0 section 1.5.5, table 1-1: the boundaries of 1, 2, 3 and 4 byte lengths.
fn remaining_length_boundaries() {
    let cases: [(&[u8], usize); 8] = [
        (&[0x00], 0),
        (&[0x7F], 127),
        (&[0x80, 0x01], 128),
        (&[0xFF, 0x7F], 16_383),
        (&[0x80, 0x80, 0x01], 16_384),
        (&[0xFF, 0xFF, 0x7F], 2_097_151),
        (&[0x80, 0x80, 0x80, 0x01], 2_097_152),
        (&[0xFF, 0xFF, 0xFF, 0x7F], 268_435_455),
    ];
    for (len_bytes, value) in cases {
        let mut bytes = vec![0x30];
        bytes.extend_from_slice(len_bytes);
        let h = header(&bytes).unwrap().unwrap();
        assert_eq!(
            h,
            FixedHeader {
                byte1: 0x30,
                remaining_len: value,
                header_len: 1 + len_bytes.len()
            }
        );
        assert_eq!(h.packet_type(), 3);
        assert_eq!(h.packet_len(), 1 + len_bytes.len() + value);
    }
}

#[test] // [MQTT-1.5.5-1] the largest remaining length fits exactly in MAX_PACKET_SIZE.
fn max_remaining_length_is_accepted_at_max_packet_size() {
    let h = read_fixed_header(&[0x30, 0xFF, 0xFF, 0xFF, 0x7F], MAX_PACKET_SIZE)
        .unwrap()
        .unwrap();
    assert_eq!(h.remaining_len, MAX_REMAINING_LENGTH);
    assert_eq!(h.packet_len(), MAX_PACKET_SIZE);
}

#[test] // [MQTT-1.5.5-1] a variable byte integer has at most 4 bytes: a fifth is malformed.
fn five_byte_remaining_length_is_malformed() {
    for bytes in [
        &[0x30, 0xFF, 0xFF, 0xFF, 0xFF, 0x7F][..],
        &[0x30, 0x80, 0x80, 0x80, 0x80],
        &[0x30, 0x80, 0x80, 0x80, 0x80, 0x01],
    ] {
        assert!(
            matches!(header(bytes), Err(DecodeError::Malformed { .. })),
            "{bytes:02X?}"
        );
        malformed(bytes, V5);
    }
}

#[test] // Non-minimal encodings are tolerated: the receiver only bounds the length at 4 bytes.
fn non_minimal_remaining_length_is_accepted() {
    assert_eq!(
        header(&[0xC0, 0x80, 0x00]).unwrap().unwrap().remaining_len,
        0
    );
    assert_eq!(
        dec_ok(&[0xC0, 0x80, 0x80, 0x80, 0x00], V311),
        Packet::PingReq
    );
}

#[test] // MQTT 5.0 3.1.2.11.4 / 3.2.2.3.6: Maximum Packet Size counts the whole packet.
fn too_large_is_reported_from_the_header_alone() {
    // 1 + 2 + 200 = 203 bytes, limit 202: refused with only the header buffered.
    let e = read_fixed_header(&[0x30, 0xC8, 0x01], 202).unwrap_err();
    assert_eq!(
        e,
        DecodeError::TooLarge {
            size: 203,
            max: 202
        }
    );
    assert_eq!(e.reason_code(), crate::ReasonCode::PACKET_TOO_LARGE);
    assert_eq!(
        read_fixed_header(&[0x30, 0xC8, 0x01], 203)
            .unwrap()
            .unwrap()
            .packet_len(),
        203
    );

    let mut buf = BytesMut::from(&[0x30, 0xC8, 0x01][..]);
    assert!(matches!(
        decode_packet(&mut buf, V5, 202),
        Err(DecodeError::TooLarge { .. })
    ));
}

#[test] // The limit is enforced while the remaining length is still arriving.
fn too_large_is_reported_before_the_length_is_complete() {
    // 0xFF 0xFF with continuation: at least 1 + 3 + 16383 bytes.
    let e = read_fixed_header(&[0x30, 0xFF, 0xFF], 1000).unwrap_err();
    assert!(matches!(e, DecodeError::TooLarge { size, max: 1000 } if size > 1000));
    // A limit too small for even a two-byte packet.
    assert!(matches!(
        read_fixed_header(&[0xC0], 1),
        Err(DecodeError::TooLarge { .. })
    ));
    assert_eq!(
        read_fixed_header(&[0xC0, 0x00], 2)
            .unwrap()
            .unwrap()
            .packet_len(),
        2
    );
}

#[test]
fn exactly_max_packet_size_is_accepted() {
    let p = B::new().str("a/b").raw(b"hello").frame(0x30);
    let mut buf = BytesMut::from(&p[..]);
    assert!(decode_packet(&mut buf, V311, p.len()).unwrap().is_some());
    let mut buf = BytesMut::from(&p[..]);
    assert_eq!(
        decode_packet(&mut buf, V311, p.len() - 1),
        Err(DecodeError::TooLarge {
            size: p.len(),
            max: p.len() - 1
        })
    );
}

#[test] // Incomplete input consumes nothing; a complete packet consumes exactly itself.
fn partial_body_consumes_nothing_and_packets_are_split_exactly() {
    let one = B::new().str("t").raw(b"xyz").frame(0x30);
    let mut stream = one.clone();
    stream.extend_from_slice(&[0xC0, 0x00, 0xD0]);
    for i in 0..one.len() {
        let mut buf = BytesMut::from(&stream[..i]);
        assert_eq!(decode_packet(&mut buf, V311, usize::MAX), Ok(None));
        assert_eq!(buf.len(), i);
    }
    let mut buf = BytesMut::from(&stream[..]);
    assert!(matches!(
        decode_packet(&mut buf, V311, usize::MAX),
        Ok(Some(Packet::Publish(_)))
    ));
    assert_eq!(
        decode_packet(&mut buf, V311, usize::MAX),
        Ok(Some(Packet::PingReq))
    );
    assert_eq!(decode_packet(&mut buf, V311, usize::MAX), Ok(None));
    assert_eq!(&buf[..], &[0xD0]);
}

#[test] // The encoder refuses a packet whose remaining length cannot be written.
fn encoder_refuses_remaining_length_over_limit() {
    let p = Packet::Publish(crate::Publish {
        dup: false,
        qos: crate::QoS::AtMostOnce,
        retain: false,
        topic: "t".into(),
        packet_id: None,
        payload: bytes::Bytes::from(vec![0u8; MAX_REMAINING_LENGTH - 3 + 1]),
        properties: Default::default(),
    });
    assert!(matches!(enc_err(&p, V311), EncodeError::TooLarge { .. }));
    assert_eq!(crate::encoded_len(&p, V311), MAX_PACKET_SIZE + 1);
}

#[test] // [MQTT-2.1.3-1] [MQTT-3.3.1-4] [MQTT-3.3.1-2]: a bad first byte is refused before any length.
fn invalid_first_byte_is_refused_at_once() {
    for byte1 in [
        0x00, 0x0F, b'G', /* HTTP GET: PUBACK with flags 0111 */
        0x36, 0x38, 0x60, 0x80, 0xA0, 0x12, 0xC4, 0xF1,
    ] {
        let e = read_fixed_header(&[byte1], usize::MAX).unwrap_err();
        assert!(
            matches!(e, DecodeError::Malformed { .. }),
            "{byte1:#04X}: {e:?}"
        );
    }
    for byte1 in [0x10, 0x30, 0x3B, 0x32, 0x3D, 0x62, 0x82, 0xA2, 0xE0, 0xF0] {
        assert_eq!(
            read_fixed_header(&[byte1], usize::MAX),
            Ok(None),
            "{byte1:#04X}"
        );
    }
}
