//! Crash test of the client's Session state: `holdfast pub --persist-dir --durability sync`
//! publishing QoS 1 and QoS 2 is SIGKILLed at random moments and restarted (and the broker is
//! SIGKILLed once mid-run); every message it reported stored reaches a subscriber, QoS 2 once.

mod support;

use std::collections::HashMap;
use std::process::Command;
use std::time::Duration;

use support::process::BgProcess;
use support::{holdfast_command, Broker, TIMEOUT};

/// Starts `holdfast pub --persist-dir DIR --durability sync --report -l` reading `lines`.
fn spawn_pub(port: u16, dir: &std::path::Path, qos: u8, lines: &std::path::Path) -> BgProcess {
    let bin = std::env::var("HOLDFAST_TEST_BIN")
        .unwrap_or_else(|_| env!("CARGO_BIN_EXE_holdfast").to_string());
    let script = format!(
        "exec {bin} pub -h 127.0.0.1 -p {port} -i crash-pub-{qos} -c --persist-dir {} \
         --durability sync --report -q {qos} -t crash/q{qos} -l < {}",
        dir.display(),
        lines.display()
    );
    BgProcess::spawn(Command::new("sh").args(["-c", &script]))
}

/// [MQTT-4.1.0-1] with `sync`: every message whose publish returned ("stored", fsync'd) is delivered
/// after SIGKILL of the publisher at random moments and a restart of the broker; QoS 2 exactly once.
#[test]
fn crash_of_the_publisher_loses_nothing() {
    let (mut rng, seed) = support::rng::Rng::from_env("client crash");
    eprintln!("seed {seed}");
    let mut broker = Broker::start();
    let port = broker.port();
    let port_s = port.to_string();
    let mut sub = BgProcess::spawn(holdfast_command().args([
        "sub",
        "-h",
        "127.0.0.1",
        "-p",
        &port_s,
        "-i",
        "crash-sub",
        "-c",
        "-q",
        "2",
        "-t",
        "crash/#",
        "-v",
        "-V",
        "5",
    ]));
    std::thread::sleep(Duration::from_millis(500));
    let work = tempfile::tempdir().unwrap();
    let mut stored: HashMap<String, u8> = HashMap::new();
    let mut acked = 0;
    for round in 0..6 {
        for qos in [1u8, 2] {
            let dir = work.path().join(format!("pub{qos}"));
            let lines = work.path().join(format!("lines-{round}-{qos}"));
            let text: String = (0..1000).map(|i| format!("r{round}q{qos}n{i}\n")).collect();
            std::fs::write(&lines, text).unwrap();
            let mut p = spawn_pub(port, &dir, qos, &lines);
            std::thread::sleep(Duration::from_millis(rng.range(20, 400)));
            // Mosquitto keeps its state only at a clean shutdown: SIGKILL of it loses messages.
            if round == 3 && !support::is_mosquitto() {
                // The broker too dies (SIGKILL) while the publisher runs.
                broker.restart();
                std::thread::sleep(Duration::from_millis(rng.range(0, 300)));
            }
            p.kill(); // SIGKILL at a random moment
            let _ = p.wait_exit(TIMEOUT);
            for l in p.lines() {
                if let Some(m) = l.strip_prefix("stored ") {
                    stored.insert(m.to_string(), qos);
                }
                acked += usize::from(l.starts_with("acked "));
            }
        }
    }
    // Resume both publishers: what they kept goes out.
    for qos in [1u8, 2] {
        let empty = work.path().join("empty");
        std::fs::write(&empty, "").unwrap();
        let mut p = spawn_pub(port, &work.path().join(format!("pub{qos}")), qos, &empty);
        assert!(
            p.wait_exit(Duration::from_secs(30))
                .is_some_and(|s| s.success()),
            "{}",
            p.describe()
        );
    }
    assert!(!stored.is_empty());
    let mut seen: HashMap<String, u32> = HashMap::new();
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while stored.keys().any(|k| !seen.contains_key(k)) && std::time::Instant::now() < deadline {
        if let Some(line) = sub.wait_for_line(Duration::from_millis(200), |_| true) {
            if let Some((_, m)) = line.split_once(' ') {
                *seen.entry(m.to_string()).or_default() += 1;
            }
        }
    }
    let missing: Vec<_> = stored.keys().filter(|k| !seen.contains_key(*k)).collect();
    assert!(
        missing.is_empty(),
        "{} of {} stored messages lost: {missing:?}",
        missing.len(),
        stored.len()
    );
    let dups: Vec<_> = seen
        .iter()
        .filter(|(k, n)| **n > 1 && k.contains("q2"))
        .collect();
    assert!(dups.is_empty(), "QoS 2 messages delivered twice: {dups:?}");
    eprintln!(
        "{} messages stored and delivered across kills ({acked} acknowledged before the kill)",
        stored.len()
    );
}
