//! `holdfast`: the Holdfast MQTT broker's command-line binary.

mod cli;
mod ctl;
mod logging;
mod passwd;
mod pubsub;
mod signals;
mod store;

use std::process::ExitCode;

use anyhow::Context;
use clap::Parser;
use holdfast_broker::config::Config;

use cli::{Cli, Command, ServeArgs};

/// Exit code for an invalid command line or config file (clap uses it for usage errors too).
const EXIT_CONFIG: u8 = 2;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Serve(args) => serve(args),
        Command::Store(args) => store::run(args),
        Command::Bench(args) => ExitCode::from(holdfast_bench::execute(args)),
        Command::Ctl(args) => ctl::run(args),
        Command::Passwd(args) => passwd::run(args),
        Command::Pub(args) => pubsub::run_pub(args),
        Command::Sub(args) => pubsub::run_sub(args),
    }
}

fn serve(args: ServeArgs) -> ExitCode {
    let config = match args.load_config() {
        Ok(config) => config,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    if let Err(e) = logging::init(&config.log) {
        eprintln!("error: {e:#}");
        return ExitCode::from(EXIT_CONFIG);
    }
    let source = match &args.config {
        Some(path) => path.display().to_string(),
        None => "built-in defaults".to_string(),
    };
    tracing::info!(version = env!("CARGO_PKG_VERSION"), config = %source, "starting holdfast");
    match run(config) {
        Ok(()) => {
            tracing::info!("holdfast stopped");
            ExitCode::SUCCESS
        }
        Err(e) => {
            // Once, in the log's format if errors are logged, else plainly.
            if tracing::enabled!(tracing::Level::ERROR) {
                tracing::error!("{e:#}");
            } else {
                eprintln!("error: {e:#}");
            }
            ExitCode::FAILURE
        }
    }
}

/// Runs the broker on a multi-threaded runtime until a shutdown signal, or until it fails.
fn run(config: Config) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("holdfast")
        .build()
        .context("cannot start the async runtime")?;
    let grace = config.shutdown_timeout;
    let result = runtime.block_on(async {
        // Installed before the broker starts, so an early signal is not lost.
        let shutdown = signals::shutdown().context("cannot install signal handlers")?;
        signals::reload_on_hangup().context("cannot install the SIGHUP handler")?;
        holdfast_broker::serve(config, shutdown)
            .await
            .map_err(|e| anyhow::anyhow!(error_chain(&e)))
    });
    // serve has already waited up to shutdown_timeout; don't hang on stray blocking tasks.
    runtime.shutdown_timeout(grace);
    result
}

/// An error and its sources, as "outer: inner: innermost".
fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(e) = source {
        let next = e.to_string();
        if !text.ends_with(&next) {
            text.push_str(": ");
            text.push_str(&next);
        }
        source = e.source();
    }
    text
}
