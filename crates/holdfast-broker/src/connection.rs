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
use tokio::time::{sleep_until, timeout, Instant};
use tracing::{debug, info, info_span, warn, Instrument};

use crate::auth::{ConnContext, PublishRate};
use crate::broker::{now_millis, Broker, DeferWakes, Outbound, Outbox, Slot, PACE_MAX_WAIT};

/// Stop batching writes past this many bytes.
const WRITE_BATCH: usize = 64 * 1024;

/// Bounds of the read size. An idle connection reads into a small buffer; one whose reads fill the
/// buffer gets a larger one, so a busy publisher's messages are read, routed and acknowledged many
/// at a time (and its subscribers get them in fewer, larger writes).
const MIN_READ: usize = 512;
const MAX_READ: usize = 32 * 1024;

/// Connections woken by handling a read are woken after at most this many of its packets.
const WAKE_EVERY: usize = 64;

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
    outbox: Arc<Outbox>,
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
    let end = e.conn.pump(&broker, &e.slot, &e.outbox, e.keep_alive).await;
    e.outbox.close();
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
    let outbox = Outbox::new();
    let (slot, generation) = broker.open_session(params, outbox.clone(), now_millis());
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
        read_size: MIN_READ,
        routes: Vec::new(),
        batch: Vec::new(),
    };
    Some(Established {
        conn,
        slot,
        generation,
        outbox,
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
    /// Room to make for the next read, between [`MIN_READ`] and [`MAX_READ`].
    read_size: usize,
    /// Messages acknowledged and not routed yet (see [`Broker::handle_packet_ack_first`]).
    routes: Vec<Arc<holdfast_core::Message>>,
    /// What was taken from the outbox, emptied after each write; kept for its capacity.
    batch: Vec<Outbound>,
}

impl<S: AsyncRead + AsyncWrite + Unpin + Send> Connection<S> {
    async fn pump(
        &mut self,
        broker: &Broker,
        slot: &Arc<Slot>,
        outbox: &Outbox,
        keep_alive: Option<Duration>,
    ) -> End {
        let far = Duration::from_secs(86_400 * 365);
        let mut deadline = Instant::now() + keep_alive.unwrap_or(far);
        // Set while a session this client publishes to has too long a backlog (see `Pace`): nothing
        // more is read from the socket until it falls or the wait times out.
        let mut paused: Option<(Arc<Slot>, Instant)> = None;
        loop {
            let spare = self.reserve_read();
            // Registered before `congested` looks, so a release in between is not missed.
            let target = paused.as_ref().map(|(t, _)| t.clone());
            let drained = target.as_deref().map(Broker::drained);
            if let Some(target) = &target {
                if !broker.congested(target) {
                    paused = None;
                    let resumed =
                        self.read_on(broker, slot, outbox, &mut paused, keep_alive, &mut deadline);
                    if let Err(end) = resumed.await {
                        return end;
                    }
                    continue;
                }
            }
            let pause_until = paused.as_ref().map_or(deadline, |(_, until)| *until);
            tokio::select! {
                biased;
                () = outbox.ready() => {
                    if let Err(end) = self.write_outbox(broker, slot, outbox).await {
                        return end;
                    }
                }
                read = self.stream.read_buf(&mut self.rbuf), if paused.is_none() => {
                    match read {
                        Ok(0) => return End::ClosedByPeer,
                        Err(_) => return End::Io,
                        Ok(n) => {
                            broker.stats.bytes_received.fetch_add(n as u64, Ordering::Relaxed);
                            self.read_size = next_read_size(self.read_size, n, spare);
                        }
                    }
                    let resumed = self.read_on(broker, slot, outbox, &mut paused, keep_alive, &mut deadline);
                    if let Err(end) = resumed.await {
                        return end;
                    }
                }
                _ = async { drained.expect("paused").await }, if drained.is_some() => {
                    // The backlog fell to the low mark since this publisher began to wait. Every
                    // publisher woken goes on (at least to its next message) even if others filled
                    // the backlog again first: the first to run must not starve the rest.
                    paused = None;
                    let resumed = self.read_on(broker, slot, outbox, &mut paused, keep_alive, &mut deadline);
                    if let Err(end) = resumed.await {
                        return end;
                    }
                }
                _ = sleep_until(pause_until), if paused.is_some() => {
                    if let Some((target, _)) = paused.take() {
                        debug!("a subscriber made no progress for {PACE_MAX_WAIT:?}: no longer pacing for it");
                        broker.stalled(&target);
                    }
                    let resumed = self.read_on(broker, slot, outbox, &mut paused, keep_alive, &mut deadline);
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

    /// Make room for the next read; returns how much there is. A large buffer is given back once
    /// it is empty and reads have become small.
    fn reserve_read(&mut self) -> usize {
        if self.rbuf.is_empty() && self.rbuf.capacity() > 4 * self.read_size {
            self.rbuf = BytesMut::new();
        }
        if self.rbuf.capacity() - self.rbuf.len() < self.read_size / 2 {
            self.rbuf.reserve(self.read_size);
        }
        self.rbuf.capacity() - self.rbuf.len()
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
    /// timer and handle the complete packets in the read buffer, in order. Stops early once the
    /// server is closing the connection, or when a message went to a congested session: `paused` is
    /// then set and the rest waits.
    async fn read_on(
        &mut self,
        broker: &Broker,
        slot: &Arc<Slot>,
        outbox: &Outbox,
        paused: &mut Option<(Arc<Slot>, Instant)>,
        keep_alive: Option<Duration>,
        deadline: &mut Instant,
    ) -> Result<(), End> {
        if let Some(ka) = keep_alive {
            *deadline = Instant::now() + ka;
        }
        let handled = self.handle_packets(broker, slot, outbox, paused);
        if !self.routes.is_empty() {
            // Acknowledged, not routed yet: the acknowledgements go out first, so the publisher
            // sends its next messages while these are delivered. Routed in any case.
            let written = if handled.is_ok() {
                self.write_outbox(broker, slot, outbox).await
            } else {
                Ok(())
            };
            let congested = {
                let _defer = DeferWakes::begin();
                broker.route_all(slot, &mut self.routes, now_millis())
            };
            if let Some(target) = congested.filter(|_| paused.is_none()) {
                *paused = Some((target, Instant::now() + PACE_MAX_WAIT));
            }
            written?;
        }
        match handled {
            Ok(()) => Ok(()),
            Err(reason) => {
                self.close_with(Some(reason)).await;
                Err(End::Malformed)
            }
        }
    }

    /// [`Connection::read_on`]'s handling, up to the point where the connection must be closed with the
    /// reason returned. The connections this wakes (subscribers, and this one for its
    /// acknowledgements) are woken once at the end: each then writes what this read caused at once.
    fn handle_packets(
        &mut self,
        broker: &Broker,
        slot: &Arc<Slot>,
        outbox: &Outbox,
        paused: &mut Option<(Arc<Slot>, Instant)>,
    ) -> Result<(), ReasonCode> {
        let mut defer = DeferWakes::begin();
        // One clock reading for what arrived together: the clock is a measurable share of the work
        // per packet, and millisecond precision is all the session needs.
        let now = now_millis();
        // 3.1/3.1.1 acknowledgements carry no outcome of routing (MQTT 5's do: 0x10, 0x97).
        let ack_first = !self.version.is_v5();
        let mut handled = 0;
        loop {
            handled += 1;
            if handled % WAKE_EVERY == 0 {
                // A large read is handled in parts: receivers wait for one part, not all of it.
                drop(defer);
                defer = DeferWakes::begin();
            }
            match decode_packet(&mut self.rbuf, self.version, self.max_packet) {
                Ok(Some(packet)) => {
                    if matches!(packet, Packet::Publish(_))
                        && self.publish_rate.as_mut().is_some_and(|r| !r.take())
                    {
                        broker
                            .stats
                            .publish_rate_exceeded
                            .fetch_add(1, Ordering::Relaxed);
                        return Err(ReasonCode::MESSAGE_RATE_TOO_HIGH);
                    }
                    let congested = if ack_first && matches!(packet, Packet::Publish(_)) {
                        broker.handle_packet_ack_first(slot, packet, now, &mut self.routes)
                    } else {
                        // What was acknowledged before routing is routed first: a SUBSCRIBE (or
                        // anything else) after a PUBLISH sees the message as already routed.
                        let earlier = broker.route_all(slot, &mut self.routes, now);
                        broker.handle_packet(slot, packet, now).or(earlier)
                    };
                    // Stop reading at once after a protocol violation or DISCONNECT.
                    if outbox.is_closing() {
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
                    return Err(e.reason_code());
                }
            }
        }
    }

    /// Take everything queued in the outbox and write it ([`Connection::write_batch`]).
    async fn write_outbox(
        &mut self,
        broker: &Broker,
        slot: &Arc<Slot>,
        outbox: &Outbox,
    ) -> Result<(), End> {
        let mut batch = std::mem::take(&mut self.batch);
        outbox.take(&mut batch);
        let written = self.write_batch(broker, slot, outbox, &mut batch).await;
        // Room for a few entries is not worth keeping: most connections are idle most of the time.
        if batch.capacity() > 16 {
            batch.clear(); // left over only when the write failed
            self.batch = batch;
        }
        written
    }

    /// Encode and write what was taken from the outbox, in order, in as few writes as it allows
    /// (a store commit to wait for, or [`WRITE_BATCH`] bytes, ends a write).
    async fn write_batch(
        &mut self,
        broker: &Broker,
        slot: &Arc<Slot>,
        outbox: &Outbox,
        batch: &mut Vec<Outbound>,
    ) -> Result<(), End> {
        // PUBLISH packets by QoS, added to the shared counters once per batch: they are updated by
        // every connection, and an atomic add per message would bounce their cache line between cores.
        let mut sent = [0u64; 3];
        let result = self.write_entries(broker, outbox, batch, &mut sent).await;
        for (qos, n) in sent.into_iter().enumerate().filter(|(_, n)| *n > 0) {
            broker.stats.sent_by_qos[qos].fetch_add(n, Ordering::Relaxed);
            broker.stats.messages_sent.fetch_add(n, Ordering::Relaxed);
        }
        result?;
        if !self.wbuf.is_empty() && self.flush_wbuf(broker).await.is_err() {
            return Err(End::Io);
        }
        broker.written(slot);
        if self.close_after_write {
            self.close_with(None).await;
            return Err(End::ClosedByServer);
        }
        Ok(())
    }

    /// Encode the entries of a batch, writing out early only where [`Connection::write_batch`] says.
    async fn write_entries(
        &mut self,
        broker: &Broker,
        outbox: &Outbox,
        batch: &mut Vec<Outbound>,
        sent: &mut [u64; 3],
    ) -> Result<(), End> {
        for out in batch.drain(..) {
            outbox.handled();
            match out {
                Outbound::Wait(ticket) => {
                    if ticket.is_pending()
                        && !self.wbuf.is_empty()
                        && self.flush_wbuf(broker).await.is_err()
                    {
                        return Err(End::Io);
                    }
                    let failed = ticket.wait().await.err().map(|e| match e {
                        StoreError::QuotaExceeded { .. } => ReasonCode::QUOTA_EXCEEDED,
                        _ => ReasonCode::UNSPECIFIED_ERROR,
                    });
                    // Consecutive waits guard the same packets: any failure counts.
                    let before = self.gate_failed;
                    self.gate_failed = if self.after_wait {
                        self.gate_failed.or(failed)
                    } else {
                        failed
                    };
                    self.after_wait = true;
                    match (before, self.gate_failed) {
                        (None, Some(reason)) => {
                            warn!(%reason, "store commits failing: withholding acknowledgements")
                        }
                        (Some(_), None) => info!("store commits succeed again"),
                        _ => {}
                    }
                }
                Outbound::Packet(p) => {
                    self.after_wait = false;
                    if let Some(p) = self.gated(p) {
                        if let Packet::Publish(p) = &p {
                            sent[usize::from(p.qos.as_u8())] += 1;
                        }
                        self.encode(&p);
                    }
                }
                Outbound::Close(reason) => {
                    self.close_with(reason).await;
                    return Err(End::ClosedByServer);
                }
            }
            if self.wbuf.len() >= WRITE_BATCH && self.flush_wbuf(broker).await.is_err() {
                return Err(End::Io);
            }
        }
        Ok(())
    }

    fn encode(&mut self, p: &Packet) {
        if let Err(e) = encode_packet(p, self.version, &mut self.wbuf) {
            warn!(error = %e, packet = p.name(), "cannot encode");
        }
    }

    /// What may be sent after a failed store commit: no acknowledgement of anything that was not
    /// stored (DESIGN.md, "Failures"). v5 acks carry the error, 3.1.1 acks are withheld, forwards of the
    /// unstored message wait for the client's next connection, and a CONNACK refuses the session.
    fn gated(&mut self, mut p: Packet) -> Option<Packet> {
        let Some(reason) = self.gate_failed else {
            return Some(p);
        };
        let v5 = self.version.is_v5();
        match &mut p {
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

/// After a read of `n` bytes into `spare` bytes of room: read more at once next time if it filled
/// the room, less if it used little of it.
fn next_read_size(size: usize, n: usize, spare: usize) -> usize {
    if n >= spare {
        (size * 2).min(MAX_READ)
    } else if n < size / 8 {
        (size / 2).max(MIN_READ)
    } else {
        size
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_grow_while_they_fill_the_buffer_and_shrink_when_idle() {
        let mut size = MIN_READ;
        // A busy publisher: every read fills the room there was.
        for _ in 0..20 {
            size = next_read_size(size, size, size);
        }
        assert_eq!(size, MAX_READ);
        // Moderate reads keep the size.
        assert_eq!(next_read_size(size, size / 2, size), size);
        // An idle client (a PINGREQ now and then) goes back to the small buffer.
        for _ in 0..20 {
            size = next_read_size(size, 2, size);
        }
        assert_eq!(size, MIN_READ);
    }
}
