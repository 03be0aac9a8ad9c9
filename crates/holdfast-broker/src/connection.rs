//! One network connection: read CONNECT, attach the session, then move packets both ways until either
//! side closes. Reads and writes share one task so a slow reader is also a slow writer (backpressure),
//! and writes are batched: everything queued for the socket goes out in one write.

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use holdfast_core::connect::{connack_refused, validate_connect};
use holdfast_proto::{decode_packet, encode_packet, Connect, DecodeError, Disconnect, Packet, ProtocolVersion, ReasonCode};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::mpsc::UnboundedReceiver;
use tokio::time::{sleep_until, timeout, Instant};
use tracing::{debug, info, info_span, warn, Instrument};

use crate::broker::{now_millis, Broker, ConnHandle, Outbound};

/// How long a new connection may take to send CONNECT before it is dropped.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Stop batching writes past this many bytes.
const WRITE_BATCH: usize = 64 * 1024;

/// Counts the connection for its lifetime.
struct Counted(Arc<Broker>);
impl Drop for Counted {
    fn drop(&mut self) {
        self.0.connections.fetch_sub(1, Ordering::Relaxed);
    }
}

pub async fn serve_connection<S>(broker: Arc<Broker>, stream: S, peer: SocketAddr)
where
    S: AsyncRead + AsyncWrite + Unpin + Send,
{
    broker.connections.fetch_add(1, Ordering::Relaxed);
    let _counted = Counted(broker.clone());
    let span = info_span!("conn", %peer, client_id = tracing::field::Empty);
    run(broker, stream).instrument(span).await
}

async fn run<S>(broker: Arc<Broker>, mut stream: S)
where
    S: AsyncRead + AsyncWrite + Unpin + Send,
{
    let max_packet = broker.cfg.max_packet_size as usize;
    let mut rbuf = BytesMut::with_capacity(4096);
    let connect = match timeout(CONNECT_TIMEOUT, read_connect(&mut stream, &mut rbuf, max_packet)).await {
        Ok(Ok(c)) => c,
        Ok(Err(ConnectFailure::Decode(DecodeError::UnsupportedProtocol(why)))) => {
            // [MQTT-3.1.2-2] answer an unsupported protocol level with return code 0x01, then close.
            debug!(why, "unsupported protocol");
            let _ = stream.write_all(&[0x20, 0x02, 0x00, 0x01]).await;
            return;
        }
        Ok(Err(e)) => {
            debug!(error = %e, "closing before CONNECT completed");
            return;
        }
        Err(_) => {
            debug!("no CONNECT within {CONNECT_TIMEOUT:?}");
            return;
        }
    };
    let version = connect.protocol;
    let refuse = |reason: ReasonCode| Packet::ConnAck(connack_refused(reason));
    if broker.max_connections > 0 && broker.connections.load(Ordering::Relaxed) > broker.max_connections {
        broker.stats.connections_refused.fetch_add(1, Ordering::Relaxed);
        let reason = if version.is_v5() { ReasonCode::QUOTA_EXCEEDED } else { ReasonCode::SERVER_UNAVAILABLE };
        write_packets(&mut stream, version, [refuse(reason)]).await;
        return;
    }
    let params = match validate_connect(connect, &broker.cfg, || broker.new_client_id()) {
        Ok(p) => p,
        Err(reason) => {
            broker.stats.connections_refused.fetch_add(1, Ordering::Relaxed);
            info!(%reason, "connection refused");
            write_packets(&mut stream, version, [refuse(reason)]).await;
            return;
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
    let mut conn = Connection { stream, rbuf, wbuf: BytesMut::with_capacity(8192), version, max_packet };
    let end = conn.pump(&broker, &slot, rx, &pending, &closing, keep_alive).await;
    debug!(?end, "disconnected");
    broker.close_session(&slot, generation, now_millis());
    let _ = conn.stream.shutdown().await;
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
}

impl<S: AsyncRead + AsyncWrite + Unpin + Send> Connection<S> {
    async fn pump(
        &mut self,
        broker: &Broker,
        slot: &Arc<crate::broker::Slot>,
        mut rx: UnboundedReceiver<Outbound>,
        pending: &std::sync::atomic::AtomicUsize,
        closing: &std::sync::atomic::AtomicBool,
        keep_alive: Option<Duration>,
    ) -> End {
        let far = Duration::from_secs(86_400 * 365);
        let mut deadline = Instant::now() + keep_alive.unwrap_or(far);
        loop {
            tokio::select! {
                biased;
                out = rx.recv() => {
                    let Some(out) = out else { return End::ClosedByServer };
                    let mut n = 1;
                    let mut close = self.encode(out);
                    while !close && self.wbuf.len() < WRITE_BATCH {
                        match rx.try_recv() {
                            Ok(out) => { n += 1; close = self.encode(out); }
                            Err(_) => break,
                        }
                    }
                    pending.fetch_sub(n, Ordering::Relaxed);
                    if self.stream.write_all(&self.wbuf).await.is_err() {
                        return End::Io;
                    }
                    self.wbuf.clear();
                    if close {
                        let _ = self.stream.flush().await;
                        return End::ClosedByServer;
                    }
                }
                read = self.stream.read_buf(&mut self.rbuf) => {
                    match read {
                        Ok(0) => return End::ClosedByPeer,
                        Err(_) => return End::Io,
                        Ok(_) => {}
                    }
                    if let Some(ka) = keep_alive {
                        deadline = Instant::now() + ka;
                    }
                    loop {
                        match decode_packet(&mut self.rbuf, self.version, self.max_packet) {
                            Ok(Some(packet)) => {
                                broker.handle_packet(slot, packet, now_millis());
                                // Stop reading at once after a protocol violation or DISCONNECT.
                                if closing.load(Ordering::Relaxed) {
                                    break;
                                }
                            }
                            Ok(None) => break,
                            Err(e) => {
                                debug!(error = %e, "bad packet");
                                self.close_with(e.reason_code()).await;
                                return End::Malformed;
                            }
                        }
                    }
                }
                _ = sleep_until(deadline), if keep_alive.is_some() => {
                    self.close_with(ReasonCode::KEEP_ALIVE_TIMEOUT).await;
                    return End::KeepAlive;
                }
            }
        }
    }

    /// Append an outbound item to the write buffer; true when the connection must close after it.
    fn encode(&mut self, out: Outbound) -> bool {
        match out {
            Outbound::Packet(p) => {
                if let Err(e) = encode_packet(&p, self.version, &mut self.wbuf) {
                    warn!(error = %e, packet = p.name(), "cannot encode");
                }
                false
            }
            Outbound::Close(reason) => {
                if let Some(reason) = reason.filter(|_| self.version.is_v5()) {
                    let d = Packet::Disconnect(Disconnect { reason, properties: Default::default() });
                    let _ = encode_packet(&d, self.version, &mut self.wbuf);
                }
                true
            }
        }
    }

    /// Server-side close; MQTT 5 clients are told why first [MQTT-4.13.1-1].
    async fn close_with(&mut self, reason: ReasonCode) {
        self.encode(Outbound::Close(Some(reason)));
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
async fn read_connect<S: AsyncRead + Unpin>(stream: &mut S, rbuf: &mut BytesMut, max: usize) -> Result<Connect, ConnectFailure> {
    loop {
        match decode_packet(rbuf, ProtocolVersion::V3_1_1, max) {
            Ok(Some(Packet::Connect(c))) => return Ok(c),
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

async fn write_packets<S: AsyncWrite + Unpin>(stream: &mut S, version: ProtocolVersion, packets: impl IntoIterator<Item = Packet>) {
    let mut buf = BytesMut::new();
    for p in packets {
        let _ = encode_packet(&p, version, &mut buf);
    }
    let _ = stream.write_all(&buf).await;
    let _ = stream.flush().await;
}
