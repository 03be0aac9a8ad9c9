//! The message-flow scenarios, fanin and fanout: connect, run publishers and subscribers, sample
//! the counters at the window's ends, wait out the grace period, then account every message.

use std::io::Write as _;
use std::net::SocketAddr;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::Duration;

use holdfast_proto::{QoS, SubscriptionOptions};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::{Instant, MissedTickBehavior};

use crate::args::{Plan, Scenario};
use crate::payload::Clock;
use crate::procstat::{self, ProcSample};
use crate::publisher::{self, Counters, PublisherConfig, PublisherResult};
use crate::report::{Latency, PublisherStats, Report, GRACE_EXPIRED};
use crate::subscriber::{self, SubscriberConfig, SubscriberResult};
use crate::tracker::BitSet;
use crate::wire::{connect_packet, Conn, PublishTemplate};
use crate::BenchError;

/// A run-unique topic prefix, so that nothing from an earlier run (queued or retained) interferes.
pub fn nonce() -> String {
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    format!("{:x}{:05x}", std::process::id(), t.subsec_nanos() >> 12)
}

/// The counters at one moment.
#[derive(Debug, Clone, Copy, Default)]
pub struct Snapshot {
    pub at: Option<Instant>,
    pub sent: u64,
    pub acked: u64,
    pub delivered: u64,
}

impl Snapshot {
    pub fn take(c: &Counters, at: Instant) -> Snapshot {
        Snapshot {
            at: Some(at),
            sent: c.sent.load(Relaxed),
            acked: c.acked.load(Relaxed),
            delivered: c.delivered.load(Relaxed),
        }
    }
}

/// The live line on stderr, rewritten once a second.
pub struct Progress {
    enabled: bool,
    start: Instant,
    next: Instant,
    last: Snapshot,
}

impl Progress {
    pub fn new(enabled: bool, start: Instant) -> Progress {
        Progress {
            enabled,
            start,
            next: start + Duration::from_secs(1),
            last: Snapshot {
                at: Some(start),
                ..Snapshot::default()
            },
        }
    }

    pub fn tick(&mut self, c: &Counters, now: Instant) {
        if !self.enabled || now < self.next {
            return;
        }
        self.next += Duration::from_secs(1);
        let snap = Snapshot::take(c, now);
        let dt = now
            .saturating_duration_since(self.last.at.unwrap_or(self.start))
            .as_secs_f64()
            .max(1e-3);
        let rate = |a: u64, b: u64| si(a.saturating_sub(b) as f64 / dt);
        eprint!(
            "\x1b[2K\r[{:5.1}s] sent {}/s  acked {}/s  delivered {}/s  (total delivered {})",
            now.saturating_duration_since(self.start).as_secs_f64(),
            rate(snap.sent, self.last.sent),
            rate(snap.acked, self.last.acked),
            rate(snap.delivered, self.last.delivered),
            snap.delivered
        );
        let _ = std::io::stderr().flush();
        self.last = snap;
    }

    pub fn finish(&self) {
        if self.enabled {
            eprint!("\x1b[2K\r");
        }
    }
}

fn si(v: f64) -> String {
    if v >= 1e6 {
        format!("{:.2}M", v / 1e6)
    } else if v >= 1e3 {
        format!("{:.1}k", v / 1e3)
    } else {
        format!("{v:.0}")
    }
}

/// Connects and subscribes `n` clean-session subscribers to `filter`.
pub async fn connect_subscribers(
    plan: &Plan,
    addr: SocketAddr,
    nonce: &str,
    filter: &str,
) -> Result<Vec<Conn>, BenchError> {
    let mut subs = Vec::with_capacity(plan.subscribers as usize);
    let options = SubscriptionOptions {
        qos: plan.qos,
        ..Default::default()
    };
    for i in 0..plan.subscribers {
        let connect = connect_packet(format!("hfb-{nonce}-s{i}"), plan.version, true, None);
        let (mut conn, _) = Conn::open(addr, &connect).await?;
        subscriber::subscribe(&mut conn, filter, options).await?;
        subs.push(conn);
    }
    Ok(subs)
}

/// Connects the publishers; each gets its window (the smaller of --inflight and the broker's
/// Receive Maximum).
pub async fn connect_publishers(
    plan: &Plan,
    addr: SocketAddr,
    nonce: &str,
) -> Result<Vec<(Conn, u16)>, BenchError> {
    let mut pubs = Vec::with_capacity(plan.publishers as usize);
    for p in 0..plan.publishers {
        let connect = connect_packet(format!("hfb-{nonce}-p{p}"), plan.version, true, None);
        let (conn, ack) = Conn::open(addr, &connect).await?;
        let window = plan
            .inflight
            .min(ack.properties.receive_maximum.unwrap_or(u16::MAX));
        pubs.push((conn, window));
    }
    Ok(pubs)
}

#[allow(clippy::too_many_arguments)]
pub fn spawn_publishers(
    plan: &Plan,
    conns: Vec<(Conn, u16)>,
    topic: impl Fn(u32) -> String,
    start: Instant,
    stop_at: Option<Instant>,
    count: Option<u64>,
    clock: Clock,
    counters: &Arc<Counters>,
) -> Result<Vec<JoinHandle<PublisherResult>>, BenchError> {
    let mut handles = Vec::with_capacity(conns.len());
    for (id, (conn, window)) in conns.into_iter().enumerate() {
        let id = id as u32;
        let template = PublishTemplate::new(&topic(id), plan.qos, plan.size, plan.version)?;
        let cfg = PublisherConfig {
            id,
            qos: plan.qos,
            rate: plan.rate,
            count,
            start,
            stop_at,
            grace: plan.grace,
            window,
            template,
            clock,
            counters: counters.clone(),
        };
        handles.push(tokio::spawn(publisher::run(conn, cfg)));
    }
    Ok(handles)
}

pub async fn run(plan: &Plan, addr: SocketAddr) -> Result<Report, BenchError> {
    let clock = Clock::new();
    let counters = Arc::new(Counters::default());
    let nonce = nonce();
    let (filter, shared_topic) = match plan.scenario {
        Scenario::Fanin => (format!("hfb/{nonce}/+"), false),
        _ => (format!("hfb/{nonce}/all"), true),
    };
    let topic = |p: u32| {
        if shared_topic {
            format!("hfb/{nonce}/all")
        } else {
            format!("hfb/{nonce}/{p}")
        }
    };
    let subs = connect_subscribers(plan, addr, &nonce, &filter).await?;
    let pubs = connect_publishers(plan, addr, &nonce).await?;

    let start = Instant::now() + Duration::from_millis(20);
    let warm_end = start + plan.warmup;
    let stop_at = plan.duration.map(|d| warm_end + d);
    let (shutdown_tx, shutdown_rx) = watch::channel(false);
    let sub_handles: Vec<JoinHandle<SubscriberResult>> = subs
        .into_iter()
        .enumerate()
        .map(|(i, conn)| {
            let cfg = SubscriberConfig {
                index: i as u32,
                publishers: plan.publishers,
                clock,
                measure_from_ns: clock.ns_at(warm_end.into_std()),
                counters: counters.clone(),
            };
            tokio::spawn(subscriber::run(conn, cfg, shutdown_rx.clone()))
        })
        .collect();
    let pub_handles = spawn_publishers(
        plan, pubs, topic, start, stop_at, plan.count, clock, &counters,
    )?;

    // Coordinate: sample at the end of the warm-up and of the window, wait out the grace period.
    let subscribers = u64::from(plan.subscribers);
    let mut progress = Progress::new(plan.progress, start);
    let mut tick = tokio::time::interval(Duration::from_millis(10));
    tick.set_missed_tick_behavior(MissedTickBehavior::Skip);
    let (mut begin, mut end) = (None::<Snapshot>, None::<Snapshot>);
    let (mut proc_begin, mut proc_end) = (None::<ProcSample>, None::<ProcSample>);
    let (mut gen_begin, mut gen_end) = (None::<ProcSample>, None::<ProcSample>);
    let mut grace_until = None;
    let mut last_delivered = (0u64, Instant::now());
    let ended = loop {
        tick.tick().await;
        let now = Instant::now();
        if begin.is_none() && now >= warm_end {
            begin = Some(Snapshot::take(&counters, warm_end));
            proc_begin = plan.pid.and_then(|p| procstat::sample(Some(p)));
            gen_begin = procstat::sample(None);
        }
        progress.tick(&counters, now);
        let delivered = counters.delivered.load(Relaxed);
        if delivered != last_delivered.0 {
            last_delivered = (delivered, now);
        }
        let publishers_finished = pub_handles.iter().all(|h| h.is_finished());
        let all_stopped = publishers_finished
            || counters.publishers_done.load(Relaxed) >= u64::from(plan.publishers);
        if grace_until.is_none() && all_stopped {
            grace_until = Some(now + plan.grace);
            if stop_at.is_some() {
                end = Some(Snapshot::take(&counters, now));
                proc_end = plan.pid.and_then(|p| procstat::sample(Some(p)));
                gen_end = procstat::sample(None);
            }
        }
        let Some(deadline) = grace_until else {
            continue;
        };
        let sent = counters.sent.load(Relaxed);
        let settled = plan.qos == QoS::AtMostOnce
            || counters.acked.load(Relaxed) + counters.rejected.load(Relaxed) >= sent;
        let complete = delivered >= sent * subscribers && settled;
        let stalled = publishers_finished
            && now.saturating_duration_since(last_delivered.1) >= Duration::from_secs(1);
        if complete {
            break "complete";
        }
        if stalled {
            break "stalled";
        }
        if now >= deadline {
            break GRACE_EXPIRED;
        }
    };
    progress.finish();
    let _ = shutdown_tx.send(true);
    if end.is_none() {
        // Counting mode: the window closes with the last delivery.
        end = Some(Snapshot::take(&counters, last_delivered.1));
        proc_end = plan.pid.and_then(|p| procstat::sample(Some(p)));
        gen_end = procstat::sample(None);
    }
    let begin = begin.unwrap_or(Snapshot {
        at: Some(start),
        ..Snapshot::default()
    });
    let end = end.expect("set above");

    let mut pub_results = Vec::with_capacity(pub_handles.len());
    for h in pub_handles {
        pub_results.push(h.await.map_err(|e| BenchError::Io(e.to_string()))?);
    }
    let mut sub_results = Vec::with_capacity(sub_handles.len());
    for h in sub_handles {
        sub_results.push(h.await.map_err(|e| BenchError::Io(e.to_string()))?);
    }

    let mut report = Report::new(plan);
    report.ended = Some(ended);
    account(&mut report, plan.qos, &pub_results, &sub_results);
    let window = end
        .at
        .zip(begin.at)
        .map(|(e, b)| e.saturating_duration_since(b).as_secs_f64())
        .unwrap_or(0.0);
    report.window_s = window;
    if window > 0.0 {
        report.sent_per_s = end.sent.saturating_sub(begin.sent) as f64 / window;
        report.acked_per_s = end.acked.saturating_sub(begin.acked) as f64 / window;
        report.delivered_per_s = end.delivered.saturating_sub(begin.delivered) as f64 / window;
    }
    let window_deliveries = end.delivered.saturating_sub(begin.delivered);
    if let (Some(pid), Some(b), Some(e)) = (plan.pid, proc_begin, proc_end) {
        report.set_process(pid, b, e, window_deliveries);
    }
    if let (Some(b), Some(e)) = (gen_begin, gen_end) {
        report.generator_cpu_s = Some(e.cpu_s - b.cpu_s);
    }
    report.judge();
    Ok(report)
}

/// Fills the totals, latency and the lost / duplicated / reordered accounting.
pub fn account(report: &mut Report, qos: QoS, pubs: &[PublisherResult], subs: &[SubscriberResult]) {
    let mut ack_latency = publisher::histogram();
    let mut latency = publisher::histogram();
    for p in pubs {
        let expected = if qos == QoS::AtMostOnce {
            BitSet::full(p.sent)
        } else {
            p.acked.clone()
        };
        let mut stats = PublisherStats {
            id: p.id,
            sent: p.sent,
            acked: p.acked.len(),
            ..Default::default()
        };
        for s in subs {
            if let Some(t) = s.accounting.per_publisher.get(p.id as usize) {
                stats.lost += t.lost(&expected);
                stats.duplicated += t.duplicates;
                stats.reordered += t.reordered;
            }
        }
        report.sent += p.sent;
        report.acked += stats.acked;
        report.rejected += p.rejected;
        report.lost += stats.lost;
        report.duplicated += stats.duplicated;
        report.reordered += stats.reordered;
        report.per_publisher.push(stats);
        let _ = ack_latency.add(&p.ack_latency);
        if let Some(e) = &p.error {
            report.errors.push(format!("publisher {}: {e}", p.id));
        }
    }
    if qos != QoS::AtMostOnce {
        report.unacked = report.sent - report.acked - report.rejected;
    }
    report.expected = report.sent * subs.len() as u64;
    for (i, s) in subs.iter().enumerate() {
        report.delivered += s.accounting.received();
        let _ = latency.add(&s.latency);
        if let Some(e) = &s.error {
            report.errors.push(format!("subscriber {i}: {e}"));
        }
    }
    report.latency = Latency::from_ns(&latency);
    report.ack_latency = Latency::from_ns(&ack_latency);
}
