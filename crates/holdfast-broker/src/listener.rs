//! Listeners: bind what the configuration asks for (tcp, tls, ws, wss) and hand every accepted
//! connection, whatever its transport, to the same connection task. TLS and WebSocket handshakes
//! run in the connection's own task under `[limits] connect_timeout`, so a slow handshake never
//! holds up the accept loop.

mod tls;
mod ws;

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio::time::timeout;
use tracing::{debug, error, info};

use crate::auth::{ConnContext, Security};
use crate::broker::Broker;
use crate::config::{ListenerConfig, ListenerProtocol};
use crate::{connection, ServeError};

pub use tls::TlsCell;

static RELOAD: OnceLock<watch::Sender<u64>> = OnceLock::new();

fn reload_channel() -> &'static watch::Sender<u64> {
    RELOAD.get_or_init(|| watch::channel(0).0)
}

/// Asks every running broker in this process to re-read its TLS certificates, password file and
/// ACL file (what SIGHUP does). Open connections are not closed.
pub fn request_reload() {
    reload_channel().send_modify(|generation| *generation += 1);
}

/// Waits for reload requests and re-reads the password and ACL files.
pub fn spawn_reloader(security: Arc<Security>, tasks: &mut JoinSet<()>) {
    let mut rx = reload_channel().subscribe();
    tasks.spawn(async move {
        while rx.changed().await.is_ok() {
            security.reload();
        }
    });
}

/// Everything an accept loop needs.
#[derive(Clone)]
struct Accept {
    broker: Arc<Broker>,
    security: Arc<Security>,
    protocol: ListenerProtocol,
    tls: Option<Arc<TlsCell>>,
    path: Arc<str>,
}

/// Bind one configured listener and spawn its accept loop into `tasks`.
pub async fn start(
    l: &ListenerConfig,
    broker: Arc<Broker>,
    security: Arc<Security>,
    tasks: &mut JoinSet<()>,
) -> Result<(), ServeError> {
    let tls = if l.protocol.is_tls() {
        let cell = TlsCell::load(l).map_err(|why| ServeError::Listener { addr: l.bind, why })?;
        Some(Arc::new(cell))
    } else {
        None
    };
    let listener = TcpListener::bind(l.bind)
        .await
        .map_err(|source| ServeError::Bind {
            addr: l.bind,
            source,
        })?;
    let local = listener.local_addr().unwrap_or(l.bind);
    info!(addr = %local, protocol = l.protocol.as_str(), "listening");
    if let Some(cell) = tls.clone() {
        let mut rx = reload_channel().subscribe();
        tasks.spawn(async move {
            while rx.changed().await.is_ok() {
                cell.reload();
            }
        });
    }
    let accept = Accept {
        broker,
        security,
        protocol: l.protocol,
        tls,
        path: Arc::from(l.path.as_str()),
    };
    tasks.spawn(accept_loop(accept, listener));
    Ok(())
}

async fn accept_loop(a: Accept, listener: TcpListener) {
    loop {
        match listener.accept().await {
            Ok((stream, peer)) => {
                let _ = stream.set_nodelay(true);
                tokio::spawn(handshake(a.clone(), stream, peer));
            }
            Err(e) => {
                // EMFILE and friends: back off instead of spinning.
                error!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

/// Runs the transport's handshake, then the MQTT connection.
///
/// This future is the task of every connection for its whole life, so it stays small: each
/// transport's work runs in a boxed future of its own, sized for that transport only. (Values moved
/// into a future before an await still take room in the enclosing state machine, so they are kept
/// out of this one.)
async fn handshake(a: Accept, stream: TcpStream, peer: SocketAddr) {
    let (ip_guard, ip_refusal) = a.security.admit(peer.ip(), &a.broker.stats);
    if ip_refusal.is_some() && a.security.far_over_limit(peer.ip()) {
        return; // not worth a handshake and a CONNECT to refuse
    }
    let ctx = ConnContext {
        security: a.security.clone(),
        cert_identity: None,
        ip_guard,
        ip_refusal,
    };
    match (a.tls.is_some(), a.protocol.is_websocket()) {
        (false, false) => {
            Box::pin(connection::serve_connection(
                a.broker.clone(),
                stream,
                peer,
                ctx,
            ))
            .await
        }
        (false, true) => Box::pin(serve_ws(a, stream, peer, ctx)).await,
        (true, _) => Box::pin(serve_tls(a, stream, peer, ctx)).await,
    }
}

async fn serve_ws<S: AsyncRead + AsyncWrite + Unpin + Send>(
    a: Accept,
    stream: S,
    peer: SocketAddr,
    ctx: ConnContext,
) {
    let limit = a.security.limits().connect_timeout;
    if let Some(ws) = Box::pin(upgrade(&a, stream, peer, limit)).await {
        Box::pin(connection::serve_connection(
            a.broker.clone(),
            ws,
            peer,
            ctx,
        ))
        .await
    }
}

async fn serve_tls(a: Accept, stream: TcpStream, peer: SocketAddr, mut ctx: ConnContext) {
    let Some(cell) = a.tls.clone() else { return };
    let limit = a.security.limits().connect_timeout;
    let tls = match timeout(limit, Box::pin(cell.acceptor().accept(stream))).await {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => return failed(&a, peer, "TLS handshake failed", &e),
        Err(_) => return failed(&a, peer, "TLS handshake timed out", &"timeout"),
    };
    ctx.cert_identity = tls::cert_identity(tls.get_ref().1.peer_certificates());
    if a.protocol.is_websocket() {
        Box::pin(serve_ws(a, tls, peer, ctx)).await
    } else {
        Box::pin(connection::serve_connection(
            a.broker.clone(),
            tls,
            peer,
            ctx,
        ))
        .await
    }
}

async fn upgrade<S: AsyncRead + AsyncWrite + Unpin>(
    a: &Accept,
    stream: S,
    peer: SocketAddr,
    limit: Duration,
) -> Option<ws::WsIo<S>> {
    // One WebSocket message may carry a whole packet and then some of the next.
    let max = (a.broker.cfg.max_packet_size as usize)
        .saturating_mul(2)
        .max(64 * 1024);
    match timeout(limit, ws::accept(stream, &a.path, max)).await {
        Ok(Ok(ws)) => Some(ws),
        Ok(Err(e)) => {
            failed(a, peer, "WebSocket handshake failed", &e);
            None
        }
        Err(_) => {
            failed(a, peer, "WebSocket handshake timed out", &"timeout");
            None
        }
    }
}

fn failed(a: &Accept, peer: SocketAddr, what: &str, e: &dyn std::fmt::Display) {
    a.broker
        .stats
        .handshake_failures
        .fetch_add(1, Ordering::Relaxed);
    debug!(%peer, error = %e, "{what}");
}
