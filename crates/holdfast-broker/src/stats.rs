//! Counters of what the broker did, read by logs now and by metrics later.

use std::sync::atomic::{AtomicU64, Ordering};

use holdfast_core::DropReason;

#[derive(Debug, Default)]
pub struct Stats {
    pub messages_received: AtomicU64,
    pub messages_sent: AtomicU64,
    pub dropped_queue_full: AtomicU64,
    pub dropped_expired: AtomicU64,
    pub dropped_too_large: AtomicU64,
    pub dropped_qos0_offline: AtomicU64,
    pub dropped_store_quota: AtomicU64,
    pub dropped_no_subscriber: AtomicU64,
    pub connections_refused: AtomicU64,
    pub discarded_sessions_admin: AtomicU64,
    /// Sessions discarded by `[discard] idle_after`.
    pub discarded_sessions_idle: AtomicU64,
    /// Sessions discarded by `[discard] store_high_water`.
    pub discarded_sessions_high_water: AtomicU64,
    /// Application messages received (routed), by QoS 0, 1, 2; `$SYS` messages are not counted.
    pub received_by_qos: [AtomicU64; 3],
    /// PUBLISH packets sent to clients, by QoS 0, 1, 2.
    pub sent_by_qos: [AtomicU64; 3],
    /// Bytes read from and written to client connections (MQTT packets, after TLS/WebSocket).
    pub bytes_received: AtomicU64,
    pub bytes_sent: AtomicU64,
    /// `$SYS` messages published by the broker.
    pub sys_published: AtomicU64,
    /// CONNECTs refused for a wrong or missing password, or anonymous access not allowed.
    pub auth_failures: AtomicU64,
    /// Connections refused by `[limits] max_connections_per_ip`.
    pub connections_refused_per_ip: AtomicU64,
    /// Connections refused by `[limits] connect_rate_per_ip`.
    pub connections_rate_limited: AtomicU64,
    /// Connections closed by `[limits] max_publish_rate` (0x96 Message rate too high).
    pub publish_rate_exceeded: AtomicU64,
    /// TLS or WebSocket handshakes that failed or timed out.
    pub handshake_failures: AtomicU64,
}

impl Stats {
    pub fn dropped(&self, reason: DropReason) {
        let counter = match reason {
            DropReason::QueueFull => &self.dropped_queue_full,
            DropReason::Expired => &self.dropped_expired,
            DropReason::TooLargeForClient => &self.dropped_too_large,
            DropReason::Qos0Offline => &self.dropped_qos0_offline,
            DropReason::StoreQuota => &self.dropped_store_quota,
            DropReason::NoSubscriber => &self.dropped_no_subscriber,
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }
}
