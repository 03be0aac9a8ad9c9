//! Short runs of every scenario against a real broker: Mosquitto, when it is installed (the test
//! says so and passes when it is not).

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use holdfast_bench::{run, BenchArgs, Report, Scenario};

fn mosquitto_binary() -> Option<PathBuf> {
    let candidates = ["/usr/sbin/mosquitto", "/usr/local/sbin/mosquitto"];
    if let Some(p) = candidates.iter().map(PathBuf::from).find(|p| p.exists()) {
        return Some(p);
    }
    std::env::var_os("PATH")?
        .to_str()?
        .split(':')
        .map(|d| PathBuf::from(d).join("mosquitto"))
        .find(|p| p.exists())
}

struct Broker {
    child: Child,
    port: u16,
    _dir: tempfile::TempDir,
}

impl Drop for Broker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_mosquitto() -> Option<Broker> {
    let Some(bin) = mosquitto_binary() else {
        eprintln!("SKIPPED: mosquitto is not installed (apt-get install mosquitto)");
        return None;
    };
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let dir = tempfile::tempdir().unwrap();
    let conf = dir.path().join("mosquitto.conf");
    std::fs::write(
        &conf,
        format!(
            "listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\n\
             max_inflight_messages 64\nmax_queued_messages 0\nlog_dest none\n"
        ),
    )
    .unwrap();
    let child = Command::new(bin)
        .arg("-c")
        .arg(&conf)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "mosquitto did not start");
        std::thread::sleep(Duration::from_millis(20));
    }
    Some(Broker {
        child,
        port,
        _dir: dir,
    })
}

async fn bench(broker: &Broker, args: &[&str]) -> Report {
    let port = broker.port.to_string();
    let mut argv = args.to_vec();
    argv.extend(["--port", &port, "--no-progress"]);
    if !args.contains(&"--grace") {
        argv.extend(["--grace", "2s"]);
    }
    let report = run(BenchArgs::try_parse_from(&argv).unwrap())
        .await
        .unwrap_or_else(|e| panic!("{argv:?}: {e}"));
    eprintln!("{}", report.table());
    report
}

#[tokio::test(flavor = "current_thread")]
async fn every_scenario_runs_cleanly_against_mosquitto() {
    let Some(broker) = start_mosquitto() else {
        return;
    };
    let pid = broker.child.id().to_string();
    for (qos, protocol) in [("0", "3.1.1"), ("1", "3.1.1"), ("1", "5"), ("2", "5")] {
        let args = [
            "fanin",
            "-q",
            qos,
            "--protocol",
            protocol,
            "-P",
            "3",
            "-d",
            "0.5s",
            "--warmup",
            "0.2s",
            "--pid",
            &pid,
        ];
        let r = bench(&broker, &args).await;
        assert!(!r.failed, "fanin QoS {qos} v{protocol}: {:?}", r.errors);
        assert!(r.delivered > 0 && r.sent > 0);
        assert_eq!((r.duplicated, r.reordered), (0, 0));
        if qos != "0" {
            assert_eq!(r.lost, 0);
            assert_eq!(r.acked, r.sent, "everything acknowledged");
            assert!(r.ack_latency.is_some());
        }
        assert_eq!(r.per_publisher.len(), 3);
        assert!(r.latency.as_ref().unwrap().count > 0);
        assert!(r.broker_process.is_some());
    }
    for qos in ["0", "1"] {
        let r = bench(&broker, &["fanout", "-q", qos, "-S", "5", "-n", "2000"]).await;
        assert!(!r.failed, "fanout QoS {qos}: {:?}", r.errors);
        assert_eq!(r.sent, 2000);
        assert_eq!(r.expected, 10_000);
        if qos == "1" {
            assert_eq!(r.delivered, 10_000);
        }
    }
    // Fixed rate: 2 publishers x 500/s for 0.5 s.
    let r = bench(
        &broker,
        &[
            "fanin", "-q", "1", "-P", "2", "-r", "500", "-d", "0.5", "--warmup", "0",
        ],
    )
    .await;
    assert!(!r.failed, "{:?}", r.errors);
    assert!((300..=620).contains(&r.sent), "rate limited: {}", r.sent);

    let r = bench(&broker, &["conns", "-n", "200", "-d", "0.2", "--pid", &pid]).await;
    assert_eq!(r.scenario, Scenario::Conns);
    let c = r.conns.as_ref().unwrap();
    assert_eq!((c.connected, c.failed, c.alive_after_hold), (200, 0, 200));
    assert!(c.rss_per_conn_bytes.is_some());
    assert!(!r.failed, "{:?}", r.errors);

    for (qos, protocol) in [("1", "3.1.1"), ("2", "5")] {
        let r = bench(
            &broker,
            &[
                "durable",
                "-q",
                qos,
                "--protocol",
                protocol,
                "-n",
                "500",
                "-P",
                "2",
            ],
        )
        .await;
        let d = r.durable.as_ref().unwrap();
        assert!(d.session_present, "QoS {qos} v{protocol}");
        assert!(!r.failed, "durable QoS {qos}: {:?}", r.errors);
        assert_eq!((r.sent, r.delivered, r.lost), (1000, 1000, 0));
        assert!(d.time_to_all_s.is_some());
    }
}

#[tokio::test(flavor = "current_thread")]
async fn restart_cmd_runs_and_a_lost_session_fails_the_run() {
    let Some(broker) = start_mosquitto() else {
        return;
    };
    // A restart that keeps the broker: the session survives.
    let r = bench(
        &broker,
        &[
            "durable",
            "-q",
            "1",
            "-n",
            "100",
            "--restart-cmd",
            "sleep 0.1",
        ],
    )
    .await;
    let d = r.durable.as_ref().unwrap();
    assert!(d.restart_s.unwrap() >= 0.1);
    assert!(!r.failed, "{:?}", r.errors);

    // A real restart of Mosquitto without persistence: the session and its queue are gone, and the
    // run says so and fails.
    let dir = broker._dir.path();
    let conf = dir.join("mosquitto.conf");
    let pid_file = dir.join("restarted.pid");
    let bin = mosquitto_binary().unwrap();
    // (Mosquitto's own pid_file cannot be written once it drops root privileges.)
    let restart = format!(
        "kill {pid}; sleep 0.5; {bin} -c {conf} >/dev/null 2>&1 & echo $! > {pid_file}",
        pid = broker.child.id(),
        bin = bin.display(),
        conf = conf.display(),
        pid_file = pid_file.display()
    );
    let r = bench(
        &broker,
        &[
            "durable",
            "-q",
            "1",
            "-n",
            "100",
            "--restart-cmd",
            &restart,
            "--grace",
            "0.5s",
        ],
    )
    .await;
    if let Ok(pid) = std::fs::read_to_string(&pid_file) {
        let _ = Command::new("kill").arg(pid.trim()).status();
    }
    assert!(r.failed);
    assert!(!r.durable.as_ref().unwrap().session_present);
    assert_eq!(r.lost, 100);
    assert!(
        r.errors
            .iter()
            .any(|e| e.contains("did not keep the session")),
        "{:?}",
        r.errors
    );
}
