//! A subscriber connection: acknowledges what it receives and accounts every message by its stamp.

use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;

use hdrhistogram::Histogram;
use holdfast_proto::{Packet, Subscribe, SubscriptionOptions};
use tokio::sync::watch;

use crate::payload::{Clock, Stamp};
use crate::publisher::{histogram, Counters};
use crate::tracker::{Accounting, Foreign};
use crate::wire::{self, Conn, Frame};
use crate::BenchError;

pub struct SubscriberConfig {
    pub index: u32,
    pub publishers: u32,
    pub clock: Clock,
    /// Latency is recorded for messages sent at or after this clock reading.
    pub measure_from_ns: u64,
    pub counters: Arc<Counters>,
}

pub struct SubscriberResult {
    pub accounting: Accounting,
    /// Send to receive, in ns.
    pub latency: Histogram<u64>,
    /// Clock reading of the last new message.
    pub last_new_ns: u64,
    pub error: Option<BenchError>,
}

/// Subscribes `conn` to `filter` and checks the SUBACK.
pub async fn subscribe(
    conn: &mut Conn,
    filter: &str,
    options: SubscriptionOptions,
) -> Result<(), BenchError> {
    conn.send(&Packet::Subscribe(Subscribe {
        packet_id: 1,
        filters: vec![(filter.to_string(), options)],
        properties: Default::default(),
    }))
    .await?;
    match conn.recv().await? {
        Packet::SubAck(ack) if ack.packet_id == 1 => match ack.reasons.first() {
            Some(r) if r.0 == options.qos.as_u8() => Ok(()),
            Some(r) if !r.is_error() => Err(BenchError::Protocol(format!(
                "SUBACK granted QoS {} for {filter}, not the QoS {} asked for",
                r.0,
                options.qos.as_u8()
            ))),
            r => Err(BenchError::Protocol(format!(
                "SUBACK refused {filter}: {r:?}"
            ))),
        },
        other => Err(BenchError::Protocol(format!(
            "expected SUBACK, got {}",
            other.name()
        ))),
    }
}

/// Receives until `shutdown` turns true (or the connection fails), then closes.
pub async fn run(
    mut conn: Conn,
    cfg: SubscriberConfig,
    mut shutdown: watch::Receiver<bool>,
) -> SubscriberResult {
    let mut res = SubscriberResult {
        accounting: Accounting::new(cfg.publishers),
        latency: histogram(),
        last_new_ns: 0,
        error: None,
    };
    let outcome = async {
        // What arrived together with the CONNACK or SUBACK is already buffered.
        let mut read = !conn.rbuf.is_empty();
        loop {
            if *shutdown.borrow() {
                return Ok(());
            }
            if read {
                process(&mut conn, &cfg, &mut res)?;
                conn.try_flush()?;
            }
            conn.keep_alive(tokio::time::Instant::now());
            read = tokio::select! {
                biased;
                r = conn.pump(Some(conn.ping_due())) => r?,
                _ = shutdown.changed() => return Ok(()),
            };
        }
    }
    .await;
    match outcome {
        Ok(()) => conn.close().await,
        Err(e) => res.error = Some(e),
    }
    res
}

fn process(
    conn: &mut Conn,
    cfg: &SubscriberConfig,
    res: &mut SubscriberResult,
) -> Result<(), BenchError> {
    let now_ns = cfg.clock.now_ns();
    let v5 = conn.version.is_v5();
    let mut fresh = 0u64;
    let mut at = 0;
    let result = loop {
        let (frame, n) = match wire::parse_frame(&conn.rbuf[at..], v5) {
            Ok(Some(f)) => f,
            Ok(None) => break Ok(()),
            Err(e) => break Err(e),
        };
        match frame {
            Frame::Publish {
                qos,
                packet_id,
                payload,
            } => {
                let Some(stamp) = Stamp::read(payload) else {
                    break Err(BenchError::Protocol(format!(
                        "subscriber {} received a payload of {} bytes without a stamp",
                        cfg.index,
                        payload.len()
                    )));
                };
                match res.accounting.record(stamp.publisher, stamp.seq) {
                    Ok(crate::tracker::Arrival::Duplicate) => {}
                    Ok(_) => {
                        fresh += 1;
                        if stamp.sent_ns >= cfg.measure_from_ns {
                            res.latency
                                .saturating_record(now_ns.saturating_sub(stamp.sent_ns).max(1));
                        }
                    }
                    Err(Foreign::Publisher(p)) => {
                        break Err(BenchError::Protocol(format!(
                            "subscriber {} received a message of publisher {p}, which this run \
                             does not have",
                            cfg.index
                        )))
                    }
                    Err(Foreign::Seq(s)) => {
                        break Err(BenchError::Protocol(format!(
                            "subscriber {} received sequence number {s}: corrupt payload",
                            cfg.index
                        )))
                    }
                }
                match qos {
                    1 => wire::put_ack(&mut conn.wbuf, wire::PUBACK, packet_id),
                    2 => wire::put_ack(&mut conn.wbuf, wire::PUBREC, packet_id),
                    _ => {}
                }
            }
            Frame::PubRel { packet_id } => wire::put_ack(&mut conn.wbuf, wire::PUBCOMP, packet_id),
            Frame::Other => match wire::decode_other(&conn.rbuf[at..at + n], conn.version) {
                Ok(Packet::PingResp) => {}
                Ok(Packet::Disconnect(d)) => {
                    break Err(BenchError::Protocol(format!(
                        "the broker disconnected subscriber {} with reason {}",
                        cfg.index, d.reason
                    )))
                }
                Ok(p) => break Err(unexpected(p.name(), cfg.index)),
                Err(e) => break Err(e),
            },
            _ => break Err(unexpected("acknowledgement", cfg.index)),
        }
        at += n;
    };
    bytes::Buf::advance(&mut conn.rbuf, at);
    if fresh > 0 {
        res.last_new_ns = now_ns;
        cfg.counters.delivered.fetch_add(fresh, Relaxed);
    }
    result
}

fn unexpected(name: &str, index: u32) -> BenchError {
    BenchError::Protocol(format!("subscriber {index} received an unexpected {name}"))
}
