//! Malformed and forbidden input, sent as raw bytes over TCP (hand-built packets, no codec
//! crate). After each violation the broker must close that connection within the timeout and
//! still serve a fresh, well-behaved client.
//!
//! MQTT 3.1.1 [MQTT-4.8.0-1]: on a protocol violation the server MUST close the connection.
//! MQTT 5 [MQTT-4.13.1-1]: the same; in the case of an error in a packet other than CONNECT
//! it SHOULD send a DISCONNECT with the reason code first (4.13.1), so a v5 connection may see
//! one DISCONNECT with one of the reason codes the test allows, and where Holdfast promises
//! one the test requires it.

mod support;

use support::raw::{
    self, assert_broker_alive, lp, packet, publish, subscribe, Connect, RawConn, RawPacket,
};
use support::{is_mosquitto, Broker};

#[derive(Clone, Copy, Debug, PartialEq)]
enum V {
    V311,
    V5,
}

fn connect_for(v: V, id: &str) -> Connect {
    match v {
        V::V311 => Connect::v4(id),
        V::V5 => Connect::v5(id),
    }
}

/// A connection that completed CONNECT/CONNACK.
fn connected(broker: &Broker, v: V, id: &str) -> (RawConn, RawPacket) {
    let mut c = RawConn::open(broker.addr());
    let ack = c.handshake(&connect_for(v, id));
    (c, ack)
}

/// The connection must close. In 3.1.1 nothing may be sent first; in v5 at most one
/// DISCONNECT with a reason code from `reasons` (required when `required`).
fn expect_close(c: &mut RawConn, ctx: &str, v: V, reasons: &[u8], required: bool) {
    let got = c.expect_closed(ctx);
    match (v, got.as_slice()) {
        (_, []) => assert!(
            !required,
            "{ctx}: expected a DISCONNECT with one of {reasons:02x?} before the close"
        ),
        (V::V5, [d]) if d.is_disconnect() => assert!(
            reasons.contains(&d.reason()),
            "{ctx}: DISCONNECT reason {:#04x}, expected one of {reasons:02x?}",
            d.reason()
        ),
        (_, other) => panic!("{ctx}: unexpected packets before the close: {other:?}"),
    }
}

/// The connection must close after at most one CONNACK, which must refuse the connection:
/// its return/reason code must be one of `codes`. `required`: the CONNACK must come.
fn expect_refused(c: &mut RawConn, ctx: &str, codes: &[u8], required: bool) {
    let got = c.expect_closed(ctx);
    match got.as_slice() {
        [] => assert!(
            !required,
            "{ctx}: expected a CONNACK with one of {codes:02x?} before the close"
        ),
        [ack] if ack.is_connack() => {
            assert!(
                codes.contains(&ack.reason()),
                "{ctx}: CONNACK code {:#04x}, expected one of {codes:02x?}",
                ack.reason()
            );
            assert_eq!(
                ack.body[0], 0,
                "{ctx}: [MQTT-3.2.2-4]/[MQTT-3.2.2-6] Session Present must be 0 on a refusal"
            );
        }
        other => panic!("{ctx}: unexpected packets before the close: {other:?}"),
    }
}

#[test] // [MQTT-3.1.0-1] [MQTT-2.2.2-2] Bytes that are not a CONNECT as the first packet close
        // the connection without any answer.
fn garbage_first_bytes_close_connection() {
    let broker = Broker::start();
    let garbage: [&[u8]; 4] = [
        &[0x00, 0x00],                         // reserved packet type 0
        &[0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF], // type 15 with bad flags, bad length
        // An HTTP request: 'G' (0x47) reads as a PUBACK with bad flags, 'E' as a remaining
        // length of 69, which the request supplies, so it is a complete (forbidden) packet.
        b"GET / HTTP/1.1\r\nHost: localhost\r\nUser-Agent: holdfast-tests\r\nAccept: */*\r\n\r\n",
        &[0x12, 0x00], // CONNECT type with reserved flags 0x2
    ];
    for g in garbage {
        let mut c = RawConn::open(broker.addr());
        c.send(g);
        expect_close(&mut c, &format!("garbage {g:02x?}"), V::V311, &[], false);
        assert_broker_alive(broker.addr());
    }
}

#[test] // [MQTT-3.1.0-1] The first packet must be CONNECT: PINGREQ, SUBSCRIBE or PUBLISH
        // first is answered by closing the connection, with nothing sent back.
fn first_packet_not_connect_closes_connection() {
    let broker = Broker::start();
    let first: [Vec<u8>; 3] = [
        raw::PINGREQ.to_vec(),
        subscribe(0x82, 1, b"x/y", 0, false),
        publish(b"x/y", 0, false, 0, b"hello", None),
    ];
    for p in first {
        let mut c = RawConn::open(broker.addr());
        c.send(&p);
        expect_close(
            &mut c,
            &format!("first packet {p:02x?}"),
            V::V311,
            &[],
            false,
        );
        assert_broker_alive(broker.addr());
    }
}

#[test] // [MQTT-3.1.2-1] A CONNECT with a wrong protocol name is not accepted: the server closes
        // the connection (a v5 server MAY first send CONNACK 0x84).
fn bad_protocol_name_closes_connection() {
    let broker = Broker::start();
    for (name, level) in [
        (&b"MQTX"[..], 4u8),
        (&b"MQTT"[..], 3),
        (&b"MQIsdp"[..], 5),
        (&b"mqtt"[..], 5),
    ] {
        let mut c = RawConn::open(broker.addr());
        let connect = Connect {
            protocol_name: name.to_vec(),
            level,
            ..Connect::v4("badname")
        };
        c.send(&connect.encode());
        let ctx = format!(
            "protocol name {:?} level {level}",
            String::from_utf8_lossy(name)
        );
        expect_refused(&mut c, &ctx, &[0x01, 0x84], false);
        assert_broker_alive(broker.addr());
    }
}

#[test] // [MQTT-3.1.2-2] An unsupported protocol level is answered with CONNACK return code 0x01
        // (3.1.1; v5 form: reason 0x84 Unsupported Protocol Version) and the connection closed.
fn unsupported_protocol_level_gets_connack_and_close() {
    let broker = Broker::start();
    for level in [0u8, 1, 2, 6, 7] {
        let mut c = RawConn::open(broker.addr());
        c.send(
            &Connect {
                level,
                ..Connect::v4("badlevel")
            }
            .encode(),
        );
        expect_refused(
            &mut c,
            &format!("protocol level {level}"),
            &[0x01, 0x84],
            true,
        );
        assert_broker_alive(broker.addr());
    }
}

#[test] // [MQTT-3.1.2-3] The reserved CONNECT flag must be 0, else the connection is closed
        // (v5: optionally after CONNACK 0x81 Malformed Packet).
fn reserved_connect_flag_closes_connection() {
    let broker = Broker::start();
    for v in [V::V311, V::V5] {
        let mut c = RawConn::open(broker.addr());
        c.send(
            &Connect {
                flags: Some(0x03),
                ..connect_for(v, "reserved")
            }
            .encode(),
        );
        expect_refused(&mut c, &format!("{v:?} reserved flag"), &[0x81], false);
        assert_broker_alive(broker.addr());
    }
}

#[test] // [MQTT-3.1.3-8] (3.1.1) A zero-byte ClientId with CleanSession 0 is refused with
        // CONNACK 0x02 (Identifier rejected) and the connection closed.
fn zero_length_client_id_without_clean_session_is_rejected() {
    let broker = Broker::start_with("[mqtt]\nallow_zero_length_client_id = true\n");
    let mut c = RawConn::open(broker.addr());
    c.send(
        &Connect {
            clean: false,
            ..Connect::v4("")
        }
        .encode(),
    );
    expect_refused(&mut c, "empty ClientId, CleanSession 0", &[0x02], true);
    assert_broker_alive(broker.addr());
}

#[test] // [MQTT-3.1.0-2] A second CONNECT is a protocol violation: the connection is closed;
        // v5: DISCONNECT 0x82 (Protocol Error) first (Holdfast sends it; Mosquitto does not).
fn second_connect_closes_connection() {
    let broker = Broker::start();
    for v in [V::V311, V::V5] {
        let (mut c, _) = connected(&broker, v, "twice");
        c.send(&connect_for(v, "twice").encode());
        expect_close(
            &mut c,
            &format!("{v:?} second CONNECT"),
            v,
            &[0x82],
            v == V::V5 && !is_mosquitto(),
        );
        assert_broker_alive(broker.addr());
    }
}

#[test] // [MQTT-3.3.1-4] A PUBLISH with both QoS bits set closes the connection
        // (v5: Malformed Packet 0x81).
fn publish_with_qos_3_closes_connection() {
    let broker = Broker::start();
    for v in [V::V311, V::V5] {
        let (mut c, _) = connected(&broker, v, "qos3");
        let mut body = lp(b"q/3");
        body.extend(1u16.to_be_bytes());
        if v == V::V5 {
            body.push(0);
        }
        body.extend(b"x");
        c.send(&packet(0x36, &body));
        expect_close(&mut c, &format!("{v:?} QoS 3"), v, &[0x81], false);
        assert_broker_alive(broker.addr());
    }
}

#[test] // [MQTT-4.8.0-1] / [MQTT-4.13.1-1] A Remaining Length encoded in 5 bytes (2.2.3: at most
        // 4) is malformed: the connection is closed.
fn remaining_length_of_five_bytes_closes_connection() {
    let broker = Broker::start();
    for v in [V::V311, V::V5] {
        let (mut c, _) = connected(&broker, v, "len5");
        c.send(&[0x30, 0x80, 0x80, 0x80, 0x80, 0x01]);
        expect_close(
            &mut c,
            &format!("{v:?} 5-byte remaining length"),
            v,
            &[0x81],
            false,
        );
        assert_broker_alive(broker.addr());
    }
}

#[test] // Maximum Packet Size (3.1.2.11.4 / 3.2.2.3.6): the CONNACK announces the configured
        // limit; a larger packet makes the server send DISCONNECT 0x95 (Packet too large) (v5)
        // and close the connection; a packet within the limit is fine.
fn packet_larger_than_max_packet_size() {
    let broker = Broker::start_with("[limits]\nmax_packet_size = 1024\n");
    for v in [V::V311, V::V5] {
        let (mut c, ack) = connected(&broker, v, "big");
        let props = (v == V::V5).then_some(&[][..]);
        if v == V::V5 {
            assert_eq!(
                ack.v5_property(0x27),
                Some(1024u32.to_be_bytes().to_vec()),
                "CONNACK Maximum Packet Size"
            );
        }
        c.send(&subscribe(0x82, 1, b"big/t", 1, v == V::V5));
        assert_eq!(c.expect_packet("SUBACK").first, 0x90);
        let fits = publish(b"big/t", 0, false, 0, &[b'a'; 900], props);
        assert!(fits.len() <= 1024);
        c.send(&fits);
        assert_eq!(
            c.expect_packet("PUBLISH within the limit"),
            RawPacket {
                first: fits[0],
                body: fits[3..].to_vec()
            }
        );
        c.send(&publish(b"big/t", 0, false, 0, &[b'b'; 2000], props));
        expect_close(
            &mut c,
            &format!("{v:?} packet of 2000 bytes"),
            v,
            &[0x95],
            v == V::V5,
        );
        assert_broker_alive(broker.addr());
    }
}

#[test] // [MQTT-3.3.2-2] [MQTT-4.7.0-1] A Topic Name with a wildcard is a protocol violation.
fn wildcard_in_publish_topic_closes_connection() {
    let broker = Broker::start();
    for v in [V::V311, V::V5] {
        for topic in [&b"a/+/b"[..], b"a/#", b"#", b"+"] {
            let (mut c, _) = connected(&broker, v, "wild");
            let props = (v == V::V5).then_some(&[][..]);
            c.send(&publish(topic, 1, false, 1, b"x", props));
            let ctx = format!("{v:?} PUBLISH to {:?}", String::from_utf8_lossy(topic));
            expect_close(&mut c, &ctx, v, &[0x81, 0x82, 0x90], false);
        }
        assert_broker_alive(broker.addr());
    }
}

#[test] // [MQTT-3.8.1-1] SUBSCRIBE fixed header flags must be 0010; anything else is malformed
        // and closes the connection.
fn subscribe_with_wrong_reserved_flags_closes_connection() {
    let broker = Broker::start();
    for v in [V::V311, V::V5] {
        for first in [0x80u8, 0x83, 0x8A] {
            let (mut c, _) = connected(&broker, v, "subflags");
            c.send(&subscribe(first, 1, b"s/t", 0, v == V::V5));
            expect_close(
                &mut c,
                &format!("{v:?} SUBSCRIBE first byte {first:#04x}"),
                v,
                &[0x81],
                false,
            );
        }
        assert_broker_alive(broker.addr());
    }
}

#[test] // [MQTT-1.5.3-1] [MQTT-1.5.3-2] (v5: [MQTT-1.5.4-1] [MQTT-1.5.4-2]) Ill-formed UTF-8,
        // an encoded surrogate or U+0000 in a topic closes the connection.
fn invalid_utf8_in_topic_closes_connection() {
    let broker = Broker::start();
    let topics: [&[u8]; 4] = [
        &[b'a', 0xC3, 0x28],       // broken two-byte sequence
        &[b'a', b'/', 0xFF],       // 0xFF never appears in UTF-8
        &[b'a', 0xED, 0xA0, 0x80], // U+D800 (surrogate)
        &[b'a', 0x00, b'b'],       // U+0000
    ];
    for v in [V::V311, V::V5] {
        for topic in topics {
            let (mut c, _) = connected(&broker, v, "utf8");
            let props = (v == V::V5).then_some(&[][..]);
            c.send(&publish(topic, 0, false, 0, b"x", props));
            expect_close(
                &mut c,
                &format!("{v:?} PUBLISH topic {topic:02x?}"),
                v,
                &[0x81, 0x82, 0x90],
                false,
            );
            let (mut c, _) = connected(&broker, v, "utf8-sub");
            c.send(&subscribe(0x82, 1, topic, 0, v == V::V5));
            expect_close(
                &mut c,
                &format!("{v:?} SUBSCRIBE filter {topic:02x?}"),
                v,
                &[0x81, 0x82, 0x8F],
                false,
            );
        }
        assert_broker_alive(broker.addr());
    }
}
