//! SUBSCRIBE, SUBACK, UNSUBSCRIBE and UNSUBACK.

use super::*;
use crate::{
    Properties, QoS, ReasonCode, RetainHandling, SubAck, Subscribe, SubscriptionOptions, UnsubAck,
    Unsubscribe,
};

fn opts(qos: QoS) -> SubscriptionOptions {
    SubscriptionOptions {
        qos,
        ..SubscriptionOptions::default()
    }
}

fn subscribe(filters: &[(&str, SubscriptionOptions)]) -> Subscribe {
    Subscribe {
        packet_id: 10,
        filters: filters.iter().map(|(f, o)| (f.to_string(), *o)).collect(),
        properties: Properties::default(),
    }
}

#[test] // MQTT 3.1.1 section 3.8.
fn subscribe_v3_wire_format() {
    let s = subscribe(&[
        ("a/b", opts(QoS::AtLeastOnce)),
        ("c/#", opts(QoS::ExactlyOnce)),
        ("+", opts(QoS::AtMostOnce)),
    ]);
    let bytes = B::new()
        .u16(10)
        .str("a/b")
        .u8(1)
        .str("c/#")
        .u8(2)
        .str("+")
        .u8(0)
        .frame(0x82);
    wire(&Packet::Subscribe(s.clone()), V311, &bytes);
    wire(&Packet::Subscribe(s), V31, &bytes);
}

#[test] // MQTT 5.0 section 3.8.3.1: the subscription options byte.
fn subscribe_v5_wire_format() {
    let o = SubscriptionOptions {
        qos: QoS::ExactlyOnce,
        no_local: true,
        retain_as_published: true,
        retain_handling: RetainHandling::DoNotSend,
    };
    let mut s = subscribe(&[("a/+", o), ("$share/g/x", opts(QoS::AtLeastOnce))]);
    s.properties.subscription_identifiers = vec![200];
    s.properties.user_properties = vec![("u".into(), "v".into())];
    let props = B::new().u8(0x0B).varint(200).u8(0x26).str("u").str("v");
    let bytes = B::new()
        .u16(10)
        .props(props)
        .str("a/+")
        .u8(0x2E)
        .str("$share/g/x")
        .u8(0x01)
        .frame(0x82);
    wire(&Packet::Subscribe(s.clone()), V5, &bytes);

    // 3.1.1 carries only the QoS.
    let bytes = B::new()
        .u16(10)
        .str("a/+")
        .u8(0x02)
        .str("$share/g/x")
        .u8(0x01)
        .frame(0x82);
    assert_eq!(enc(&Packet::Subscribe(s), V311), bytes);
}

#[test]
fn subscribe_retain_handling_values() {
    for (rh, bits) in [
        (RetainHandling::SendAtSubscribe, 0x00),
        (RetainHandling::SendIfNew, 0x10),
        (RetainHandling::DoNotSend, 0x20),
    ] {
        let s = subscribe(&[(
            "t",
            SubscriptionOptions {
                retain_handling: rh,
                ..opts(QoS::AtMostOnce)
            },
        )]);
        wire(
            &Packet::Subscribe(s),
            V5,
            &B::new().u16(10).u8(0).str("t").u8(bits).frame(0x82),
        );
    }
}

#[test] // [MQTT-3.8.3-3] at least one topic filter.
fn subscribe_without_filters_is_a_protocol_error() {
    protocol(&B::new().u16(10).frame(0x82), V311);
    protocol(&B::new().u16(10).u8(0).frame(0x82), V5);
    assert!(matches!(
        enc_err(&Packet::Subscribe(subscribe(&[])), V5),
        EncodeError::Invalid { .. }
    ));
}

#[test] // [MQTT-2.2.1-3] (3.1.1 [MQTT-2.3.1-1]) SUBSCRIBE needs a non-zero packet identifier.
fn subscribe_packet_id_0_is_a_protocol_error() {
    protocol(&B::new().u16(0).str("a").u8(0).frame(0x82), V311);
    let mut s = subscribe(&[("a", opts(QoS::AtMostOnce))]);
    s.packet_id = 0;
    assert!(matches!(
        enc_err(&Packet::Subscribe(s), V311),
        EncodeError::Invalid { .. }
    ));
}

#[test] // [MQTT-3.8.1-1] SUBSCRIBE fixed header flags are 0010.
fn subscribe_reserved_flags_are_malformed() {
    for byte1 in [0x80, 0x83, 0x8A] {
        malformed(&B::new().u16(10).str("a").u8(0).frame(byte1), V311);
    }
}

#[test] // 3.1.1 [MQTT-3-8.3-4]: the upper 6 bits of the requested QoS byte are reserved; QoS 3 invalid.
fn subscribe_v3_reserved_option_bits_are_malformed() {
    for byte in [0x03, 0x04, 0x08, 0x10, 0x40, 0x80] {
        malformed(&B::new().u16(10).str("a").u8(byte).frame(0x82), V311);
    }
}

#[test] // [MQTT-3.8.3-5] bits 6 and 7 of the subscription options are reserved: malformed.
fn subscribe_v5_reserved_option_bits_are_malformed() {
    for byte in [0x40, 0x80, 0xC1] {
        malformed(&B::new().u16(10).u8(0).str("a").u8(byte).frame(0x82), V5);
    }
}

#[test] // MQTT 5.0 3.8.3.1: "It is a Protocol Error ... Maximum QoS field has the value 3 / Retain Handling 3".
fn subscribe_v5_qos_3_or_retain_handling_3_is_a_protocol_error() {
    protocol(&B::new().u16(10).u8(0).str("a").u8(0x03).frame(0x82), V5);
    protocol(&B::new().u16(10).u8(0).str("a").u8(0x30).frame(0x82), V5);
}

#[test] // [MQTT-3.8.3-4] No Local on a shared subscription is a protocol error.
fn subscribe_no_local_on_shared_subscription() {
    protocol(
        &B::new()
            .u16(10)
            .u8(0)
            .str("$share/g/a")
            .u8(0x04)
            .frame(0x82),
        V5,
    );
    let s = subscribe(&[(
        "$share/g/a",
        SubscriptionOptions {
            no_local: true,
            ..opts(QoS::AtMostOnce)
        },
    )]);
    assert!(matches!(
        enc_err(&Packet::Subscribe(s), V5),
        EncodeError::Invalid { .. }
    ));
}

#[test] // [MQTT-4.7.1-1] [MQTT-4.7.1-2] [MQTT-4.7.3-1] [MQTT-4.8.2-1] invalid topic filters are malformed.
fn subscribe_invalid_filters_are_malformed() {
    for f in [
        "",
        "a/#/b",
        "a+",
        "#a",
        "$share/g",
        "$share//a",
        "$share/g/",
    ] {
        malformed(&B::new().u16(10).str(f).u8(0).frame(0x82), V311);
        malformed(&B::new().u16(10).u8(0).str(f).u8(0).frame(0x82), V5);
        malformed(&B::new().u16(10).str(f).frame(0xA2), V311);
        let e = enc_err(
            &Packet::Subscribe(subscribe(&[(f, opts(QoS::AtMostOnce))])),
            V5,
        );
        assert!(matches!(e, EncodeError::Invalid { .. }));
    }
}

#[test] // A filter without its options byte is truncated.
fn subscribe_truncated_is_malformed() {
    malformed(&B::new().u16(10).str("a").frame(0x82), V311);
    malformed(&B::new().u16(10).str("a").u8(0).u8(0).frame(0x82), V311);
}

#[test] // MQTT 5.0 3.8.2.1.2: one subscription identifier, not 0.
fn subscribe_subscription_identifier_rules() {
    protocol(
        &B::new()
            .u16(10)
            .props(B::new().u8(0x0B).varint(0))
            .str("a")
            .u8(0)
            .frame(0x82),
        V5,
    );
    protocol(
        &B::new()
            .u16(10)
            .props(B::new().u8(0x0B).u8(1).u8(0x0B).u8(2))
            .str("a")
            .u8(0)
            .frame(0x82),
        V5,
    );
    let mut s = subscribe(&[("a", opts(QoS::AtMostOnce))]);
    s.properties.subscription_identifiers = vec![1, 2];
    assert!(matches!(
        enc_err(&Packet::Subscribe(s.clone()), V5),
        EncodeError::Invalid { .. }
    ));
    s.properties.subscription_identifiers = vec![0];
    assert!(matches!(
        enc_err(&Packet::Subscribe(s.clone()), V5),
        EncodeError::Invalid { .. }
    ));
    s.properties.subscription_identifiers = vec![268_435_456];
    assert!(matches!(
        enc_err(&Packet::Subscribe(s), V5),
        EncodeError::Invalid { .. }
    ));
}

fn suback(reasons: &[u8]) -> Packet {
    Packet::SubAck(SubAck {
        packet_id: 10,
        reasons: reasons.iter().map(|&r| ReasonCode(r)).collect(),
        properties: Properties::default(),
    })
}

#[test] // 3.1.1 [MQTT-3.9.3-2]: return codes 0x00, 0x01, 0x02, 0x80.
fn suback_v3() {
    for v in [V31, V311] {
        wire(
            &suback(&[0, 1, 2, 0x80]),
            v,
            &[0x90, 0x06, 0x00, 0x0A, 0x00, 0x01, 0x02, 0x80],
        );
        protocol(&[0x90, 0x03, 0x00, 0x0A, 0x03], v);
        protocol(&[0x90, 0x03, 0x00, 0x0A, 0x87], v);
        // Any MQTT 5 error is written as 0x80.
        assert_eq!(
            enc(&suback(&[0x87, 0xA2, 0x01]), v),
            [0x90, 0x05, 0x00, 0x0A, 0x80, 0x80, 0x01]
        );
    }
}

#[test] // MQTT 5.0 section 3.9.
fn suback_v5() {
    wire(
        &suback(&[0x00, 0x02, 0x87, 0xA2]),
        V5,
        &[0x90, 0x07, 0x00, 0x0A, 0x00, 0x00, 0x02, 0x87, 0xA2],
    );
    protocol(&[0x90, 0x04, 0x00, 0x0A, 0x00, 0x11], V5);
    assert!(matches!(
        enc_err(&suback(&[0x11]), V5),
        EncodeError::Invalid { .. }
    ));
    let mut a = SubAck {
        packet_id: 1,
        reasons: vec![ReasonCode::GRANTED_QOS_1],
        properties: Properties::default(),
    };
    a.properties.reason_string = Some("why".into());
    crate::fuzzing::check_round_trip(&Packet::SubAck(a), V5);
}

#[test] // One reason code per filter, and SUBSCRIBE has at least one.
fn suback_without_reasons_is_a_protocol_error() {
    protocol(&[0x90, 0x02, 0x00, 0x0A], V311);
    protocol(&[0x90, 0x03, 0x00, 0x0A, 0x00], V5);
    assert!(matches!(
        enc_err(&suback(&[]), V311),
        EncodeError::Invalid { .. }
    ));
}

fn unsubscribe(filters: &[&str]) -> Unsubscribe {
    Unsubscribe {
        packet_id: 11,
        filters: filters.iter().map(|f| f.to_string()).collect(),
        properties: Properties::default(),
    }
}

#[test] // MQTT 3.1.1 section 3.10 and MQTT 5.0 section 3.10.
fn unsubscribe_wire_format() {
    let u = unsubscribe(&["a/b", "$share/g/#"]);
    wire(
        &Packet::Unsubscribe(u.clone()),
        V311,
        &B::new().u16(11).str("a/b").str("$share/g/#").frame(0xA2),
    );
    wire(
        &Packet::Unsubscribe(u.clone()),
        V5,
        &B::new()
            .u16(11)
            .u8(0)
            .str("a/b")
            .str("$share/g/#")
            .frame(0xA2),
    );
    let mut u = u;
    u.properties.user_properties = vec![("k".into(), "v".into())];
    crate::fuzzing::check_round_trip(&Packet::Unsubscribe(u), V5);
}

#[test] // [MQTT-3.10.3-2] at least one topic filter; [MQTT-3.10.1-1] flags 0010; non-zero packet identifier.
fn unsubscribe_strictness() {
    protocol(&B::new().u16(11).frame(0xA2), V311);
    protocol(&B::new().u16(11).u8(0).frame(0xA2), V5);
    malformed(&B::new().u16(11).str("a").frame(0xA0), V311);
    protocol(&B::new().u16(0).str("a").frame(0xA2), V311);
    assert!(matches!(
        enc_err(&Packet::Unsubscribe(unsubscribe(&[])), V311),
        EncodeError::Invalid { .. }
    ));
    // MQTT 5.0 table 2-4: UNSUBSCRIBE carries only user properties.
    malformed(
        &B::new()
            .u16(11)
            .props(B::new().u8(0x0B).u8(1))
            .str("a")
            .frame(0xA2),
        V5,
    );
}

fn unsuback(reasons: &[u8]) -> Packet {
    Packet::UnsubAck(UnsubAck {
        packet_id: 11,
        reasons: reasons.iter().map(|&r| ReasonCode(r)).collect(),
        properties: Properties::default(),
    })
}

#[test] // MQTT 3.1.1 section 3.11: no payload.
fn unsuback_v3() {
    for v in [V31, V311] {
        wire(&unsuback(&[]), v, &[0xB0, 0x02, 0x00, 0x0B]);
        assert_eq!(enc(&unsuback(&[0x11, 0x80]), v), [0xB0, 0x02, 0x00, 0x0B]);
        malformed(&[0xB0, 0x03, 0x00, 0x0B, 0x00], v);
        protocol(&[0xB0, 0x02, 0x00, 0x00], v);
    }
}

#[test] // MQTT 5.0 section 3.11: one reason code per filter.
fn unsuback_v5() {
    wire(
        &unsuback(&[0x00, 0x11, 0x8F]),
        V5,
        &[0xB0, 0x06, 0x00, 0x0B, 0x00, 0x00, 0x11, 0x8F],
    );
    protocol(&[0xB0, 0x03, 0x00, 0x0B, 0x00], V5);
    protocol(&[0xB0, 0x04, 0x00, 0x0B, 0x00, 0x10], V5);
    assert!(matches!(
        enc_err(&unsuback(&[]), V5),
        EncodeError::Invalid { .. }
    ));
    assert!(matches!(
        enc_err(&unsuback(&[0x02]), V5),
        EncodeError::Invalid { .. }
    ));
}
