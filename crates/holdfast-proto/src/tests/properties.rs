//! MQTT 5 property rules (MQTT 5.0 section 2.2.2, table 2-4, and each property's own section).

use super::*;
use crate::{Properties, Publish, QoS};

/// A QoS 0 PUBLISH to "t" whose property section holds `props`.
fn publish_with(props: B) -> Vec<u8> {
    B::new().str("t").props(props).frame(0x30)
}

/// A CONNECT (MQTT 5) whose property section holds `props`.
fn connect_with(props: B) -> Vec<u8> {
    B::new()
        .str("MQTT")
        .u8(5)
        .u8(0x02)
        .u16(0)
        .props(props)
        .u16(0)
        .frame(0x10)
}

/// A CONNACK (MQTT 5) whose property section holds `props`.
fn connack_with(props: B) -> Vec<u8> {
    B::new().u8(0).u8(0).props(props).frame(0x20)
}

#[test] // MQTT 5.0 2.2.2.2: an identifier that is not defined is malformed.
fn unknown_property_is_malformed() {
    for id in [0x00, 0x04, 0x0A, 0x14, 0x2B, 0x7F] {
        malformed(&publish_with(B::new().u8(id).u8(0)), V5);
    }
    // A multi-byte identifier beyond the defined range.
    malformed(&publish_with(B::new().u8(0x80).u8(0x01)), V5);
}

#[test] // Identifiers are variable byte integers: a non-minimal encoding of a valid one is accepted.
fn property_identifier_is_a_variable_byte_integer() {
    let p = dec_ok(&publish_with(B::new().u8(0x81).u8(0x00).u8(1)), V5);
    let Packet::Publish(p) = p else { panic!() };
    assert_eq!(p.properties.payload_format_indicator, Some(1));
}

#[test] // MQTT 5.0 2.2.2.2: an identifier not valid for the packet type is malformed.
fn property_in_the_wrong_packet_is_malformed() {
    // Session expiry on PUBLISH, topic alias on CONNECT, will delay on CONNECT, assigned id on CONNECT.
    malformed(&publish_with(B::new().u8(0x11).u32(1)), V5);
    malformed(&connect_with(B::new().u8(0x23).u16(1)), V5);
    malformed(&connect_with(B::new().u8(0x18).u32(1)), V5);
    malformed(&connect_with(B::new().u8(0x12).str("x")), V5);
    // Request problem information on CONNACK, subscription identifier on CONNACK.
    malformed(&connack_with(B::new().u8(0x17).u8(1)), V5);
    malformed(&connack_with(B::new().u8(0x0B).u8(1)), V5);
    // Session expiry in the will properties.
    let will = B::new()
        .str("MQTT")
        .u8(5)
        .u8(0x06)
        .u16(0)
        .u8(0)
        .u16(0)
        .props(B::new().u8(0x11).u32(1))
        .str("w")
        .str("m");
    malformed(&will.frame(0x10), V5);
    // The encoder refuses the same.
    let mut p = Publish {
        dup: false,
        qos: QoS::AtMostOnce,
        retain: false,
        topic: "t".into(),
        packet_id: None,
        payload: Default::default(),
        properties: Properties::default(),
    };
    p.properties.session_expiry_interval = Some(1);
    assert!(matches!(
        enc_err(&Packet::Publish(p), V5),
        EncodeError::Invalid { .. }
    ));
}

#[test] // "It is a Protocol Error to include ... more than once" (each property's section).
fn duplicate_property_is_a_protocol_error() {
    protocol(&publish_with(B::new().u8(0x02).u32(1).u8(0x02).u32(2)), V5);
    protocol(
        &publish_with(B::new().u8(0x03).str("a").u8(0x03).str("a")),
        V5,
    );
    protocol(&connect_with(B::new().u8(0x21).u16(1).u8(0x21).u16(1)), V5);
    protocol(
        &connack_with(B::new().u8(0x1F).str("a").u8(0x1F).str("b")),
        V5,
    );
    // User properties and (in PUBLISH) subscription identifiers may repeat.
    dec_ok(
        &publish_with(
            B::new()
                .u8(0x26)
                .str("a")
                .str("b")
                .u8(0x26)
                .str("a")
                .str("b"),
        ),
        V5,
    );
    dec_ok(&publish_with(B::new().u8(0x0B).u8(1).u8(0x0B).u8(2)), V5);
}

#[test] // MQTT 5.0 3.3.2.3.8: subscription identifier 0 is a protocol error; at most 4 bytes.
fn subscription_identifier_values() {
    protocol(&publish_with(B::new().u8(0x0B).u8(0)), V5);
    malformed(
        &publish_with(B::new().u8(0x0B).raw(&[0xFF, 0xFF, 0xFF, 0xFF, 0x01])),
        V5,
    );
    let p = dec_ok(
        &publish_with(B::new().u8(0x0B).raw(&[0xFF, 0xFF, 0xFF, 0x7F])),
        V5,
    );
    let Packet::Publish(p) = p else { panic!() };
    assert_eq!(p.properties.subscription_identifiers, vec![268_435_455]);
}

#[test] // MQTT 5.0 3.1.2.11.3 / 3.2.2.3.3: receive maximum 0 is a protocol error.
fn receive_maximum_0() {
    protocol(&connect_with(B::new().u8(0x21).u16(0)), V5);
    protocol(&connack_with(B::new().u8(0x21).u16(0)), V5);
}

#[test] // MQTT 5.0 3.1.2.11.4 / 3.2.2.3.6: maximum packet size 0 is a protocol error.
fn maximum_packet_size_0() {
    protocol(&connect_with(B::new().u8(0x27).u32(0)), V5);
    protocol(&connack_with(B::new().u8(0x27).u32(0)), V5);
}

#[test] // Byte properties that are booleans: only 0 and 1 (MQTT 5.0 3.1.2.11.6/7, 3.2.2.3.4/5/11/12/13, 3.3.2.3.2).
fn boolean_properties_only_0_or_1() {
    protocol(&publish_with(B::new().u8(0x01).u8(2)), V5);
    protocol(&connect_with(B::new().u8(0x17).u8(2)), V5);
    protocol(&connect_with(B::new().u8(0x19).u8(2)), V5);
    for id in [0x24, 0x25, 0x28, 0x29, 0x2A] {
        protocol(&connack_with(B::new().u8(id).u8(2)), V5);
        dec_ok(&connack_with(B::new().u8(id).u8(1)), V5);
    }
    let mut p = Properties::from(crate::PropertySet {
        maximum_qos: Some(2),
        ..Default::default()
    });
    let ack = |p: &Properties| {
        Packet::ConnAck(crate::ConnAck {
            session_present: false,
            reason: crate::ReasonCode::SUCCESS,
            properties: p.clone(),
        })
    };
    assert!(matches!(enc_err(&ack(&p), V5), EncodeError::Invalid { .. }));
    p.maximum_qos = Some(1);
    crate::fuzzing::check_round_trip(&ack(&p), V5);
}

#[test] // MQTT 5.0 3.3.2.3.4: topic alias 0 is not permitted; [MQTT-3.3.2-14] response topic has no wildcards.
fn topic_alias_and_response_topic() {
    protocol(&publish_with(B::new().u8(0x23).u16(0)), V5);
    protocol(&publish_with(B::new().u8(0x08).str("a/#")), V5);
    protocol(&publish_with(B::new().u8(0x08).str("")), V5);
}

#[test] // The property length must fit the packet, and every property must fit the property length.
fn property_lengths_are_checked() {
    // Property length beyond the packet.
    malformed(&B::new().str("t").varint(10).u8(0x01).u8(1).frame(0x30), V5);
    // A property running past the property length (into the payload).
    malformed(&B::new().str("t").varint(2).u8(0x02).u32(1).frame(0x30), V5);
    // A property length over 4 bytes.
    malformed(
        &B::new()
            .str("t")
            .raw(&[0x80, 0x80, 0x80, 0x80, 0x00])
            .frame(0x30),
        V5,
    );
    // A string property with a bad length.
    malformed(&publish_with(B::new().u8(0x03).u16(3).raw(b"ab")), V5);
    // Strings in properties follow the UTF-8 rules [MQTT-1.5.4-1] [MQTT-1.5.4-2].
    malformed(&publish_with(B::new().u8(0x03).str("a\0")), V5);
    malformed(&publish_with(B::new().u8(0x26).str("k").str(b"\xC3")), V5);
}

#[test] // Properties are ignored entirely before MQTT 5: the bytes would be payload.
fn no_properties_before_v5() {
    let bytes = B::new().str("t").u8(0).frame(0x30);
    let Packet::Publish(p) = dec_ok(&bytes, V311) else {
        panic!()
    };
    assert_eq!(&p.payload[..], &[0]);
    assert!(p.properties.is_empty());
}
