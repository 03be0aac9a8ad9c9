//! What administrators can see and do (MQTT 5.0 section 4.1: "Stored Session state can be discarded as
//! a result of an administrator action"). The admin HTTP API and `holdfast ctl` are built on these.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use holdfast_core::persist::Op;
use holdfast_core::session::SessionInfo;
use holdfast_core::{Durability, Millis};

use super::{now_millis, Batch, Broker, Slot};
use crate::ticket::Ticket;

/// One retained message, as listed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetainedInfo {
    pub topic: String,
    pub qos: u8,
    pub payload_bytes: usize,
    pub expires_at: Option<Millis>,
    pub durability: Durability,
}

/// Which sessions to list.
#[derive(Debug, Clone, Default)]
pub struct SessionQuery {
    pub prefix: Option<String>,
    pub connected: Option<bool>,
    pub offset: usize,
    pub limit: usize,
}

/// Figures for the admin API's stats and for metrics.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BrokerStats {
    pub connections: usize,
    pub sessions: usize,
    pub sessions_online: usize,
    pub queued_messages: usize,
    pub queued_bytes: u64,
    pub inflight_messages: usize,
    pub retained_messages: usize,
    pub subscriptions: usize,
}

/// What an administrator asked for a session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AdminAction {
    /// Close the connection, keep the session.
    Kick,
    /// End the session: close its connection and delete its state durably.
    Discard,
}

impl Broker {
    fn slots(&self) -> Vec<Arc<Slot>> {
        self.sessions.lock().values().cloned().collect()
    }

    /// Sessions sorted by client id, filtered and paged; with the number that matched before paging.
    pub fn list_sessions(&self, q: &SessionQuery) -> (Vec<SessionInfo>, usize) {
        let mut all: Vec<SessionInfo> = self
            .slots()
            .iter()
            .map(|s| s.inner.lock().session.info())
            .filter(|i| {
                q.prefix
                    .as_deref()
                    .is_none_or(|p| i.client_id.starts_with(p))
            })
            .filter(|i| q.connected.is_none_or(|c| i.connected == c))
            .collect();
        all.sort_by(|a, b| a.client_id.cmp(&b.client_id));
        let total = all.len();
        let limit = if q.limit == 0 { usize::MAX } else { q.limit };
        (all.into_iter().skip(q.offset).take(limit).collect(), total)
    }

    pub fn session_info(&self, client_id: &str) -> Option<SessionInfo> {
        let slot = self.sessions.lock().get(client_id).cloned()?;
        let info = slot.inner.lock().session.info();
        Some(info)
    }

    /// Kick or discard a session; `None` when there is no such session. MQTT 5 clients get DISCONNECT
    /// 0x98 Administrative action. The returned ticket completes once everything the action changed
    /// is fsync'd, so a caller can answer "deleted" only when it is.
    pub fn admin_session(&self, client_id: &str, action: AdminAction) -> Option<Arc<Ticket>> {
        let now = now_millis();
        let slot = self.sessions.lock().get(client_id).cloned()?;
        let later = self.run(&slot, &[], |s, out| {
            s.admin_close(action == AdminAction::Discard, now, out)
        });
        self.perform_unlocked(&slot, later, now);
        if action == AdminAction::Discard {
            self.stats
                .discarded_sessions_admin
                .fetch_add(1, Ordering::Relaxed);
            tracing::info!(
                client_id,
                reason = "administrative action",
                "session discarded"
            );
        } else {
            tracing::info!(client_id, "connection closed by administrator");
        }
        Some(self.barrier())
    }

    /// Discard a session for an automated rule, only if it is offline: checked under the session's
    /// lock, so a client that has just come back keeps its session. Logged with `reason`.
    pub fn discard_offline_session(&self, client_id: &str, reason: &str) -> bool {
        let now = now_millis();
        let Some(slot) = self.sessions.lock().get(client_id).cloned() else {
            return false;
        };
        let mut discarded = false;
        let later = self.run(&slot, &[], |s, out| {
            if !s.is_connected() && !s.has_ended() {
                s.admin_close(true, now, out);
                discarded = true;
            }
        });
        self.perform_unlocked(&slot, later, now);
        if discarded {
            tracing::warn!(client_id, reason, "session discarded");
        }
        discarded
    }

    /// Drop, in every offline session, queued messages none of its subscriptions matches any more
    /// (`discard.unsubscribed_messages`); returns how many went.
    pub fn drop_unsubscribed_messages(&self) -> usize {
        let now = now_millis();
        let mut total = 0;
        for slot in self.slots() {
            if slot.online.load(Ordering::Acquire) {
                continue;
            }
            let mut n = 0;
            let later = self.run(&slot, &[], |s, out| n = s.drop_unmatched_queued(out));
            self.perform_unlocked(&slot, later, now);
            if n > 0 {
                let client_id = slot.inner.lock().session.client_id().clone();
                tracing::warn!(
                    client_id = &*client_id,
                    messages = n,
                    reason = "no matching subscription (discard.unsubscribed_messages)",
                    "queued messages discarded"
                );
            }
            total += n;
        }
        total
    }

    /// A ticket that completes when everything committed before it is fsync'd.
    pub fn barrier(&self) -> Arc<Ticket> {
        let ticket = Ticket::new();
        self.store
            .commit(Vec::new(), Durability::Sync, Some(ticket.completion()));
        ticket
    }

    /// Retained messages whose topic matches `filter` (all with `#`), sorted by topic.
    pub fn list_retained(&self, filter: &str) -> Vec<RetainedInfo> {
        let retained = self.retained.read();
        let mut found = Vec::new();
        retained.matching(filter, &mut found);
        let mut out: Vec<RetainedInfo> = found
            .into_iter()
            .map(|(topic, m)| RetainedInfo {
                topic: topic.to_string(),
                qos: m.qos.as_u8(),
                payload_bytes: m.payload.len(),
                expires_at: m.expires_at,
                durability: m.durability,
            })
            .collect();
        out.sort_by(|a, b| a.topic.cmp(&b.topic));
        out
    }

    /// Delete one retained message, durably; false when there was none.
    pub fn delete_retained(&self, topic: &str) -> bool {
        let Some(msg) = self.retained.write().remove(topic) else {
            return false;
        };
        if msg.durability != Durability::Volatile {
            let batch = Batch {
                ops: vec![Op::DeleteRetained {
                    topic: topic.to_string(),
                }],
                class: Some(msg.durability.max(Durability::Flush)),
                ticket: None,
            };
            self.commit(batch);
        }
        tracing::info!(
            topic,
            reason = "administrative action",
            "retained message deleted"
        );
        true
    }

    pub fn broker_stats(&self) -> BrokerStats {
        let slots = self.slots();
        let mut st = BrokerStats {
            connections: self.connections.load(Ordering::Relaxed),
            sessions: slots.len(),
            retained_messages: self.retained.read().len(),
            ..BrokerStats::default()
        };
        for slot in slots {
            let info = slot.inner.lock().session.info();
            st.sessions_online += usize::from(info.connected);
            st.queued_messages += info.queued;
            st.queued_bytes += info.queued_bytes;
            st.inflight_messages += info.inflight;
            st.subscriptions += info.subscriptions.len();
        }
        st
    }

    /// Drop the oldest queued messages of offline sessions, the sessions gone longest first, until
    /// `bytes` of message data are freed (MQTT 5.0 section 4.1: state discarded "as a result of an
    /// automated response to defined conditions"). Each session's discards are logged with the reason.
    pub fn discard_oldest_queued(&self, bytes: u64, reason: &str) -> (usize, u64) {
        let now = now_millis();
        let mut offline: Vec<(Millis, Arc<Slot>)> = self
            .slots()
            .into_iter()
            .filter_map(|s| {
                let since = {
                    let inner = s.inner.lock();
                    let info = &inner.session;
                    (!info.is_connected() && info.queued_len() > 0)
                        .then(|| info.disconnected_at().unwrap_or(0))
                };
                since.map(|t| (t, s))
            })
            .collect();
        offline.sort_by_key(|(t, _)| *t);
        let mut freed = (0usize, 0u64);
        for (_, slot) in offline {
            if freed.1 >= bytes {
                break;
            }
            let mut got = (0, 0);
            while freed.1 + got.1 < bytes {
                let mut step = (0, 0);
                let later = self.run(&slot, &[], |s, out| {
                    step = s.drop_oldest_queued(64, holdfast_core::DropReason::StoreQuota, out);
                });
                self.perform_unlocked(&slot, later, now);
                if step.0 == 0 {
                    break;
                }
                got = (got.0 + step.0, got.1 + step.1);
            }
            let client_id = slot.inner.lock().session.client_id().clone();
            tracing::warn!(
                client_id = &*client_id,
                messages = got.0,
                bytes = got.1,
                reason,
                "queued messages discarded"
            );
            freed = (freed.0 + got.0, freed.1 + got.1);
        }
        freed
    }

    /// The store's own figures.
    pub fn store_stats(&self) -> holdfast_store::StoreStats {
        self.store.stats()
    }
}
