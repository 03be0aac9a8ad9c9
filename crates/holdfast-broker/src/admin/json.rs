//! How broker figures look in the admin API's JSON. Times are RFC 3339 strings in UTC with
//! milliseconds ("2024-05-01T12:00:00.000Z").

use std::sync::atomic::Ordering;
use std::time::{Duration, UNIX_EPOCH};

use holdfast_core::session::SessionInfo;
use holdfast_core::{Millis, EXPIRY_NEVER};
use serde_json::{json, Value};

use crate::broker::{now_millis, Broker, RetainedInfo};

pub fn time(ms: Millis) -> String {
    humantime::format_rfc3339_millis(UNIX_EPOCH + Duration::from_millis(ms)).to_string()
}

pub fn session(i: &SessionInfo) -> Value {
    let subscriptions: Vec<Value> = i
        .subscriptions
        .iter()
        .map(|(filter, s)| {
            json!({
                "filter": filter,
                "qos": s.options.qos.as_u8(),
                "no_local": s.options.no_local,
                "retain_as_published": s.options.retain_as_published,
                "retain_handling": s.options.retain_handling as u8,
                "subscription_id": s.id,
            })
        })
        .collect();
    json!({
        "client_id": &*i.client_id,
        "protocol": i.protocol.to_string(),
        "connected": i.connected,
        "connected_at": i.connected_at.map(time),
        "disconnected_at": i.disconnected_at.map(time),
        "expiry_interval": (i.expiry_interval != EXPIRY_NEVER).then_some(i.expiry_interval),
        "expires_at": i.expires_at.map(time),
        "subscriptions": subscriptions,
        "queued": i.queued,
        "queued_bytes": i.queued_bytes,
        "inflight": i.inflight,
        "inbound_qos2": i.inbound_qos2,
        "durability": i.durability.as_str(),
        "stored": i.stored,
        "has_will": i.has_will,
    })
}

pub fn retained(r: &RetainedInfo) -> Value {
    json!({
        "topic": r.topic,
        "qos": r.qos,
        "payload_bytes": r.payload_bytes,
        "expires_at": r.expires_at.map(time),
        "durability": r.durability.as_str(),
    })
}

pub fn stats(broker: &Broker) -> Value {
    let b = broker.broker_stats();
    let s = broker.store_stats();
    let c = &broker.stats;
    let n = |a: &std::sync::atomic::AtomicU64| a.load(Ordering::Relaxed);
    let now = now_millis();
    json!({
        "version": env!("CARGO_PKG_VERSION"),
        "ready": broker.ready.load(Ordering::Acquire),
        "started_at": time(broker.started_at),
        "uptime_seconds": now.saturating_sub(broker.started_at) / 1000,
        "connections": b.connections,
        "sessions": b.sessions,
        "sessions_online": b.sessions_online,
        "sessions_offline": b.sessions - b.sessions_online,
        "subscriptions": b.subscriptions,
        "queued_messages": b.queued_messages,
        "queued_bytes": b.queued_bytes,
        "inflight_messages": b.inflight_messages,
        "retained_messages": b.retained_messages,
        "messages_received": n(&c.messages_received),
        "messages_sent": n(&c.messages_sent),
        "connections_refused": n(&c.connections_refused),
        "auth_failures": n(&c.auth_failures),
        "connections_limited": {
            "max_connections_per_ip": n(&c.connections_refused_per_ip),
            "connect_rate_per_ip": n(&c.connections_rate_limited),
            "max_publish_rate": n(&c.publish_rate_exceeded),
        },
        "handshake_failures": n(&c.handshake_failures),
        "dropped": {
            "queue_full": n(&c.dropped_queue_full),
            "expired": n(&c.dropped_expired),
            "too_large": n(&c.dropped_too_large),
            "qos0_offline": n(&c.dropped_qos0_offline),
            "store_quota": n(&c.dropped_store_quota),
            "no_subscriber": n(&c.dropped_no_subscriber),
        },
        "discarded_sessions": {
            "admin": n(&c.discarded_sessions_admin),
            "idle": n(&c.discarded_sessions_idle),
            "store_high_water": n(&c.discarded_sessions_high_water),
        },
        "store": {
            "disk_bytes": s.disk_bytes,
            "batches": s.batches,
            "writes": s.writes,
            "fsyncs": s.fsyncs,
            "failed_commits": s.failed_commits,
            "quota_rejections": s.quota_rejections,
            "compactions": s.compactions,
            "corrupt_records_skipped": s.corrupt_records_skipped,
            "torn_bytes_truncated": s.torn_bytes_truncated,
        },
    })
}
