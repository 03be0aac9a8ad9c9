//! One network connection: read CONNECT, attach the session, then move packets both ways until either
//! side closes. Reads and writes share one task so a slow reader is also a slow writer (backpressure),
//! and writes are batched: everything queued for the socket goes out in one write.

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use holdfast_core::connect::{connack_refused, validate_connect};
use holdfast_proto::{
    decode_packet, encode_packet, Connect, DecodeError, Disconnect, Packet, ProtocolVersion,
    ReasonCode,
};
use holdfast_store::StoreError;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::mpsc::UnboundedReceiver;
use tokio::time::{sleep_until, timeout, Instant};
use tracing::{debug, info, info_span, warn, Instrument};

use crate::auth::{ConnContext, PublishRate};
use crate::broker::{now_millis, Broker, ConnHandle, Outbound, Slot, PACE_MAX_WAIT};

/// Stop batching writes past this many bytes.
const WRITE_BATCH: usize = 64 * 1024;

/// Counts the connection for its lifetime.
struct Counted(Arc<Broker>);
impl Drop for Counted {
    fn drop(&mut self) {
        self.0.connections.fetch_sub(1, Ordering::Relaxed);
    }
}

pub async fn serve_connection<S>(broker: Arc<Broker>, stream: S, peer: SocketAddr, ctx: ConnContext)
where
    S: AsyncRead + AsyncWrite + Unpin + Send,
{
    broker.connections.fetch_add(1, Ordering::Relaxed);
    let _counted = Counted(broker.clone());
    let span = info_span!("conn", %peer, client_id = tracing::field::Empty);
    run(broker, stream, peer, ctx).instrument(span).await
}

/// Everything a settled connection needs for its life.
struct Established<S> {
    conn: Connection<S>,
    slot: Arc<Slot>,
    generation: u64,
    rx: UnboundedReceiver<Outbound>,
    pending: Arc<std::sync::atomic::AtomicUsize>,
    closing: Arc<std::sync::atomic::AtomicBool>,
    keep_alive: Option<Duration>,
    /// Holds the connection's place in its address's count.
    _ctx: ConnContext,
}

async fn run<S>(broker: Arc<Broker>, stream: S, peer: SocketAddr, ctx: ConnContext)
where
    S: AsyncRead + AsyncWrite + Unpin + Send,
{
    // The CONNECT exchange runs in its own (boxed) future: what it needs is then freed once the
    // connection settles, instead of staying part of every idle connection's task.
    let Some(mut e) = Box::pin(establish(&broker, stream, peer, ctx)).await else {
        return;
    };
    let end = e
        .conn
        .pump(&broker, &e.slot, e.rx, &e.pending, &e.closing, e.keep_alive)
        .await;
    debug!(?end, "disconnected");
    broker.close_session(&e.slot, e.generation, now_millis());
    let _ = e.conn.stream.shutdown().await;
    if !matches!(end, End::ClosedByPeer | End::Io) {
        Box::pin(linger(&mut e.conn.stream)).await;
    }
}

async fn establish<S>(
    broker: &Arc<Broker>,
    mut stream: S,
    peer: SocketAddr,
    ctx: ConnContext,
) -> Option<Established<S>>
where
    S: AsyncRead + AsyncWrite + Unpin + Send,
{
    let max_packet = broker.cfg.max_packet_size as usize;
    // Small at first: most connections are idle most of the time; reads grow it as needed.
    let mut rbuf = BytesMut::with_capacity(512);
    let connect_timeout = ctx.security.limits().connect_timeout;
    let connect = match timeout(
        connect_timeout,
        // Boxed, like the other steps before the connection settles: their futures would otherwise
        // be part of the task for its whole life (see also the listener).
        Box::pin(read_connect(&mut stream, &mut rbuf, max_packet)),
    )
    .await
    {
        Ok(Ok(c)) => c,
        Ok(Err(ConnectFailure::Decode(DecodeError::UnsupportedProtocol(why)))) => {
            // [MQTT-3.1.2-2] answer an unsupported protocol level with return code 0x01, then close.
            debug!(why, "unsupported protocol");
            let _ = stream.write_all(&[0x20, 0x02, 0x00, 0x01]).await;
            return None;
        }
        Ok(Err(e)) => {
            debug!(error = %e, "closing before CONNECT completed");
            return None;
        }
        Err(_) => {
            debug!("no CONNECT within {connect_timeout:?}");
            return None;
        }
    };
    let version = connect.protocol;
    let refuse = |reason: ReasonCode| Packet::ConnAck(connack_refused(reason));
    if broker.max_connections > 0
        && broker.connections.load(Ordering::Relaxed) > broker.max_connections
    {
        broker
            .stats
            .connections_refused
            .fetch_add(1, Ordering::Relaxed);
        let reason = if version.is_v5() {
            ReasonCode::QUOTA_EXCEEDED
        } else {
            ReasonCode::SERVER_UNAVAILABLE
        };
        Box::pin(write_packets(&mut stream, version, [refuse(reason)])).await;
        return None;
    }
    let credentials = (connect.username.clone(), connect.password.clone());
    let checked = validate_connect(connect, &broker.cfg, || broker.new_client_id());
    let checked = match (checked, ctx.ip_refusal) {
        (Ok(_), Some(reason)) if version.is_v5() => Err(reason),
        (Ok(_), Some(_)) => Err(ReasonCode::SERVER_UNAVAILABLE),
        (Ok(mut p), None) => Box::pin(crate::auth::check_connect(
            &ctx,
            broker,
            peer.ip(),
            credentials,
            &mut p,
        ))
        .await
        .map(|()| p),
        (Err(reason), _) => Err(reason),
    };
    let params = match checked {
        Ok(p) => p,
        Err(reason) => {
            broker
                .stats
                .connections_refused
                .fetch_add(1, Ordering::Relaxed);
            info!(%reason, "connection refused");
            Box::pin(write_packets(&mut stream, version, [refuse(reason)])).await;
            return None;
        }
    };
    tracing::Span::current().record("client_id", &*params.client_id);
    let keep_alive = match params.keep_alive {
        0 => None,
        // [MQTT-3.1.2-22] one and a half times the keep alive without a packet closes the connection.
        secs => Some(Duration::from_millis(u64::from(secs) * 1500)),
    };
    debug!(protocol = %version, clean_start = params.clean_start, keep_alive = params.keep_alive, "connected");
    let (handle, rx, pending) = ConnHandle::new();
    let closing = handle.closing();
    let (slot, generation) = broker.open_session(params, handle, now_millis());
    let conn = Connection {
        stream,
        rbuf,
        wbuf: BytesMut::new(),
        version,
        max_packet,
        gate_failed: None,
        after_wait: false,
        close_after_write: false,
        publish_rate: PublishRate::new(ctx.security.limits().max_publish_rate),
    };
    Some(Established {
        conn,
        slot,
        generation,
        rx,
        pending,
        closing,
        keep_alive,
        _ctx: ctx,
    })
}

/// After the server closed its side, read and discard what the client still sends, briefly: closing
/// a socket with unread input makes the kernel answer with a reset, which can destroy the DISCONNECT
/// and its reason code before the client reads them.
async fn linger<S: AsyncRead + Unpin>(stream: &mut S) {
    let mut sink = [0u8; 4096];
    let mut left: usize = 256 * 1024;
    let _ = timeout(Duration::from_secs(1), async {
        while left > 0 {
            match stream.read(&mut sink).await {
                Ok(0) | Err(_) => break,
                Ok(n) => left = left.saturating_sub(n),
            }
        }
    })
    .await;
}

#[derive(Debug)]
enum End {
    ClosedByPeer,
    ClosedByServer,
    Io,
    KeepAlive,
    Malformed,
}

struct Connection<S> {
    stream: S,
    rbuf: BytesMut,
    wbuf: BytesMut,
    version: ProtocolVersion,
    max_packet: usize,
    /// The last store commit waited for failed with this reason.
    gate_failed: Option<ReasonCode>,
    /// The last item handled was a wait: a further wait adds to the same gate.
    after_wait: bool,
    close_after_write: bool,
    /// `[limits] max_publish_rate`.
    publish_rate: Option<PublishRate>,
}

impl<S: AsyncRead + AsyncWrite + Unpin + Send> Connection<S> {
    async fn pump(
        &mut self,
        broker: &Broker,
        slot: &Arc<Slot>,
        mut rx: UnboundedReceiver<Outbound>,
        pending: &std::sync::atomic::AtomicUsize,
        closing: &std::sync::atomic::AtomicBool,
        keep_alive: Option<Duration>,
    ) -> End {
        let far = Duration::from_secs(86_400 * 365);
        let mut deadline = Instant::now() + keep_alive.unwrap_or(far);
        // Set while a session this client publishes to has too long a backlog (see `Pace`): nothing
        // more is read from the socket until it falls or the wait times out.
        let mut paused: Option<(Arc<Slot>, Instant)> = None;
        loop {
            // Registered before `congested` looks, so a release in between is not missed.
            let target = paused.as_ref().map(|(t, _)| t.clone());
            let drained = target.as_deref().map(Broker::drained);
            if let Some(target) = &target {
                if !broker.congested(target) {
                    paused = None;
                    let resumed = self.read_on(
                        broker,
                        slot,
                        closing,
                        &mut paused,
                        keep_alive,
                        &mut deadline,
                    );
                    if let Err(end) = resumed.await {
                        return end;
                    }
                    continue;
                }
            }
            let pause_until = paused.as_ref().map_or(deadline, |(_, until)| *until);
            tokio::select! {
                biased;
                out = rx.recv() => {
                    let Some(mut out) = out else { return End::ClosedByServer };
                    loop {
                        pending.fetch_sub(1, Ordering::Relaxed);
                        match out {
                            Outbound::Wait(ticket) => {
                                if ticket.is_pending()
                                    && !self.wbuf.is_empty()
                                    && self.flush_wbuf(broker).await.is_err()
                                {
                                    return End::Io;
                                }
                                let failed = ticket.wait().await.err().map(|e| match e {
                                    StoreError::QuotaExceeded { .. } => ReasonCode::QUOTA_EXCEEDED,
                                    _ => ReasonCode::UNSPECIFIED_ERROR,
                                });
                                // Consecutive waits guard the same packets: any failure counts.
                                let before = self.gate_failed;
                                self.gate_failed = if self.after_wait { self.gate_failed.or(failed) } else { failed };
                                self.after_wait = true;
                                match (before, self.gate_failed) {
                                    (None, Some(reason)) => warn!(%reason, "store commits failing: withholding acknowledgements"),
                                    (Some(_), None) => info!("store commits succeed again"),
                                    _ => {}
                                }
                            }
                            Outbound::Packet(p) => {
                                self.after_wait = false;
                                if let Some(p) = self.gated(p) {
                                    self.encode(&p);
                                }
                            }
                            Outbound::Close(reason) => {
                                self.close_with(reason).await;
                                return End::ClosedByServer;
                            }
                        }
                        if self.wbuf.len() >= WRITE_BATCH {
                            break;
                        }
                        match rx.try_recv() {
                            Ok(next) => out = next,
                            Err(_) => break,
                        }
                    }
                    if self.flush_wbuf(broker).await.is_err() {
                        return End::Io;
                    }
                    broker.written(slot);
                    if self.close_after_write {
                        self.close_with(None).await;
                        return End::ClosedByServer;
                    }
                }
                read = self.stream.read_buf(&mut self.rbuf), if paused.is_none() => {
                    match read {
                        Ok(0) => return End::ClosedByPeer,
                        Err(_) => return End::Io,
                        Ok(n) => {
                            broker.stats.bytes_received.fetch_add(n as u64, Ordering::Relaxed);
                        }
                    }
                    let resumed = self.read_on(broker, slot, closing, &mut paused, keep_alive, &mut deadline);
                    if let Err(end) = resumed.await {
                        return end;
                    }
                }
                _ = async { drained.expect("paused").await }, if drained.is_some() => {
                    // The backlog fell to the low mark since this publisher began to wait. Every
                    // publisher woken goes on (at least to its next message) even if others filled
                    // the backlog again first: the first to run must not starve the rest.
                    paused = None;
                    let resumed = self.read_on(broker, slot, closing, &mut paused, keep_alive, &mut deadline);
                    if let Err(end) = resumed.await {
                        return end;
                    }
                }
                _ = sleep_until(pause_until), if paused.is_some() => {
                    if let Some((target, _)) = paused.take() {
                        debug!("a subscriber made no progress for {PACE_MAX_WAIT:?}: no longer pacing for it");
                        broker.stalled(&target);
                    }
                    let resumed = self.read_on(broker, slot, closing, &mut paused, keep_alive, &mut deadline);
                    if let Err(end) = resumed.await {
                        return end;
                    }
                }
                // Not while paused: the client is active, the server is just not reading it.
                _ = sleep_until(deadline), if keep_alive.is_some() && paused.is_none() => {
                    self.close_with(Some(ReasonCode::KEEP_ALIVE_TIMEOUT)).await;
                    return End::KeepAlive;
                }
            }
        }
    }

    async fn flush_wbuf(&mut self, broker: &Broker) -> std::io::Result<()> {
        broker
            .stats
            .bytes_sent
            .fetch_add(self.wbuf.len() as u64, Ordering::Relaxed);
        self.stream.write_all(&self.wbuf).await?;
        self.stream.flush().await?;
        self.wbuf.clear();
        Ok(())
    }

    /// The client was heard from (or waited for by the server, not by itself): restart its keep-alive
    /// timer and handle what it sent.
    async fn read_on(
        &mut self,
        broker: &Broker,
        slot: &Arc<Slot>,
        closing: &std::sync::atomic::AtomicBool,
        paused: &mut Option<(Arc<Slot>, Instant)>,
        keep_alive: Option<Duration>,
        deadline: &mut Instant,
    ) -> Result<(), End> {
        if let Some(ka) = keep_alive {
            *deadline = Instant::now() + ka;
        }
        self.handle_buffered(broker, slot, closing, paused).await
    }

    /// Handle the complete packets in the read buffer, in order. Stops early once the server is
    /// closing the connection, or when a message went to a congested session: `paused` is then set
    /// and the rest waits.
    async fn handle_buffered(
        &mut self,
        broker: &Broker,
        slot: &Arc<Slot>,
        closing: &std::sync::atomic::AtomicBool,
        paused: &mut Option<(Arc<Slot>, Instant)>,
    ) -> Result<(), End> {
        // One clock reading for what arrived together: the clock is a measurable share of the work
        // per packet, and millisecond precision is all the session needs.
        let now = now_millis();
        loop {
            match decode_packet(&mut self.rbuf, self.version, self.max_packet) {
                Ok(Some(packet)) => {
                    if matches!(packet, Packet::Publish(_))
                        && self.publish_rate.as_mut().is_some_and(|r| !r.take())
                    {
                        broker
                            .stats
                            .publish_rate_exceeded
                            .fetch_add(1, Ordering::Relaxed);
                        self.close_with(Some(ReasonCode::MESSAGE_RATE_TOO_HIGH))
                            .await;
                        return Err(End::Malformed);
                    }
                    let congested = broker.handle_packet(slot, packet, now);
                    // Stop reading at once after a protocol violation or DISCONNECT.
                    if closing.load(Ordering::Relaxed) {
                        return Ok(());
                    }
                    if let Some(target) = congested {
                        *paused = Some((target, Instant::now() + PACE_MAX_WAIT));
                        return Ok(());
                    }
                }
                Ok(None) => return Ok(()),
                Err(e) => {
                    debug!(error = %e, "bad packet");
                    self.close_with(Some(e.reason_code())).await;
                    return Err(End::Malformed);
                }
            }
        }
    }

    fn encode(&mut self, p: &Packet) {
        if let Err(e) = encode_packet(p, self.version, &mut self.wbuf) {
            warn!(error = %e, packet = p.name(), "cannot encode");
        }
    }

    /// What may be sent after a failed store commit: no acknowledgement of anything that was not
    /// stored (DESIGN.md, "Failures"). v5 acks carry the error, 3.1.1 acks are withheld, forwards of the
    /// unstored message wait for the client's next connection, and a CONNACK refuses the session.
    fn gated(&mut self, mut p: Box<Packet>) -> Option<Box<Packet>> {
        let Some(reason) = self.gate_failed else {
            return Some(p);
        };
        let v5 = self.version.is_v5();
        match &mut *p {
            Packet::PubAck(r) | Packet::PubRec(r) if v5 => r.reason = reason,
            Packet::PubAck(_) | Packet::PubRec(_) | Packet::Publish(_) => return None,
            Packet::SubAck(a) => a
                .reasons
                .iter_mut()
                .for_each(|r| *r = ReasonCode::UNSPECIFIED_ERROR),
            Packet::ConnAck(a) => {
                a.session_present = false;
                a.reason = ReasonCode::SERVER_UNAVAILABLE;
                self.close_after_write = true;
            }
            _ => {}
        }
        Some(p)
    }

    /// Close from the server side; MQTT 5 clients are told why first [MQTT-4.13.1-1].
    async fn close_with(&mut self, reason: Option<ReasonCode>) {
        if let Some(reason) = reason.filter(|_| self.version.is_v5()) {
            let d = Packet::Disconnect(Disconnect {
                reason,
                properties: Default::default(),
            });
            self.encode(&d);
        }
        let _ = self.stream.write_all(&self.wbuf).await;
        let _ = self.stream.flush().await;
        self.wbuf.clear();
    }
}

#[derive(Debug, thiserror::Error)]
enum ConnectFailure {
    #[error("{0}")]
    Decode(DecodeError),
    #[error("first packet was {0}, not CONNECT")]
    NotConnect(&'static str),
    #[error("connection closed")]
    Closed,
}

/// The first packet must be CONNECT [MQTT-3.1.0-1].
async fn read_connect<S: AsyncRead + Unpin>(
    stream: &mut S,
    rbuf: &mut BytesMut,
    max: usize,
) -> Result<Connect, ConnectFailure> {
    loop {
        match decode_packet(rbuf, ProtocolVersion::V3_1_1, max) {
            Ok(Some(Packet::Connect(c))) => return Ok(*c),
            Ok(Some(other)) => return Err(ConnectFailure::NotConnect(other.name())),
            Ok(None) => {}
            Err(e) => return Err(ConnectFailure::Decode(e)),
        }
        match stream.read_buf(rbuf).await {
            Ok(0) | Err(_) => return Err(ConnectFailure::Closed),
            Ok(_) => {}
        }
    }
}

async fn write_packets<S: AsyncWrite + Unpin>(
    stream: &mut S,
    version: ProtocolVersion,
    packets: impl IntoIterator<Item = Packet>,
) {
    let mut buf = BytesMut::new();
    for p in packets {
        let _ = encode_packet(&p, version, &mut buf);
    }
    let _ = stream.write_all(&buf).await;
    let _ = stream.flush().await;
}
