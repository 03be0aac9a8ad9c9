//! The command line: what `holdfast` accepts, and how `serve`'s options override the config file.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};
use holdfast_broker::config::{validate_log_level, Config, ConfigError, ListenerConfig};

/// Holdfast, an MQTT 3.1, 3.1.1 and 5.0 broker that stores session state as safely as you ask.
#[derive(Debug, Parser)]
#[command(
    name = "holdfast",
    version,
    propagate_version = true,
    arg_required_else_help = true
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the broker until SIGINT or SIGTERM.
    #[command(long_about = "Run the broker until SIGINT or SIGTERM.\n\n\
        Without --config it runs on the built-in defaults: MQTT over TCP on 0.0.0.0:1883, data in \
        ./holdfast-data. Options given here override the config file. A config file that cannot be \
        read or is invalid stops the broker with exit code 2 and a message naming the line and key.\n\n\
        On SIGINT or SIGTERM the broker shuts down gracefully within [server] shutdown_timeout; \
        a second signal ends it at once.")]
    Serve(ServeArgs),
    /// Inspect or measure a data directory offline: `verify`, `check`.
    Store(StoreArgs),
    /// Load-test an MQTT broker: fanin, fanout, conns, durable.
    #[command(
        long_about = "Load-test an MQTT broker (Holdfast or any other) over raw MQTT 3.1.1 \
        or 5.0 on TCP. Every payload carries its publisher id, sequence number and send time: the \
        run reports delivered and acknowledged msgs/s, latency percentiles, and lost, duplicated \
        and reordered messages. See BENCHMARKS.md and scripts/bench-compare."
    )]
    Bench(holdfast_bench::BenchArgs),
    /// Add, change (--password-stdin or a prompt) or delete (--delete) a user of a password file.
    Passwd(crate::passwd::PasswdArgs),
    /// Administer a running broker through its admin API: sessions, retained messages, stats.
    #[command(long_about = "Administer a running broker through its admin HTTP API \
        (see docs/admin-api.md): list, show, discard or kick sessions, list or delete retained \
        messages, show stats. The API's address comes from --admin or HOLDFAST_ADMIN, its token \
        from --token or HOLDFAST_ADMIN_TOKEN. Tables for people, --json for scripts.\n\n\
        Exit code 0: done; 1: the broker answered with an error (e.g. no such session) or \
        cannot be reached.")]
    Ctl(crate::ctl::CtlArgs),
    /// Publish a message, like mosquitto_pub; with --persist-dir the client's session survives a crash.
    Pub(crate::pubsub::PubArgs),
    /// Subscribe and print messages, like mosquitto_sub.
    Sub(crate::pubsub::SubArgs),
}

#[derive(Debug, Args)]
pub struct StoreArgs {
    #[command(subcommand)]
    pub command: StoreCommand,
}

#[derive(Debug, Subcommand)]
pub enum StoreCommand {
    /// Read a data directory (read-only) and report what it holds and what is damaged.
    #[command(
        long_about = "Read a data directory (read-only) and report what it holds and what is \
        damaged: segments, sessions, subscriptions, messages, corrupt records with their file and \
        offset, a torn tail. Run it on a stopped broker's directory; nothing is changed.\n\n\
        Exit code 0: no damage; 1: damaged records found, or the directory cannot be read."
    )]
    Verify {
        /// The data directory (storage.data_dir)
        #[arg(long, value_name = "DIR", default_value = "./holdfast-data")]
        data_dir: PathBuf,
    },
    /// Measure the disk under a data directory: fsync latency, write throughput, and the `sync`
    /// message rate it can sustain.
    Check {
        /// The data directory (storage.data_dir); a temporary file is written there
        #[arg(long, value_name = "DIR", default_value = "./holdfast-data")]
        data_dir: PathBuf,
        /// How long to measure, e.g. 5s
        #[arg(long, value_name = "DURATION", default_value = "5s", value_parser = parse_duration)]
        duration: std::time::Duration,
    },
}

fn parse_duration(s: &str) -> Result<std::time::Duration, String> {
    humantime::parse_duration(s).map_err(|e| e.to_string())
}

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Read this TOML config file (every key optional; see docs/configuration.md and
    /// holdfast.example.toml)
    #[arg(short, long, value_name = "FILE")]
    pub config: Option<PathBuf>,

    /// Listen for MQTT over plain TCP on ADDR:PORT, instead of the configured listeners
    /// (repeatable, e.g. --listen 0.0.0.0:1883 --listen [::]:1883)
    #[arg(short, long, value_name = "ADDR:PORT")]
    pub listen: Vec<SocketAddr>,

    /// Keep stored sessions and retained messages in DIR (overrides storage.data_dir)
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,

    /// Log level or tracing directives, e.g. "debug" or "info,holdfast_broker=trace"
    /// (overrides log.level; RUST_LOG, when set, wins)
    #[arg(long, value_name = "LEVEL", value_parser = parse_log_level)]
    pub log_level: Option<String>,

    /// Serve the HTTP admin API, /metrics and the dashboard on ADDR:PORT (overrides admin.bind;
    /// a non-loopback address needs admin.token)
    #[arg(long, value_name = "ADDR:PORT")]
    pub admin_listen: Option<SocketAddr>,
}

fn parse_log_level(level: &str) -> Result<String, String> {
    validate_log_level(level).map(|()| level.to_string())
}

impl ServeArgs {
    /// The config file (or the defaults) with the command-line overrides applied.
    pub fn load_config(&self) -> Result<Config, ConfigError> {
        let mut config = match &self.config {
            Some(path) => Config::load(path)?,
            None => Config::default(),
        };
        if !self.listen.is_empty() {
            let mut listeners: Vec<ListenerConfig> = Vec::with_capacity(self.listen.len());
            for &bind in &self.listen {
                if listeners.iter().any(|l| l.bind == bind) {
                    return Err(ConfigError::Invalid {
                        origin: "command line".to_string(),
                        line: None,
                        key: "--listen".to_string(),
                        message: format!("{bind} is given twice"),
                    });
                }
                listeners.push(ListenerConfig::tcp(bind));
            }
            config.listeners = listeners;
        }
        if let Some(dir) = &self.data_dir {
            config.storage.data_dir = dir.clone();
        }
        if let Some(level) = &self.log_level {
            config.log.level = level.clone();
        }
        if let Some(bind) = self.admin_listen {
            config.admin.bind = Some(bind);
            config
                .admin
                .check()
                .map_err(|message| ConfigError::Invalid {
                    origin: "command line".to_string(),
                    line: None,
                    key: "--admin-listen".to_string(),
                    message,
                })?;
        }
        Ok(config)
    }
}

#[cfg(test)]
mod tests {
    use clap::error::ErrorKind;
    use clap::CommandFactory;
    use holdfast_broker::config::ListenerProtocol;

    use super::*;

    fn serve_args(args: &[&str]) -> Result<ServeArgs, clap::Error> {
        let argv = ["holdfast", "serve"].iter().chain(args);
        Cli::try_parse_from(argv).map(|cli| match cli.command {
            Command::Serve(args) => args,
            other => panic!("not serve: {other:?}"),
        })
    }

    #[test]
    fn store_subcommands() {
        let cli = Cli::try_parse_from(["holdfast", "store", "verify", "--data-dir", "/d"]).unwrap();
        assert!(
            matches!(cli.command, Command::Store(StoreArgs { command: StoreCommand::Verify { data_dir } }) if data_dir == std::path::Path::new("/d"))
        );
        let cli = Cli::try_parse_from(["holdfast", "store", "check", "--duration", "2s"]).unwrap();
        match cli.command {
            Command::Store(StoreArgs {
                command: StoreCommand::Check { data_dir, duration },
            }) => {
                assert_eq!(data_dir, PathBuf::from("./holdfast-data"));
                assert_eq!(duration, std::time::Duration::from_secs(2));
            }
            other => panic!("{other:?}"),
        }
        let err =
            Cli::try_parse_from(["holdfast", "store", "check", "--duration", "soon"]).unwrap_err();
        assert_eq!(err.exit_code(), 2);
    }

    #[test]
    fn bench_subcommand() {
        let cli = Cli::try_parse_from(["holdfast", "bench", "fanin", "-q", "1", "--json"]).unwrap();
        match cli.command {
            Command::Bench(args) => {
                assert_eq!(args.scenario, holdfast_bench::Scenario::Fanin);
                assert_eq!((args.qos, args.json), (1, true));
            }
            other => panic!("{other:?}"),
        }
        let err = Cli::try_parse_from(["holdfast", "bench", "sideways"]).unwrap_err();
        assert_eq!(err.exit_code(), 2);
    }

    #[test]
    fn command_line_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn serve_without_arguments_runs_on_the_defaults() {
        let args = serve_args(&[]).unwrap();
        assert_eq!(args.load_config().unwrap(), Config::default());
    }

    #[test]
    fn serve_accepts_every_option() {
        let args = serve_args(&[
            "--config",
            "/etc/holdfast.toml",
            "--listen",
            "127.0.0.1:1884",
            "-l",
            "[::1]:1885",
            "--data-dir",
            "/tmp/hf",
            "--log-level",
            "debug,holdfast_core=trace",
            "--admin-listen",
            "127.0.0.1:8080",
        ])
        .unwrap();
        assert_eq!(args.config, Some(PathBuf::from("/etc/holdfast.toml")));
        assert_eq!(
            args.listen,
            [
                "127.0.0.1:1884".parse().unwrap(),
                "[::1]:1885".parse::<SocketAddr>().unwrap()
            ]
        );
        assert_eq!(args.data_dir, Some(PathBuf::from("/tmp/hf")));
        assert_eq!(args.log_level.as_deref(), Some("debug,holdfast_core=trace"));
        assert_eq!(args.admin_listen, Some("127.0.0.1:8080".parse().unwrap()));
    }

    #[test]
    fn bad_option_values_are_usage_errors() {
        for args in [
            &["--listen", "localhost"][..],
            &["--listen", "1883"],
            &["--log-level", "loud"],
            &["--admin-listen", "x"],
            &["--unknown"],
        ] {
            let err = serve_args(args).unwrap_err();
            assert_eq!(err.exit_code(), 2, "{args:?}");
        }
        let err = serve_args(&["--log-level", "inof"]).unwrap_err();
        assert!(
            err.to_string().contains("unknown log level \"inof\""),
            "{err}"
        );
    }

    #[test]
    fn help_and_version() {
        let err = Cli::try_parse_from(["holdfast"]).unwrap_err();
        assert_eq!(
            err.kind(),
            ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand
        );
        let err = Cli::try_parse_from(["holdfast", "--version"]).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::DisplayVersion);
        assert!(err.to_string().contains(env!("CARGO_PKG_VERSION")));
        let help = Cli::try_parse_from(["holdfast", "serve", "--help"])
            .unwrap_err()
            .to_string();
        for option in [
            "--config <FILE>",
            "--listen <ADDR:PORT>",
            "--data-dir <DIR>",
            "--log-level <LEVEL>",
            "--admin-listen <ADDR:PORT>",
        ] {
            assert!(help.contains(option), "{option} in:\n{help}");
        }
    }

    #[test]
    fn overrides_replace_the_configured_values() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("holdfast.toml");
        std::fs::write(
            &path,
            "[[listener]]\nbind = \"0.0.0.0:8883\"\nprotocol = \"tls\"\ncert = \"c\"\nkey = \"k\"\n\
             [storage]\ndata_dir = \"/var/lib/holdfast\"\n[log]\nlevel = \"warn\"\n[limits]\nmax_inflight = 9\n",
        )
        .unwrap();
        let path = path.to_str().unwrap();

        let config = serve_args(&["-c", path]).unwrap().load_config().unwrap();
        assert_eq!(config.listeners[0].protocol, ListenerProtocol::Tls);
        assert_eq!(config.log.level, "warn");

        let config = serve_args(&[
            "-c",
            path,
            "--listen",
            "127.0.0.1:1883",
            "--listen",
            "127.0.0.1:1884",
            "--data-dir",
            "data",
            "--log-level",
            "debug",
        ])
        .unwrap()
        .load_config()
        .unwrap();
        assert_eq!(
            config.listeners,
            [
                ListenerConfig::tcp("127.0.0.1:1883".parse().unwrap()),
                ListenerConfig::tcp("127.0.0.1:1884".parse().unwrap()),
            ]
        );
        assert_eq!(config.storage.data_dir, PathBuf::from("data"));
        assert_eq!(config.log.level, "debug");
        assert_eq!(
            config.core.max_inflight, 9,
            "the rest of the file still applies"
        );
    }

    #[test]
    fn config_errors_surface_with_their_message() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bad.toml");
        std::fs::write(&path, "[limits]\nmax_inflight = 0\n").unwrap();
        let err = serve_args(&["--config", path.to_str().unwrap()])
            .unwrap()
            .load_config()
            .unwrap_err();
        assert!(
            err.to_string().contains("line 2: limits.max_inflight: "),
            "{err}"
        );

        let err = serve_args(&["--listen", "0.0.0.0:1883", "--listen", "0.0.0.0:1883"])
            .unwrap()
            .load_config()
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "command line: --listen: 0.0.0.0:1883 is given twice"
        );
    }
}
