//! The background task: connects, reconnects with backoff, and runs one connection at a time.

use std::collections::{HashMap, VecDeque};
use std::time::Duration;

use holdfast_core::Durability;
use holdfast_proto::{
    Connect, Disconnect, Packet, Properties, Publish, ReasonCode, Subscribe, SubscriptionOptions,
    Unsubscribe, Will,
};
use tokio::sync::{mpsc, oneshot};
use tokio::time::{sleep, Instant};

use crate::alias::{InAliases, OutAliases};
use crate::conn::Conn;
use crate::session::{Committed, Session};
use crate::transport::Transport;
use crate::{ClientError, ClientOptions, Message, Outgoing};

/// Completes a publish: acknowledged (or written, QoS 0), or why not.
pub(crate) type Done = oneshot::Sender<Result<(), ClientError>>;

/// Where a subscription's messages go: bounded, see [`EventLoop::held`].
pub(crate) type Sink = mpsc::Sender<Message>;

pub(crate) enum Command {
    Publish {
        message: Box<Outgoing>,
        stored: oneshot::Sender<Result<(), ClientError>>,
        done: oneshot::Sender<Result<(), ClientError>>,
    },
    Subscribe {
        filters: Vec<(String, SubscriptionOptions)>,
        /// MQTT 5 Subscription Identifier.
        id: Option<u32>,
        sink: Sink,
        reply: oneshot::Sender<Result<Vec<u8>, ClientError>>,
    },
    Unsubscribe {
        filters: Vec<String>,
        reply: oneshot::Sender<Result<(), ClientError>>,
    },
    Disconnect {
        reply: oneshot::Sender<()>,
    },
    /// Reply once no QoS 1/2 message is left in the session.
    Idle {
        reply: oneshot::Sender<()>,
    },
}

/// A SUBSCRIBE or UNSUBSCRIBE awaiting its ack (resent after a reconnect).
pub(crate) enum Pending {
    Sub {
        packet: Subscribe,
        sink: Sink,
        reply: Option<oneshot::Sender<Result<Vec<u8>, ClientError>>>,
    },
    Unsub {
        packet: Unsubscribe,
        reply: oneshot::Sender<Result<(), ClientError>>,
    },
}

/// An acknowledged subscription: re-made when the server lost the session.
pub(crate) struct Active {
    pub filters: Vec<(String, SubscriptionOptions)>,
    /// Its Subscription Identifier: messages carrying ids are routed by them.
    pub id: Option<u32>,
    pub sink: Sink,
}

pub(crate) struct EventLoop {
    pub opts: ClientOptions,
    transport: Transport,
    /// Holds the persistence directory's LOCK file locked until the client ends.
    lock: Option<std::fs::File>,
    pub session: Session,
    pub cmds: mpsc::UnboundedReceiver<Command>,
    pub committed: mpsc::UnboundedReceiver<Committed>,
    pub ready: Option<oneshot::Sender<Result<bool, ClientError>>>,
    /// Publish commands waiting for a free packet id.
    pub backlog: VecDeque<Command>,
    /// QoS 0 messages waiting for a connection, with their expiry (ms since the epoch).
    pub qos0: VecDeque<(Publish, Option<u64>, Done)>,
    pub pending: HashMap<u16, Pending>,
    pub active: Vec<Active>,
    pub closing: Option<oneshot::Sender<()>>,
    pub closed: bool,
    pub idle_waiters: Vec<oneshot::Sender<()>>,
    /// Receive Maximum of the server, capped by `max_inflight`.
    pub inflight_limit: usize,
    /// The server's Maximum Packet Size (MQTT 5).
    pub max_packet: usize,
    /// Topic aliases of the current connection, both directions [MQTT-3.3.2-7].
    pub aliases_out: OutAliases,
    pub aliases_in: InAliases,
    /// Received PUBLISH not yet handed to their subscriptions, in order of arrival, because a
    /// subscription in front was full. They are not acknowledged until handed over, so the
    /// server's flow control (our Receive Maximum, or its own inflight window) stops it sending
    /// more QoS 1/2 while the socket is still read (acknowledgements of our own messages keep
    /// coming). QoS 0 has no flow control: with `subscription_capacity` of them held the client
    /// stops reading. Dropped (unacknowledged) when the connection ends: the server sends
    /// QoS 1/2 again.
    pub held: VecDeque<Publish>,
    /// How many of `held` are QoS 0: at `subscription_capacity` the client stops reading.
    pub held_qos0: usize,
    /// The full subscription the first held message waits for.
    pub blocked: Option<Sink>,
    /// The last CONNACK did not say Subscription Identifiers are unavailable.
    pub sub_ids_available: bool,
    /// The server broke the protocol: the reason code of our DISCONNECT.
    pub violation: Option<ReasonCode>,
    first: bool,
}

/// Why a connection ended.
pub(crate) enum End {
    Lost(ClientError),
    Closed,
}

impl EventLoop {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        opts: ClientOptions,
        transport: Transport,
        lock: Option<std::fs::File>,
        session: Session,
        cmds: mpsc::UnboundedReceiver<Command>,
        committed: mpsc::UnboundedReceiver<Committed>,
        ready: Option<oneshot::Sender<Result<bool, ClientError>>>,
    ) -> EventLoop {
        EventLoop {
            inflight_limit: usize::from(opts.max_inflight),
            max_packet: holdfast_proto::MAX_PACKET_SIZE,
            aliases_out: OutAliases::new(0),
            aliases_in: InAliases::new(0),
            held: VecDeque::new(),
            held_qos0: 0,
            blocked: None,
            violation: None,
            sub_ids_available: true,
            opts,
            transport,
            lock,
            session,
            cmds,
            committed,
            ready,
            backlog: VecDeque::new(),
            qos0: VecDeque::new(),
            pending: HashMap::new(),
            active: Vec::new(),
            closing: None,
            closed: false,
            idle_waiters: Vec::new(),
            first: true,
        }
    }

    pub async fn run(mut self) {
        let mut backoff = self.opts.reconnect_min;
        while !self.closed {
            match self.connect().await {
                Ok((conn, present, props)) => {
                    backoff = self.opts.reconnect_min;
                    if let Some(r) = self.ready.take() {
                        let _ = r.send(Ok(present));
                    }
                    match self.serve(conn, present, props).await {
                        End::Closed => break,
                        // 0x8E Session taken over: another client has this id now; reconnecting
                        // would take it back and forth forever.
                        End::Lost(ClientError::ServerDisconnect(0x8E)) => {
                            tracing::warn!("session taken over by another connection: closing");
                            self.closed = true;
                            break;
                        }
                        End::Lost(e) => tracing::info!("connection lost: {e}"),
                    }
                }
                Err(e) => {
                    tracing::info!("connection failed: {e}");
                    if let Some(r) = self.ready.take() {
                        let _ = r.send(Err(e));
                        self.closed = true;
                        break;
                    }
                }
            }
            // Wait before the next attempt, still taking commands and completions.
            let until = Instant::now() + backoff;
            backoff = (backoff * 2).min(self.opts.reconnect_max);
            while !self.closed {
                tokio::select! {
                    _ = tokio::time::sleep_until(until) => break,
                    cmd = self.cmds.recv() => self.command(cmd, None),
                    Some(c) = self.committed.recv() => self.on_committed(c, None),
                }
            }
        }
        self.finish();
    }

    fn finish(&mut self) {
        for (_, _, done) in self.qos0.drain(..) {
            let _ = done.send(Err(ClientError::Closed));
        }
        self.session.close();
        // The store is closed: another process may take the directory.
        self.lock.take();
        if let Some(r) = self.closing.take() {
            let _ = r.send(());
        }
    }

    /// One connection attempt (TCP, CONNECT, CONNACK); commands and store completions are still
    /// taken while it runs, so publishing never waits for the network.
    async fn connect(&mut self) -> Result<(Conn, bool, Properties), ClientError> {
        let o = &self.opts;
        let mut props = Properties::default();
        if o.protocol.is_v5() {
            if o.session_expiry > 0 {
                props.session_expiry_interval = Some(o.session_expiry);
            }
            let rm = self.receive_maximum();
            if rm != 65535 {
                props.receive_maximum = Some(rm);
            }
            if o.topic_alias_max_in > 0 {
                props.topic_alias_maximum = Some(o.topic_alias_max_in);
            }
        }
        let connect = Connect {
            protocol: o.protocol,
            // MQTT 5: Clean Start only once, Session Expiry decides how long the session lives.
            // 3.1.1: Clean Session is the session's lifetime, so it is kept on every connection.
            clean_start: (self.first || !o.protocol.is_v5()) && o.clean_start,
            keep_alive: o.keep_alive,
            client_id: o.client_id.clone(),
            will: o.will.as_ref().map(|w| Will {
                topic: w.topic.clone(),
                payload: w.payload.clone(),
                qos: w.qos,
                retain: w.retain,
                properties: w.properties.clone(),
            }),
            username: o.username.clone(),
            password: o.password.clone(),
            properties: props,
        };
        let attempt = attempt(self.transport.clone(), connect);
        let attempt = tokio::time::timeout(o.connect_timeout, attempt);
        tokio::pin!(attempt);
        let r = loop {
            tokio::select! {
                r = &mut attempt => {
                    break r.unwrap_or_else(|_| Err(ClientError::Io("connect timed out".into())));
                }
                cmd = self.cmds.recv() => self.command(cmd, None),
                Some(c) = self.committed.recv() => self.on_committed(c, None),
            }
            if self.closed {
                break Err(ClientError::Closed);
            }
        };
        if r.is_ok() {
            self.first = false;
        }
        r
    }

    /// Runs one connection until it is lost or the client closes.
    async fn serve(&mut self, mut conn: Conn, present: bool, props: Properties) -> End {
        let server_rm = usize::from(props.receive_maximum.unwrap_or(65535));
        self.inflight_limit = server_rm.min(usize::from(self.opts.max_inflight)).max(1);
        self.max_packet = props
            .maximum_packet_size
            .map_or(holdfast_proto::MAX_PACKET_SIZE, |m| m as usize);
        let keep_alive = props.server_keep_alive.unwrap_or(self.opts.keep_alive);
        // [MQTT-3.3.2-7] aliases start afresh on every connection, so a message sent again
        // after a reconnect carries its full topic. [MQTT-3.2.2-18] none without the server's
        // Topic Alias Maximum.
        let v5 = self.opts.protocol.is_v5();
        let alias_out = props.topic_alias_maximum.unwrap_or(0);
        self.aliases_out = OutAliases::new(match v5 {
            true => alias_out.min(self.opts.topic_alias_max_out),
            false => 0,
        });
        self.aliases_in = InAliases::new(if v5 { self.opts.topic_alias_max_in } else { 0 });
        self.held.clear();
        self.blocked = None;
        self.held_qos0 = 0;
        self.sub_ids_available = props.subscription_identifier_available != Some(0);
        self.violation = None;
        if !present {
            // [MQTT-3.2.2-5] the server has no session: ours is discarded too. Messages the server
            // already took (PUBREC received) are done; the others are published anew (no DUP).
            self.session.forget_inbound();
            self.resubscribe();
            let released: Vec<u64> = (self.session.out.iter())
                .filter(|(_, m)| m.released)
                .map(|(seq, _)| *seq)
                .collect();
            for seq in released {
                if let Some(mut m) = self.session.complete(seq) {
                    if let Some(tx) = m.done_tx.take() {
                        let _ = tx.send(Ok(()));
                    }
                }
            }
            for m in self.session.out.values_mut() {
                m.dup = false;
            }
            self.check_idle();
        }
        for m in self.session.out.values_mut() {
            m.sent = false;
        }
        // SUBSCRIBE / UNSUBSCRIBE that were not acknowledged go again.
        let mut pids: Vec<u16> = self.pending.keys().copied().collect();
        pids.sort_unstable();
        for pid in pids {
            match &self.pending[&pid] {
                Pending::Sub { packet, .. } => conn.send(&Packet::Subscribe(packet.clone())),
                Pending::Unsub { packet, .. } => conn.send(&Packet::Unsubscribe(packet.clone())),
            }
            .ok();
        }
        self.pump(&mut conn);
        let ka = Duration::from_secs(u64::from(keep_alive));
        let mut ping_sent: Option<Instant> = None;
        // Reading stopped (back-pressure) since the last PINGREQ: a missing PINGRESP is then
        // ours to read, not the server's fault.
        let mut stalled = false;
        loop {
            if self.closed {
                let d = Disconnect::default();
                let _ = conn.send(&Packet::Disconnect(d));
                let _ = conn.flush().await;
                conn.shutdown().await;
                return End::Closed;
            }
            let ping_at = match (keep_alive, ping_sent) {
                (0, _) => Instant::now() + Duration::from_secs(86400),
                (_, Some(t)) => t + ka,
                (_, None) => conn.last_write + ka,
            };
            // Back-pressure: QoS 1/2 messages held are bounded by the server's flow control
            // (and by packet ids: at most 65,535 unacknowledged); QoS 0 ones only by this.
            let reading = self.held_qos0 < self.opts.subscription_capacity
                && self.held.len() < self.opts.subscription_capacity + usize::from(u16::MAX);
            stalled |= !reading;
            tokio::select! {
                r = conn.step(reading) => match r {
                    Ok(None) => {}
                    Ok(Some(p)) => {
                        if matches!(p, Packet::PingResp) {
                            ping_sent = None;
                        }
                        if let Err(e) = self.packet(&mut conn, p) {
                            return self.lost(&mut conn, e).await;
                        }
                    }
                    Err(e) => return self.lost(&mut conn, e).await,
                },
                _ = room(self.blocked.clone()) => {
                    self.blocked = None;
                    self.drain_held(&mut conn);
                }
                cmd = self.cmds.recv() => self.command(cmd, Some(&mut conn)),
                Some(c) = self.committed.recv() => self.on_committed(c, Some(&mut conn)),
                _ = sleep(ping_at.saturating_duration_since(Instant::now())) => {
                    if ping_sent.is_some() && !stalled {
                        return End::Lost(ClientError::Io("no PINGRESP within keep alive".into()));
                    }
                    // Also while not reading: the server still hears from us within keep alive.
                    let _ = conn.send(&Packet::PingReq);
                    ping_sent = Some(Instant::now());
                    stalled = !reading;
                }
            }
        }
    }

    /// The Receive Maximum announced (MQTT 5): at most the subscription capacity, so a
    /// compliant server has no more QoS 1/2 messages unacknowledged than one subscription holds.
    fn receive_maximum(&self) -> u16 {
        let cap = u16::try_from(self.opts.subscription_capacity).unwrap_or(u16::MAX);
        self.opts.receive_maximum.min(cap).max(1)
    }

    /// The connection failed; after a protocol violation the server is told why (MQTT 5).
    async fn lost(&mut self, conn: &mut Conn, e: ClientError) -> End {
        if let Some(reason) = self.violation.take().or(conn.violation.take()) {
            tracing::warn!("closing the connection: {e}");
            conn.close_with(reason).await;
        }
        End::Lost(e)
    }

    fn resubscribe(&mut self) {
        let active = std::mem::take(&mut self.active);
        for a in active {
            let Some(pid) = self.session.alloc_pid() else {
                break;
            };
            self.session.other_pids.insert(pid);
            let packet = self.subscribe_packet(pid, &a.filters, a.id);
            self.pending.insert(
                pid,
                Pending::Sub {
                    packet,
                    sink: a.sink,
                    reply: None,
                },
            );
        }
    }

    fn subscribe_packet(
        &self,
        pid: u16,
        filters: &[(String, SubscriptionOptions)],
        id: Option<u32>,
    ) -> Subscribe {
        let mut properties = Properties::default();
        if let Some(id) = id {
            properties.subscription_identifiers.push(id);
        }
        Subscribe {
            packet_id: pid,
            filters: filters.to_vec(),
            properties,
        }
    }

    pub fn command(&mut self, cmd: Option<Command>, conn: Option<&mut Conn>) {
        let Some(cmd) = cmd else {
            // Every handle dropped: close as if disconnect was called.
            self.closed = true;
            return;
        };
        match cmd {
            Command::Publish {
                message,
                stored,
                done,
            } => self.publish(*message, stored, done, conn),
            Command::Subscribe {
                filters,
                id,
                sink,
                reply,
            } => {
                if id.is_some() && !self.opts.protocol.is_v5() {
                    let why = "subscription identifiers need MQTT 5";
                    let _ = reply.send(Err(ClientError::Invalid(why.into())));
                    return;
                }
                // Not to a server whose CONNACK said it has none (MQTT 5 3.2.2.3.12).
                if id.is_some() && !self.sub_ids_available {
                    let why = "the server has no Subscription Identifiers available";
                    let _ = reply.send(Err(ClientError::Invalid(why.into())));
                    return;
                }
                let Some(pid) = self.session.alloc_pid() else {
                    let _ = reply.send(Err(ClientError::Invalid("no free packet id".into())));
                    return;
                };
                self.session.other_pids.insert(pid);
                let packet = self.subscribe_packet(pid, &filters, id);
                if let Some(c) = conn {
                    let _ = c.send(&Packet::Subscribe(packet.clone()));
                }
                let reply = Some(reply);
                self.pending.insert(
                    pid,
                    Pending::Sub {
                        packet,
                        sink,
                        reply,
                    },
                );
            }
            Command::Unsubscribe { filters, reply } => {
                let Some(pid) = self.session.alloc_pid() else {
                    let _ = reply.send(Err(ClientError::Invalid("no free packet id".into())));
                    return;
                };
                self.session.other_pids.insert(pid);
                for a in &mut self.active {
                    a.filters.retain(|(f, _)| !filters.contains(f));
                }
                self.active.retain(|a| !a.filters.is_empty());
                let packet = Unsubscribe {
                    packet_id: pid,
                    filters,
                    properties: Properties::default(),
                };
                if let Some(c) = conn {
                    let _ = c.send(&Packet::Unsubscribe(packet.clone()));
                    // A held message may have waited for the subscription just left.
                    self.drain_held(c);
                }
                self.pending.insert(pid, Pending::Unsub { packet, reply });
            }
            Command::Idle { reply } => {
                self.idle_waiters.push(reply);
                self.check_idle();
            }
            Command::Disconnect { reply } => {
                self.closed = true;
                self.closing = Some(reply);
            }
        }
    }

    pub fn inbound_durability(&self) -> Durability {
        self.opts.durability
    }
}

/// Completes once `sink` has room (or its subscription is gone); never without a sink.
async fn room(sink: Option<Sink>) {
    match sink {
        Some(s) => {
            let _ = s.reserve().await;
        }
        None => std::future::pending().await,
    }
}

async fn attempt(
    transport: Transport,
    connect: Connect,
) -> Result<(Conn, bool, Properties), ClientError> {
    let mut conn = Conn::open(&transport, connect.protocol).await?;
    conn.send(&Packet::Connect(Box::new(connect)))?;
    conn.flush().await?;
    match conn.read().await? {
        Packet::ConnAck(ack) if ack.reason.is_error() => {
            Err(ClientError::Refused(ClientError::reason(ack.reason)))
        }
        Packet::ConnAck(ack) => Ok((conn, ack.session_present, ack.properties)),
        other => Err(ClientError::Protocol(format!(
            "expected CONNACK, got {}",
            other.name()
        ))),
    }
}
