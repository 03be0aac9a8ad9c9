//! Configured limits (`[limits]`, `[mqtt]`) and the MQTT rules that apply when a client meets
//! them. Options Mosquitto also has are checked against it too (see support::mosquitto_options);
//! the others are Holdfast-only and skipped in the Mosquitto reference run.

mod support;

use std::time::Duration;

use rumqttc::v5::mqttbytes::QoS as QoS5;
use rumqttc::QoS;
use support::mqtt3::{self, Client3};
use support::mqtt5::{self, Client5};
use support::raw::{publish, subscribe, Connect, RawConn, RawPacket, Will};
use support::{holdfast_only, is_mosquitto, Broker, QUIET, TIMEOUT};

/// A v5 raw connection that completed CONNECT/CONNACK.
fn raw_v5(broker: &Broker, id: &str) -> (RawConn, RawPacket) {
    let mut c = RawConn::open(broker.addr());
    let ack = c.handshake(&Connect::v5(id));
    (c, ack)
}

/// The connection must end with exactly one DISCONNECT carrying `reason`, then close.
fn expect_disconnect(c: &mut RawConn, ctx: &str, reasons: &[u8]) {
    match c.expect_closed(ctx).as_slice() {
        [d] if d.is_disconnect() && reasons.contains(&d.reason()) => {}
        other => panic!(
            "{ctx}: expected DISCONNECT with one of {reasons:02x?}, then close; got {other:?}"
        ),
    }
}

/// The connection must be refused with one CONNACK carrying `reason`, then close.
fn expect_connack_refusal(c: &mut RawConn, ctx: &str, reason: u8) {
    match c.expect_closed(ctx).as_slice() {
        [a] if a.is_connack() && a.reason() == reason => {}
        other => panic!("{ctx}: expected CONNACK {reason:#04x}, then close; got {other:?}"),
    }
}

/// Receives on a manual-ack MQTT 3.1.1 client and checks that at most `max` QoS 1 messages are
/// ever unacknowledged; acks the oldest whenever the window is full and quiet.
async fn check_window_v311(sub: &mut Client3, max: usize, n: usize) {
    let mut unacked = std::collections::VecDeque::new();
    let mut next = 0;
    while next < n {
        match sub
            .recv_within(if unacked.len() < max { TIMEOUT } else { QUIET })
            .await
        {
            Some(p) => {
                assert_eq!(p.payload, next.to_string(), "order");
                next += 1;
                unacked.push_back(p);
                assert!(
                    unacked.len() <= max,
                    "{} unacknowledged > max_inflight {max}",
                    unacked.len()
                );
            }
            None if unacked.len() == max => {
                if is_mosquitto() {
                    return; // Mosquitto 2.0.11 overfills the window after an ack (see rumqttc_v5.rs)
                }
                let p = unacked.pop_front().expect("one to ack");
                sub.client.ack(&p).await.expect("queue PUBACK");
            }
            None => panic!(
                "delivery stalled with {} unacknowledged, {next} of {n} received",
                unacked.len()
            ),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
// `max_inflight`: the outbound window of unacknowledged QoS 1 messages per client (also for
// MQTT 3.1.1 clients, which have no Receive Maximum); the rest wait in order.
async fn max_inflight_limits_unacknowledged_deliveries() {
    let broker = Broker::start_with("[limits]\nmax_inflight = 2\n");
    let mut o = mqtt3::options(broker.port(), "win-sub");
    o.set_manual_acks(true);
    let mut sub = Client3::connect(o).await;
    sub.subscribe_ok("win/t", QoS::AtLeastOnce).await;
    let mut publisher = Client3::connect(mqtt3::options(broker.port(), "win-pub")).await;
    for i in 0..6 {
        publisher
            .publish("win/t", QoS::AtLeastOnce, false, i.to_string())
            .await;
    }
    check_window_v311(&mut sub, 2, 6).await;
}

/// Fills an offline session's queue with `n` QoS 1 messages and returns what it receives
/// when it comes back.
async fn overfill_offline_queue(broker: &Broker, n: usize) -> Vec<usize> {
    let mut sub = Client3::connect(mqtt3::persistent(broker.port(), "q-sub")).await;
    sub.subscribe_ok("q/t", QoS::AtLeastOnce).await;
    sub.disconnect().await;
    let mut publisher = Client3::connect(mqtt3::options(broker.port(), "q-pub")).await;
    for i in 0..n {
        publisher
            .publish("q/t", QoS::AtLeastOnce, false, i.to_string())
            .await;
    }
    let mut sub = Client3::connect(mqtt3::persistent(broker.port(), "q-sub")).await;
    assert!(sub.session_present());
    let mut got = Vec::new();
    while let Some(p) = sub.recv_within(QUIET * 2).await {
        got.push(String::from_utf8_lossy(&p.payload).parse().expect("number"));
    }
    got
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
// `queue_full_policy = "reject-new"`: a full offline queue keeps its oldest messages. At most
// max_queued_messages (+ max_inflight, if the broker counts messages assigned to the window
// separately) are kept.
async fn queue_full_reject_new_keeps_oldest() {
    let broker = Broker::start_with(
        "[limits]\nmax_inflight = 1\nmax_queued_messages = 3\nqueue_full_policy = \"reject-new\"\n",
    );
    let got = overfill_offline_queue(&broker, 10).await;
    assert!((3..=4).contains(&got.len()), "kept {got:?}");
    assert_eq!(
        got,
        (0..got.len()).collect::<Vec<_>>(),
        "the oldest, in order"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
// `queue_full_policy = "drop-oldest"`: a full offline queue keeps its newest messages.
async fn queue_full_drop_oldest_keeps_newest() {
    if holdfast_only("queue_full_policy = drop-oldest") {
        return;
    }
    let broker = Broker::start_with(
        "[limits]\nmax_inflight = 1\nmax_queued_messages = 3\nqueue_full_policy = \"drop-oldest\"\n",
    );
    let got = overfill_offline_queue(&broker, 10).await;
    assert!((3..=4).contains(&got.len()), "kept {got:?}");
    assert_eq!(
        got,
        (10 - got.len()..10).collect::<Vec<_>>(),
        "the newest, in order"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
// `session_expiry_max` caps the Session Expiry Interval, announced in the v5 CONNACK
// (3.2.2.3.2: the server tells the client the interval it uses), and is the expiry of MQTT
// 3.1.1 persistent sessions; [MQTT-4.1.0-2] sessions are discarded when it has passed.
async fn session_expiry_max_caps_sessions() {
    if holdfast_only("session_expiry_max") {
        return;
    }
    let broker = Broker::start_with("[limits]\nsession_expiry_max = \"2s\"\n");
    let mut v5 = Client5::connect(mqtt5::persistent(broker.port(), "cap5", 3600)).await;
    let announced = v5
        .connack
        .properties
        .as_ref()
        .and_then(|p| p.session_expiry_interval);
    assert_eq!(announced, Some(2), "CONNACK Session Expiry Interval");
    v5.subscribe_ok("cap/t", QoS5::AtLeastOnce).await;
    v5.disconnect().await;
    let mut v3 = Client3::connect(mqtt3::persistent(broker.port(), "cap3")).await;
    v3.subscribe_ok("cap/t", QoS::AtLeastOnce).await;
    v3.disconnect().await;

    tokio::time::sleep(Duration::from_millis(3500)).await;
    let v5 = Client5::connect(mqtt5::persistent(broker.port(), "cap5", 3600)).await;
    assert!(
        !v5.session_present(),
        "v5 session must have expired after 2 s"
    );
    let v3 = Client3::connect(mqtt3::persistent(broker.port(), "cap3")).await;
    assert!(
        !v3.session_present(),
        "3.1.1 persistent session must have expired after 2 s"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
// `max_keep_alive`: a v5 client asking for more gets Server Keep Alive in the CONNACK
// ([MQTT-3.2.2-21]: the client must then use it).
async fn max_keep_alive_is_announced_as_server_keep_alive() {
    let broker = Broker::start_with("[limits]\nmax_keep_alive = 10\n");
    let mut o = mqtt5::options(broker.port(), "ka");
    o.set_keep_alive(Duration::from_secs(60));
    let c = Client5::connect(o).await;
    let ka = c
        .connack
        .properties
        .as_ref()
        .and_then(|p| p.server_keep_alive);
    assert_eq!(ka, Some(10), "CONNACK Server Keep Alive");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
// `maximum_qos = 1`: [MQTT-3.2.2-9] announced in CONNACK; a PUBLISH above it is answered with
// DISCONNECT 0x9B (QoS not supported) (3.2.2.3.4); [MQTT-3.2.2-12] a Will QoS above it is
// refused with CONNACK 0x9B.
async fn publish_above_maximum_qos_is_refused() {
    let broker = Broker::start_with("[mqtt]\nmaximum_qos = 1\n");
    let (mut c, ack) = raw_v5(&broker, "mq");
    assert_eq!(ack.v5_property(0x24), Some(vec![1]), "CONNACK Maximum QoS");
    c.send(&publish(b"mq/t", 2, false, 1, b"x", Some(&[])));
    expect_disconnect(&mut c, "PUBLISH QoS 2", &[0x9B]);

    let mut c = RawConn::open(broker.addr());
    let will = Will {
        topic: b"mq/will".to_vec(),
        payload: b"w".to_vec(),
        qos: 2,
        retain: false,
        properties: vec![],
    };
    c.send(
        &Connect {
            will: Some(will),
            ..Connect::v5("mq-will")
        }
        .encode(),
    );
    expect_connack_refusal(&mut c, "Will QoS 2", 0x9B);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
// `retain_available = false`: announced in CONNACK (Retain Available 0); a retained PUBLISH
// is answered with DISCONNECT 0x9A (Retain not supported) (3.2.2.3.5); [MQTT-3.2.2-13] a
// Will with Retain 1 is refused with CONNACK 0x9A.
async fn retain_not_available() {
    let broker = Broker::start_with("[mqtt]\nretain_available = false\n");
    let (mut c, ack) = raw_v5(&broker, "nr");
    assert_eq!(
        ack.v5_property(0x25),
        Some(vec![0]),
        "CONNACK Retain Available"
    );
    c.send(&publish(b"nr/t", 1, true, 1, b"x", Some(&[])));
    expect_disconnect(&mut c, "retained PUBLISH", &[0x9A]);

    let mut c = RawConn::open(broker.addr());
    let will = Will {
        topic: b"nr/will".to_vec(),
        payload: b"w".to_vec(),
        qos: 0,
        retain: true,
        properties: vec![],
    };
    c.send(
        &Connect {
            will: Some(will),
            ..Connect::v5("nr-will")
        }
        .encode(),
    );
    expect_connack_refusal(&mut c, "Will Retain 1", 0x9A);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
// `topic_alias_maximum = 2`: [MQTT-3.2.2-17] an alias above the maximum is answered with
// DISCONNECT 0x94 (Topic Alias invalid); [MQTT-3.3.2-8] alias 0 and an empty topic with an
// alias that has no mapping are errors too (3.3.2.3.4) and close the connection.
async fn topic_alias_out_of_range_disconnects() {
    let broker = Broker::start_with("[limits]\ntopic_alias_maximum = 2\n");
    for (alias, topic, reasons, what) in [
        // No reason code is given for 0: Topic Alias invalid, Protocol Error or Malformed.
        (0u16, &b"ta/t"[..], &[0x94u8, 0x82, 0x81][..], "alias 0"),
        (3, b"ta/t", &[0x94], "alias 3 > maximum 2"),
        (1, b"", &[0x82, 0x94], "unmapped alias with empty topic"),
    ] {
        let (mut c, ack) = raw_v5(&broker, "ta");
        assert_eq!(
            ack.v5_property(0x22),
            Some(vec![0, 2]),
            "CONNACK Topic Alias Maximum"
        );
        let [hi, lo] = alias.to_be_bytes();
        c.send(&publish(topic, 1, false, 1, b"x", Some(&[0x23, hi, lo])));
        expect_disconnect(&mut c, what, reasons);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
// `receive_maximum = 2`: announced in CONNACK; a client with more unacknowledged QoS 2
// PUBLISHes than that gets DISCONNECT 0x93 (Receive Maximum exceeded) (3.3.4).
async fn receive_maximum_exceeded_disconnects() {
    if holdfast_only("receive_maximum (the broker's own)") {
        return;
    }
    let broker = Broker::start_with("[limits]\nreceive_maximum = 2\n");
    let (mut c, ack) = raw_v5(&broker, "rx");
    assert_eq!(
        ack.v5_property(0x21),
        Some(vec![0, 2]),
        "CONNACK Receive Maximum"
    );
    for pkid in 1..=2u16 {
        c.send(&publish(b"rx/t", 2, false, pkid, b"x", Some(&[])));
        let rec = c.expect_packet("PUBREC");
        assert_eq!(
            (rec.first, &rec.body[..2]),
            (0x50, &pkid.to_be_bytes()[..]),
            "PUBREC {pkid}"
        );
    }
    c.send(&publish(b"rx/t", 2, false, 3, b"x", Some(&[]))); // no PUBREL sent for 1 and 2
    expect_disconnect(&mut c, "third unreleased QoS 2 PUBLISH", &[0x93]);
}

/// The SUBACK reason code of a v5 one-filter SUBACK, or the DISCONNECT reason if the server
/// chose to close the connection instead.
fn suback_or_disconnect(c: &mut RawConn, ctx: &str) -> u8 {
    let p = c.expect_packet(ctx);
    match p.first {
        0x90 => {
            let (len, n) = support::raw::read_varint(&p.body[2..]).expect("SUBACK properties");
            p.body[2 + n + len]
        }
        0xE0 => p.reason(),
        _ => panic!("{ctx}: expected SUBACK or DISCONNECT, got {p:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
// `wildcard_subscriptions = false` / `shared_subscriptions = false`: announced in CONNACK
// (Wildcard / Shared Subscription Available 0); such a SUBSCRIBE gets reason code 0xA2 /
// 0x9E (in the SUBACK, or in a DISCONNECT, 3.2.2.3.12-13); other subscriptions work.
async fn wildcard_and_shared_subscriptions_disabled() {
    if holdfast_only("wildcard_subscriptions / shared_subscriptions") {
        return;
    }
    let broker = Broker::start_with(
        "[mqtt]\nwildcard_subscriptions = false\nshared_subscriptions = false\n",
    );
    for (i, (filter, reason)) in [
        (&b"w/+"[..], 0xA2u8),
        (b"w/#", 0xA2),
        (b"$share/g/w/t", 0x9E),
    ]
    .into_iter()
    .enumerate()
    {
        let (mut c, ack) = raw_v5(&broker, &format!("nosub-{i}"));
        assert_eq!(
            ack.v5_property(0x28),
            Some(vec![0]),
            "CONNACK Wildcard Subscription Available"
        );
        assert_eq!(
            ack.v5_property(0x2A),
            Some(vec![0]),
            "CONNACK Shared Subscription Available"
        );
        c.send(&subscribe(0x82, 1, filter, 1, true));
        let ctx = format!("SUBSCRIBE {:?}", String::from_utf8_lossy(filter));
        assert_eq!(suback_or_disconnect(&mut c, &ctx), reason, "{ctx}");
    }
    let (mut c, _) = raw_v5(&broker, "plain");
    c.send(&subscribe(0x82, 1, b"w/t", 1, true));
    assert_eq!(
        suback_or_disconnect(&mut c, "plain SUBSCRIBE"),
        1,
        "granted QoS 1"
    );
}
