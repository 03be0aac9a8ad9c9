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
    pub connections_refused: AtomicU64,
    pub discarded_sessions_admin: AtomicU64,
}

impl Stats {
    pub fn dropped(&self, reason: DropReason) {
        let counter = match reason {
            DropReason::QueueFull => &self.dropped_queue_full,
            DropReason::Expired => &self.dropped_expired,
            DropReason::TooLargeForClient => &self.dropped_too_large,
            DropReason::Qos0Offline => &self.dropped_qos0_offline,
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }
}
