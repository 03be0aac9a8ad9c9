//! MQTT 5 sessions, wills and connection limits seen through a real client library
//! (rumqttc 0.24, `rumqttc::v5`; raw packets where rumqttc cannot express the case).
//! Each test starts its own broker; each names the rule of the OASIS MQTT 5.0 standard it
//! proves.

mod support;

use std::time::{Duration, Instant};

use rumqttc::v5::mqttbytes::v5::{PublishProperties, SubscribeReasonCode};
use rumqttc::v5::mqttbytes::QoS;
use support::mqtt5::{
    options, persistent, props, set_session_expiry, set_will, will_delay, Client5,
};
use support::raw::{self, Connect, RawConn, Will};
use support::{is_mosquitto, Broker, QUIET, TIMEOUT};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
// [MQTT-3.1.2-23] The session is kept after the connection closes while its Session Expiry
// Interval runs ([MQTT-3.2.2-3] Session Present 1 on resume); [MQTT-4.1.0-2] it is discarded
// once the interval has passed.
async fn session_expiry_keeps_then_discards_session() {
    let broker = Broker::start();
    let port = broker.port();
    let mut s = Client5::connect(persistent(port, "se", 2)).await;
    assert!(!s.session_present());
    s.subscribe_ok("se/t", QoS::AtLeastOnce).await;
    s.disconnect().await;
    let mut publisher = Client5::connect(options(port, "se-pub")).await;
    publisher
        .publish("se/t", QoS::AtLeastOnce, false, "while-away")
        .await;

    let mut s = Client5::connect(persistent(port, "se", 2)).await;
    assert!(
        s.session_present(),
        "[MQTT-3.2.2-3] session within its expiry interval must be resumed"
    );
    assert_eq!(s.recv().await.payload, "while-away");
    s.disconnect().await;
    publisher
        .publish("se/t", QoS::AtLeastOnce, false, "lost-with-session")
        .await;

    tokio::time::sleep(Duration::from_millis(3500)).await; // the 2 s expiry, plus margin
    let mut s = Client5::connect(persistent(port, "se", 2)).await;
    assert!(
        !s.session_present(),
        "[MQTT-4.1.0-2] session must be gone after its expiry interval"
    );
    s.expect_nothing().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
// [MQTT-3.1.2-4] Clean Start 1 discards an existing session, [MQTT-3.2.2-2] with Session
// Present 0; [MQTT-3.1.2-5] Clean Start 0 resumes it ([MQTT-3.2.2-3] Session Present 1);
// without a Session Expiry Interval the session ends with the connection.
async fn clean_start_and_session_present() {
    let broker = Broker::start();
    let port = broker.port();
    let mut a = Client5::connect(persistent(port, "cs", 60)).await;
    assert!(!a.session_present(), "[MQTT-3.2.2-3] no session yet");
    a.subscribe_ok("cs/t", QoS::AtLeastOnce).await;
    a.disconnect().await;

    let b = Client5::connect(persistent(port, "cs", 60)).await;
    assert!(
        b.session_present(),
        "[MQTT-3.2.2-3] stored session must be reported"
    );
    b.disconnect().await;

    let mut o = options(port, "cs");
    set_session_expiry(&mut o, 60);
    let mut c = Client5::connect(o).await; // Clean Start 1
    assert!(
        !c.session_present(),
        "[MQTT-3.2.2-2] Clean Start 1 gives Session Present 0"
    );
    let mut publisher = Client5::connect(options(port, "cs-pub")).await;
    publisher
        .publish("cs/t", QoS::AtLeastOnce, false, "x")
        .await;
    c.expect_nothing().await; // the old subscription was discarded with the session

    let mut o = options(port, "noexp");
    o.set_clean_start(false);
    let mut d = Client5::connect(o.clone()).await;
    d.subscribe_ok("cs/t", QoS::AtLeastOnce).await;
    d.disconnect().await;
    let e = Client5::connect(o).await;
    assert!(
        !e.session_present(),
        "Session Expiry Interval 0: the session ended with the connection"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
// [MQTT-3.1.4-3] A new connection with the same ClientID takes over: the server sends
// DISCONNECT 0x8E (Session taken over) to the existing connection and closes it.
async fn session_takeover_sends_disconnect_0x8e() {
    let broker = Broker::start();
    let mut first = Client5::connect(options(broker.port(), "dup")).await;
    let _second = Client5::connect(options(broker.port(), "dup")).await;
    let why = first
        .closed_within(TIMEOUT)
        .await
        .expect("[MQTT-3.1.4-3] first connection must be closed");
    // Mosquitto 2.0.11 closes the old connection without the DISCONNECT (observed).
    if !is_mosquitto() {
        assert!(
            why.contains("SessionTakenOver"),
            "expected DISCONNECT 0x8E, got: {why}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
// [MQTT-3.2.2-16] [MQTT-3.1.3-6] [MQTT-3.1.3-7] A zero-length ClientID gets a new, unique
// Assigned Client Identifier in the CONNACK.
async fn assigned_client_identifier_for_empty_id() {
    let broker = Broker::start_with("[mqtt]\nallow_zero_length_client_id = true\n");
    let mut ids = Vec::new();
    let mut clients = Vec::new();
    for _ in 0..2 {
        let c = Client5::connect(options(broker.port(), "")).await;
        let id = c
            .connack
            .properties
            .as_ref()
            .and_then(|p| p.assigned_client_identifier.clone());
        let id = id.expect("[MQTT-3.2.2-16] CONNACK must carry an Assigned Client Identifier");
        assert!(!id.is_empty());
        ids.push(id);
        clients.push(c);
    }
    assert_ne!(ids[0], ids[1], "assigned identifiers must be unique");
    for c in clients.iter_mut() {
        assert!(
            c.closed_within(QUIET).await.is_none(),
            "no takeover between assigned ids"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
// [MQTT-3.3.2-5] A queued message whose Message Expiry Interval passed is not delivered;
// [MQTT-3.3.2-6] one still valid is sent with the interval reduced by its waiting time.
async fn message_expiry_drops_queued_messages() {
    let broker = Broker::start();
    let port = broker.port();
    let mut s = Client5::connect(persistent(port, "me", 60)).await;
    s.subscribe_ok("me/t", QoS::AtLeastOnce).await;
    s.disconnect().await;
    let mut publisher = Client5::connect(options(port, "me-pub")).await;
    let expiry = |secs| PublishProperties {
        message_expiry_interval: Some(secs),
        ..props()
    };
    publisher
        .publish_with("me/t", QoS::AtLeastOnce, false, "short", expiry(1))
        .await;
    publisher
        .publish_with("me/t", QoS::AtLeastOnce, false, "long", expiry(60))
        .await;
    publisher
        .publish("me/t", QoS::AtLeastOnce, false, "forever")
        .await;
    tokio::time::sleep(Duration::from_millis(2200)).await;

    let mut s = Client5::connect(persistent(port, "me", 60)).await;
    assert!(s.session_present());
    let p = s.recv().await;
    assert_eq!(
        p.payload, "long",
        "[MQTT-3.3.2-5] the expired message must be dropped"
    );
    let left = p
        .properties
        .as_ref()
        .and_then(|p| p.message_expiry_interval);
    assert!(
        matches!(left, Some(1..=58)),
        "[MQTT-3.3.2-6] expiry after 2.2 s of 60 s: {left:?}"
    );
    let p = s.recv().await;
    assert_eq!(p.payload, "forever");
    assert_eq!(p.properties.and_then(|p| p.message_expiry_interval), None);
    s.expect_nothing().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
// [MQTT-3.1.2-8] The Will Message is published when the Will Delay Interval has elapsed or
// the session ends, whichever is first; [MQTT-3.1.3-9] not at all if the client reconnects to
// the session before the delay has passed.
async fn will_delay_interval() {
    let broker = Broker::start();
    let port = broker.port();
    let mut watcher = Client5::connect(options(port, "wd-watch")).await;
    watcher.subscribe_ok("wd/+", QoS::AtLeastOnce).await;
    let with_will = |id: &str, expiry: u32, delay: u32| {
        let mut o = persistent(port, id, expiry);
        set_will(
            &mut o,
            &format!("wd/{id}"),
            id,
            QoS::AtLeastOnce,
            Some(will_delay(delay)),
        );
        o
    };
    let delayed = Client5::connect(with_will("delayed", 60, 2)).await;
    let back = Client5::connect(with_will("back", 60, 2)).await;
    let ending = Client5::connect(with_will("ending", 1, 30)).await;
    let t0 = Instant::now();
    delayed.kill().await;
    back.kill().await;
    ending.kill().await;
    let _back_again = Client5::connect(persistent(port, "back", 60)).await;

    let mut arrivals = Vec::new();
    for _ in 0..2 {
        let p = watcher.recv().await;
        arrivals.push((
            String::from_utf8_lossy(&p.payload).into_owned(),
            t0.elapsed(),
        ));
    }
    arrivals.sort();
    assert_eq!(
        arrivals.iter().map(|a| a.0.as_str()).collect::<Vec<_>>(),
        ["delayed", "ending"],
        "{arrivals:?}"
    );
    assert!(
        arrivals[0].1 >= Duration::from_millis(1500),
        "will sent before its 2 s delay: {arrivals:?}"
    );
    assert!(
        arrivals[1].1 >= Duration::from_millis(500),
        "will sent before the 1 s session end: {arrivals:?}"
    );
    assert!(
        arrivals[1].1 < Duration::from_secs(4),
        "session end must publish the will: {arrivals:?}"
    );
    // "back" reconnected within its delay: its will must never come.
    watcher.expect_nothing_for(Duration::from_secs(1)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
// Reason code 0x04 (Disconnect with Will Message): the server publishes the will;
// [MQTT-3.14.4-3] with 0x00 it discards it.
async fn disconnect_with_will_message_0x04() {
    let broker = Broker::start();
    let mut watcher = Client5::connect(options(broker.port(), "dw-watch")).await;
    watcher.subscribe_ok("dw/#", QoS::AtLeastOnce).await;
    for (id, reason) in [("normal", 0x00u8), ("with-will", 0x04)] {
        let mut c = RawConn::open(broker.addr());
        let mut connect = Connect::v5(id);
        connect.will = Some(Will {
            topic: format!("dw/{id}").into_bytes(),
            payload: id.as_bytes().to_vec(),
            qos: 1,
            retain: false,
            properties: vec![],
        });
        c.handshake(&connect);
        c.send(&raw::disconnect_v5(reason));
        c.expect_closed("after DISCONNECT");
    }
    let p = watcher.recv().await;
    assert_eq!(
        (p.topic.as_ref(), p.payload.as_ref()),
        (&b"dw/with-will"[..], &b"with-will"[..])
    );
    watcher.expect_nothing().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
// [MQTT-3.2.2-9] [MQTT-3.2.2-10] CONNACK advertises the configured limits (Maximum QoS,
// Retain Available, Topic Alias Maximum, Maximum Packet Size, Receive Maximum) and a
// SUBSCRIBE asking for more than the Maximum QoS is granted the maximum.
async fn connack_advertises_configured_limits() {
    let receive_max = if is_mosquitto() {
        ""
    } else {
        "receive_maximum = 5\n"
    };
    let config = format!(
        "[limits]\ntopic_alias_maximum = 7\nmax_packet_size = 2048\n{receive_max}\
         [mqtt]\nmaximum_qos = 1\nretain_available = false\n"
    );
    let broker = Broker::start_with(&config);
    let mut c = Client5::connect(options(broker.port(), "lim")).await;
    let p = c.connack.properties.clone().expect("CONNACK properties");
    assert_eq!(p.max_qos, Some(1), "[MQTT-3.2.2-9] Maximum QoS");
    assert_eq!(p.retain_available, Some(0), "Retain Available");
    assert_eq!(p.topic_alias_max, Some(7), "Topic Alias Maximum");
    assert_eq!(p.max_packet_size, Some(2048), "Maximum Packet Size");
    if !is_mosquitto() {
        assert_eq!(p.receive_max, Some(5), "Receive Maximum");
    }
    let codes = c.subscribe("lim/t", QoS::ExactlyOnce).await;
    assert_eq!(
        codes,
        vec![SubscribeReasonCode::Success(QoS::AtLeastOnce)],
        "[MQTT-3.2.2-10]"
    );
}

#[test] // [MQTT-3.1.4-2] (3.1.1) / [MQTT-3.1.4-3] (5) A takeover closes only the existing
        // connection, even when that one is ending at the same moment (closed by the client,
        // or by the server for a protocol violation): the new connection must stay up.
fn takeover_racing_with_close_keeps_new_connection() {
    let broker = Broker::start();
    for round in 0..60 {
        let v5 = round % 2 == 1;
        let connect = if v5 {
            Connect::v5("race")
        } else {
            Connect::v4("race")
        };
        let mut old = RawConn::open(broker.addr());
        old.handshake(&connect);
        let mut new = RawConn::open(broker.addr());
        if round % 4 >= 2 {
            // A PUBLISH with QoS 3: the server closes the old connection itself.
            let props: &[u8] = if v5 { &[0] } else { &[] };
            old.send(
                &[
                    &[0x36, 6 + props.len() as u8, 0, 1, b't', 0, 1][..],
                    props,
                    b"x",
                ]
                .concat(),
            );
        }
        drop(old);
        new.handshake(&connect);
        new.send(&raw::PINGREQ);
        let pong = new.expect_packet(&format!("PINGRESP on the new connection (round {round})"));
        assert_eq!(pong.first, 0xD0, "round {round}: {pong:?}");
    }
}
