//! Start-up: rebuild the broker's state from what the store recovered.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use holdfast_core::message::StoredRef;
use holdfast_core::persist::MessageRebuilder;
use holdfast_core::session::Restored;
use holdfast_core::{ClientId, Message, Millis, Session};
use holdfast_store::StoredState;

use super::{split_shared, Batch, Broker, Restore, Slot, SubValue};

/// The restored messages, ascending by id. A queue mostly refers to ascending ids, so a look-up tries
/// the message after the previous hit before it searches.
struct ById {
    items: Vec<(u64, Arc<Message>)>,
    hint: usize,
}

impl ById {
    fn get(&mut self, id: u64) -> Option<&Arc<Message>> {
        let i = match self.items.get(self.hint) {
            Some((x, _)) if *x == id => self.hint,
            _ => self.items.binary_search_by_key(&id, |(x, _)| *x).ok()?,
        };
        self.hint = i + 1;
        Some(&self.items[i].1)
    }
}

impl Broker {
    /// Rebuild sessions, subscriptions and retained messages from what the store recovered at start.
    /// Restored sessions route again at once: their subscriptions go straight into the topic tree.
    ///
    /// `state` is the store's own copy (`Store::load_shared`): it is only read, and let go before
    /// anything is committed, so the store never has to copy it.
    pub fn restore(&self, state: Arc<StoredState>, now: Millis) -> Restore {
        let mut summary = Restore::default();
        let max_id = state.messages.keys().next_back().copied().unwrap_or(0);
        self.next_message_id.store(max_id + 1, Ordering::Relaxed);
        let mut rebuild = MessageRebuilder::new(&self.cfg);
        let mut messages = ById {
            items: Vec::with_capacity(state.messages.len()),
            hint: 0,
        };
        for (id, m) in &state.messages {
            let mut msg = rebuild.message(m);
            msg.stored = Some(Arc::new(StoredRef::new(*id, self.message_dropped.clone())));
            messages.items.push((*id, Arc::new(msg)));
        }
        {
            let mut retained = self.retained.write();
            for (topic, id) in &state.retained {
                if let Some(m) = messages.get(*id).filter(|m| !m.is_expired(now)) {
                    retained.insert(topic, m.clone());
                    summary.retained += 1;
                }
            }
        }
        let mut pending = Vec::new();
        for (client_id, stored) in &state.sessions {
            let restored = Restored {
                record: stored.record.clone(),
                subscriptions: stored
                    .subscriptions
                    .iter()
                    .map(|(f, (o, id))| (f.clone(), *o, *id))
                    .collect(),
                outbound: Vec::new(),
                inbound_qos2: stored.inbound_qos2.iter().copied().collect(),
            };
            let mut count = 0;
            let outbound = stored.outbound.iter().filter_map(|(seq, e)| {
                let m = messages.get(e.message_id)?;
                count += 1;
                Some((*seq, e.clone(), m.clone()))
            });
            let client: ClientId = client_id.clone();
            let mut out = Vec::new();
            let cfg = self.cfg.clone();
            let session =
                Session::restore_with(client.clone(), restored, outbound, cfg, now, &mut out);
            summary.messages += count;
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
        // Let go of the store's state before anything is committed (a message nothing refers to any
        // more is deleted from the store when `messages` goes), so the store need not copy it.
        drop(state);
        drop(messages);
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
