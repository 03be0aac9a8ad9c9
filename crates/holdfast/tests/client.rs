//! holdfast-client and `holdfast pub` / `holdfast sub` against the Holdfast binary and against
//! Mosquitto (skipped when it is not installed). The crash test is in client_crash.rs.

mod support;

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use holdfast_client::{Client, ClientError, Durability, Outgoing, QoS};
use support::client::{opts, recv};
use support::process::BgProcess;
use support::{holdfast_command, Broker, TIMEOUT};

/// Publish at QoS 0, 1, 2 and receive, subscribe / unsubscribe, on one protocol version.
async fn round_trip(port: u16, v5: bool) {
    let sub_c = Client::connect(opts(port, "rt-sub").with_v5(v5))
        .await
        .unwrap();
    let pub_c = Client::connect(opts(port, "rt-pub").with_v5(v5))
        .await
        .unwrap();
    let mut sub = sub_c.subscribe("rt/#", QoS::ExactlyOnce).await.unwrap();
    assert_eq!(sub.granted(), &[2]);
    for q in [QoS::AtMostOnce, QoS::AtLeastOnce, QoS::ExactlyOnce] {
        let payload = format!("m{}", q.as_u8());
        pub_c
            .publish("rt/x", payload.clone(), q, false)
            .await
            .unwrap();
        let m = recv(&mut sub).await;
        assert_eq!(
            (m.topic.as_str(), &m.payload[..], m.qos),
            ("rt/x", payload.as_bytes(), q)
        );
    }
    sub_c.unsubscribe("rt/#").await.unwrap();
    pub_c
        .publish("rt/x", "after", QoS::AtLeastOnce, false)
        .await
        .unwrap();
    let r = tokio::time::timeout(support::QUIET, sub.recv()).await;
    assert!(
        !matches!(r, Ok(Some(_))),
        "message after UNSUBSCRIBE: {r:?}"
    );
    pub_c.disconnect().await.unwrap();
    sub_c.disconnect().await.unwrap();
    assert_eq!(
        pub_c
            .publish("rt/x", "closed", QoS::AtMostOnce, false)
            .await,
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
    let c = Client::connect(opts(broker.port(), "rm").with_v5(true))
        .await
        .unwrap();
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
    // One connection: the broker never had to close it with 0x93 Receive Maximum exceeded.
    let connects = broker
        .log()
        .matches("client_id=\"rm\"}: holdfast_broker::connection: connected")
        .count();
    assert_eq!(connects, 1, "{}", broker.log());
    c.disconnect().await.unwrap();
}

#[tokio::test] // [MQTT-3.1.2-24] a PUBLISH over the server's Maximum Packet Size fails, the rest flows.
async fn oversized_publish_fails_without_breaking_the_session() {
    if support::holdfast_only("limits.max_packet_size") {
        return;
    }
    let broker = Broker::start_with("[limits]\nmax_packet_size = 1024\n");
    let c = Client::connect(opts(broker.port(), "big").with_v5(true))
        .await
        .unwrap();
    let big = vec![b'x'; 4096];
    let r = c.publish("big/t", big, QoS::AtLeastOnce, false).await;
    assert!(matches!(r, Err(ClientError::Invalid(_))), "{r:?}");
    c.publish("big/t", "small", QoS::AtLeastOnce, false)
        .await
        .unwrap();
    c.disconnect().await.unwrap();
}

#[tokio::test] // DISCONNECT 0x8E Session taken over: the old client stops instead of taking it back.
async fn taken_over_client_stops_reconnecting() {
    if support::holdfast_only("Mosquitto closes a taken-over connection without DISCONNECT 0x8E") {
        return;
    }
    let broker = Broker::start();
    let first = Client::connect(opts(broker.port(), "same").with_v5(true))
        .await
        .unwrap();
    let second = Client::connect(opts(broker.port(), "same").with_v5(true))
        .await
        .unwrap();
    let deadline = tokio::time::Instant::now() + TIMEOUT;
    while first.publish("same/t", "x", QoS::AtMostOnce, false).await != Err(ClientError::Closed) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "first client still running"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    second
        .publish("same/t", "y", QoS::AtLeastOnce, false)
        .await
        .unwrap();
    if !support::is_mosquitto() {
        let connects = broker
            .log()
            .matches("client_id=\"same\"}: holdfast_broker::connection: connected")
            .count();
        assert_eq!(connects, 2, "{}", broker.log());
    }
}

#[test] // [MQTT-3.1.2-8] the will is published when the connection ends without DISCONNECT.
fn will_is_published_when_the_client_dies() {
    let broker = Broker::start();
    let port = broker.port();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let (s, mut sub) = rt.block_on(async {
        let s = Client::connect(opts(port, "will-sub")).await.unwrap();
        let sub = s.subscribe("will/#", QoS::AtLeastOnce).await.unwrap();
        (s, sub)
    });
    {
        // Current-thread: once block_on returns, nothing runs the client's task any more.
        let dying = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let client = dying.block_on(async {
            let will = holdfast_client::LastWill {
                topic: "will/t".into(),
                payload: "gone".into(),
                qos: QoS::AtLeastOnce,
                retain: false,
                properties: Default::default(),
            };
            Client::connect(opts(port, "will-pub").with_v5(true).with_will(will))
                .await
                .unwrap()
        });
        // The runtime ends first: the socket closes without DISCONNECT.
        drop(dying);
        drop(client);
    }
    rt.block_on(async {
        assert_eq!(&recv(&mut sub).await.payload[..], b"gone");
        s.disconnect().await.unwrap();
    });
}

#[tokio::test] // Publishing to its own subscription at volume: reads and writes overlap, no deadlock.
async fn heavy_traffic_both_ways_on_one_connection() {
    // Unlimited queue: the broker must not drop what the subscriber has not taken yet.
    let broker = Broker::start_with("[limits]\nmax_queued_messages = 0\n");
    let c = Client::connect(opts(broker.port(), "loop").with_max_inflight(500))
        .await
        .unwrap();
    let mut sub = c.subscribe("loop/#", QoS::AtLeastOnce).await.unwrap();
    let payload = bytes::Bytes::from(vec![b'p'; 8 * 1024]);
    let mut deliveries = Vec::new();
    for _ in 0..2000 {
        let m = Outgoing::new("loop/t", payload.clone()).qos(QoS::AtLeastOnce);
        deliveries.push(c.enqueue(m).await.unwrap());
    }
    let received = tokio::spawn(async move {
        for _ in 0..2000 {
            recv(&mut sub).await;
        }
    });
    for d in deliveries {
        tokio::time::timeout(Duration::from_secs(30), d)
            .await
            .unwrap()
            .unwrap();
    }
    tokio::time::timeout(Duration::from_secs(30), received)
        .await
        .unwrap()
        .unwrap();
    c.disconnect().await.unwrap();
}

#[tokio::test] // [MQTT-3.8.3-3] No Local: a client's own messages do not come back to it.
async fn no_local_subscription_option() {
    let broker = Broker::start();
    let c = Client::connect(opts(broker.port(), "nl").with_v5(true))
        .await
        .unwrap();
    let other = Client::connect(opts(broker.port(), "nl-other"))
        .await
        .unwrap();
    let o = holdfast_client::SubscriptionOptions {
        qos: QoS::AtLeastOnce,
        no_local: true,
        ..Default::default()
    };
    let mut sub = c.subscribe_with(vec![("nl/#".into(), o)]).await.unwrap();
    c.publish("nl/t", "own", QoS::AtLeastOnce, false)
        .await
        .unwrap();
    other
        .publish("nl/t", "barrier", QoS::AtLeastOnce, false)
        .await
        .unwrap();
    assert_eq!(&recv(&mut sub).await.payload[..], b"barrier");
}

#[tokio::test] // The client reconnects by itself and resends what was not acknowledged.
async fn reconnects_after_broker_restart() {
    let mut broker = Broker::start();
    let sub_c = Client::connect(
        opts(broker.port(), "re-sub")
            .with_clean_start(false)
            .with_session_expiry(600),
    )
    .await
    .unwrap();
    let mut sub = sub_c.subscribe("re/#", QoS::AtLeastOnce).await.unwrap();
    let pub_c = Client::connect(opts(broker.port(), "re-pub"))
        .await
        .unwrap();
    pub_c
        .publish("re/a", "before", QoS::AtLeastOnce, false)
        .await
        .unwrap();
    assert_eq!(&recv(&mut sub).await.payload[..], b"before");
    broker.restart();
    let d = pub_c
        .enqueue(Outgoing::new("re/a", "after").qos(QoS::AtLeastOnce))
        .await
        .unwrap();
    tokio::time::timeout(Duration::from_secs(10), d)
        .await
        .unwrap()
        .unwrap();
    if support::is_mosquitto() {
        // Mosquitto SIGKILLed lost the subscriber's session: the message may precede its
        // re-subscription. The resend by the publisher is what is checked here.
        return;
    }
    // "before" may come again (QoS 1: its PUBACK may not have reached the broker's store).
    loop {
        let m = tokio::time::timeout(Duration::from_secs(10), sub.recv())
            .await
            .unwrap()
            .unwrap();
        if &m.payload[..] == b"after" {
            break;
        }
        assert_eq!(&m.payload[..], b"before");
    }
}

#[tokio::test] // [MQTT-3.1.2-22] PINGREQ keeps an idle connection open past 1.5 x Keep Alive.
async fn keep_alive_pings_an_idle_connection() {
    let broker = Broker::start();
    let c = Client::connect(opts(broker.port(), "ka").with_keep_alive(1))
        .await
        .unwrap();
    let mut sub = c.subscribe("ka/#", QoS::AtLeastOnce).await.unwrap();
    tokio::time::sleep(Duration::from_millis(3500)).await;
    c.publish("ka/x", "still here", QoS::AtLeastOnce, false)
        .await
        .unwrap();
    assert_eq!(&recv(&mut sub).await.payload[..], b"still here");
    assert!(!broker.log().contains("keep alive"), "{}", broker.log());
}

#[tokio::test] // Session Present = 0 after a reconnect: the client subscribes again by itself.
async fn resubscribes_when_the_server_lost_the_session() {
    let mut broker = Broker::start();
    for v5 in [false, true] {
        resubscribe_after_restart(&mut broker, v5).await;
    }
}

async fn resubscribe_after_restart(broker: &mut Broker, v5: bool) {
    let c = Client::connect(opts(broker.port(), "resub").with_v5(v5))
        .await
        .unwrap();
    let mut sub = c.subscribe("resub/#", QoS::AtLeastOnce).await.unwrap();
    broker.restart();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    // Publish until the renewed subscription sees one.
    loop {
        assert!(
            tokio::time::Instant::now() < deadline,
            "no message after the restart"
        );
        c.publish("resub/x", "again", QoS::AtLeastOnce, false)
            .await
            .unwrap();
        if let Ok(Some(m)) = tokio::time::timeout(Duration::from_millis(200), sub.recv()).await {
            assert_eq!(&m.payload[..], b"again");
            break;
        }
    }
    c.disconnect().await.unwrap();
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
                let q = if i % 2 == 0 {
                    QoS::AtLeastOnce
                } else {
                    QoS::ExactlyOnce
                };
                c.enqueue(Outgoing::new("off/t", format!("{i}")).qos(q))
                    .await
                    .unwrap();
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
        tokio::time::timeout(TIMEOUT, c.wait_idle())
            .await
            .unwrap()
            .unwrap();
        // In order per QoS (MQTT 4.6 orders messages of one QoS; Mosquitto forwards QoS 2 on PUBREL).
        let mut got: Vec<Vec<u32>> = vec![Vec::new(), Vec::new()];
        for _ in 0..20 {
            let m = recv(&mut sub).await;
            let n: u32 = std::str::from_utf8(&m.payload).unwrap().parse().unwrap();
            got[(n % 2) as usize].push(n);
        }
        assert_eq!(got[0], (0..20).step_by(2).collect::<Vec<_>>());
        assert_eq!(got[1], (1..20).step_by(2).collect::<Vec<_>>());
        c.disconnect().await.unwrap();
    });
}

#[test]
fn holdfast_pub_and_sub() {
    let broker = Broker::start();
    let port = broker.port().to_string();
    let mut sub = BgProcess::spawn(holdfast_command().args([
        "sub",
        "-h",
        "127.0.0.1",
        "-p",
        &port,
        "-t",
        "cli/#",
        "-q",
        "2",
        "-C",
        "3",
        "-v",
        "-V",
        "5",
    ]));
    std::thread::sleep(Duration::from_millis(500));
    for (q, m) in [("0", "zero"), ("1", "one"), ("2", "two")] {
        let out = support::process::run_with_timeout(
            holdfast_command().args([
                "pub",
                "-h",
                "127.0.0.1",
                "-p",
                &port,
                "-t",
                "cli/x",
                "-q",
                q,
                "-m",
                m,
            ]),
            TIMEOUT,
        );
        assert!(out.success(), "{}", out.describe());
    }
    assert!(
        sub.wait_exit(TIMEOUT).is_some_and(|s| s.success()),
        "{}",
        sub.describe()
    );
    assert_eq!(
        sub.lines(),
        ["cli/x zero", "cli/x one", "cli/x two"],
        "{}",
        sub.describe()
    );
}

#[test] // `holdfast pub` / `sub` over TLS with a client certificate (holdfast-client's `tls` feature).
fn pub_and_sub_over_tls() {
    if support::holdfast_only("TLS listener config") {
        return;
    }
    let dir = support::secure::temp_dir();
    let pki = support::secure::make_pki(dir.path(), "", "device-1");
    let config = "[[listener]]\nbind = \"127.0.0.1:{port0}\"\nprotocol = \"tls\"\n\
        cert = \"{dir}/server.pem\"\nkey = \"{dir}/server.key\"\nclient_ca = \"{dir}/ca.pem\"\n";
    let server = support::secure::Server::start(config, dir);
    let port = server.ports[0].to_string();
    let tls = |c: &mut Command| {
        c.args([
            "--cafile",
            pki.ca.to_str().unwrap(),
            "--tls-server-name",
            "localhost",
        ])
        .args(["--cert", pki.client_cert.to_str().unwrap()])
        .args(["--key", pki.client_key.to_str().unwrap()]);
    };
    let mut sub_cmd = holdfast_command();
    sub_cmd.args([
        "sub",
        "-h",
        "127.0.0.1",
        "-p",
        &port,
        "-t",
        "tls/#",
        "-q",
        "1",
        "-C",
        "1",
    ]);
    tls(&mut sub_cmd);
    let mut sub = BgProcess::spawn(&mut sub_cmd);
    std::thread::sleep(Duration::from_millis(500));
    let mut pub_cmd = holdfast_command();
    pub_cmd.args([
        "pub",
        "-h",
        "127.0.0.1",
        "-p",
        &port,
        "-t",
        "tls/x",
        "-q",
        "1",
        "-m",
        "sealed",
    ]);
    tls(&mut pub_cmd);
    let out = support::process::run_with_timeout(&mut pub_cmd, TIMEOUT);
    assert!(out.success(), "{}", out.describe());
    assert!(
        sub.wait_exit(TIMEOUT).is_some_and(|s| s.success()),
        "{}",
        sub.describe()
    );
    assert_eq!(sub.lines(), ["sealed"], "{}", sub.describe());
}

/// A Mosquitto process on a free port, or None (with a note) when it is not installed.
fn mosquitto() -> Option<(Child, u16, tempfile::TempDir)> {
    let found = Command::new("sh")
        .args(["-c", "command -v mosquitto"])
        .output();
    if !found.is_ok_and(|o| o.status.success()) {
        eprintln!("SKIPPED: mosquitto is not installed");
        return None;
    }
    let dir = tempfile::tempdir().unwrap();
    let port = support::free_port();
    let conf = dir.path().join("mosquitto.conf");
    std::fs::write(
        &conf,
        format!("listener {port} 127.0.0.1\nallow_anonymous true\n"),
    )
    .unwrap();
    let child = Command::new("mosquitto")
        .arg("-c")
        .arg(&conf)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + TIMEOUT;
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            std::time::Instant::now() < deadline,
            "mosquitto did not start"
        );
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

#[tokio::test] // MQTT 5 Message Expiry Interval counts down while a message is kept offline [MQTT-3.3.2-6 for servers, likewise here].
async fn message_expiry_counts_down_while_offline() {
    if support::holdfast_only("a subscription surviving a SIGKILL of the broker") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let mut broker = Broker::start();
    let port = broker.port();
    let s = Client::connect(
        opts(port, "exp-sub")
            .with_v5(true)
            .with_clean_start(false)
            .with_session_expiry(600),
    )
    .await
    .unwrap();
    let mut sub = s.subscribe("exp/#", QoS::AtLeastOnce).await.unwrap();
    broker.kill();
    let c = Client::start(
        opts(port, "exp-pub")
            .with_v5(true)
            .with_persistence(dir.path(), Durability::Sync),
    )
    .unwrap();
    let with_expiry = |payload: &str, secs: Option<u32>| {
        let mut props = holdfast_client::Properties::default();
        if let Some(secs) = secs {
            props.message_expiry_interval = Some(secs);
        }
        Outgoing::new("exp/t", payload.to_string())
            .qos(QoS::AtLeastOnce)
            .properties(props)
    };
    let short = c.enqueue(with_expiry("short", Some(1))).await.unwrap();
    let long = c.enqueue(with_expiry("long", Some(60))).await.unwrap();
    let none = c.enqueue(with_expiry("none", None)).await.unwrap();
    let q0 = c
        .enqueue(with_expiry("q0", Some(1)).qos(QoS::AtMostOnce))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    broker.restart();
    // Expired while kept: never sent, its publish fails with Expired.
    assert_eq!(
        tokio::time::timeout(TIMEOUT, short).await.unwrap(),
        Err(ClientError::Expired)
    );
    assert_eq!(
        tokio::time::timeout(TIMEOUT, q0).await.unwrap(),
        Err(ClientError::Expired)
    );
    tokio::time::timeout(TIMEOUT, long).await.unwrap().unwrap();
    tokio::time::timeout(TIMEOUT, none).await.unwrap().unwrap();
    let m = recv(&mut sub).await;
    assert_eq!(&m.payload[..], b"long");
    // Sent with what was left: at most 59 of its 60 seconds.
    let left = m.properties.message_expiry_interval.unwrap();
    assert!((50..=59).contains(&left), "{left}");
    let m = recv(&mut sub).await;
    assert_eq!(
        (&m.payload[..], m.properties.message_expiry_interval),
        (&b"none"[..], None)
    );
    c.disconnect().await.unwrap();
    s.disconnect().await.unwrap();
}

#[tokio::test] // [MQTT-3.3.4-3] [MQTT-3.3.4-4] subscription identifiers: overlapping subscriptions each get a message once.
async fn subscription_identifiers_route_overlapping_subscriptions() {
    let broker = Broker::start();
    let c = Client::connect(opts(broker.port(), "sid").with_v5(true))
        .await
        .unwrap();
    let o = holdfast_client::SubscriptionOptions {
        qos: QoS::AtLeastOnce,
        ..Default::default()
    };
    let mut all = c
        .subscribe_with_id(vec![("sid/#".into(), o)], 7)
        .await
        .unwrap();
    let mut a = c
        .subscribe_with_id(vec![("sid/a/#".into(), o)], 9)
        .await
        .unwrap();
    c.publish("sid/a/x", "both", QoS::AtLeastOnce, false)
        .await
        .unwrap();
    c.publish("sid/b", "one", QoS::AtLeastOnce, false)
        .await
        .unwrap();
    let m = recv(&mut all).await;
    assert_eq!(&m.payload[..], b"both");
    assert!(m.properties.subscription_identifiers.contains(&7), "{m:?}");
    assert_eq!(&recv(&mut all).await.payload[..], b"one");
    let m = recv(&mut a).await;
    assert_eq!(&m.payload[..], b"both");
    assert!(m.properties.subscription_identifiers.contains(&9), "{m:?}");
    // Whether the server sent one copy or two, each subscription got "both" once.
    c.publish("sid/a/y", "barrier", QoS::AtLeastOnce, false)
        .await
        .unwrap();
    assert_eq!(&recv(&mut a).await.payload[..], b"barrier");
    assert_eq!(&recv(&mut all).await.payload[..], b"barrier");
    // Bad ids are refused before anything is sent; 3.1.1 has no identifiers.
    let r = c.subscribe_with_id(vec![("x".into(), o)], 0).await;
    assert!(matches!(r, Err(ClientError::Invalid(_))), "{r:?}");
    let r = c
        .subscribe_with_id(vec![("x".into(), o)], 268_435_456)
        .await;
    assert!(matches!(r, Err(ClientError::Invalid(_))), "{r:?}");
    let r = c.subscribe_with(vec![]).await;
    assert!(matches!(r, Err(ClientError::Invalid(_))), "{r:?}");
    let v3 = Client::connect(opts(broker.port(), "sid3")).await.unwrap();
    let r = v3.subscribe_with_id(vec![("x".into(), o)], 1).await;
    assert!(matches!(r, Err(ClientError::Invalid(_))), "{r:?}");
    c.disconnect().await.unwrap();
    v3.disconnect().await.unwrap();
}
