//! Log set-up: tracing to stderr, filtered by `RUST_LOG` when set, else by `[log] level`.

use std::io::IsTerminal;

use anyhow::anyhow;
use holdfast_broker::config::{LogConfig, LogFormat};
use tracing_subscriber::EnvFilter;

/// Installs the global subscriber. Fails on an invalid `RUST_LOG`.
pub fn init(log: &LogConfig) -> anyhow::Result<()> {
    let filter = match std::env::var("RUST_LOG") {
        Ok(directives) if !directives.trim().is_empty() => EnvFilter::try_new(&directives)
            .map_err(|e| anyhow!("invalid RUST_LOG \"{directives}\": {e}"))?,
        // Already checked by the config loader or the --log-level parser.
        _ => EnvFilter::try_new(&log.level)
            .map_err(|e| anyhow!("invalid log level \"{}\": {e}", log.level))?,
    };
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let installed = match log.format {
        LogFormat::Text => builder
            .with_ansi(std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none())
            .try_init(),
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
    };
    installed.map_err(|e| anyhow!("cannot set up logging: {e}"))
}
