//! MQTT 3.1.1 behaviour seen through a real client library (rumqttc 0.24, `AsyncClient`).
//! Each test starts its own broker; each names the rule of the OASIS MQTT 3.1.1 standard it
//! proves.

mod support;

use rumqttc::{Publish, QoS};
use support::mqtt3::{options, persistent, with_will, Client3};
use support::{is_mosquitto, Broker, TIMEOUT};

fn body(p: &Publish) -> &[u8] {
    &p.payload
}

/// Every byte value, so a payload that is not passed through byte for byte is noticed.
fn all_bytes() -> Vec<u8> {
    (0..=255u8).chain((0..=255u8).rev()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
// [MQTT-3.3.5-1] [MQTT-4.3.1-1] [MQTT-4.3.2-2] [MQTT-4.3.3-2] A message published at QoS 0, 1
// and 2 reaches a QoS 2 subscriber at the same QoS, with topic and payload unchanged.
async fn qos_0_1_2_round_trip_keeps_topic_payload_and_qos() {
    let broker = Broker::start();
    let mut sub = Client3::connect(options(broker.port(), "rt-sub")).await;
    let topic = "rt/ü/β/x y";
    sub.subscribe_ok(topic, QoS::ExactlyOnce).await;
    let mut publisher = Client3::connect(options(broker.port(), "rt-pub")).await;
    for qos in [QoS::AtMostOnce, QoS::AtLeastOnce, QoS::ExactlyOnce] {
        let mut payload = all_bytes();
        payload.push(qos as u8);
        publisher.publish(topic, qos, false, payload.clone()).await;
        let p = sub.recv().await;
        assert_eq!(p.topic, topic, "topic");
        assert_eq!(body(&p), payload.as_slice(), "payload at {qos:?}");
        assert_eq!(p.qos, qos, "delivered QoS");
        assert!(
            !p.retain,
            "[MQTT-3.3.1-9] RETAIN must be 0 on a live subscription"
        );
        assert!(
            !p.dup,
            "[MQTT-3.3.1-3] first delivery must not have DUP set"
        );
    }
    // An empty payload is a valid message too.
    publisher
        .publish(topic, QoS::AtLeastOnce, false, Vec::new())
        .await;
    assert!(sub.recv().await.payload.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
// [MQTT-3.8.4-6] The QoS of a delivered message is the minimum of the published QoS and the
// QoS granted to the subscription.
async fn delivered_qos_is_minimum_of_publish_and_subscription_qos() {
    let broker = Broker::start();
    let mut s0 = Client3::connect(options(broker.port(), "dg-s0")).await;
    let mut s1 = Client3::connect(options(broker.port(), "dg-s1")).await;
    let mut s2 = Client3::connect(options(broker.port(), "dg-s2")).await;
    s0.subscribe_ok("dg/t", QoS::AtMostOnce).await;
    s1.subscribe_ok("dg/t", QoS::AtLeastOnce).await;
    s2.subscribe_ok("dg/t", QoS::ExactlyOnce).await;
    let mut publisher = Client3::connect(options(broker.port(), "dg-pub")).await;
    for (pub_qos, name) in [
        (QoS::ExactlyOnce, "two"),
        (QoS::AtLeastOnce, "one"),
        (QoS::AtMostOnce, "zero"),
    ] {
        publisher.publish("dg/t", pub_qos, false, name).await;
        for (sub, sub_qos) in [
            (&mut s0, QoS::AtMostOnce),
            (&mut s1, QoS::AtLeastOnce),
            (&mut s2, QoS::ExactlyOnce),
        ] {
            let p = sub.recv().await;
            assert_eq!(body(&p), name.as_bytes());
            assert_eq!(
                p.qos as u8,
                (pub_qos as u8).min(sub_qos as u8),
                "publish {pub_qos:?} to sub {sub_qos:?}"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
// [MQTT-3.1.2-4] [MQTT-3.2.2-2] [MQTT-3.2.2-3] [MQTT-4.5.0-1] A session with CleanSession 0
// keeps its subscriptions while offline, queues the QoS 1 and QoS 2 messages published
// meanwhile, and reports Session Present 1 when the client comes back.
async fn persistent_session_receives_messages_published_while_offline() {
    let broker = Broker::start();
    let mut sub = Client3::connect(persistent(broker.port(), "ps-sub")).await;
    assert!(
        !sub.session_present(),
        "[MQTT-3.2.2-3] a new session has Session Present 0"
    );
    sub.subscribe_ok("ps/t", QoS::ExactlyOnce).await;
    sub.disconnect().await;

    let mut publisher = Client3::connect(options(broker.port(), "ps-pub")).await;
    publisher
        .publish("ps/t", QoS::AtLeastOnce, false, "offline-1")
        .await;
    publisher
        .publish("ps/t", QoS::ExactlyOnce, false, "offline-2")
        .await;
    publisher
        .publish("ps/t", QoS::AtLeastOnce, false, "offline-3")
        .await;

    let mut sub = Client3::connect(persistent(broker.port(), "ps-sub")).await;
    assert!(
        sub.session_present(),
        "[MQTT-3.2.2-2] resumed session must have Session Present 1"
    );
    let mut got = Vec::new();
    for _ in 0..3 {
        let p = sub.recv().await;
        assert_eq!(p.topic, "ps/t");
        got.push((String::from_utf8_lossy(&p.payload).into_owned(), p.qos));
    }
    // [MQTT-4.6.0-6] orders messages of the same topic and QoS.
    let of = |qos| {
        got.iter()
            .filter(|g| g.1 == qos)
            .map(|g| g.0.as_str())
            .collect::<Vec<_>>()
    };
    assert_eq!(of(QoS::AtLeastOnce), ["offline-1", "offline-3"], "{got:?}");
    assert_eq!(of(QoS::ExactlyOnce), ["offline-2"], "{got:?}");
    sub.expect_nothing().await;
    // The subscription itself survived: live messages keep flowing without a new SUBSCRIBE.
    publisher
        .publish("ps/t", QoS::AtLeastOnce, false, "live")
        .await;
    assert_eq!(body(&sub.recv().await), b"live");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
// [MQTT-3.1.2-6] [MQTT-3.2.2-1] CleanSession 1 discards the previous session, and a clean
// session's state is discarded when its connection ends.
async fn clean_session_discards_state() {
    let broker = Broker::start();
    let mut c = Client3::connect(persistent(broker.port(), "cs")).await;
    c.subscribe_ok("cs/t", QoS::AtLeastOnce).await;
    c.disconnect().await;

    let c = Client3::connect(options(broker.port(), "cs")).await;
    assert!(
        !c.session_present(),
        "[MQTT-3.2.2-1] CleanSession 1 must give Session Present 0"
    );
    c.disconnect().await;

    let mut publisher = Client3::connect(options(broker.port(), "cs-pub")).await;
    publisher
        .publish("cs/t", QoS::AtLeastOnce, false, "after-clean")
        .await;

    let mut c = Client3::connect(persistent(broker.port(), "cs")).await;
    assert!(
        !c.session_present(),
        "[MQTT-3.1.2-6] the clean session must not have been kept"
    );
    c.expect_nothing().await;
    publisher
        .publish("cs/t", QoS::AtLeastOnce, false, "live")
        .await;
    c.expect_nothing().await; // the old subscription is gone too
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
// [MQTT-3.1.4-2] A second connection with the same Client Identifier makes the server
// disconnect the first one; the session (CleanSession 0) carries over to the new connection.
async fn session_takeover_disconnects_existing_client() {
    let broker = Broker::start();
    let mut first = Client3::connect(persistent(broker.port(), "dup")).await;
    first.subscribe_ok("to/t", QoS::AtLeastOnce).await;

    let mut second = Client3::connect(persistent(broker.port(), "dup")).await;
    assert!(
        second.session_present(),
        "the existing session is resumed by the new connection"
    );
    assert!(
        first.closed_within(TIMEOUT).await.is_some(),
        "[MQTT-3.1.4-2] the first connection must be closed by the server"
    );
    let mut publisher = Client3::connect(options(broker.port(), "to-pub")).await;
    publisher
        .publish("to/t", QoS::AtLeastOnce, false, "to-new")
        .await;
    let p = second.recv().await;
    assert_eq!(body(&p), b"to-new");
    assert!(
        second.closed_within(support::QUIET).await.is_none(),
        "new connection stays up"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
// [MQTT-3.1.2-8] The Will Message is published when the connection closes without DISCONNECT,
// with its QoS; [MQTT-3.1.2-17] with Will Retain 1 it is published as a retained message.
async fn will_is_published_on_abnormal_disconnect() {
    let broker = Broker::start();
    let mut watcher = Client3::connect(options(broker.port(), "will-watch")).await;
    watcher.subscribe_ok("will/+", QoS::AtLeastOnce).await;

    let c = Client3::connect(with_will(
        options(broker.port(), "will-a"),
        "will/a",
        "a-gone",
        QoS::AtLeastOnce,
        false,
    ))
    .await;
    watcher.expect_nothing().await; // not before the connection ends
    c.kill().await;
    let p = watcher.recv().await;
    assert_eq!(
        (p.topic.as_str(), body(&p), p.qos),
        ("will/a", &b"a-gone"[..], QoS::AtLeastOnce)
    );

    let c = Client3::connect(with_will(
        options(broker.port(), "will-b"),
        "will/b",
        "b-gone",
        QoS::AtLeastOnce,
        true,
    ))
    .await;
    c.kill().await;
    assert_eq!(body(&watcher.recv().await), b"b-gone");
    let mut late = Client3::connect(options(broker.port(), "will-late")).await;
    late.subscribe_ok("will/b", QoS::AtLeastOnce).await;
    let p = late.recv().await;
    assert_eq!(body(&p), b"b-gone");
    assert!(
        p.retain,
        "[MQTT-3.1.2-17] a will with Will Retain 1 is retained"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
// [MQTT-3.1.2-10] [MQTT-3.14.4-3] A DISCONNECT removes the Will Message: it is not published.
async fn no_will_on_normal_disconnect() {
    let broker = Broker::start();
    let mut watcher = Client3::connect(options(broker.port(), "nw-watch")).await;
    watcher.subscribe_ok("nw/#", QoS::AtLeastOnce).await;
    let c = Client3::connect(with_will(
        options(broker.port(), "nw-c"),
        "nw/will",
        "gone",
        QoS::AtLeastOnce,
        false,
    ))
    .await;
    c.disconnect().await;
    let mut publisher = Client3::connect(options(broker.port(), "nw-pub")).await;
    publisher
        .publish("nw/barrier", QoS::AtLeastOnce, false, "b")
        .await;
    let before = watcher.recv_until_topic("nw/barrier").await;
    assert!(
        before.is_empty(),
        "will published after DISCONNECT: {before:?}"
    );
    watcher.expect_nothing().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
// [MQTT-3.3.1-5] a retained message is stored and replaces the previous one;
// [MQTT-3.3.1-8] it is sent with RETAIN 1 to a new subscription; [MQTT-3.3.1-9] live delivery
// has RETAIN 0; [MQTT-3.3.1-12] a RETAIN 0 publish does not touch it; [MQTT-3.3.1-10]
// [MQTT-3.3.1-11] a zero-byte retained message deletes it.
async fn retained_set_replace_delete() {
    let broker = Broker::start();
    let port = broker.port();
    let mut publisher = Client3::connect(options(port, "ret-pub")).await;
    publisher
        .publish("ret/t", QoS::AtLeastOnce, true, "v1")
        .await;

    let mut s1 = Client3::connect(options(port, "ret-s1")).await;
    s1.subscribe_ok("ret/t", QoS::AtLeastOnce).await;
    let p = s1.recv().await;
    assert_eq!(body(&p), b"v1");
    assert!(
        p.retain,
        "[MQTT-3.3.1-8] retained message on a new subscription has RETAIN 1"
    );

    publisher
        .publish("ret/t", QoS::AtLeastOnce, true, "v2")
        .await;
    let p = s1.recv().await;
    assert_eq!(body(&p), b"v2");
    assert!(
        !p.retain,
        "[MQTT-3.3.1-9] established subscription gets RETAIN 0"
    );

    let mut s2 = Client3::connect(options(port, "ret-s2")).await;
    s2.subscribe_ok("ret/#", QoS::AtLeastOnce).await;
    let p = s2.recv().await;
    assert_eq!(
        (p.topic.as_str(), body(&p), p.retain),
        ("ret/t", &b"v2"[..], true),
        "replaced"
    );
    s2.expect_nothing().await; // exactly one retained message per topic

    publisher
        .publish("ret/t", QoS::AtLeastOnce, false, "not-retained")
        .await;
    let mut s3 = Client3::connect(options(port, "ret-s3")).await;
    s3.subscribe_ok("ret/t", QoS::AtLeastOnce).await;
    assert_eq!(body(&s3.recv().await), b"v2", "[MQTT-3.3.1-12]");
    s3.expect_nothing().await;

    publisher
        .publish("ret/t", QoS::AtLeastOnce, true, Vec::new())
        .await;
    let mut s4 = Client3::connect(options(port, "ret-s4")).await;
    s4.subscribe_ok("ret/t", QoS::AtLeastOnce).await;
    s4.expect_nothing().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
// [MQTT-4.7.1-2] [MQTT-4.7.1-3] `+` matches exactly one level (also an empty one), `#` any
// number of levels including the parent; [MQTT-4.7.2-1] filters starting with a wildcard do
// not match topics starting with `$`.
async fn wildcards_and_dollar_topics() {
    let broker = Broker::start();
    let port = broker.port();
    let mut plus = Client3::connect(options(port, "wc-plus")).await;
    plus.subscribe_ok("wc/+/x", QoS::AtLeastOnce).await;
    let mut hash = Client3::connect(options(port, "wc-hash")).await;
    hash.subscribe_ok("wc/#", QoS::AtLeastOnce).await;
    let mut all = Client3::connect(options(port, "wc-all")).await;
    all.subscribe_ok("#", QoS::AtLeastOnce).await;
    let mut plus_first = Client3::connect(options(port, "wc-plus-first")).await;
    plus_first.subscribe_ok("+/x", QoS::AtLeastOnce).await;
    let mut dollar = Client3::connect(options(port, "wc-dollar")).await;
    dollar.subscribe_ok("$test/#", QoS::AtLeastOnce).await;

    let mut publisher = Client3::connect(options(port, "wc-pub")).await;
    for t in [
        "wc/a/x", "wc/a/b/x", "wc", "wc//x", "wc/a", "$test/x", "end/x",
    ] {
        publisher.publish(t, QoS::AtLeastOnce, false, t).await;
    }
    let topics = |v: Vec<Publish>| v.into_iter().map(|p| p.topic).collect::<Vec<_>>();
    assert_eq!(topics(plus.recv_until_topic("wc//x").await), vec!["wc/a/x"]);
    assert_eq!(
        topics(hash.recv_until_topic("wc/a").await),
        vec!["wc/a/x", "wc/a/b/x", "wc", "wc//x"]
    );
    assert_eq!(
        topics(all.recv_until_topic("end/x").await),
        vec!["wc/a/x", "wc/a/b/x", "wc", "wc//x", "wc/a"],
        "[MQTT-4.7.2-1] `#` must not match $test/x"
    );
    assert_eq!(
        topics(plus_first.recv_until_topic("end/x").await),
        Vec::<String>::new(),
        "[MQTT-4.7.2-1] `+/x`"
    );
    assert_eq!(
        dollar.recv().await.topic,
        "$test/x",
        "an explicit $ filter matches"
    );
    for c in [&mut plus, &mut hash, &mut all, &mut plus_first, &mut dollar] {
        c.expect_nothing().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
// [MQTT-3.3.5-1] With overlapping subscriptions the message is delivered respecting the
// maximum QoS of all matching subscriptions. The standard allows extra copies; Holdfast
// promises exactly one (checked only against Holdfast).
async fn overlapping_subscriptions_deliver_one_copy_at_highest_qos() {
    let broker = Broker::start();
    let mut s = Client3::connect(options(broker.port(), "ov")).await;
    s.subscribe_ok("ov/#", QoS::AtLeastOnce).await;
    s.subscribe_ok("ov/+", QoS::ExactlyOnce).await;
    s.subscribe_ok("+/a", QoS::AtMostOnce).await;
    let mut publisher = Client3::connect(options(broker.port(), "ov-pub")).await;
    for pub_qos in [QoS::ExactlyOnce, QoS::AtLeastOnce] {
        publisher.publish("ov/a", pub_qos, false, "m").await;
        publisher
            .publish("ov/a/end", QoS::AtLeastOnce, false, "barrier")
            .await;
        let copies = s.recv_until_topic("ov/a/end").await;
        let best = copies.iter().map(|p| p.qos as u8).max();
        assert_eq!(
            best,
            Some(pub_qos as u8),
            "a copy at min(published, max subscription QoS): {copies:?}"
        );
        if !is_mosquitto() {
            assert_eq!(copies.len(), 1, "Holdfast delivers one copy: {copies:?}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
// [MQTT-3.10.4-2] [MQTT-3.10.4-4] After UNSUBACK no new messages for the removed filter are
// delivered; other subscriptions are untouched.
async fn unsubscribe_stops_delivery() {
    let broker = Broker::start();
    let mut s = Client3::connect(options(broker.port(), "un")).await;
    s.subscribe_ok("un/t", QoS::AtLeastOnce).await;
    s.subscribe_ok("un/keep", QoS::AtLeastOnce).await;
    let mut publisher = Client3::connect(options(broker.port(), "un-pub")).await;
    publisher
        .publish("un/t", QoS::AtLeastOnce, false, "1")
        .await;
    assert_eq!(body(&s.recv().await), b"1");
    s.unsubscribe("un/t").await;
    publisher
        .publish("un/t", QoS::AtLeastOnce, false, "2")
        .await;
    publisher
        .publish("un/keep", QoS::AtLeastOnce, false, "k")
        .await;
    assert!(
        s.recv_until_topic("un/keep").await.is_empty(),
        "message after UNSUBACK"
    );
    s.expect_nothing().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
// [MQTT-3.1.3-6] A zero-byte ClientId with CleanSession 1 is accepted and gets a unique
// identifier: two such clients do not take each other over.
async fn zero_length_client_id_with_clean_session() {
    let broker = Broker::start_with("[mqtt]\nallow_zero_length_client_id = true\n");
    let mut a = Client3::connect(options(broker.port(), "")).await;
    let mut b = Client3::connect(options(broker.port(), "")).await;
    assert!(!a.session_present() && !b.session_present());
    a.subscribe_ok("zl/t", QoS::AtLeastOnce).await;
    b.subscribe_ok("zl/t", QoS::AtLeastOnce).await;
    let mut publisher = Client3::connect(options(broker.port(), "zl-pub")).await;
    publisher
        .publish("zl/t", QoS::AtLeastOnce, false, "both")
        .await;
    assert_eq!(body(&a.recv().await), b"both");
    assert_eq!(body(&b.recv().await), b"both");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
// [MQTT-3.1.3-9] A server that rejects the ClientId answers CONNACK 0x02 (Identifier
// rejected) and closes the connection.
async fn zero_length_client_id_rejected_when_disallowed() {
    let broker = Broker::start_with("[mqtt]\nallow_zero_length_client_id = false\n");
    let err = Client3::try_connect(options(broker.port(), ""))
        .await
        .err()
        .expect("CONNECT must be refused");
    assert!(
        err.contains("BadClientId"),
        "expected return code 0x02, got: {err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
// [MQTT-4.6.0-6] Messages on one topic from one client are delivered in the order they were
// received (QoS 1, with many in flight at once).
async fn qos1_messages_keep_order() {
    let broker = Broker::start();
    let mut s = Client3::connect(options(broker.port(), "ord")).await;
    s.subscribe_ok("ord/t", QoS::AtLeastOnce).await;
    let mut publisher = Client3::connect(options(broker.port(), "ord-pub")).await;
    const N: usize = 200;
    for i in 0..N {
        publisher
            .client
            .publish("ord/t", QoS::AtLeastOnce, false, i.to_string())
            .await
            .expect("queue");
    }
    for _ in 0..N {
        publisher.wait_publish_done(QoS::AtLeastOnce).await;
    }
    for i in 0..N {
        let p = s.recv().await;
        assert_eq!(
            String::from_utf8_lossy(&p.payload),
            i.to_string(),
            "message {i} out of order"
        );
    }
}
