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
