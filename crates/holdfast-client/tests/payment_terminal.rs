//! The payment_terminal example survives `kill -9` between publish and PUBACK: run against a
//! Mosquitto it starts (skipped when `mosquitto` is not installed, or when the example was not
//! built, e.g. under `cargo test --test payment_terminal`; `cargo test -p holdfast-client` builds it).

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use holdfast_client::{Client, ClientOptions, QoS};

fn example() -> Option<PathBuf> {
    let exe = std::env::current_exe().ok()?;
    let path = exe.parent()?.parent()?.join("examples/payment_terminal");
    path.exists().then_some(path)
}

fn mosquitto(dir: &std::path::Path) -> Option<(Child, u16)> {
    if !Command::new("sh")
        .args(["-c", "command -v mosquitto"])
        .output()
        .is_ok_and(|o| o.status.success())
    {
        return None;
    }
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .ok()?
        .local_addr()
        .ok()?
        .port();
    let conf = dir.join("mosquitto.conf");
    std::fs::write(
        &conf,
        format!("listener {port} 127.0.0.1\nallow_anonymous true\n"),
    )
    .ok()?;
    let child = Command::new("mosquitto")
        .arg("-c")
        .arg(&conf)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .ok()?;
    let deadline = Instant::now() + Duration::from_secs(5);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "mosquitto did not start");
        std::thread::sleep(Duration::from_millis(50));
    }
    Some((child, port))
}

fn signal(pid: u32, sig: &str) {
    let ok = Command::new("kill").arg(sig).arg(pid.to_string()).status();
    assert!(ok.is_ok_and(|s| s.success()), "kill {sig} {pid}");
}

#[tokio::test]
async fn payment_survives_kill_between_publish_and_puback() {
    let Some(bin) = example() else {
        eprintln!("SKIPPED: the payment_terminal example is not built");
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let Some((mut broker, port)) = mosquitto(dir.path()) else {
        eprintln!("SKIPPED: mosquitto is not installed");
        return;
    };
    let opts = ClientOptions::new("127.0.0.1", port, "processor");
    let sub_c = Client::connect(opts).await.unwrap();
    let mut sub = sub_c
        .subscribe("payments/#", QoS::AtLeastOnce)
        .await
        .unwrap();

    // The broker freezes: no PUBACK can come. The terminal stores 5 payments and is killed.
    signal(broker.id(), "-STOP");
    let store = dir.path().join("terminal");
    let mut terminal = Command::new(&bin)
        .arg(&store)
        .args(["127.0.0.1", &port.to_string(), "5"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(terminal.stdout.take().unwrap()).lines();
    for n in 0..5 {
        assert_eq!(lines.next().unwrap().unwrap(), format!("stored {n}"));
    }
    terminal.kill().unwrap(); // SIGKILL
    terminal.wait().unwrap();
    signal(broker.id(), "-CONT");

    // Started again with the same directory, it delivers them.
    let status = Command::new(&bin)
        .arg(&store)
        .args(["127.0.0.1", &port.to_string(), "0"])
        .status()
        .unwrap();
    assert!(status.success());
    let mut got = Vec::new();
    while got.len() < 5 {
        let m = tokio::time::timeout(Duration::from_secs(5), sub.recv())
            .await
            .expect("payment delivered")
            .unwrap();
        let text = String::from_utf8(m.payload.to_vec()).unwrap();
        if !got.contains(&text) {
            got.push(text);
        }
    }
    let want: Vec<_> = (0..5)
        .map(|n| format!("terminal-7 payment {n} EUR 2.50"))
        .collect();
    assert_eq!(got, want);
    sub_c.disconnect().await.unwrap();
    let _ = broker.kill();
    let _ = broker.wait();
}
