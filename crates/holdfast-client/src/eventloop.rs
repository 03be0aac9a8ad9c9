//! The background task: connects, reconnects with backoff, and runs one connection at a time.

use std::collections::{HashMap, VecDeque};
use std::time::Duration;

use holdfast_core::persist::StoredMessage;
use holdfast_core::Durability;
use holdfast_proto::{
    Connect, Disconnect, Packet, Properties, PubResp, Publish, QoS, Subscribe,
    SubscriptionOptions, Unsubscribe, Will,
};
use tokio::sync::{mpsc, oneshot};
use tokio::time::{sleep, Instant};

use crate::conn::Conn;
use crate::session::{After, Committed, OutMsg, Session};
use crate::{ClientError, ClientOptions, Message, Outgoing};

pub(crate) enum Command {
    Publish {
        message: Box<Outgoing>,
        stored: oneshot::Sender<Result<(), ClientError>>,
        done: oneshot::Sender<Result<(), ClientError>>,
    },
    Subscribe {
        filters: Vec<(String, QoS)>,
        sink: mpsc::UnboundedSender<Message>,
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
        sink: mpsc::UnboundedSender<Message>,
        reply: Option<oneshot::Sender<Result<Vec<u8>, ClientError>>>,
    },
    Unsub {
        packet: Unsubscribe,
        reply: oneshot::Sender<Result<(), ClientError>>,
    },
}

/// An acknowledged subscription: re-made when the server lost the session.
pub(crate) struct Active {
    pub filters: Vec<(String, QoS)>,
    pub sink: mpsc::UnboundedSender<Message>,
}

pub(crate) struct EventLoop {
    pub opts: ClientOptions,
    pub session: Session,
    pub cmds: mpsc::UnboundedReceiver<Command>,
    pub committed: mpsc::UnboundedReceiver<Committed>,
    pub ready: Option<oneshot::Sender<Result<bool, ClientError>>>,
    /// Publish commands waiting for a free packet id.
    pub backlog: VecDeque<Command>,
    /// QoS 0 messages waiting for a connection.
    pub qos0: VecDeque<(Publish, oneshot::Sender<Result<(), ClientError>>)>,
    pub pending: HashMap<u16, Pending>,
    pub active: Vec<Active>,
    pub closing: Option<oneshot::Sender<()>>,
    pub closed: bool,
    pub idle_waiters: Vec<oneshot::Sender<()>>,
    /// Receive Maximum of the server, capped by `max_inflight`.
    pub inflight_limit: usize,
    first: bool,
}

/// Why a connection ended.
pub(crate) enum End {
    Lost(ClientError),
    Closed,
}

impl EventLoop {
    pub fn new(
        opts: ClientOptions,
        session: Session,
        cmds: mpsc::UnboundedReceiver<Command>,
        committed: mpsc::UnboundedReceiver<Committed>,
        ready: Option<oneshot::Sender<Result<bool, ClientError>>>,
    ) -> EventLoop {
        EventLoop {
            inflight_limit: usize::from(opts.max_inflight),
            opts,
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
        for (_, done) in self.qos0.drain(..) {
            let _ = done.send(Err(ClientError::Closed));
        }
        self.session.close();
        if let Some(r) = self.closing.take() {
            let _ = r.send(());
        }
    }

    async fn connect(&mut self) -> Result<(Conn, bool, Properties), ClientError> {
        let o = &self.opts;
        let mut props = Properties::default();
        if o.protocol.is_v5() {
            if o.session_expiry > 0 {
                props.session_expiry_interval = Some(o.session_expiry);
            }
            if o.receive_maximum != 65535 {
                props.receive_maximum = Some(o.receive_maximum.max(1));
            }
        }
        let connect = Connect {
            protocol: o.protocol,
            clean_start: self.first && o.clean_start,
            keep_alive: o.keep_alive,
            client_id: o.client_id.clone(),
            will: o.will.as_ref().map(|w| Will {
                topic: w.topic.clone(),
                payload: w.payload.clone(),
                qos: w.qos,
                retain: w.retain,
                properties: Properties::default(),
            }),
            username: o.username.clone(),
            password: o.password.clone(),
            properties: props,
        };
        let timeout = o.connect_timeout;
        let attempt = async {
            let mut conn = Conn::open(&o.host, o.port, o.protocol).await?;
            conn.send(&Packet::Connect(connect))?;
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
        };
        let r = tokio::time::timeout(timeout, attempt)
            .await
            .unwrap_or_else(|_| Err(ClientError::Io("connect timed out".into())));
        if r.is_ok() {
            self.first = false;
        }
        r
    }

    /// Runs one connection until it is lost or the client closes.
    async fn serve(&mut self, mut conn: Conn, present: bool, props: Properties) -> End {
        let server_rm = usize::from(props.receive_maximum.unwrap_or(65535));
        self.inflight_limit = server_rm.min(usize::from(self.opts.max_inflight)).max(1);
        let keep_alive = props.server_keep_alive.unwrap_or(self.opts.keep_alive);
        if !present {
            self.session.forget_inbound();
            self.resubscribe();
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
        loop {
            if let Err(e) = conn.flush().await {
                return End::Lost(e);
            }
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
            tokio::select! {
                r = conn.read() => match r {
                    Ok(p) => {
                        if matches!(p, Packet::PingResp) {
                            ping_sent = None;
                        }
                        if let Err(e) = self.packet(&mut conn, p) {
                            return End::Lost(e);
                        }
                    }
                    Err(e) => return End::Lost(e),
                },
                cmd = self.cmds.recv() => self.command(cmd, Some(&mut conn)),
                Some(c) = self.committed.recv() => self.on_committed(c, Some(&mut conn)),
                _ = sleep(ping_at.saturating_duration_since(Instant::now())) => {
                    if ping_sent.is_some() {
                        return End::Lost(ClientError::Io("no PINGRESP within keep alive".into()));
                    }
                    let _ = conn.send(&Packet::PingReq);
                    ping_sent = Some(Instant::now());
                }
            }
        }
    }

    fn resubscribe(&mut self) {
        let active = std::mem::take(&mut self.active);
        for a in active {
            let Some(pid) = self.session.alloc_pid() else {
                break;
            };
            self.session.other_pids.insert(pid);
            let packet = self.subscribe_packet(pid, &a.filters);
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

    fn subscribe_packet(&self, pid: u16, filters: &[(String, QoS)]) -> Subscribe {
        Subscribe {
            packet_id: pid,
            filters: filters
                .iter()
                .map(|(f, q)| {
                    let o = SubscriptionOptions {
                        qos: *q,
                        ..SubscriptionOptions::default()
                    };
                    (f.clone(), o)
                })
                .collect(),
            properties: Properties::default(),
        }
    }

    /// Sends what may go now: QoS 0 messages, then stored QoS 1/2 messages in order within the
    /// inflight window.
    pub fn pump(&mut self, conn: &mut Conn) {
        while let Some((p, done)) = self.qos0.pop_front() {
            let r = conn.send(&Packet::Publish(p));
            let _ = done.send(r);
        }
        let mut inflight = self.session.out.values().filter(|m| m.sent).count();
        for m in self.session.out.values_mut() {
            if m.sent {
                continue;
            }
            if !m.stored || inflight >= self.inflight_limit {
                break;
            }
            let packet = if m.released {
                Packet::PubRel(PubResp::new(m.packet_id))
            } else {
                Packet::Publish(publish_of(m))
            };
            if let Err(e) = conn.send(&packet) {
                tracing::warn!("cannot send PUBLISH: {e}");
                break;
            }
            m.sent = true;
            m.dup = true;
            inflight += 1;
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
                sink,
                reply,
            } => {
                let Some(pid) = self.session.alloc_pid() else {
                    let _ = reply.send(Err(ClientError::Invalid("no free packet id".into())));
                    return;
                };
                self.session.other_pids.insert(pid);
                let packet = self.subscribe_packet(pid, &filters);
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

    fn publish(
        &mut self,
        m: Outgoing,
        stored: oneshot::Sender<Result<(), ClientError>>,
        done: oneshot::Sender<Result<(), ClientError>>,
        conn: Option<&mut Conn>,
    ) {
        if m.qos == QoS::AtMostOnce {
            let p = Publish {
                dup: false,
                qos: QoS::AtMostOnce,
                retain: m.retain,
                topic: m.topic,
                packet_id: None,
                payload: m.payload,
                properties: m.properties,
            };
            let _ = stored.send(Ok(()));
            self.qos0.push_back((p, done));
            if let Some(c) = conn {
                self.pump(c);
            }
            return;
        }
        let Some(packet_id) = self.session.alloc_pid() else {
            self.backlog.push_back(Command::Publish {
                message: Box::new(m),
                stored,
                done,
            });
            return;
        };
        let durability = m.durability.unwrap_or(self.opts.durability);
        let msg = OutMsg {
            message: StoredMessage {
                topic: m.topic,
                payload: m.payload,
                qos: m.qos.as_u8(),
                retain: m.retain,
                properties: m.properties,
                expires_at: None,
                publisher: None,
            },
            packet_id,
            durability,
            stored: false,
            released: false,
            sent: false,
            dup: false,
            stored_tx: Some(stored),
            done_tx: Some(done),
        };
        if let Some(now) = self.session.enqueue(msg) {
            self.after(now, conn);
        }
    }

    pub fn on_committed(&mut self, (after, r): Committed, conn: Option<&mut Conn>) {
        match r {
            Ok(()) => self.after(after, conn),
            Err(e) => {
                tracing::warn!("client store commit failed: {e}");
                if let After::Stored(seq) = after {
                    if let Some(mut m) = self.session.complete(seq) {
                        if let Some(tx) = m.stored_tx.take() {
                            let _ = tx.send(Err(e.into()));
                        }
                    }
                }
                self.check_idle();
            }
        }
    }

    /// Performs what waited for a commit (or needed none).
    pub fn after(&mut self, after: After, conn: Option<&mut Conn>) {
        match after {
            After::Stored(seq) => {
                if let Some(m) = self.session.out.get_mut(&seq) {
                    m.stored = true;
                    if let Some(tx) = m.stored_tx.take() {
                        let _ = tx.send(Ok(()));
                    }
                }
                if let Some(c) = conn {
                    self.pump(c);
                }
            }
            After::Released(seq) => {
                if let Some(m) = self.session.out.get_mut(&seq) {
                    m.released = true;
                    if let (Some(c), true) = (conn, m.sent) {
                        let _ = c.send(&Packet::PubRel(PubResp::new(m.packet_id)));
                    }
                }
            }
            After::PubRec(pid) => {
                if let Some(c) = conn {
                    let _ = c.send(&Packet::PubRec(PubResp::new(pid)));
                }
            }
            After::PubComp(pid) => {
                if let Some(c) = conn {
                    let _ = c.send(&Packet::PubComp(PubResp::new(pid)));
                }
            }
            After::Nothing => {}
        }
    }

    /// Frees packet ids: publishes waiting for one go now.
    pub fn drain_backlog(&mut self, conn: &mut Conn) {
        while !self.backlog.is_empty() && self.session.by_pid.len() < 65535 {
            if let Some(cmd) = self.backlog.pop_front() {
                self.command(Some(cmd), Some(conn));
            }
        }
    }

    /// Wakes [`Command::Idle`] waiters once the session holds no message.
    pub fn check_idle(&mut self) {
        if self.session.out.is_empty() && self.backlog.is_empty() && self.qos0.is_empty() {
            for w in self.idle_waiters.drain(..) {
                let _ = w.send(());
            }
        }
    }

    pub fn inbound_durability(&self) -> Durability {
        self.opts.durability
    }
}

pub(crate) fn publish_of(m: &OutMsg) -> Publish {
    Publish {
        dup: m.dup,
        qos: QoS::from_u8(m.message.qos).unwrap_or(QoS::AtLeastOnce),
        retain: m.message.retain,
        topic: m.message.topic.clone(),
        packet_id: Some(m.packet_id),
        payload: m.message.payload.clone(),
        properties: m.message.properties.clone(),
    }
}
