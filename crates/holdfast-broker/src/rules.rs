//! Automated discard rules (`[discard]`), applied by the sweeper every second. MQTT 5.0 section
//! 4.1 allows stored session state to be discarded "as a result of an automated response to
//! defined conditions": each discard here is logged with its reason and counted in
//! `holdfast_sessions_discarded_total{reason}`.
//!
//! - `idle_after`: an offline session whose client has been away longer than this is discarded,
//!   whatever Session Expiry Interval it asked for.
//! - `store_high_water` / `store_low_water`: when the store's disk usage passes the high-water mark,
//!   offline sessions are discarded (largest queue or longest gone first) until the queued bytes
//!   they held cover the excess over the low-water mark. Disk space comes back at the store's next
//!   compaction, so the rule then waits [`HIGH_WATER_COOLDOWN`] before it looks again.

use std::sync::atomic::Ordering;

use holdfast_core::session::SessionInfo;
use holdfast_core::Millis;

use crate::broker::{Broker, SessionQuery};
use crate::config::{DiscardOrder, DiscardRules};

/// How long the high-water rule waits after discarding, for compaction to return the space.
pub const HIGH_WATER_COOLDOWN: Millis = 30_000;
/// Bytes a stored session is assumed to occupy besides its queued messages (record, subscriptions).
const SESSION_OVERHEAD: u64 = 256;

pub struct Rules {
    cfg: DiscardRules,
    quiet_until: Millis,
    next_idle_check: Millis,
}

impl Rules {
    /// `None` when no rule is configured.
    pub fn new(cfg: &DiscardRules) -> Option<Rules> {
        (cfg.idle_after.is_some() || cfg.store_high_water > 0 || cfg.unsubscribed_messages).then(
            || Rules {
                cfg: cfg.clone(),
                quiet_until: 0,
                next_idle_check: 0,
            },
        )
    }

    pub fn apply(&mut self, broker: &Broker, now: Millis) {
        if self.cfg.unsubscribed_messages {
            broker.drop_unsubscribed_messages();
        }
        if let Some(idle) = self.cfg.idle_after.filter(|_| now >= self.next_idle_check) {
            let idle_ms = idle.as_millis() as Millis;
            // Listing every session costs a pass over the registry: look every tenth of the idle
            // time, between once a second and once every ten seconds.
            self.next_idle_check = now + (idle_ms / 10).clamp(1_000, 10_000) - 100;
            for s in offline(broker) {
                let gone = s.disconnected_at.map_or(0, |t| now.saturating_sub(t));
                if gone > idle_ms {
                    let why = format!("idle for {}s (discard.idle_after)", gone / 1000);
                    discard(broker, &s, &why, &broker.stats.discarded_sessions_idle);
                }
            }
        }
        if self.cfg.store_high_water > 0 && now >= self.quiet_until {
            let disk = broker.store_stats().disk_bytes;
            if disk > self.cfg.store_high_water {
                let excess = disk - self.cfg.store_low_water;
                let mut victims: Vec<SessionInfo> =
                    offline(broker).into_iter().filter(|s| s.stored).collect();
                match self.cfg.victims {
                    DiscardOrder::Largest => {
                        victims.sort_by_key(|s| std::cmp::Reverse(s.queued_bytes))
                    }
                    DiscardOrder::Oldest => victims.sort_by_key(|s| s.disconnected_at),
                }
                let mut freed = 0;
                for s in victims {
                    if freed >= excess {
                        break;
                    }
                    let why = format!(
                        "store at {disk} bytes, over discard.store_high_water {}",
                        self.cfg.store_high_water
                    );
                    discard(
                        broker,
                        &s,
                        &why,
                        &broker.stats.discarded_sessions_high_water,
                    );
                    freed += s.queued_bytes + SESSION_OVERHEAD;
                }
                if freed > 0 {
                    self.quiet_until = now + HIGH_WATER_COOLDOWN;
                }
            }
        }
    }
}

fn offline(broker: &Broker) -> Vec<SessionInfo> {
    let q = SessionQuery {
        connected: Some(false),
        ..SessionQuery::default()
    };
    broker.list_sessions(&q).0
}

fn discard(broker: &Broker, s: &SessionInfo, why: &str, counter: &std::sync::atomic::AtomicU64) {
    if broker.discard_offline_session(&s.client_id, why) {
        counter.fetch_add(1, Ordering::Relaxed);
        tracing::debug!(
            client_id = &*s.client_id,
            queued = s.queued,
            queued_bytes = s.queued_bytes,
            "discard rule"
        );
    }
}
