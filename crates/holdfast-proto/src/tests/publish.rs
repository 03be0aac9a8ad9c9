//! PUBLISH and its acknowledgements (PUBACK, PUBREC, PUBREL, PUBCOMP).

use bytes::{Bytes, BytesMut};

use super::*;
use crate::{Properties, PubResp, Publish, QoS, ReasonCode};

fn publish(qos: QoS, topic: &str, payload: &'static [u8]) -> Publish {
    Publish {
        dup: false,
        qos,
        retain: false,
        topic: topic.into(),
        packet_id: if qos == QoS::AtMostOnce {
            None
        } else {
            Some(7)
        },
        payload: Bytes::from_static(payload),
        properties: Properties::default(),
    }
}

#[test] // MQTT 3.1.1 section 3.3.
fn publish_v3_wire_format() {
    for v in [V31, V311] {
        let p = publish(QoS::AtMostOnce, "a/b", b"hello");
        wire(
            &Packet::Publish(p),
            v,
            &B::new().str("a/b").raw(b"hello").frame(0x30),
        );
        let p = publish(QoS::AtLeastOnce, "a/b", b"");
        wire(
            &Packet::Publish(p),
            v,
            &B::new().str("a/b").u16(7).frame(0x32),
        );
        let mut p = publish(QoS::ExactlyOnce, "a/b", b"x");
        p.dup = true;
        p.retain = true;
        wire(
            &Packet::Publish(p),
            v,
            &B::new().str("a/b").u16(7).raw(b"x").frame(0x3D),
        );
    }
}

#[test] // MQTT 5.0 section 3.3: property section after the packet identifier.
fn publish_v5_wire_format() {
    let p = publish(QoS::AtLeastOnce, "a/b", b"hi");
    wire(
        &Packet::Publish(p),
        V5,
        &B::new().str("a/b").u16(7).u8(0).raw(b"hi").frame(0x32),
    );
    let mut p = publish(QoS::AtMostOnce, "t", b"");
    p.properties.payload_format_indicator = Some(1);
    p.properties.message_expiry_interval = Some(5);
    let props = B::new().u8(0x01).u8(1).u8(0x02).u32(5);
    wire(
        &Packet::Publish(p),
        V5,
        &B::new().str("t").props(props).frame(0x30),
    );
}

#[test] // MQTT 5.0 table 2-4: everything PUBLISH may carry, subscription identifiers repeated.
fn publish_v5_all_properties_round_trip() {
    let mut p = publish(QoS::ExactlyOnce, "a/b", b"payload");
    p.properties = Properties::from(crate::PropertySet {
        payload_format_indicator: Some(0),
        message_expiry_interval: Some(u32::MAX),
        topic_alias: Some(3),
        response_topic: Some("resp/t".into()),
        correlation_data: Some(Bytes::from_static(b"\x00corr")),
        user_properties: vec![
            ("a".into(), "1".into()),
            ("a".into(), "2".into()),
            ("".into(), "".into()),
        ],
        subscription_identifiers: vec![1, 268_435_455, 1, 300],
        content_type: Some("application/json".into()),
        ..Default::default()
    });
    crate::fuzzing::check_round_trip(&Packet::Publish(p), V5);
}

#[test] // Fields 3.1.1 cannot carry are left out.
fn publish_v3_ignores_properties() {
    let mut p = publish(QoS::AtMostOnce, "a", b"x");
    p.properties.message_expiry_interval = Some(5);
    assert_eq!(
        enc(&Packet::Publish(p), V311),
        B::new().str("a").raw(b"x").frame(0x30)
    );
}

#[test] // The payload is a zero-copy slice of the read buffer.
fn publish_payload_is_zero_copy() {
    let bytes = B::new().str("a/b").raw(&[0xAB; 100]).frame(0x30);
    let mut buf = BytesMut::from(&bytes[..]);
    let range = buf.as_ptr() as usize..buf.as_ptr() as usize + buf.len();
    let Some(Packet::Publish(p)) = decode_packet(&mut buf, V311, usize::MAX).unwrap() else {
        panic!()
    };
    assert_eq!(p.payload.len(), 100);
    assert!(range.contains(&(p.payload.as_ptr() as usize)));
}

#[test] // [MQTT-3.3.1-4] QoS 3 is malformed.
fn publish_qos_3_is_malformed() {
    for v in ALL {
        malformed(&B::new().str("a").u16(1).frame(0x36), v);
    }
}

#[test] // [MQTT-3.3.1-2] DUP must be 0 for QoS 0.
fn publish_dup_with_qos_0_is_malformed() {
    for v in ALL {
        malformed(&B::new().str("a").frame(0x38), v);
    }
    // The encoder writes DUP 0 and no packet identifier for QoS 0.
    let mut p = publish(QoS::AtMostOnce, "a", b"");
    p.dup = true;
    p.packet_id = Some(3);
    assert_eq!(
        enc(&Packet::Publish(p), V311),
        B::new().str("a").frame(0x30)
    );
}

#[test] // [MQTT-2.2.1-3] (3.1.1 [MQTT-2.3.1-1]) QoS > 0 needs a non-zero packet identifier.
fn publish_packet_id_0_is_a_protocol_error() {
    protocol(&B::new().str("a").u16(0).frame(0x32), V311);
    protocol(&B::new().str("a").u16(0).u8(0).frame(0x34), V5);
    let mut p = publish(QoS::AtLeastOnce, "a", b"");
    p.packet_id = Some(0);
    assert!(matches!(
        enc_err(&Packet::Publish(p.clone()), V311),
        EncodeError::Invalid { .. }
    ));
    p.packet_id = None;
    assert!(matches!(
        enc_err(&Packet::Publish(p), V5),
        EncodeError::Invalid { .. }
    ));
}

#[test] // [MQTT-3.3.2-2] a topic name has no wildcards: Topic Name invalid (0x90).
fn publish_topic_with_wildcard() {
    for topic in ["a/+", "#", "a/#", "+"] {
        for v in ALL {
            let mut b = B::new().str(topic);
            if v.is_v5() {
                b = b.u8(0);
            }
            let e = dec_err(&b.frame(0x30), v);
            assert!(matches!(e, DecodeError::TopicName { .. }), "{e:?}");
            assert_eq!(e.reason_code(), ReasonCode::TOPIC_NAME_INVALID);
        }
        let e = enc_err(&Packet::Publish(publish(QoS::AtMostOnce, topic, b"")), V5);
        assert!(matches!(e, EncodeError::Invalid { .. }));
    }
}

#[test] // [MQTT-4.7.3-1] empty topic; MQTT 5.0 3.3.2.1: allowed only with a topic alias.
fn publish_empty_topic() {
    assert!(matches!(
        dec_err(&B::new().str("").frame(0x30), V311),
        DecodeError::TopicName { .. }
    ));
    protocol(&B::new().str("").u8(0).frame(0x30), V5);
    let mut p = publish(QoS::AtMostOnce, "", b"x");
    p.properties.topic_alias = Some(1);
    let props = B::new().u8(0x23).u16(1);
    wire(
        &Packet::Publish(p.clone()),
        V5,
        &B::new().str("").props(props).raw(b"x").frame(0x30),
    );
    assert!(matches!(
        enc_err(&Packet::Publish(p), V311),
        EncodeError::Invalid { .. }
    ));
}

#[test] // [MQTT-1.5.4-2] [MQTT-4.7.3-2] no U+0000 in a topic.
fn publish_topic_with_nul_is_malformed() {
    malformed(&B::new().str("a\0b").frame(0x30), V311);
    malformed(&B::new().str(b"\xFFa").frame(0x30), V311);
}

#[test] // MQTT 5.0 3.3.2.3.4: topic alias 0 is not permitted.
fn publish_topic_alias_0_is_a_protocol_error() {
    protocol(
        &B::new()
            .str("a")
            .props(B::new().u8(0x23).u16(0))
            .frame(0x30),
        V5,
    );
}

#[test] // The topic and packet identifier must fit.
fn publish_truncated_is_malformed() {
    malformed(&[0x30, 0x01, 0x00], V311);
    malformed(&B::new().str("abc").u8(0).frame(0x32), V311);
    malformed(&B::new().u16(10).raw(b"abc").frame(0x30), V311);
}

fn resp(id: u16, reason: ReasonCode) -> PubResp {
    PubResp::with_reason(id, reason)
}

type Ctor = fn(PubResp) -> Packet;
const ACKS: [(Ctor, u8); 4] = [
    (Packet::PubAck, 0x40),
    (Packet::PubRec, 0x50),
    (Packet::PubRel, 0x62),
    (Packet::PubComp, 0x70),
];

#[test] // MQTT 3.1.1 sections 3.4-3.7: remaining length 2.
fn pub_resp_v3_wire_format() {
    for (ctor, byte1) in ACKS {
        for v in [V31, V311] {
            wire(&ctor(PubResp::new(0x1234)), v, &[byte1, 0x02, 0x12, 0x34]);
            // Reason codes and properties are MQTT 5 only: left out.
            let mut r = resp(1, ReasonCode(0x80));
            r.properties.reason_string = Some("no".into());
            assert_eq!(enc(&ctor(r), v), [byte1, 0x02, 0x00, 0x01]);
            malformed(&[byte1, 0x03, 0x00, 0x01, 0x00], v);
            malformed(&[byte1, 0x01, 0x00], v);
        }
    }
}

#[test] // MQTT 5.0 3.4.2.1: short forms without reason code and/or properties.
fn pub_resp_v5_short_forms() {
    for (ctor, byte1) in ACKS {
        let ok = ctor(PubResp::new(5));
        wire(&ok, V5, &[byte1, 0x02, 0x00, 0x05]);
        assert_eq!(dec_ok(&[byte1, 0x03, 0x00, 0x05, 0x00], V5), ok);
        assert_eq!(dec_ok(&[byte1, 0x04, 0x00, 0x05, 0x00, 0x00], V5), ok);
        let code = if byte1 <= 0x50 {
            ReasonCode::NO_MATCHING_SUBSCRIBERS
        } else {
            ReasonCode::PACKET_IDENTIFIER_NOT_FOUND
        };
        wire(
            &ctor(resp(5, code)),
            V5,
            &[byte1, 0x04, 0x00, 0x05, code.0, 0x00],
        );
        assert_eq!(
            dec_ok(&[byte1, 0x03, 0x00, 0x05, code.0], V5),
            ctor(resp(5, code))
        );
        let mut r = resp(5, ReasonCode::SUCCESS);
        r.properties.reason_string = Some("ok".into());
        wire(
            &ctor(r),
            V5,
            &B::new()
                .u16(5)
                .u8(0)
                .props(B::new().u8(0x1F).str("ok"))
                .frame(byte1),
        );
        // Properties that run past the end, or bytes after them.
        malformed(&[byte1, 0x04, 0x00, 0x05, 0x00, 0x05], V5);
        malformed(&[byte1, 0x05, 0x00, 0x05, 0x00, 0x00, 0x00], V5);
    }
}

#[test] // MQTT 5.0 table 2-6: each acknowledgement has its own reason codes.
fn pub_resp_v5_invalid_reason_codes() {
    protocol(&[0x40, 0x03, 0x00, 0x01, 0x92], V5);
    protocol(&[0x50, 0x03, 0x00, 0x01, 0x81], V5);
    protocol(&[0x62, 0x03, 0x00, 0x01, 0x10], V5);
    protocol(&[0x70, 0x03, 0x00, 0x01, 0x80], V5);
    assert!(matches!(
        enc_err(&Packet::PubRel(resp(1, ReasonCode(0x80))), V5),
        EncodeError::Invalid { .. }
    ));
    for code in [0x00, 0x10, 0x80, 0x83, 0x87, 0x90, 0x91, 0x97, 0x99] {
        crate::fuzzing::check_round_trip(&Packet::PubAck(resp(1, ReasonCode(code))), V5);
        crate::fuzzing::check_round_trip(&Packet::PubRec(resp(1, ReasonCode(code))), V5);
    }
}

#[test] // [MQTT-2.1.3-1] PUBREL flags are 0010, the others 0000.
fn pub_resp_reserved_flags_are_malformed() {
    for v in ALL {
        for byte1 in [0x60, 0x63, 0x6A, 0x42, 0x41, 0x52, 0x72, 0x78] {
            malformed(&[byte1, 0x02, 0x00, 0x01], v);
        }
    }
}

#[test] // Acknowledgements name a packet identifier that was in use, so never 0.
fn pub_resp_packet_id_0_is_a_protocol_error() {
    for (ctor, byte1) in ACKS {
        protocol(&[byte1, 0x02, 0x00, 0x00], V311);
        assert!(matches!(
            enc_err(&ctor(PubResp::new(0)), V5),
            EncodeError::Invalid { .. }
        ));
    }
}

#[test] // MQTT 5.0 table 2-4: only reason string and user properties on acknowledgements.
fn pub_resp_disallowed_property_is_malformed() {
    malformed(
        &B::new()
            .u16(1)
            .u8(0)
            .props(B::new().u8(0x23).u16(1))
            .frame(0x40),
        V5,
    );
    let mut r = resp(1, ReasonCode::SUCCESS);
    r.properties.topic_alias = Some(1);
    assert!(matches!(
        enc_err(&Packet::PubAck(r), V5),
        EncodeError::Invalid { .. }
    ));
}
