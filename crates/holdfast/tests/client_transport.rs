//! holdfast-client transports against the Holdfast binary: MQTT over WebSocket (ws and wss, the
//! `ws` feature), TLS with the system's root certificates, and `holdfast pub` / `sub` with both.

mod support;

use std::process::Command;
use std::time::Duration;

use holdfast_client::{Client, ClientError, ClientOptions, QoS, TlsOptions};
use support::client::{opts, recv};
use support::process::{run_with_timeout, BgProcess};
use support::secure::{make_pki, temp_dir, Pki, Server};
use support::{holdfast_command, TIMEOUT};

const CONFIG: &str = r#"
[[listener]]
bind = "127.0.0.1:{port0}"
[[listener]]
bind = "127.0.0.1:{port1}"
protocol = "ws"
[[listener]]
bind = "127.0.0.1:{port2}"
protocol = "wss"
path = "/ws"
cert = "{dir}/server.pem"
key = "{dir}/server.key"
[[listener]]
bind = "127.0.0.1:{port3}"
protocol = "tls"
cert = "{dir}/server.pem"
key = "{dir}/server.key"
[storage]
durability = "volatile"
"#;

/// The broker with a TCP (0), ws on /mqtt (1), wss on /ws (2) and TLS (3) listener.
fn start() -> Option<(Server, Pki)> {
    if support::holdfast_only("WebSocket and TLS listener config") {
        return None;
    }
    let dir = temp_dir();
    let pki = make_pki(dir.path(), "", "c");
    Some((Server::start(CONFIG, dir), pki))
}

fn tls(pki: &Pki) -> TlsOptions {
    TlsOptions {
        ca_file: Some(pki.ca.clone()),
        server_name: Some("localhost".into()),
        ..TlsOptions::default()
    }
}

/// A WebSocket client and a TCP client exchange QoS 0/1/2 messages both ways, and a message of
/// 300 KB, which the client writes as several WebSocket frames [MQTT-6.0.0-2].
async fn ws_round_trip(ws: ClientOptions, tcp_port: u16) {
    let ws_c = Client::connect(ws).await.unwrap();
    let tcp_c = Client::connect(opts(tcp_port, "tcp-peer").with_v5(true))
        .await
        .unwrap();
    let mut at_ws = ws_c.subscribe("to-ws/#", QoS::ExactlyOnce).await.unwrap();
    let mut at_tcp = tcp_c.subscribe("to-tcp/#", QoS::ExactlyOnce).await.unwrap();
    for q in [QoS::AtMostOnce, QoS::AtLeastOnce, QoS::ExactlyOnce] {
        let text = format!("q{}", q.as_u8());
        ws_c.publish("to-tcp/x", text.clone(), q, false)
            .await
            .unwrap();
        tcp_c
            .publish("to-ws/x", text.clone(), q, false)
            .await
            .unwrap();
        let (a, b) = (recv(&mut at_tcp).await, recv(&mut at_ws).await);
        assert_eq!((&a.payload[..], a.qos), (text.as_bytes(), q));
        assert_eq!((&b.payload[..], b.qos), (text.as_bytes(), q));
    }
    let big: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
    ws_c.publish("to-tcp/big", big.clone(), QoS::AtLeastOnce, false)
        .await
        .unwrap();
    tcp_c
        .publish("to-ws/big", big.clone(), QoS::AtLeastOnce, false)
        .await
        .unwrap();
    assert_eq!(recv(&mut at_tcp).await.payload, big);
    assert_eq!(recv(&mut at_ws).await.payload, big);
    ws_c.disconnect().await.unwrap();
    tcp_c.disconnect().await.unwrap();
}

#[tokio::test] // [MQTT-6.0.0-1] [MQTT-6.0.0-3] MQTT 3.1.1 and 5.0 over ws://, subprotocol mqtt.
async fn websocket_round_trip() {
    let Some((server, _pki)) = start() else {
        return;
    };
    for v5 in [false, true] {
        let o = opts(server.ports[1], "ws-c")
            .with_v5(v5)
            .with_websocket("/mqtt");
        ws_round_trip(o, server.ports[0]).await;
    }
}

#[tokio::test] // MQTT over wss:// (TLS, then WebSocket) on a listener with its own path.
async fn websocket_over_tls() {
    let Some((server, pki)) = start() else {
        return;
    };
    let o = opts(server.ports[2], "wss-c")
        .with_v5(true)
        .with_tls(tls(&pki))
        .with_websocket("/ws");
    ws_round_trip(o, server.ports[0]).await;
}

#[tokio::test] // A WebSocket handshake refused (wrong path): the first connect fails and says why.
async fn websocket_wrong_path_is_a_clear_error() {
    let Some((server, _pki)) = start() else {
        return;
    };
    let r = Client::connect(opts(server.ports[1], "ws-bad").with_websocket("/nope")).await;
    match r {
        Err(ClientError::Io(why)) => assert!(why.contains("WebSocket handshake"), "{why}"),
        other => panic!("expected a handshake error, got {other:?}"),
    }
    let r = Client::connect(opts(server.ports[1], "ws-bad").with_websocket("mqtt")).await;
    assert!(matches!(r, Err(ClientError::Invalid(_))), "{r:?}");
}

fn pubsub(server: &Server, pki: &Pki, ws: Option<(usize, &str)>, tls_on: bool) {
    let (port, extra): (u16, Vec<String>) = match ws {
        Some((i, path)) => (
            server.ports[i],
            vec!["--ws".into(), "--ws-path".into(), path.into()],
        ),
        None => (server.ports[3], vec![]),
    };
    let mut args: Vec<String> = vec![
        "-h".into(),
        "127.0.0.1".into(),
        "-p".into(),
        port.to_string(),
    ];
    args.extend(extra);
    if tls_on {
        args.extend(["--cafile".into(), pki.ca.display().to_string()]);
        args.extend(["--tls-server-name".into(), "localhost".into()]);
    }
    let mut sub = BgProcess::spawn(
        holdfast_command()
            .arg("sub")
            .args(&args)
            .args(["-t", "cli/#", "-q", "1", "-C", "2", "-V", "5"]),
    );
    std::thread::sleep(Duration::from_millis(500));
    for m in ["one", "two"] {
        let out = run_with_timeout(
            holdfast_command()
                .arg("pub")
                .args(&args)
                .args(["-t", "cli/x", "-q", "1", "-m", m]),
            TIMEOUT,
        );
        assert!(out.success(), "{}", out.describe());
    }
    assert!(
        sub.wait_exit(TIMEOUT).is_some_and(|s| s.success()),
        "{}",
        sub.describe()
    );
    assert_eq!(sub.lines(), ["one", "two"], "{}", sub.describe());
}

#[test] // `holdfast pub` / `sub --ws`: ws:// and, with --cafile, wss://.
fn holdfast_pub_and_sub_over_websocket() {
    let Some((server, pki)) = start() else {
        return;
    };
    pubsub(&server, &pki, Some((1, "/mqtt")), false);
    pubsub(&server, &pki, Some((2, "/ws")), true);
}

/// `holdfast pub --tls-use-os-certs` with SSL_CERT_FILE pointing where the system roots are read.
fn pub_with_os_certs(server: &Server, roots: &std::path::Path) -> support::process::CmdOutput {
    run_with_timeout(
        holdfast_command()
            .env("SSL_CERT_FILE", roots)
            .env_remove("SSL_CERT_DIR")
            .args(["pub", "-h", "127.0.0.1", "-p", &server.ports[3].to_string()])
            .args(["--tls-use-os-certs", "--tls-server-name", "localhost"])
            .args(["-t", "roots/x", "-q", "1", "-m", "hi"]),
        TIMEOUT,
    )
}

#[test] // No CA file: the server is verified against the system's roots (here: SSL_CERT_FILE).
fn tls_with_system_root_certificates() {
    let Some((server, pki)) = start() else {
        return;
    };
    let out = pub_with_os_certs(&server, &pki.ca);
    assert!(out.success(), "{}", out.describe());
    // Roots that did not sign the server's certificate: refused, and the error says so.
    let other = temp_dir();
    let other_pki = make_pki(other.path(), "other-", "c");
    let out = pub_with_os_certs(&server, &other_pki.ca);
    assert!(!out.success(), "{}", out.describe());
    assert!(
        out.stderr.contains("certificate") || out.stderr.contains("Certificate"),
        "{}",
        out.describe()
    );
    // --cafile and --tls-use-os-certs exclude each other.
    let out = run_with_timeout(
        Command::new(env!("CARGO_BIN_EXE_holdfast"))
            .args([
                "pub",
                "-t",
                "t",
                "-m",
                "m",
                "--tls-use-os-certs",
                "--cafile",
            ])
            .arg(&pki.ca),
        TIMEOUT,
    );
    assert!(!out.success(), "{}", out.describe());
}
