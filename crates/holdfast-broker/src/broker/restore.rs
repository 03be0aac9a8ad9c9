//! Start-up: rebuild the broker's state from what the store recovered.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use holdfast_core::message::StoredRef;
use holdfast_core::session::Restored;
use holdfast_core::{ClientId, Message, Millis, Session};
use holdfast_store::StoredState;

use super::{split_shared, Batch, Broker, Restore, Slot, SubValue};

impl Broker {
    /// Rebuild sessions, subscriptions and retained messages from what the store recovered at start.
    /// Restored sessions route again at once: their subscriptions go straight into the topic tree.
    pub fn restore(&self, state: StoredState, now: Millis) -> Restore {
        let mut summary = Restore::default();
        let max_id = state.messages.keys().next_back().copied().unwrap_or(0);
        self.next_message_id.store(max_id + 1, Ordering::Relaxed);
        let messages: HashMap<u64, Arc<Message>> = state
            .messages
            .into_iter()
            .map(|(id, m)| {
                let mut msg = m.into_message(&self.cfg);
                msg.stored = Some(Arc::new(StoredRef::new(id, self.message_dropped.clone())));
                (id, Arc::new(msg))
            })
            .collect();
        {
            let mut retained = self.retained.write();
            for (topic, id) in state.retained {
                if let Some(m) = messages.get(&id).filter(|m| !m.is_expired(now)) {
                    retained.insert(&topic, m.clone());
                    summary.retained += 1;
                }
            }
        }
        let mut pending = Vec::new();
        for (client_id, stored) in state.sessions {
            let restored = Restored {
                record: stored.record,
                subscriptions: stored
                    .subscriptions
                    .into_iter()
                    .map(|(f, (o, id))| (f, o, id))
                    .collect(),
                outbound: stored
                    .outbound
                    .into_iter()
                    .filter_map(|(seq, e)| {
                        messages
                            .get(&e.message_id)
                            .map(|m| (seq, e.clone(), m.clone()))
                    })
                    .collect(),
                inbound_qos2: stored.inbound_qos2.into_iter().collect(),
            };
            summary.messages += restored.outbound.len();
            let client: ClientId = client_id.into();
            let mut out = Vec::new();
            let session =
                Session::restore(client.clone(), restored, self.cfg.clone(), now, &mut out);
            let slot = Arc::new(Slot::new(session));
            {
                let inner = slot.inner.lock();
                let mut subs = self.subs.write();
                for (filter, sub) in inner.session.subscriptions() {
                    let (group, plain) = split_shared(filter);
                    let value = SubValue {
                        slot: slot.clone(),
                        sub: *sub,
                    };
                    subs.insert(plain, group, &client, value);
                }
            }
            self.sessions.lock().insert(client, slot.clone());
            pending.push((slot, out));
            summary.sessions += 1;
        }
        // Only now that every session routes again: wills of sessions that were connected when the
        // broker stopped, and whatever fell due while it was down (expiry counts the downtime
        // [MQTT-3.1.2-23]), so a will reaches subscribers restored after its session.
        for (slot, mut out) in pending {
            let mut later = Vec::new();
            let mut batch = Batch::default();
            {
                let mut inner = slot.inner.lock();
                inner.session.tick(now, &mut out);
                self.perform_locked(&mut inner, &slot, out, &mut later, &mut batch);
                self.commit(batch);
            }
            self.perform_unlocked(&slot, later, now);
        }
        summary
    }
}
