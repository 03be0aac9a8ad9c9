//! Hostile clients on raw sockets. Each attack asserts that the broker stays up, serves a
//! well-behaved client while the attack is under way (`assert_broker_alive`), and that its
//! resident memory stays under [`RSS_BOUND_KIB`] (a debug build idles at about 10-20 MiB).

mod support;

use std::io::{Read, Write};
use std::net::{Shutdown, TcpStream};
use std::time::{Duration, Instant};

use support::raw::{
    assert_broker_alive, packet, props, publish, subscribe, Connect, RawConn, ReadResult,
};
use support::{holdfast_only, Broker};

/// The broker's resident set must stay under this during and after every attack.
const RSS_BOUND_KIB: u64 = 128 * 1024;

fn start(config: &str) -> Broker {
    Broker::start_with(&format!("[storage]\ndurability = \"volatile\"\n{config}"))
}

fn assert_rss_bounded(b: &Broker, what: &str) {
    let rss = b.rss_kib().expect("broker running");
    assert!(
        rss < RSS_BOUND_KIB,
        "{what}: broker RSS {rss} KiB exceeds {RSS_BOUND_KIB} KiB"
    );
    eprintln!("{what}: broker RSS {rss} KiB");
}

/// Whether the peer closed `s` (EOF or reset) within `d`.
fn closed_within(s: &mut TcpStream, d: Duration) -> bool {
    let deadline = Instant::now() + d;
    s.set_read_timeout(Some(Duration::from_millis(50))).unwrap();
    let mut b = [0u8; 4096];
    while Instant::now() < deadline {
        match s.read(&mut b) {
            Ok(0) => return true,
            Ok(_) => {}
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(_) => return true,
        }
    }
    false
}

#[test] // slowloris: 100 connections trickling CONNECT a byte at a time are cut at connect_timeout
fn slowloris_is_cut_off_at_connect_timeout() {
    if holdfast_only("[limits] connect_timeout") {
        return;
    }
    let b = start("[limits]\nconnect_timeout = \"2s\"\n");
    let connect = Connect::v4("slow").encode();
    let mut conns: Vec<TcpStream> = (0..100)
        .map(|_| TcpStream::connect(b.addr()).unwrap())
        .collect();
    let start = Instant::now();
    let mut i = 0;
    while start.elapsed() < Duration::from_millis(1500) {
        for c in &mut conns {
            let _ = c.write_all(&connect[i % (connect.len() - 1)..][..1]);
        }
        i += 1;
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_broker_alive(b.addr());
    for (n, c) in conns.iter_mut().enumerate() {
        assert!(
            closed_within(c, Duration::from_secs(4)),
            "slow connection {n} still open after connect_timeout"
        );
    }
    assert_rss_bounded(&b, "slowloris");
    assert_broker_alive(b.addr());
}

#[test] // half-open sockets: silent after CONNECT (keep alive), silent before it, write side shut
fn half_open_sockets_are_closed() {
    if holdfast_only("[limits] connect_timeout") {
        return;
    }
    let b = start("[limits]\nconnect_timeout = \"1s\"\n");
    // Connected, keep alive 1 s, then nothing: closed after 1.5 s [MQTT-3.1.2-22].
    let mut ka = TcpStream::connect(b.addr()).unwrap();
    let mut c = Connect::v4("half-open-ka");
    c.keep_alive = 1;
    ka.write_all(&c.encode()).unwrap();
    // Nothing at all.
    let mut silent: Vec<TcpStream> = (0..50)
        .map(|_| TcpStream::connect(b.addr()).unwrap())
        .collect();
    // CONNECT, then the client shuts its write side: EOF ends the connection.
    let mut shut = TcpStream::connect(b.addr()).unwrap();
    shut.write_all(&Connect::v4("half-closed").encode())
        .unwrap();
    shut.shutdown(Shutdown::Write).unwrap();
    assert_broker_alive(b.addr());
    assert!(
        closed_within(&mut shut, Duration::from_secs(3)),
        "write-shut client"
    );
    assert!(closed_within(&mut ka, Duration::from_secs(4)), "keep alive");
    for s in &mut silent {
        assert!(closed_within(s, Duration::from_secs(3)), "silent socket");
    }
    assert_rss_bounded(&b, "half-open");
    assert_broker_alive(b.addr());
}

#[test] // a giant remaining length is refused from the header, before anything is allocated
fn giant_remaining_length_is_refused_without_allocating() {
    let b = start("");
    // Before CONNECT: a CONNECT claiming 256 MiB.
    let mut c1 = RawConn::open(b.addr());
    c1.send(&[0x10, 0xFF, 0xFF, 0xFF, 0x7F, 0x00, 0x04]);
    c1.expect_closed("giant CONNECT");
    // After CONNECT: PUBLISH claiming 256 MiB, then a trickle of its body.
    let mut conns = Vec::new();
    for i in 0..20 {
        let mut c = RawConn::open(b.addr());
        c.handshake(&Connect::v5(&format!("giant-{i}")));
        c.send(&[0x30, 0xFF, 0xFF, 0xFF, 0x7F]);
        c.send(&[0u8; 1024]);
        conns.push(c);
    }
    for c in &mut conns {
        let got = c.expect_closed("giant PUBLISH");
        // v5: DISCONNECT 0x95 Packet too large [MQTT-3.2.2-15]... or just the close.
        if let Some(d) = got.iter().find(|p| p.is_disconnect()) {
            assert_eq!(d.reason(), 0x95, "{d:?}");
        }
    }
    assert_rss_bounded(&b, "giant remaining length");
    assert_broker_alive(b.addr());
}

#[test] // a flood of SUBSCRIBEs with deep filters: capped by max_subscriptions, memory bounded
fn subscribe_flood_with_deep_filters() {
    if holdfast_only("[limits] max_subscriptions quota") {
        return;
    }
    let b = start("[limits]\nmax_subscriptions = 500\n");
    let mut c = RawConn::open(b.addr());
    c.handshake(&Connect::v5("sub-flood"));
    let deep: String = (0..100).map(|_| "level/").collect();
    let mut refused = 0;
    let mut batch = Vec::new();
    const N: usize = 3000;
    for i in 0..N {
        let filter = format!("{i}/{deep}+/#");
        batch.extend(subscribe(
            0x82,
            (i % 60_000 + 1) as u16,
            filter.as_bytes(),
            0,
            true,
        ));
        if batch.len() > 64 * 1024 {
            c.send(&batch);
            batch.clear();
        }
    }
    c.send(&batch);
    let mut acks = 0;
    while acks < N {
        let p = c.expect_packet("SUBACK");
        assert_eq!(p.first, 0x90, "{p:?}");
        if p.body[3] == 0x97 {
            refused += 1;
        }
        acks += 1;
    }
    assert_eq!(
        refused,
        N - 500,
        "subscriptions past the cap get 0x97 Quota exceeded"
    );
    assert_broker_alive(b.addr());
    assert_rss_bounded(&b, "subscribe flood");
}

#[test] // a subscriber that never reads: QoS 0 to it is dropped past a bound, memory stays bounded
fn client_that_never_reads_is_bounded() {
    let b = start("");
    let mut sink = TcpStream::connect(b.addr()).unwrap();
    sink.write_all(&Connect::v4("never-reads").encode())
        .unwrap();
    sink.write_all(&subscribe(0x82, 1, b"flood/#", 0, false))
        .unwrap();
    std::thread::sleep(Duration::from_millis(200));
    let mut publisher = RawConn::open(b.addr());
    publisher.handshake(&Connect::v4("flooder"));
    let payload = vec![b'x'; 4096];
    let one = publish(b"flood/a", 0, false, 0, &payload, None);
    let batch: Vec<u8> = one.iter().copied().cycle().take(one.len() * 64).collect();
    // 64 MiB of QoS 0 towards a client that reads nothing.
    for i in 0..256 {
        assert!(publisher.try_send(&batch), "publisher cut off at batch {i}");
        if i % 64 == 0 {
            assert_broker_alive(b.addr());
        }
    }
    assert_broker_alive(b.addr());
    assert_rss_bounded(&b, "never-reading client");
    drop(sink);
}

#[test] // packet-id exhaustion: unreleased QoS 2 ids past Receive Maximum close the connection
fn packet_id_exhaustion_is_bounded() {
    let b = start("[limits]\nreceive_maximum = 100\n");
    let mut c = RawConn::open(b.addr());
    c.handshake(&Connect::v5("qos2-hog"));
    let mut all = Vec::new();
    for id in 1..=200u16 {
        all.extend(publish(b"ids/x", 2, false, id, b"p", Some(&[])));
    }
    c.send(&all);
    let got = c.expect_closed("Receive Maximum exceeded");
    let recs = got.iter().filter(|p| p.first == 0x50).count();
    assert_eq!(recs, 100, "PUBRECs up to Receive Maximum");
    let d = got.iter().find(|p| p.is_disconnect()).expect("DISCONNECT");
    assert_eq!(d.reason(), 0x93, "[MQTT-3.3.4-8] Receive Maximum exceeded");

    // As a receiver: a QoS 1 subscriber that never acknowledges gets max_inflight, the rest is
    // queued up to max_queued_messages.
    let mut sub = RawConn::open(b.addr());
    sub.handshake(&Connect::v4("no-acks"));
    sub.send(&subscribe(0x82, 1, b"ids/#", 1, false));
    assert_eq!(sub.expect_packet("SUBACK").first, 0x90);
    let mut p = RawConn::open(b.addr());
    p.handshake(&Connect::v4("pub"));
    let mut burst = Vec::new();
    for id in 1..=5000u16 {
        burst.extend(publish(b"ids/y", 1, false, id, b"m", None));
    }
    p.send(&burst);
    for _ in 0..5000 {
        assert_eq!(
            p.expect_packet("PUBACK").first,
            0x40,
            "publisher is acknowledged"
        );
    }
    let delivered = sub.packets_within(Duration::from_millis(500));
    assert!(delivered.len() <= 64, "{} in flight", delivered.len());
    assert_broker_alive(b.addr());
    assert_rss_bounded(&b, "packet-id exhaustion");
}

#[test] // topic alias abuse: 0, over the maximum, unknown alias; 64 aliases of long topics
fn topic_alias_abuse() {
    let b = start("[limits]\ntopic_alias_maximum = 8\n");
    let alias = |a: u16| [0x23, (a >> 8) as u8, a as u8];
    // Alias 0: Protocol Error (0x82, as the codec sees it) or Topic Alias invalid (0x94).
    for (what, topic, a, want) in [
        ("alias 0", &b"t"[..], 0u16, &[0x82u8, 0x94][..]),
        ("alias over the maximum", b"t", 9, &[0x94]),
        ("unknown alias", b"", 3, &[0x82]),
    ] {
        let mut c = RawConn::open(b.addr());
        c.handshake(&Connect::v5(what));
        c.send(&publish(topic, 0, false, 0, b"x", Some(&alias(a))));
        let got = c.expect_closed(what);
        let d = got.iter().find(|p| p.is_disconnect()).expect(what);
        assert!(want.contains(&d.reason()), "{what}: {d:?}");
    }
    // Rebinding aliases to long topics over and over keeps at most 8 of them.
    let mut c = RawConn::open(b.addr());
    c.handshake(&Connect::v5("alias-churn"));
    let long = vec![b'a'; 60_000];
    for i in 0..2000u16 {
        let mut topic = long.clone();
        topic.extend(i.to_string().as_bytes());
        c.send(&publish(&topic, 0, false, 0, b"x", Some(&alias(i % 8 + 1))));
    }
    c.send(&support::raw::PINGREQ);
    let pong = c.expect_packet("PINGRESP");
    assert_eq!(pong.first, 0xD0);
    assert_broker_alive(b.addr());
    assert_rss_bounded(&b, "topic alias abuse");
}

#[test] // [MQTT-3.1.0-2] a second CONNECT is a protocol error: the connection is closed
fn connect_twice_closes_the_connection() {
    let b = start("");
    for level in [4u8, 5] {
        let mut c = RawConn::open(b.addr());
        let connect = if level == 5 {
            Connect::v5("twice")
        } else {
            Connect::v4("twice")
        };
        c.handshake(&connect);
        c.send(&connect.encode());
        let got = c.expect_closed("second CONNECT");
        if level == 5 {
            let d = got.iter().find(|p| p.is_disconnect()).expect("DISCONNECT");
            assert_eq!(d.reason(), 0x82);
        }
    }
    // And a flood of CONNECT-only connections, each sending CONNECT twice in one write.
    for i in 0..200 {
        let mut c = RawConn::open(b.addr());
        let mut two = Connect::v4(&format!("twice-{i}")).encode();
        two.extend(two.clone());
        c.send(&two);
        let _ = c.read(Duration::from_millis(1));
    }
    assert_broker_alive(b.addr());
    assert_rss_bounded(&b, "CONNECT twice");
}

#[test] // garbage after CONNECT: a reserved packet type, bad flags, a property block too long
fn malformed_packets_after_connect() {
    let b = start("");
    let bad: [&[u8]; 3] = [&[0xF0, 0x00], &[0x32, 0x01, 0x00], &[0x82, 0x00]];
    for (i, bytes) in bad.iter().enumerate() {
        let mut c = RawConn::open(b.addr());
        c.handshake(&Connect::v5(&format!("bad-{i}")));
        c.send(bytes);
        c.expect_closed("malformed packet");
    }
    let mut c = RawConn::open(b.addr());
    c.handshake(&Connect::v5("bad-props"));
    let mut body = support::raw::lp(b"t");
    body.extend(props(&[0x26, 0xFF]));
    c.send(&packet(0x30, &body));
    c.expect_closed("truncated user property");
    // A connection that has not sent CONNECT gets nothing.
    if let ReadResult::Packet(p) = RawConn::open(b.addr()).read(Duration::from_millis(10)) {
        panic!("unexpected {p:?}");
    }
    assert_broker_alive(b.addr());
}

// ---------------------------------------------------------------- connection-level limits

fn connack_of(b: &Broker, connect: &Connect) -> (RawConn, u8) {
    let mut c = RawConn::open(b.addr());
    c.send(&connect.encode());
    let ack = c.expect_packet("CONNACK");
    assert!(ack.is_connack(), "{ack:?}");
    let reason = ack.reason();
    (c, reason)
}

#[test] // [limits] max_connections_per_ip: v5 0x97 Quota exceeded, 3.1.1 3 Server unavailable
fn connections_per_ip_are_capped() {
    if holdfast_only("[limits] max_connections_per_ip") {
        return;
    }
    let b = start("[limits]\nmax_connections_per_ip = 5\n");
    let mut open: Vec<RawConn> = (0..5)
        .map(|i| {
            let (c, r) = connack_of(&b, &Connect::v4(&format!("ip-{i}")));
            assert_eq!(r, 0);
            c
        })
        .collect();
    assert_eq!(connack_of(&b, &Connect::v5("over-5")).1, 0x97);
    assert_eq!(connack_of(&b, &Connect::v4("over-4")).1, 3);
    open.pop();
    std::thread::sleep(Duration::from_millis(200));
    assert_broker_alive(b.addr());
}

#[test] // [limits] connect_rate_per_ip: a burst past the rate gets 0x9F Connection rate exceeded
fn connect_rate_per_ip_is_limited() {
    if holdfast_only("[limits] connect_rate_per_ip") {
        return;
    }
    let b = start("[limits]\nconnect_rate_per_ip = 2\n");
    let refused = (0..20)
        .map(|i| connack_of(&b, &Connect::v5(&format!("rate-{i}"))).1)
        .filter(|r| *r == 0x9F)
        .count();
    assert!(refused >= 10, "only {refused} of 20 refused");
    std::thread::sleep(Duration::from_millis(1100));
    assert_broker_alive(b.addr());
}

#[test] // [limits] max_publish_rate: a publisher past the rate gets DISCONNECT 0x96
fn publish_rate_is_limited() {
    if holdfast_only("[limits] max_publish_rate") {
        return;
    }
    let b = start("[limits]\nmax_publish_rate = 20\n");
    let mut c = RawConn::open(b.addr());
    c.handshake(&Connect::v5("too-fast"));
    let mut burst = Vec::new();
    for _ in 0..100 {
        burst.extend(publish(b"rate/t", 0, false, 0, b"x", Some(&[])));
    }
    c.send(&burst);
    let got = c.expect_closed("publish rate");
    let d = got.iter().find(|p| p.is_disconnect()).expect("DISCONNECT");
    assert_eq!(d.reason(), 0x96, "Message rate too high");
    // A publisher within the rate is fine.
    let mut ok = RawConn::open(b.addr());
    ok.handshake(&Connect::v5("steady"));
    for _ in 0..10 {
        ok.send(&publish(b"rate/t", 0, false, 0, b"x", Some(&[])));
        std::thread::sleep(Duration::from_millis(60));
    }
    ok.send(&support::raw::PINGREQ);
    assert_eq!(ok.expect_packet("PINGRESP").first, 0xD0);
    assert_broker_alive(b.addr());
}

#[test] // [limits] max_topic_levels / max_topic_len: PUBACK 0x90, SUBACK 0x8F (3.1.1: 0x80)
fn topics_over_the_level_and_length_limits_are_refused() {
    if holdfast_only("[limits] max_topic_levels, max_topic_len") {
        return;
    }
    let b = start("[limits]\nmax_topic_levels = 8\nmax_topic_len = 100\n");
    let deep = "a/".repeat(8) + "b"; // 9 levels
    let long = "x".repeat(101);
    let mut c = RawConn::open(b.addr());
    c.handshake(&Connect::v5("deep-v5"));
    for (i, t) in [&deep, &long].into_iter().enumerate() {
        c.send(&subscribe(0x82, 1 + i as u16, t.as_bytes(), 1, true));
        let ack = c.expect_packet("SUBACK");
        assert_eq!(ack.body[3], 0x8F, "filter {t}");
        c.send(&publish(
            t.as_bytes(),
            1,
            false,
            10 + i as u16,
            b"x",
            Some(&[]),
        ));
        let ack = c.expect_packet("PUBACK");
        assert_eq!((ack.first, ack.body[2]), (0x40, 0x90), "topic {t}");
    }
    let ok = "a/".repeat(7) + "b"; // 8 levels
    c.send(&subscribe(0x82, 3, ok.as_bytes(), 1, true));
    assert_eq!(c.expect_packet("SUBACK").body[3], 1);
    let mut c4 = RawConn::open(b.addr());
    c4.handshake(&Connect::v4("deep-v4"));
    c4.send(&subscribe(0x82, 1, deep.as_bytes(), 1, false));
    assert_eq!(c4.expect_packet("SUBACK").body[2], 0x80);
    assert_broker_alive(b.addr());
}
