//! `$SYS/broker/...`: the broker's common figures published every `[admin] sys_interval`, in
//! Mosquitto's naming, as retained QoS 0 messages. They are volatile: never stored, and a
//! subscriber to `$SYS/#` gets the latest values at once.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use holdfast_core::{Durability, Message};
use holdfast_proto::{Properties, QoS};

use crate::broker::{now_millis, Broker};

/// The topics and their values now.
pub fn snapshot(broker: &Broker) -> Vec<(&'static str, String)> {
    let b = broker.broker_stats();
    let c = &broker.stats;
    let n = |a: &std::sync::atomic::AtomicU64| a.load(Ordering::Relaxed).to_string();
    let uptime = now_millis().saturating_sub(broker.started_at) / 1000;
    vec![
        (
            "$SYS/broker/version",
            format!("holdfast version {}", env!("CARGO_PKG_VERSION")),
        ),
        ("$SYS/broker/uptime", format!("{uptime} seconds")),
        (
            "$SYS/broker/clients/connected",
            b.sessions_online.to_string(),
        ),
        (
            "$SYS/broker/clients/disconnected",
            (b.sessions - b.sessions_online).to_string(),
        ),
        ("$SYS/broker/clients/total", b.sessions.to_string()),
        ("$SYS/broker/messages/received", n(&c.messages_received)),
        ("$SYS/broker/messages/sent", n(&c.messages_sent)),
        ("$SYS/broker/bytes/received", n(&c.bytes_received)),
        ("$SYS/broker/bytes/sent", n(&c.bytes_sent)),
        (
            "$SYS/broker/retained messages/count",
            b.retained_messages.to_string(),
        ),
        (
            "$SYS/broker/subscriptions/count",
            b.subscriptions.to_string(),
        ),
        (
            "$SYS/broker/store/messages/count",
            b.queued_messages.to_string(),
        ),
        (
            "$SYS/broker/store/messages/bytes",
            b.queued_bytes.to_string(),
        ),
    ]
}

/// Publish every figure once.
pub fn publish(broker: &Broker) {
    let now = now_millis();
    for (topic, value) in snapshot(broker) {
        let msg = Message {
            topic: Arc::from(topic),
            payload: Bytes::from(value),
            qos: QoS::AtMostOnce,
            retain: true,
            properties: Properties::default(),
            expires_at: None,
            publisher: None,
            durability: Durability::Volatile,
            stored: None,
        };
        broker.route(Arc::new(msg), now);
        broker.stats.sys_published.fetch_add(1, Ordering::Relaxed);
    }
}

/// Publish every `interval` until the task is aborted.
pub async fn run(broker: Arc<Broker>, interval: Duration) {
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        publish(&broker);
    }
}
