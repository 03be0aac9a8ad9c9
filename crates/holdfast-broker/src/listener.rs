//! Listeners: bind what the configuration asks for and hand every accepted connection, whatever its
//! transport, to the same connection task.

use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::task::JoinSet;
use tracing::{error, info};

use crate::broker::Broker;
use crate::config::{ListenerConfig, ListenerProtocol};
use crate::{connection, ServeError};

/// Bind one configured listener and spawn its accept loop into `tasks`.
pub async fn start(
    l: &ListenerConfig,
    broker: Arc<Broker>,
    tasks: &mut JoinSet<()>,
) -> Result<(), ServeError> {
    if l.protocol != ListenerProtocol::Tcp {
        return Err(ServeError::Unsupported {
            addr: l.bind,
            protocol: l.protocol.as_str(),
        });
    }
    let listener = TcpListener::bind(l.bind)
        .await
        .map_err(|source| ServeError::Bind {
            addr: l.bind,
            source,
        })?;
    let local = listener.local_addr().unwrap_or(l.bind);
    info!(addr = %local, protocol = l.protocol.as_str(), "listening");
    tasks.spawn(accept_tcp(broker, listener));
    Ok(())
}

async fn accept_tcp(broker: Arc<Broker>, listener: TcpListener) {
    loop {
        match listener.accept().await {
            Ok((stream, peer)) => {
                let _ = stream.set_nodelay(true);
                tokio::spawn(connection::serve_connection(broker.clone(), stream, peer));
            }
            Err(e) => {
                // EMFILE and friends: back off instead of spinning.
                error!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}
