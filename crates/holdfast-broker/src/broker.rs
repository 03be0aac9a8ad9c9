//! The shared state of a running broker and the execution of core actions against it.
//!
//! Lock order, to stay deadlock-free: `sessions` (registry) -> a session `Slot` -> `subs` / `retained`;
//! a connection's [`Outbox`] is locked last, briefly, and never while taking another lock.
//! Routing takes `subs` for reading, collects its targets and releases it before locking any slot, and
//! never holds two slots at once.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use holdfast_core::action::PendingAck;
use holdfast_core::connect::ConnectParams;
use holdfast_core::message::StoredRef;
use holdfast_core::persist::{Op, StoredMessage};
use holdfast_core::retained::RetainedIndex;
use holdfast_core::router::{plan, SubscriberEntry};
use holdfast_core::session::{DeliverOutcome, Delivery, Subscription};
use holdfast_core::topic::{Matches, SubscriptionTree};
use holdfast_core::{
    Action, ClientId, CoreConfig, DropReason, Durability, Message, Millis, Session,
};
use holdfast_proto::topic::parse_shared;
use holdfast_proto::{Packet, QoS, ReasonCode};
use holdfast_store::Store;
use parking_lot::{Mutex, RwLock};

use crate::stats::Stats;
use crate::ticket::Ticket;

mod admin;
mod outbox;
mod restore;
pub use admin::{AdminAction, BrokerStats, RetainedInfo, SessionQuery};
pub use outbox::{DeferWakes, Outbound, Outbox};

/// Most packets waiting to be written to one connection before QoS 0 messages to it are dropped: a
/// client that does not read must not grow the broker's memory without bound.
const MAX_PENDING_WRITES: usize = 16 * 1024;

pub fn now_millis() -> Millis {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as Millis)
        .unwrap_or(0)
}

thread_local! {
    /// A cleared action list kept for the next call on this thread: one is filled and emptied per
    /// session touched, several times per message.
    static SCRATCH: std::cell::Cell<Vec<Action>> = const { std::cell::Cell::new(Vec::new()) };
}

/// An empty action list, with room if the thread has one spare.
fn scratch() -> Vec<Action> {
    SCRATCH.with(std::cell::Cell::take)
}

/// Give an emptied action list back for [`scratch`] (a large one is dropped).
fn recycle(v: Vec<Action>) {
    debug_assert!(v.is_empty());
    if v.capacity() > 0 && v.capacity() <= 256 {
        SCRATCH.with(|s| s.set(v));
    }
}

/// A connected session whose backlog (queued messages plus packets not yet written) passes this
/// makes the publishers that feed it wait before reading more (see [`Pace`]).
const PACE_HIGH: usize = 2048;
/// ... until the backlog is down to this.
const PACE_LOW: usize = 512;
/// A backlog that does not fall to [`PACE_LOW`] within this long belongs to a stalled client: its
/// publishers stop waiting for it, and its queue limits apply as without pacing.
pub const PACE_MAX_WAIT: std::time::Duration = std::time::Duration::from_millis(250);

/// Publisher pacing. Acknowledging publishers faster than a subscriber takes their messages only
/// grows that subscriber's queue (memory, latency, and CPU spent queueing instead of delivering), so
/// a publisher whose message lands in a backlog past [`PACE_HIGH`] stops reading its socket until
/// the backlog falls to [`PACE_LOW`]; TCP flow control then slows the publisher itself. A client that
/// makes no progress for [`PACE_MAX_WAIT`] is marked stalled and paces nobody until it catches up,
/// so one stuck subscriber cannot stop its publishers (or anyone else's traffic through them).
#[derive(Default)]
pub struct Pace {
    drained: tokio::sync::Notify,
    /// A publisher waits for this session's backlog to fall.
    waiting: AtomicBool,
    stalled: AtomicBool,
}

impl Pace {
    fn release(&self) {
        self.stalled.store(false, Ordering::Relaxed);
        if self.waiting.swap(false, Ordering::AcqRel) {
            self.drained.notify_waiters();
        }
    }
}

/// A session and the connection it is attached to, if any.
pub struct Slot {
    inner: Mutex<SlotInner>,
    online: AtomicBool,
    pace: Pace,
}

impl Slot {
    fn new(session: Session) -> Slot {
        Slot {
            inner: Mutex::new(SlotInner {
                session,
                conn: None,
            }),
            online: AtomicBool::new(false),
            pace: Pace::default(),
        }
    }
}

impl SlotInner {
    /// Messages and packets this session's client has yet to be sent.
    fn backlog(&self) -> usize {
        match &self.conn {
            Some(c) => self.session.queued_len() + c.pending(),
            None => 0,
        }
    }
}

struct SlotInner {
    session: Session,
    conn: Option<Arc<Outbox>>,
}

/// A subscription in the topic tree points straight at its session, so routing needs no registry lookup.
pub struct SubValue {
    slot: Arc<Slot>,
    sub: Subscription,
}

impl SubscriberEntry for SubValue {
    fn subscription(&self) -> &Subscription {
        &self.sub
    }
}

/// The store changes one call on a session made, committed together when the call is done.
#[derive(Default)]
struct Batch {
    ops: Vec<Op>,
    class: Option<Durability>,
    ticket: Option<Arc<Ticket>>,
}

pub struct Broker {
    pub cfg: Arc<CoreConfig>,
    store: Arc<dyn Store>,
    next_message_id: AtomicU64,
    /// Tells the store a message body has no reference left.
    message_dropped: Arc<dyn Fn(u64) + Send + Sync>,
    sessions: Mutex<HashMap<ClientId, Arc<Slot>>>,
    subs: RwLock<SubscriptionTree<SubValue>>,
    retained: RwLock<RetainedIndex<Arc<Message>>>,
    pub stats: Stats,
    pub max_connections: usize,
    pub connections: AtomicUsize,
    /// Set once recovery finished and the listeners are bound (`/readyz`).
    pub ready: AtomicBool,
    /// When the broker started (ms since the epoch), for uptime.
    pub started_at: Millis,
    /// How long the store's recovery took at start, in microseconds (metrics).
    pub recovery_micros: AtomicU64,
    next_client_id: AtomicU64,
    next_connection: AtomicU64,
    id_prefix: String,
}

/// What was restored at start.
#[derive(Debug, Default, Clone, Copy)]
pub struct Restore {
    pub sessions: usize,
    pub messages: usize,
    pub retained: usize,
}

/// The result of routing one message.
#[derive(Default, Clone)]
pub struct RouteOutcome {
    pub delivered: usize,
    pub dropped_full: usize,
    /// The store batches the message made; its acknowledgement waits for all of them.
    pub tickets: Vec<Arc<Ticket>>,
    /// A receiving session whose backlog is past [`PACE_HIGH`].
    congested: Option<Arc<Slot>>,
}

impl RouteOutcome {
    /// The reason code of the PUBACK/PUBREC owed to an MQTT 5 publisher [MQTT-3.4.2-?].
    pub fn reason(&self) -> ReasonCode {
        match (self.delivered, self.dropped_full) {
            (0, 0) => ReasonCode::NO_MATCHING_SUBSCRIBERS,
            (0, _) => ReasonCode::QUOTA_EXCEEDED,
            _ => ReasonCode::SUCCESS,
        }
    }
}

impl Broker {
    pub fn new(cfg: CoreConfig, max_connections: usize, store: Arc<dyn Store>) -> Broker {
        let dropped_to = store.clone();
        Broker {
            cfg: Arc::new(cfg),
            store,
            next_message_id: AtomicU64::new(1),
            message_dropped: Arc::new(move |id| {
                dropped_to.commit(vec![Op::DeleteMessage { id }], Durability::Flush, None)
            }),
            sessions: Mutex::new(HashMap::new()),
            subs: RwLock::new(SubscriptionTree::new()),
            retained: RwLock::new(RetainedIndex::new()),
            stats: Stats::default(),
            max_connections,
            connections: AtomicUsize::new(0),
            ready: AtomicBool::new(false),
            started_at: now_millis(),
            recovery_micros: AtomicU64::new(0),
            next_client_id: AtomicU64::new(1),
            next_connection: AtomicU64::new(1),
            id_prefix: format!("holdfast-{:x}-", now_millis()),
        }
    }

    /// A client identifier for a client that sent none [MQTT-3.1.3-6].
    pub fn new_client_id(&self) -> String {
        format!(
            "{}{}",
            self.id_prefix,
            self.next_client_id.fetch_add(1, Ordering::Relaxed)
        )
    }

    pub fn session_count(&self) -> usize {
        self.sessions.lock().len()
    }

    pub fn retained_count(&self) -> usize {
        self.retained.read().len()
    }

    /// Attach a new connection to the session of `p.client_id`: take over a connected session, discard
    /// the old one on Clean Start [MQTT-3.1.2-4], or resume it [MQTT-3.1.2-5]. Sends the CONNACK.
    pub fn open_session(
        &self,
        p: ConnectParams,
        outbox: Arc<Outbox>,
        now: Millis,
    ) -> (Arc<Slot>, u64) {
        let mut later = Vec::new();
        let mut reg = self.sessions.lock();
        let (slot, created) = match reg.get(&p.client_id) {
            Some(slot) => (slot.clone(), false),
            None => {
                let slot = Arc::new(Slot::new(Session::new(
                    p.client_id.clone(),
                    p.protocol,
                    self.cfg.clone(),
                )));
                reg.insert(p.client_id.clone(), slot.clone());
                (slot, true)
            }
        };
        let mut inner = slot.inner.lock();
        let mut out = Vec::new();
        inner.session.take_over(now, &mut out);
        let resume = !created && !p.clean_start && !inner.session.has_ended();
        if !resume && !created {
            inner.session.discard(true, now, &mut out);
        }
        let mut batch = Batch::default();
        self.perform_locked(&mut inner, &slot, out, &mut later, &mut batch);
        if !resume {
            inner.session = Session::new(p.client_id.clone(), p.protocol, self.cfg.clone());
        }
        inner.conn = Some(outbox);
        slot.online.store(true, Ordering::Release);
        let mut out = Vec::new();
        let generation = self.next_connection.fetch_add(1, Ordering::Relaxed);
        inner.session.attach(p, resume, generation, now, &mut out);
        self.perform_locked(&mut inner, &slot, out, &mut later, &mut batch);
        self.commit(batch);
        drop(inner);
        drop(reg);
        // The old session's end was superseded by this one: only its will and drops remain to do.
        later.retain(|a| !matches!(a, Action::EndSession));
        self.perform_unlocked(&slot, later, now);
        (slot, generation)
    }

    /// The connection of `generation` is gone.
    pub fn close_session(&self, slot: &Arc<Slot>, generation: u64, now: Millis) {
        let later = self.run(slot, &[], |s, out| {
            s.detach(generation, now, out);
        });
        self.perform_unlocked(slot, later, now);
    }

    /// Handle a packet from the client of `slot`. Returns a session this client's message went to
    /// whose backlog is too long: the caller should read nothing more from this client until
    /// [`Broker::congested`] says otherwise (see [`Pace`]).
    pub fn handle_packet(
        &self,
        slot: &Arc<Slot>,
        packet: Packet,
        now: Millis,
    ) -> Option<Arc<Slot>> {
        let later = self.run(slot, &[], |s, out| s.handle_packet(packet, now, out));
        self.perform_unlocked(slot, later, now)
    }

    /// [`Broker::handle_packet`] for an MQTT 3.1/3.1.1 client whose acknowledgements go out before
    /// its messages are routed: a volatile QoS 0 or 1 message is acknowledged now and added to
    /// `routes`, for [`Broker::route_all`] once the acknowledgements are written. Its PUBACK carries
    /// nothing routing could change (3.1.1 has no reason codes) and nothing of it is stored, so the
    /// publisher can send its next messages while these are delivered; the rest is handled as
    /// [`Broker::handle_packet`] does.
    pub fn handle_packet_ack_first(
        &self,
        slot: &Arc<Slot>,
        packet: Packet,
        now: Millis,
        routes: &mut Vec<Arc<Message>>,
    ) -> Option<Arc<Slot>> {
        let later = self.run(slot, &[], |s, out| s.handle_packet(packet, now, out));
        let mut rest = Vec::new();
        for action in later {
            match action {
                Action::Publish {
                    msg,
                    ack,
                    store: None,
                } if msg.durability == Durability::Volatile && msg.qos != QoS::ExactlyOnce => {
                    if let Some(ack) = ack {
                        self.ack(slot, ack, RouteOutcome::default(), now);
                    }
                    routes.push(msg);
                }
                other => rest.push(other),
            }
        }
        self.perform_unlocked(slot, rest, now)
    }

    /// Route the messages [`Broker::handle_packet_ack_first`] acknowledged, in order. Returns a
    /// receiving session whose backlog is too long, as [`Broker::handle_packet`] does.
    pub fn route_all(
        &self,
        slot: &Arc<Slot>,
        routes: &mut Vec<Arc<Message>>,
        now: Millis,
    ) -> Option<Arc<Slot>> {
        let mut congested = None;
        for msg in routes.drain(..) {
            let mut outcome = self.route_with(msg, None, now);
            if let Some(c) = outcome.congested.take().filter(|c| !Arc::ptr_eq(c, slot)) {
                congested = Some(c);
            }
        }
        congested
    }

    /// Whether `target` still has a backlog its publishers should wait for. Registers the caller as
    /// waiting, so `target.pace.drained` is notified once it falls.
    pub fn congested(&self, target: &Slot) -> bool {
        target.pace.waiting.store(true, Ordering::Release);
        if target.pace.stalled.load(Ordering::Relaxed) {
            return false;
        }
        let inner = target.inner.lock();
        let busy = inner.backlog() > PACE_LOW;
        drop(inner);
        busy
    }

    /// A publisher waited [`PACE_MAX_WAIT`] for `target` in vain.
    pub fn stalled(&self, target: &Slot) {
        target.pace.stalled.store(true, Ordering::Relaxed);
    }

    /// The connection of `slot` wrote out what was pending: wake publishers waiting for its backlog.
    pub fn written(&self, slot: &Slot) {
        // Checked before taking the lock: most writes have nobody waiting on them.
        if slot.pace.waiting.load(Ordering::Acquire) || slot.pace.stalled.load(Ordering::Relaxed) {
            let backlog = slot.inner.lock().backlog();
            self.paced(slot, backlog);
        }
    }

    /// The future a waiting publisher awaits: completes (at the latest) when `target`'s backlog
    /// falls. Create it before checking [`Broker::congested`] so no wake-up is missed.
    pub fn drained(target: &Slot) -> std::pin::Pin<Box<tokio::sync::futures::Notified<'_>>> {
        let mut n = Box::pin(target.pace.drained.notified());
        n.as_mut().enable();
        n
    }

    /// Run `f` on the session with its lock held and perform the actions that must keep their order
    /// relative to other callers: writes, store changes, subscription changes. Writes wait for `gates`
    /// and for the store changes `f` made. Returns the rest.
    fn run(
        &self,
        slot: &Arc<Slot>,
        gates: &[Arc<Ticket>],
        f: impl FnOnce(&mut Session, &mut Vec<Action>),
    ) -> Vec<Action> {
        self.run_backlog(slot, gates, f).0
    }

    /// [`Broker::run`], also returning the session's backlog afterwards.
    fn run_backlog(
        &self,
        slot: &Arc<Slot>,
        gates: &[Arc<Ticket>],
        f: impl FnOnce(&mut Session, &mut Vec<Action>),
    ) -> (Vec<Action>, usize) {
        let mut later = Vec::new();
        let mut inner = slot.inner.lock();
        let mut out = scratch();
        f(&mut inner.session, &mut out);
        let mut batch = Batch::default();
        if let Some(conn) = &inner.conn {
            if out.iter().any(|a| matches!(a, Action::Send(_))) {
                for gate in gates.iter().filter(|g| !g.is_done_ok()) {
                    conn.push(Outbound::Wait(gate.clone()));
                }
            }
        }
        self.perform_locked(&mut inner, slot, out, &mut later, &mut batch);
        self.commit(batch);
        let backlog = inner.backlog();
        drop(inner);
        self.paced(slot, backlog);
        (later, backlog)
    }

    /// After a change to `slot`: release the publishers waiting for it once its backlog is low.
    fn paced(&self, slot: &Slot, backlog: usize) {
        if backlog <= PACE_LOW
            && (slot.pace.waiting.load(Ordering::Acquire)
                || slot.pace.stalled.load(Ordering::Relaxed))
        {
            slot.pace.release();
        }
    }

    /// Hand a batch to the store; its ticket completes when the store is done with it.
    fn commit(&self, batch: Batch) {
        let Some(class) = batch.class else { return };
        let done = batch.ticket.map(|t| t.completion());
        self.store.commit(batch.ops, class, done);
    }

    fn perform_locked(
        &self,
        inner: &mut SlotInner,
        slot: &Arc<Slot>,
        mut out: Vec<Action>,
        later: &mut Vec<Action>,
        batch: &mut Batch,
    ) {
        for action in out.drain(..) {
            match action {
                Action::Persist(op, class) => {
                    batch.ops.push(op);
                    batch.class = Some(batch.class.map_or(class, |c| c.max(class)));
                    if batch.ticket.is_none() {
                        let ticket = Ticket::new();
                        // Everything written after this waits until the batch is stored.
                        if let Some(conn) = &inner.conn {
                            conn.push(Outbound::Wait(ticket.clone()));
                        }
                        batch.ticket = Some(ticket);
                    }
                }
                Action::Send(packet) => {
                    if let Some(conn) = &inner.conn {
                        if is_qos0_publish(&packet) && conn.pending() > MAX_PENDING_WRITES {
                            self.stats.dropped(DropReason::QueueFull);
                            continue;
                        }
                        // Counted as sent by the connection task, once written.
                        conn.push(Outbound::Packet(packet));
                    }
                }
                Action::Close(reason) => {
                    if let Some(conn) = &inner.conn {
                        conn.set_closing();
                        conn.push(Outbound::Close(reason));
                    }
                }
                Action::Subscribe {
                    filter,
                    options,
                    id,
                } => {
                    let (group, plain) = split_shared(&filter);
                    let value = SubValue {
                        slot: slot.clone(),
                        sub: Subscription { options, id },
                    };
                    self.subs
                        .write()
                        .insert(plain, group, inner.session.client_id(), value);
                }
                Action::Unsubscribe { filter } => {
                    let (group, plain) = split_shared(&filter);
                    self.subs
                        .write()
                        .remove(plain, group, inner.session.client_id());
                }
                Action::SendRetained {
                    filter,
                    options,
                    id,
                } => {
                    self.send_retained(
                        inner,
                        slot,
                        &filter,
                        Subscription { options, id },
                        later,
                        batch,
                    );
                }
                Action::Dropped(reason) => self.stats.dropped(reason),
                Action::Publish { .. } | Action::EndSession => later.push(action),
            }
        }
        if inner.conn.is_some() && !inner.session.is_connected() {
            if let Some(conn) = inner.conn.take() {
                // The session let go of its connection: the connection must end too (it has
                // been told to unless it is the one closing).
                if !conn.is_closing() {
                    conn.set_closing();
                    conn.push(Outbound::Close(None));
                }
            }
            slot.online.store(false, Ordering::Release);
            slot.pace.release();
        }
        recycle(out);
    }

    fn send_retained(
        &self,
        inner: &mut SlotInner,
        slot: &Arc<Slot>,
        filter: &str,
        sub: Subscription,
        later: &mut Vec<Action>,
        batch: &mut Batch,
    ) {
        let now = now_millis();
        let msgs: Vec<Arc<Message>> = {
            let retained = self.retained.read();
            let mut found = Vec::new();
            retained.matching(filter, &mut found);
            found.into_iter().map(|(_, m)| m.clone()).collect()
        };
        for msg in msgs {
            // Retained messages sent on subscribe carry RETAIN = 1 [MQTT-3.3.1-8].
            let d = Delivery {
                qos: msg.qos.min(sub.options.qos),
                retain: true,
                subscription_ids: sub.id.into_iter().collect(),
                msg,
                seq: 0,
            };
            let mut out = Vec::new();
            inner.session.deliver(d, now, &mut out);
            self.perform_locked(inner, slot, out, later, batch);
        }
    }

    /// Perform what must happen without the session's lock: routing (it locks other sessions) and
    /// forgetting an ended session (it takes the registry lock).
    /// Returns a congested session a message of `slot`'s went to (see [`Broker::handle_packet`]).
    fn perform_unlocked(
        &self,
        slot: &Arc<Slot>,
        actions: Vec<Action>,
        now: Millis,
    ) -> Option<Arc<Slot>> {
        let mut congested = None;
        for action in actions {
            match action {
                Action::Publish { msg, ack, store } => {
                    let mut outcome = self.route_with(msg, store, now);
                    // Waiting for oneself would never end: the backlog drains through this very
                    // connection's reads.
                    if let Some(c) = outcome.congested.take().filter(|c| !Arc::ptr_eq(c, slot)) {
                        congested = Some(c);
                    }
                    if let Some(ack) = ack {
                        self.ack(slot, ack, outcome, now);
                    }
                }
                Action::EndSession => self.forget(slot),
                _ => {}
            }
        }
        congested
    }

    /// Acknowledge a routed publish. The PUBACK/PUBREC waits for every store batch the message made
    /// (its body, each queue entry) and carries an error if any of them failed: nothing is
    /// acknowledged that was not stored as durably as its class promises.
    fn ack(&self, slot: &Arc<Slot>, ack: PendingAck, outcome: RouteOutcome, now: Millis) {
        let later = self.run(slot, &outcome.tickets, |s, out| {
            s.publish_done(ack, outcome.reason(), out)
        });
        self.perform_unlocked(slot, later, now);
    }

    fn forget(&self, slot: &Arc<Slot>) {
        let mut reg = self.sessions.lock();
        let inner = slot.inner.lock();
        if !inner.session.has_ended() {
            return; // a new connection already gave this client a new session
        }
        let id = inner.session.client_id().clone();
        if reg.get(&id).is_some_and(|s| Arc::ptr_eq(s, slot)) {
            reg.remove(&id);
        }
    }

    /// Route a message: store its body when its class asks for it, update the retained index
    /// [MQTT-3.3.1-5] and deliver a copy to every matching session. A `sync` message reaches no
    /// subscriber before it is fsync'd.
    pub fn route(&self, msg: Arc<Message>, now: Millis) -> RouteOutcome {
        self.route_with(msg, None, now)
    }

    /// [`Broker::route`], with a store change of the publisher's session (its inbound QoS 2 packet id)
    /// that must be stored atomically with the message.
    fn route_with(&self, mut msg: Arc<Message>, extra: Option<Op>, now: Millis) -> RouteOutcome {
        if msg.publisher.is_some() || !msg.topic.starts_with("$SYS/") {
            self.stats.messages_received.fetch_add(1, Ordering::Relaxed);
            self.stats.received_by_qos[usize::from(msg.qos.as_u8())]
                .fetch_add(1, Ordering::Relaxed);
        }
        let mut outcome = RouteOutcome::default();
        let mut batch = self.message_batch(&mut msg);
        if let Some(op) = extra {
            batch.class = Some(batch.class.unwrap_or(Durability::Flush));
            batch.ops.push(op);
        }
        if msg.retain {
            let mut retained = self.retained.write();
            if msg.payload.is_empty() {
                retained.remove(&msg.topic); // [MQTT-3.3.1-6] [MQTT-3.3.1-7]
            } else {
                retained.insert(&msg.topic, msg.clone());
            }
        }
        // Stored messages lock every receiving session at once, in address order.
        let targets = self.targets(&msg, batch.class.is_some());
        tracing::trace!(
            topic = &*msg.topic,
            qos = msg.qos.as_u8(),
            targets = targets.len(),
            "route"
        );
        drop(msg);
        let count = |outcome: &mut RouteOutcome, result| match result {
            DeliverOutcome::Accepted => outcome.delivered += 1,
            DeliverOutcome::Dropped(DropReason::QueueFull) => outcome.dropped_full += 1,
            // Not the publisher's concern: the subscriber's limits or its absence.
            DeliverOutcome::Dropped(_) => outcome.delivered += 1,
        };
        // `targets` is sorted by session: each session's deliveries are consecutive.
        let mut targets = targets.into_iter().peekable();
        if batch.class.is_none() {
            // Nothing of it is stored: deliver session by session.
            while let Some((slot, first)) = targets.next() {
                let (later, backlog) = self.run_backlog(&slot, &[], |s, out| {
                    count(&mut outcome, s.deliver(first, now, out));
                    while let Some((_, d)) = targets.next_if(|(n, _)| Arc::ptr_eq(n, &slot)) {
                        count(&mut outcome, s.deliver(d, now, out));
                    }
                });
                debug_assert!(later.is_empty());
                if backlog > PACE_HIGH && !slot.pace.stalled.load(Ordering::Relaxed) {
                    outcome.congested = Some(slot);
                }
            }
            return outcome;
        }
        // One batch holds the message, its retained change, every queue entry made for it and the
        // publisher's QoS 2 packet id, so a crash stores all of it or none. It is committed while every
        // receiving session is locked (in address order, so lockers cannot deadlock), so no later
        // change of theirs can reach the store first. Everything sent for it waits for that commit.
        let ticket = Ticket::new();
        batch.ticket = Some(ticket.clone());
        let targets: Vec<(Arc<Slot>, Delivery)> = targets.collect();
        let mut slots: Vec<&Arc<Slot>> = targets.iter().map(|(slot, _)| slot).collect();
        slots.dedup_by(|a, b| Arc::ptr_eq(a, b));
        let slots: Vec<Arc<Slot>> = slots.into_iter().cloned().collect();
        let mut guards: Vec<_> = slots.iter().map(|slot| slot.inner.lock()).collect();
        let mut later = Vec::new();
        let mut targets = targets.into_iter().peekable();
        for (slot, guard) in slots.iter().zip(guards.iter_mut()) {
            let mut out = scratch();
            while let Some((_, d)) = targets.next_if(|(n, _)| Arc::ptr_eq(n, slot)) {
                count(&mut outcome, guard.session.deliver(d, now, &mut out));
            }
            if let Some(conn) = &guard.conn {
                if out.iter().any(|a| matches!(a, Action::Send(_))) {
                    conn.push(Outbound::Wait(ticket.clone()));
                }
            }
            self.perform_locked(guard, slot, out, &mut later, &mut batch);
            if guard.backlog() > PACE_HIGH && !slot.pace.stalled.load(Ordering::Relaxed) {
                outcome.congested = Some(slot.clone());
            }
        }
        self.commit(batch);
        drop(guards);
        debug_assert!(later.is_empty());
        outcome.tickets.push(ticket);
        outcome
    }

    /// The deliveries of a message, a session's consecutive (a session can match through both a
    /// plain and a shared subscription: its deliveries are then in match order). Sorted by session
    /// address when `ordered` or when a session may appear more than once.
    fn targets(&self, msg: &Arc<Message>, ordered: bool) -> Vec<(Arc<Slot>, Delivery)> {
        let subs = self.subs.read();
        let mut matches = Matches::new();
        subs.matches(&msg.topic, &mut matches);
        // One filter and no shared group: each session appears once.
        let ordered = ordered || matches.direct_filters > 1 || !matches.shared.is_empty();
        let mut planned = Vec::new();
        plan(
            &mut matches,
            msg,
            |_, v| v.slot.online.load(Ordering::Acquire),
            &mut planned,
        );
        let mut targets: Vec<(Arc<Slot>, Delivery)> = planned
            .into_iter()
            .map(|t| {
                let d = Delivery {
                    msg: msg.clone(),
                    qos: t.qos,
                    retain: t.retain,
                    subscription_ids: t.subscription_ids,
                    seq: 0,
                };
                (t.value.slot.clone(), d)
            })
            .collect();
        if ordered {
            // Stable: a session's own deliveries keep their order.
            targets.sort_by_key(|(slot, _)| Arc::as_ptr(slot));
        }
        targets
    }

    /// The store changes for a message whose class is not volatile: its body (QoS 1/2 messages and
    /// retained ones) and its retained-index change. An empty batch (no class) when nothing is stored.
    fn message_batch(&self, msg: &mut Arc<Message>) -> Batch {
        let class = msg.durability;
        let mut batch = Batch::default();
        if class == Durability::Volatile {
            return batch;
        }
        if msg.qos != QoS::AtMostOnce || (msg.retain && !msg.payload.is_empty()) {
            let id = self.next_message_id.fetch_add(1, Ordering::Relaxed);
            let stored = Some(Arc::new(StoredRef::new(id, self.message_dropped.clone())));
            Arc::make_mut(msg).stored = stored;
            batch.ops.push(Op::PutMessage {
                id,
                message: StoredMessage::from_message(msg),
            });
        }
        if msg.retain {
            // A retained message with an empty payload deletes the topic's [MQTT-3.3.1-6].
            batch
                .ops
                .push(match (msg.payload.is_empty(), msg.stored_id()) {
                    (false, Some(message_id)) => Op::PutRetained {
                        topic: msg.topic.to_string(),
                        message_id,
                    },
                    _ => Op::DeleteRetained {
                        topic: msg.topic.to_string(),
                    },
                });
        }
        if !batch.ops.is_empty() {
            batch.class = Some(class);
        }
        batch
    }

    pub fn recovery_seconds(&self) -> f64 {
        self.recovery_micros.load(Ordering::Relaxed) as f64 / 1e6
    }

    /// Write and fsync everything still pending in the store.
    pub fn close_store(&self) {
        self.store.close();
    }

    /// Expire sessions and wills, and drop expired retained messages. Called every second or so.
    pub fn sweep(&self, now: Millis) {
        let slots: Vec<Arc<Slot>> = self.sessions.lock().values().cloned().collect();
        for slot in slots {
            if slot.online.load(Ordering::Acquire) {
                continue;
            }
            let later = self.run(&slot, &[], |s, out| {
                s.tick(now, out);
            });
            self.perform_unlocked(&slot, later, now);
        }
        self.retained.write().retain(|_, m| !m.is_expired(now));
    }

    /// Tell every connected client the server is going away (v5: 0x8B Server shutting down).
    pub fn disconnect_all(&self, reason: ReasonCode) {
        let slots: Vec<Arc<Slot>> = self.sessions.lock().values().cloned().collect();
        for slot in slots {
            let inner = slot.inner.lock();
            if let Some(conn) = &inner.conn {
                let v5 = inner.session.protocol().is_v5();
                conn.push(Outbound::Close(v5.then_some(reason)));
            }
        }
    }
}

fn split_shared(filter: &str) -> (Option<&str>, &str) {
    match parse_shared(filter) {
        Some(Ok((group, plain))) => (Some(group), plain),
        _ => (None, filter),
    }
}

fn is_qos0_publish(p: &Packet) -> bool {
    matches!(p, Packet::Publish(p) if p.qos == QoS::AtMostOnce)
}
