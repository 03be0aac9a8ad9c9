//! The store quota (`storage.max_bytes`): what a publisher is told when the store is full, and the
//! discard-oldest policy that makes room by dropping the oldest queued messages of offline sessions.

mod support;

use std::time::Duration;

use support::raw::{lp, packet, props, publish, subscribe, Connect, RawConn, ReadResult};
use support::{holdfast_only, Broker};

const PAYLOAD: usize = 1024;

/// A v5 session that subscribes to `quota/#` at QoS 1 and goes offline, so messages queue for it.
fn offline_subscriber(broker: &Broker, id: &str) {
    let mut c = RawConn::open(broker.addr());
    // Session Expiry Interval 300 s, Clean Start 0.
    c.handshake(&Connect {
        clean: false,
        properties: vec![0x11, 0, 0, 1, 0x2C],
        ..Connect::v5(id)
    });
    c.send(&subscribe(0x82, 1, b"quota/#", 1, true));
    assert_eq!(c.expect_packet("SUBACK").first, 0x90);
    c.send(&packet(0xE0, &[0, 0]));
}

/// Publishes `n` QoS 1 messages numbered from `first` and returns the PUBACK reason codes in order.
fn publish_batch(c: &mut RawConn, first: u16, n: u16) -> Vec<u8> {
    let mut reasons = Vec::new();
    for i in first..first + n {
        let mut payload = format!("{i:08}").into_bytes();
        payload.resize(PAYLOAD, b'.');
        c.send(&publish(b"quota/x", 1, false, i, &payload, Some(&[])));
        let ack = c.expect_packet("PUBACK");
        assert_eq!(ack.first, 0x40, "{ack:?}");
        assert_eq!(u16::from_be_bytes([ack.body[0], ack.body[1]]), i);
        reasons.push(ack.body.get(2).copied().unwrap_or(0));
    }
    reasons
}

fn received_numbers(broker: &Broker, id: &str) -> Vec<u32> {
    let mut c = RawConn::open(broker.addr());
    c.handshake(&Connect {
        clean: false,
        properties: vec![0x11, 0, 0, 1, 0x2C],
        ..Connect::v5(id)
    });
    let mut got = Vec::new();
    while let ReadResult::Packet(p) = c.read(Duration::from_millis(500)) {
        if p.first >> 4 == 3 {
            let topic_len = u16::from_be_bytes([p.body[0], p.body[1]]) as usize;
            let pid = [p.body[2 + topic_len], p.body[3 + topic_len]];
            let props_len = p.body[4 + topic_len] as usize;
            let payload = &p.body[5 + topic_len + props_len..];
            got.push(std::str::from_utf8(&payload[..8]).unwrap().parse().unwrap());
            c.send(&packet(0x40, &pid));
        }
    }
    got
}

#[test] // DESIGN "Limits": a full store never acknowledges what it could not store: v5 PUBACK 0x97
fn full_store_refuses_with_quota_exceeded() {
    if holdfast_only("storage.max_bytes") {
        return;
    }
    let broker = Broker::start_with(
        "[storage]\nmax_bytes = \"192KiB\"\n[limits]\nmax_queued_messages = 0\n",
    );
    offline_subscriber(&broker, "quota-sub");
    let mut p = RawConn::open(broker.addr());
    p.handshake(&Connect::v5("quota-pub"));
    let reasons = publish_batch(&mut p, 1, 400);
    let refused = reasons.iter().filter(|r| **r == 0x97).count();
    let ok = reasons.iter().filter(|r| **r == 0).count();
    assert!(
        refused > 0,
        "the store never reported its quota: {reasons:?}"
    );
    assert_eq!(
        ok + refused,
        reasons.len(),
        "only 0x00 and 0x97 expected: {reasons:?}"
    );
    // What was acknowledged is stored: it survives a kill -9.
    let mut broker = broker;
    broker.restart();
    let got = received_numbers(&broker, "quota-sub");
    let acked: Vec<u32> = (1..=400u32)
        .zip(&reasons)
        .filter(|(_, r)| **r == 0)
        .map(|(i, _)| i)
        .collect();
    for i in &acked {
        assert!(
            got.contains(i),
            "acknowledged message {i} lost; got {} of {}",
            got.len(),
            acked.len()
        );
    }
    let _ = (lp(b""), props(&[]));
}

#[test] // storage.quota_policy = "discard-oldest": the oldest queued messages go, new ones are accepted
fn discard_oldest_makes_room() {
    if holdfast_only("storage.quota_policy") {
        return;
    }
    let broker = Broker::start_with(
        "[storage]\nmax_bytes = \"192KiB\"\nquota_policy = \"discard-oldest\"\n[limits]\nmax_queued_messages = 0\n",
    );
    offline_subscriber(&broker, "dold-sub");
    let mut p = RawConn::open(broker.addr());
    p.handshake(&Connect::v5("dold-pub"));
    // 50 KiB a round: 400 KiB in all, twice the quota.
    for round in 0..8u16 {
        publish_batch(&mut p, 1 + round * 50, 50);
        std::thread::sleep(Duration::from_millis(1300)); // the sweeper runs every second
    }
    let last = publish_batch(&mut p, 401, 1);
    assert_eq!(last, [0], "after the sweep, a new message is accepted");
    assert!(
        broker.log().contains("queued messages discarded"),
        "discards are logged"
    );
    let got = received_numbers(&broker, "dold-sub");
    assert!(!got.contains(&1), "the oldest message was discarded");
    assert!(got.contains(&401), "the newest message is kept");
}

fn ack_publish(c: &mut RawConn, p: &support::raw::RawPacket) -> String {
    let topic_len = u16::from_be_bytes([p.body[0], p.body[1]]) as usize;
    let topic = String::from_utf8_lossy(&p.body[2..2 + topic_len]).into_owned();
    c.send(&packet(0x40, &p.body[2 + topic_len..4 + topic_len]));
    topic
}

#[test] // discard.unsubscribed_messages: what an offline session no longer subscribes to is dropped
fn unsubscribed_messages_rule() {
    if holdfast_only("discard.unsubscribed_messages") {
        return;
    }
    let broker =
        Broker::start_with("[limits]\nmax_inflight = 1\n[discard]\nunsubscribed_messages = true\n");
    let session = |c: &mut RawConn| {
        c.handshake(&Connect {
            clean: false,
            properties: vec![0x11, 0, 0, 1, 0x2C],
            ..Connect::v5("unsub")
        })
    };
    let mut c = RawConn::open(broker.addr());
    session(&mut c);
    for (i, f) in [b"a/#", b"b/#"].iter().enumerate() {
        c.send(&subscribe(0x82, i as u16 + 1, *f, 1, true));
        assert_eq!(c.expect_packet("SUBACK").first, 0x90);
    }
    c.send(&packet(0xE0, &[0, 0]));
    let mut p = RawConn::open(broker.addr());
    p.handshake(&Connect::v5("unsub-pub"));
    for (i, t) in [b"a/1", b"a/2", b"b/1"].iter().enumerate() {
        p.send(&publish(*t, 1, false, i as u16 + 1, b"m", Some(&[])));
        assert_eq!(p.expect_packet("PUBACK").first, 0x40);
    }
    // Back online: a/1 goes in flight (window 1), the rest stays queued; unsubscribe a/#, leave.
    let mut c = RawConn::open(broker.addr());
    session(&mut c);
    let first = c.expect_packet("PUBLISH");
    assert_eq!(first.first >> 4, 3);
    let mut unsub = vec![0, 9, 0];
    unsub.extend(lp(b"a/#"));
    c.send(&packet(0xA2, &unsub));
    assert_eq!(c.expect_packet("UNSUBACK").first, 0xB0);
    c.send(&packet(0xE0, &[0, 0]));
    std::thread::sleep(Duration::from_millis(1600)); // the rules run every second
    let mut c = RawConn::open(broker.addr());
    session(&mut c);
    let mut topics = Vec::new();
    while let ReadResult::Packet(p) = c.read(Duration::from_millis(600)) {
        if p.first >> 4 == 3 {
            topics.push(ack_publish(&mut c, &p));
        }
    }
    assert_eq!(
        topics,
        ["a/1", "b/1"],
        "the in-flight a/1 is resent, the queued a/2 is gone"
    );
    assert!(broker.log().contains("queued messages discarded"));
}
