//! Server behaviour seen from raw sockets: shutdown, keep alive, limits, enhanced authentication, MQTT 5
//! flow details, and the binary's handling of a bad config.

mod support;

use std::process::Command;
use std::time::{Duration, Instant};

use support::raw::{lp, packet, publish, subscribe, Connect, RawConn, ReadResult};
use support::{holdfast_only, Broker};

fn v5_with_props(id: &str, properties: &[u8]) -> Connect {
    Connect {
        properties: properties.to_vec(),
        ..Connect::v5(id)
    }
}

#[test] // [MQTT-4.13.2-1] graceful shutdown: MQTT 5 clients get DISCONNECT 0x8B, the process exits 0
fn sigterm_disconnects_v5_clients_with_0x8b() {
    if holdfast_only("graceful shutdown reason code") {
        return;
    }
    let mut broker = Broker::start();
    let mut v5 = RawConn::open(broker.addr());
    v5.handshake(&Connect::v5("stopping-5"));
    let mut v4 = RawConn::open(broker.addr());
    v4.handshake(&Connect::v4("stopping-4"));
    let status = broker
        .terminate(Duration::from_secs(10))
        .expect("broker exits after SIGTERM");
    assert!(status.success(), "exit status {status}");
    let got = v5.expect_closed("shutdown");
    assert!(
        got.iter().any(|p| p.is_disconnect() && p.reason() == 0x8B),
        "expected DISCONNECT 0x8B, got {got:?}"
    );
    let got = v4.expect_closed("shutdown");
    assert!(
        got.is_empty(),
        "3.1.1 has no DISCONNECT from the server: {got:?}"
    );
}

#[test] // [MQTT-3.1.2-22] no packet within 1.5 x keep alive: the server closes the connection (v5: 0x8D)
fn keep_alive_timeout_closes_connection() {
    let broker = Broker::start();
    let started = Instant::now();
    let mut c = RawConn::open(broker.addr());
    c.handshake(&Connect {
        keep_alive: 1,
        ..Connect::v5("sleepy")
    });
    let got = c.expect_closed("keep alive");
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(1400),
        "closed too early: {took:?}"
    );
    if !support::is_mosquitto() {
        assert!(
            got.iter().any(|p| p.is_disconnect() && p.reason() == 0x8D),
            "expected 0x8D, got {got:?}"
        );
    }
    // PINGREQ keeps an idle connection open.
    let mut c = RawConn::open(broker.addr());
    c.handshake(&Connect {
        keep_alive: 1,
        ..Connect::v4("pinger")
    });
    for _ in 0..4 {
        std::thread::sleep(Duration::from_millis(700));
        c.send(&support::raw::PINGREQ);
        assert_eq!(c.expect_packet("PINGRESP").first, 0xD0);
    }
}

#[test] // a configured connection limit refuses the next client with a reason code, not a silent close
fn max_connections_refuses_with_reason_code() {
    if holdfast_only("limits.max_connections") {
        return;
    }
    let broker = Broker::start_with("[limits]\nmax_connections = 2\n");
    let mut a = RawConn::open(broker.addr());
    a.handshake(&Connect::v5("a"));
    let mut b = RawConn::open(broker.addr());
    b.handshake(&Connect::v4("b"));
    let mut c = RawConn::open(broker.addr());
    c.send(&Connect::v5("c").encode());
    let ack = c.expect_packet("CONNACK");
    assert!(
        ack.is_connack() && ack.reason() == 0x97,
        "v5: 0x97 Quota exceeded, got {ack:?}"
    );
    let mut d = RawConn::open(broker.addr());
    d.send(&Connect::v4("d").encode());
    let ack = d.expect_packet("CONNACK");
    assert!(
        ack.is_connack() && ack.reason() == 3,
        "3.1.1: 3 Server unavailable, got {ack:?}"
    );
    drop(a);
    std::thread::sleep(Duration::from_millis(200));
    let mut e = RawConn::open(broker.addr());
    e.handshake(&Connect::v5("e"));
}

#[test] // [MQTT-4.12.0-1] an authentication method the server does not support gets CONNACK 0x8C
fn unsupported_authentication_method_refused() {
    let broker = Broker::start();
    let mut c = RawConn::open(broker.addr());
    let mut method = vec![0x15];
    method.extend(lp(b"SCRAM-SHA-512"));
    c.send(&v5_with_props("auth", &method).encode());
    let ack = c.expect_packet("CONNACK");
    assert!(
        ack.is_connack() && ack.reason() == 0x8C,
        "expected 0x8C, got {ack:?}"
    );
    c.expect_closed("after refusal");
}

#[test] // [MQTT-3.1.2-25] a message larger than the client's Maximum Packet Size is dropped for that client only
fn message_too_large_for_client_is_dropped_not_the_connection() {
    let broker = Broker::start();
    let mut small = RawConn::open(broker.addr());
    let mut max = vec![0x27];
    max.extend(64u32.to_be_bytes());
    small.handshake(&v5_with_props("small", &max));
    small.send(&subscribe(0x82, 1, b"size/+", 1, true));
    assert_eq!(small.expect_packet("SUBACK").first, 0x90);
    let mut pubr = RawConn::open(broker.addr());
    pubr.handshake(&Connect::v4("publisher"));
    pubr.send(&publish(b"size/big", 0, false, 0, &[b'x'; 200], None));
    pubr.send(&publish(b"size/ok", 0, false, 0, b"fits", None));
    let p = small.expect_packet("PUBLISH");
    assert_eq!(p.first >> 4, 3);
    assert!(
        p.body.windows(4).any(|w| w == b"fits"),
        "the small message arrives, the big one is skipped: {p:?}"
    );
    small.send(&support::raw::PINGREQ);
    assert_eq!(
        small.expect_packet("PINGRESP").first,
        0xD0,
        "connection still open"
    );
}

#[test] // [MQTT-3.3.2-?] a v5 PUBLISH claiming UTF-8 (Payload Format 1) that is not: PUBACK 0x99
fn invalid_utf8_payload_with_format_indicator_refused() {
    if holdfast_only("payload format validation") {
        return;
    }
    let broker = Broker::start();
    let mut c = RawConn::open(broker.addr());
    c.handshake(&Connect::v5("pfi"));
    c.send(&publish(
        b"t",
        1,
        false,
        7,
        &[0xFF, 0xFE],
        Some(&[0x01, 0x01]),
    ));
    let ack = c.expect_packet("PUBACK");
    assert_eq!(ack.first, 0x40);
    assert_eq!(&ack.body[..3], &[0, 7, 0x99], "{ack:?}");
}

#[test] // [MQTT-4.3.3-?] a QoS 2 PUBLISH resent before PUBREL is acknowledged again but delivered once
fn qos2_resent_publish_delivered_exactly_once() {
    let broker = Broker::start();
    let mut sub = RawConn::open(broker.addr());
    sub.handshake(&Connect::v4("once-sub"));
    sub.send(&subscribe(0x82, 1, b"once", 0, false));
    assert_eq!(sub.expect_packet("SUBACK").first, 0x90);
    let mut p = RawConn::open(broker.addr());
    p.handshake(&Connect::v4("once-pub"));
    p.send(&publish(b"once", 2, false, 9, b"only once", None));
    assert_eq!(p.expect_packet("PUBREC").body, vec![0, 9]);
    let mut dup = publish(b"once", 2, false, 9, b"only once", None);
    dup[0] |= 0x08;
    p.send(&dup);
    assert_eq!(p.expect_packet("PUBREC again").body, vec![0, 9]);
    p.send(&packet(0x62, &[0, 9]));
    assert_eq!(p.expect_packet("PUBCOMP").first, 0x70);
    let first = sub.expect_packet("PUBLISH");
    assert!(first.body.ends_with(b"only once"));
    assert!(
        matches!(sub.read(Duration::from_millis(400)), ReadResult::Timeout),
        "delivered twice"
    );
}

#[test] // [MQTT-3.3.2-?] the server may use topic aliases up to the client's Topic Alias Maximum
fn server_uses_topic_alias_towards_client() {
    if holdfast_only("outbound topic aliases") {
        return;
    }
    let broker = Broker::start();
    let mut sub = RawConn::open(broker.addr());
    sub.handshake(&v5_with_props("alias-sub", &[0x22, 0, 4]));
    sub.send(&subscribe(0x82, 1, b"long/topic/name", 0, true));
    assert_eq!(sub.expect_packet("SUBACK").first, 0x90);
    let mut p = RawConn::open(broker.addr());
    p.handshake(&Connect::v4("alias-pub"));
    for _ in 0..2 {
        p.send(&publish(b"long/topic/name", 0, false, 0, b"m", None));
    }
    let first = sub.expect_packet("first PUBLISH");
    assert_eq!(
        &first.body[..2 + 15],
        &[&[0u8, 15][..], b"long/topic/name"].concat()[..]
    );
    let second = sub.expect_packet("second PUBLISH");
    // Empty topic name, then properties: topic alias (0x23) 1.
    assert_eq!(&second.body[..2], &[0, 0], "{second:?}");
    assert!(
        second.body.windows(3).any(|w| w == [0x23, 0, 1]),
        "{second:?}"
    );
}

#[test] // a config error names the file, the line and the key, and exits with status 2
fn bad_config_is_reported_with_key_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("bad.toml");
    std::fs::write(&cfg, "[limits]\nmax_inflight = 10\nmax_inflite = 3\n").unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_holdfast"))
        .arg("serve")
        .arg("--config")
        .arg(&cfg)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("line 3") && err.contains("max_inflite"),
        "{err}"
    );
    std::fs::write(&cfg, "[storage]\ndurability = \"fast\"\n").unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_holdfast"))
        .arg("serve")
        .arg("--config")
        .arg(&cfg)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("line 2") && err.contains("storage.durability"),
        "{err}"
    );
}

#[test] // [MQTT-4.6.0-6] what arrives in one read is handled in order, even though
        // a 3.1.1 PUBACK goes out before its message is routed: a SUBSCRIBE after a PUBLISH does not get
        // that message, and one after it gets the next, once
fn publish_subscribe_publish_in_one_write_keeps_the_order() {
    let broker = Broker::start();
    let mut watcher = RawConn::open(broker.addr());
    watcher.handshake(&Connect::v4("order-watcher"));
    watcher.send(&subscribe(0x82, 1, b"order/#", 1, false));
    assert_eq!(watcher.expect_packet("SUBACK").kind(), 9);

    let mut c = RawConn::open(broker.addr());
    c.handshake(&Connect::v4("order-client"));
    let mut burst = publish(b"order/a", 1, false, 1, b"before", None);
    burst.extend(subscribe(0x82, 2, b"order/#", 1, false));
    burst.extend(publish(b"order/b", 1, false, 3, b"after", None));
    c.send(&burst);
    let kinds: Vec<u8> = (0..4).map(|_| c.expect_packet("reply").kind()).collect();
    // PUBACK 1, SUBACK, PUBACK 3, and the second message, delivered to its own publisher.
    assert_eq!(kinds.iter().filter(|&&k| k == 4).count(), 2, "{kinds:?}");
    assert_eq!(kinds.iter().filter(|&&k| k == 9).count(), 1, "{kinds:?}");
    assert_eq!(kinds.iter().filter(|&&k| k == 3).count(), 1, "{kinds:?}");
    assert!(c.packets_within(Duration::from_millis(300)).is_empty());

    let got: Vec<_> = (0..2).map(|_| watcher.expect_packet("PUBLISH")).collect();
    assert!(got[0].body.ends_with(b"before") && got[1].body.ends_with(b"after"));
}
