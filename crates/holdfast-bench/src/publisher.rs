//! A publisher connection: sends stamped messages at a rate or as fast as its window allows, and
//! tracks every QoS 1/2 message until PUBACK or PUBCOMP.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Duration;

use hdrhistogram::Histogram;
use holdfast_proto::{Packet, QoS};
use tokio::time::Instant;

use crate::payload::{Clock, Stamp};
use crate::tracker::BitSet;
use crate::wire::{self, Conn, Frame, PublishTemplate};
use crate::BenchError;

/// Queue more messages only while less than this is waiting to be written.
const WRITE_HIGH: usize = 64 * 1024;

/// Totals shared by every task, read by the progress line and the coordinator.
#[derive(Debug, Default)]
pub struct Counters {
    pub sent: AtomicU64,
    pub acked: AtomicU64,
    pub rejected: AtomicU64,
    /// Distinct messages delivered, summed over subscribers.
    pub delivered: AtomicU64,
    /// Publishers that stopped sending.
    pub publishers_done: AtomicU64,
}

pub fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 3_600_000_000_000, 3).expect("valid bounds")
}

pub struct PublisherConfig {
    pub id: u32,
    pub qos: QoS,
    /// Messages per second, 0 = unlimited.
    pub rate: u64,
    pub count: Option<u64>,
    pub start: Instant,
    /// Stop sending at this instant (duration mode).
    pub stop_at: Option<Instant>,
    /// After sending stopped, how long to wait for outstanding acknowledgements.
    pub grace: Duration,
    pub window: u16,
    pub template: PublishTemplate,
    pub clock: Clock,
    pub counters: Arc<Counters>,
}

/// What a publisher did.
pub struct PublisherResult {
    pub id: u32,
    pub sent: u64,
    /// Sequence numbers acknowledged with success (QoS 1/2).
    pub acked: BitSet,
    /// Acknowledged with an error reason code (MQTT 5).
    pub rejected: u64,
    /// Send to PUBACK / PUBCOMP, in ns.
    pub ack_latency: Histogram<u64>,
    pub error: Option<BenchError>,
}

#[derive(Clone, Copy, Default)]
struct Slot {
    seq: u64,
    sent_ns: u64,
    /// 0 free, 1 waiting for PUBACK/PUBREC, 2 PUBREL sent.
    stage: u8,
}

struct State {
    cfg: PublisherConfig,
    slots: Vec<Slot>,
    free: Vec<u16>,
    sent: u64,
    acked: BitSet,
    rejected: u64,
    ack_latency: Histogram<u64>,
}

pub async fn run(conn: Conn, cfg: PublisherConfig) -> PublisherResult {
    let window = usize::from(cfg.window.max(1));
    let mut st = State {
        slots: vec![Slot::default(); window],
        // Packet id = slot + 1; popped from the end, so ids start at 1.
        free: (0..window as u16).rev().collect(),
        sent: 0,
        acked: BitSet::new(),
        rejected: 0,
        ack_latency: histogram(),
        cfg,
    };
    let mut conn = conn;
    let error = st.drive(&mut conn).await.err();
    if error.is_none() {
        conn.close().await;
    }
    PublisherResult {
        id: st.cfg.id,
        sent: st.sent,
        acked: st.acked,
        rejected: st.rejected,
        ack_latency: st.ack_latency,
        error,
    }
}

impl State {
    fn in_flight(&self) -> usize {
        self.slots.len() - self.free.len()
    }

    async fn drive(&mut self, conn: &mut Conn) -> Result<(), BenchError> {
        tokio::time::sleep_until(self.cfg.start).await;
        if !conn.rbuf.is_empty() {
            self.process(conn)?; // arrived with the CONNACK
        }
        let qos0 = self.cfg.qos == QoS::AtMostOnce;
        let mut sending = true;
        let mut drain_until = None;
        loop {
            let now = Instant::now();
            if sending && self.finished_sending(now) {
                sending = false;
                drain_until = Some(now + self.cfg.grace);
                self.cfg.counters.publishers_done.fetch_add(1, Relaxed);
            }
            let mut next_due = None;
            if sending {
                next_due = self.produce(conn, now);
            }
            conn.keep_alive(now);
            conn.try_flush()?;
            if conn.try_read()? {
                self.process(conn)?;
                conn.try_flush()?;
            }
            if !sending {
                if (qos0 || self.in_flight() == 0) && conn.wbuf.is_empty() {
                    return Ok(());
                }
                if drain_until.is_some_and(|d| now >= d) {
                    return Ok(());
                }
            }
            let can_send_now = sending
                && next_due.is_none()
                && conn.wbuf.len() < WRITE_HIGH
                && (qos0 || !self.free.is_empty());
            if can_send_now {
                // Max rate and room to send: let the other tasks run, then go on.
                tokio::task::yield_now().await;
                continue;
            }
            let deadline = match (sending, next_due) {
                (true, Some(due)) => Some(due),
                (true, None) => self.cfg.stop_at,
                (false, _) => drain_until,
            };
            let deadline = Some(deadline.map_or(conn.ping_due(), |d| d.min(conn.ping_due())));
            if conn.pump(deadline).await? {
                self.process(conn)?;
            }
        }
    }

    fn finished_sending(&self, now: Instant) -> bool {
        self.cfg.count.is_some_and(|c| self.sent >= c) || self.cfg.stop_at.is_some_and(|s| now >= s)
    }

    /// Queues the messages that are due and fit the window; returns when the next one is due if
    /// rate-limited and none more are due now.
    fn produce(&mut self, conn: &mut Conn, now: Instant) -> Option<Instant> {
        let cfg = &self.cfg;
        let room = (WRITE_HIGH.saturating_sub(conn.wbuf.len()) / cfg.template.len().max(1)).max(1);
        let mut n = room as u64;
        if let Some(count) = cfg.count {
            n = n.min(count - self.sent);
        }
        let mut next_due = None;
        if cfg.rate > 0 {
            let elapsed = now.saturating_duration_since(cfg.start).as_secs_f64();
            let due = (elapsed * cfg.rate as f64) as u64 + 1;
            let due_now = due.saturating_sub(self.sent);
            if due_now <= n {
                n = due_now;
                let at = Duration::from_secs_f64((self.sent + n) as f64 / cfg.rate as f64);
                next_due = Some(cfg.start + at);
            }
        }
        if cfg.qos != QoS::AtMostOnce {
            n = n.min(self.free.len() as u64);
        }
        if n == 0 {
            return next_due;
        }
        let sent_ns = cfg.clock.ns_at(now.into_std());
        conn.wbuf.reserve(n as usize * cfg.template.len());
        for _ in 0..n {
            let seq = self.sent;
            let packet_id = match self.cfg.qos {
                QoS::AtMostOnce => 0,
                _ => {
                    let slot = self.free.pop().expect("bounded by free slots");
                    self.slots[usize::from(slot)] = Slot {
                        seq,
                        sent_ns,
                        stage: 1,
                    };
                    slot + 1
                }
            };
            let stamp = Stamp {
                publisher: self.cfg.id,
                seq,
                sent_ns,
            };
            self.cfg.template.write(&mut conn.wbuf, packet_id, &stamp);
            self.sent += 1;
        }
        self.cfg.counters.sent.fetch_add(n, Relaxed);
        next_due
    }

    /// Handles every complete packet in the read buffer.
    fn process(&mut self, conn: &mut Conn) -> Result<(), BenchError> {
        let now_ns = self.cfg.clock.now_ns();
        let v5 = conn.version.is_v5();
        let (mut acked, mut rejected) = (0u64, 0u64);
        let mut at = 0;
        let result = loop {
            let (frame, n) = match wire::parse_frame(&conn.rbuf[at..], v5) {
                Ok(Some(f)) => f,
                Ok(None) => break Ok(()),
                Err(e) => break Err(e),
            };
            let step = match frame {
                Frame::PubAck { packet_id, reason } if self.cfg.qos == QoS::AtLeastOnce => {
                    self.complete(packet_id, 1, reason, now_ns)
                }
                Frame::PubRec { packet_id, reason } if self.cfg.qos == QoS::ExactlyOnce => {
                    if reason >= 0x80 {
                        self.complete(packet_id, 1, reason, now_ns)
                    } else {
                        let slot = self.slot(packet_id, 1)?;
                        self.slots[slot].stage = 2;
                        wire::put_ack(&mut conn.wbuf, wire::PUBREL, packet_id);
                        Ok(None)
                    }
                }
                Frame::PubComp { packet_id, reason } if self.cfg.qos == QoS::ExactlyOnce => {
                    self.complete(packet_id, 2, reason, now_ns)
                }
                Frame::Other => match wire::decode_other(&conn.rbuf[at..at + n], conn.version)? {
                    Packet::PingResp => Ok(None),
                    Packet::Disconnect(d) => Err(BenchError::Protocol(format!(
                        "the broker disconnected publisher {} with reason {}",
                        self.cfg.id, d.reason
                    ))),
                    p => Err(unexpected(p.name(), self.cfg.id)),
                },
                other => Err(unexpected(frame_name(&other), self.cfg.id)),
            };
            match step {
                Ok(Some(true)) => acked += 1,
                Ok(Some(false)) => rejected += 1,
                Ok(None) => {}
                Err(e) => break Err(e),
            }
            at += n;
        };
        bytes::Buf::advance(&mut conn.rbuf, at);
        self.cfg.counters.acked.fetch_add(acked, Relaxed);
        self.cfg.counters.rejected.fetch_add(rejected, Relaxed);
        result
    }

    fn slot(&self, packet_id: u16, stage: u8) -> Result<usize, BenchError> {
        let slot = usize::from(packet_id) - 1;
        match self.slots.get(slot) {
            Some(s) if s.stage == stage => Ok(slot),
            _ => Err(BenchError::Protocol(format!(
                "publisher {}: acknowledgement for packet id {packet_id}, which is not in flight \
                 at that stage",
                self.cfg.id
            ))),
        }
    }

    /// Ends a message's flight: Some(true) acknowledged, Some(false) refused by reason code.
    fn complete(
        &mut self,
        packet_id: u16,
        stage: u8,
        reason: u8,
        now_ns: u64,
    ) -> Result<Option<bool>, BenchError> {
        let slot = self.slot(packet_id, stage)?;
        let s = std::mem::take(&mut self.slots[slot]);
        self.free.push(slot as u16);
        if reason >= 0x80 {
            self.rejected += 1;
            return Ok(Some(false));
        }
        self.acked.insert(s.seq);
        self.ack_latency
            .saturating_record(now_ns.saturating_sub(s.sent_ns).max(1));
        Ok(Some(true))
    }
}

fn frame_name(frame: &Frame<'_>) -> &'static str {
    match frame {
        Frame::Publish { .. } => "PUBLISH",
        Frame::PubAck { .. } => "PUBACK",
        Frame::PubRec { .. } => "PUBREC",
        Frame::PubRel { .. } => "PUBREL",
        Frame::PubComp { .. } => "PUBCOMP",
        Frame::Other => "packet",
    }
}

fn unexpected(name: &str, id: u32) -> BenchError {
    BenchError::Protocol(format!("publisher {id} received an unexpected {name}"))
}
