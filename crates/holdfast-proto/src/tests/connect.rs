//! CONNECT and CONNACK in every version.

use bytes::Bytes;

use super::*;
use crate::{ConnAck, Connect, Properties, QoS, ReasonCode, Will};

fn connect(protocol: ProtocolVersion) -> Connect {
    Connect {
        protocol,
        clean_start: true,
        keep_alive: 60,
        client_id: String::new(),
        will: None,
        username: None,
        password: None,
        properties: Properties::default(),
    }
}

/// Variable header of a CONNECT up to (not including) the flags byte.
fn head(name: &str, level: u8) -> B {
    B::new().str(name).u8(level)
}

#[test] // MQTT 3.1.1 section 3.1, figure 3.6 style minimal CONNECT.
fn connect_v311_minimal() {
    let bytes = [
        0x10, 0x0C, 0x00, 0x04, b'M', b'Q', b'T', b'T', 0x04, 0x02, 0x00, 0x3C, 0x00, 0x00,
    ];
    wire(&Packet::Connect(Box::new(connect(V311))), V311, &bytes);
}

#[test] // MQTT 3.1: protocol name "MQIsdp", level 3.
fn connect_v31_minimal() {
    let mut c = connect(V31);
    c.client_id = "abc".into();
    let bytes = head("MQIsdp", 3).u8(0x02).u16(60).str("abc").frame(0x10);
    wire(&Packet::Connect(Box::new(c)), V31, &bytes);
}

#[test] // MQTT 5.0: an empty property section follows the keep alive.
fn connect_v5_minimal() {
    let bytes = head("MQTT", 5).u8(0x02).u16(60).u8(0).u16(0).frame(0x10);
    wire(&Packet::Connect(Box::new(connect(V5))), V5, &bytes);
}

fn full_will(v5: bool) -> Will {
    let mut properties = Properties::default();
    if v5 {
        properties.will_delay_interval = Some(30);
        properties.payload_format_indicator = Some(1);
        properties.message_expiry_interval = Some(3600);
        properties.content_type = Some("text/plain".into());
        properties.response_topic = Some("reply/here".into());
        properties.correlation_data = Some(Bytes::from_static(b"\x00\x01"));
        properties.user_properties = vec![("k".into(), "v".into()), ("k".into(), "w".into())];
    }
    Will {
        topic: "will/topic".into(),
        payload: Bytes::from_static(b"gone"),
        qos: QoS::ExactlyOnce,
        retain: true,
        properties,
    }
}

#[test]
fn connect_with_everything_round_trips_in_each_version() {
    for v in ALL {
        let mut c = connect(v);
        c.clean_start = false;
        c.keep_alive = 0xFFFF;
        c.client_id = "client-é".into();
        c.will = Some(full_will(v.is_v5()));
        c.username = Some("user".into());
        c.password = Some(Bytes::from_static(b"\xFFsecret"));
        if v.is_v5() {
            c.properties.session_expiry_interval = Some(u32::MAX);
            c.properties.receive_maximum = Some(10);
            c.properties.maximum_packet_size = Some(1 << 20);
            c.properties.topic_alias_maximum = Some(0);
            c.properties.request_response_information = Some(1);
            c.properties.request_problem_information = Some(0);
            c.properties.authentication_method = Some("SCRAM".into());
            c.properties.authentication_data = Some(Bytes::from_static(b"data"));
            c.properties.user_properties = vec![("a".into(), "b".into())];
        }
        let p = Packet::Connect(Box::new(c));
        let bytes = enc(&p, v);
        // Flags: user name, password, will retain, will QoS 2, will flag; clean start 0.
        let h = crate::read_fixed_header(&bytes, usize::MAX)
            .unwrap()
            .unwrap();
        let flags_at = h.header_len + 2 + if v == V31 { 6 } else { 4 } + 1;
        assert_eq!(bytes[flags_at], 0x80 | 0x40 | 0x20 | 0x10 | 0x04);
        crate::fuzzing::check_round_trip(&p, v);
    }
}

#[test] // CONNECT carries its own version: the `version` argument does not matter.
fn connect_is_decoded_by_its_own_protocol_level() {
    let bytes = head("MQTT", 5).u8(0x02).u16(60).u8(0).u16(0).frame(0x10);
    for v in ALL {
        assert_eq!(dec_ok(&bytes, v), Packet::Connect(Box::new(connect(V5))));
    }
    let bytes = head("MQTT", 4).u8(0x02).u16(60).u16(0).frame(0x10);
    assert_eq!(dec_ok(&bytes, V5), Packet::Connect(Box::new(connect(V311))));
}

#[test] // [MQTT-3.1.2-2] a known protocol name with an unsupported level: answer CONNACK 0x84 / 1.
fn unsupported_protocol_level() {
    for (name, level) in [
        ("MQTT", 3),
        ("MQTT", 6),
        ("MQTT", 0),
        ("MQIsdp", 4),
        ("MQIsdp", 5),
    ] {
        let bytes = head(name, level).u8(0x02).u16(60).u16(0).frame(0x10);
        let e = dec_err(&bytes, V5);
        assert!(
            matches!(e, DecodeError::UnsupportedProtocol(_)),
            "{name} {level}: {e:?}"
        );
        assert_eq!(e.reason_code(), ReasonCode::UNSUPPORTED_PROTOCOL_VERSION);
    }
}

#[test] // [MQTT-3.1.2-1] an unknown protocol name is not MQTT.
fn unknown_protocol_name_is_malformed() {
    for name in ["MQTX", "mqtt", "", "MQIsdpX"] {
        malformed(&head(name, 4).u8(0x02).u16(60).u16(0).frame(0x10), V311);
    }
}

#[test] // [MQTT-3.1.2-3] the reserved connect flag must be 0.
fn connect_reserved_flag_is_malformed() {
    for (name, level) in [("MQTT", 4), ("MQTT", 5), ("MQIsdp", 3)] {
        let mut b = head(name, level).u8(0x03).u16(60);
        if level == 5 {
            b = b.u8(0);
        }
        malformed(&b.u16(0).frame(0x10), V311);
    }
}

#[test] // [MQTT-2.1.3-1] CONNECT fixed header flags are reserved 0.
fn connect_fixed_header_flags_are_malformed() {
    malformed(&head("MQTT", 4).u8(0x02).u16(60).u16(0).frame(0x11), V311);
}

#[test] // [MQTT-3.1.2-11] [MQTT-3.1.2-13] (3.1.1 -13/-15): will QoS and retain need the will flag.
fn will_qos_or_retain_without_will_flag_is_malformed() {
    for flags in [0x02 | 0x08, 0x02 | 0x10, 0x02 | 0x20] {
        malformed(&head("MQTT", 4).u8(flags).u16(60).u16(0).frame(0x10), V311);
        malformed(
            &head("MQTT", 5).u8(flags).u16(60).u8(0).u16(0).frame(0x10),
            V5,
        );
    }
}

#[test] // [MQTT-3.1.2-12] (3.1.1 [MQTT-3.1.2-14]) will QoS 3 is malformed.
fn will_qos_3_is_malformed() {
    let bytes = head("MQTT", 4)
        .u8(0x02 | 0x04 | 0x18)
        .u16(60)
        .u16(0)
        .str("w")
        .str("m")
        .frame(0x10);
    malformed(&bytes, V311);
}

#[test] // 3.1.1 [MQTT-3.1.2-22]: password flag without user name flag is malformed; MQTT 5 allows it.
fn password_without_user_name() {
    let bytes = head("MQTT", 4)
        .u8(0x42)
        .u16(60)
        .u16(0)
        .str("pw")
        .frame(0x10);
    malformed(&bytes, V311);
    let bytes = head("MQIsdp", 3)
        .u8(0x42)
        .u16(60)
        .u16(0)
        .str("pw")
        .frame(0x10);
    malformed(&bytes, V31);

    let bytes = head("MQTT", 5)
        .u8(0x42)
        .u16(60)
        .u8(0)
        .u16(0)
        .str("pw")
        .frame(0x10);
    let mut c = connect(V5);
    c.password = Some(Bytes::from_static(b"pw"));
    wire(&Packet::Connect(Box::new(c.clone())), V5, &bytes);

    c.protocol = V311;
    assert!(matches!(
        enc_err(&Packet::Connect(Box::new(c)), V311),
        EncodeError::Invalid { .. }
    ));
}

#[test] // [MQTT-1.5.4-1] [MQTT-1.5.4-2] strings are well-formed UTF-8 without U+0000.
fn client_id_must_be_valid_utf8_without_nul() {
    for bad in [
        &b"a\0b"[..],
        b"\xFF",
        b"\xED\xA0\x80", /* surrogate U+D800 */
        b"\xC0\x80",     /* overlong NUL */
    ] {
        malformed(&head("MQTT", 4).u8(0x02).u16(60).str(bad).frame(0x10), V311);
    }
    let mut c = connect(V311);
    c.client_id = "a\0b".into();
    assert!(matches!(
        enc_err(&Packet::Connect(Box::new(c)), V311),
        EncodeError::Invalid { .. }
    ));
}

#[test] // [MQTT-3.3.2-2] applied to the will topic: no wildcards.
fn will_topic_with_wildcard_is_rejected() {
    let bytes = head("MQTT", 4)
        .u8(0x06)
        .u16(60)
        .u16(0)
        .str("a/+")
        .str("m")
        .frame(0x10);
    assert!(matches!(
        dec_err(&bytes, V311),
        DecodeError::TopicName { .. }
    ));
}

#[test] // Extra bytes after the last declared field are malformed.
fn connect_trailing_bytes_are_malformed() {
    malformed(
        &head("MQTT", 4).u8(0x02).u16(60).u16(0).u8(0).frame(0x10),
        V311,
    );
    // A field that runs past the end.
    malformed(
        &head("MQTT", 4)
            .u8(0x02)
            .u16(60)
            .u16(5)
            .raw(b"ab")
            .frame(0x10),
        V311,
    );
    // User name flag without a user name.
    malformed(&head("MQTT", 4).u8(0x82).u16(60).u16(0).frame(0x10), V311);
}

#[test]
fn encoder_refuses_strings_over_65535_bytes() {
    let mut c = connect(V311);
    c.client_id = "x".repeat(65_536);
    assert!(matches!(
        enc_err(&Packet::Connect(Box::new(c)), V311),
        EncodeError::Invalid { .. }
    ));
    let mut c = connect(V311);
    c.client_id = "x".repeat(65_535);
    crate::fuzzing::check_round_trip(&Packet::Connect(Box::new(c)), V311);
}

fn connack(session_present: bool, reason: ReasonCode) -> Packet {
    Packet::ConnAck(ConnAck {
        session_present,
        reason,
        properties: Properties::default(),
    })
}

#[test] // MQTT 3.1.1 section 3.2: return codes 0-5 map to reason codes and back.
fn connack_v311_return_codes() {
    wire(
        &connack(true, ReasonCode::SUCCESS),
        V311,
        &[0x20, 0x02, 0x01, 0x00],
    );
    for code in 0..=5u8 {
        let reason = ReasonCode::from_v3_connack(code);
        assert_eq!(reason.to_v3_connack(), code);
        wire(&connack(false, reason), V311, &[0x20, 0x02, 0x00, code]);
        wire(&connack(false, reason), V31, &[0x20, 0x02, 0x00, code]);
    }
    // Any other reason code is written as the closest return code.
    assert_eq!(
        enc(&connack(false, ReasonCode::BANNED), V311),
        [0x20, 0x02, 0x00, 0x05]
    );
    assert_eq!(
        enc(&connack(false, ReasonCode::PACKET_TOO_LARGE), V311),
        [0x20, 0x02, 0x00, 0x03]
    );
}

#[test] // MQTT 3.1.1 table 3.1: return codes 6-255 are reserved.
fn connack_v311_reserved_return_code() {
    protocol(&[0x20, 0x02, 0x00, 0x06], V311);
    protocol(&[0x20, 0x02, 0x00, 0xFF], V31);
}

#[test] // [MQTT-3.2.2-1] reserved acknowledge flag bits 7-1.
fn connack_reserved_flags_are_malformed() {
    malformed(&[0x20, 0x02, 0x02, 0x00], V311);
    malformed(&[0x20, 0x03, 0x80, 0x00, 0x00], V5);
}

#[test] // MQTT 3.1 has no session present flag: the byte is not interpreted.
fn connack_v31_has_no_session_present() {
    assert_eq!(
        dec_ok(&[0x20, 0x02, 0x01, 0x00], V31),
        connack(false, ReasonCode::SUCCESS)
    );
    assert_eq!(
        enc(&connack(true, ReasonCode::SUCCESS), V31),
        [0x20, 0x02, 0x00, 0x00]
    );
}

#[test] // [MQTT-3.2.2-6] (3.1.1 [MQTT-3.2.2-4]) session present must be 0 with an error code.
fn connack_session_present_with_error() {
    protocol(&[0x20, 0x02, 0x01, 0x05], V311);
    protocol(&[0x20, 0x03, 0x01, 0x87, 0x00], V5);
    // The encoder clears it instead.
    assert_eq!(
        enc(&connack(true, ReasonCode::NOT_AUTHORIZED), V311),
        [0x20, 0x02, 0x00, 0x05]
    );
    assert_eq!(
        enc(&connack(true, ReasonCode::NOT_AUTHORIZED), V5),
        [0x20, 0x03, 0x00, 0x87, 0x00]
    );
}

#[test] // MQTT 5.0 section 3.2: reason code and properties always present.
fn connack_v5() {
    wire(
        &connack(true, ReasonCode::SUCCESS),
        V5,
        &[0x20, 0x03, 0x01, 0x00, 0x00],
    );
    wire(
        &connack(false, ReasonCode::UNSUPPORTED_PROTOCOL_VERSION),
        V5,
        &[0x20, 0x03, 0x00, 0x84, 0x00],
    );
    // The property length may not be left out.
    malformed(&[0x20, 0x02, 0x00, 0x00], V5);
    let mut p = Properties::from(crate::PropertySet {
        session_expiry_interval: Some(10),
        receive_maximum: Some(100),
        maximum_qos: Some(1),
        retain_available: Some(0),
        maximum_packet_size: Some(65_536),
        assigned_client_identifier: Some("auto-1".into()),
        topic_alias_maximum: Some(10),
        reason_string: Some("welcome".into()),
        wildcard_subscription_available: Some(1),
        subscription_identifier_available: Some(0),
        shared_subscription_available: Some(1),
        server_keep_alive: Some(30),
        response_information: Some("resp/".into()),
        server_reference: Some("other:1883".into()),
        authentication_method: Some("m".into()),
        authentication_data: Some(Bytes::from_static(b"d")),
        ..Default::default()
    });
    p.user_properties.push(("x".into(), "y".into()));
    crate::fuzzing::check_round_trip(
        &Packet::ConnAck(ConnAck {
            session_present: false,
            reason: ReasonCode::SUCCESS,
            properties: p,
        }),
        V5,
    );
}

#[test] // MQTT 5.0 table 2-6: CONNACK may only carry its own reason codes.
fn connack_v5_invalid_reason_code() {
    protocol(&[0x20, 0x03, 0x00, 0x01, 0x00], V5);
    protocol(&[0x20, 0x03, 0x00, 0x8E, 0x00], V5);
    assert!(matches!(
        enc_err(&connack(false, ReasonCode::SESSION_TAKEN_OVER), V5),
        EncodeError::Invalid { .. }
    ));
}

#[test] // 3.1.1: CONNACK remaining length is exactly 2.
fn connack_v311_trailing_bytes_are_malformed() {
    malformed(&[0x20, 0x03, 0x00, 0x00, 0x00], V311);
    malformed(&[0x20, 0x01, 0x00], V311);
}
