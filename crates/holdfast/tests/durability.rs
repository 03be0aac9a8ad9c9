//! Durability of Session state and retained messages across restarts of the real binary
//! (docs/durability.md, MQTT section 4.1 "Storing state").
//!
//! Every scenario runs twice: after a clean restart (SIGTERM, graceful shutdown) and after a
//! process crash (SIGKILL), both with the default class `flush`, which promises that nothing
//! acknowledged is lost on `kill -9`. "Kept" means (docs/durability.md): sessions resume with
//! Session Present 1, their subscriptions route at once, in-flight QoS 1/2 messages are sent
//! again with DUP in their original order, QoS 2 exchanges continue exactly once, queued messages
//! are delivered, retained messages are back, and session and message expiry count the downtime.
//! The `volatile` class keeps nothing; the spec's two examples (meters volatile, payments sync)
//! run as configured in docs/durability.md.

mod support;

use std::collections::BTreeSet;
use std::time::Duration;

use rumqttc::v5::mqttbytes::v5::PublishProperties;
use rumqttc::QoS;
use support::raw::{self, Connect, RawConn, RawPacket, RawPublish};
use support::{holdfast_only, mqtt3, mqtt5, Broker, QUIET, TIMEOUT};

/// How the broker goes down between the two halves of a test.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Down {
    /// SIGTERM: graceful shutdown.
    Clean,
    /// SIGKILL: a process crash.
    Kill,
}

/// Takes the broker down as `down` says and starts it again on the same port and data dir.
fn bounce(broker: &mut Broker, down: Down) {
    bounce_after(broker, down, Duration::ZERO)
}

/// Like `bounce`, with the broker down for `downtime`.
fn bounce_after(broker: &mut Broker, down: Down, downtime: Duration) {
    match down {
        Down::Clean => {
            let status = broker.terminate(Duration::from_secs(15));
            assert!(
                status.is_some_and(|s| s.success()),
                "graceful shutdown (SIGTERM) must end with exit code 0 within 15 s: {status:?}"
            );
        }
        Down::Kill => broker.kill(),
    }
    std::thread::sleep(downtime);
    broker.restart();
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn qos_of(i: usize) -> QoS {
    if i.is_multiple_of(2) {
        QoS::AtLeastOnce
    } else {
        QoS::ExactlyOnce
    }
}

fn qos5(q: QoS) -> rumqttc::v5::mqttbytes::QoS {
    match q {
        QoS::AtMostOnce => rumqttc::v5::mqttbytes::QoS::AtMostOnce,
        QoS::AtLeastOnce => rumqttc::v5::mqttbytes::QoS::AtLeastOnce,
        QoS::ExactlyOnce => rumqttc::v5::mqttbytes::QoS::ExactlyOnce,
    }
}

// ---------------------------------------------------------------- the test moved from rumqttc_v311

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
// Holdfast durability (DESIGN: class `flush`, the default, survives kill -9): an offline
// session's queue, its subscription and a retained message survive SIGKILL and restart.
async fn session_and_retained_survive_sigkill_restart() {
    if holdfast_only("Mosquitto runs with persistence false") {
        return;
    }
    let mut broker = Broker::start();
    let port = broker.port();
    let mut sub = mqtt3::Client3::connect(mqtt3::persistent(port, "dur-sub")).await;
    sub.subscribe_ok("dur/t", QoS::AtLeastOnce).await;
    sub.disconnect().await;
    let mut publisher = mqtt3::Client3::connect(mqtt3::options(port, "dur-pub")).await;
    publisher
        .publish("dur/t", QoS::AtLeastOnce, false, "queued")
        .await;
    publisher
        .publish("dur/r", QoS::AtLeastOnce, true, "kept")
        .await;
    drop(publisher);

    broker.restart(); // SIGKILL, then start again on the same port and data directory

    let mut sub = mqtt3::Client3::connect(mqtt3::persistent(port, "dur-sub")).await;
    assert!(sub.session_present(), "session must survive the crash");
    assert_eq!(&sub.recv().await.payload[..], b"queued");
    let mut late = mqtt3::Client3::connect(mqtt3::options(port, "dur-late")).await;
    late.subscribe_ok("dur/r", QoS::AtLeastOnce).await;
    let p = late.recv().await;
    assert_eq!((&p.payload[..], p.retain), (&b"kept"[..], true));
}

// ---------------------------------------------------------------- sessions, queues, routing

/// MQTT 3.1.1, CleanSession 0: queued before the restart, queued after the restart while the
/// restored session is still offline, then everything in order on reconnect.
async fn v311_session_survives(down: Down) {
    let mut broker = Broker::start();
    let port = broker.port();
    let mut sub = mqtt3::Client3::connect(mqtt3::persistent(port, "q3-sub")).await;
    assert!(!sub.session_present());
    sub.subscribe_ok("q3/t", QoS::ExactlyOnce).await;
    sub.disconnect().await;

    let mut publisher = mqtt3::Client3::connect(mqtt3::options(port, "q3-pub")).await;
    let mut expected = Vec::new();
    for i in 0..6 {
        let m = format!("before-{i}");
        publisher.publish("q3/t", qos_of(i), false, m.clone()).await;
        expected.push((m, qos_of(i)));
    }
    publisher.disconnect().await;

    bounce(&mut broker, down);

    // The restored session routes at once: messages published before its client is back are
    // queued for it (the "restored session not routable" bug of other brokers).
    let mut publisher = mqtt3::Client3::connect(mqtt3::options(port, "q3-pub")).await;
    for i in 0..4 {
        let m = format!("after-{i}");
        publisher.publish("q3/t", qos_of(i), false, m.clone()).await;
        expected.push((m, qos_of(i)));
    }

    let mut sub = mqtt3::Client3::connect(mqtt3::persistent(port, "q3-sub")).await;
    assert!(
        sub.session_present(),
        "[MQTT-3.2.2-2] the stored session must be resumed with Session Present 1 after {down:?}"
    );
    let mut got = Vec::new();
    for _ in 0..expected.len() {
        let p = sub.recv().await;
        assert_eq!(p.topic, "q3/t");
        assert!(
            !p.dup,
            "[MQTT-3.3.1-3] a queued message was never sent: DUP 0"
        );
        got.push((text(&p.payload), p.qos));
    }
    // [MQTT-3.1.2-5] [MQTT-4.6.0-6]: all of them, once, in order (Holdfast keeps one queue per
    // session, so the order holds across QoS 1 and 2 too).
    assert_eq!(got, expected, "queued messages after {down:?}");
    sub.expect_nothing().await;
    // [MQTT-3.1.2-4] the subscription itself is back: live messages flow without a SUBSCRIBE.
    publisher
        .publish("q3/t", QoS::AtLeastOnce, false, "live")
        .await;
    assert_eq!(&sub.recv().await.payload[..], b"live");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
// [MQTT-3.1.2-4] [MQTT-3.1.2-5] [MQTT-3.2.2-2] [MQTT-4.6.0-6] A CleanSession 0 session, its
// subscription and its queued QoS 1/2 messages survive a clean restart; the restored session
// routes before its client reconnects.
async fn v311_session_queue_and_routing_survive_clean_restart() {
    if holdfast_only("persistence across restarts") {
        return;
    }
    v311_session_survives(Down::Clean).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
// [MQTT-3.1.2-4] [MQTT-3.1.2-5] [MQTT-3.2.2-2] [MQTT-4.6.0-6] The same after SIGKILL (class
// `flush`: nothing acknowledged is lost on a process crash).
async fn v311_session_queue_and_routing_survive_sigkill() {
    if holdfast_only("persistence across restarts") {
        return;
    }
    v311_session_survives(Down::Kill).await;
}

/// MQTT 5, Clean Start 0 with a Session Expiry Interval: the same as `v311_session_survives`.
async fn v5_session_survives(down: Down) {
    use mqtt5::{options, persistent, Client5};
    let mut broker = Broker::start();
    let port = broker.port();
    let mut sub = Client5::connect(persistent(port, "q5-sub", 3600)).await;
    assert!(!sub.session_present());
    sub.subscribe_ok("q5/t", qos5(QoS::ExactlyOnce)).await;
    sub.disconnect().await;

    let mut publisher = Client5::connect(options(port, "q5-pub")).await;
    let mut expected = Vec::new();
    for i in 0..6 {
        let m = format!("before-{i}");
        publisher
            .publish("q5/t", qos5(qos_of(i)), false, m.clone())
            .await;
        expected.push((m, qos5(qos_of(i))));
    }
    publisher.disconnect().await;

    bounce(&mut broker, down);

    let mut publisher = Client5::connect(options(port, "q5-pub")).await;
    for i in 0..4 {
        let m = format!("after-{i}");
        publisher
            .publish("q5/t", qos5(qos_of(i)), false, m.clone())
            .await;
        expected.push((m, qos5(qos_of(i))));
    }

    let mut sub = Client5::connect(persistent(port, "q5-sub", 3600)).await;
    assert!(
        sub.session_present(),
        "[MQTT-3.2.2-3] the stored session must be resumed with Session Present 1 after {down:?}"
    );
    let mut got = Vec::new();
    for _ in 0..expected.len() {
        let p = sub.recv().await;
        assert_eq!(p.topic, "q5/t");
        assert!(
            !p.dup,
            "[MQTT-3.3.1-1] a queued message was never sent: DUP 0"
        );
        got.push((text(&p.payload), p.qos));
    }
    assert_eq!(got, expected, "queued messages after {down:?}");
    sub.expect_nothing().await;
    publisher
        .publish("q5/t", qos5(QoS::AtLeastOnce), false, "live")
        .await;
    assert_eq!(&sub.recv().await.payload[..], b"live");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
// [MQTT-3.1.2-5] [MQTT-3.1.2-23] [MQTT-3.2.2-3] [MQTT-4.6.0-6] An MQTT 5 session with a Session
// Expiry Interval, its subscription and queue survive a clean restart and route at once.
async fn v5_session_queue_and_routing_survive_clean_restart() {
    if holdfast_only("persistence across restarts") {
        return;
    }
    v5_session_survives(Down::Clean).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
// [MQTT-3.1.2-5] [MQTT-3.1.2-23] [MQTT-3.2.2-3] [MQTT-4.6.0-6] The same after SIGKILL.
async fn v5_session_queue_and_routing_survive_sigkill() {
    if holdfast_only("persistence across restarts") {
        return;
    }
    v5_session_survives(Down::Kill).await;
}

// ---------------------------------------------------------------- retained messages

async fn retained_survive(down: Down) {
    use mqtt3::{options, Client3};
    let mut broker = Broker::start();
    let port = broker.port();
    let mut publisher = Client3::connect(options(port, "rt-pub")).await;
    publisher
        .publish("rt/a", QoS::AtLeastOnce, true, "a-old")
        .await;
    publisher
        .publish("rt/a", QoS::ExactlyOnce, true, "a-new")
        .await;
    publisher.publish("rt/b", QoS::AtLeastOnce, true, "b").await;
    publisher.publish("rt/c", QoS::AtLeastOnce, true, "c").await;
    publisher
        .publish("rt/c", QoS::AtLeastOnce, true, Vec::new())
        .await;
    publisher
        .publish("rt/zero", QoS::AtMostOnce, true, "qos0-retained")
        .await;
    publisher.disconnect().await;

    bounce(&mut broker, down);

    let retained = |port| async move {
        let mut s = Client3::connect(options(port, "rt-check")).await;
        s.subscribe_ok("rt/#", QoS::ExactlyOnce).await;
        let mut got = BTreeSet::new();
        while let Some(p) = s.recv_within(QUIET * 2).await {
            assert!(
                p.retain,
                "[MQTT-3.3.1-8] retained messages carry RETAIN 1: {p:?}"
            );
            got.insert((p.topic.clone(), text(&p.payload), p.qos as u8));
        }
        s.disconnect().await;
        got
    };
    let expected: BTreeSet<_> = [
        ("rt/a".to_string(), "a-new".to_string(), 2),
        ("rt/b".to_string(), "b".to_string(), 1),
        ("rt/zero".to_string(), "qos0-retained".to_string(), 0),
    ]
    .into();
    assert_eq!(
        retained(port).await,
        expected,
        "[MQTT-3.3.1-5] the last retained message of each topic survives {down:?} (QoS 0 ones too); \
         [MQTT-3.3.1-10] [MQTT-3.3.1-11] the deleted one stays deleted"
    );

    // Deleting a restored retained message is itself durable.
    let mut publisher = Client3::connect(options(port, "rt-pub")).await;
    publisher
        .publish("rt/b", QoS::AtLeastOnce, true, Vec::new())
        .await;
    publisher.disconnect().await;
    bounce(&mut broker, down);
    let expected: BTreeSet<_> = [
        ("rt/a".to_string(), "a-new".to_string(), 2),
        ("rt/zero".to_string(), "qos0-retained".to_string(), 0),
    ]
    .into();
    assert_eq!(retained(port).await, expected, "deleted after the restart");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
// [MQTT-3.3.1-5] [MQTT-3.3.1-8] [MQTT-3.3.1-10] [MQTT-3.3.1-11] Retained messages (replaced
// ones with their last value, QoS 0 ones included) survive a clean restart; deleted ones stay
// deleted, also when deleted after a restart.
async fn retained_messages_survive_clean_restart() {
    if holdfast_only("persistence across restarts") {
        return;
    }
    retained_survive(Down::Clean).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
// [MQTT-3.3.1-5] [MQTT-3.3.1-8] [MQTT-3.3.1-10] [MQTT-3.3.1-11] The same after SIGKILL.
async fn retained_messages_survive_sigkill() {
    if holdfast_only("persistence across restarts") {
        return;
    }
    retained_survive(Down::Kill).await;
}

// ---------------------------------------------------------------- in-flight outbound messages

fn expect_publish(c: &mut RawConn, what: &str) -> RawPublish {
    let p = c.expect_packet(what);
    p.as_publish_v4()
        .unwrap_or_else(|| panic!("expected PUBLISH ({what}), got {p:?}"))
}

fn raw_persistent(id: &str) -> Connect {
    Connect {
        clean: false,
        ..Connect::v4(id)
    }
}

/// Reads packets until `n` have arrived (bounded by `TIMEOUT` each).
fn expect_packets(c: &mut RawConn, n: usize, what: &str) -> Vec<RawPacket> {
    (0..n)
        .map(|i| c.expect_packet(&format!("{what} #{i}")))
        .collect()
}

async fn inflight_resent(down: Down) {
    let mut broker = Broker::start();
    let port = broker.port();
    let mut sub = RawConn::open(broker.addr());
    let ack = sub.handshake(&raw_persistent("inf-sub"));
    assert!(!ack.session_present());
    sub.send(&raw::subscribe(0x82, 1, b"inf/#", 2, false));
    assert_eq!(sub.expect_packet("SUBACK").body, vec![0, 1, 2]);

    let mut publisher = mqtt3::Client3::connect(mqtt3::options(port, "inf-pub")).await;
    let sent = [
        ("a", QoS::AtLeastOnce),
        ("b", QoS::ExactlyOnce),
        ("c", QoS::ExactlyOnce),
        ("d", QoS::AtLeastOnce),
    ];
    for (m, q) in sent {
        publisher.publish("inf/t", q, false, m).await;
    }
    let first: Vec<RawPublish> = (0..4)
        .map(|_| expect_publish(&mut sub, "PUBLISH"))
        .collect();
    for (p, (m, q)) in first.iter().zip(sent) {
        assert_eq!(
            (text(&p.payload), p.qos, p.dup),
            (m.to_string(), q as u8, false)
        );
    }
    let pkid = |m: &str| first[sent.iter().position(|s| s.0 == m).unwrap()].pkid;
    // "c" goes one step further: PUBREC received, PUBREL sent (the stage is stored before the
    // PUBREL is written). Nothing else is acknowledged.
    sub.send(&raw::pubrec(pkid("c")));
    let rel = sub.expect_packet("PUBREL for c");
    assert_eq!((rel.first, rel.packet_id()), (0x62, pkid("c")), "{rel:?}");

    bounce(&mut broker, down);
    drop(sub);

    let mut sub = RawConn::open(broker.addr());
    let ack = sub.handshake(&raw_persistent("inf-sub"));
    assert!(ack.session_present(), "[MQTT-3.2.2-2] after {down:?}");
    let again = expect_packets(&mut sub, 4, "resent in-flight packet");
    let publishes: Vec<RawPublish> = again.iter().filter_map(|p| p.as_publish_v4()).collect();
    let rels: Vec<&RawPacket> = again.iter().filter(|p| p.first == 0x62).collect();
    // [MQTT-4.4.0-1] unacknowledged PUBLISHes are sent again with their original packet ids,
    // [MQTT-3.3.1-1] with DUP 1, [MQTT-4.6.0-1] in their original order; the QoS 2 message whose
    // PUBREC was received gets its PUBREL again, not a second PUBLISH.
    let expect = |m: &str, q: QoS| RawPublish {
        dup: true,
        qos: q as u8,
        retain: false,
        topic: "inf/t".to_string(),
        pkid: pkid(m),
        payload: m.as_bytes().to_vec(),
    };
    assert_eq!(
        publishes,
        vec![
            expect("a", QoS::AtLeastOnce),
            expect("b", QoS::ExactlyOnce),
            expect("d", QoS::AtLeastOnce)
        ],
        "resent PUBLISHes after {down:?} (all packets: {again:?})"
    );
    assert_eq!(
        rels.iter().map(|p| p.packet_id()).collect::<Vec<_>>(),
        vec![pkid("c")],
        "[MQTT-4.4.0-1] the PUBREL of c is sent again after {down:?} (all packets: {again:?})"
    );

    // Complete everything; then nothing is sent again, even after another restart.
    sub.send(&raw::puback(pkid("a")));
    sub.send(&raw::pubrec(pkid("b")));
    let rel = sub.expect_packet("PUBREL for b");
    assert_eq!((rel.first, rel.packet_id()), (0x62, pkid("b")));
    sub.send(&raw::pubcomp(pkid("b")));
    sub.send(&raw::pubcomp(pkid("c")));
    sub.send(&raw::puback(pkid("d")));
    // PINGRESP is written after the acknowledgements are processed and stored.
    sub.send(&raw::PINGREQ);
    let pong = sub.expect_packet("PINGRESP");
    assert_eq!(pong.first, 0xD0, "{pong:?}");
    let mut publisher = mqtt3::Client3::connect(mqtt3::options(port, "inf-pub")).await;
    publisher
        .publish("inf/t", QoS::AtLeastOnce, false, "e")
        .await;
    let e = expect_publish(&mut sub, "PUBLISH e");
    assert_eq!((text(&e.payload), e.dup), ("e".to_string(), false));
    sub.send(&raw::puback(e.pkid));
    sub.send(&raw::PINGREQ);
    assert_eq!(sub.expect_packet("PINGRESP").first, 0xD0);

    bounce(&mut broker, down);
    drop(sub);
    let mut sub = RawConn::open(broker.addr());
    let ack = sub.handshake(&raw_persistent("inf-sub"));
    assert!(ack.session_present());
    let extra = sub.packets_within(QUIET);
    assert!(
        extra.is_empty(),
        "completed deliveries must not be sent again after {down:?}: {extra:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
// [MQTT-4.4.0-1] [MQTT-3.3.1-1] [MQTT-4.6.0-1] In-flight outbound QoS 1 and QoS 2 messages
// (sent, not acknowledged) are sent again after a clean restart with DUP 1, their original
// packet ids and order; a QoS 2 message whose PUBREC was received gets its PUBREL again.
async fn inflight_outbound_resent_with_dup_after_clean_restart() {
    if holdfast_only("persistence across restarts") {
        return;
    }
    inflight_resent(Down::Clean).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
// [MQTT-4.4.0-1] [MQTT-3.3.1-1] [MQTT-4.6.0-1] The same after SIGKILL.
async fn inflight_outbound_resent_with_dup_after_sigkill() {
    if holdfast_only("persistence across restarts") {
        return;
    }
    inflight_resent(Down::Kill).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
// [MQTT-4.4.0-1] [MQTT-3.3.1-1] MQTT 5 through a real client with manual acknowledgements: the
// messages it received but did not acknowledge before SIGKILL come again with DUP 1 and the same
// packet ids when it resumes the session.
async fn v5_unacknowledged_messages_redelivered_after_sigkill() {
    use mqtt5::{options, persistent, Client5};
    if holdfast_only("persistence across restarts") {
        return;
    }
    let mut broker = Broker::start();
    let port = broker.port();
    let manual = |port| {
        let mut o = persistent(port, "ma-sub", 3600);
        o.set_manual_acks(true);
        o
    };
    let mut sub = Client5::connect(manual(port)).await;
    sub.subscribe_ok("ma/t", qos5(QoS::ExactlyOnce)).await;
    let mut publisher = Client5::connect(options(port, "ma-pub")).await;
    publisher
        .publish("ma/t", qos5(QoS::AtLeastOnce), false, "x")
        .await;
    publisher
        .publish("ma/t", qos5(QoS::ExactlyOnce), false, "y")
        .await;
    let x = sub.recv().await;
    let y = sub.recv().await;
    assert_eq!((&x.payload[..], x.dup), (&b"x"[..], false));
    assert_eq!((&y.payload[..], y.dup), (&b"y"[..], false));

    broker.restart(); // SIGKILL
    sub.kill().await;

    let mut sub = Client5::connect(manual(port)).await;
    assert!(sub.session_present(), "[MQTT-3.2.2-3]");
    let x2 = sub.recv().await;
    let y2 = sub.recv().await;
    assert_eq!(
        (&x2.payload[..], x2.dup, x2.pkid, x2.qos),
        (&b"x"[..], true, x.pkid, x.qos),
        "[MQTT-4.4.0-1] [MQTT-3.3.1-1] QoS 1 resend"
    );
    assert_eq!(
        (&y2.payload[..], y2.dup, y2.pkid, y2.qos),
        (&b"y"[..], true, y.pkid, y.qos),
        "[MQTT-4.4.0-1] [MQTT-3.3.1-1] QoS 2 resend"
    );
    sub.client.ack(&x2).await.expect("queue PUBACK");
    sub.client.ack(&y2).await.expect("queue PUBREC");
    sub.expect_nothing().await;
}

// ---------------------------------------------------------------- inbound QoS 2

async fn inbound_qos2_continues(down: Down) {
    let mut broker = Broker::start();
    let port = broker.port();
    // A subscriber connected when the message arrives (it completes its delivery before the
    // restart) and one that is offline (the message waits in its queue).
    let mut online = RawConn::open(broker.addr());
    online.handshake(&raw_persistent("q2-online"));
    online.send(&raw::subscribe(0x82, 1, b"q2/#", 2, false));
    assert_eq!(online.expect_packet("SUBACK").body, vec![0, 1, 2]);
    let mut offline = mqtt3::Client3::connect(mqtt3::persistent(port, "q2-offline")).await;
    offline.subscribe_ok("q2/#", QoS::ExactlyOnce).await;
    offline.disconnect().await;

    let mut publisher = RawConn::open(broker.addr());
    publisher.handshake(&raw_persistent("q2-pub"));
    publisher.send(&raw::publish(b"q2/t", 2, false, 7, b"once", None));
    let rec = publisher.expect_packet("PUBREC");
    assert_eq!((rec.first, rec.packet_id()), (0x50, 7), "{rec:?}");

    let p = expect_publish(&mut online, "PUBLISH once");
    assert_eq!((text(&p.payload), p.qos), ("once".to_string(), 2));
    online.send(&raw::pubrec(p.pkid));
    assert_eq!(online.expect_packet("PUBREL").first, 0x62);
    online.send(&raw::pubcomp(p.pkid));
    online.send(&raw::PINGREQ);
    assert_eq!(online.expect_packet("PINGRESP").first, 0xD0);

    // The broker goes down before the publisher's PUBREL.
    bounce(&mut broker, down);
    drop(publisher);
    drop(online);

    let mut publisher = RawConn::open(broker.addr());
    let ack = publisher.handshake(&raw_persistent("q2-pub"));
    assert!(ack.session_present(), "[MQTT-3.2.2-2] after {down:?}");
    // A resend of the PUBLISH (as a client that missed the PUBREC would do) is acknowledged but
    // not delivered again [MQTT-4.3.3-2]: the packet id was stored as received.
    publisher.send(&raw::publish_dup(b"q2/t", 2, false, 7, b"once"));
    let rec = publisher.expect_packet("PUBREC for the resent PUBLISH");
    assert_eq!((rec.first, rec.packet_id()), (0x50, 7), "{rec:?}");
    publisher.send(&raw::pubrel(7));
    let comp = publisher.expect_packet("PUBCOMP");
    assert_eq!((comp.first, comp.packet_id()), (0x70, 7), "{comp:?}");
    // After PUBCOMP the same packet id starts a new publication.
    publisher.send(&raw::publish(b"q2/t", 2, false, 7, b"second", None));
    assert_eq!(publisher.expect_packet("PUBREC").first, 0x50);
    publisher.send(&raw::pubrel(7));
    assert_eq!(publisher.expect_packet("PUBCOMP").first, 0x70);

    let mut online = RawConn::open(broker.addr());
    assert!(online
        .handshake(&raw_persistent("q2-online"))
        .session_present());
    let p = expect_publish(&mut online, "PUBLISH second");
    assert_eq!(
        text(&p.payload),
        "second",
        "[MQTT-4.3.3-2] 'once' was delivered before {down:?}: it must not come again"
    );
    online.send(&raw::pubrec(p.pkid));
    assert_eq!(online.expect_packet("PUBREL").first, 0x62);
    online.send(&raw::pubcomp(p.pkid));
    let extra = online.packets_within(QUIET);
    assert!(extra.is_empty(), "unexpected after {down:?}: {extra:?}");

    let mut offline = mqtt3::Client3::connect(mqtt3::persistent(port, "q2-offline")).await;
    assert!(offline.session_present());
    let got: Vec<String> = [offline.recv().await, offline.recv().await]
        .iter()
        .map(|p| text(&p.payload))
        .collect();
    assert_eq!(got, ["once", "second"], "exactly once each, after {down:?}");
    offline.expect_nothing().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
// [MQTT-4.3.3-2] [MQTT-4.3.3-3] A QoS 2 exchange half done when the broker stops (PUBLISH
// received and PUBREC sent, no PUBREL yet) continues after a clean restart: a resent PUBLISH
// with the same packet id is not delivered again, PUBREL gets PUBCOMP, every subscriber gets the
// message exactly once.
async fn qos2_inbound_exchange_continues_exactly_once_after_clean_restart() {
    if holdfast_only("persistence across restarts") {
        return;
    }
    inbound_qos2_continues(Down::Clean).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
// [MQTT-4.3.3-2] [MQTT-4.3.3-3] The same after SIGKILL.
async fn qos2_inbound_exchange_continues_exactly_once_after_sigkill() {
    if holdfast_only("persistence across restarts") {
        return;
    }
    inbound_qos2_continues(Down::Kill).await;
}

// ---------------------------------------------------------------- expiry counts the downtime

fn expiring(secs: u32) -> PublishProperties {
    PublishProperties {
        message_expiry_interval: Some(secs),
        ..PublishProperties::default()
    }
}

async fn expiry_counts_downtime(down: Down) {
    use mqtt5::{options, persistent, Client5};
    let mut broker = Broker::start();
    let port = broker.port();
    let q1 = qos5(QoS::AtLeastOnce);
    let mut short = Client5::connect(persistent(port, "exp-short", 3)).await;
    short.subscribe_ok("exp/s", q1).await;
    short.disconnect().await;
    let mut long = Client5::connect(persistent(port, "exp-long", 600)).await;
    long.subscribe_ok("exp/l", q1).await;
    long.disconnect().await;

    let mut publisher = Client5::connect(options(port, "exp-pub")).await;
    publisher
        .publish_with("exp/l", q1, false, "short-lived", expiring(2))
        .await;
    publisher
        .publish_with("exp/l", q1, false, "long-lived", expiring(60))
        .await;
    publisher.publish("exp/l", q1, false, "forever").await;
    publisher
        .publish_with("exp/r", q1, true, "retained-short", expiring(2))
        .await;
    publisher
        .publish_with("exp/r2", q1, true, "retained-long", expiring(60))
        .await;
    publisher.disconnect().await;

    let downtime = Duration::from_secs(4);
    bounce_after(&mut broker, down, downtime);

    let short = Client5::connect(persistent(port, "exp-short", 3)).await;
    assert!(
        !short.session_present(),
        "[MQTT-4.1.0-2] Session Expiry Interval 3 s, broker down {downtime:?} ({down:?}): \
         the session must have expired"
    );
    let mut long = Client5::connect(persistent(port, "exp-long", 600)).await;
    assert!(long.session_present(), "[MQTT-3.2.2-3] after {down:?}");
    let a = long.recv().await;
    let b = long.recv().await;
    assert_eq!(
        (text(&a.payload), text(&b.payload)),
        ("long-lived".to_string(), "forever".to_string()),
        "[MQTT-3.3.2-5] the message with expiry 2 s expired while the broker was down"
    );
    let left = a
        .properties
        .as_ref()
        .and_then(|p| p.message_expiry_interval);
    assert!(
        left.is_some_and(|s| (1..=56).contains(&s)),
        "[MQTT-3.3.2-6] Message Expiry Interval must be 60 s minus the waiting time, \
         downtime included (>= 4 s): got {left:?}"
    );
    assert_eq!(b.properties.and_then(|p| p.message_expiry_interval), None);
    long.expect_nothing().await;

    let mut r = Client5::connect(options(port, "exp-r")).await;
    r.subscribe_ok("exp/+", q1).await;
    let p = r.recv().await;
    assert_eq!(
        text(&p.payload),
        "retained-long",
        "[MQTT-3.3.2-5] the retained message with expiry 2 s is gone after the downtime"
    );
    let left = p.properties.and_then(|p| p.message_expiry_interval);
    assert!(
        left.is_some_and(|s| (1..=56).contains(&s)),
        "[MQTT-3.3.2-6] retained message expiry counts the downtime: got {left:?}"
    );
    r.expect_nothing().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
// [MQTT-4.1.0-2] [MQTT-3.3.2-5] [MQTT-3.3.2-6] Session expiry and message expiry count the time
// the broker was down (clean shutdown, 4 s down): a session with expiry 3 s is gone, a message
// with expiry 2 s is dropped, one with expiry 60 s arrives with its remaining time.
async fn expiry_counts_downtime_after_clean_shutdown() {
    if holdfast_only("persistence across restarts") {
        return;
    }
    expiry_counts_downtime(Down::Clean).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
// [MQTT-4.1.0-2] [MQTT-3.3.2-5] [MQTT-3.3.2-6] The same after SIGKILL.
async fn expiry_counts_downtime_after_sigkill() {
    if holdfast_only("persistence across restarts") {
        return;
    }
    expiry_counts_downtime(Down::Kill).await;
}

// ---------------------------------------------------------------- acknowledged means stored

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
// docs/durability.md, class `flush`: "written to the OS before the acknowledgement". Every change
// survives a SIGKILL sent the moment its acknowledgement arrives: the CONNACK that confirms a new
// session ([MQTT-3.2.2-2] Session Present 1 afterwards), SUBACK (the subscription
// routes), UNSUBACK (the filter no longer routes), PUBACK of a message queued for an offline
// session and of a retained message.
async fn acknowledged_changes_survive_sigkill_right_after_the_ack() {
    use mqtt3::{options, persistent, Client3};
    if holdfast_only("persistence across restarts") {
        return;
    }
    let mut broker = Broker::start();
    let port = broker.port();

    let c = Client3::connect(persistent(port, "ack-sub")).await;
    assert!(!c.session_present());
    broker.restart(); // SIGKILL right after the CONNACK
    c.kill().await;

    let mut c = Client3::connect(persistent(port, "ack-sub")).await;
    assert!(c.session_present(), "the CONNACK confirmed the session");
    c.subscribe_ok("ack/keep", QoS::AtLeastOnce).await;
    c.subscribe_ok("ack/drop", QoS::AtLeastOnce).await;
    broker.restart(); // right after the SUBACKs
    c.kill().await;

    let mut c = Client3::connect(persistent(port, "ack-sub")).await;
    assert!(c.session_present());
    c.unsubscribe("ack/drop").await;
    broker.restart(); // right after the UNSUBACK
    c.kill().await;

    let mut publisher = Client3::connect(options(port, "ack-pub")).await;
    publisher
        .publish("ack/drop", QoS::AtLeastOnce, false, "unsubscribed")
        .await;
    publisher
        .publish("ack/keep", QoS::AtLeastOnce, false, "queued")
        .await;
    publisher
        .publish("ack/retained", QoS::AtLeastOnce, true, "retained")
        .await;
    broker.restart(); // right after the PUBACKs
    publisher.kill().await;

    let mut c = Client3::connect(persistent(port, "ack-sub")).await;
    assert!(c.session_present());
    let p = c.recv().await;
    assert_eq!(
        text(&p.payload),
        "queued",
        "the SUBACK'd subscription routed, the UNSUBACK'd one did not, the PUBACK'd message was kept"
    );
    c.expect_nothing().await;
    let mut r = Client3::connect(options(port, "ack-r")).await;
    r.subscribe_ok("ack/retained", QoS::AtLeastOnce).await;
    assert_eq!(text(&r.recv().await.payload), "retained");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
// [MQTT-3.1.2-6] (3.1.1) a CleanSession 1 connection discards the stored session, and
// [MQTT-3.1.2-4] (5) Clean Start 1 discards it; a v5 DISCONNECT that sets the Session Expiry
// Interval to 0 ends the session (section 3.14.2.2.2): the discarded sessions stay gone after SIGKILL.
async fn ended_sessions_stay_ended_after_sigkill() {
    if holdfast_only("persistence across restarts") {
        return;
    }
    let mut broker = Broker::start();
    let port = broker.port();
    let mut c = mqtt3::Client3::connect(mqtt3::persistent(port, "end-3")).await;
    c.subscribe_ok("end/3", QoS::AtLeastOnce).await;
    c.disconnect().await;
    let c = mqtt3::Client3::connect(mqtt3::options(port, "end-3")).await;
    assert!(!c.session_present());
    c.disconnect().await;

    let mut c = mqtt5::Client5::connect(mqtt5::persistent(port, "end-5", 600)).await;
    c.subscribe_ok("end/5", qos5(QoS::AtLeastOnce)).await;
    c.disconnect().await;
    // Clean Start 1, no Session Expiry: the stored session goes, the new one ends with the
    // connection.
    let c = mqtt5::Client5::connect(mqtt5::options(port, "end-5")).await;
    assert!(!c.session_present());
    c.disconnect().await;

    // Raw MQTT 5 (rumqttc 0.24 cannot send DISCONNECT properties): Session Expiry 600 at CONNECT,
    // then DISCONNECT 0x00 with Session Expiry Interval (0x11) = 0.
    let mut c = RawConn::open(broker.addr());
    c.handshake(&Connect {
        clean: false,
        properties: vec![0x11, 0, 0, 0x02, 0x58],
        ..Connect::v5("end-5x")
    });
    c.send(&raw::subscribe(0x82, 1, b"end/5x", 1, true));
    assert_eq!(c.expect_packet("SUBACK").first, 0x90);
    c.send(&raw::packet(0xE0, &[0x00, 5, 0x11, 0, 0, 0, 0]));
    c.expect_closed("DISCONNECT with Session Expiry Interval 0");

    let mut publisher = mqtt3::Client3::connect(mqtt3::options(port, "end-pub")).await;
    for t in ["end/3", "end/5", "end/5x"] {
        publisher.publish(t, QoS::AtLeastOnce, false, t).await;
    }
    broker.restart(); // SIGKILL
    publisher.kill().await;

    let mut c = mqtt3::Client3::connect(mqtt3::persistent(port, "end-3")).await;
    assert!(!c.session_present(), "CleanSession 1 discarded end-3");
    c.expect_nothing().await;
    for id in ["end-5", "end-5x"] {
        let mut c = mqtt5::Client5::connect(mqtt5::persistent(port, id, 600)).await;
        assert!(!c.session_present(), "{id} ended before the crash");
        c.expect_nothing().await;
    }
}

// ---------------------------------------------------------------- subscription options, wills

async fn subscription_options_survive(down: Down) {
    use mqtt5::{options, persistent, sub_ids, Client5};
    use rumqttc::v5::mqttbytes::v5::{Filter, RetainForwardRule};
    let mut broker = Broker::start();
    let port = broker.port();
    let q1 = qos5(QoS::AtLeastOnce);
    let mut s = Client5::connect(persistent(port, "so-sub", 3600)).await;
    let filter = Filter {
        path: "so/#".to_string(),
        qos: q1,
        nolocal: true,
        preserve_retain: true,
        retain_forward_rule: RetainForwardRule::OnEverySubscribe,
    };
    s.subscribe_with(filter, Some(7)).await;
    s.disconnect().await;
    let mut shared = Client5::connect(persistent(port, "so-shared", 3600)).await;
    shared.subscribe_ok("$share/grp/so/shared", q1).await;
    shared.disconnect().await;

    bounce(&mut broker, down);

    let mut publisher = Client5::connect(options(port, "so-pub")).await;
    publisher.publish("so/t", q1, true, "retained-live").await;
    publisher.publish("so/shared", q1, false, "to-group").await;
    let mut s = Client5::connect(persistent(port, "so-sub", 3600)).await;
    assert!(s.session_present(), "after {down:?}");
    let p = s.recv().await;
    assert_eq!(&p.payload[..], b"retained-live");
    assert_eq!(
        sub_ids(&p),
        vec![7],
        "[MQTT-3.3.4-3] the Subscription Identifier is stored with the subscription ({down:?})"
    );
    assert!(
        p.retain,
        "[MQTT-3.3.1-13] Retain As Published is stored with the subscription ({down:?})"
    );
    let p = s.recv().await;
    assert_eq!(&p.payload[..], b"to-group", "so/# also matches so/shared");
    // No Local is kept: the subscriber's own message does not come back [MQTT-3.8.3-3].
    s.publish("so/own", q1, false, "own").await;
    publisher.publish("so/end", q1, false, "end").await;
    let before = s.recv_until_topic("so/end").await;
    assert!(
        before.is_empty(),
        "[MQTT-3.8.3-3] No Local is stored with the subscription ({down:?}): {before:?}"
    );
    let mut shared = Client5::connect(persistent(port, "so-shared", 3600)).await;
    assert!(shared.session_present());
    assert_eq!(
        &shared.recv().await.payload[..],
        b"to-group",
        "(section 4.8.2) the shared subscription survives and routes ({down:?})"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
// [MQTT-3.3.4-3] [MQTT-3.3.1-13] [MQTT-3.8.3-3] A subscription's options (Subscription Identifier,
// Retain As Published, No Local) and shared subscriptions survive a clean restart.
async fn subscription_options_survive_clean_restart() {
    if holdfast_only("persistence across restarts") {
        return;
    }
    subscription_options_survive(Down::Clean).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
// [MQTT-3.3.4-3] [MQTT-3.3.1-13] [MQTT-3.8.3-3] The same after SIGKILL.
async fn subscription_options_survive_sigkill() {
    if holdfast_only("persistence across restarts") {
        return;
    }
    subscription_options_survive(Down::Kill).await;
}

async fn wills_of_connected_sessions(down: Down) {
    let mut broker = Broker::start();
    let port = broker.port();
    // The watcher is offline, so the wills reach it only through its restored session. Its id sorts
    // after the will senders' on purpose: a will published while the broker restores its sessions
    // must reach every restored subscription, whichever order they are restored in.
    let mut watcher = mqtt3::Client3::connect(mqtt3::persistent(port, "wl-watch")).await;
    watcher.subscribe_ok("wl/#", QoS::AtLeastOnce).await;
    watcher.disconnect().await;
    let a = mqtt3::Client3::connect(mqtt3::with_will(
        mqtt3::persistent(port, "wl-a"),
        "wl/a",
        "a-gone",
        QoS::AtLeastOnce,
        false,
    ))
    .await;
    let mut o = mqtt5::persistent(port, "wl-b", 600);
    mqtt5::set_will(
        &mut o,
        "wl/b",
        "b-gone",
        qos5(QoS::AtLeastOnce),
        Some(mqtt5::will_delay(1)),
    );
    let b = mqtt5::Client5::connect(o).await;

    // Down longer than b's will delay: after a clean shutdown (which closed b's connection) its
    // will is due when the broker starts again.
    bounce_after(&mut broker, down, Duration::from_millis(1500));
    a.kill().await;
    b.kill().await;

    let mut watcher = mqtt3::Client3::connect(mqtt3::persistent(port, "wl-watch")).await;
    assert!(watcher.session_present());
    // Both within a bound (b's will delay is 1 s); collected, so that a missing one is named.
    let mut got = Vec::new();
    let until = std::time::Instant::now() + TIMEOUT;
    while got.len() < 2 {
        let left = until.saturating_duration_since(std::time::Instant::now());
        match watcher.recv_within(left).await {
            Some(p) => got.push(text(&p.payload)),
            None => break,
        }
    }
    got.sort();
    assert_eq!(
        got,
        ["a-gone", "b-gone"],
        "[MQTT-3.1.2-8] the wills of sessions connected when the broker went down ({down:?}) \
         are published, once"
    );
    watcher.expect_nothing().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
// [MQTT-3.1.2-8] docs/durability.md: the will of a session that was connected when the broker went
// down is published (after its will delay), here after a clean shutdown; exactly once.
async fn wills_of_connected_sessions_published_after_clean_shutdown() {
    if holdfast_only("persistence across restarts") {
        return;
    }
    wills_of_connected_sessions(Down::Clean).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
// [MQTT-3.1.2-8] docs/durability.md: "A session that was connected when the broker died lost its
// connection then: its will is published (after its will delay)" — after SIGKILL, on restart.
async fn wills_of_connected_sessions_published_after_sigkill() {
    if holdfast_only("persistence across restarts") {
        return;
    }
    wills_of_connected_sessions(Down::Kill).await;
}

// ---------------------------------------------------------------- volatile, and per-topic classes

/// Every file under `dir` whose bytes contain `needle`.
fn files_containing(dir: &std::path::Path, needle: &[u8]) -> Vec<String> {
    let mut found = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return found;
    };
    for e in entries.flatten() {
        let path = e.path();
        if path.is_dir() {
            found.extend(files_containing(&path, needle));
        } else if let Ok(bytes) = std::fs::read(&path) {
            if bytes.windows(needle.len()).any(|w| w == needle) {
                found.push(path.display().to_string());
            }
        }
    }
    found
}

async fn volatile_keeps_nothing(down: Down) {
    use mqtt3::{options, persistent, Client3};
    let mut broker = Broker::start_with("[storage]\ndurability = \"volatile\"\n");
    let port = broker.port();
    let mut sub = Client3::connect(persistent(port, "vol-sub")).await;
    sub.subscribe_ok("vol/t", QoS::ExactlyOnce).await;
    sub.disconnect().await;
    let mut publisher = Client3::connect(options(port, "vol-pub")).await;
    publisher
        .publish("vol/t", QoS::AtLeastOnce, false, "vol-queued")
        .await;
    publisher
        .publish("vol/r", QoS::AtLeastOnce, true, "vol-retained")
        .await;
    publisher.disconnect().await;
    // While it runs, the session works as usual.
    let mut sub = Client3::connect(persistent(port, "vol-sub")).await;
    assert!(sub.session_present());
    assert_eq!(&sub.recv().await.payload[..], b"vol-queued");
    sub.disconnect().await;
    let mut publisher = Client3::connect(options(port, "vol-pub")).await;
    publisher
        .publish("vol/t", QoS::AtLeastOnce, false, "vol-queued-2")
        .await;
    publisher.disconnect().await;

    bounce(&mut broker, down);

    for needle in ["vol-sub", "vol-queued", "vol-retained"] {
        let files = files_containing(&broker.data_dir(), needle.as_bytes());
        assert!(
            files.is_empty(),
            "class volatile: {needle:?} must never be written to disk, found in {files:?}"
        );
    }
    let mut sub = Client3::connect(persistent(port, "vol-sub")).await;
    assert!(
        !sub.session_present(),
        "class volatile: the session is lost with the process ({down:?})"
    );
    sub.subscribe_ok("vol/#", QoS::AtLeastOnce).await;
    sub.expect_nothing().await; // neither the queued message nor the retained one
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
// docs/durability.md: class `volatile` keeps sessions, queues and retained messages in memory
// only: after a clean shutdown nothing is left (and nothing was ever written to the data dir).
async fn volatile_class_keeps_nothing_after_clean_restart() {
    if holdfast_only("storage.durability") {
        return;
    }
    volatile_keeps_nothing(Down::Clean).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
// docs/durability.md: class `volatile`, the same after SIGKILL.
async fn volatile_class_keeps_nothing_after_sigkill() {
    if holdfast_only("storage.durability") {
        return;
    }
    volatile_keeps_nothing(Down::Kill).await;
}

/// The two examples of the specification, as docs/durability.md configures them.
const SPEC_EXAMPLES: &str = r#"
[storage]
durability = "flush"          # everything else

[[storage.rule]]
topics = ["meters/#"]
durability = "volatile"       # readings: memory only, no disk I/O

[[storage.rule]]
topics = ["payments/#"]
durability = "sync"
"#;

async fn spec_examples(down: Down) {
    use mqtt3::{options, persistent, Client3};
    let mut broker = Broker::start_with(SPEC_EXAMPLES);
    let port = broker.port();
    let mut processor = Client3::connect(persistent(port, "processor")).await;
    processor.subscribe_ok("payments/#", QoS::ExactlyOnce).await;
    processor.disconnect().await;
    let mut reader = Client3::connect(persistent(port, "reader")).await;
    reader.subscribe_ok("meters/#", QoS::AtLeastOnce).await;
    reader.disconnect().await;
    let mut both = Client3::connect(persistent(port, "both")).await;
    both.subscribe_ok("meters/#", QoS::AtLeastOnce).await;
    both.subscribe_ok("payments/#", QoS::ExactlyOnce).await;
    both.disconnect().await;

    let mut meter = Client3::connect(options(port, "meter-17")).await;
    meter
        .publish("payments/meter-17", QoS::AtLeastOnce, false, "pay-1")
        .await;
    meter
        .publish("meters/meter-17", QoS::AtLeastOnce, false, "reading-1")
        .await;
    meter
        .publish("payments/meter-17", QoS::ExactlyOnce, false, "pay-2")
        .await;
    meter
        .publish("meters/meter-17", QoS::ExactlyOnce, false, "reading-2")
        .await;
    meter
        .publish("payments/meter-17/last", QoS::AtLeastOnce, true, "pay-r")
        .await;
    meter
        .publish("meters/meter-17/last", QoS::AtLeastOnce, true, "reading-r")
        .await;
    meter.disconnect().await;

    bounce(&mut broker, down);

    for needle in ["reading-1", "reading-2", "reading-r"] {
        let files = files_containing(&broker.data_dir(), needle.as_bytes());
        assert!(
            files.is_empty(),
            "meters/# is volatile: {needle:?} in {files:?}"
        );
    }
    let payloads =
        |ps: Vec<rumqttc::Publish>| ps.iter().map(|p| text(&p.payload)).collect::<Vec<_>>();
    let mut meter = Client3::connect(options(port, "meter-17")).await;
    let mut processor = Client3::connect(persistent(port, "processor")).await;
    assert!(
        processor.session_present(),
        "payments session after {down:?}"
    );
    let mut reader = Client3::connect(persistent(port, "reader")).await;
    assert!(
        reader.session_present(),
        "a session's own records take the default class (flush): kept after {down:?}"
    );
    let mut both = Client3::connect(persistent(port, "both")).await;
    assert!(both.session_present(), "after {down:?}");
    // A barrier on each side, published after the restart, ends what was queued before.
    meter
        .publish("payments/barrier", QoS::AtLeastOnce, false, "p-barrier")
        .await;
    meter
        .publish("meters/barrier", QoS::AtLeastOnce, false, "m-barrier")
        .await;
    assert_eq!(
        payloads(processor.recv_until_topic("payments/barrier").await),
        ["pay-1", "pay-2", "pay-r"],
        "sync payments are kept ({down:?})"
    );
    assert_eq!(
        payloads(reader.recv_until_topic("meters/barrier").await),
        Vec::<String>::new(),
        "volatile readings are lost ({down:?}); the subscription routes again"
    );
    let mut got = payloads(both.recv_until_topic("meters/barrier").await);
    got.retain(|p| p != "p-barrier");
    assert_eq!(got, ["pay-1", "pay-2", "pay-r"], "({down:?})");

    let mut late = Client3::connect(options(port, "late")).await;
    late.subscribe_ok("payments/+/last", QoS::AtLeastOnce).await;
    late.subscribe_ok("meters/+/last", QoS::AtLeastOnce).await;
    let p = late.recv().await;
    assert_eq!((text(&p.payload), p.retain), ("pay-r".to_string(), true));
    late.expect_nothing().await; // the volatile retained reading is gone
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
// docs/durability.md, "The two examples of the specification" (MQTT 4.1): payments/# `sync` and
// meters/# `volatile` side by side; after a clean restart the payments (queued and retained) are
// back, the readings are gone, and every session and subscription is kept.
async fn spec_examples_payments_kept_meter_readings_lost_after_clean_restart() {
    if holdfast_only("storage rules") {
        return;
    }
    spec_examples(Down::Clean).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
// docs/durability.md, the two examples of the specification, after SIGKILL.
async fn spec_examples_payments_kept_meter_readings_lost_after_sigkill() {
    if holdfast_only("storage rules") {
        return;
    }
    spec_examples(Down::Kill).await;
}
