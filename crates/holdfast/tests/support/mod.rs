//! Test harness shared by every integration test binary (`mod support;`).
//!
//! `Broker` starts a real broker process on its own free 127.0.0.1 port with its own temporary
//! directory, captures its output to a log file and prints that log when the test panics.
//! By default the broker is the `holdfast` binary of this package (`HOLDFAST_TEST_BIN=path`
//! picks another build). With the environment variable
//! `HOLDFAST_TEST_BROKER=mosquitto` the same tests run against Mosquitto instead: a reference
//! run that checks the tests' expectations against an independent broker. Tests that need a
//! Holdfast-only behaviour or option call `holdfast_only(...)` and return early there.
//!
//! Every wait here is bounded: nothing in a test may hang.
#![allow(dead_code)]

pub mod client;
pub mod mqtt3;
pub mod mqtt5;
pub mod process;
pub mod raw;
pub mod rng;

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

/// The bound for every single wait on the broker (a packet, an acknowledgement, a close).
pub const TIMEOUT: Duration = Duration::from_secs(5);
/// How long a test watches for something that must NOT arrive, after a barrier message
/// proved that everything sent before it has been processed.
pub const QUIET: Duration = Duration::from_millis(300);
/// How long a broker gets to start accepting TCP connections.
const START_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BrokerKind {
    Holdfast,
    Mosquitto,
}

/// Which broker the tests run against (`HOLDFAST_TEST_BROKER`, default `holdfast`).
pub fn broker_kind() -> BrokerKind {
    match std::env::var("HOLDFAST_TEST_BROKER").as_deref() {
        Err(_) | Ok("") | Ok("holdfast") => BrokerKind::Holdfast,
        Ok("mosquitto") => BrokerKind::Mosquitto,
        Ok(other) => panic!("HOLDFAST_TEST_BROKER={other:?}: expected `holdfast` or `mosquitto`"),
    }
}

pub fn is_mosquitto() -> bool {
    broker_kind() == BrokerKind::Mosquitto
}

/// Returns true (and prints a note) when the test must be skipped because it checks a
/// Holdfast-only option or behaviour and the run is the Mosquitto reference run.
pub fn holdfast_only(why: &str) -> bool {
    if is_mosquitto() {
        eprintln!("SKIPPED under HOLDFAST_TEST_BROKER=mosquitto: {why}");
        true
    } else {
        false
    }
}

/// A broker process owned by one test. Dropping it kills the process.
pub struct Broker {
    kind: BrokerKind,
    port: u16,
    dir: tempfile::TempDir,
    child: Option<Child>,
    starts: u32,
    /// Set once the log went into a panic message, so Drop doesn't print it twice.
    log_shown: bool,
}

impl Broker {
    /// A broker with the default configuration.
    pub fn start() -> Broker {
        Broker::start_with("")
    }

    /// A broker with the given Holdfast TOML configuration. Under Mosquitto the known keys
    /// are translated (see `mosquitto_options`); an untranslatable key is a test bug: such a
    /// test must call `holdfast_only` first.
    pub fn start_with(config_toml: &str) -> Broker {
        let kind = broker_kind();
        let dir = tempfile::Builder::new()
            .prefix("holdfast-test-")
            .tempdir()
            .expect("create temporary directory");
        match kind {
            BrokerKind::Holdfast => {
                fs::write(dir.path().join("holdfast.toml"), config_toml).expect("write config");
                fs::create_dir_all(dir.path().join("data")).expect("create data dir");
            }
            BrokerKind::Mosquitto => {
                let extra = mosquitto_options(config_toml).unwrap_or_else(|key| {
                    panic!(
                        "config key `{key}` has no Mosquitto equivalent: \
                         guard this test with support::holdfast_only(..)"
                    )
                });
                fs::write(dir.path().join("mosquitto.extra"), extra).expect("write config");
            }
        }
        let mut broker = Broker {
            kind,
            port: 0,
            dir,
            child: None,
            starts: 0,
            log_shown: false,
        };
        // Another process may grab the free port between our probe and the broker's bind:
        // retry with a fresh port when that happens.
        let mut last_error = String::new();
        for _ in 0..3 {
            broker.port = free_port();
            match broker.spawn_and_wait() {
                Ok(()) => return broker,
                Err(e) => {
                    let log = broker.log();
                    if log.contains("in use") {
                        last_error = e;
                        continue;
                    }
                    broker.log_shown = true;
                    panic!("{e}\n{}", broker.log_excerpt());
                }
            }
        }
        broker.log_shown = true;
        panic!(
            "broker could not bind a free port: {last_error}\n{}",
            broker.log_excerpt()
        );
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    pub fn kind(&self) -> BrokerKind {
        self.kind
    }

    /// The broker's data directory (kept across `restart`).
    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    pub fn log_path(&self) -> PathBuf {
        self.dir.path().join("broker.log")
    }

    /// Everything the broker printed so far (all runs).
    pub fn log(&self) -> String {
        fs::read(self.log_path())
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default()
    }

    /// Kills the broker process with SIGKILL (no shutdown handling at all) and reaps it.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill(); // std's kill is SIGKILL on Unix
            let _ = child.wait();
        }
    }

    /// Kills the broker (SIGKILL) if it runs and starts it again on the same port with the
    /// same configuration and data directory.
    pub fn restart(&mut self) {
        self.kill();
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            match self.spawn_and_wait() {
                Ok(()) => return,
                // The old listening socket can linger for a moment after SIGKILL.
                Err(_) if self.log().contains("in use") && Instant::now() < deadline => {
                    thread::sleep(Duration::from_millis(100))
                }
                Err(e) => {
                    self.log_shown = true;
                    panic!("restart failed: {e}\n{}", self.log_excerpt())
                }
            }
        }
    }

    /// Sends SIGTERM (graceful shutdown) and waits up to `timeout` for the process to exit.
    pub fn terminate(&mut self, timeout: Duration) -> Option<std::process::ExitStatus> {
        let child = self.child.as_mut()?;
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(child.id().to_string())
            .status();
        let deadline = Instant::now() + timeout;
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                self.child = None;
                return Some(status);
            }
            if Instant::now() >= deadline {
                return None;
            }
            thread::sleep(Duration::from_millis(20));
        }
    }

    /// Whether the broker process is still running.
    pub fn is_running(&mut self) -> bool {
        match self.child.as_mut() {
            Some(c) => matches!(c.try_wait(), Ok(None)),
            None => false,
        }
    }

    fn spawn_and_wait(&mut self) -> Result<(), String> {
        self.starts += 1;
        let log_path = self.log_path();
        let mut log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)
            .map_err(|e| format!("open log {}: {e}", log_path.display()))?;
        let _ = writeln!(
            log,
            "===== test harness: start #{} of {:?} on port {} =====",
            self.starts, self.kind, self.port
        );
        let mut cmd = self.command();
        cmd.stdin(Stdio::null())
            .stdout(Stdio::from(log.try_clone().map_err(|e| e.to_string())?))
            .stderr(Stdio::from(log));
        let child = cmd.spawn().map_err(|e| format!("spawn {cmd:?}: {e}"))?;
        self.child = Some(child);
        self.wait_ready()
    }

    fn command(&self) -> Command {
        match self.kind {
            BrokerKind::Holdfast => {
                // HOLDFAST_TEST_BIN runs the tests against another build (e.g. a release one).
                let bin = std::env::var_os("HOLDFAST_TEST_BIN")
                    .unwrap_or_else(|| env!("CARGO_BIN_EXE_holdfast").into());
                let mut cmd = Command::new(bin);
                cmd.arg("serve")
                    .arg("--config")
                    .arg(self.dir.path().join("holdfast.toml"))
                    .arg("--listen")
                    .arg(format!("127.0.0.1:{}", self.port))
                    .arg("--data-dir")
                    .arg(self.data_dir())
                    .arg("--log-level")
                    .arg(std::env::var("HOLDFAST_TEST_LOG_LEVEL").unwrap_or("debug".into()))
                    .env("RUST_BACKTRACE", "1");
                cmd
            }
            BrokerKind::Mosquitto => {
                let extra =
                    fs::read_to_string(self.dir.path().join("mosquitto.extra")).unwrap_or_default();
                let conf = format!(
                    "listener {} 127.0.0.1\nallow_anonymous true\npersistence false\n\
                     log_dest stderr\nlog_type all\n{extra}",
                    self.port
                );
                let path = self.dir.path().join("mosquitto.conf");
                fs::write(&path, conf).expect("write mosquitto.conf");
                let mut cmd = Command::new(mosquitto_path());
                cmd.arg("-c").arg(path);
                cmd
            }
        }
    }

    fn wait_ready(&mut self) -> Result<(), String> {
        let deadline = Instant::now() + START_TIMEOUT;
        let addr = self.addr();
        loop {
            if let Some(child) = self.child.as_mut() {
                if let Ok(Some(status)) = child.try_wait() {
                    self.child = None;
                    return Err(format!("broker exited during start-up with {status}"));
                }
            }
            if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(format!(
                    "broker did not accept TCP connections on {addr} within {START_TIMEOUT:?}"
                ));
            }
            thread::sleep(Duration::from_millis(20));
        }
    }

    /// The end of the log, for failure messages.
    pub fn log_excerpt(&self) -> String {
        const MAX: usize = 48 * 1024;
        let log = self.log();
        let start = log.len().saturating_sub(MAX);
        let start = (start..log.len())
            .find(|&i| log.is_char_boundary(i))
            .unwrap_or(0);
        format!(
            "----- broker log {} ({} bytes{}) -----\n{}\n----- end of broker log -----",
            self.log_path().display(),
            log.len(),
            if start > 0 { ", tail shown" } else { "" },
            &log[start..]
        )
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        self.kill();
        if thread::panicking() && !self.log_shown {
            eprintln!("{}", self.log_excerpt());
        }
    }
}

/// A port that was free a moment ago.
pub fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    listener.local_addr().expect("local_addr").port()
}

fn mosquitto_path() -> PathBuf {
    for p in [
        "/usr/sbin/mosquitto",
        "/usr/bin/mosquitto",
        "/usr/local/sbin/mosquitto",
    ] {
        if Path::new(p).exists() {
            return PathBuf::from(p);
        }
    }
    PathBuf::from("mosquitto")
}

/// Translates the Holdfast config keys that have a Mosquitto counterpart; `Err(key)` names the
/// first key that has none.
fn mosquitto_options(toml: &str) -> Result<String, String> {
    let mut out = String::new();
    let mut section = String::new();
    for line in toml.lines() {
        let line = line.split('#').next().unwrap_or("").trim();
        if line.is_empty() {
            continue;
        }
        if let Some(s) = line.strip_prefix('[') {
            section = s.trim_end_matches(']').trim().to_string();
            continue;
        }
        let (key, value) = line.split_once('=').ok_or_else(|| line.to_string())?;
        let (key, value) = (key.trim(), value.trim().trim_matches('"'));
        if (section.as_str(), key, value) == ("limits", "queue_full_policy", "reject-new") {
            continue; // what Mosquitto does anyway
        }
        let name = match (section.as_str(), key) {
            ("limits", "max_packet_size") => "max_packet_size",
            ("limits", "max_queued_messages") => "max_queued_messages",
            ("limits", "max_inflight") => "max_inflight_messages",
            ("limits", "topic_alias_maximum") => "max_topic_alias",
            ("limits", "max_keep_alive") => "max_keepalive",
            ("mqtt", "maximum_qos") => "max_qos",
            ("mqtt", "retain_available") => "retain_available",
            ("mqtt", "allow_zero_length_client_id") => "allow_zero_length_clientid",
            _ => return Err(format!("[{section}] {key}")),
        };
        out.push_str(&format!("{name} {value}\n"));
    }
    Ok(out)
}

/// Path of a file under this package's `tests/` directory.
pub fn tests_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests")
}

// ---------------------------------------------------------------- durability tests

impl Broker {
    /// How many times the broker process was started.
    pub fn starts(&self) -> u32 {
        self.starts
    }

    /// What the broker printed since its last start (the log of the running, or last, process).
    pub fn log_of_last_start(&self) -> String {
        let log = self.log();
        let marker = format!("===== test harness: start #{} ", self.starts);
        match log.rfind(&marker) {
            Some(i) => log[i..].to_string(),
            None => log,
        }
    }
}

/// A command running the Holdfast binary under test (`HOLDFAST_TEST_BIN` picks another build),
/// e.g. `holdfast_command().args(["store", "verify", "--data-dir", dir])`.
pub fn holdfast_command() -> Command {
    let bin = std::env::var_os("HOLDFAST_TEST_BIN")
        .unwrap_or_else(|| env!("CARGO_BIN_EXE_holdfast").into());
    let mut cmd = Command::new(bin);
    cmd.env("RUST_BACKTRACE", "1");
    cmd
}

/// Runs `holdfast store verify --data-dir DIR` (bounded) and returns what it printed.
pub fn store_verify(dir: &Path) -> process::CmdOutput {
    process::run_with_timeout(
        holdfast_command()
            .args(["store", "verify", "--data-dir"])
            .arg(dir),
        Duration::from_secs(30),
    )
}

// ---------------------------------------------------------------- admin API tests

pub mod http;

// ---------------------------------------------------------------- security tests

pub mod secure;

impl Broker {
    /// The broker process's id, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(|c| c.id())
    }

    /// The broker's resident set size in KiB (Linux /proc), while it runs.
    pub fn rss_kib(&self) -> Option<u64> {
        secure::rss_kib(self.pid()?)
    }
}
