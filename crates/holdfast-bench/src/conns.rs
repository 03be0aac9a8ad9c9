//! The conns scenario: open N idle connections at a target rate, hold them, and measure the
//! connect rate and (given the broker's pid) its resident memory per connection.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpStream;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio::time::Instant;

use crate::args::Plan;
use crate::flow::nonce;
use crate::procstat::{self, raise_nofile};
use crate::publisher::histogram;
use crate::report::{ConnsReport, Latency, Report};
use crate::wire::{connect_packet, Conn, PINGREQ, PING_AFTER};
use crate::BenchError;

/// Connection attempts in flight at once.
const CONCURRENCY: usize = 256;
/// Time for the broker to settle between the last CONNACK and the memory sample.
const SETTLE: Duration = Duration::from_millis(500);

pub async fn run(plan: &Plan, addr: SocketAddr) -> Result<Report, BenchError> {
    let target = plan.count.expect("conns has a count");
    let limit = raise_nofile(target + 256);
    if limit < target + 16 {
        return Err(BenchError::Usage(format!(
            "{target} connections need as many open files; the limit is {limit} (raise ulimit -n)"
        )));
    }
    let nonce = nonce();
    let proc_before = plan.pid.and_then(|p| procstat::sample(Some(p)));
    let gen_before = procstat::sample(None);
    let start = Instant::now();
    let permits = Arc::new(Semaphore::new(CONCURRENCY));
    let mut tasks = JoinSet::new();
    let mut streams: Vec<TcpStream> = Vec::with_capacity(target as usize);
    let mut latency = histogram();
    let mut errors: BTreeMap<String, u64> = BTreeMap::new();
    let mut last_connack = start;
    let mut collect = |r: Result<(TcpStream, Duration), BenchError>,
                       streams: &mut Vec<TcpStream>| match r {
        Ok((s, took)) => {
            latency.saturating_record(took.as_nanos().max(1) as u64);
            last_connack = Instant::now();
            streams.push(s);
        }
        Err(e) => *errors.entry(e.to_string()).or_default() += 1,
    };
    let mut pinged = start;
    for i in 0..target {
        if pinged.elapsed() >= PING_AFTER {
            ping_all(&streams);
            pinged = Instant::now();
        }
        if plan.rate > 0 {
            let at = start + Duration::from_secs_f64(i as f64 / plan.rate as f64);
            tokio::time::sleep_until(at).await;
        }
        let permit = permits.clone().acquire_owned().await.expect("never closed");
        let connect = connect_packet(format!("hfb-{nonce}-c{i}"), plan.version, true, None);
        tasks.spawn(async move {
            let began = Instant::now();
            let (conn, _) = Conn::open(addr, &connect).await?;
            drop(permit);
            Ok((conn.into_stream(), began.elapsed()))
        });
        while let Some(done) = tasks.try_join_next() {
            collect(
                done.map_err(|e| BenchError::Io(e.to_string()))?,
                &mut streams,
            );
        }
    }
    while let Some(done) = tasks.join_next().await {
        collect(
            done.map_err(|e| BenchError::Io(e.to_string()))?,
            &mut streams,
        );
    }
    let ramp = last_connack.saturating_duration_since(start).as_secs_f64();
    let connected = streams.len() as u64;

    let hold_until = Instant::now() + plan.duration.unwrap_or_default().max(SETTLE);
    while Instant::now() < hold_until {
        tokio::time::sleep_until(hold_until.min(pinged + PING_AFTER)).await;
        if pinged.elapsed() >= PING_AFTER {
            ping_all(&streams);
            pinged = Instant::now();
        }
    }
    let proc_after = plan.pid.and_then(|p| procstat::sample(Some(p)));
    let gen_after = procstat::sample(None);
    let alive = streams.iter().filter(|s| is_open(s)).count() as u64;
    // DISCONNECT everyone, without waiting on any one socket.
    for s in &streams {
        let _ = s.try_write(&[0xE0, 0x00]);
    }
    drop(streams);

    let mut report = Report::new(plan);
    report.subscribers = 0;
    report.publishers = 0;
    let rss_per_conn_bytes = match (proc_before, proc_after) {
        (Some(b), Some(a)) if connected > 0 => {
            Some((a.rss_kib as f64 - b.rss_kib as f64) * 1024.0 / connected as f64)
        }
        _ => None,
    };
    report.conns = Some(ConnsReport {
        target,
        connected,
        failed: target - connected,
        connect_rate: if ramp > 0.0 {
            connected as f64 / ramp
        } else {
            0.0
        },
        connect_latency: Latency::from_ns(&latency),
        alive_after_hold: alive,
        rss_per_conn_bytes,
    });
    report.window_s = ramp;
    if let (Some(pid), Some(b), Some(a)) = (plan.pid, proc_before, proc_after) {
        report.set_process(pid, b, a, 0);
    }
    if let (Some(b), Some(a)) = (gen_before, gen_after) {
        report.generator_cpu_s = Some(a.cpu_s - b.cpu_s);
    }
    for (e, n) in errors {
        report.errors.push(format!("{n} connection(s): {e}"));
    }
    if alive < connected {
        report.errors.push(format!(
            "{} connection(s) closed by the broker while idle",
            connected - alive
        ));
    }
    report.judge();
    Ok(report)
}

/// Keeps idle connections alive: PINGREQ to each, and whatever was received (PINGRESP) discarded.
fn ping_all(streams: &[TcpStream]) {
    let mut sink = [0u8; 256];
    for s in streams {
        while matches!(s.try_read(&mut sink), Ok(n) if n > 0) {}
        let _ = s.try_write(&PINGREQ);
    }
}

/// Open unless the broker closed it: reads (and drops) what is pending until the socket would block.
fn is_open(stream: &TcpStream) -> bool {
    let mut sink = [0u8; 256];
    loop {
        match stream.try_read(&mut sink) {
            Ok(0) => return false,
            Ok(_) => continue,
            Err(e) => return e.kind() == std::io::ErrorKind::WouldBlock,
        }
    }
}
