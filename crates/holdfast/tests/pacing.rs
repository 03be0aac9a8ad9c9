//! Publisher pacing: a publisher whose messages land in a subscriber's backlog faster than that
//! subscriber takes them is read more slowly (TCP flow control then slows it), instead of the
//! broker queueing without bound or dropping QoS 0 messages; a subscriber that makes no progress
//! at all paces nobody. Holdfast-only: Mosquitto queues (and drops) instead.

mod support;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use support::http::{admin_config, Admin};
use support::raw::{puback, publish, subscribe, Connect, RawConn, ReadResult};
use support::{holdfast_only, Broker};

/// Connects a raw MQTT 3.1.1 client and subscribes it to `filter` at `qos`.
fn subscriber(broker: &Broker, id: &str, filter: &str, qos: u8) -> RawConn {
    let mut c = RawConn::open(broker.addr());
    let ack = c.handshake(&Connect::v4(id));
    assert!(ack.is_connack() && ack.reason() == 0, "{ack:?}");
    c.send(&subscribe(0x82, 1, filter.as_bytes(), qos, false));
    let suback = c.expect_packet("SUBACK");
    assert_eq!(suback.kind(), 9, "{suback:?}");
    c
}

/// A publisher that writes `count` PUBLISH packets as fast as the socket takes them (QoS 1 ones
/// with ids 1..=65535 cycling) while a second thread drains whatever the broker answers.
/// Returns when everything is written.
fn blast(broker: &Broker, id: &str, topic: &str, qos: u8, count: usize, payload: usize) {
    let mut s = TcpStream::connect(broker.addr()).expect("connect");
    s.set_nodelay(true).unwrap();
    s.write_all(&Connect::v4(id).encode()).unwrap();
    let mut drain = s.try_clone().unwrap();
    thread::spawn(move || {
        let mut buf = [0u8; 16 * 1024];
        while matches!(drain.read(&mut buf), Ok(n) if n > 0) {}
    });
    let mut batch = Vec::new();
    for i in 0..count {
        let mut body = format!("{i:08}").into_bytes();
        body.resize(payload.max(8), b'.');
        let pkid = if qos > 0 { (i % 65_535) as u16 + 1 } else { 0 };
        batch.extend(publish(topic.as_bytes(), qos, false, pkid, &body, None));
        if batch.len() > 64 * 1024 {
            s.write_all(&batch).expect("publisher write");
            batch.clear();
        }
    }
    s.write_all(&batch).expect("publisher write");
}

/// Reads PUBLISH packets on `c`, acknowledging QoS 1 ones, sleeping `pause` after each `every`
/// messages, until `count` arrived or nothing came for 10 s. Returns the sequence numbers seen.
fn consume(c: &mut RawConn, count: usize, every: usize, pause: Duration) -> Vec<usize> {
    let mut seen = Vec::with_capacity(count);
    while seen.len() < count {
        let ReadResult::Packet(p) = c.read(Duration::from_secs(10)) else {
            break;
        };
        let Some(p) = p.as_publish_v4() else { continue };
        if p.qos == 1 {
            c.send(&puback(p.pkid));
        }
        seen.push(
            std::str::from_utf8(&p.payload[..8])
                .unwrap()
                .parse()
                .unwrap(),
        );
        if seen.len() % every == 0 {
            thread::sleep(pause);
        }
    }
    seen
}

#[test]
fn qos0_messages_to_a_slow_subscriber_are_paced_not_dropped() {
    if holdfast_only("publisher pacing") {
        return;
    }
    let broker = Broker::start();
    let mut sub = subscriber(&broker, "slow-0", "pace/0", 0);
    // 40 MB of QoS 0 messages: far more than socket buffers and the broker's per-connection write
    // queue (16,384 packets, past which QoS 0 messages are dropped) could hold at once.
    let n = 40_000;
    let b = thread::scope(|scope| {
        let publisher = scope.spawn(|| blast(&broker, "fast-0", "pace/0", 0, n, 1000));
        // About 40k messages/s: far slower than the publisher writes.
        let seen = consume(&mut sub, n, 200, Duration::from_millis(5));
        publisher.join().unwrap();
        seen
    });
    assert_eq!(b.len(), n, "every QoS 0 message arrives (none dropped)");
    assert!(b.windows(2).all(|w| w[0] < w[1]), "in order");
}

#[test]
fn a_slow_subscriber_keeps_its_queue_short() {
    if holdfast_only("publisher pacing") {
        return;
    }
    let (config, admin_port) =
        admin_config("[limits]\nmax_queued_messages = 0\nmax_inflight = 32\n");
    let broker = Broker::start_with(&config);
    let admin = Admin::new(admin_port);
    let mut sub = subscriber(&broker, "slow-1", "pace/1", 1);
    let n = 30_000;
    let done = AtomicBool::new(false);
    let most_queued = AtomicUsize::new(0);
    let seen = thread::scope(|scope| {
        scope.spawn(|| blast(&broker, "fast-1", "pace/1", 1, n, 200));
        scope.spawn(|| {
            while !done.load(Ordering::Relaxed) {
                let s = admin.get("/api/v1/sessions/slow-1").json();
                let queued = s["queued"].as_u64().unwrap_or(0) as usize;
                most_queued.fetch_max(queued, Ordering::Relaxed);
                thread::sleep(Duration::from_millis(20));
            }
        });
        let seen = consume(&mut sub, n, 100, Duration::from_millis(2));
        done.store(true, Ordering::Relaxed);
        seen
    });
    // QoS 1 at-least-once, in order [MQTT-4.6.0-5]; this publisher never sends DUP, so no copies.
    assert_eq!(seen, (0..n).collect::<Vec<_>>());
    let most = most_queued.load(Ordering::Relaxed);
    // Pacing starts past 2,048 queued or unwritten packets; one message more per publisher can
    // arrive before its reads stop.
    assert!(most <= 2_100, "the queue reached {most} messages");
}

#[test]
fn a_stalled_subscriber_does_not_stop_its_publisher() {
    if holdfast_only("publisher pacing") {
        return;
    }
    let (config, admin_port) = admin_config("[limits]\nmax_queued_messages = 0\n");
    let broker = Broker::start_with(&config);
    let admin = Admin::new(admin_port);
    // Subscribed and connected, but never reads or acknowledges anything.
    let _stalled = subscriber(&broker, "stalled", "pace/2", 1);
    let mut live = subscriber(&broker, "live", "pace/2", 1);
    let n = 20_000;
    let started = Instant::now();
    let seen = thread::scope(|scope| {
        scope.spawn(|| blast(&broker, "pub-2", "pace/2", 1, n, 100));
        consume(&mut live, n, usize::MAX, Duration::ZERO)
    });
    assert_eq!(seen, (0..n).collect::<Vec<_>>());
    // At most a pause of a quarter of a second before the stalled client stops counting.
    let took = started.elapsed();
    assert!(took < Duration::from_secs(8), "took {took:?}");
    let stalled = admin.get("/api/v1/sessions/stalled").json();
    let held = stalled["queued"].as_u64().unwrap() + stalled["inflight"].as_u64().unwrap();
    assert!(
        held > 2_048,
        "the stalled client's messages wait in its queue: {stalled}"
    );
}
