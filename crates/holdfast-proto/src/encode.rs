//! Encoding. Every packet is validated against the same rules the decoder applies, so whatever
//! `encode_packet` writes, `decode_packet` accepts and decodes back to the same packet.
//!
//! A few fields are normalized rather than refused: a QoS 0 PUBLISH is written without packet
//! identifier and with DUP 0 [MQTT-3.3.1-2], and a CONNACK with an error reason code is written with
//! Session Present 0 [MQTT-3.2.2-6]. Fields a version cannot carry (properties, reason codes before
//! MQTT 5, subscription options other than QoS before MQTT 5) are left out.

use bytes::{BufMut, BytesMut};

use crate::props_codec::{self, PropCtx};
use crate::reason::{self, ReasonSet};
use crate::wire::{
    put_binary, put_str, put_varint, scan_topic, varint_len, MAX_PACKET_SIZE, MAX_REMAINING_LENGTH,
};
use crate::{
    topic, Auth, ConnAck, Connect, Disconnect, EncodeError, Packet, Properties, ProtocolVersion,
    PubResp, Publish, QoS, ReasonCode, SubAck, Subscribe, UnsubAck, Unsubscribe,
};

/// Append `packet` encoded for `version` to `buf`. CONNECT is encoded for its own `protocol`. On error
/// nothing is appended.
///
/// The packet is checked against every rule the decoder enforces (string lengths and U+0000, topic
/// names and filters, non-zero packet identifiers, reason codes valid for the packet type, properties
/// allowed for the packet type and their values), so the output always decodes to the same packet.
/// Fields `version` cannot carry are left out (properties and reason codes before MQTT 5, subscription
/// options other than QoS, UNSUBACK reason codes). Two fields are normalized rather than refused: a QoS 0
/// PUBLISH is written without packet identifier and with DUP 0, and a CONNACK that is not a success is
/// written with Session Present 0. A packet over 268,435,455 bytes of remaining length is
/// [`EncodeError::TooLarge`]; compare [`encoded_len`] with the peer's Maximum Packet Size before encoding.
pub fn encode_packet(
    packet: &Packet,
    version: ProtocolVersion,
    buf: &mut BytesMut,
) -> Result<(), EncodeError> {
    let start = buf.len();
    let res = encode_inner(packet, version, buf);
    match res {
        Ok(()) => debug_assert_eq!(
            buf.len() - start,
            encoded_len(packet, version),
            "{packet:?}"
        ),
        Err(_) => buf.truncate(start),
    }
    res
}

/// The total size of `packet` on the wire for `version`, fixed header included. For a packet that
/// `encode_packet` refuses, the result is meaningless.
pub fn encoded_len(packet: &Packet, version: ProtocolVersion) -> usize {
    let n = body_len(packet, version);
    1 + varint_len(n) + n
}

#[inline]
fn invalid<T>(packet: &'static str, why: &'static str) -> Result<T, EncodeError> {
    Err(EncodeError::Invalid { packet, why })
}

/// Properties section size when `v5`, else 0.
#[inline]
fn props_len(v5: bool, p: &Properties) -> usize {
    if v5 {
        props_codec::section_len(p)
    } else {
        0
    }
}

fn protocol_name(protocol: ProtocolVersion) -> &'static str {
    match protocol {
        ProtocolVersion::V3_1 => "MQIsdp",
        _ => "MQTT",
    }
}

/// PUBACK..PUBCOMP and DISCONNECT may drop trailing fields: `(reason written, properties written)`.
/// Only the all-default form is shortened: a reason code always comes with its property length, since
/// some clients (rumqttc 0.24's DISCONNECT parser, for one) cannot read a lone reason code.
#[inline]
fn short_form(v5: bool, reason: ReasonCode, props_content: usize) -> (bool, bool) {
    if !v5 {
        (false, false)
    } else {
        let full = props_content > 0 || reason != ReasonCode::SUCCESS;
        (full, full)
    }
}

#[inline]
fn short_form_len(v5: bool, reason: ReasonCode, p: &Properties) -> usize {
    if !v5 {
        return 0;
    }
    let content = props_codec::content_len(p);
    match short_form(v5, reason, content) {
        (_, true) => 1 + varint_len(content) + content,
        (true, false) => 1,
        (false, false) => 0,
    }
}

fn body_len(packet: &Packet, version: ProtocolVersion) -> usize {
    let v5 = version.is_v5();
    match packet {
        Packet::Connect(c) => {
            let v5 = c.protocol.is_v5();
            let mut n = 2 + protocol_name(c.protocol).len() + 1 + 1 + 2;
            n += props_len(v5, &c.properties) + 2 + c.client_id.len();
            if let Some(w) = &c.will {
                n += props_len(v5, &w.properties) + 2 + w.topic.len() + 2 + w.payload.len();
            }
            n += c.username.as_ref().map_or(0, |u| 2 + u.len());
            n += c.password.as_ref().map_or(0, |p| 2 + p.len());
            n
        }
        Packet::ConnAck(a) => 2 + props_len(v5, &a.properties),
        Packet::Publish(p) => {
            let id = if p.qos == QoS::AtMostOnce { 0 } else { 2 };
            2 + p.topic.len() + id + props_len(v5, &p.properties) + p.payload.len()
        }
        Packet::PubAck(r) | Packet::PubRec(r) | Packet::PubRel(r) | Packet::PubComp(r) => {
            2 + short_form_len(v5, r.reason, &r.properties)
        }
        Packet::Subscribe(s) => {
            2 + props_len(v5, &s.properties)
                + s.filters.iter().map(|(f, _)| 3 + f.len()).sum::<usize>()
        }
        Packet::SubAck(a) => 2 + props_len(v5, &a.properties) + a.reasons.len(),
        Packet::Unsubscribe(u) => {
            2 + props_len(v5, &u.properties) + u.filters.iter().map(|f| 2 + f.len()).sum::<usize>()
        }
        Packet::UnsubAck(a) => {
            if v5 {
                2 + props_len(v5, &a.properties) + a.reasons.len()
            } else {
                2
            }
        }
        Packet::PingReq | Packet::PingResp => 0,
        Packet::Disconnect(d) => short_form_len(v5, d.reason, &d.properties),
        Packet::Auth(a) => {
            // MQTT 5.0 3.15.2.1: only the all-default AUTH is shortened; otherwise both fields are
            // written (section 3.15 does not define the one-byte form DISCONNECT has).
            if a.reason == ReasonCode::SUCCESS && props_codec::content_len(&a.properties) == 0 {
                0
            } else {
                1 + props_codec::section_len(&a.properties)
            }
        }
    }
}

fn encode_inner(
    packet: &Packet,
    version: ProtocolVersion,
    buf: &mut BytesMut,
) -> Result<(), EncodeError> {
    let len = body_len(packet, version);
    if len > MAX_REMAINING_LENGTH {
        return Err(EncodeError::TooLarge {
            size: 1 + varint_len(len) + len,
            max: MAX_PACKET_SIZE,
        });
    }
    let v5 = version.is_v5();
    let name = packet.name();
    buf.reserve(1 + varint_len(len) + len);
    match packet {
        Packet::Connect(c) => {
            buf.put_u8(0x10);
            put_varint(buf, len);
            encode_connect(c, buf)
        }
        Packet::ConnAck(a) => {
            buf.put_u8(0x20);
            put_varint(buf, len);
            encode_connack(a, version, buf)
        }
        Packet::Publish(p) => encode_publish(p, v5, len, buf),
        Packet::PubAck(r) => encode_pub_resp(r, 0x40, v5, reason::PUBACK, len, name, buf),
        Packet::PubRec(r) => encode_pub_resp(r, 0x50, v5, reason::PUBACK, len, name, buf),
        Packet::PubRel(r) => encode_pub_resp(r, 0x62, v5, reason::PUBREL, len, name, buf),
        Packet::PubComp(r) => encode_pub_resp(r, 0x70, v5, reason::PUBREL, len, name, buf),
        Packet::Subscribe(s) => {
            buf.put_u8(0x82);
            put_varint(buf, len);
            encode_subscribe(s, v5, buf)
        }
        Packet::SubAck(a) => {
            buf.put_u8(0x90);
            put_varint(buf, len);
            encode_suback(a, v5, buf)
        }
        Packet::Unsubscribe(u) => {
            buf.put_u8(0xA2);
            put_varint(buf, len);
            encode_unsubscribe(u, v5, buf)
        }
        Packet::UnsubAck(a) => {
            buf.put_u8(0xB0);
            put_varint(buf, len);
            encode_unsuback(a, v5, buf)
        }
        Packet::PingReq => {
            buf.put_slice(&[0xC0, 0x00]);
            Ok(())
        }
        Packet::PingResp => {
            buf.put_slice(&[0xD0, 0x00]);
            Ok(())
        }
        Packet::Disconnect(Disconnect { reason, properties }) => {
            buf.put_u8(0xE0);
            put_varint(buf, len);
            encode_reason_only(
                *reason,
                properties,
                v5,
                reason::DISCONNECT,
                PropCtx::DISCONNECT,
                name,
                buf,
            )
        }
        Packet::Auth(Auth { reason, properties }) => {
            if !v5 {
                return invalid(name, "AUTH exists only in MQTT 5");
            }
            check_reason(*reason, reason::AUTH, name)?;
            buf.put_u8(0xF0);
            put_varint(buf, len);
            if len > 0 {
                buf.put_u8(reason.0);
                props_codec::encode(buf, properties, PropCtx::AUTH, name)?;
            }
            Ok(())
        }
    }
}

#[inline]
fn put_packet_id(buf: &mut BytesMut, id: u16, name: &'static str) -> Result<(), EncodeError> {
    if id == 0 {
        return invalid(name, "packet identifier 0");
    }
    buf.put_u16(id);
    Ok(())
}

#[inline]
fn put_props(
    buf: &mut BytesMut,
    v5: bool,
    p: &Properties,
    ctx: PropCtx,
    name: &'static str,
) -> Result<(), EncodeError> {
    if v5 {
        props_codec::encode(buf, p, ctx, name)
    } else {
        Ok(())
    }
}

#[inline]
fn check_reason(reason: ReasonCode, set: ReasonSet, name: &'static str) -> Result<(), EncodeError> {
    if set.contains(reason) {
        Ok(())
    } else {
        invalid(name, "reason code not valid for this packet")
    }
}

fn encode_connect(c: &Connect, buf: &mut BytesMut) -> Result<(), EncodeError> {
    const NAME: &str = "CONNECT";
    let v5 = c.protocol.is_v5();
    if !v5 && c.password.is_some() && c.username.is_none() {
        return invalid(NAME, "password without user name"); // 3.1.1 [MQTT-3.1.2-22]
    }
    put_str(buf, protocol_name(c.protocol), NAME)?;
    buf.put_u8(c.protocol.level());
    let mut flags = 0u8;
    if c.clean_start {
        flags |= 0x02;
    }
    if let Some(w) = &c.will {
        flags |= 0x04 | (w.qos.as_u8() << 3);
        if w.retain {
            flags |= 0x20;
        }
    }
    if c.password.is_some() {
        flags |= 0x40;
    }
    if c.username.is_some() {
        flags |= 0x80;
    }
    buf.put_u8(flags);
    buf.put_u16(c.keep_alive);
    put_props(buf, v5, &c.properties, PropCtx::CONNECT, NAME)?;
    put_str(buf, &c.client_id, NAME)?;
    if let Some(w) = &c.will {
        put_props(buf, v5, &w.properties, PropCtx::WILL, NAME)?;
        if let Err(why) = topic::validate_topic_name(&w.topic) {
            return invalid(NAME, why);
        }
        put_str(buf, &w.topic, NAME)?;
        put_binary(buf, &w.payload, NAME)?;
    }
    if let Some(u) = &c.username {
        put_str(buf, u, NAME)?;
    }
    if let Some(p) = &c.password {
        put_binary(buf, p, NAME)?;
    }
    Ok(())
}

fn encode_connack(
    a: &ConnAck,
    version: ProtocolVersion,
    buf: &mut BytesMut,
) -> Result<(), EncodeError> {
    const NAME: &str = "CONNACK";
    match version {
        ProtocolVersion::V5 => {
            check_reason(a.reason, reason::CONNACK, NAME)?;
            buf.put_u8(u8::from(
                a.session_present && a.reason == ReasonCode::SUCCESS,
            ));
            buf.put_u8(a.reason.0);
            props_codec::encode(buf, &a.properties, PropCtx::CONNACK, NAME)
        }
        ProtocolVersion::V3_1_1 => {
            let code = a.reason.to_v3_connack();
            buf.put_u8(u8::from(a.session_present && code == 0));
            buf.put_u8(code);
            Ok(())
        }
        ProtocolVersion::V3_1 => {
            buf.put_u8(0);
            buf.put_u8(a.reason.to_v3_connack());
            Ok(())
        }
    }
}

fn encode_publish(
    p: &Publish,
    v5: bool,
    len: usize,
    buf: &mut BytesMut,
) -> Result<(), EncodeError> {
    const NAME: &str = "PUBLISH";
    let mut byte1 = 0x30 | (p.qos.as_u8() << 1);
    if p.dup && p.qos != QoS::AtMostOnce {
        byte1 |= 0x08;
    }
    if p.retain {
        byte1 |= 0x01;
    }
    let topic = p.topic.as_bytes();
    if topic.is_empty() {
        if !v5 || p.properties.topic_alias.is_none() {
            return invalid(NAME, "empty topic name without topic alias");
        }
    } else {
        // The checks of `topic::validate_topic_name` and `put_str` in one pass.
        let scan = scan_topic(topic);
        if scan.nul {
            return invalid(NAME, "string contains U+0000");
        }
        if scan.wildcard {
            return invalid(NAME, "topic name contains a wildcard"); // [MQTT-3.3.2-2]
        }
        if topic.len() > usize::from(u16::MAX) {
            return invalid(NAME, "string longer than 65535 bytes");
        }
    }
    buf.put_u8(byte1);
    put_varint(buf, len);
    buf.put_u16(topic.len() as u16);
    buf.put_slice(topic);
    if p.qos != QoS::AtMostOnce {
        match p.packet_id {
            Some(id) => put_packet_id(buf, id, NAME)?,
            None => return invalid(NAME, "QoS > 0 without packet identifier"),
        }
    }
    put_props(buf, v5, &p.properties, PropCtx::PUBLISH, NAME)?;
    buf.put_slice(&p.payload);
    Ok(())
}

fn encode_pub_resp(
    r: &PubResp,
    byte1: u8,
    v5: bool,
    set: ReasonSet,
    len: usize,
    name: &'static str,
    buf: &mut BytesMut,
) -> Result<(), EncodeError> {
    buf.put_u8(byte1);
    put_varint(buf, len);
    put_packet_id(buf, r.packet_id, name)?;
    if v5 {
        check_reason(r.reason, set, name)?;
        let (with_reason, with_props) =
            short_form(v5, r.reason, props_codec::content_len(&r.properties));
        if with_reason {
            buf.put_u8(r.reason.0);
        }
        if with_props {
            props_codec::encode(buf, &r.properties, PropCtx::ACK, name)?;
        }
    }
    Ok(())
}

fn encode_subscribe(s: &Subscribe, v5: bool, buf: &mut BytesMut) -> Result<(), EncodeError> {
    const NAME: &str = "SUBSCRIBE";
    if s.filters.is_empty() {
        return invalid(NAME, "no topic filters"); // [MQTT-3.8.3-3]
    }
    put_packet_id(buf, s.packet_id, NAME)?;
    put_props(buf, v5, &s.properties, PropCtx::SUBSCRIBE, NAME)?;
    for (filter, o) in &s.filters {
        if let Err(why) = topic::validate_topic_filter(filter) {
            return invalid(NAME, why);
        }
        put_str(buf, filter, NAME)?;
        let mut byte = o.qos.as_u8();
        if v5 {
            if o.no_local {
                if topic::parse_shared(filter).is_some() {
                    return invalid(NAME, "no local on a shared subscription"); // [MQTT-3.8.3-4]
                }
                byte |= 0x04;
            }
            if o.retain_as_published {
                byte |= 0x08;
            }
            byte |= (o.retain_handling as u8) << 4;
        }
        buf.put_u8(byte);
    }
    Ok(())
}

fn encode_suback(a: &SubAck, v5: bool, buf: &mut BytesMut) -> Result<(), EncodeError> {
    const NAME: &str = "SUBACK";
    if a.reasons.is_empty() {
        return invalid(NAME, "no reason codes");
    }
    put_packet_id(buf, a.packet_id, NAME)?;
    put_props(buf, v5, &a.properties, PropCtx::ACK, NAME)?;
    for &r in &a.reasons {
        if v5 {
            check_reason(r, reason::SUBACK, NAME)?;
            buf.put_u8(r.0);
        } else if r.is_error() {
            buf.put_u8(0x80);
        } else if r.0 <= 2 {
            buf.put_u8(r.0);
        } else {
            return invalid(NAME, "reason code has no MQTT 3.1.1 return code");
        }
    }
    Ok(())
}

fn encode_unsubscribe(u: &Unsubscribe, v5: bool, buf: &mut BytesMut) -> Result<(), EncodeError> {
    const NAME: &str = "UNSUBSCRIBE";
    if u.filters.is_empty() {
        return invalid(NAME, "no topic filters"); // [MQTT-3.10.3-2]
    }
    put_packet_id(buf, u.packet_id, NAME)?;
    put_props(buf, v5, &u.properties, PropCtx::UNSUBSCRIBE, NAME)?;
    for filter in &u.filters {
        if let Err(why) = topic::validate_topic_filter(filter) {
            return invalid(NAME, why);
        }
        put_str(buf, filter, NAME)?;
    }
    Ok(())
}

fn encode_unsuback(a: &UnsubAck, v5: bool, buf: &mut BytesMut) -> Result<(), EncodeError> {
    const NAME: &str = "UNSUBACK";
    put_packet_id(buf, a.packet_id, NAME)?;
    if v5 {
        if a.reasons.is_empty() {
            return invalid(NAME, "no reason codes");
        }
        props_codec::encode(buf, &a.properties, PropCtx::ACK, NAME)?;
        for &r in &a.reasons {
            check_reason(r, reason::UNSUBACK, NAME)?;
            buf.put_u8(r.0);
        }
    }
    Ok(())
}

fn encode_reason_only(
    reason: ReasonCode,
    properties: &Properties,
    v5: bool,
    set: ReasonSet,
    ctx: PropCtx,
    name: &'static str,
    buf: &mut BytesMut,
) -> Result<(), EncodeError> {
    if !v5 {
        return Ok(());
    }
    check_reason(reason, set, name)?;
    let (with_reason, with_props) = short_form(v5, reason, props_codec::content_len(properties));
    if with_reason {
        buf.put_u8(reason.0);
    }
    if with_props {
        props_codec::encode(buf, properties, ctx, name)?;
    }
    Ok(())
}
