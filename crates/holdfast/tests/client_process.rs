//! holdfast-client and `holdfast pub` as processes: the lock on the persistence directory, and
//! `holdfast pub --timeout`.

mod support;

use std::io::{Read, Write};
use std::net::TcpListener;
use std::time::{Duration, Instant};

use holdfast_client::{Client, ClientError, Durability, QoS};
use support::client::opts;
use support::process::run_with_timeout;
use support::{holdfast_command, Broker, TIMEOUT};

#[tokio::test] // One persistence directory, one client at a time: the second gets Locked(dir).
async fn persistence_directory_is_locked() {
    let broker = Broker::start();
    let dir = tempfile::tempdir().unwrap();
    let first =
        Client::start(opts(broker.port(), "lock-a").with_persistence(dir.path(), Durability::Sync))
            .unwrap();
    // Another client id makes no difference: the store is one log.
    let second =
        Client::start(opts(broker.port(), "lock-b").with_persistence(dir.path(), Durability::Sync));
    match second {
        Err(ClientError::Locked(d)) => assert_eq!(d, dir.path()),
        other => panic!("expected Locked, got {other:?}"),
    }
    let e = ClientError::Locked(dir.path().to_path_buf()).to_string();
    assert!(
        e.contains(&dir.path().display().to_string()) && e.contains("in use"),
        "{e}"
    );

    // Another process: `holdfast pub` on the same directory fails and names it.
    let out = run_with_timeout(
        holdfast_command()
            .args(["pub", "-h", "127.0.0.1", "-p", &broker.port().to_string()])
            .args(["-i", "lock-c", "--persist-dir"])
            .arg(dir.path())
            .args(["-t", "lock/t", "-q", "1", "-m", "x"]),
        TIMEOUT,
    );
    assert!(!out.success(), "{}", out.describe());
    assert!(
        out.stderr.contains(&dir.path().display().to_string()) && out.stderr.contains("in use"),
        "{}",
        out.describe()
    );

    // Once the first client is gone the directory is free again, its session intact.
    first
        .publish("lock/t", "kept", QoS::AtLeastOnce, false)
        .await
        .unwrap();
    first.disconnect().await.unwrap();
    let again =
        Client::start(opts(broker.port(), "lock-a").with_persistence(dir.path(), Durability::Sync))
            .unwrap();
    again.disconnect().await.unwrap();
}

/// A server that accepts CONNECT with CONNACK (3.1.1) and then never acknowledges anything.
fn silent_server() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for s in l.incoming() {
            let Ok(mut s) = s else { return };
            std::thread::spawn(move || {
                let mut buf = [0u8; 1024];
                if s.read(&mut buf).unwrap_or(0) == 0 {
                    return;
                }
                let _ = s.write_all(&[0x20, 0x02, 0x00, 0x00]);
                while s.read(&mut buf).unwrap_or(0) > 0 {}
            });
        }
    });
    port
}

fn pub_cmd(port: u16, extra: &[&str]) -> support::process::CmdOutput {
    run_with_timeout(
        holdfast_command()
            .args(["pub", "-h", "127.0.0.1", "-p", &port.to_string()])
            .args(["-t", "to/t", "-q", "1", "-m", "hello"])
            .args(extra),
        TIMEOUT,
    )
}

#[test] // `pub --timeout`: no PUBACK in time -> exit status 1 and a message saying how far it got.
fn pub_timeout_when_not_acknowledged() {
    let port = silent_server();
    let start = Instant::now();
    let out = pub_cmd(port, &["--timeout", "1", "--repeat", "3"]);
    assert!(!out.success() && !out.timed_out, "{}", out.describe());
    assert!(
        start.elapsed() < Duration::from_secs(4),
        "{:?}",
        start.elapsed()
    );
    assert!(
        out.stderr
            .contains("timed out after 1s: 0 of 3 message(s) acknowledged"),
        "{}",
        out.describe()
    );
}

#[test] // `pub --timeout` with nothing listening: still ends in time with a clear error.
fn pub_timeout_without_a_broker() {
    let port = support::free_port();
    let out = pub_cmd(port, &["--timeout", "1"]);
    assert!(!out.success() && !out.timed_out, "{}", out.describe());
    assert!(out.stderr.contains("error:"), "{}", out.describe());
    // With a persistence directory the message is kept for the next run.
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().display().to_string();
    let out = pub_cmd(port, &["--timeout", "1", "-i", "late", "--persist-dir", &d]);
    assert!(!out.success() && !out.timed_out, "{}", out.describe());
    assert!(
        out.stderr
            .contains("timed out after 1s: 0 of 1 message(s) acknowledged")
            && out.stderr.contains(&format!("stay in {d}")),
        "{}",
        out.describe()
    );
}

#[test] // Acknowledged in time: exit status 0; bad values are refused before connecting.
fn pub_timeout_met_and_bad_values() {
    let broker = Broker::start();
    let out = pub_cmd(broker.port(), &["--timeout", "5", "--repeat", "20"]);
    assert!(out.success(), "{}", out.describe());
    for bad in ["0", "-1", "soon", "inf"] {
        let out = pub_cmd(broker.port(), &[&format!("--timeout={bad}")]);
        assert!(!out.success(), "{bad}: {}", out.describe());
        assert!(
            out.stderr.contains("--timeout"),
            "{bad}: {}",
            out.describe()
        );
    }
}
