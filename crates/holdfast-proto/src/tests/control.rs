//! PINGREQ, PINGRESP, DISCONNECT, AUTH and reserved packet types.

use bytes::Bytes;

use super::*;
use crate::{Auth, Disconnect, Properties, ReasonCode};

#[test] // MQTT 3.1.1 sections 3.12, 3.13: remaining length 0.
fn ping() {
    for v in ALL {
        wire(&Packet::PingReq, v, &[0xC0, 0x00]);
        wire(&Packet::PingResp, v, &[0xD0, 0x00]);
        malformed(&[0xC0, 0x01, 0x00], v);
        malformed(&[0xD0, 0x01, 0x00], v);
        // [MQTT-2.1.3-1] reserved flags.
        malformed(&[0xC1, 0x00], v);
        malformed(&[0xD8, 0x00], v);
    }
}

#[test] // MQTT 5.0 table 2-1 / 3.1.1 table 2.1: packet type 0 is reserved; 15 is AUTH in MQTT 5 only.
fn reserved_packet_types_are_malformed() {
    for v in ALL {
        malformed(&[0x00, 0x00], v);
    }
    malformed(&[0xF0, 0x00], V311);
    malformed(&[0xF0, 0x00], V31);
    assert!(matches!(
        enc_err(&Packet::Auth(Auth::default()), V311),
        EncodeError::Invalid { .. }
    ));
}

fn disconnect(reason: ReasonCode) -> Packet {
    Packet::Disconnect(Disconnect {
        reason,
        properties: Properties::default(),
    })
}

#[test] // MQTT 3.1.1 section 3.14: no variable header; MQTT 5 fields are left out.
fn disconnect_v3() {
    for v in [V31, V311] {
        wire(&disconnect(ReasonCode::SUCCESS), v, &[0xE0, 0x00]);
        assert_eq!(
            enc(&disconnect(ReasonCode::SERVER_SHUTTING_DOWN), v),
            [0xE0, 0x00]
        );
        malformed(&[0xE0, 0x01, 0x00], v);
        malformed(&[0xE1, 0x00], v); // [MQTT-2.1.3-1]
    }
}

#[test] // MQTT 5.0 3.14.2.1: reason code and properties may be omitted; we omit only both.
fn disconnect_v5_short_forms() {
    wire(&disconnect(ReasonCode::SUCCESS), V5, &[0xE0, 0x00]);
    wire(
        &disconnect(ReasonCode::SESSION_TAKEN_OVER),
        V5,
        &[0xE0, 0x02, 0x8E, 0x00],
    );
    assert_eq!(
        dec_ok(&[0xE0, 0x01, 0x8E], V5),
        disconnect(ReasonCode::SESSION_TAKEN_OVER)
    );
    wire(
        &disconnect(ReasonCode::DISCONNECT_WITH_WILL),
        V5,
        &[0xE0, 0x02, 0x04, 0x00],
    );
    assert_eq!(
        dec_ok(&[0xE0, 0x01, 0x00], V5),
        disconnect(ReasonCode::SUCCESS)
    );
    assert_eq!(
        dec_ok(&[0xE0, 0x02, 0x00, 0x00], V5),
        disconnect(ReasonCode::SUCCESS)
    );
    let d = Disconnect {
        reason: ReasonCode::SUCCESS,
        properties: Properties::from(crate::PropertySet {
            session_expiry_interval: Some(0),
            reason_string: Some("bye".into()),
            server_reference: Some("elsewhere".into()),
            user_properties: vec![("a".into(), "b".into())],
            ..Default::default()
        }),
    };
    crate::fuzzing::check_round_trip(&Packet::Disconnect(d), V5);
    malformed(&[0xE0, 0x03, 0x00, 0x00, 0x00], V5);
}

#[test] // MQTT 5.0 section 3.14.2.1 and table 2-4.
fn disconnect_v5_strictness() {
    protocol(&[0xE0, 0x01, 0x84], V5);
    protocol(&[0xE0, 0x01, 0x01], V5);
    malformed(
        &B::new().u8(0).props(B::new().u8(0x18).u32(1)).frame(0xE0),
        V5,
    );
    assert!(matches!(
        enc_err(&disconnect(ReasonCode::GRANTED_QOS_1), V5),
        EncodeError::Invalid { .. }
    ));
}

#[test] // MQTT 5.0 section 3.15.
fn auth_v5() {
    wire(&Packet::Auth(Auth::default()), V5, &[0xF0, 0x00]);
    let a = Auth {
        reason: ReasonCode::CONTINUE_AUTHENTICATION,
        properties: Properties::default(),
    };
    wire(&Packet::Auth(a.clone()), V5, &[0xF0, 0x02, 0x18, 0x00]);
    // The one-byte form is accepted too.
    assert_eq!(dec_ok(&[0xF0, 0x01, 0x18], V5), Packet::Auth(a));
    let a = Auth {
        reason: ReasonCode::REAUTHENTICATE,
        properties: Properties::from(crate::PropertySet {
            authentication_method: Some("SCRAM-SHA-1".into()),
            authentication_data: Some(Bytes::from_static(b"\x01\x02")),
            reason_string: Some("again".into()),
            ..Default::default()
        }),
    };
    crate::fuzzing::check_round_trip(&Packet::Auth(a), V5);
    protocol(&[0xF0, 0x01, 0x80], V5);
    malformed(&[0xF1, 0x00], V5); // [MQTT-2.1.3-1]
                                  // MQTT 5.0 3.15.2.2.3: authentication data without a method.
    protocol(
        &B::new()
            .u8(0x18)
            .props(B::new().u8(0x16).str("d"))
            .frame(0xF0),
        V5,
    );
}
