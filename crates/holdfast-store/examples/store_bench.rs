//! Measures the durable store on this machine's disk:
//!
//! - `sync` commit throughput and latency with 1, 8 and 64 concurrent committers, for each record
//!   shape the broker writes;
//! - `flush` commit throughput;
//! - start-up (recovery) time with 1,000,000 queued 64-byte messages across 1,000 sessions.
//!
//! `cargo run --release -p holdfast-store --example store_bench -- [DIR] [--quick]`
//! (DIR defaults to a directory under the system temp dir; it is removed afterwards).

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc, Barrier};
use std::time::{Duration, Instant};

use bytes::Bytes;
use holdfast_proto::Properties;
use holdfast_store::{
    Durability, LogOptions, LogStore, Op, OutEntry, SessionRecord, Store, StoredMessage, StoredWill,
};

fn message(id: u64) -> StoredMessage {
    StoredMessage {
        topic: format!("meters/{}/power", id % 1000).into(),
        payload: Bytes::from(vec![(id % 251) as u8; 64]),
        qos: 1,
        retain: false,
        properties: Properties::default(),
        expires_at: None,
        publisher: Some("meter-0042".into()),
    }
}

fn client(n: u64) -> holdfast_core::ClientId {
    format!("client-{n:05}").into()
}

/// One batch of the given shape; `n` makes it unique.
fn shape(name: &str, t: u64, n: u64) -> Vec<Op> {
    let c = client(t);
    let id = t << 32 | n;
    match name {
        "session" => vec![Op::PutSession {
            client_id: c,
            record: SessionRecord {
                protocol: 5,
                expiry: 3600,
                disconnected_at: Some(1_700_000_000_000 + n),
                will: Some(StoredWill {
                    topic: "status/offline".into(),
                    payload: Bytes::from_static(b"offline"),
                    qos: 1,
                    retain: true,
                    properties: Properties::from(holdfast_proto::PropertySet {
                        will_delay_interval: Some(5),
                        ..Default::default()
                    }),
                }),
                will_due: None,
            },
        }],
        "subscription" => vec![Op::PutSubscription {
            client_id: c,
            filter: format!("meters/{}/#", n % 100),
            options: 1,
            id: Some(7),
        }],
        "message (64 B)" => vec![Op::PutMessage {
            id,
            message: message(id),
        }],
        "queue entry" => vec![Op::PutOutbound {
            client_id: c,
            seq: n,
            entry: OutEntry {
                message_id: id,
                qos: 1,
                ..OutEntry::default()
            },
        }],
        "in-flight update" => vec![Op::PutOutbound {
            client_id: c,
            seq: n,
            entry: OutEntry {
                message_id: id,
                qos: 1,
                packet_id: Some((n % 65535 + 1) as u16),
                ..OutEntry::default()
            },
        }],
        "inbound QoS 2 id" => vec![Op::PutInboundQos2 {
            client_id: c,
            packet_id: (n % 65535 + 1) as u16,
        }],
        "retained" => vec![
            Op::PutMessage {
                id,
                message: message(id),
            },
            Op::PutRetained {
                topic: format!("status/{t}/{}", n % 10),
                message_id: id,
            },
        ],
        "publish (message + entry)" => vec![
            Op::PutMessage {
                id,
                message: message(id),
            },
            Op::PutOutbound {
                client_id: c,
                seq: n,
                entry: OutEntry {
                    message_id: id,
                    qos: 1,
                    ..OutEntry::default()
                },
            },
        ],
        _ => unreachable!(),
    }
}

struct Run {
    batches: u64,
    fsyncs: u64,
    secs: f64,
    p50: Duration,
    p99: Duration,
}

/// `threads` committers, each committing a batch and waiting for it, for `secs`.
fn run(dir: &Path, name: &'static str, threads: u64, durability: Durability, secs: f64) -> Run {
    let _ = std::fs::remove_dir_all(dir);
    let (store, _) = LogStore::open(dir, LogOptions::default()).unwrap();
    let store = Arc::new(store);
    for t in 0..threads {
        let record = SessionRecord {
            protocol: 5,
            expiry: 3600,
            ..SessionRecord::default()
        };
        store.commit(
            vec![Op::PutSession {
                client_id: client(t),
                record,
            }],
            Durability::Flush,
            None,
        );
    }
    let stop = Arc::new(AtomicBool::new(false));
    let barrier = Arc::new(Barrier::new(threads as usize + 1));
    let handles: Vec<_> = (0..threads)
        .map(|t| {
            let (store, stop, barrier) = (store.clone(), stop.clone(), barrier.clone());
            std::thread::spawn(move || {
                let mut latencies = Vec::new();
                let (tx, rx) = mpsc::channel();
                barrier.wait();
                let mut n = 0;
                while !stop.load(Ordering::Relaxed) {
                    let tx = tx.clone();
                    let started = Instant::now();
                    store.commit(
                        shape(name, t, n),
                        durability,
                        Some(Box::new(move |r| tx.send(r).unwrap())),
                    );
                    rx.recv().unwrap().unwrap();
                    latencies.push(started.elapsed());
                    n += 1;
                }
                latencies
            })
        })
        .collect();
    barrier.wait();
    let before = store.stats();
    let started = Instant::now();
    std::thread::sleep(Duration::from_secs_f64(secs));
    stop.store(true, Ordering::Relaxed);
    let mut latencies: Vec<Duration> = handles
        .into_iter()
        .flat_map(|h| h.join().unwrap())
        .collect();
    let secs = started.elapsed().as_secs_f64();
    let after = store.stats();
    latencies.sort_unstable();
    let pct = |p: f64| latencies[((latencies.len() - 1) as f64 * p) as usize];
    Run {
        batches: latencies.len() as u64,
        fsyncs: after.fsyncs - before.fsyncs,
        secs,
        p50: pct(0.5),
        p99: pct(0.99),
    }
}

fn recovery(dir: &Path, sessions: u64, messages: u64) {
    let _ = std::fs::remove_dir_all(dir);
    let (store, _) = LogStore::open(dir, LogOptions::default()).unwrap();
    let started = Instant::now();
    for s in 0..sessions {
        let record = SessionRecord {
            protocol: 5,
            expiry: u32::MAX,
            ..SessionRecord::default()
        };
        store.commit(
            vec![Op::PutSession {
                client_id: client(s),
                record,
            }],
            Durability::Flush,
            None,
        );
    }
    let mut batch = Vec::new();
    for id in 0..messages {
        batch.push(Op::PutMessage {
            id,
            message: message(id),
        });
        let entry = OutEntry {
            message_id: id,
            qos: 1,
            ..OutEntry::default()
        };
        batch.push(Op::PutOutbound {
            client_id: client(id % sessions),
            seq: id,
            entry,
        });
        if batch.len() >= 2000 {
            store.commit(std::mem::take(&mut batch), Durability::Flush, None);
        }
    }
    store.commit(batch, Durability::Flush, None);
    store.close();
    let written = started.elapsed();
    let bytes = store.stats().disk_bytes;
    drop(store);
    println!(
        "wrote {messages} queued messages across {sessions} sessions (flush): {:.1} s, {:.0} MB on disk",
        written.as_secs_f64(),
        bytes as f64 / 1e6
    );
    for attempt in 0..2 {
        let started = Instant::now();
        let (store, report) = LogStore::open(dir, LogOptions::default()).unwrap();
        let opened = started.elapsed();
        assert_eq!(report.counts.outbound as u64, messages);
        println!(
            "start-up #{}: open {:.2} s (replay {:.2} s), {} records, {:.0} MB read; {}",
            attempt + 1,
            opened.as_secs_f64(),
            report.duration.as_secs_f64(),
            report.records,
            report.bytes_read as f64 / 1e6,
            report.counts
        );
        let started = Instant::now();
        let state = store.load();
        println!(
            "  load() (clone of the recovered state): {:.2} s",
            started.elapsed().as_secs_f64()
        );
        drop(state);
    }
    let _ = std::fs::remove_dir_all(dir);
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let quick = args.iter().any(|a| a == "--quick");
    let dir = args
        .iter()
        .find(|a| !a.starts_with("--"))
        .map(PathBuf::from)
        .unwrap_or_else(|| std::env::temp_dir().join("holdfast-store-bench"));
    let secs = if quick { 0.5 } else { 1.5 };
    println!("data directory: {}", dir.display());
    println!("| shape | committers | batches/s | fsyncs/s | batches per fsync | p50 | p99 |");
    println!("|---|---:|---:|---:|---:|---:|---:|");
    let shapes = [
        "session",
        "subscription",
        "message (64 B)",
        "queue entry",
        "in-flight update",
        "inbound QoS 2 id",
        "retained",
        "publish (message + entry)",
    ];
    for name in shapes {
        for threads in [1, 8, 64] {
            let r = run(&dir, name, threads, Durability::Sync, secs);
            println!(
                "| {name} | {threads} | {:.0} | {:.0} | {:.1} | {:.2} ms | {:.2} ms |",
                r.batches as f64 / r.secs,
                r.fsyncs as f64 / r.secs,
                r.batches as f64 / r.fsyncs.max(1) as f64,
                r.p50.as_secs_f64() * 1e3,
                r.p99.as_secs_f64() * 1e3
            );
        }
    }
    println!();
    println!("flush class (completes after write(2), fsync every second):");
    for threads in [1, 8, 64] {
        let r = run(
            &dir,
            "publish (message + entry)",
            threads,
            Durability::Flush,
            secs,
        );
        println!(
            "| publish (message + entry) | {threads} | {:.0} batches/s | p50 {:.3} ms | p99 {:.3} ms |",
            r.batches as f64 / r.secs,
            r.p50.as_secs_f64() * 1e3,
            r.p99.as_secs_f64() * 1e3
        );
    }
    println!();
    let messages = if quick { 100_000 } else { 1_000_000 };
    recovery(&dir, 1000, messages);
}
