//! Scripted packet sequences against one session, with a fake clock.

use std::sync::Arc;

use bytes::Bytes;
use holdfast_proto::{
    Connect, Disconnect, Packet, Properties, ProtocolVersion, PubResp, Publish, QoS, ReasonCode,
    RetainHandling, Subscribe, SubscriptionOptions, Unsubscribe, Will,
};

use super::{Delivery, Session};
use crate::action::PendingAck;
use crate::connect::validate_connect;
use crate::{Action, CoreConfig, DropReason, Message, QueuePolicy};

const T0: u64 = 1_000_000;

fn connect_packet(v: ProtocolVersion, clean: bool) -> Connect {
    Connect {
        protocol: v,
        clean_start: clean,
        keep_alive: 60,
        client_id: "c1".into(),
        will: None,
        username: None,
        password: None,
        properties: Properties::default(),
    }
}

fn session(cfg: CoreConfig) -> Session {
    Session::new(Arc::from("c1"), ProtocolVersion::V5, Arc::new(cfg))
}

fn attach(s: &mut Session, c: Connect, present: bool, now: u64) -> Vec<Action> {
    let cfg = s.cfg.clone();
    let p = validate_connect(c, &cfg, || "gen".into()).unwrap();
    let mut out = Vec::new();
    let connection = s.generation() + 1;
    s.attach(p, present, connection, now, &mut out);
    out
}

fn msg(topic: &str, qos: QoS) -> Arc<Message> {
    Arc::new(Message {
        topic: Arc::from(topic),
        payload: Bytes::from_static(b"hello"),
        qos,
        retain: false,
        properties: Properties::default(),
        expires_at: None,
        publisher: None,
        durability: crate::Durability::Flush,
        stored: None,
    })
}

fn delivery(m: &Arc<Message>, qos: QoS) -> Delivery {
    Delivery {
        msg: m.clone(),
        qos,
        retain: false,
        subscription_ids: vec![],
        seq: 0,
    }
}

fn sent(out: &[Action]) -> Vec<&Packet> {
    out.iter()
        .filter_map(|a| {
            if let Action::Send(p) = a {
                Some(p)
            } else {
                None
            }
        })
        .collect()
}

fn publishes(out: &[Action]) -> Vec<&Publish> {
    sent(out)
        .into_iter()
        .filter_map(|p| {
            if let Packet::Publish(p) = p {
                Some(p)
            } else {
                None
            }
        })
        .collect()
}

#[test] // [MQTT-3.2.2-2] Session Present reflects the resumed session
fn attach_sends_connack_with_session_present() {
    let mut s = session(CoreConfig::default());
    let out = attach(&mut s, connect_packet(ProtocolVersion::V5, false), true, T0);
    match sent(&out)[0] {
        Packet::ConnAck(a) => assert!(a.session_present),
        p => panic!("expected CONNACK, got {p:?}"),
    }
}

#[test] // [MQTT-4.3.2-1] QoS 1 delivery uses a fresh packet id and stays in flight until PUBACK
fn qos1_in_flight_until_puback() {
    let mut s = session(CoreConfig::default());
    attach(&mut s, connect_packet(ProtocolVersion::V5, true), false, T0);
    let m = msg("a", QoS::AtLeastOnce);
    let mut out = Vec::new();
    s.deliver(delivery(&m, QoS::AtLeastOnce), T0, &mut out);
    let p = publishes(&out)[0];
    let id = p.packet_id.unwrap();
    assert_ne!(id, 0);
    assert_eq!(s.inflight().count(), 1);
    out.clear();
    s.handle_packet(Packet::PubAck(PubResp::new(id)), T0, &mut out);
    assert_eq!(s.inflight().count(), 0);
}

#[test] // [MQTT-4.4.0-1] unacknowledged PUBLISH resent with DUP and PUBREL resent, in order, on reconnect
fn reconnect_resends_inflight_in_order_with_dup() {
    let mut s = session(CoreConfig::default());
    let mut c = connect_packet(ProtocolVersion::V5, false);
    c.properties.session_expiry_interval = Some(60);
    attach(&mut s, c.clone(), false, T0);
    let mut out = Vec::new();
    let (m1, m2) = (msg("a", QoS::ExactlyOnce), msg("b", QoS::AtLeastOnce));
    s.deliver(delivery(&m1, QoS::ExactlyOnce), T0, &mut out);
    s.deliver(delivery(&m2, QoS::AtLeastOnce), T0, &mut out);
    let id1 = publishes(&out)[0].packet_id.unwrap();
    out.clear();
    s.handle_packet(Packet::PubRec(PubResp::new(id1)), T0, &mut out);
    assert!(matches!(sent(&out)[0], Packet::PubRel(r) if r.packet_id == id1));
    let g = s.generation();
    out.clear();
    s.detach(g, T0, &mut out);
    let out = attach(&mut s, c, true, T0 + 10);
    let pkts = sent(&out);
    assert!(matches!(pkts[1], Packet::PubRel(r) if r.packet_id == id1));
    assert!(matches!(pkts[2], Packet::Publish(p) if p.dup && &*p.topic == "b"));
}

#[test] // [MQTT-4.3.3-?] a resent QoS 2 PUBLISH is acknowledged but not routed twice
fn inbound_qos2_exactly_once() {
    let mut s = session(CoreConfig::default());
    attach(&mut s, connect_packet(ProtocolVersion::V5, true), false, T0);
    let publish = Publish {
        dup: false,
        qos: QoS::ExactlyOnce,
        retain: false,
        topic: "t".into(),
        packet_id: Some(7),
        payload: Bytes::from_static(b"x"),
        properties: Properties::default(),
    };
    let mut out = Vec::new();
    s.handle_packet(Packet::Publish(publish.clone()), T0, &mut out);
    assert!(matches!(
        out[0],
        Action::Publish {
            ack: Some(PendingAck::PubRec(7)),
            ..
        }
    ));
    out.clear();
    s.publish_done(PendingAck::PubRec(7), ReasonCode::SUCCESS, &mut out);
    out.clear();
    s.handle_packet(
        Packet::Publish(Publish {
            dup: true,
            ..publish
        }),
        T0,
        &mut out,
    );
    assert!(
        !out.iter().any(|a| matches!(a, Action::Publish { .. })),
        "routed twice: {out:?}"
    );
    assert!(matches!(sent(&out)[0], Packet::PubRec(r) if r.packet_id == 7));
    out.clear();
    s.handle_packet(Packet::PubRel(PubResp::new(7)), T0, &mut out);
    assert!(
        matches!(sent(&out)[0], Packet::PubComp(r) if r.packet_id == 7 && r.reason == ReasonCode::SUCCESS)
    );
}

#[test] // [MQTT-3.3.4-9] no more QoS 1/2 in flight than the client's Receive Maximum; the rest is queued
fn receive_maximum_limits_inflight() {
    let mut s = session(CoreConfig::default());
    let mut c = connect_packet(ProtocolVersion::V5, true);
    c.properties.receive_maximum = Some(2);
    attach(&mut s, c, false, T0);
    let mut out = Vec::new();
    for _ in 0..5 {
        s.deliver(
            delivery(&msg("a", QoS::AtLeastOnce), QoS::AtLeastOnce),
            T0,
            &mut out,
        );
    }
    assert_eq!(publishes(&out).len(), 2);
    assert_eq!(s.queued_len(), 3);
    let first = publishes(&out)[0].packet_id.unwrap();
    out.clear();
    s.handle_packet(Packet::PubAck(PubResp::new(first)), T0, &mut out);
    assert_eq!(publishes(&out).len(), 1);
    assert_eq!(s.queued_len(), 2);
}

/// Delivers `n` QoS 2 messages and returns the packet ids of the PUBLISH packets sent.
fn deliver_qos2(s: &mut Session, n: usize, out: &mut Vec<Action>) -> Vec<u16> {
    for _ in 0..n {
        s.deliver(
            delivery(&msg("a", QoS::ExactlyOnce), QoS::ExactlyOnce),
            T0,
            out,
        );
    }
    publishes(out)
        .iter()
        .map(|p| p.packet_id.unwrap())
        .collect()
}

#[test] // max_inflight counts PUBLISH packets awaiting PUBACK/PUBREC; as many again may await PUBCOMP
fn qos2_pubrec_opens_max_inflight() {
    let cfg = CoreConfig {
        max_inflight: 2,
        ..CoreConfig::default()
    };
    let mut s = session(cfg);
    attach(
        &mut s,
        connect_packet(ProtocolVersion::V3_1_1, true),
        false,
        T0,
    );
    let mut out = Vec::new();
    let ids = deliver_qos2(&mut s, 6, &mut out);
    assert_eq!(ids.len(), 2);
    out.clear();
    s.handle_packet(Packet::PubRec(PubResp::new(ids[0])), T0, &mut out);
    assert!(matches!(sent(&out)[0], Packet::PubRel(r) if r.packet_id == ids[0]));
    assert_eq!(
        publishes(&out).len(),
        1,
        "PUBREC frees room for the next PUBLISH"
    );
    out.clear();
    // Two exchanges wait for PUBCOMP (as many as max_inflight): that bound holds the next back.
    s.handle_packet(Packet::PubRec(PubResp::new(ids[1])), T0, &mut out);
    assert!(matches!(sent(&out)[0], Packet::PubRel(r) if r.packet_id == ids[1]));
    assert_eq!(publishes(&out).len(), 0);
    out.clear();
    s.handle_packet(Packet::PubComp(PubResp::new(ids[0])), T0, &mut out);
    assert_eq!(publishes(&out).len(), 1);
    assert_eq!(s.inflight().count(), 3);
}

#[test] // [MQTT-3.3.4-9] a v5 client's Receive Maximum counts QoS 2 exchanges until PUBCOMP
fn qos2_receive_maximum_counts_until_pubcomp() {
    let mut s = session(CoreConfig::default());
    let mut c = connect_packet(ProtocolVersion::V5, true);
    c.properties.receive_maximum = Some(2);
    attach(&mut s, c, false, T0);
    let mut out = Vec::new();
    let ids = deliver_qos2(&mut s, 4, &mut out);
    assert_eq!(ids.len(), 2);
    out.clear();
    s.handle_packet(Packet::PubRec(PubResp::new(ids[0])), T0, &mut out);
    assert_eq!(
        publishes(&out).len(),
        0,
        "PUBREC does not free the send quota"
    );
    out.clear();
    s.handle_packet(Packet::PubComp(PubResp::new(ids[0])), T0, &mut out);
    assert_eq!(publishes(&out).len(), 1, "PUBCOMP does");
}

#[test] // [MQTT-2.2.1-3] a packet id in use is never handed out again, across wrap-arounds
fn packet_ids_in_use_are_skipped_after_wrapping() {
    let mut s = session(CoreConfig::default());
    attach(
        &mut s,
        connect_packet(ProtocolVersion::V3_1_1, true),
        false,
        T0,
    );
    let mut out = Vec::new();
    // Two messages stay unacknowledged while 200,000 others come and go (three wraps of the id space).
    let held: Vec<u16> = (0..2)
        .map(|_| {
            out.clear();
            s.deliver(
                delivery(&msg("a", QoS::AtLeastOnce), QoS::AtLeastOnce),
                T0,
                &mut out,
            );
            publishes(&out)[0].packet_id.unwrap()
        })
        .collect();
    for _ in 0..200_000 {
        out.clear();
        s.deliver(
            delivery(&msg("a", QoS::AtLeastOnce), QoS::AtLeastOnce),
            T0,
            &mut out,
        );
        let id = publishes(&out)[0].packet_id.unwrap();
        assert!(
            !held.contains(&id) && id != 0,
            "id {id} handed out while in use"
        );
        out.clear();
        s.handle_packet(Packet::PubAck(PubResp::new(id)), T0, &mut out);
    }
    // Acknowledging the oldest makes its id available again (the fast path resumes later).
    out.clear();
    s.handle_packet(Packet::PubAck(PubResp::new(held[0])), T0, &mut out);
    assert_eq!(s.inflight().count(), 1);
}

#[test] // QoS 0 is not queued for an offline session; QoS 1 is, up to the cap (RejectNew)
fn offline_queue_cap_reject_new() {
    let cfg = CoreConfig {
        max_queued_messages: 2,
        ..CoreConfig::default()
    };
    let mut s = session(cfg);
    let mut c = connect_packet(ProtocolVersion::V5, false);
    c.properties.session_expiry_interval = Some(100);
    attach(&mut s, c, false, T0);
    let mut out = Vec::new();
    s.detach(s.generation(), T0, &mut out);
    out.clear();
    s.deliver(
        delivery(&msg("q0", QoS::AtMostOnce), QoS::AtMostOnce),
        T0,
        &mut out,
    );
    for i in 0..3 {
        s.deliver(
            delivery(&msg(&format!("m{i}"), QoS::AtLeastOnce), QoS::AtLeastOnce),
            T0,
            &mut out,
        );
    }
    assert_eq!(s.queued_len(), 2);
    let drops: Vec<_> = out
        .iter()
        .filter_map(|a| {
            if let Action::Dropped(r) = a {
                Some(*r)
            } else {
                None
            }
        })
        .collect();
    assert_eq!(drops, vec![DropReason::Qos0Offline, DropReason::QueueFull]);
    let topics: Vec<_> = s.queued().map(|d| d.msg.topic.to_string()).collect();
    assert_eq!(topics, ["m0", "m1"]);
}

#[test] // DropOldest keeps the newest messages
fn offline_queue_cap_drop_oldest() {
    let cfg = CoreConfig {
        max_queued_messages: 2,
        queue_policy: QueuePolicy::DropOldest,
        ..CoreConfig::default()
    };
    let mut s = session(cfg);
    let mut out = Vec::new();
    for i in 0..3 {
        s.deliver(
            delivery(&msg(&format!("m{i}"), QoS::AtLeastOnce), QoS::AtLeastOnce),
            T0,
            &mut out,
        );
    }
    let topics: Vec<_> = s.queued().map(|d| d.msg.topic.to_string()).collect();
    assert_eq!(topics, ["m1", "m2"]);
}

#[test] // [MQTT-3.1.2-23] session with expiry ends after the interval; [MQTT-3.1.2-?] expiry 0 ends at disconnect
fn session_expiry_sweeps() {
    let mut s = session(CoreConfig::default());
    let mut c = connect_packet(ProtocolVersion::V5, false);
    c.properties.session_expiry_interval = Some(10);
    attach(&mut s, c, false, T0);
    let mut out = Vec::new();
    s.detach(s.generation(), T0, &mut out);
    assert!(!s.has_ended());
    assert_eq!(s.tick(T0 + 9_999, &mut out), Some(T0 + 10_000));
    s.tick(T0 + 10_000, &mut out);
    assert!(s.has_ended());
    assert!(out.contains(&Action::EndSession));

    let mut s = session(CoreConfig::default());
    attach(&mut s, connect_packet(ProtocolVersion::V5, true), false, T0);
    let mut out = Vec::new();
    s.detach(s.generation(), T0, &mut out);
    assert!(s.has_ended());
}

fn with_will(mut c: Connect, delay: Option<u32>) -> Connect {
    let properties = Properties::from(holdfast_proto::PropertySet {
        will_delay_interval: delay,
        ..Default::default()
    });
    c.will = Some(Will {
        topic: "will".into(),
        payload: Bytes::from_static(b"bye"),
        qos: QoS::AtLeastOnce,
        retain: false,
        properties,
    });
    c
}

fn will_published(out: &[Action]) -> bool {
    out.iter()
        .any(|a| matches!(a, Action::Publish { msg, ack: None, .. } if &*msg.topic == "will"))
}

#[test] // [MQTT-3.1.2-8] will published when the connection drops; not after a normal DISCONNECT [MQTT-3.14.4-3]
fn will_on_abnormal_close_only() {
    let mut s = session(CoreConfig::default());
    attach(
        &mut s,
        with_will(connect_packet(ProtocolVersion::V5, true), None),
        false,
        T0,
    );
    let mut out = Vec::new();
    s.detach(s.generation(), T0, &mut out);
    assert!(will_published(&out));

    let mut s = session(CoreConfig::default());
    attach(
        &mut s,
        with_will(connect_packet(ProtocolVersion::V5, true), None),
        false,
        T0,
    );
    let mut out = Vec::new();
    s.handle_packet(Packet::Disconnect(Disconnect::default()), T0, &mut out);
    s.detach(s.generation(), T0, &mut out);
    assert!(!will_published(&out));

    let mut s = session(CoreConfig::default());
    attach(
        &mut s,
        with_will(connect_packet(ProtocolVersion::V5, true), None),
        false,
        T0,
    );
    let mut out = Vec::new();
    let d = Disconnect {
        reason: ReasonCode::DISCONNECT_WITH_WILL,
        properties: Properties::default(),
    };
    s.handle_packet(Packet::Disconnect(d), T0, &mut out);
    s.detach(s.generation(), T0, &mut out);
    assert!(will_published(&out));
}

#[test] // [MQTT-3.1.2-8] a delayed will is cancelled by a reconnect before the delay passes
fn will_delay_cancelled_by_reconnect() {
    let mut s = session(CoreConfig::default());
    let mut c = with_will(connect_packet(ProtocolVersion::V5, false), Some(5));
    c.properties.session_expiry_interval = Some(60);
    attach(&mut s, c, false, T0);
    let mut out = Vec::new();
    s.detach(s.generation(), T0, &mut out);
    assert!(!will_published(&out));
    s.tick(T0 + 4_000, &mut out);
    assert!(!will_published(&out));
    let mut c = connect_packet(ProtocolVersion::V5, false);
    c.properties.session_expiry_interval = Some(60);
    attach(&mut s, c, true, T0 + 4_500);
    let mut out = Vec::new();
    s.tick(T0 + 6_000, &mut out);
    assert!(!will_published(&out));

    let mut s = session(CoreConfig::default());
    let mut c = with_will(connect_packet(ProtocolVersion::V5, false), Some(5));
    c.properties.session_expiry_interval = Some(60);
    attach(&mut s, c, false, T0);
    let mut out = Vec::new();
    s.detach(s.generation(), T0, &mut out);
    s.tick(T0 + 5_000, &mut out);
    assert!(will_published(&out));
}

fn subscribe(filter: &str, qos: QoS, rh: RetainHandling, id: Option<u32>) -> Packet {
    let mut properties = Properties::default();
    properties.subscription_identifiers.extend(id);
    let options = SubscriptionOptions {
        qos,
        retain_handling: rh,
        ..Default::default()
    };
    Packet::Subscribe(Subscribe {
        packet_id: 1,
        filters: vec![(filter.into(), options)],
        properties,
    })
}

#[test] // [MQTT-3.3.1-10] Retain Handling 1 sends retained messages only for a new subscription
fn retain_handling_send_if_new() {
    let mut s = session(CoreConfig::default());
    attach(&mut s, connect_packet(ProtocolVersion::V5, true), false, T0);
    let mut out = Vec::new();
    s.handle_packet(
        subscribe("a/#", QoS::AtLeastOnce, RetainHandling::SendIfNew, None),
        T0,
        &mut out,
    );
    assert!(out.iter().any(|a| matches!(a, Action::SendRetained { .. })));
    out.clear();
    s.handle_packet(
        subscribe("a/#", QoS::AtLeastOnce, RetainHandling::SendIfNew, None),
        T0,
        &mut out,
    );
    assert!(!out.iter().any(|a| matches!(a, Action::SendRetained { .. })));
    out.clear();
    s.handle_packet(
        subscribe("b", QoS::AtLeastOnce, RetainHandling::DoNotSend, None),
        T0,
        &mut out,
    );
    assert!(!out.iter().any(|a| matches!(a, Action::SendRetained { .. })));
}

#[test] // [MQTT-3.9.3-?] granted QoS capped by Maximum QoS; SUBACK before retained messages
fn suback_grants_capped_qos() {
    let cfg = CoreConfig {
        maximum_qos: QoS::AtLeastOnce,
        ..CoreConfig::default()
    };
    let mut s = session(cfg);
    attach(&mut s, connect_packet(ProtocolVersion::V5, true), false, T0);
    let mut out = Vec::new();
    s.handle_packet(
        subscribe(
            "a",
            QoS::ExactlyOnce,
            RetainHandling::SendAtSubscribe,
            Some(3),
        ),
        T0,
        &mut out,
    );
    let suback = out
        .iter()
        .position(|a| matches!(a, Action::Send(Packet::SubAck(_))))
        .unwrap();
    let retained = out
        .iter()
        .position(|a| matches!(a, Action::SendRetained { .. }))
        .unwrap();
    assert!(suback < retained);
    let Action::Send(Packet::SubAck(ack)) = &out[suback] else {
        unreachable!()
    };
    assert_eq!(ack.reasons, vec![ReasonCode::GRANTED_QOS_1]);
}

#[test] // [MQTT-3.8.3-4] No Local on a shared subscription is a Protocol Error
fn no_local_shared_is_protocol_error() {
    let mut s = session(CoreConfig::default());
    attach(&mut s, connect_packet(ProtocolVersion::V5, true), false, T0);
    let options = SubscriptionOptions {
        no_local: true,
        ..Default::default()
    };
    let sub = Subscribe {
        packet_id: 1,
        filters: vec![("$share/g/a".into(), options)],
        properties: Properties::default(),
    };
    let mut out = Vec::new();
    s.handle_packet(Packet::Subscribe(sub), T0, &mut out);
    assert_eq!(out, vec![Action::Close(Some(ReasonCode::PROTOCOL_ERROR))]);
}

#[test] // [MQTT-3.10.4-5] UNSUBACK v5 reports 0x11 for a filter that was not subscribed
fn unsubscribe_unknown_filter() {
    let mut s = session(CoreConfig::default());
    attach(&mut s, connect_packet(ProtocolVersion::V5, true), false, T0);
    let mut out = Vec::new();
    let u = Unsubscribe {
        packet_id: 2,
        filters: vec!["nope".into()],
        properties: Properties::default(),
    };
    s.handle_packet(Packet::Unsubscribe(u), T0, &mut out);
    assert!(
        matches!(sent(&out)[0], Packet::UnsubAck(a) if a.reasons == vec![ReasonCode::NO_SUBSCRIPTION_EXISTED])
    );
}

#[test] // [MQTT-3.3.2-5] an expired queued message is not delivered; [MQTT-3.3.2-6] the interval is counted down
fn message_expiry() {
    let mut s = session(CoreConfig::default());
    let mut c = connect_packet(ProtocolVersion::V5, false);
    c.properties.session_expiry_interval = Some(100);
    attach(&mut s, c.clone(), false, T0);
    let mut out = Vec::new();
    s.detach(s.generation(), T0, &mut out);
    let mut short = (*msg("short", QoS::AtLeastOnce)).clone();
    short.expires_at = Some(T0 + 2_000);
    let mut long = (*msg("long", QoS::AtLeastOnce)).clone();
    long.expires_at = Some(T0 + 60_000);
    s.deliver(delivery(&Arc::new(short), QoS::AtLeastOnce), T0, &mut out);
    s.deliver(delivery(&Arc::new(long), QoS::AtLeastOnce), T0, &mut out);
    let out = attach(&mut s, c, true, T0 + 10_000);
    let p = publishes(&out);
    assert_eq!(p.len(), 1);
    assert_eq!(&*p[0].topic, "long");
    assert_eq!(p[0].properties.message_expiry_interval, Some(50));
}

#[test] // [MQTT-3.3.2-5] expired queued messages of an offline session go at the sweep after they expire
fn offline_sweeps_drop_queued_messages_as_they_expire() {
    let mut s = session(CoreConfig::default());
    let mut c = connect_packet(ProtocolVersion::V5, false);
    c.properties.session_expiry_interval = Some(1_000);
    attach(&mut s, c, false, T0);
    let mut out = Vec::new();
    s.detach(s.generation(), T0, &mut out);
    for (topic, expiry) in [("a", Some(10_000)), ("b", None), ("c", Some(5_000))] {
        let mut m = (*msg(topic, QoS::AtLeastOnce)).clone();
        m.expires_at = expiry.map(|e| T0 + e);
        s.deliver(delivery(&Arc::new(m), QoS::AtLeastOnce), T0, &mut out);
    }
    let expired = |out: &[Action]| {
        out.iter()
            .filter(|a| **a == Action::Dropped(DropReason::Expired))
            .count()
    };
    let mut swept = |at: u64| {
        let mut out = Vec::new();
        s.tick(T0 + at, &mut out);
        expired(&out)
    };
    assert_eq!(swept(4_999), 0);
    assert_eq!(swept(5_000), 1, "c");
    assert_eq!(swept(9_000), 0);
    assert_eq!(swept(10_000), 1, "a");
    assert_eq!(swept(500_000), 0, "b never expires");
    assert_eq!(s.queued().count(), 1);
}

#[test] // [MQTT-3.1.2-25] a message larger than the client's Maximum Packet Size is dropped for it
fn too_large_for_client_dropped() {
    let mut s = session(CoreConfig::default());
    let mut c = connect_packet(ProtocolVersion::V5, true);
    c.properties.maximum_packet_size = Some(20);
    attach(&mut s, c, false, T0);
    let mut big = (*msg("t", QoS::AtLeastOnce)).clone();
    big.payload = Bytes::from(vec![0u8; 100]);
    let mut out = Vec::new();
    s.deliver(delivery(&Arc::new(big), QoS::AtLeastOnce), T0, &mut out);
    assert!(publishes(&out).is_empty());
    assert!(out.contains(&Action::Dropped(DropReason::TooLargeForClient)));
    assert_eq!(s.inflight().count(), 0);
}

#[test] // [MQTT-3.3.2-?] outbound topic aliases: full topic first, then the alias alone
fn outbound_topic_alias() {
    let mut s = session(CoreConfig::default());
    let mut c = connect_packet(ProtocolVersion::V5, true);
    c.properties.topic_alias_maximum = Some(1);
    attach(&mut s, c, false, T0);
    let mut out = Vec::new();
    for t in ["x/y", "x/y", "other"] {
        s.deliver(
            delivery(&msg(t, QoS::AtMostOnce), QoS::AtMostOnce),
            T0,
            &mut out,
        );
    }
    let p = publishes(&out);
    assert_eq!(
        (&*p[0].topic, p[0].properties.topic_alias),
        ("x/y", Some(1))
    );
    assert_eq!((&*p[1].topic, p[1].properties.topic_alias), ("", Some(1)));
    assert_eq!((&*p[2].topic, p[2].properties.topic_alias), ("other", None));
}

#[test] // [MQTT-3.3.2-9] [MQTT-3.3.2-10] inbound topic alias beyond the maximum closes with 0x94
fn inbound_topic_alias_rules() {
    let cfg = CoreConfig {
        topic_alias_maximum: 2,
        ..CoreConfig::default()
    };
    let mut s = session(cfg);
    attach(&mut s, connect_packet(ProtocolVersion::V5, true), false, T0);
    let mut props = Properties::from(holdfast_proto::PropertySet {
        topic_alias: Some(1),
        ..Default::default()
    });
    let p = Publish {
        dup: false,
        qos: QoS::AtMostOnce,
        retain: false,
        topic: "long/topic".into(),
        packet_id: None,
        payload: Bytes::new(),
        properties: props.clone(),
    };
    let mut out = Vec::new();
    s.handle_packet(Packet::Publish(p.clone()), T0, &mut out);
    s.handle_packet(
        Packet::Publish(Publish {
            topic: "".into(),
            ..p.clone()
        }),
        T0,
        &mut out,
    );
    let topics: Vec<_> = out
        .iter()
        .filter_map(|a| {
            if let Action::Publish { msg, .. } = a {
                Some(msg.topic.to_string())
            } else {
                None
            }
        })
        .collect();
    assert_eq!(topics, ["long/topic", "long/topic"]);
    out.clear();
    props.topic_alias = Some(3);
    s.handle_packet(
        Packet::Publish(Publish {
            properties: props,
            ..p
        }),
        T0,
        &mut out,
    );
    assert_eq!(
        out,
        vec![Action::Close(Some(ReasonCode::TOPIC_ALIAS_INVALID))]
    );
}

#[test] // [MQTT-3.3.4-8] more inbound QoS 1/2 than the server's Receive Maximum closes with 0x93
fn inbound_receive_maximum() {
    let cfg = CoreConfig {
        receive_maximum: 1,
        ..CoreConfig::default()
    };
    let mut s = session(cfg);
    attach(&mut s, connect_packet(ProtocolVersion::V5, true), false, T0);
    let p = |id| Publish {
        dup: false,
        qos: QoS::ExactlyOnce,
        retain: false,
        topic: "t".into(),
        packet_id: Some(id),
        payload: Bytes::new(),
        properties: Properties::default(),
    };
    let mut out = Vec::new();
    s.handle_packet(Packet::Publish(p(1)), T0, &mut out);
    out.clear();
    s.handle_packet(Packet::Publish(p(2)), T0, &mut out);
    assert_eq!(
        out,
        vec![Action::Close(Some(ReasonCode::RECEIVE_MAXIMUM_EXCEEDED))]
    );
}

#[test] // [MQTT-3.1.4-3] takeover tells the old v5 connection 0x8E
fn takeover_closes_old_connection() {
    let mut s = session(CoreConfig::default());
    let mut c = connect_packet(ProtocolVersion::V5, false);
    c.properties.session_expiry_interval = Some(60);
    attach(&mut s, c, false, T0);
    let mut out = Vec::new();
    s.take_over(T0, &mut out);
    assert_eq!(out[0], Action::Close(Some(ReasonCode::SESSION_TAKEN_OVER)));
    assert!(!s.is_connected());
    assert!(!s.has_ended());
}

#[test] // [MQTT-3.14.2-2] DISCONNECT may not set a session expiry when CONNECT had 0
fn disconnect_cannot_raise_zero_expiry() {
    let mut s = session(CoreConfig::default());
    attach(&mut s, connect_packet(ProtocolVersion::V5, true), false, T0);
    let props = Properties::from(holdfast_proto::PropertySet {
        session_expiry_interval: Some(30),
        ..Default::default()
    });
    let mut out = Vec::new();
    s.handle_packet(
        Packet::Disconnect(Disconnect {
            reason: ReasonCode::SUCCESS,
            properties: props,
        }),
        T0,
        &mut out,
    );
    assert_eq!(out, vec![Action::Close(Some(ReasonCode::PROTOCOL_ERROR))]);
}

#[test] // [MQTT-3.1.0-2] a second CONNECT is a Protocol Error
fn second_connect_is_protocol_error() {
    let mut s = session(CoreConfig::default());
    let c = connect_packet(ProtocolVersion::V5, true);
    attach(&mut s, c.clone(), false, T0);
    let mut out = Vec::new();
    s.handle_packet(Packet::Connect(Box::new(c)), T0, &mut out);
    assert_eq!(out, vec![Action::Close(Some(ReasonCode::PROTOCOL_ERROR))]);
}

// --- Storing state (MQTT 4.1): what the session asks the store to record, and in which order. ---

use crate::message::StoredRef;
use crate::persist::{Op, OutEntry, SessionRecord};
use crate::session::Restored;
use crate::Durability;

fn stored_msg(topic: &str, qos: QoS, class: Durability, id: u64) -> Arc<Message> {
    let mut m = (*msg(topic, qos)).clone();
    m.durability = class;
    m.stored = Some(Arc::new(StoredRef::new(id, Arc::new(|_| {}))));
    Arc::new(m)
}

fn persisted(out: &[Action]) -> Vec<(&Op, Durability)> {
    out.iter()
        .filter_map(|a| {
            if let Action::Persist(op, c) = a {
                Some((op, *c))
            } else {
                None
            }
        })
        .collect()
}

fn persistent_connect(expiry: u32) -> Connect {
    let mut c = connect_packet(ProtocolVersion::V5, false);
    c.properties.session_expiry_interval = Some(expiry);
    c
}

#[test] // [MQTT-4.1.0-1] a session that outlives its connection is stored before its CONNACK is sent
fn persistent_session_stored_before_connack() {
    let mut s = session(CoreConfig::default());
    let out = attach(&mut s, persistent_connect(60), false, T0);
    let put = out
        .iter()
        .position(|a| matches!(a, Action::Persist(Op::PutSession { .. }, Durability::Flush)))
        .unwrap();
    let connack = out
        .iter()
        .position(|a| matches!(a, Action::Send(Packet::ConnAck(_))))
        .unwrap();
    assert!(put < connack);

    let mut s = session(CoreConfig::default());
    let out = attach(&mut s, connect_packet(ProtocolVersion::V5, true), false, T0);
    assert!(
        persisted(&out).is_empty(),
        "a session ending with its connection needs no storing"
    );
}

#[test] // sync: the packet id is stored (fsync'd) before the PUBLISH goes out; PUBACK deletes the entry
fn stored_delivery_lifecycle() {
    let mut s = session(CoreConfig::default());
    attach(&mut s, persistent_connect(60), false, T0);
    let m = stored_msg("pay", QoS::AtLeastOnce, Durability::Sync, 42);
    let mut out = Vec::new();
    s.deliver(delivery(&m, QoS::AtLeastOnce), T0, &mut out);
    let ops = persisted(&out);
    let Op::PutOutbound { entry, seq, .. } = ops[0].0 else {
        panic!("{ops:?}")
    };
    assert_eq!(ops[0].1, Durability::Sync);
    assert_eq!(entry.message_id, 42);
    let id = publishes(&out)[0].packet_id;
    assert_eq!(entry.packet_id, id);
    let seq = *seq;
    assert!(matches!(out[0], Action::Persist(..)) && matches!(out[1], Action::Send(_)));
    out.clear();
    s.handle_packet(Packet::PubAck(PubResp::new(id.unwrap())), T0, &mut out);
    assert!(matches!(persisted(&out)[0].0, Op::DeleteOutbound { seq: s, .. } if *s == seq));
}

#[test] // QoS 2 outbound: the released stage is stored before PUBREL [MQTT-4.3.3-?]
fn released_stage_stored_before_pubrel() {
    let mut s = session(CoreConfig::default());
    attach(&mut s, persistent_connect(60), false, T0);
    let m = stored_msg("pay", QoS::ExactlyOnce, Durability::Sync, 7);
    let mut out = Vec::new();
    s.deliver(delivery(&m, QoS::ExactlyOnce), T0, &mut out);
    let id = publishes(&out)[0].packet_id.unwrap();
    out.clear();
    s.handle_packet(Packet::PubRec(PubResp::new(id)), T0, &mut out);
    assert!(
        matches!(&out[0], Action::Persist(Op::PutOutbound { entry, .. }, Durability::Sync) if entry.released)
    );
    assert!(matches!(&out[1], Action::Send(Packet::PubRel(_))));
}

#[test] // volatile messages and sessions that end with their connection are never stored
fn volatile_is_not_stored() {
    let mut s = session(CoreConfig::default());
    attach(&mut s, persistent_connect(60), false, T0);
    let mut out = Vec::new();
    let m = msg("meters/1", QoS::AtLeastOnce); // not stored
    s.deliver(delivery(&m, QoS::AtLeastOnce), T0, &mut out);
    assert!(persisted(&out).is_empty());

    let mut s = session(CoreConfig::default());
    attach(&mut s, connect_packet(ProtocolVersion::V5, true), false, T0);
    let mut out = Vec::new();
    s.deliver(
        delivery(
            &stored_msg("x", QoS::AtLeastOnce, Durability::Sync, 1),
            QoS::AtLeastOnce,
        ),
        T0,
        &mut out,
    );
    assert!(persisted(&out).is_empty());
}

#[test] // a subscription to a sync topic raises the session to sync: SUBACK waits for an fsync
fn subscription_raises_session_class() {
    let mut cfg = CoreConfig::default();
    cfg.durability
        .rules
        .push(("payments/#".into(), Durability::Sync));
    let mut s = session(cfg);
    attach(&mut s, persistent_connect(60), false, T0);
    let mut out = Vec::new();
    s.handle_packet(
        subscribe(
            "payments/+",
            QoS::AtLeastOnce,
            RetainHandling::DoNotSend,
            None,
        ),
        T0,
        &mut out,
    );
    assert_eq!(s.durability(), Durability::Sync);
    let ops = persisted(&out);
    assert!(ops
        .iter()
        .any(|(op, c)| matches!(op, Op::PutSession { .. }) && *c == Durability::Sync));
    assert!(ops.iter().any(
        |(op, c)| matches!(op, Op::PutSubscription { filter, .. } if filter == "payments/+")
            && *c == Durability::Sync
    ));
    let suback = out
        .iter()
        .position(|a| matches!(a, Action::Send(Packet::SubAck(_))))
        .unwrap();
    assert!(out[..suback]
        .iter()
        .any(|a| matches!(a, Action::Persist(..))));
}

#[test] // inbound QoS 2 ids are stored with the message (one batch) before PUBREC, and deleted on PUBREL
fn inbound_qos2_id_stored() {
    let mut s = session(CoreConfig::default());
    attach(&mut s, persistent_connect(60), false, T0);
    let p = Publish {
        dup: false,
        qos: QoS::ExactlyOnce,
        retain: false,
        topic: "t".into(),
        packet_id: Some(9),
        payload: Bytes::new(),
        properties: Properties::default(),
    };
    let mut out = Vec::new();
    s.handle_packet(Packet::Publish(p), T0, &mut out);
    // Not on its own: it goes with the message's batch, so the two are stored together or not at all.
    assert!(persisted(&out).is_empty());
    assert!(matches!(
        &out[0],
        Action::Publish {
            store: Some(Op::PutInboundQos2 { packet_id: 9, .. }),
            ..
        }
    ));
    out.clear();
    s.handle_packet(Packet::PubRel(PubResp::new(9)), T0, &mut out);
    assert!(matches!(
        persisted(&out)[0].0,
        Op::DeleteInboundQos2 { packet_id: 9, .. }
    ));
}

#[test] // [MQTT-4.4.0-1] after a restart, in-flight messages go out again with DUP and their packet ids, then the queue
fn restored_session_resends_with_original_packet_ids() {
    let cfg = Arc::new(CoreConfig::default());
    let entry = |pid: Option<u16>, released| OutEntry {
        message_id: 1,
        qos: 2,
        retain: false,
        subscription_ids: vec![],
        packet_id: pid,
        released,
    };
    let m = stored_msg("a", QoS::ExactlyOnce, Durability::Sync, 1);
    let r = Restored {
        record: SessionRecord {
            protocol: 5,
            expiry: 600,
            disconnected_at: Some(T0),
            will: None,
            will_due: None,
        },
        subscriptions: vec![("a".into(), 2, None)],
        outbound: vec![
            (3, entry(Some(17), false), m.clone()),
            (4, entry(Some(18), true), m.clone()),
            (5, entry(None, false), m),
        ],
        inbound_qos2: vec![5],
    };
    let mut out = Vec::new();
    let mut s = Session::restore(Arc::from("c1"), r, cfg, T0 + 1000, &mut out);
    assert!(out.is_empty());
    assert_eq!(s.inbound_qos2().collect::<Vec<_>>(), vec![5]);
    let mut c = persistent_connect(600);
    c.properties.receive_maximum = Some(10);
    let out = attach(&mut s, c, true, T0 + 2000);
    let pkts = sent(&out);
    assert!(matches!(pkts[1], Packet::Publish(p) if p.dup && p.packet_id == Some(17)));
    assert!(matches!(pkts[2], Packet::PubRel(r) if r.packet_id == 18));
    assert!(
        matches!(pkts[3], Packet::Publish(p) if !p.dup && p.packet_id.is_some_and(|id| id != 17 && id != 18))
    );
}

#[test] // a session connected when the broker died lost its connection then: its will is published
fn restored_connected_session_publishes_will() {
    let cfg = Arc::new(CoreConfig::default());
    let will = crate::persist::StoredWill {
        topic: "will".into(),
        payload: Bytes::from_static(b"x"),
        qos: 1,
        retain: false,
        properties: Properties::default(),
    };
    let r = Restored {
        record: SessionRecord {
            protocol: 4,
            expiry: u32::MAX,
            disconnected_at: None,
            will: Some(will),
            will_due: None,
        },
        ..Default::default()
    };
    let mut out = Vec::new();
    let s = Session::restore(Arc::from("c1"), r, cfg, T0, &mut out);
    assert!(will_published(&out));
    assert_eq!(s.disconnected_at(), Some(T0));
    assert!(persisted(&out).iter().any(|(op, _)| matches!(op, Op::PutSession { record, .. } if record.disconnected_at == Some(T0) && record.will.is_none())));
}

#[test] // [MQTT-3.1.3-9] a will whose delay outlasts the session is published when the session ends
fn will_published_at_session_end_before_delay() {
    let mut s = session(CoreConfig::default());
    let mut c = with_will(connect_packet(ProtocolVersion::V5, false), Some(30));
    c.properties.session_expiry_interval = Some(1);
    attach(&mut s, c, false, T0);
    let mut out = Vec::new();
    s.detach(s.generation(), T0, &mut out);
    assert!(!will_published(&out));
    s.tick(T0 + 1_000, &mut out);
    assert!(will_published(&out));
    assert!(s.has_ended());
}

#[test] // discard.unsubscribed_messages: queued messages no subscription matches any more are dropped
fn unmatched_queued_messages_dropped() {
    let mut s = session(CoreConfig::default());
    attach(&mut s, persistent_connect(60), false, T0);
    let mut out = Vec::new();
    s.handle_packet(
        subscribe("a/#", QoS::AtLeastOnce, RetainHandling::DoNotSend, None),
        T0,
        &mut out,
    );
    s.handle_packet(
        subscribe("b/#", QoS::AtLeastOnce, RetainHandling::DoNotSend, None),
        T0,
        &mut out,
    );
    s.detach(s.generation(), T0, &mut out);
    for t in ["a/1", "b/1", "a/2"] {
        s.deliver(
            delivery(&msg(t, QoS::AtLeastOnce), QoS::AtLeastOnce),
            T0,
            &mut out,
        );
    }
    assert_eq!(s.drop_unmatched_queued(&mut out), 0);
    s.subscriptions.remove("a/#");
    out.clear();
    assert_eq!(s.drop_unmatched_queued(&mut out), 2);
    let left: Vec<_> = s.queued().map(|d| d.msg.topic.to_string()).collect();
    assert_eq!(left, ["b/1"]);
    assert_eq!(
        out.iter()
            .filter(|a| **a == Action::Dropped(DropReason::NoSubscriber))
            .count(),
        2
    );
}
