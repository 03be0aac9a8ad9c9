//! The command line of `holdfast bench`, and the plan it resolves to (per-scenario defaults applied).

use std::time::Duration;

use clap::{Args, Parser, ValueEnum};
use holdfast_proto::{ProtocolVersion, QoS};

use crate::BenchError;

/// Options of `holdfast bench`. Embedded by the `holdfast` binary as a subcommand.
#[derive(Debug, Clone, Args)]
#[command(after_help = "Examples:\n  \
    holdfast bench fanin --qos 1 --publishers 4 --duration 10s\n  \
    holdfast bench fanout --subscribers 50 --qos 0 --json\n  \
    holdfast bench fanin --qos 1 --rate 2500 --publishers 4      # fixed 10k msgs/s\n  \
    holdfast bench conns --count 10000 --pid $(pidof holdfast)\n  \
    holdfast bench durable --qos 1 --count 100000 --restart-cmd './restart-broker'\n\n\
    Exit status: 0 when the run is clean, 1 on a protocol error or a QoS 1/2 message that was \
    acknowledged but never delivered, 2 on a usage error.")]
pub struct BenchArgs {
    /// What to measure: fanin (P publishers on distinct topics, wildcard subscribers), fanout
    /// (publishers on one topic, S subscribers), conns (N idle connections), durable (an offline
    /// persistent session receives K queued messages)
    #[arg(value_enum)]
    pub scenario: Scenario,

    /// Broker host name or address
    #[arg(long, default_value = "127.0.0.1")]
    pub host: String,

    /// Broker port
    #[arg(short, long, default_value_t = 1883)]
    pub port: u16,

    /// QoS of every PUBLISH and subscription
    #[arg(short, long, default_value_t = 0, value_parser = clap::value_parser!(u8).range(0..=2))]
    pub qos: u8,

    /// Payload bytes per message (at least 20: publisher id, sequence number, timestamp)
    #[arg(short, long, default_value_t = 64, value_parser = clap::value_parser!(u32).range(20..=16_777_216))]
    pub size: u32,

    /// Publisher connections [fanin: 4, fanout: 1, durable: 1]
    #[arg(short = 'P', long, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub publishers: Option<u32>,

    /// Subscriber connections [fanin: 1, fanout: 50]
    #[arg(short = 'S', long, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub subscribers: Option<u32>,

    /// Messages per second per publisher, 0 = as fast as the window allows; for conns: connections
    /// opened per second
    #[arg(short, long, default_value_t = 0)]
    pub rate: u64,

    /// How long publishers send after the warm-up (e.g. 10s, 500ms) [10s unless --count is given];
    /// for conns: how long the connections are held before the broker's memory is sampled [2s]
    #[arg(short, long, value_parser = parse_duration)]
    pub duration: Option<Duration>,

    /// Messages per publisher (then no time limit unless --duration is also given); for conns: the
    /// number of connections [1000]; for durable: messages per publisher queued offline [10000]
    #[arg(short = 'n', long)]
    pub count: Option<u64>,

    /// MQTT protocol version
    #[arg(long, value_enum, default_value = "3.1.1")]
    pub protocol: Protocol,

    /// Publisher window: QoS 1/2 messages in flight per publisher (capped by the broker's Receive
    /// Maximum)
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u16).range(1..))]
    pub inflight: u16,

    /// Sending time not measured at the start (latency and rates) [1s, or 0 with --count]
    #[arg(long, value_parser = parse_duration)]
    pub warmup: Option<Duration>,

    /// How long to wait at the end for outstanding acknowledgements and deliveries
    #[arg(long, value_parser = parse_duration, default_value = "5s")]
    pub grace: Duration,

    /// The broker's process id: report its CPU time and resident memory (from /proc)
    #[arg(long)]
    pub pid: Option<u32>,

    /// durable: shell command run after publishing and before the subscriber reconnects (e.g. a
    /// broker restart); the tool then waits until the port accepts connections again
    #[arg(long, value_name = "COMMAND")]
    pub restart_cmd: Option<String>,

    /// Runtime worker threads for the load generator (1 = single-threaded, leaving the other
    /// cores to the broker)
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..=256))]
    pub threads: u16,

    /// Print the report as JSON on stdout instead of the table
    #[arg(long)]
    pub json: bool,

    /// A name stored in the report, e.g. the broker's ("mosquitto")
    #[arg(long)]
    pub label: Option<String>,

    /// No live progress line, even on a terminal
    #[arg(long)]
    pub no_progress: bool,
}

impl BenchArgs {
    /// Parses the options as they follow `holdfast bench` (no program name), for tests and embedders.
    pub fn try_parse_from<I, T>(args: I) -> Result<BenchArgs, clap::Error>
    where
        I: IntoIterator<Item = T>,
        T: Into<std::ffi::OsString> + Clone,
    {
        #[derive(Parser)]
        #[command(name = "holdfast-bench")]
        struct Wrapper {
            #[command(flatten)]
            args: BenchArgs,
        }
        let argv = std::iter::once(std::ffi::OsString::from("holdfast-bench"))
            .chain(args.into_iter().map(Into::into));
        Wrapper::try_parse_from(argv).map(|w| w.args)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Scenario {
    Fanin,
    Fanout,
    Conns,
    Durable,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Protocol {
    #[value(name = "3.1.1", alias = "4", alias = "311")]
    V311,
    #[value(name = "5", alias = "5.0")]
    V5,
}

impl Protocol {
    pub fn version(self) -> ProtocolVersion {
        match self {
            Protocol::V311 => ProtocolVersion::V3_1_1,
            Protocol::V5 => ProtocolVersion::V5,
        }
    }
}

/// "10s", "250ms", "1m 30s", or a plain number of seconds ("2.5").
fn parse_duration(text: &str) -> Result<Duration, String> {
    if let Ok(secs) = text.trim().parse::<f64>() {
        return Duration::try_from_secs_f64(secs).map_err(|e| e.to_string());
    }
    humantime::parse_duration(text).map_err(|e| format!("{e} (e.g. 10s, 500ms, 2.5)"))
}

/// What a run does, with the per-scenario defaults filled in.
#[derive(Debug, Clone)]
pub struct Plan {
    pub scenario: Scenario,
    pub host: String,
    pub port: u16,
    pub qos: QoS,
    pub size: usize,
    pub publishers: u32,
    pub subscribers: u32,
    pub rate: u64,
    /// Sending time after the warm-up; `None` = until `count`.
    pub duration: Option<Duration>,
    /// Messages per publisher, or connections for conns.
    pub count: Option<u64>,
    pub version: ProtocolVersion,
    pub inflight: u16,
    pub warmup: Duration,
    pub grace: Duration,
    pub pid: Option<u32>,
    pub restart_cmd: Option<String>,
    pub label: Option<String>,
    pub progress: bool,
}

impl Plan {
    pub fn from_args(args: &BenchArgs) -> Result<Plan, BenchError> {
        let usage = |m: &str| Err(BenchError::Usage(m.to_string()));
        let (publishers, subscribers) = match args.scenario {
            Scenario::Fanin => (4, 1),
            Scenario::Fanout => (1, 50),
            Scenario::Conns | Scenario::Durable => (1, 1),
        };
        let publishers = args.publishers.unwrap_or(publishers);
        let subscribers = args.subscribers.unwrap_or(subscribers);
        let (duration, count) = match args.scenario {
            Scenario::Fanin | Scenario::Fanout => match (args.duration, args.count) {
                (None, None) => (Some(Duration::from_secs(10)), None),
                other => other,
            },
            Scenario::Conns => (
                Some(args.duration.unwrap_or(Duration::from_secs(2))),
                Some(args.count.unwrap_or(1000)),
            ),
            Scenario::Durable => (None, Some(args.count.unwrap_or(10_000))),
        };
        if count == Some(0) {
            return usage("--count must be at least 1");
        }
        if args.scenario == Scenario::Durable {
            if args.qos == 0 {
                return usage("durable needs --qos 1 or 2: QoS 0 messages are not queued");
            }
            if args.subscribers.is_some_and(|s| s != 1) {
                return usage("durable uses exactly one subscriber");
            }
        } else if args.restart_cmd.is_some() {
            return usage("--restart-cmd applies to the durable scenario only");
        }
        let warmup = match (args.warmup, args.scenario, count) {
            (Some(w), Scenario::Fanin | Scenario::Fanout, _) => w,
            (None, Scenario::Fanin | Scenario::Fanout, None) => Duration::from_secs(1),
            _ => Duration::ZERO,
        };
        Ok(Plan {
            scenario: args.scenario,
            host: args.host.clone(),
            port: args.port,
            qos: QoS::from_u8(args.qos).expect("checked by clap"),
            size: args.size as usize,
            publishers,
            subscribers,
            rate: args.rate,
            duration,
            count,
            version: args.protocol.version(),
            inflight: args.inflight,
            warmup,
            grace: args.grace,
            pid: args.pid,
            restart_cmd: args.restart_cmd.clone(),
            label: args.label.clone(),
            progress: !args.no_progress
                && !args.json
                && std::io::IsTerminal::is_terminal(&std::io::stderr()),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan(args: &[&str]) -> Result<Plan, BenchError> {
        Plan::from_args(&BenchArgs::try_parse_from(args).unwrap())
    }

    #[test]
    fn scenario_defaults() {
        let p = plan(&["fanin"]).unwrap();
        assert_eq!((p.publishers, p.subscribers), (4, 1));
        assert_eq!(p.duration, Some(Duration::from_secs(10)));
        assert_eq!(p.warmup, Duration::from_secs(1));
        assert_eq!(p.version, ProtocolVersion::V3_1_1);
        let p = plan(&["fanout", "--protocol", "5", "-q", "1", "-n", "100"]).unwrap();
        assert_eq!((p.publishers, p.subscribers), (1, 50));
        assert_eq!((p.duration, p.count), (None, Some(100)));
        assert_eq!(p.warmup, Duration::ZERO, "no warm-up when counting");
        assert_eq!(p.version, ProtocolVersion::V5);
        let p = plan(&["conns", "--duration", "0.5"]).unwrap();
        assert_eq!(p.count, Some(1000));
        assert_eq!(p.duration, Some(Duration::from_millis(500)));
    }

    #[test]
    fn bad_combinations_are_usage_errors() {
        assert!(plan(&["durable"]).is_err(), "durable at QoS 0");
        assert!(plan(&["fanin", "--restart-cmd", "true"]).is_err());
        assert!(plan(&["fanin", "-n", "0"]).is_err());
        assert!(BenchArgs::try_parse_from(["fanin", "--size", "8"]).is_err());
        assert!(BenchArgs::try_parse_from(["fanin", "--qos", "3"]).is_err());
        assert!(BenchArgs::try_parse_from(["fanin", "--protocol", "3.1"]).is_err());
    }
}
