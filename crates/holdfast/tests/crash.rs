//! Crash tests on the real binary (issue 3, "How it is tested"): publishers send QoS 1 and QoS 2
//! messages with a sequence number and record every acknowledgement, a persistent subscriber
//! consumes them, and the broker is killed with SIGKILL at random moments, many times, and
//! restarted on the same data directory. Everyone reconnects and resumes its session the way the
//! standard asks a client to ([MQTT-4.4.0-1]: unacknowledged PUBLISHes are sent again with their
//! packet ids and DUP 1, PUBRELs are sent again). At the end:
//! - every acknowledged message arrived (QoS 1 at least once, QoS 2 exactly once);
//! - per publisher, the first deliveries of its messages are in the order it sent them;
//! - every session was resumed with Session Present 1 after each crash.
//!
//! Clients are raw MQTT 3.1.1 connections (support/raw.rs) so that the test controls packet ids,
//! DUP and the QoS 2 stages exactly, and keeps each client's own session state across its
//! reconnections. The moments of the kills come from a seeded RNG; the seed is printed
//! (`HOLDFAST_TEST_SEED` replays the same choices; the timing of the machine still varies).

mod support;

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex;
use std::thread;
use std::time::{Duration, Instant};

use support::raw::{self, Connect, RawConn, ReadResult};
use support::rng::Rng;
use support::{holdfast_only, Broker};

const PUBLISHERS: usize = 3;
/// QoS 1/2 messages a publisher keeps in flight at once.
const WINDOW: usize = 6;
const CYCLES: usize = 24;
/// Nothing in a run may take longer than this (every thread gives up then and reports it).
const HARD_LIMIT: Duration = Duration::from_secs(60);

/// Flags the threads watch.
#[derive(Default)]
struct Control {
    /// Publishers send no new messages, finish the ones in flight and disconnect.
    drain: AtomicBool,
    /// The subscriber stops.
    stop: AtomicBool,
    /// Something failed: everyone stops at once.
    abort: AtomicBool,
    /// The subscriber subscribed.
    ready: AtomicBool,
}

/// Sets `abort` when the main thread unwinds, so that no thread outlives a failed test for long.
struct AbortOnDrop<'a>(&'a Control);

impl Drop for AbortOnDrop<'_> {
    fn drop(&mut self) {
        if thread::panicking() {
            self.0.abort.store(true, Ordering::SeqCst);
        }
    }
}

fn persistent(id: &str) -> Connect {
    Connect {
        clean: false,
        ..Connect::v4(id)
    }
}

/// Connects and sends CONNECT; `Some((conn, session_present))` on a successful CONNACK.
fn connect(addr: SocketAddr, id: &str) -> Option<(RawConn, bool)> {
    let mut c = RawConn::try_open(addr, Duration::from_millis(200))?;
    if !c.try_send(&persistent(id).encode()) {
        return None;
    }
    match c.read(Duration::from_secs(3)) {
        ReadResult::Packet(p) if p.is_connack() && p.reason() == 0 => {
            let sp = p.session_present();
            Some((c, sp))
        }
        _ => None,
    }
}

// ---------------------------------------------------------------- publisher

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Stage {
    /// PUBLISH sent, nothing received.
    Sent,
    /// QoS 2: PUBREC received, PUBREL sent.
    Released,
}

#[derive(Debug)]
struct InFlight {
    pkid: u16,
    seq: u64,
    qos: u8,
    stage: Stage,
}

#[derive(Debug, Default)]
struct PubResult {
    /// QoS of every message sent, by sequence number.
    qos: Vec<u8>,
    /// On which connection of the publisher (1 = the first) each message was first sent.
    sent_on: Vec<u32>,
    /// Sequence numbers acknowledged (PUBACK; PUBREC for QoS 2: the broker took ownership).
    acked: Vec<u64>,
    /// For each acknowledgement: on which connection of the publisher (1 = the first) it came.
    acked_on: Vec<u32>,
    finished: bool,
    connects: u32,
    violations: Vec<String>,
}

fn payload(publisher: usize, seq: u64) -> Vec<u8> {
    format!("{publisher}:{seq}").into_bytes()
}

fn parse_payload(b: &[u8]) -> Option<(usize, u64)> {
    let s = std::str::from_utf8(b).ok()?;
    let (p, q) = s.split_once(':')?;
    Some((p.parse().ok()?, q.parse().ok()?))
}

fn run_publisher(
    idx: usize,
    addr: SocketAddr,
    topic: String,
    mut rng: Rng,
    ctl: &Control,
    deadline: Instant,
) -> PubResult {
    let id = format!("crash-pub-{idx}");
    let mut r = PubResult::default();
    let mut inflight: VecDeque<InFlight> = VecDeque::new();
    let mut conn: Option<RawConn> = None;
    let mut confirmed = false;
    let mut next_pkid: u16 = 1;
    loop {
        if ctl.abort.load(Ordering::SeqCst) {
            return r;
        }
        if Instant::now() > deadline {
            r.violations.push(format!(
                "{id}: not finished within {HARD_LIMIT:?}; in flight: {inflight:?}"
            ));
            return r;
        }
        let Some(c) = conn.as_mut() else {
            match connect(addr, &id) {
                None => thread::sleep(Duration::from_millis(10)),
                Some((mut c, session_present)) => {
                    r.connects += 1;
                    if confirmed && !session_present {
                        r.violations.push(format!(
                            "{id}: [MQTT-3.2.2-2] Session Present 0 on reconnect #{} \
                             (the session was lost)",
                            r.connects
                        ));
                    }
                    confirmed = true;
                    // [MQTT-4.4.0-1] [MQTT-4.6.0-1] resend in the original order, same packet ids.
                    for e in &inflight {
                        let bytes = match e.stage {
                            Stage::Sent => raw::publish_dup(
                                topic.as_bytes(),
                                e.qos,
                                false,
                                e.pkid,
                                &payload(idx, e.seq),
                            ),
                            Stage::Released => raw::pubrel(e.pkid),
                        };
                        c.try_send(&bytes);
                    }
                    conn = Some(c);
                }
            }
            continue;
        };
        let draining = ctl.drain.load(Ordering::SeqCst);
        if draining && inflight.is_empty() {
            c.try_send(&raw::DISCONNECT_V4);
            r.finished = true;
            return r;
        }
        if !draining {
            while inflight.len() < WINDOW {
                let qos = if rng.chance(50) { 1 } else { 2 };
                while inflight.iter().any(|e| e.pkid == next_pkid) {
                    next_pkid = next_pkid.wrapping_add(1).max(1);
                }
                let pkid = next_pkid;
                next_pkid = next_pkid.wrapping_add(1).max(1);
                let seq = r.qos.len() as u64;
                r.qos.push(qos);
                r.sent_on.push(r.connects);
                inflight.push_back(InFlight {
                    pkid,
                    seq,
                    qos,
                    stage: Stage::Sent,
                });
                c.try_send(&raw::publish(
                    topic.as_bytes(),
                    qos,
                    false,
                    pkid,
                    &payload(idx, seq),
                    None,
                ));
                // A few hundred messages a second per publisher: enough traffic to be caught
                // at every stage by a kill, little enough for the debug build to keep up.
                thread::sleep(Duration::from_micros(rng.range(500, 3000)));
            }
        }
        match c.read(Duration::from_millis(20)) {
            ReadResult::Timeout => {}
            ReadResult::Closed(_) => conn = None,
            ReadResult::Packet(p) => {
                let kind = p.first;
                let pkid = if p.body.len() >= 2 { p.packet_id() } else { 0 };
                let pos = inflight.iter().position(|e| e.pkid == pkid);
                match (kind, pos) {
                    (0x40, Some(i)) if inflight[i].qos == 1 => {
                        let e = inflight.remove(i).expect("entry");
                        r.acked.push(e.seq);
                        r.acked_on.push(r.connects);
                    }
                    (0x50, Some(i)) if inflight[i].qos == 2 => {
                        if inflight[i].stage == Stage::Sent {
                            r.acked.push(inflight[i].seq);
                            r.acked_on.push(r.connects);
                            inflight[i].stage = Stage::Released;
                        }
                        c.try_send(&raw::pubrel(pkid));
                    }
                    (0x70, Some(i))
                        if inflight[i].qos == 2 && inflight[i].stage == Stage::Released =>
                    {
                        inflight.remove(i);
                    }
                    _ => r
                        .violations
                        .push(format!("{id}: unexpected {p:?} (in flight: {inflight:?})")),
                }
            }
        }
    }
}

// ---------------------------------------------------------------- subscriber

#[derive(Clone, Debug)]
struct Delivery {
    publisher: usize,
    seq: u64,
    qos: u8,
}

#[derive(Debug, Default)]
struct SubResult {
    connects: u32,
    violations: Vec<String>,
}

fn run_subscriber(
    addr: SocketAddr,
    filter: String,
    mut rng: Rng,
    ctl: &Control,
    deliveries: &Mutex<Vec<Delivery>>,
    deadline: Instant,
) -> SubResult {
    let id = "crash-sub";
    let mut r = SubResult::default();
    // The client's own session state: QoS 2 packet ids received and PUBREC'd, until PUBREL
    // (method A of the standard: the message is delivered onwards on the first PUBLISH).
    let mut pending: HashMap<u16, Vec<u8>> = HashMap::new();
    let mut conn: Option<RawConn> = None;
    let mut subscribed = false;
    loop {
        if ctl.abort.load(Ordering::SeqCst) || ctl.stop.load(Ordering::SeqCst) {
            return r;
        }
        if Instant::now() > deadline {
            r.violations
                .push(format!("{id}: still running after {HARD_LIMIT:?}"));
            return r;
        }
        let Some(c) = conn.as_mut() else {
            match connect(addr, id) {
                None => thread::sleep(Duration::from_millis(10)),
                Some((mut c, session_present)) => {
                    r.connects += 1;
                    if subscribed && !session_present {
                        r.violations.push(format!(
                            "{id}: [MQTT-3.2.2-2] Session Present 0 on reconnect #{} \
                             (the session and its subscription were lost)",
                            r.connects
                        ));
                    }
                    if !subscribed {
                        c.try_send(&raw::subscribe(0x82, 1, filter.as_bytes(), 2, false));
                        match c.read(Duration::from_secs(5)) {
                            ReadResult::Packet(p) if p.first == 0x90 && p.body == [0, 1, 2] => {
                                subscribed = true;
                                ctl.ready.store(true, Ordering::SeqCst);
                            }
                            other => {
                                r.violations.push(format!("{id}: SUBSCRIBE failed: {:?}", {
                                    match other {
                                        ReadResult::Packet(p) => format!("{p:?}"),
                                        ReadResult::Closed(w) => format!("closed: {w}"),
                                        ReadResult::Timeout => "timeout".to_string(),
                                    }
                                }));
                                return r;
                            }
                        }
                    }
                    conn = Some(c);
                }
            }
            continue;
        };
        match c.read(Duration::from_millis(20)) {
            ReadResult::Timeout => {}
            ReadResult::Closed(_) => {
                conn = None;
                // Sometimes stay away a while: messages then wait in the restored session.
                if rng.chance(50) {
                    thread::sleep(Duration::from_millis(rng.range(0, 300)));
                }
            }
            ReadResult::Packet(p) if p.kind() == 3 => {
                let Some(publish) = p.as_publish_v4() else {
                    r.violations
                        .push(format!("{id}: undecodable PUBLISH {p:?}"));
                    continue;
                };
                let Some((publisher, seq)) = parse_payload(&publish.payload) else {
                    r.violations
                        .push(format!("{id}: foreign payload {publish:?}"));
                    continue;
                };
                let record = |qos| {
                    deliveries.lock().unwrap().push(Delivery {
                        publisher,
                        seq,
                        qos,
                    })
                };
                match publish.qos {
                    1 => {
                        record(1);
                        c.try_send(&raw::puback(publish.pkid));
                    }
                    2 => {
                        match pending.get(&publish.pkid) {
                            None => {
                                record(2);
                                pending.insert(publish.pkid, publish.payload.clone());
                            }
                            Some(before) if *before != publish.payload => {
                                r.violations.push(format!(
                                    "{id}: packet id {} reused for {:?} before PUBREL of {:?}",
                                    publish.pkid,
                                    String::from_utf8_lossy(&publish.payload),
                                    String::from_utf8_lossy(before)
                                ));
                            }
                            Some(_) if !publish.dup => r.violations.push(format!(
                                "{id}: [MQTT-3.3.1-1] QoS 2 resend without DUP: {publish:?}"
                            )),
                            Some(_) => {} // a resend before PUBREL: not a new message
                        }
                        c.try_send(&raw::pubrec(publish.pkid));
                    }
                    q => r
                        .violations
                        .push(format!("{id}: QoS {q} delivery from a QoS 1/2 publish")),
                }
            }
            ReadResult::Packet(p) if p.first == 0x62 => {
                pending.remove(&p.packet_id());
                c.try_send(&raw::pubcomp(p.packet_id()));
            }
            ReadResult::Packet(p) => r.violations.push(format!("{id}: unexpected {p:?}")),
        }
    }
}

// ---------------------------------------------------------------- the run

/// No cap on queued messages: a full queue drops messages by design (limits), which is not what
/// these tests look for.
const UNLIMITED_QUEUES: &str = "[limits]\nmax_queued_messages = 0\n";

fn crash_run(name: &str, config: &str, topic_root: &str) {
    let (mut rng, seed) = Rng::from_env(name);
    let started = Instant::now();
    let deadline = started + HARD_LIMIT;
    let mut broker = Broker::start_with(&format!("{UNLIMITED_QUEUES}{config}"));
    let addr = broker.addr();
    let ctl = Control::default();
    let deliveries = Mutex::new(Vec::<Delivery>::new());
    let kills = AtomicU64::new(0);
    let (pubs, sub) = thread::scope(|s| {
        let _guard = AbortOnDrop(&ctl);
        let sub_rng = Rng::new(rng.next_u64());
        let filter = format!("{topic_root}/#");
        let (ctl_ref, del_ref) = (&ctl, &deliveries);
        let sub =
            s.spawn(move || run_subscriber(addr, filter, sub_rng, ctl_ref, del_ref, deadline));
        let ready_by = Instant::now() + Duration::from_secs(10);
        while !ctl.ready.load(Ordering::SeqCst) {
            assert!(
                Instant::now() < ready_by && !sub.is_finished(),
                "seed {seed}: the subscriber did not subscribe"
            );
            thread::sleep(Duration::from_millis(10));
        }
        let pubs: Vec<_> = (0..PUBLISHERS)
            .map(|i| {
                let prng = Rng::new(rng.next_u64());
                let topic = format!("{topic_root}/p{i}");
                s.spawn(move || run_publisher(i, addr, topic, prng, ctl_ref, deadline))
            })
            .collect();
        for _ in 0..CYCLES {
            thread::sleep(Duration::from_millis(rng.range(60, 450)));
            broker.kill();
            kills.fetch_add(1, Ordering::Relaxed);
            if rng.chance(30) {
                thread::sleep(Duration::from_millis(rng.range(0, 200)));
            }
            broker.restart();
        }
        thread::sleep(Duration::from_millis(300));
        ctl.drain.store(true, Ordering::SeqCst);
        let pubs: Vec<PubResult> = pubs
            .into_iter()
            .map(|h| h.join().expect("publisher thread panicked"))
            .collect();
        // Wait (bounded) until the subscriber has everything that was acknowledged.
        let wanted: usize = pubs.iter().map(|p| p.acked.len()).sum();
        let settle_by = Instant::now() + Duration::from_secs(10);
        loop {
            let have = {
                let d = deliveries.lock().unwrap();
                let mut first = std::collections::HashSet::new();
                d.iter()
                    .filter(|d| first.insert((d.publisher, d.seq)))
                    .count()
            };
            if have >= wanted || Instant::now() > settle_by {
                break;
            }
            thread::sleep(Duration::from_millis(50));
        }
        // A short quiet period catches late duplicates.
        thread::sleep(Duration::from_millis(300));
        ctl.stop.store(true, Ordering::SeqCst);
        let sub = sub.join().expect("subscriber thread panicked");
        (pubs, sub)
    });

    let deliveries = deliveries.into_inner().unwrap();
    let mut problems: Vec<String> = Vec::new();
    problems.extend(sub.violations.iter().cloned());
    for p in &pubs {
        problems.extend(p.violations.iter().cloned());
    }
    let mut count: BTreeMap<(usize, u64), (usize, u8)> = BTreeMap::new();
    let mut first_order: Vec<Vec<u64>> = vec![Vec::new(); PUBLISHERS];
    for d in &deliveries {
        let e = count.entry((d.publisher, d.seq)).or_insert((0, d.qos));
        if e.0 == 0 {
            first_order[d.publisher].push(d.seq);
        }
        e.0 += 1;
    }
    let mut duplicates_q1 = 0;
    for (i, p) in pubs.iter().enumerate() {
        if !p.finished {
            problems.push(format!(
                "publisher {i} did not get all its messages acknowledged"
            ));
        }
        let last_delivered = first_order[i].iter().max().copied();
        for (&seq, &on) in p.acked.iter().zip(&p.acked_on) {
            let qos = p.qos[seq as usize];
            match count.get(&(i, seq)) {
                None => problems.push(format!(
                    "LOST: publisher {i} message {seq} (QoS {qos}) was sent on its connection \
                     #{} and acknowledged on #{on} but never delivered (last delivered: {last_delivered:?}) \
                     [MQTT-4.3.2-2] [MQTT-4.3.3-2]",
                    p.sent_on[seq as usize]
                )),
                Some(&(n, _)) if qos == 2 && n != 1 => problems.push(format!(
                    "DUPLICATE: publisher {i} message {seq} (QoS 2) delivered {n} times \
                     [MQTT-4.3.3-2]"
                )),
                Some(&(n, _)) if n > 1 => duplicates_q1 += n - 1,
                Some(_) => {}
            }
        }
        for (&(pi, seq), &(_, qos)) in count.range((i, 0)..(i, u64::MAX)) {
            debug_assert_eq!(pi, i);
            if seq as usize >= p.qos.len() || p.qos[seq as usize] != qos {
                problems.push(format!(
                    "publisher {i} message {seq}: delivered at QoS {qos}, never sent so"
                ));
            }
        }
        let order = &first_order[i];
        if let Some(w) = order.windows(2).find(|w| w[0] >= w[1]) {
            problems.push(format!(
                "ORDER: publisher {i}: message {} was first delivered after message {} \
                 [MQTT-4.6.0-6]",
                w[1], w[0]
            ));
        }
    }
    let acked: usize = pubs.iter().map(|p| p.acked.len()).sum();
    let summary = format!(
        "{name}: seed {seed}, {} kills in {:?}; messages sent per publisher {:?}, acknowledged {acked}, \
         deliveries {} ({duplicates_q1} QoS 1 duplicates); reconnects: subscriber {}, publishers {:?}",
        kills.load(Ordering::Relaxed),
        started.elapsed(),
        pubs.iter().map(|p| p.qos.len()).collect::<Vec<_>>(),
        deliveries.len(),
        sub.connects,
        pubs.iter().map(|p| p.connects).collect::<Vec<_>>(),
    );
    eprintln!("{summary}");
    if acked < 100 {
        problems.push(format!(
            "too little traffic to prove anything: {acked} acknowledged"
        ));
    }
    let lost = problems.iter().filter(|p| p.starts_with("LOST")).count();
    let dups = problems
        .iter()
        .filter(|p| p.starts_with("DUPLICATE"))
        .count();
    let order = problems.iter().filter(|p| p.starts_with("ORDER")).count();
    let others: Vec<String> = problems
        .iter()
        .filter(|p| {
            !p.starts_with("LOST") && !p.starts_with("DUPLICATE") && !p.starts_with("ORDER")
        })
        .cloned()
        .collect();
    if !problems.is_empty() {
        let mut shown = others;
        shown.extend(
            problems
                .iter()
                .filter(|p| p.starts_with("ORDER"))
                .take(10)
                .cloned(),
        );
        shown.extend(
            problems
                .iter()
                .filter(|p| p.starts_with("DUPLICATE"))
                .take(10)
                .cloned(),
        );
        shown.extend(
            problems
                .iter()
                .filter(|p| p.starts_with("LOST"))
                .take(20)
                .cloned(),
        );
        let total = problems.len();
        problems = shown;
        problems.insert(0, format!("{total} problems: {lost} lost, {dups} QoS 2 duplicates, {order} order violations; first of each:"));
        panic!(
            "{summary}\n{} problem(s) (replay with HOLDFAST_TEST_SEED={seed}):\n  {}",
            problems.len(),
            problems.join("\n  ")
        );
    }
}

#[test]
// [MQTT-4.3.2-2] [MQTT-4.3.3-2] [MQTT-4.4.0-1] [MQTT-4.6.0-6] [MQTT-3.2.2-2] Class `sync`
// (docs/durability.md): with the broker killed by SIGKILL at random moments, every QoS 1 message
// acknowledged with PUBACK and every QoS 2 message acknowledged with PUBREC is delivered (QoS 1 at
// least once, QoS 2 exactly once), per publisher in order, and every session survives.
fn sync_class_loses_nothing_acknowledged_under_sigkill() {
    if holdfast_only("SIGKILL crash tests need a durable store") {
        return;
    }
    crash_run(
        "crash sync",
        "[[storage.rule]]\ntopics = [\"pay/#\"]\ndurability = \"sync\"\n",
        "pay/crash",
    );
}

#[test]
// [MQTT-4.3.2-2] [MQTT-4.3.3-2] [MQTT-4.4.0-1] [MQTT-4.6.0-6] [MQTT-3.2.2-2] Class `flush`, the
// default (docs/durability.md: a process crash loses nothing that was written to the OS, and
// everything acknowledged was): the same guarantees under SIGKILL.
fn flush_class_loses_nothing_acknowledged_under_sigkill() {
    if holdfast_only("SIGKILL crash tests need a durable store") {
        return;
    }
    crash_run("crash flush", "", "flush/crash");
}
