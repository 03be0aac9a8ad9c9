//! `GET /metrics` (Prometheus text format) after known traffic, and the `$SYS/broker/...` topics.

mod support;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use rumqttc::v5::mqttbytes::QoS;
use support::http::{admin_config, Admin};
use support::mqtt5::{self, Client5};
use support::{holdfast_only, Broker};

/// Every sample of a scrape, keyed by name with labels as written (`name{k="v"}`).
fn scrape(admin: &Admin) -> HashMap<String, f64> {
    let r = admin.get("/metrics");
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(
        r.header("content-type")
            .is_some_and(|c| c.starts_with("text/plain; version=0.0.4")),
        "{:?}",
        r.headers
    );
    let mut samples = HashMap::new();
    for line in r.body.lines() {
        if line.starts_with('#') || line.is_empty() {
            continue;
        }
        let (key, value) = line.rsplit_once(' ').expect("name value");
        let value: f64 = value
            .parse()
            .unwrap_or_else(|_| panic!("bad value: {line}"));
        assert!(
            samples.insert(key.to_string(), value).is_none(),
            "duplicate {key}"
        );
    }
    samples
}

fn get(m: &HashMap<String, f64>, key: &str) -> f64 {
    *m.get(key)
        .unwrap_or_else(|| panic!("no metric {key} in {m:#?}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_count_known_traffic_exactly() {
    if holdfast_only("admin API") {
        return;
    }
    let (config, port) = admin_config("sys_interval = 0\n");
    let broker = Broker::start_with(&config);
    let admin = Admin::new(port);

    let before = scrape(&admin);
    // (Not holdfast_connections: the harness's readiness probe may still be connected.)
    assert_eq!(get(&before, "holdfast_ready"), 1.0);
    assert_eq!(
        get(&before, "holdfast_messages_received_total{qos=\"0\"}"),
        0.0
    );

    // An offline session subscribed at QoS 0: the QoS 0 messages to it are dropped.
    let mut off = Client5::connect(mqtt5::persistent(broker.port(), "off", 600)).await;
    off.subscribe_ok("m/a", QoS::AtMostOnce).await;
    off.disconnect().await;
    let mut sub = Client5::connect(mqtt5::options(broker.port(), "sub")).await;
    sub.subscribe_ok("m/#", QoS::ExactlyOnce).await;
    let mut publisher = Client5::connect(mqtt5::options(broker.port(), "pub")).await;
    for _ in 0..3 {
        publisher
            .publish("m/a", QoS::AtMostOnce, false, "zero")
            .await;
    }
    for _ in 0..2 {
        publisher
            .publish("m/b", QoS::AtLeastOnce, false, "one")
            .await;
    }
    publisher
        .publish("m/c", QoS::ExactlyOnce, true, "two")
        .await;
    for _ in 0..6 {
        sub.recv().await;
    }

    let m = scrape(&admin);
    for (key, want) in [
        ("holdfast_connections", 2.0),
        ("holdfast_sessions{state=\"online\"}", 2.0),
        ("holdfast_sessions{state=\"offline\"}", 1.0),
        ("holdfast_subscriptions", 2.0),
        ("holdfast_retained_messages", 1.0),
        ("holdfast_messages_received_total{qos=\"0\"}", 3.0),
        ("holdfast_messages_received_total{qos=\"1\"}", 2.0),
        ("holdfast_messages_received_total{qos=\"2\"}", 1.0),
        ("holdfast_messages_sent_total{qos=\"0\"}", 3.0),
        ("holdfast_messages_sent_total{qos=\"1\"}", 2.0),
        ("holdfast_messages_sent_total{qos=\"2\"}", 1.0),
        (
            "holdfast_messages_dropped_total{reason=\"qos0_offline\"}",
            3.0,
        ),
        (
            "holdfast_messages_dropped_total{reason=\"queue_full\"}",
            0.0,
        ),
        ("holdfast_sessions_discarded_total{reason=\"admin\"}", 0.0),
        ("holdfast_queued_messages", 0.0),
        ("holdfast_sys_messages_published_total", 0.0),
        ("holdfast_build_info{version=\"0.1.0\"}", 1.0),
        ("holdfast_auth_failures_total", 0.0),
        (
            "holdfast_connections_limited_total{limit=\"max_publish_rate\"}",
            0.0,
        ),
    ] {
        assert_eq!(get(&m, key), want, "{key}");
    }
    assert!(get(&m, "holdfast_bytes_received_total") > 0.0);
    assert!(get(&m, "holdfast_bytes_sent_total") > 0.0);
    assert!(get(&m, "holdfast_store_disk_bytes") > 0.0);
    assert!(get(&m, "holdfast_store_batches_total") > 0.0);
    // Group commit is observable: commit latency, batches per write, fsync latency, recovery time.
    let commits = get(&m, "holdfast_store_commit_seconds_count");
    assert!(commits > 0.0);
    assert_eq!(
        get(&m, "holdfast_store_commit_seconds_bucket{le=\"+Inf\"}"),
        commits
    );
    assert!(get(&m, "holdfast_store_commit_batch_size_count") > 0.0);
    assert!(get(&m, "holdfast_store_fsync_seconds_count") >= 0.0);
    assert!(get(&m, "holdfast_store_recovery_seconds") >= 0.0);

    // Discarding the offline session is counted by reason.
    assert_eq!(admin.delete("/api/v1/sessions/off").status, 200);
    let m = scrape(&admin);
    assert_eq!(
        get(&m, "holdfast_sessions_discarded_total{reason=\"admin\"}"),
        1.0
    );
    assert_eq!(get(&m, "holdfast_sessions{state=\"offline\"}"), 0.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sys_topics_are_published_retained_every_interval() {
    if holdfast_only("$SYS interval option") {
        return;
    }
    let (config, _port) = admin_config("sys_interval = \"200ms\"\n");
    let broker = Broker::start_with(&config);
    let mut publisher = Client5::connect(mqtt5::options(broker.port(), "p")).await;
    publisher.publish("x/y", QoS::AtLeastOnce, false, "m").await;

    let mut sub = Client5::connect(mqtt5::options(broker.port(), "sys")).await;
    sub.subscribe_ok("$SYS/#", QoS::AtMostOnce).await;
    // `#` does not match $SYS topics [MQTT-4.7.2-1]: a plain wildcard subscriber sees none.
    let mut plain = Client5::connect(mqtt5::options(broker.port(), "plain")).await;
    plain.subscribe_ok("#", QoS::AtMostOnce).await;

    let mut seen: HashMap<String, String> = HashMap::new();
    let deadline = Instant::now() + Duration::from_secs(5);
    let wanted = [
        "$SYS/broker/version",
        "$SYS/broker/uptime",
        "$SYS/broker/clients/connected",
        "$SYS/broker/messages/received",
        "$SYS/broker/messages/sent",
    ];
    // One snapshot is published in order, ending with store/messages/bytes: read until a whole
    // snapshot taken after all three clients connected has arrived.
    let mut fresh = false;
    while Instant::now() < deadline {
        let p = sub.recv().await;
        let topic = String::from_utf8(p.topic.to_vec()).unwrap();
        let value = String::from_utf8_lossy(&p.payload).into_owned();
        if topic == "$SYS/broker/version" {
            seen.clear();
        }
        if topic == "$SYS/broker/clients/connected" {
            fresh = value == "3";
        }
        seen.insert(topic.clone(), value);
        if fresh && topic == "$SYS/broker/store/messages/bytes" {
            break;
        }
    }
    for t in wanted {
        assert!(seen.contains_key(t), "{t} in {seen:?}");
    }
    assert_eq!(
        seen["$SYS/broker/version"], "holdfast version 0.1.0",
        "{seen:?}"
    );
    assert!(seen["$SYS/broker/uptime"].ends_with(" seconds"), "{seen:?}");
    assert_eq!(seen["$SYS/broker/clients/connected"], "3", "{seen:?}");
    assert_eq!(
        seen["$SYS/broker/messages/received"], "1",
        "$SYS messages are not counted: {seen:?}"
    );
    plain.expect_nothing().await;

    // A new subscriber gets the retained values at once.
    let mut late = Client5::connect(mqtt5::options(broker.port(), "late")).await;
    late.subscribe_ok("$SYS/broker/version", QoS::AtMostOnce)
        .await;
    let p = late
        .recv_within(Duration::from_millis(150))
        .await
        .expect("retained $SYS value");
    assert!(p.retain, "$SYS messages are retained");
}
