//! What a connection task is told to write, and how it is woken.
//!
//! Every connection has an [`Outbox`]: sessions append packets to it under their lock and the
//! connection task takes everything there in one go, encodes it and writes it with one system call.
//! Writes are the largest cost of the broker on loopback (each `send` runs the receiver's TCP stack
//! too), so the fewer and larger they are the better: while a connection handles what it read, the
//! wake-ups it causes are held back ([`DeferWakes`]) and given once it is done. A subscriber of a
//! busy publisher then gets everything from one read of that publisher in one write instead of a
//! write per message, at the cost of the microseconds that read takes to handle.

use std::cell::RefCell;
use std::marker::PhantomData;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;

use holdfast_proto::{Packet, ReasonCode};
use parking_lot::Mutex;
use tokio::sync::Notify;

use crate::ticket::Ticket;

/// One thing for a connection task to do.
#[derive(Debug)]
pub enum Outbound {
    Packet(Packet),
    /// Send nothing more until this commit completes; if it fails, what follows must not acknowledge
    /// anything (see `Connection::gated`).
    Wait(Arc<Ticket>),
    /// Close the connection, after a DISCONNECT with this reason for MQTT 5 clients.
    Close(Option<ReasonCode>),
}

/// The queue between the sessions and one connection task.
#[derive(Default)]
pub struct Outbox {
    state: Mutex<State>,
    /// Given once per batch: when the first entry lands in an empty (taken) queue.
    wake: Notify,
    /// Entries not yet handled by the connection task (taken ones included until it has written
    /// them): the session's share of the backlog that paces publishers.
    pending: AtomicUsize,
    /// Set once the server has decided to close this connection: the reader stops at once.
    closing: AtomicBool,
}

#[derive(Default)]
struct State {
    entries: Vec<Outbound>,
    /// A wake-up was given (or deferred) for the entries there: no other is needed until the task
    /// takes them.
    woken: bool,
    /// The connection task is gone: entries are dropped instead of kept.
    closed: bool,
}

/// Most entries a drained queue keeps room for: a connection that once had a long backlog does not
/// hold that memory for the rest of its life.
const KEEP_CAPACITY: usize = 256;

impl Outbox {
    pub fn new() -> Arc<Outbox> {
        Arc::new(Outbox::default())
    }

    pub fn pending(&self) -> usize {
        self.pending.load(Ordering::Relaxed)
    }

    pub fn is_closing(&self) -> bool {
        self.closing.load(Ordering::Relaxed)
    }

    pub fn set_closing(&self) {
        self.closing.store(true, Ordering::Relaxed);
    }

    /// Append an entry; false when the connection task has gone.
    pub fn push(self: &Arc<Self>, o: Outbound) -> bool {
        let mut state = self.state.lock();
        if state.closed {
            return false;
        }
        state.entries.push(o);
        self.pending.fetch_add(1, Ordering::Relaxed);
        let wake = !std::mem::replace(&mut state.woken, true);
        drop(state);
        if wake && !DeferWakes::defer(self) {
            self.wake.notify_one();
        }
        true
    }

    /// Wait until there are entries to take (at once when some were added since the last take).
    pub async fn ready(&self) {
        self.wake.notified().await
    }

    /// Move every entry into `into` (which must be empty; its capacity is reused for the next batch).
    pub fn take(&self, into: &mut Vec<Outbound>) {
        debug_assert!(into.is_empty());
        let mut state = self.state.lock();
        if into.capacity() > KEEP_CAPACITY {
            *into = Vec::new();
        }
        std::mem::swap(&mut state.entries, into);
        state.woken = false;
    }

    /// An entry taken by [`Outbox::take`] was handled.
    pub fn handled(&self) {
        self.pending.fetch_sub(1, Ordering::Relaxed);
    }

    /// The connection task is done: drop what is queued and refuse what comes.
    pub fn close(&self) {
        let mut state = self.state.lock();
        state.closed = true;
        let n = state.entries.len();
        state.entries = Vec::new();
        self.pending.fetch_sub(n, Ordering::Relaxed);
    }
}

thread_local! {
    /// Outboxes whose wake-up is held back on this thread, while a [`DeferWakes`] lives.
    static DEFERRED: RefCell<Option<Vec<Arc<Outbox>>>> = const { RefCell::new(None) };
}

/// While this lives, wake-ups of connection tasks caused on this thread are collected and given
/// when it is dropped. Not `Send`, so it cannot be held across an `.await` of a task that may move
/// to another thread; the compiler refuses that.
pub struct DeferWakes {
    outer: bool,
    _not_send: PhantomData<*const ()>,
}

impl DeferWakes {
    pub fn begin() -> DeferWakes {
        let outer = DEFERRED.with(|d| {
            let mut d = d.borrow_mut();
            if d.is_some() {
                return false; // nested: the outermost one wakes
            }
            *d = Some(Vec::new());
            true
        });
        DeferWakes {
            outer,
            _not_send: PhantomData,
        }
    }

    /// Hold back `outbox`'s wake-up if a [`DeferWakes`] is active on this thread.
    fn defer(outbox: &Arc<Outbox>) -> bool {
        DEFERRED.with(|d| match &mut *d.borrow_mut() {
            Some(list) => {
                list.push(outbox.clone());
                true
            }
            None => false,
        })
    }
}

impl Drop for DeferWakes {
    fn drop(&mut self) {
        if !self.outer {
            return;
        }
        if let Some(list) = DEFERRED.with(|d| d.borrow_mut().take()) {
            for outbox in list {
                outbox.wake.notify_one();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn packet() -> Outbound {
        Outbound::Packet(Packet::PingResp)
    }

    #[tokio::test]
    async fn entries_are_taken_in_order_with_one_wake_per_batch() {
        let outbox = Outbox::new();
        assert!(outbox.push(packet()));
        assert!(outbox.push(Outbound::Close(None)));
        assert_eq!(outbox.pending(), 2);
        outbox.ready().await;
        let mut batch = Vec::new();
        outbox.take(&mut batch);
        assert!(matches!(batch[0], Outbound::Packet(_)));
        assert!(matches!(batch[1], Outbound::Close(None)));
        // Taken but not yet handled: still part of the backlog.
        assert_eq!(outbox.pending(), 2);
        batch.drain(..).for_each(|_| outbox.handled());
        assert_eq!(outbox.pending(), 0);
        // The one wake-up was used: nothing is ready until the next entry.
        let waited =
            tokio::time::timeout(std::time::Duration::from_millis(20), outbox.ready()).await;
        assert!(waited.is_err());
        outbox.push(packet());
        outbox.ready().await;
    }

    #[tokio::test]
    async fn deferred_wakes_are_given_when_the_scope_ends() {
        let outbox = Outbox::new();
        {
            let _outer = DeferWakes::begin();
            {
                let _inner = DeferWakes::begin();
                outbox.push(packet());
            }
            outbox.push(packet());
            let early =
                tokio::time::timeout(std::time::Duration::from_millis(20), outbox.ready()).await;
            assert!(early.is_err(), "woken before the outer scope ended");
        }
        outbox.ready().await;
        let mut batch = Vec::new();
        outbox.take(&mut batch);
        assert_eq!(batch.len(), 2);
    }

    #[test]
    fn a_closed_outbox_refuses_entries() {
        let outbox = Outbox::new();
        outbox.push(packet());
        outbox.close();
        assert_eq!(outbox.pending(), 0);
        assert!(!outbox.push(packet()));
        assert_eq!(outbox.pending(), 0);
    }
}
