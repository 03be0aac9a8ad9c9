//! `holdfast bench`: a load generator for MQTT brokers, over raw MQTT 3.1.1 and 5.0 on TCP.
//!
//! Every payload starts with a [`payload::Stamp`] (publisher id, sequence number, send time), so
//! each subscriber can tell, per publisher, what arrived late, twice, or never. One tokio task per
//! connection; reads and writes are batched through one buffer each, and the hot path (PUBLISH and
//! its acknowledgements) allocates nothing per message: publishes are copied from a template the
//! codec encoded once and patched in place, and received packets are parsed where they lie.
//!
//! Scenarios: `fanin`, `fanout` ([`flow`]), `conns` ([`conns`]) and `durable` ([`durable`]).

pub mod args;
pub mod conns;
pub mod durable;
pub mod flow;
pub mod payload;
pub mod procstat;
pub mod publisher;
pub mod report;
pub mod subscriber;
pub mod tracker;
pub mod wire;

use std::net::SocketAddr;

pub use args::{BenchArgs, Plan, Protocol, Scenario};
pub use report::Report;

/// Why a run could not produce a report. Failures during a run (a protocol error on one
/// connection, lost messages) are in [`Report::errors`] and [`Report::failed`] instead.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BenchError {
    #[error("{0}")]
    Usage(String),
    #[error("cannot connect: {0}")]
    Connect(String),
    #[error("protocol error: {0}")]
    Protocol(String),
    #[error("connection closed by the broker")]
    Closed,
    #[error("I/O error: {0}")]
    Io(String),
}

/// Runs the scenario `args` describes against the broker it names.
pub async fn run(args: BenchArgs) -> Result<Report, BenchError> {
    let plan = Plan::from_args(&args)?;
    let addr = resolve(&plan.host, plan.port).await?;
    match plan.scenario {
        Scenario::Fanin | Scenario::Fanout => flow::run(&plan, addr).await,
        Scenario::Conns => conns::run(&plan, addr).await,
        Scenario::Durable => durable::run(&plan, addr).await,
    }
}

async fn resolve(host: &str, port: u16) -> Result<SocketAddr, BenchError> {
    tokio::net::lookup_host((host, port))
        .await
        .map_err(|e| BenchError::Connect(format!("{host}:{port}: {e}")))?
        .next()
        .ok_or_else(|| BenchError::Connect(format!("{host}:{port}: no address")))
}

/// Runs [`run`] on a runtime of `--threads` workers (current-thread for 1).
pub fn run_blocking(args: BenchArgs) -> Result<Report, BenchError> {
    let threads = usize::from(args.threads.max(1));
    let mut builder = if threads == 1 {
        tokio::runtime::Builder::new_current_thread()
    } else {
        let mut b = tokio::runtime::Builder::new_multi_thread();
        b.worker_threads(threads);
        b
    };
    let runtime = builder
        .enable_all()
        .thread_name("holdfast-bench")
        .build()
        .map_err(|e| BenchError::Io(format!("cannot start the async runtime: {e}")))?;
    runtime.block_on(run(args))
}

/// The whole command: runs, prints the table (or JSON with `--json`) on stdout, and returns the exit
/// status: 0 clean, 1 failed run, 2 usage error.
pub fn execute(args: BenchArgs) -> u8 {
    let json = args.json;
    match run_blocking(args) {
        Ok(report) => {
            if json {
                println!("{}", report.to_json());
            } else {
                print!("{}", report.table());
            }
            u8::from(report.failed)
        }
        Err(e @ BenchError::Usage(_)) => {
            eprintln!("error: {e}");
            2
        }
        Err(e) => {
            eprintln!("error: {e}");
            1
        }
    }
}
