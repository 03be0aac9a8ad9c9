//! The durable scenario: a persistent session subscribes and goes offline, K messages per publisher
//! are published at QoS 1/2, an optional command restarts the broker, and the session reconnects to
//! count what was kept: lost, duplicated, reordered, and how long until everything arrived.

use std::net::SocketAddr;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::Duration;

use holdfast_proto::SubscriptionOptions;
use tokio::sync::watch;
use tokio::time::{Instant, MissedTickBehavior};

use crate::args::Plan;
use crate::flow::{self, nonce, Progress};
use crate::payload::Clock;
use crate::procstat;
use crate::publisher::histogram;
use crate::publisher::Counters;
use crate::report::{DurableReport, Report};
use crate::subscriber::{self, SubscriberConfig, SubscriberResult};
use crate::tracker::Accounting;
use crate::wire::{connect_packet, Conn};
use crate::BenchError;

/// Session expiry asked for with MQTT 5 (MQTT 3.1.1 persistent sessions use the broker's setting).
const SESSION_EXPIRY: u32 = 3600;
/// How long the broker may take to accept connections again after --restart-cmd.
const RESTART_WAIT: Duration = Duration::from_secs(120);

pub async fn run(plan: &Plan, addr: SocketAddr) -> Result<Report, BenchError> {
    let clock = Clock::new();
    let counters = Arc::new(Counters::default());
    let nonce = nonce();
    let topic = format!("hfb/{nonce}/durable");
    let client_id = format!("hfb-{nonce}-durable");
    let v5 = plan.version.is_v5();
    let expiry = v5.then_some(SESSION_EXPIRY);
    let options = SubscriptionOptions {
        qos: plan.qos,
        ..Default::default()
    };

    // 1. A fresh persistent session with one subscription, then offline.
    if !v5 {
        let wipe = connect_packet(client_id.clone(), plan.version, true, None);
        Conn::open(addr, &wipe).await?.0.close().await;
    }
    let persistent = connect_packet(client_id.clone(), plan.version, v5, expiry);
    let (mut conn, _) = Conn::open(addr, &persistent).await?;
    subscriber::subscribe(&mut conn, &topic, options).await?;
    conn.close().await;
    tokio::time::sleep(Duration::from_millis(100)).await;

    // 2. Publish K messages per publisher and wait for their acknowledgements.
    let pubs = flow::connect_publishers(plan, addr, &nonce).await?;
    let start = Instant::now() + Duration::from_millis(10);
    let handles = flow::spawn_publishers(
        plan,
        pubs,
        |_| topic.clone(),
        start,
        None,
        plan.count,
        clock,
        &counters,
    )?;
    let mut progress = Progress::new(plan.progress, start);
    let mut tick = tokio::time::interval(Duration::from_millis(10));
    tick.set_missed_tick_behavior(MissedTickBehavior::Skip);
    while !handles.iter().all(|h| h.is_finished()) {
        tick.tick().await;
        progress.tick(&counters, Instant::now());
    }
    progress.finish();
    let mut pub_results = Vec::with_capacity(handles.len());
    for h in handles {
        pub_results.push(h.await.map_err(|e| BenchError::Io(e.to_string()))?);
    }
    let publish_s = start.elapsed().as_secs_f64();

    // 3. Optionally restart the broker.
    let mut report = Report::new(plan);
    let proc_before = plan.pid.and_then(|p| procstat::sample(Some(p)));
    let restart_began = Instant::now();
    if let Some(cmd) = &plan.restart_cmd {
        let status = tokio::process::Command::new("sh")
            .arg("-c")
            .arg(cmd)
            .status()
            .await
            .map_err(|e| BenchError::Usage(format!("cannot run --restart-cmd: {e}")))?;
        if !status.success() {
            report
                .errors
                .push(format!("--restart-cmd exited with {status}"));
        }
    }

    // 4. Reconnect (retrying while the broker comes back) and count what arrives.
    let resume = connect_packet(client_id.clone(), plan.version, false, expiry);
    let reconnect = loop {
        let attempt = Instant::now();
        match Conn::open(addr, &resume).await {
            Ok((conn, ack)) => break Some((conn, ack, attempt)),
            // While the broker restarts: refused, or accepted and closed before CONNACK.
            Err(BenchError::Connect(_) | BenchError::Closed | BenchError::Io(_))
                if plan.restart_cmd.is_some() && restart_began.elapsed() < RESTART_WAIT =>
            {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            Err(e) if plan.restart_cmd.is_some() => {
                report.errors.push(format!(
                    "the broker did not serve again after --restart-cmd: {e}"
                ));
                break None;
            }
            Err(e) => return Err(e),
        }
    };
    let expected = counters.sent.load(Relaxed);
    let (session_present, reconnected) = match &reconnect {
        Some((_, ack, at)) => (ack.session_present, *at),
        None => (false, Instant::now()),
    };
    let restart_s = match (&plan.restart_cmd, &reconnect) {
        (Some(_), Some(_)) => Some(
            reconnected
                .saturating_duration_since(restart_began)
                .as_secs_f64(),
        ),
        _ => None,
    };
    let reconnected_ns = clock.ns_at(reconnected.into_std());
    let (sub_result, first) = match reconnect {
        Some((conn, _, _)) => receive(plan, conn, clock, &counters, expected, reconnected).await?,
        None => (
            SubscriberResult {
                accounting: Accounting::new(plan.publishers),
                latency: histogram(),
                last_new_ns: 0,
                error: None,
            },
            None,
        ),
    };
    let proc_after = plan.pid.and_then(|p| procstat::sample(Some(p)));

    // Leave no session behind.
    let cleanup = connect_packet(client_id, plan.version, true, None);
    if let Ok((c, _)) = Conn::open(addr, &cleanup).await {
        c.close().await;
    }

    let reconnect_ok = restart_s.is_some() || plan.restart_cmd.is_none();
    let all_arrived = sub_result.accounting.received() >= expected;
    let since_reconnect = |ns: u64| (ns.saturating_sub(reconnected_ns)) as f64 / 1e9;
    let last_new_ns = sub_result.last_new_ns;
    flow::account(&mut report, plan.qos, &pub_results, &[sub_result]);
    let time_to_all_s = (all_arrived && report.delivered > 0).then(|| since_reconnect(last_new_ns));
    report.window_s = since_reconnect(last_new_ns);
    if report.window_s > 0.0 {
        report.delivered_per_s = report.delivered as f64 / report.window_s;
    }
    report.sent_per_s = report.sent as f64 / publish_s.max(1e-9);
    report.acked_per_s = report.acked as f64 / publish_s.max(1e-9);
    report.durable = Some(DurableReport {
        session_present,
        restart_s,
        time_to_all_s,
        // At the coordinator's 10 ms resolution.
        first_message_s: first
            .map(|f: Instant| f.saturating_duration_since(reconnected).as_secs_f64()),
        publish_s,
    });
    if reconnect_ok && !session_present {
        report
            .errors
            .push("the broker did not keep the session (Session Present 0 on reconnect)".into());
    }
    if let (Some(pid), Some(b), Some(a)) = (plan.pid, proc_before, proc_after) {
        report.set_process(pid, b, a, report.delivered);
    }
    report.judge();
    Ok(report)
}

/// Receives on the resumed session until everything arrived, nothing arrived for the grace
/// period, or the connection failed; also returns when the first message came.
async fn receive(
    plan: &Plan,
    conn: Conn,
    clock: Clock,
    counters: &Arc<Counters>,
    expected: u64,
    reconnected: Instant,
) -> Result<(SubscriberResult, Option<Instant>), BenchError> {
    let (shutdown_tx, shutdown_rx) = watch::channel(false);
    let cfg = SubscriberConfig {
        index: 0,
        publishers: plan.publishers,
        clock,
        measure_from_ns: 0,
        counters: counters.clone(),
    };
    let sub = tokio::spawn(subscriber::run(conn, cfg, shutdown_rx));
    let mut tick = tokio::time::interval(Duration::from_millis(10));
    tick.set_missed_tick_behavior(MissedTickBehavior::Skip);
    let mut last = (0u64, Instant::now());
    let mut first = None;
    let mut progress = Progress::new(plan.progress, reconnected);
    loop {
        tick.tick().await;
        let now = Instant::now();
        progress.tick(counters, now);
        let delivered = counters.delivered.load(Relaxed);
        if delivered != last.0 {
            last = (delivered, now);
            first.get_or_insert(now);
        }
        if delivered >= expected
            || sub.is_finished()
            || now.saturating_duration_since(last.1) >= plan.grace
        {
            break;
        }
    }
    progress.finish();
    let _ = shutdown_tx.send(true);
    let result = sub.await.map_err(|e| BenchError::Io(e.to_string()))?;
    Ok((result, first))
}
