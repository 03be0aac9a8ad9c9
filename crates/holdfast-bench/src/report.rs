//! The result of a run: a table for people, JSON for machines.

use std::fmt::{self, Write as _};

use hdrhistogram::Histogram;
use serde::Serialize;

use crate::args::{Plan, Scenario};
use crate::procstat::ProcSample;

/// [`Report::ended`] when messages were still arriving at the end of the grace period.
pub const GRACE_EXPIRED: &str = "grace expired";

/// Latency percentiles in microseconds.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Latency {
    pub count: u64,
    pub p50_us: f64,
    pub p99_us: f64,
    pub p999_us: f64,
    pub max_us: f64,
    pub mean_us: f64,
}

impl Latency {
    /// From a histogram of nanoseconds; `None` when empty.
    pub fn from_ns(h: &Histogram<u64>) -> Option<Latency> {
        if h.is_empty() {
            return None;
        }
        let us = |ns: u64| ns as f64 / 1000.0;
        Some(Latency {
            count: h.len(),
            p50_us: us(h.value_at_quantile(0.50)),
            p99_us: us(h.value_at_quantile(0.99)),
            p999_us: us(h.value_at_quantile(0.999)),
            max_us: us(h.max()),
            mean_us: h.mean() / 1000.0,
        })
    }
}

/// One publisher's messages, summed over the subscribers that should have received them.
#[derive(Debug, Clone, Serialize, Default, PartialEq)]
pub struct PublisherStats {
    pub id: u32,
    pub sent: u64,
    pub acked: u64,
    pub lost: u64,
    pub duplicated: u64,
    pub reordered: u64,
}

#[derive(Debug, Clone, Serialize, Default, PartialEq)]
pub struct ConnsReport {
    pub target: u64,
    pub connected: u64,
    pub failed: u64,
    /// Connections established per second (CONNECT sent to CONNACK received, over the whole ramp).
    pub connect_rate: f64,
    pub connect_latency: Option<Latency>,
    /// Still open when the broker was sampled after the hold time.
    pub alive_after_hold: u64,
    /// Broker RSS growth per connection, in bytes (given --pid).
    pub rss_per_conn_bytes: Option<f64>,
}

#[derive(Debug, Clone, Serialize, Default, PartialEq)]
pub struct DurableReport {
    pub session_present: bool,
    /// Time taken by --restart-cmd plus the wait until the port accepted connections again.
    pub restart_s: Option<f64>,
    /// Reconnect (CONNECT sent) until the last queued message arrived.
    pub time_to_all_s: Option<f64>,
    pub first_message_s: Option<f64>,
    pub publish_s: f64,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct ProcReport {
    pub pid: u32,
    pub rss_before_kib: u64,
    pub rss_after_kib: u64,
    /// utime + stime over the measured window.
    pub cpu_s: f64,
    /// Broker CPU seconds per million messages delivered in the window.
    pub cpu_s_per_million: Option<f64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub scenario: Scenario,
    pub label: Option<String>,
    pub broker: String,
    pub protocol: String,
    pub qos: u8,
    pub size: usize,
    pub publishers: u32,
    pub subscribers: u32,
    /// Per publisher msgs/s asked for; 0 = as fast as possible.
    pub rate: u64,
    pub inflight: u16,
    pub warmup_s: f64,
    /// The window the rates are measured over.
    pub window_s: f64,
    pub sent: u64,
    pub acked: u64,
    pub rejected: u64,
    /// QoS 1/2 messages sent whose acknowledgement never came.
    pub unacked: u64,
    /// Distinct messages received, summed over subscribers.
    pub delivered: u64,
    /// sent x subscribers.
    pub expected: u64,
    pub sent_per_s: f64,
    pub acked_per_s: f64,
    pub delivered_per_s: f64,
    /// Send to receive.
    pub latency: Option<Latency>,
    /// Send to PUBACK (QoS 1) or PUBCOMP (QoS 2).
    pub ack_latency: Option<Latency>,
    /// Acknowledged (QoS 1/2) or sent (QoS 0) but never received, summed over subscribers.
    pub lost: u64,
    pub duplicated: u64,
    pub reordered: u64,
    pub per_publisher: Vec<PublisherStats>,
    pub conns: Option<ConnsReport>,
    pub durable: Option<DurableReport>,
    pub broker_process: Option<ProcReport>,
    /// CPU seconds this load generator used during the window.
    pub generator_cpu_s: Option<f64>,
    /// Why the wait for stragglers ended: "complete" (everything arrived), "stalled" (nothing
    /// arrived for a second) or "grace expired" (messages were still arriving: `lost` may count
    /// messages the broker would still have delivered).
    pub ended: Option<&'static str>,
    pub errors: Vec<String>,
    pub failed: bool,
}

impl Report {
    pub fn new(plan: &Plan) -> Report {
        Report {
            scenario: plan.scenario,
            label: plan.label.clone(),
            broker: format!("{}:{}", plan.host, plan.port),
            protocol: plan.version.to_string(),
            qos: plan.qos.as_u8(),
            size: plan.size,
            publishers: plan.publishers,
            subscribers: plan.subscribers,
            rate: plan.rate,
            inflight: plan.inflight,
            warmup_s: plan.warmup.as_secs_f64(),
            window_s: 0.0,
            sent: 0,
            acked: 0,
            rejected: 0,
            unacked: 0,
            delivered: 0,
            expected: 0,
            sent_per_s: 0.0,
            acked_per_s: 0.0,
            delivered_per_s: 0.0,
            latency: None,
            ack_latency: None,
            lost: 0,
            duplicated: 0,
            reordered: 0,
            per_publisher: Vec::new(),
            conns: None,
            durable: None,
            broker_process: None,
            generator_cpu_s: None,
            ended: None,
            errors: Vec::new(),
            failed: false,
        }
    }

    /// Fills the broker process figures from samples taken at the window's ends.
    pub fn set_process(&mut self, pid: u32, before: ProcSample, after: ProcSample, messages: u64) {
        let cpu_s = after.cpu_s - before.cpu_s;
        self.broker_process = Some(ProcReport {
            pid,
            rss_before_kib: before.rss_kib,
            rss_after_kib: after.rss_kib,
            cpu_s,
            cpu_s_per_million: (messages > 0).then(|| cpu_s * 1e6 / messages as f64),
        });
    }

    /// Decides `failed`: any error, or (QoS 1/2) an acknowledged message never delivered, or
    /// (QoS 2) a duplicate.
    pub fn judge(&mut self) {
        self.failed = !self.errors.is_empty()
            || (self.qos > 0 && self.lost > 0)
            || (self.qos == 2 && self.duplicated > 0);
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).expect("plain data")
    }

    /// The summary table.
    pub fn table(&self) -> String {
        let mut s = String::new();
        self.write_table(&mut s).expect("writing to a String");
        s
    }

    fn write_table(&self, s: &mut String) -> fmt::Result {
        let scenario = format!("{:?}", self.scenario).to_lowercase();
        let label = self
            .label
            .as_deref()
            .map(|l| format!(" [{l}]"))
            .unwrap_or_default();
        writeln!(
            s,
            "holdfast bench {scenario}{label}: {} MQTT {} QoS {}, {} B payloads",
            self.broker, self.protocol, self.qos, self.size
        )?;
        if let Some(c) = &self.conns {
            writeln!(
                s,
                "  connections    {} of {} opened, {} failed, {} still open after the hold",
                c.connected, c.target, c.failed, c.alive_after_hold
            )?;
            writeln!(s, "  connect rate   {:.0} conn/s", c.connect_rate)?;
            if let Some(l) = &c.connect_latency {
                writeln!(s, "  CONNACK after  {}", fmt_latency(l))?;
            }
            if let Some(b) = c.rss_per_conn_bytes {
                writeln!(
                    s,
                    "  broker RSS     {:.0} B ({:.2} KiB) per connection",
                    b,
                    b / 1024.0
                )?;
            }
        } else {
            let rate = if self.rate == 0 {
                "max".to_string()
            } else {
                format!("{}/s", self.rate)
            };
            writeln!(
                s,
                "  {} publisher(s) at {rate} each -> {} subscriber(s), window {} in flight; \
                 measured {:.2} s after {:.1} s warm-up",
                self.publishers, self.subscribers, self.inflight, self.window_s, self.warmup_s
            )?;
            writeln!(s, "  {:<12} {:>14} {:>14}", "", "total", "per second")?;
            writeln!(
                s,
                "  {:<12} {:>14} {:>14.0}",
                "sent", self.sent, self.sent_per_s
            )?;
            if self.qos > 0 {
                writeln!(
                    s,
                    "  {:<12} {:>14} {:>14.0}",
                    "acked", self.acked, self.acked_per_s
                )?;
            }
            writeln!(
                s,
                "  {:<12} {:>14} {:>14.0}",
                "delivered", self.delivered, self.delivered_per_s
            )?;
            if let Some(l) = &self.latency {
                writeln!(s, "  latency      {}", fmt_latency(l))?;
            }
            if let Some(l) = &self.ack_latency {
                writeln!(s, "  ack latency  {}", fmt_latency(l))?;
            }
            writeln!(
                s,
                "  lost {}  duplicated {}  reordered {}  unacked {}  rejected {}  (expected {})",
                self.lost,
                self.duplicated,
                self.reordered,
                self.unacked,
                self.rejected,
                self.expected
            )?;
            if self.ended == Some(GRACE_EXPIRED) && self.lost > 0 {
                writeln!(
                    s,
                    "  (messages were still arriving when the grace period ended: `lost` counts \
                     what had not arrived by then; see --grace)"
                )?;
            }
            let odd: Vec<_> = self
                .per_publisher
                .iter()
                .filter(|p| p.lost + p.duplicated + p.reordered > 0)
                .collect();
            for p in odd.iter().take(20) {
                writeln!(
                    s,
                    "    publisher {:>4}: sent {} acked {} lost {} duplicated {} reordered {}",
                    p.id, p.sent, p.acked, p.lost, p.duplicated, p.reordered
                )?;
            }
            if odd.len() > 20 {
                writeln!(
                    s,
                    "    ... {} more publishers with anomalies (see --json)",
                    odd.len() - 20
                )?;
            }
        }
        if let Some(d) = &self.durable {
            writeln!(s, "  session present on reconnect: {}", d.session_present)?;
            writeln!(s, "  publishing took {:.2} s", d.publish_s)?;
            if let Some(r) = d.restart_s {
                writeln!(s, "  restart (command + port ready) {r:.2} s")?;
            }
            match (d.first_message_s, d.time_to_all_s) {
                (_, Some(t)) => writeln!(
                    s,
                    "  all queued messages arrived {t:.3} s after reconnecting"
                )?,
                (Some(f), None) => writeln!(
                    s,
                    "  first message {f:.3} s after reconnecting; not all arrived"
                )?,
                (None, None) => writeln!(s, "  no queued message arrived")?,
            }
        }
        if let Some(p) = &self.broker_process {
            let per_m = p
                .cpu_s_per_million
                .map(|c| format!(", {c:.2} s per million messages"))
                .unwrap_or_default();
            writeln!(
                s,
                "  broker pid {}: CPU {:.2} s{per_m}; RSS {:.1} MiB -> {:.1} MiB",
                p.pid,
                p.cpu_s,
                p.rss_before_kib as f64 / 1024.0,
                p.rss_after_kib as f64 / 1024.0
            )?;
        }
        if let Some(c) = self.generator_cpu_s {
            writeln!(s, "  load generator CPU {c:.2} s")?;
        }
        for e in self.errors.iter().take(10) {
            writeln!(s, "  error: {e}")?;
        }
        if self.errors.len() > 10 {
            writeln!(s, "  ... {} more errors", self.errors.len() - 10)?;
        }
        writeln!(s, "  result: {}", if self.failed { "FAILED" } else { "ok" })
    }
}

fn fmt_latency(l: &Latency) -> String {
    format!(
        "p50 {} p99 {} p99.9 {} max {} (n={})",
        fmt_us(l.p50_us),
        fmt_us(l.p99_us),
        fmt_us(l.p999_us),
        fmt_us(l.max_us),
        l.count
    )
}

fn fmt_us(us: f64) -> String {
    if us >= 10_000.0 {
        format!("{:.1} ms", us / 1000.0)
    } else if us >= 1000.0 {
        format!("{:.2} ms", us / 1000.0)
    } else {
        format!("{us:.0} µs")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::args::BenchArgs;

    #[test]
    fn table_and_json_carry_the_figures() {
        let plan =
            Plan::from_args(&BenchArgs::try_parse_from(["fanin", "-q", "1"]).unwrap()).unwrap();
        let mut r = Report::new(&plan);
        let mut h = crate::publisher::histogram();
        for v in [1_000, 2_000, 3_000, 250_000] {
            h.record(v).unwrap();
        }
        r.latency = Latency::from_ns(&h);
        r.sent = 100;
        r.delivered = 98;
        r.lost = 2;
        r.per_publisher.push(PublisherStats {
            id: 3,
            sent: 100,
            acked: 100,
            lost: 2,
            ..Default::default()
        });
        r.judge();
        assert!(r.failed, "acked messages lost at QoS 1");
        let table = r.table();
        assert!(table.contains("lost 2"), "{table}");
        assert!(table.contains("publisher    3"), "{table}");
        assert!(table.contains("FAILED"), "{table}");
        let json: serde_json::Value = serde_json::from_str(&r.to_json()).unwrap();
        assert_eq!(json["scenario"], "fanin");
        assert_eq!(json["lost"], 2);
        assert_eq!(json["latency"]["count"], 4);
        assert!(json["latency"]["max_us"].as_f64().unwrap() >= 250.0);
    }

    #[test]
    fn qos0_losses_do_not_fail_the_run() {
        let plan = Plan::from_args(&BenchArgs::try_parse_from(["fanout"]).unwrap()).unwrap();
        let mut r = Report::new(&plan);
        r.lost = 1000;
        r.judge();
        assert!(!r.failed);
        r.errors.push("protocol error".into());
        r.judge();
        assert!(r.failed);
    }
}
