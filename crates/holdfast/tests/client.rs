//! holdfast-client and `holdfast pub` / `holdfast sub` against the Holdfast binary, against
//! Mosquitto (skipped when it is not installed), and under SIGKILL of the publishing client and of
//! the broker.

mod support;

use std::collections::HashMap;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use holdfast_client::{Client, ClientError, ClientOptions, Durability, Outgoing, QoS};
use support::process::BgProcess;
use support::{holdfast_command, Broker, TIMEOUT};

fn opts(port: u16, id: &str) -> ClientOptions {
    ClientOptions::new("127.0.0.1", port, id)
        .with_reconnect(Duration::from_millis(50), Duration::from_millis(500))
}

async fn recv(sub: &mut holdfast_client::Subscription) -> holdfast_client::Message {
    tokio::time::timeout(TIMEOUT, sub.recv())
        .await
        .expect("a message within the timeout")
        .expect("subscription open")
}

/// Publish at QoS 0, 1, 2 and receive, subscribe / unsubscribe, on one protocol version.
async fn round_trip(port: u16, v5: bool) {
    let sub_c = Client::connect(opts(port, "rt-sub").with_v5(v5)).await.unwrap();
    let pub_c = Client::connect(opts(port, "rt-pub").with_v5(v5)).await.unwrap();
    let mut sub = sub_c.subscribe("rt/#", QoS::ExactlyOnce).await.unwrap();
    assert_eq!(sub.granted(), &[2]);
    for q in [QoS::AtMostOnce, QoS::AtLeastOnce, QoS::ExactlyOnce] {
        let payload = format!("m{}", q.as_u8());
        pub_c.publish("rt/x", payload.clone(), q, false).await.unwrap();
        let m = recv(&mut sub).await;
        assert_eq!((m.topic.as_str(), &m.payload[..], m.qos), ("rt/x", payload.as_bytes(), q));
    }
    sub_c.unsubscribe("rt/#").await.unwrap();
    pub_c.publish("rt/x", "after", QoS::AtLeastOnce, false).await.unwrap();
    let r = tokio::time::timeout(support::QUIET, sub.recv()).await;
    assert!(!matches!(r, Ok(Some(_))), "message after UNSUBSCRIBE: {r:?}");
    pub_c.disconnect().await.unwrap();
    sub_c.disconnect().await.unwrap();
    assert_eq!(
        pub_c.publish("rt/x", "closed", QoS::AtMostOnce, false).await,
        Err(ClientError::Closed)
    );
}

#[tokio::test]
async fn publish_subscribe_v311_and_v5() {
    let broker = Broker::start();
    round_trip(broker.port(), false).await;
    round_trip(broker.port(), true).await;
}

#[tokio::test] // [MQTT-4.9.0-2] the client never has more QoS > 0 PUBLISH unacknowledged than Receive Maximum.
async fn receive_maximum_is_respected() {
    if support::holdfast_only("limits.receive_maximum") {
        return;
    }
    let broker = Broker::start_with("[limits]\nreceive_maximum = 2\n");
    let c = Client::connect(opts(broker.port(), "rm").with_v5(true)).await.unwrap();
    let mut sub = c.subscribe("rm/#", QoS::AtLeastOnce).await.unwrap();
    let mut deliveries = Vec::new();
    for i in 0..50 {
        let m = Outgoing::new("rm/t", format!("{i}")).qos(QoS::ExactlyOnce);
        deliveries.push(c.enqueue(m).await.unwrap());
    }
    for d in deliveries {
        tokio::time::timeout(TIMEOUT, d).await.unwrap().unwrap();
    }
    for i in 0..50 {
        assert_eq!(recv(&mut sub).await.payload, format!("{i}").into_bytes());
    }
    c.disconnect().await.unwrap();
}

#[tokio::test] // The client reconnects by itself and resends what was not acknowledged.
async fn reconnects_after_broker_restart() {
    let mut broker = Broker::start();
    let sub_c = Client::connect(opts(broker.port(), "re-sub").with_clean_start(false).with_session_expiry(600))
        .await
        .unwrap();
    let mut sub = sub_c.subscribe("re/#", QoS::AtLeastOnce).await.unwrap();
    let pub_c = Client::connect(opts(broker.port(), "re-pub")).await.unwrap();
    pub_c.publish("re/a", "before", QoS::AtLeastOnce, false).await.unwrap();
    assert_eq!(&recv(&mut sub).await.payload[..], b"before");
    broker.restart();
    let d = pub_c
        .enqueue(Outgoing::new("re/a", "after").qos(QoS::AtLeastOnce))
        .await
        .unwrap();
    tokio::time::timeout(Duration::from_secs(10), d).await.unwrap().unwrap();
    // "before" may come again (QoS 1: its PUBACK may not have reached the broker's store).
    loop {
        let m = tokio::time::timeout(Duration::from_secs(10), sub.recv()).await.unwrap().unwrap();
        if &m.payload[..] == b"after" {
            break;
        }
        assert_eq!(&m.payload[..], b"before");
    }
}

/// Messages published while no broker runs are stored (sync) and go out in order once one does,
/// also from a new process (here: a new client on the same directory).
#[test]
fn offline_messages_survive_a_restart_of_the_client() {
    let dir = tempfile::tempdir().unwrap();
    let mut broker = Broker::start();
    let port = broker.port();
    broker.kill();
    {
        let rt = tokio::runtime::Runtime::new().unwrap();
        rt.block_on(async {
            let o = opts(port, "offline").with_persistence(dir.path(), Durability::Sync);
            let c = Client::start(o).unwrap();
            for i in 0..20 {
                let q = if i % 2 == 0 { QoS::AtLeastOnce } else { QoS::ExactlyOnce };
                c.enqueue(Outgoing::new("off/t", format!("{i}")).qos(q)).await.unwrap();
            }
        });
        // Dropping the runtime drops the client without DISCONNECT, as a crash would.
    }
    broker.restart();
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let s = Client::connect(opts(port, "offline-sub")).await.unwrap();
        let mut sub = s.subscribe("off/#", QoS::ExactlyOnce).await.unwrap();
        let o = opts(port, "offline").with_persistence(dir.path(), Durability::Sync);
        let c = Client::connect(o).await.unwrap();
        tokio::time::timeout(TIMEOUT, c.wait_idle()).await.unwrap().unwrap();
        for i in 0..20 {
            assert_eq!(recv(&mut sub).await.payload, format!("{i}").into_bytes());
        }
        c.disconnect().await.unwrap();
    });
}

#[test]
fn holdfast_pub_and_sub() {
    let broker = Broker::start();
    let port = broker.port().to_string();
    let mut sub = BgProcess::spawn(holdfast_command().args([
        "sub", "-h", "127.0.0.1", "-p", &port, "-t", "cli/#", "-q", "2", "-C", "3", "-v", "-V", "5",
    ]));
    std::thread::sleep(Duration::from_millis(500));
    for (q, m) in [("0", "zero"), ("1", "one"), ("2", "two")] {
        let out = support::process::run_with_timeout(
            holdfast_command().args(["pub", "-h", "127.0.0.1", "-p", &port, "-t", "cli/x", "-q", q, "-m", m]),
            TIMEOUT,
        );
        assert!(out.success(), "{}", out.describe());
    }
    assert!(sub.wait_exit(TIMEOUT).is_some_and(|s| s.success()), "{}", sub.describe());
    assert_eq!(sub.lines(), ["cli/x zero", "cli/x one", "cli/x two"], "{}", sub.describe());
}

/// A Mosquitto process on a free port, or None (with a note) when it is not installed.
fn mosquitto() -> Option<(Child, u16, tempfile::TempDir)> {
    let found = Command::new("sh").args(["-c", "command -v mosquitto"]).output();
    if !found.is_ok_and(|o| o.status.success()) {
        eprintln!("SKIPPED: mosquitto is not installed");
        return None;
    }
    let dir = tempfile::tempdir().unwrap();
    let port = support::free_port();
    let conf = dir.path().join("mosquitto.conf");
    std::fs::write(&conf, format!("listener {port} 127.0.0.1\nallow_anonymous true\n")).unwrap();
    let child = Command::new("mosquitto")
        .arg("-c")
        .arg(&conf)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + TIMEOUT;
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(std::time::Instant::now() < deadline, "mosquitto did not start");
        std::thread::sleep(Duration::from_millis(50));
    }
    Some((child, port, dir))
}

#[test]
fn against_mosquitto() {
    let Some((mut child, port, _dir)) = mosquitto() else {
        return;
    };
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        round_trip(port, false).await;
        round_trip(port, true).await;
    });
    let _ = child.kill();
    let _ = child.wait();
}

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
        "sub", "-h", "127.0.0.1", "-p", &port_s, "-i", "crash-sub", "-c", "-q", "2", "-t", "crash/#",
        "-v", "-V", "5",
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
            if round == 3 {
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
            p.wait_exit(Duration::from_secs(30)).is_some_and(|s| s.success()),
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
    assert!(missing.is_empty(), "{} of {} stored messages lost: {missing:?}", missing.len(), stored.len());
    let dups: Vec<_> = seen.iter().filter(|(k, n)| **n > 1 && k.contains("q2")).collect();
    assert!(dups.is_empty(), "QoS 2 messages delivered twice: {dups:?}");
    eprintln!(
        "{} messages stored and delivered across kills ({acked} acknowledged before the kill)",
        stored.len()
    );
}
