//! holdfast-client as seen on the wire: topic aliases (through a proxy that decodes every packet
//! with holdfast-proto, against the broker under test), back-pressure of subscriptions, and what
//! the client does when a server breaks the topic alias rules (a scripted fake server).

mod support;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::BytesMut;
use holdfast_client::{Client, ClientOptions, Outgoing, QoS};
use holdfast_proto::{
    decode_packet, encode_packet, ConnAck, Packet, ProtocolVersion, PubResp, Publish, ReasonCode,
    SubAck, MAX_PACKET_SIZE,
};
use support::client::recv;
use support::{Broker, TIMEOUT};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

fn opts(port: u16, id: &str) -> ClientOptions {
    support::client::opts(port, id).with_v5(true)
}

// ------------------------------------------------------------------------------------ proxy

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Dir {
    /// client -> broker
    Up,
    /// broker -> client
    Down,
}

/// A TCP proxy in front of the broker that records every MQTT 5 packet going through.
struct Proxy {
    port: u16,
    seen: Arc<Mutex<Vec<(Dir, Packet)>>>,
    cut: watch::Sender<u64>,
    /// Once set, the current connection forwards nothing more from the broker (no acks).
    mute_down: Arc<AtomicBool>,
}

impl Proxy {
    async fn start(upstream: u16) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let (cut, _) = watch::channel(0u64);
        let mute_down = Arc::new(AtomicBool::new(false));
        let (s, c, m) = (seen.clone(), cut.clone(), mute_down.clone());
        tokio::spawn(async move {
            while let Ok((down, _)) = listener.accept().await {
                let Ok(up) = TcpStream::connect(("127.0.0.1", upstream)).await else {
                    continue;
                };
                let (dr, dw) = down.into_split();
                let (ur, uw) = up.into_split();
                // Both directions decode with the version the CONNECT asked for.
                let version = Arc::new(Mutex::new(ProtocolVersion::V5));
                let pump = |dir, mute| Pump {
                    dir,
                    seen: s.clone(),
                    cut: c.subscribe(),
                    mute,
                    version: version.clone(),
                };
                tokio::spawn(pump(Dir::Up, None).run(dr, uw));
                tokio::spawn(pump(Dir::Down, Some(m.clone())).run(ur, dw));
            }
        });
        Proxy {
            port,
            seen,
            cut,
            mute_down,
        }
    }

    fn packets(&self, dir: Dir) -> Vec<Packet> {
        let seen = self.seen.lock().unwrap();
        seen.iter()
            .filter(|(d, _)| *d == dir)
            .map(|(_, p)| p.clone())
            .collect()
    }

    fn publishes(&self, dir: Dir) -> Vec<Publish> {
        self.packets(dir)
            .into_iter()
            .filter_map(|p| match p {
                Packet::Publish(p) => Some(p),
                _ => None,
            })
            .collect()
    }

    fn connects(&self) -> Vec<holdfast_proto::Connect> {
        self.packets(Dir::Up)
            .into_iter()
            .filter_map(|p| match p {
                Packet::Connect(c) => Some(*c),
                _ => None,
            })
            .collect()
    }

    /// Closes the connections open now (the client sees the broker go away).
    fn cut(&self) {
        self.cut.send_modify(|n| *n += 1);
    }

    async fn wait_for(&self, what: &str, f: impl Fn(&Proxy) -> bool) {
        let deadline = tokio::time::Instant::now() + TIMEOUT;
        while !f(self) {
            assert!(
                tokio::time::Instant::now() < deadline,
                "proxy never saw {what}"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

/// One direction of one proxied connection.
struct Pump {
    dir: Dir,
    seen: Arc<Mutex<Vec<(Dir, Packet)>>>,
    cut: watch::Receiver<u64>,
    mute: Option<Arc<AtomicBool>>,
    version: Arc<Mutex<ProtocolVersion>>,
}

impl Pump {
    async fn run(mut self, mut r: OwnedReadHalf, mut w: OwnedWriteHalf) {
        let mut buf = BytesMut::new();
        let mut chunk = vec![0u8; 64 * 1024];
        let mut muted = false;
        loop {
            let n = tokio::select! {
                r = r.read(&mut chunk) => match r {
                    Ok(0) | Err(_) => break,
                    Ok(n) => n,
                },
                _ = self.cut.changed() => break,
            };
            // Latched: a connection once muted stays muted until it is cut.
            muted |= self.mute.as_ref().is_some_and(|m| m.load(Ordering::SeqCst));
            if muted {
                continue;
            }
            buf.extend_from_slice(&chunk[..n]);
            loop {
                let version = *self.version.lock().unwrap();
                match decode_packet(&mut buf, version, MAX_PACKET_SIZE) {
                    Ok(Some(p)) => {
                        if let Packet::Connect(c) = &p {
                            *self.version.lock().unwrap() = c.protocol;
                        }
                        self.seen.lock().unwrap().push((self.dir, p));
                    }
                    Ok(None) => break,
                    Err(e) => panic!("proxy cannot decode {:?}: {e}", self.dir),
                }
            }
            if w.write_all(&chunk[..n]).await.is_err() {
                break;
            }
        }
        let _ = w.shutdown().await;
    }
}

// ------------------------------------------------------------------------------ topic aliases

const LONG: &str = "ta/building-7/floor-3/meter-0042/energy";
const OTHER: &str = "ta/other";

#[tokio::test] // [MQTT-3.3.2-9] [MQTT-3.3.2-12] [MQTT-3.3.2-7] aliases out, within the server's maximum, afresh per connection.
async fn publisher_uses_topic_aliases() {
    let broker = Broker::start();
    let proxy = Proxy::start(broker.port()).await;
    let sub_c = Client::connect(opts(broker.port(), "ta-sub"))
        .await
        .unwrap();
    let mut sub = sub_c.subscribe("ta/#", QoS::AtLeastOnce).await.unwrap();
    // A session that outlives the connection, so the resend below is a DUP.
    let pub_c = Client::connect(opts(proxy.port, "ta-pub").with_session_expiry(60))
        .await
        .unwrap();
    let topic = |i: usize| if i % 3 == 2 { OTHER } else { LONG };
    for i in 0..60 {
        let q = QoS::from_u8((i % 3) as u8).unwrap();
        pub_c
            .publish(topic(i), format!("{i}"), q, false)
            .await
            .unwrap();
    }
    // The broker resolved every alias: each message arrives, in order, with its full topic.
    for i in 0..60 {
        let m = recv(&mut sub).await;
        assert_eq!(
            (m.topic.as_str(), m.payload),
            (topic(i), format!("{i}").into())
        );
    }
    // On the wire: topic and alias the first time, then the alias alone.
    let sent = proxy.publishes(Dir::Up);
    assert_eq!(sent.len(), 60);
    assert_eq!(
        (&*sent[0].topic, sent[0].properties.topic_alias),
        (LONG, Some(1))
    );
    assert_eq!(
        (&*sent[2].topic, sent[2].properties.topic_alias),
        (OTHER, Some(2))
    );
    for (i, p) in sent.iter().enumerate().skip(3) {
        let alias = if topic(i) == LONG { 1 } else { 2 };
        assert_eq!(
            (&*p.topic, p.properties.topic_alias),
            ("", Some(alias)),
            "{i}"
        );
    }

    // A message sent, then the connection lost before its PUBACK: the resend on the next
    // connection carries the full topic, since aliases do not outlive a connection.
    proxy.mute_down.store(true, Ordering::SeqCst);
    let d = pub_c
        .enqueue(Outgoing::new(LONG, "unacked").qos(QoS::AtLeastOnce))
        .await
        .unwrap();
    proxy
        .wait_for("the unacked PUBLISH", |p| p.publishes(Dir::Up).len() == 61)
        .await;
    assert_eq!(
        &*proxy.publishes(Dir::Up)[60].topic,
        "",
        "aliased on the first connection"
    );
    proxy.mute_down.store(false, Ordering::SeqCst);
    proxy.cut();
    tokio::time::timeout(TIMEOUT, d).await.unwrap().unwrap();
    let resent = &proxy.publishes(Dir::Up)[61];
    assert!(resent.dup, "{resent:?}");
    assert_eq!(
        (&*resent.topic, resent.properties.topic_alias),
        (LONG, Some(1))
    );
    assert_eq!(&recv(&mut sub).await.payload[..], b"unacked");
    assert_eq!(proxy.connects().len(), 2);
    pub_c.disconnect().await.unwrap();
    sub_c.disconnect().await.unwrap();
}

#[tokio::test] // [MQTT-3.3.2-9] with fewer aliases than topics the least recently used alias moves.
async fn publisher_reuses_aliases_beyond_its_maximum() {
    let broker = Broker::start();
    let proxy = Proxy::start(broker.port()).await;
    let sub_c = Client::connect(opts(broker.port(), "lru-sub"))
        .await
        .unwrap();
    let mut sub = sub_c.subscribe("lru/#", QoS::AtLeastOnce).await.unwrap();
    let pub_c = Client::connect(opts(proxy.port, "lru-pub").with_topic_aliases(2, 0))
        .await
        .unwrap();
    let topics = [
        "lru/a", "lru/b", "lru/a", "lru/c", "lru/a", "lru/b", "lru/c", "lru/c",
    ];
    for (i, t) in topics.iter().enumerate() {
        pub_c
            .publish(*t, format!("{i}"), QoS::AtLeastOnce, false)
            .await
            .unwrap();
    }
    for (i, t) in topics.iter().enumerate() {
        let m = recv(&mut sub).await;
        assert_eq!((m.topic.as_str(), m.payload), (*t, format!("{i}").into()));
    }
    let wire: Vec<(String, Option<u16>)> = proxy
        .publishes(Dir::Up)
        .into_iter()
        .map(|p| (p.topic.to_string(), p.properties.topic_alias))
        .collect();
    let expected = [
        ("lru/a", 1),
        ("lru/b", 2),
        ("", 1),
        ("lru/c", 2), // b was used longest ago
        ("", 1),
        ("lru/b", 2), // c was
        ("lru/c", 1), // a was
        ("", 1),
    ];
    let expected: Vec<(String, Option<u16>)> = expected
        .iter()
        .map(|(t, a)| (t.to_string(), Some(*a)))
        .collect();
    assert_eq!(wire, expected);
    // Inbound aliases off: none announced [MQTT-3.1.2-27 is the server's side of it].
    assert_eq!(proxy.connects()[0].properties.topic_alias_maximum, None);
}

#[tokio::test] // [MQTT-3.2.2-18] the server announced no Topic Alias Maximum: the client sends none.
async fn no_aliases_when_the_server_allows_none() {
    let broker = Broker::start_with("[limits]\ntopic_alias_maximum = 0\n");
    let proxy = Proxy::start(broker.port()).await;
    let c = Client::connect(opts(proxy.port, "noalias")).await.unwrap();
    for i in 0..5 {
        c.publish(LONG, format!("{i}"), QoS::AtLeastOnce, false)
            .await
            .unwrap();
    }
    let sent = proxy.publishes(Dir::Up);
    assert_eq!(sent.len(), 5);
    assert!(
        sent.iter()
            .all(|p| &*p.topic == LONG && p.properties.topic_alias.is_none()),
        "{sent:?}"
    );
    c.disconnect().await.unwrap();
}

#[tokio::test] // [MQTT-3.3.2-10] [MQTT-3.3.2-11] the client announces its maximum and resolves the server's aliases.
async fn subscriber_resolves_server_topic_aliases() {
    if support::holdfast_only("Mosquitto sends no topic aliases to clients") {
        return;
    }
    let broker = Broker::start();
    let proxy = Proxy::start(broker.port()).await;
    let sub_c = Client::connect(opts(proxy.port, "tin-sub").with_topic_aliases(16, 4))
        .await
        .unwrap();
    let mut sub = sub_c.subscribe("ta/#", QoS::ExactlyOnce).await.unwrap();
    let pub_c = Client::connect(opts(broker.port(), "tin-pub"))
        .await
        .unwrap();
    let topic = |i: usize| if i % 4 == 3 { OTHER } else { LONG };
    for i in 0..40 {
        let q = QoS::from_u8((i % 3) as u8).unwrap();
        pub_c
            .publish(topic(i), format!("{i}"), q, false)
            .await
            .unwrap();
    }
    for i in 0..40 {
        let m = recv(&mut sub).await;
        assert_eq!(
            (m.topic.as_str(), m.payload),
            (topic(i), format!("{i}").into())
        );
        assert_eq!(m.properties.topic_alias, None, "the alias is resolved away");
    }
    assert_eq!(proxy.connects()[0].properties.topic_alias_maximum, Some(4));
    let got = proxy.publishes(Dir::Down);
    assert!(
        got.iter()
            .all(|p| matches!(p.properties.topic_alias, Some(1..=4))),
        "{got:?}"
    );
    assert!(
        got.iter().filter(|p| p.topic.is_empty()).count() >= 30,
        "{got:?}"
    );
    // A new connection: the server sets its aliases again before using them.
    proxy.cut();
    let deadline = tokio::time::Instant::now() + TIMEOUT;
    let mut i = 40;
    loop {
        assert!(
            tokio::time::Instant::now() < deadline,
            "nothing after the reconnect"
        );
        pub_c
            .publish(LONG, format!("{i}"), QoS::AtMostOnce, false)
            .await
            .unwrap();
        i += 1;
        if let Ok(Some(m)) = tokio::time::timeout(Duration::from_millis(100), sub.recv()).await {
            if proxy.connects().len() == 2 {
                assert_eq!(m.topic, LONG);
                break;
            }
        }
    }
    sub_c.disconnect().await.unwrap();
}

#[tokio::test] // Aliases off in both directions: none in CONNECT, none sent, none received.
async fn topic_aliases_can_be_turned_off() {
    let broker = Broker::start();
    let proxy = Proxy::start(broker.port()).await;
    let c = Client::connect(opts(proxy.port, "off").with_topic_aliases(0, 0))
        .await
        .unwrap();
    let mut sub = c.subscribe("ta/#", QoS::AtLeastOnce).await.unwrap();
    for i in 0..5 {
        c.publish(LONG, format!("{i}"), QoS::AtLeastOnce, false)
            .await
            .unwrap();
    }
    for i in 0..5 {
        assert_eq!(recv(&mut sub).await.payload, format!("{i}").into_bytes());
    }
    assert_eq!(proxy.connects()[0].properties.topic_alias_maximum, None);
    let all = [proxy.publishes(Dir::Up), proxy.publishes(Dir::Down)].concat();
    assert_eq!(all.len(), 10);
    assert!(
        all.iter()
            .all(|p| &*p.topic == LONG && p.properties.topic_alias.is_none()),
        "{all:?}"
    );
}

// ------------------------------------------------------------------------- a scripted server

/// One connection to a fake MQTT 5 server, packets encoded and decoded with holdfast-proto.
struct Peer {
    stream: TcpStream,
    buf: BytesMut,
}

impl Peer {
    async fn accept(l: &TcpListener) -> Peer {
        let (stream, _) = tokio::time::timeout(TIMEOUT, l.accept())
            .await
            .expect("a connection")
            .unwrap();
        Peer {
            stream,
            buf: BytesMut::new(),
        }
    }

    /// The next packet; None on EOF.
    async fn read(&mut self) -> Option<Packet> {
        loop {
            if let Some(p) = decode_packet(&mut self.buf, ProtocolVersion::V5, MAX_PACKET_SIZE)
                .expect("the client sends valid packets")
            {
                return Some(p);
            }
            let n = tokio::time::timeout(TIMEOUT, self.stream.read_buf(&mut self.buf))
                .await
                .expect("a packet within the timeout")
                .ok()?;
            if n == 0 {
                return None;
            }
        }
    }

    /// Reads until a packet `f` accepts (skipping others); None on EOF.
    async fn expect<T>(&mut self, mut f: impl FnMut(Packet) -> Option<T>) -> Option<T> {
        loop {
            if let Some(t) = f(self.read().await?) {
                return Some(t);
            }
        }
    }

    async fn send(&mut self, p: Packet) {
        let mut out = BytesMut::new();
        encode_packet(&p, ProtocolVersion::V5, &mut out).unwrap();
        self.stream.write_all(&out).await.unwrap();
    }

    async fn send_raw(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).await.unwrap();
    }

    /// CONNECT, then CONNACK (Session Present as asked).
    async fn handshake(&mut self) -> holdfast_proto::Connect {
        let c = self
            .expect(|p| match p {
                Packet::Connect(c) => Some(c),
                _ => None,
            })
            .await
            .expect("CONNECT");
        self.send(Packet::ConnAck(ConnAck {
            session_present: false,
            reason: ReasonCode::SUCCESS,
            properties: Default::default(),
        }))
        .await;
        *c
    }
}

/// A QoS 0 PUBLISH with a Topic Alias property, bytes built by hand (the codec would refuse 0).
fn raw_publish(topic: &str, alias: u16) -> Vec<u8> {
    let mut body = (topic.len() as u16).to_be_bytes().to_vec();
    body.extend_from_slice(topic.as_bytes());
    body.extend_from_slice(&[3, 0x23]);
    body.extend_from_slice(&alias.to_be_bytes());
    body.extend_from_slice(b"payload");
    let mut out = vec![0x30, body.len() as u8];
    out.extend(body);
    out
}

/// The server sends `publish`; the client must answer DISCONNECT `reason`, close, and reconnect.
async fn violation(inbound_max: u16, publish: Vec<u8>, reason: ReasonCode) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let server = tokio::spawn(async move {
        let mut peer = Peer::accept(&listener).await;
        let connect = peer.handshake().await;
        let announced = connect.properties.topic_alias_maximum;
        peer.send_raw(&publish).await;
        let got = peer
            .expect(|p| match p {
                Packet::Disconnect(d) => Some(d.reason),
                _ => None,
            })
            .await;
        // The connection is closed after the DISCONNECT.
        let after = peer.read().await;
        let mut again = Peer::accept(&listener).await;
        again.handshake().await;
        (announced, got, after)
    });
    let c = Client::connect(opts(port, "victim").with_topic_aliases(16, inbound_max))
        .await
        .unwrap();
    let (announced, got, after) = tokio::time::timeout(TIMEOUT, server)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(announced, (inbound_max > 0).then_some(inbound_max));
    assert_eq!(got, Some(reason));
    assert_eq!(after, None);
    c.disconnect().await.unwrap();
}

#[tokio::test] // [MQTT-3.3.2-11] an alias above the client's Topic Alias Maximum: DISCONNECT 0x94, then reconnect.
async fn alias_above_the_maximum_is_topic_alias_invalid() {
    violation(2, raw_publish("t", 3), ReasonCode::TOPIC_ALIAS_INVALID).await;
}

#[tokio::test] // [MQTT-3.1.2-27] aliases announced off (0), the server sends one anyway: 0x94.
async fn alias_when_none_were_allowed_is_topic_alias_invalid() {
    violation(0, raw_publish("t", 1), ReasonCode::TOPIC_ALIAS_INVALID).await;
}

#[tokio::test] // An alias used with an empty topic before any mapping: 0x82 Protocol Error (MQTT 5 3.3.4).
async fn unknown_alias_is_a_protocol_error() {
    violation(4, raw_publish("", 1), ReasonCode::PROTOCOL_ERROR).await;
}

#[tokio::test] // [MQTT-3.3.2-8] alias 0 is never valid: 0x82 Protocol Error.
async fn alias_zero_is_a_protocol_error() {
    violation(4, raw_publish("t", 0), ReasonCode::PROTOCOL_ERROR).await;
}

// ------------------------------------------------------------------------------ back-pressure

#[tokio::test] // A full subscription: the client acknowledges only what it handed over, in order.
async fn full_subscription_stops_acknowledging() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let (acks_tx, mut acks) = tokio::sync::mpsc::unbounded_channel();
    let server = tokio::spawn(async move {
        let mut peer = Peer::accept(&listener).await;
        // MQTT 5: the Receive Maximum announced is at most the subscription capacity.
        assert_eq!(peer.handshake().await.properties.receive_maximum, Some(4));
        let sub = peer
            .expect(|p| match p {
                Packet::Subscribe(s) => Some(s),
                _ => None,
            })
            .await
            .unwrap();
        peer.send(Packet::SubAck(SubAck {
            packet_id: sub.packet_id,
            reasons: vec![ReasonCode(1)],
            properties: Default::default(),
        }))
        .await;
        for pid in 1..=20u16 {
            let p = Publish {
                dup: false,
                qos: QoS::AtLeastOnce,
                retain: false,
                topic: "bp/t".into(),
                packet_id: Some(pid),
                payload: format!("{pid}").into(),
                properties: Default::default(),
            };
            peer.send(Packet::Publish(p)).await;
        }
        while let Some(p) = peer.read().await {
            if let Packet::PubAck(PubResp { packet_id, .. }) = p {
                let _ = acks_tx.send(packet_id);
            }
        }
    });
    let c = Client::connect(opts(port, "slow").with_subscription_capacity(4))
        .await
        .unwrap();
    let mut sub = c.subscribe("bp/#", QoS::AtLeastOnce).await.unwrap();
    // The PUBACKs up to `last`, then nothing more for a while.
    async fn acks_up_to(
        acks: &mut tokio::sync::mpsc::UnboundedReceiver<u16>,
        last: u16,
    ) -> Vec<u16> {
        let mut got = Vec::new();
        while got.last() != Some(&last) {
            match tokio::time::timeout(TIMEOUT, acks.recv()).await {
                Ok(Some(id)) => got.push(id),
                _ => panic!("PUBACKs so far {got:?}, expected up to {last}"),
            }
        }
        if let Ok(Some(more)) = tokio::time::timeout(support::QUIET, acks.recv()).await {
            panic!("PUBACK {more} after {got:?}: not handed over yet");
        }
        got
    }
    // Nobody reads: 4 messages fit, those 4 are acknowledged, the other 16 are not.
    assert_eq!(acks_up_to(&mut acks, 4).await, vec![1, 2, 3, 4]);
    // Taking one makes room for one more.
    assert_eq!(&recv(&mut sub).await.payload[..], b"1");
    assert_eq!(acks_up_to(&mut acks, 5).await, vec![5]);
    // Taking them all: every message once, in order, every PUBACK in order [MQTT-4.6.0-2].
    for i in 2..=20 {
        assert_eq!(recv(&mut sub).await.payload, format!("{i}").into_bytes());
    }
    assert_eq!(
        acks_up_to(&mut acks, 20).await,
        (6..=20).collect::<Vec<u16>>()
    );
    c.disconnect().await.unwrap();
    let _ = tokio::time::timeout(TIMEOUT, server).await;
}

#[tokio::test] // A full subscription with QoS 1 traffic: the socket is still read, own publishes are acknowledged.
async fn full_subscription_does_not_block_own_publishes() {
    let broker = Broker::start();
    let c = Client::connect(opts(broker.port(), "bp-sub").with_subscription_capacity(8))
        .await
        .unwrap();
    let mut sub = c.subscribe("bp/#", QoS::AtLeastOnce).await.unwrap();
    let p = Client::connect(opts(broker.port(), "bp-pub"))
        .await
        .unwrap();
    for i in 0..100 {
        p.publish("bp/t", format!("{i}"), QoS::AtLeastOnce, false)
            .await
            .unwrap();
    }
    // The subscription is full and the broker holds the rest; PUBACKs still reach this client.
    for i in 0..10 {
        let r = tokio::time::timeout(
            TIMEOUT,
            c.publish("own/t", format!("{i}"), QoS::AtLeastOnce, false),
        )
        .await;
        assert!(
            matches!(r, Ok(Ok(()))),
            "publish {i} while the subscription is full: {r:?}"
        );
    }
    for i in 0..100 {
        assert_eq!(
            recv(&mut sub).await.payload,
            format!("{i}").into_bytes(),
            "message {i}"
        );
    }
    let r = tokio::time::timeout(support::QUIET, sub.recv()).await;
    assert!(r.is_err(), "nothing more, nothing twice: {r:?}");
    c.disconnect().await.unwrap();
}

#[tokio::test] // MQTT 3.1.1, QoS 0 floods too: the client stops reading for a while; no QoS 1/2 message is lost.
async fn slow_consumer_on_v311_loses_nothing() {
    let broker = Broker::start();
    let c = Client::connect(
        opts(broker.port(), "bp3-sub")
            .with_v5(false)
            .with_subscription_capacity(4),
    )
    .await
    .unwrap();
    let mut sub = c.subscribe("bp3/#", QoS::ExactlyOnce).await.unwrap();
    let p = Client::connect(opts(broker.port(), "bp3-pub").with_v5(false))
        .await
        .unwrap();
    for i in 0..200 {
        let q = QoS::from_u8(i % 3).unwrap();
        p.publish("bp3/t", format!("{i}"), q, false).await.unwrap();
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    // Per QoS in order (MQTT 4.6 orders messages of one QoS), QoS 1 and 2 complete.
    let mut got: Vec<Vec<u32>> = vec![Vec::new(); 3];
    let deadline = tokio::time::Instant::now() + TIMEOUT;
    while got[1].len() + got[2].len() < 133 {
        let m = recv(&mut sub).await;
        let n: u32 = std::str::from_utf8(&m.payload).unwrap().parse().unwrap();
        got[(n % 3) as usize].push(n);
        tokio::time::sleep(Duration::from_millis(1)).await;
        assert!(tokio::time::Instant::now() < deadline + Duration::from_secs(10));
    }
    assert_eq!(
        got[1],
        (0..200).filter(|n| n % 3 == 1).collect::<Vec<u32>>()
    );
    assert_eq!(
        got[2],
        (0..200).filter(|n| n % 3 == 2).collect::<Vec<u32>>()
    );
    assert!(got[0].windows(2).all(|w| w[0] < w[1]), "{:?}", got[0]);
    c.disconnect().await.unwrap();
}

#[tokio::test] // Not reading because of back-pressure is not a dead connection: keep alive goes on.
async fn keep_alive_survives_a_stalled_subscription() {
    let broker = Broker::start();
    let proxy = Proxy::start(broker.port()).await;
    let c = Client::connect(
        opts(proxy.port, "stall")
            .with_v5(false)
            .with_keep_alive(1)
            .with_subscription_capacity(2),
    )
    .await
    .unwrap();
    let mut sub = c.subscribe("stall/#", QoS::AtMostOnce).await.unwrap();
    let p = Client::connect(opts(broker.port(), "stall-pub"))
        .await
        .unwrap();
    for i in 0..50 {
        p.publish("stall/t", format!("{i}"), QoS::AtMostOnce, false)
            .await
            .unwrap();
    }
    // The client reads 2 + 2 messages, then stops reading for three keep alive periods.
    tokio::time::sleep(Duration::from_millis(3500)).await;
    let mut last = -1i64;
    while let Ok(Some(m)) = tokio::time::timeout(Duration::from_millis(300), sub.recv()).await {
        let n: i64 = std::str::from_utf8(&m.payload).unwrap().parse().unwrap();
        assert!(n > last, "in order");
        last = n;
    }
    assert!(last >= 3, "{last}");
    p.publish("stall/t", "after", QoS::AtMostOnce, false)
        .await
        .unwrap();
    assert_eq!(&recv(&mut sub).await.payload[..], b"after");
    assert_eq!(
        proxy.connects().len(),
        1,
        "the connection was never given up"
    );
    let pings = proxy
        .packets(Dir::Up)
        .iter()
        .filter(|p| matches!(p, Packet::PingReq))
        .count();
    assert!(pings >= 2, "PINGREQ went on while not reading: {pings}");
}
