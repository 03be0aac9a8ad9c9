//! The shutdown signal handed to the broker: SIGINT or SIGTERM. A second one ends the process at
//! once, for when a graceful shutdown takes too long for the operator.

use std::future::Future;

/// Installs the handlers now and returns a future that completes on the first signal.
#[cfg(unix)]
pub fn shutdown() -> std::io::Result<impl Future<Output = ()> + Send + 'static> {
    use tokio::signal::unix::{signal, SignalKind};

    let mut interrupt = signal(SignalKind::interrupt())?;
    let mut terminate = signal(SignalKind::terminate())?;
    Ok(async move {
        let name = tokio::select! {
            _ = interrupt.recv() => "SIGINT",
            _ = terminate.recv() => "SIGTERM",
        };
        tracing::info!(signal = name, "shutting down gracefully");
        tokio::spawn(async move {
            let code = tokio::select! {
                _ = interrupt.recv() => 128 + 2,
                _ = terminate.recv() => 128 + 15,
            };
            tracing::warn!("second signal: exiting without finishing the shutdown");
            std::process::exit(code);
        });
    })
}

/// Installs the handler now and returns a future that completes on the first Ctrl-C.
#[cfg(not(unix))]
pub fn shutdown() -> std::io::Result<impl Future<Output = ()> + Send + 'static> {
    Ok(async {
        if tokio::signal::ctrl_c().await.is_ok() {
            tracing::info!("shutting down gracefully");
        }
    })
}

/// SIGHUP re-reads TLS certificates, the password file and the ACL file; open connections stay.
#[cfg(unix)]
pub fn reload_on_hangup() -> std::io::Result<()> {
    use tokio::signal::unix::{signal, SignalKind};

    let mut hangup = signal(SignalKind::hangup())?;
    tokio::spawn(async move {
        while hangup.recv().await.is_some() {
            tracing::info!("SIGHUP: reloading certificates, the password file and the ACL");
            holdfast_broker::request_reload();
        }
    });
    Ok(())
}

#[cfg(not(unix))]
pub fn reload_on_hangup() -> std::io::Result<()> {
    Ok(())
}
