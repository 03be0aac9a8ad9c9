//! `GET /metrics`: the broker's figures in the Prometheus text exposition format (version 0.0.4).
//!
//! The figures already live in atomic counters ([`crate::stats::Stats`]), the registry and the
//! store, so they are rendered straight from there at scrape time: nothing is counted twice and
//! a scrape costs one pass over the sessions.

use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::broker::{now_millis, Broker};

/// Every metric, as text.
pub fn render(broker: &Broker) -> String {
    let mut m = Metrics(String::with_capacity(8 * 1024));
    let b = broker.broker_stats();
    let s = broker.store_stats();
    let c = &broker.stats;
    let n = |a: &AtomicU64| a.load(Ordering::Relaxed);

    m.help(
        "holdfast_build_info",
        "gauge",
        "Always 1; the version in a label.",
    );
    m.sample(
        "holdfast_build_info",
        &[("version", env!("CARGO_PKG_VERSION"))],
        1,
    );
    m.one(
        "holdfast_uptime_seconds",
        "gauge",
        "Seconds since the broker started.",
        now_millis().saturating_sub(broker.started_at) / 1000,
    );
    m.one(
        "holdfast_ready",
        "gauge",
        "1 once recovery finished and the listeners are bound.",
        u64::from(broker.ready.load(Ordering::Acquire)),
    );
    m.one(
        "holdfast_connections",
        "gauge",
        "Open client connections.",
        b.connections as u64,
    );
    m.one(
        "holdfast_connections_refused_total",
        "counter",
        "Connections refused at CONNECT (limits, bad credentials, protocol errors).",
        n(&c.connections_refused),
    );
    m.one(
        "holdfast_auth_failures_total",
        "counter",
        "CONNECTs refused for a wrong or missing password, or anonymous access not allowed.",
        n(&c.auth_failures),
    );
    m.help(
        "holdfast_connections_limited_total",
        "counter",
        "Connections refused or closed by a rate or per-address limit, by limit.",
    );
    for (limit, v) in [
        ("max_connections_per_ip", &c.connections_refused_per_ip),
        ("connect_rate_per_ip", &c.connections_rate_limited),
        ("max_publish_rate", &c.publish_rate_exceeded),
    ] {
        m.sample(
            "holdfast_connections_limited_total",
            &[("limit", limit)],
            n(v),
        );
    }
    m.one(
        "holdfast_handshake_failures_total",
        "counter",
        "TLS or WebSocket handshakes that failed or timed out.",
        n(&c.handshake_failures),
    );
    m.help(
        "holdfast_sessions",
        "gauge",
        "Sessions held, by whether their client is connected.",
    );
    m.sample(
        "holdfast_sessions",
        &[("state", "online")],
        b.sessions_online as u64,
    );
    m.sample(
        "holdfast_sessions",
        &[("state", "offline")],
        (b.sessions - b.sessions_online) as u64,
    );
    m.one(
        "holdfast_subscriptions",
        "gauge",
        "Subscriptions held by all sessions.",
        b.subscriptions as u64,
    );
    m.one(
        "holdfast_queued_messages",
        "gauge",
        "Messages queued for sessions (offline, or past Receive Maximum).",
        b.queued_messages as u64,
    );
    m.one(
        "holdfast_queued_bytes",
        "gauge",
        "Bytes (topic + payload) of the queued messages.",
        b.queued_bytes,
    );
    m.one(
        "holdfast_inflight_messages",
        "gauge",
        "Outbound QoS 1/2 messages sent and not yet completed.",
        b.inflight_messages as u64,
    );
    m.one(
        "holdfast_retained_messages",
        "gauge",
        "Retained messages held.",
        b.retained_messages as u64,
    );
    m.by_qos(
        "holdfast_messages_received_total",
        "Application messages received from clients, by QoS.",
        &c.received_by_qos,
    );
    m.by_qos(
        "holdfast_messages_sent_total",
        "PUBLISH packets sent to clients, by QoS.",
        &c.sent_by_qos,
    );
    m.one(
        "holdfast_bytes_received_total",
        "counter",
        "Bytes read from client connections.",
        n(&c.bytes_received),
    );
    m.one(
        "holdfast_bytes_sent_total",
        "counter",
        "Bytes written to client connections.",
        n(&c.bytes_sent),
    );
    m.one(
        "holdfast_sys_messages_published_total",
        "counter",
        "$SYS messages published by the broker.",
        n(&c.sys_published),
    );
    m.help(
        "holdfast_messages_dropped_total",
        "counter",
        "Messages dropped instead of delivered, by reason.",
    );
    for (reason, v) in [
        ("queue_full", &c.dropped_queue_full),
        ("expired", &c.dropped_expired),
        ("too_large", &c.dropped_too_large),
        ("qos0_offline", &c.dropped_qos0_offline),
        ("store_quota", &c.dropped_store_quota),
        ("no_subscriber", &c.dropped_no_subscriber),
    ] {
        m.sample(
            "holdfast_messages_dropped_total",
            &[("reason", reason)],
            n(v),
        );
    }
    m.help(
        "holdfast_sessions_discarded_total",
        "counter",
        "Sessions discarded by an administrator or an automated rule, by reason.",
    );
    for (reason, v) in [
        ("admin", &c.discarded_sessions_admin),
        ("idle", &c.discarded_sessions_idle),
        ("store_high_water", &c.discarded_sessions_high_water),
    ] {
        m.sample(
            "holdfast_sessions_discarded_total",
            &[("reason", reason)],
            n(v),
        );
    }
    m.one(
        "holdfast_store_disk_bytes",
        "gauge",
        "Bytes the store uses on disk.",
        s.disk_bytes,
    );
    m.one(
        "holdfast_store_batches_total",
        "counter",
        "Batches committed to the store.",
        s.batches,
    );
    m.one(
        "holdfast_store_writes_total",
        "counter",
        "Group-commit writes (each carries every pending batch): batches / writes is the mean batch count per write.",
        s.writes,
    );
    m.one(
        "holdfast_store_fsyncs_total",
        "counter",
        "fsync calls of the store.",
        s.fsyncs,
    );
    m.one(
        "holdfast_store_failed_commits_total",
        "counter",
        "Batches that completed with an error (I/O, quota, closed).",
        s.failed_commits,
    );
    m.one(
        "holdfast_store_quota_rejections_total",
        "counter",
        "Batches refused because the store reached storage.max_bytes.",
        s.quota_rejections,
    );
    m.one(
        "holdfast_store_compactions_total",
        "counter",
        "Snapshots written by the store.",
        s.compactions,
    );
    m.one(
        "holdfast_store_corrupt_records_skipped",
        "gauge",
        "Damaged records skipped during recovery at start.",
        s.corrupt_records_skipped,
    );
    m.one(
        "holdfast_store_torn_bytes_truncated",
        "gauge",
        "Bytes of a torn tail cut off during recovery at start.",
        s.torn_bytes_truncated,
    );
    m.one(
        "holdfast_store_live_bytes",
        "gauge",
        "Bytes of live state in the store: what storage.max_bytes caps.",
        s.live_bytes,
    );
    m.help(
        "holdfast_store_recovery_seconds",
        "gauge",
        "Seconds the store took to recover at start.",
    );
    let _ = writeln!(
        m.0,
        "holdfast_store_recovery_seconds {}",
        broker.recovery_seconds()
    );
    m.histogram(
        "holdfast_store_fsync_seconds",
        "Latency of one fsync of the store.",
        &s.fsync_seconds,
    );
    m.histogram(
        "holdfast_store_commit_seconds",
        "Latency from a commit to its completion (written for flush, fsync'd for sync).",
        &s.commit_seconds,
    );
    m.histogram(
        "holdfast_store_commit_batch_size",
        "Batches carried by one group-commit write.",
        &s.batches_per_write,
    );
    m.0
}

struct Metrics(String);

impl Metrics {
    fn help(&mut self, name: &str, kind: &str, help: &str) {
        let _ = writeln!(self.0, "# HELP {name} {help}\n# TYPE {name} {kind}");
    }

    fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: u64) {
        self.0.push_str(name);
        if !labels.is_empty() {
            self.0.push('{');
            for (i, (k, v)) in labels.iter().enumerate() {
                if i > 0 {
                    self.0.push(',');
                }
                let v = v.replace('\\', "\\\\").replace('"', "\\\"");
                let _ = write!(self.0, "{k}=\"{v}\"");
            }
            self.0.push('}');
        }
        let _ = writeln!(self.0, " {value}");
    }

    fn one(&mut self, name: &str, kind: &str, help: &str, value: u64) {
        self.help(name, kind, help);
        self.sample(name, &[], value);
    }

    fn histogram(&mut self, name: &str, help: &str, h: &holdfast_store::Histogram) {
        self.help(name, "histogram", help);
        let mut cumulative = 0;
        for (i, bound) in h.bounds.iter().enumerate() {
            cumulative += h.counts.get(i).copied().unwrap_or(0);
            let _ = writeln!(self.0, "{name}_bucket{{le=\"{bound}\"}} {cumulative}");
        }
        let _ = writeln!(self.0, "{name}_bucket{{le=\"+Inf\"}} {}", h.count);
        let _ = writeln!(self.0, "{name}_sum {}", h.sum);
        let _ = writeln!(self.0, "{name}_count {}", h.count);
    }

    fn by_qos(&mut self, name: &str, help: &str, counters: &[AtomicU64; 3]) {
        self.help(name, "counter", help);
        for (qos, c) in ["0", "1", "2"].iter().zip(counters) {
            self.sample(name, &[("qos", qos)], c.load(Ordering::Relaxed));
        }
    }
}
