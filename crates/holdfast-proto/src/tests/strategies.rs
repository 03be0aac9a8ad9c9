//! proptest strategies for packets, generating for each version only what that version can carry.

use bytes::Bytes;
use proptest::collection::vec;
use proptest::option::of as opt;
use proptest::prelude::*;
use proptest::sample::select;

use crate::props_codec::PropCtx;
use crate::topic;
use crate::{
    Auth, ConnAck, Connect, Disconnect, Packet, Properties, ProtocolVersion, PubResp, Publish, QoS,
    ReasonCode, RetainHandling, SubAck, Subscribe, SubscriptionOptions, UnsubAck, Unsubscribe,
    Will,
};

/// Any UTF-8 string without control characters (so without U+0000), multi-byte characters included.
pub fn string() -> impl Strategy<Value = String> {
    "\\PC{0,10}"
}

pub fn topic_name() -> impl Strategy<Value = String> {
    "[a-zA-Z0-9é€ $/_-]{1,16}"
}

pub fn topic_filter() -> impl Strategy<Value = String> {
    let level = prop_oneof![
        Just("+".to_string()),
        Just(String::new()),
        "[a-z0-9é$]{1,5}"
    ];
    let plain = (vec(level, 1..5), any::<bool>()).prop_map(|(levels, hash)| {
        let mut f = levels.join("/");
        if hash {
            f.push_str(if f.is_empty() { "#" } else { "/#" });
        }
        f
    });
    (plain, opt("[a-z0-9]{1,5}"))
        .prop_map(|(f, share)| match share {
            Some(g) => format!("$share/{g}/{f}"),
            None => f,
        })
        .prop_filter("valid filter", |f| topic::validate_topic_filter(f).is_ok())
}

pub fn bytes() -> impl Strategy<Value = Bytes> {
    vec(any::<u8>(), 0..24).prop_map(Bytes::from)
}

pub fn qos() -> impl Strategy<Value = QoS> {
    prop_oneof![
        Just(QoS::AtMostOnce),
        Just(QoS::AtLeastOnce),
        Just(QoS::ExactlyOnce)
    ]
}

fn flag() -> impl Strategy<Value = Option<u8>> {
    opt(0..=1u8)
}

/// A Properties value with every field possibly set to a legal value.
fn any_properties() -> impl Strategy<Value = Properties> {
    let a = (
        flag(),
        opt(any::<u32>()),
        opt(string()),
        opt(topic_name()),
        opt(bytes()),
        vec(1..=268_435_455u32, 0..3),
        opt(any::<u32>()),
        opt(string()),
        opt(any::<u16>()),
        opt(string()),
        opt(bytes()),
        flag(),
    );
    let b = (
        opt(any::<u32>()),
        flag(),
        opt(string()),
        opt(string()),
        opt(string()),
        opt(1..=u16::MAX),
        opt(any::<u16>()),
        opt(1..=u16::MAX),
        flag(),
        flag(),
        vec((string(), string()), 0..3),
        opt(1..=u32::MAX),
    );
    let c = (flag(), flag(), flag());
    (a, b, c).prop_map(|(a, b, c)| {
        Properties::from(crate::PropertySet {
            payload_format_indicator: a.0,
            message_expiry_interval: a.1,
            content_type: a.2,
            response_topic: a.3,
            correlation_data: a.4,
            subscription_identifiers: a.5,
            session_expiry_interval: a.6,
            assigned_client_identifier: a.7,
            server_keep_alive: a.8,
            authentication_method: a.9,
            authentication_data: a.10,
            request_problem_information: a.11,
            will_delay_interval: b.0,
            request_response_information: b.1,
            response_information: b.2,
            server_reference: b.3,
            reason_string: b.4,
            receive_maximum: b.5,
            topic_alias_maximum: b.6,
            topic_alias: b.7,
            maximum_qos: b.8,
            retain_available: b.9,
            user_properties: b.10,
            maximum_packet_size: b.11,
            wildcard_subscription_available: c.0,
            subscription_identifier_available: c.1,
            shared_subscription_available: c.2,
        })
    })
}

fn keep<T>(ctx: PropCtx, id: u8, field: &mut Option<T>) {
    if !ctx.allows(id) {
        *field = None;
    }
}

/// Clear whatever `ctx` may not carry.
fn restrict(mut p: Properties, ctx: PropCtx) -> Properties {
    keep(ctx, 0x01, &mut p.payload_format_indicator);
    keep(ctx, 0x02, &mut p.message_expiry_interval);
    keep(ctx, 0x03, &mut p.content_type);
    keep(ctx, 0x08, &mut p.response_topic);
    keep(ctx, 0x09, &mut p.correlation_data);
    if !ctx.allows(0x0B) {
        p.subscription_identifiers.clear();
    } else if ctx == PropCtx::SUBSCRIBE {
        p.subscription_identifiers.truncate(1);
    }
    keep(ctx, 0x11, &mut p.session_expiry_interval);
    keep(ctx, 0x12, &mut p.assigned_client_identifier);
    keep(ctx, 0x13, &mut p.server_keep_alive);
    keep(ctx, 0x15, &mut p.authentication_method);
    keep(ctx, 0x16, &mut p.authentication_data);
    if p.authentication_method.is_none() {
        p.authentication_data = None;
    }
    keep(ctx, 0x17, &mut p.request_problem_information);
    keep(ctx, 0x18, &mut p.will_delay_interval);
    keep(ctx, 0x19, &mut p.request_response_information);
    keep(ctx, 0x1A, &mut p.response_information);
    keep(ctx, 0x1C, &mut p.server_reference);
    keep(ctx, 0x1F, &mut p.reason_string);
    keep(ctx, 0x21, &mut p.receive_maximum);
    keep(ctx, 0x22, &mut p.topic_alias_maximum);
    keep(ctx, 0x23, &mut p.topic_alias);
    keep(ctx, 0x24, &mut p.maximum_qos);
    keep(ctx, 0x25, &mut p.retain_available);
    keep(ctx, 0x27, &mut p.maximum_packet_size);
    keep(ctx, 0x28, &mut p.wildcard_subscription_available);
    keep(ctx, 0x29, &mut p.subscription_identifier_available);
    keep(ctx, 0x2A, &mut p.shared_subscription_available);
    p
}

/// Properties for `ctx` in MQTT 5 (often empty, to exercise short forms); always empty before.
pub fn properties(v: ProtocolVersion, ctx: PropCtx) -> BoxedStrategy<Properties> {
    if !v.is_v5() {
        return Just(Properties::default()).boxed();
    }
    prop_oneof![
        Just(Properties::default()),
        any_properties().prop_map(move |p| restrict(p, ctx))
    ]
    .boxed()
}

fn reason(codes: &'static [u8]) -> impl Strategy<Value = ReasonCode> {
    select(codes).prop_map(ReasonCode)
}

const CONNACK: &[u8] = &[
    0x00, 0x80, 0x81, 0x82, 0x83, 0x84, 0x85, 0x86, 0x87, 0x88, 0x89, 0x8A, 0x8C, 0x90, 0x95, 0x97,
    0x99, 0x9A, 0x9B, 0x9C, 0x9D, 0x9F,
];
/// Reason codes that the 3.1.1 return codes map back to exactly.
const CONNACK_V3: &[u8] = &[0x00, 0x84, 0x85, 0x88, 0x86, 0x87];
const PUBACK: &[u8] = &[0x00, 0x10, 0x80, 0x83, 0x87, 0x90, 0x91, 0x97, 0x99];
const PUBREL: &[u8] = &[0x00, 0x92];
const SUBACK: &[u8] = &[
    0x00, 0x01, 0x02, 0x80, 0x83, 0x87, 0x8F, 0x91, 0x97, 0x9E, 0xA1, 0xA2,
];
const SUBACK_V3: &[u8] = &[0x00, 0x01, 0x02, 0x80];
const UNSUBACK: &[u8] = &[0x00, 0x11, 0x80, 0x83, 0x87, 0x8F, 0x91];
const DISCONNECT: &[u8] = &[
    0x00, 0x04, 0x80, 0x81, 0x82, 0x83, 0x87, 0x89, 0x8B, 0x8C, 0x8D, 0x8E, 0x8F, 0x90, 0x93, 0x94,
    0x95, 0x96, 0x97, 0x98, 0x99, 0x9A, 0x9B, 0x9C, 0x9D, 0x9E, 0x9F, 0xA0, 0xA1, 0xA2,
];
const AUTH: &[u8] = &[0x00, 0x18, 0x19];

fn connect(v: ProtocolVersion) -> impl Strategy<Value = Packet> {
    let will = (
        topic_name(),
        bytes(),
        qos(),
        any::<bool>(),
        properties(v, PropCtx::WILL),
    )
        .prop_map(|(topic, payload, qos, retain, properties)| Will {
            topic,
            payload,
            qos,
            retain,
            properties,
        });
    (
        any::<bool>(),
        any::<u16>(),
        string(),
        opt(will),
        opt(string()),
        opt(bytes()),
        properties(v, PropCtx::CONNECT),
    )
        .prop_map(
            move |(
                clean_start,
                keep_alive,
                client_id,
                will,
                username,
                mut password,
                properties,
            )| {
                if !v.is_v5() && username.is_none() {
                    password = None;
                }
                Packet::Connect(Box::new(Connect {
                    protocol: v,
                    clean_start,
                    keep_alive,
                    client_id,
                    will,
                    username,
                    password,
                    properties,
                }))
            },
        )
}

fn connack(v: ProtocolVersion) -> impl Strategy<Value = Packet> {
    let codes = if v.is_v5() { CONNACK } else { CONNACK_V3 };
    (
        any::<bool>(),
        reason(codes),
        properties(v, PropCtx::CONNACK),
    )
        .prop_map(move |(sp, reason, properties)| {
            let session_present = sp && reason == ReasonCode::SUCCESS && v != ProtocolVersion::V3_1;
            Packet::ConnAck(ConnAck {
                session_present,
                reason,
                properties,
            })
        })
}

fn publish(v: ProtocolVersion) -> impl Strategy<Value = Packet> {
    (
        qos(),
        any::<bool>(),
        any::<bool>(),
        topic_name(),
        any::<bool>(),
        1..=u16::MAX,
        bytes(),
        properties(v, PropCtx::PUBLISH),
    )
        .prop_map(
            move |(qos, dup, retain, mut topic, empty_topic, id, payload, properties)| {
                if v.is_v5() && empty_topic && properties.topic_alias.is_some() {
                    topic.clear();
                }
                let queued = qos != QoS::AtMostOnce;
                Packet::Publish(Publish {
                    dup: dup && queued,
                    qos,
                    retain,
                    topic: topic.into(),
                    packet_id: queued.then_some(id),
                    payload,
                    properties,
                })
            },
        )
}

fn pub_resp(v: ProtocolVersion, codes: &'static [u8]) -> impl Strategy<Value = PubResp> {
    (1..=u16::MAX, reason(codes), properties(v, PropCtx::ACK)).prop_map(
        move |(packet_id, reason, properties)| {
            if v.is_v5() {
                PubResp {
                    packet_id,
                    reason,
                    properties,
                }
            } else {
                PubResp::new(packet_id)
            }
        },
    )
}

fn options(v: ProtocolVersion) -> impl Strategy<Value = SubscriptionOptions> {
    let rh = prop_oneof![
        Just(RetainHandling::SendAtSubscribe),
        Just(RetainHandling::SendIfNew),
        Just(RetainHandling::DoNotSend)
    ];
    (qos(), any::<bool>(), any::<bool>(), rh).prop_map(
        move |(qos, no_local, retain_as_published, retain_handling)| {
            if v.is_v5() {
                SubscriptionOptions {
                    qos,
                    no_local,
                    retain_as_published,
                    retain_handling,
                }
            } else {
                SubscriptionOptions {
                    qos,
                    ..SubscriptionOptions::default()
                }
            }
        },
    )
}

fn subscribe(v: ProtocolVersion) -> impl Strategy<Value = Packet> {
    (
        1..=u16::MAX,
        vec((topic_filter(), options(v)), 1..4),
        properties(v, PropCtx::SUBSCRIBE),
    )
        .prop_map(|(packet_id, mut filters, properties)| {
            for (f, o) in &mut filters {
                if topic::parse_shared(f).is_some() {
                    o.no_local = false; // [MQTT-3.8.3-4]
                }
            }
            Packet::Subscribe(Subscribe {
                packet_id,
                filters,
                properties,
            })
        })
}

fn suback(v: ProtocolVersion) -> impl Strategy<Value = Packet> {
    let codes = if v.is_v5() { SUBACK } else { SUBACK_V3 };
    (
        1..=u16::MAX,
        vec(reason(codes), 1..5),
        properties(v, PropCtx::ACK),
    )
        .prop_map(|(packet_id, reasons, properties)| {
            Packet::SubAck(SubAck {
                packet_id,
                reasons,
                properties,
            })
        })
}

fn unsubscribe(v: ProtocolVersion) -> impl Strategy<Value = Packet> {
    (
        1..=u16::MAX,
        vec(topic_filter(), 1..4),
        properties(v, PropCtx::UNSUBSCRIBE),
    )
        .prop_map(|(packet_id, filters, properties)| {
            Packet::Unsubscribe(Unsubscribe {
                packet_id,
                filters,
                properties,
            })
        })
}

fn unsuback(v: ProtocolVersion) -> impl Strategy<Value = Packet> {
    (
        1..=u16::MAX,
        vec(reason(UNSUBACK), 1..5),
        properties(v, PropCtx::ACK),
    )
        .prop_map(move |(packet_id, reasons, properties)| {
            let reasons = if v.is_v5() { reasons } else { Vec::new() };
            Packet::UnsubAck(UnsubAck {
                packet_id,
                reasons,
                properties,
            })
        })
}

fn disconnect(v: ProtocolVersion) -> impl Strategy<Value = Packet> {
    (reason(DISCONNECT), properties(v, PropCtx::DISCONNECT)).prop_map(
        move |(reason, properties)| {
            let reason = if v.is_v5() {
                reason
            } else {
                ReasonCode::SUCCESS
            };
            Packet::Disconnect(Disconnect { reason, properties })
        },
    )
}

fn auth() -> impl Strategy<Value = Packet> {
    (reason(AUTH), properties(ProtocolVersion::V5, PropCtx::AUTH))
        .prop_map(|(reason, properties)| Packet::Auth(Auth { reason, properties }))
}

/// Any packet `v` can carry, with only the fields `v` can carry.
pub fn packet(v: ProtocolVersion) -> BoxedStrategy<Packet> {
    let common = prop_oneof![
        connect(v),
        connack(v),
        publish(v),
        pub_resp(v, PUBACK).prop_map(Packet::PubAck),
        pub_resp(v, PUBACK).prop_map(Packet::PubRec),
        pub_resp(v, PUBREL).prop_map(Packet::PubRel),
        pub_resp(v, PUBREL).prop_map(Packet::PubComp),
        subscribe(v),
        suback(v),
        unsubscribe(v),
        unsuback(v),
        Just(Packet::PingReq),
        Just(Packet::PingResp),
        disconnect(v),
    ];
    if v.is_v5() {
        prop_oneof![14 => common, 1 => auth()].boxed()
    } else {
        common.boxed()
    }
}
