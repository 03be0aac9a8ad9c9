//! The connection-level fuzzing oracle: arbitrary bytes are decoded as the packets a client sends
//! and fed to a session state machine, which also receives its own routed messages back (so the
//! outbound side, packet ids and acknowledgements are exercised). Shared by the cargo-fuzz target
//! `fuzz/fuzz_targets/session.rs` and the bounded fuzz loop in this crate's tests. Not stable API.

use std::sync::Arc;

use bytes::BytesMut;
use holdfast_proto::{decode_packet, Packet, ProtocolVersion, QoS, ReasonCode};

use crate::acl::{Access, Acl, Rule, SharedAcl, Subject};
use crate::connect::validate_connect;
use crate::session::Delivery;
use crate::{Action, CoreConfig, Session};

/// Feeds `data` to a session. The first byte picks the protocol version and whether an ACL is
/// configured; the rest is the client's byte stream. Panics only if the state machine does: any
/// input must be survivable, and bounded in what it keeps.
pub fn fuzz_session(data: &[u8]) {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let version = match mode % 3 {
        0 => ProtocolVersion::V3_1,
        1 => ProtocolVersion::V3_1_1,
        _ => ProtocolVersion::V5,
    };
    let mut cfg = CoreConfig {
        receive_maximum: 8,
        max_inflight: 4,
        max_queued_messages: 16,
        topic_alias_maximum: 4,
        max_subscriptions: 32,
        ..CoreConfig::default()
    };
    if mode & 0x80 != 0 {
        cfg.acl = Some(Arc::new(SharedAcl::new(Acl::new(vec![
            Rule {
                subject: Subject::All,
                access: Access::Both,
                filter: "a/#".into(),
                allow: true,
            },
            Rule {
                subject: Subject::All,
                access: Access::Subscribe,
                filter: "a/secret".into(),
                allow: false,
            },
        ]))));
    }
    let cfg = Arc::new(cfg);
    let max = 4096;
    let mut buf = BytesMut::from(rest);
    let mut session: Option<Session> = None;
    let mut out = Vec::new();
    let mut now = 1_000_000;
    let mut steps = 0;
    loop {
        steps += 1;
        if steps > 10_000 {
            break;
        }
        now += 7;
        let packet = match decode_packet(&mut buf, version, max) {
            Ok(Some(p)) => p,
            Ok(None) | Err(_) => break,
        };
        match (&mut session, packet) {
            (None, Packet::Connect(c)) => {
                let protocol = c.protocol;
                let Ok(params) = validate_connect(*c, &cfg, || "assigned".into()) else {
                    break;
                };
                let mut s = Session::new(params.client_id.clone(), protocol, cfg.clone());
                s.attach(params, false, 1, now, &mut out);
                session = Some(s);
            }
            (None, _) => break, // [MQTT-3.1.0-1] the first packet must be CONNECT
            (Some(s), packet) => s.handle_packet(packet, now, &mut out),
        }
        let Some(s) = session.as_mut() else { break };
        // Perform what the broker would: acknowledge routed publishes and loop them back.
        let mut guard = 0;
        while !out.is_empty() && guard < 64 {
            guard += 1;
            let actions = std::mem::take(&mut out);
            let mut closed = false;
            for a in actions {
                match a {
                    Action::Publish { msg, ack, .. } => {
                        if let Some(ack) = ack {
                            s.publish_done(ack, ReasonCode::SUCCESS, &mut out);
                        }
                        let qos = msg.qos.min(QoS::AtLeastOnce);
                        let d = Delivery {
                            msg,
                            qos,
                            retain: false,
                            subscription_ids: vec![],
                            seq: 0,
                        };
                        s.deliver(d, now, &mut out);
                    }
                    Action::Close(_) => closed = true,
                    _ => {}
                }
            }
            if closed {
                s.detach(1, now, &mut out);
                out.clear();
                return;
            }
        }
        assert!(s.queued_len() <= 16 + 1, "queue over its bound");
        assert!(s.inflight().count() <= 4, "in flight over the window");
    }
    if let Some(s) = session.as_mut() {
        s.detach(1, now, &mut out);
        s.tick(now + 1_000_000_000, &mut out);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A small deterministic generator (no dependency, reproducible from its seed).
    struct Rng(u64);
    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }
        fn below(&mut self, n: usize) -> usize {
            (self.next() % n as u64) as usize
        }
    }

    fn seeds() -> Vec<Vec<u8>> {
        use holdfast_proto::{encode_packet, Connect, Properties, Publish, Subscribe};
        let mut out = Vec::new();
        for version in [ProtocolVersion::V3_1_1, ProtocolVersion::V5] {
            let mut b = BytesMut::new();
            let connect = Connect {
                protocol: version,
                clean_start: true,
                keep_alive: 30,
                client_id: "fuzz".into(),
                will: None,
                username: None,
                password: None,
                properties: Properties::default(),
            };
            encode_packet(&Packet::Connect(Box::new(connect)), version, &mut b).unwrap();
            let sub = Subscribe {
                packet_id: 1,
                filters: vec![("a/#".into(), Default::default())],
                properties: Properties::default(),
            };
            let mut sub = sub;
            sub.filters[0].1.qos = QoS::ExactlyOnce;
            encode_packet(&Packet::Subscribe(sub), version, &mut b).unwrap();
            for (i, qos) in [QoS::AtMostOnce, QoS::AtLeastOnce, QoS::ExactlyOnce]
                .into_iter()
                .enumerate()
            {
                let p = Publish {
                    dup: false,
                    qos,
                    retain: i == 1,
                    topic: "a/b".into(),
                    packet_id: (qos != QoS::AtMostOnce).then_some(i as u16 + 1),
                    payload: bytes::Bytes::from_static(b"x"),
                    properties: Properties::default(),
                };
                encode_packet(&Packet::Publish(p), version, &mut b).unwrap();
            }
            let mode = if version.is_v5() { 2 } else { 1 };
            out.push([&[mode][..], &b].concat());
            out.push([&[mode | 0x80][..], &b].concat());
        }
        out
    }

    #[test]
    fn seeds_are_valid_sessions() {
        for s in seeds() {
            fuzz_session(&s);
        }
    }

    /// A bounded in-process fuzz loop: mutations of valid sessions (bytes flipped, inserted,
    /// removed, chunks duplicated). `HOLDFAST_FUZZ_ITERS` raises the count; the seed is printed.
    #[test]
    fn mutated_sessions_never_panic() {
        let iters: usize = std::env::var("HOLDFAST_FUZZ_ITERS")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(20_000);
        let seed = std::env::var("HOLDFAST_FUZZ_SEED")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(0x5eed_1234_abcd_u64);
        eprintln!("fuzz seed {seed}, {iters} iterations");
        let mut rng = Rng(seed);
        let seeds = seeds();
        for _ in 0..iters {
            let mut d = seeds[rng.below(seeds.len())].clone();
            for _ in 0..1 + rng.below(8) {
                let at = 1 + rng.below(d.len().max(2) - 1);
                match rng.below(5) {
                    0 if at < d.len() => d[at] = rng.next() as u8,
                    1 => d.insert(at.min(d.len()), rng.next() as u8),
                    2 if at < d.len() => {
                        d.remove(at);
                    }
                    3 => {
                        let end = (at + rng.below(16)).min(d.len());
                        let chunk = d[at.min(end)..end].to_vec();
                        d.extend(chunk);
                    }
                    _ if at < d.len() => d[at] ^= 1 << rng.below(8),
                    _ => {}
                }
            }
            fuzz_session(&d);
            holdfast_proto::fuzzing::fuzz_decode(&d[1..]);
        }
    }
}
