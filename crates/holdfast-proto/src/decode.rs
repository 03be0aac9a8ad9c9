//! Decoding: fixed header, then the body of each packet type by the rules of its protocol version.

use bytes::{Buf, Bytes, BytesMut};

use crate::props_codec::{self, PropCtx};
use crate::reason::{self, ReasonSet};
use crate::wire::Reader;
use crate::{
    topic, Auth, ConnAck, Connect, DecodeError, Disconnect, Packet, ProtocolVersion, PubResp,
    Publish, QoS, ReasonCode, RetainHandling, SubAck, Subscribe, SubscriptionOptions, UnsubAck,
    Unsubscribe, Will,
};

/// The fixed header of a packet: first byte and remaining length.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FixedHeader {
    pub byte1: u8,
    pub remaining_len: usize,
    /// Bytes taken by the fixed header itself (2..=5).
    pub header_len: usize,
}

impl FixedHeader {
    /// The control packet type, 0..=15.
    #[inline]
    pub fn packet_type(&self) -> u8 {
        self.byte1 >> 4
    }

    /// The four flag bits of the first byte.
    #[inline]
    pub fn flags(&self) -> u8 {
        self.byte1 & 0x0F
    }

    /// The whole packet on the wire: fixed header plus remaining length.
    #[inline]
    pub fn packet_len(&self) -> usize {
        self.header_len + self.remaining_len
    }
}

/// The name of a control packet type number, for errors and logs.
pub fn packet_type_name(packet_type: u8) -> &'static str {
    match packet_type {
        1 => "CONNECT",
        2 => "CONNACK",
        3 => "PUBLISH",
        4 => "PUBACK",
        5 => "PUBREC",
        6 => "PUBREL",
        7 => "PUBCOMP",
        8 => "SUBSCRIBE",
        9 => "SUBACK",
        10 => "UNSUBSCRIBE",
        11 => "UNSUBACK",
        12 => "PINGREQ",
        13 => "PINGRESP",
        14 => "DISCONNECT",
        15 => "AUTH",
        _ => "reserved packet type",
    }
}

/// Read the fixed header at the front of `buf` without consuming it. `Ok(None)` until enough bytes
/// have arrived. Fails as soon as the remaining length is malformed or the whole packet would exceed
/// `max_packet_size`, so an oversized body is never buffered.
///
/// Even while the remaining length is still arriving, a packet that must already exceed
/// `max_packet_size` (counting the length bytes seen so far) is refused.
pub fn read_fixed_header(
    buf: &[u8],
    max_packet_size: usize,
) -> Result<Option<FixedHeader>, DecodeError> {
    let Some(&byte1) = buf.first() else {
        return Ok(None);
    };
    check_byte1(byte1)?;
    let mut remaining_len = 0usize;
    for i in 0..4 {
        // Smallest packet still possible: type byte, the length bytes so far plus one, the value so far.
        let at_least = 2 + i + remaining_len;
        if at_least > max_packet_size {
            return Err(DecodeError::TooLarge {
                size: at_least,
                max: max_packet_size,
            });
        }
        let Some(&b) = buf.get(1 + i) else {
            return Ok(None);
        };
        remaining_len |= usize::from(b & 0x7F) << (7 * i);
        if b & 0x80 == 0 {
            let header_len = 2 + i;
            let size = header_len + remaining_len;
            if size > max_packet_size {
                return Err(DecodeError::TooLarge {
                    size,
                    max: max_packet_size,
                });
            }
            return Ok(Some(FixedHeader {
                byte1,
                remaining_len,
                header_len,
            }));
        }
    }
    // [MQTT-1.5.5-1] at most 4 bytes, so at most 268,435,455.
    Err(DecodeError::Malformed {
        packet: packet_type_name(byte1 >> 4),
        why: "remaining length longer than 4 bytes",
    })
}

/// The first byte alone can be wrong: reserved packet type 0, reserved flags with other values than
/// listed [MQTT-2.1.3-1] (3.1.1 [MQTT-2.2.2-2]), PUBLISH QoS 3 [MQTT-3.3.1-4] or DUP with QoS 0
/// [MQTT-3.3.1-2]. Checking it first rejects non-MQTT traffic before waiting for a body.
#[inline]
fn check_byte1(byte1: u8) -> Result<(), DecodeError> {
    let packet_type = byte1 >> 4;
    let flags = byte1 & 0x0F;
    let why = match packet_type {
        0 => "reserved packet type",
        3 if flags & 0x06 == 0x06 => "QoS 3",
        3 if flags & 0x0E == 0x08 => "DUP set on a QoS 0 message",
        3 => return Ok(()),
        6 | 8 | 10 if flags == 0b0010 => return Ok(()),
        6 | 8 | 10 => "invalid fixed header flags",
        _ if flags == 0 => return Ok(()),
        _ => "invalid fixed header flags",
    };
    Err(DecodeError::Malformed {
        packet: packet_type_name(packet_type),
        why,
    })
}

/// Decode one whole packet from the front of `buf`, consuming it. `Ok(None)` when the packet is not
/// complete yet (nothing consumed). CONNECT carries its own protocol version; every other packet is
/// decoded by the rules of `version`.
///
/// PUBLISH payloads are zero-copy slices of `buf`'s storage: they keep that allocation alive, so
/// copy them before storing them for long. Everything else is copied out of the buffer.
/// On error the packet's bytes may have been consumed; the connection is to be closed anyway.
pub fn decode_packet(
    buf: &mut BytesMut,
    version: ProtocolVersion,
    max_packet_size: usize,
) -> Result<Option<Packet>, DecodeError> {
    let Some(h) = read_fixed_header(buf, max_packet_size)? else {
        return Ok(None);
    };
    let total = h.packet_len();
    if buf.len() < total {
        return Ok(None);
    }
    if h.packet_type() == 3 {
        return decode_publish(buf, h, version);
    }
    let name = packet_type_name(h.packet_type());
    // The packet is consumed when `consume` drops, after the result is written in place: the decoders
    // build the final `Result<Option<Packet>, _>` directly, which spares copies of the large Packet.
    let consume = Consume { buf, len: total };
    decode_body(
        h.byte1,
        Reader::new(&consume.buf[h.header_len..total], name),
        version,
    )
}

/// What the packet decoders return: the public result type, so it can be built in place.
type Decoded = Result<Option<Packet>, DecodeError>;

/// Advances the buffer past a decoded packet when dropped.
struct Consume<'b> {
    buf: &'b mut BytesMut,
    len: usize,
}

impl Drop for Consume<'_> {
    #[inline]
    fn drop(&mut self) {
        self.buf.advance(self.len);
    }
}

fn decode_body(byte1: u8, r: Reader<'_>, version: ProtocolVersion) -> Decoded {
    // Type 0 and reserved flags were refused by `check_byte1` already.
    let packet_type = byte1 >> 4;
    if packet_type == 15 && !version.is_v5() {
        return r.malformed("reserved packet type"); // AUTH exists only in MQTT 5
    }
    let v5 = version.is_v5();
    match packet_type {
        4 => decode_pub_resp(r, v5, reason::PUBACK, Packet::PubAck),
        5 => decode_pub_resp(r, v5, reason::PUBACK, Packet::PubRec),
        6 => decode_pub_resp(r, v5, reason::PUBREL, Packet::PubRel),
        7 => decode_pub_resp(r, v5, reason::PUBREL, Packet::PubComp),
        12 => r.finish().map(|()| Some(Packet::PingReq)),
        13 => r.finish().map(|()| Some(Packet::PingResp)),
        _ => decode_rare(packet_type, r, version).map(Some),
    }
}

fn decode_rare(
    packet_type: u8,
    r: Reader<'_>,
    version: ProtocolVersion,
) -> Result<Packet, DecodeError> {
    let v5 = version.is_v5();
    match packet_type {
        1 => decode_connect(r),
        2 => decode_connack(r, version),
        8 => decode_subscribe(r, v5),
        9 => decode_suback(r, v5),
        10 => decode_unsubscribe(r, v5),
        11 => decode_unsuback(r, v5),
        14 => decode_reason_only(r, v5, reason::DISCONNECT, PropCtx::DISCONNECT)
            .map(|(reason, properties)| Packet::Disconnect(Disconnect { reason, properties })),
        _ => decode_reason_only(r, v5, reason::AUTH, PropCtx::AUTH)
            .map(|(reason, properties)| Packet::Auth(Auth { reason, properties })),
    }
}

/// A packet identifier that must be non-zero [MQTT-2.2.1-3] (3.1.1: [MQTT-2.3.1-1]).
#[inline]
fn read_packet_id(r: &mut Reader<'_>) -> Result<u16, DecodeError> {
    let id = r.u16()?;
    if id == 0 {
        return r.protocol("packet identifier 0");
    }
    Ok(id)
}

#[inline]
fn read_properties(
    r: &mut Reader<'_>,
    v5: bool,
    ctx: PropCtx,
) -> Result<crate::Properties, DecodeError> {
    if v5 {
        props_codec::decode(r, ctx)
    } else {
        Ok(crate::Properties::default())
    }
}

#[inline]
fn reason_in(r: &mut Reader<'_>, set: ReasonSet) -> Result<ReasonCode, DecodeError> {
    let code = ReasonCode(r.u8()?);
    if !set.contains(code) {
        return r.protocol("reason code not valid for this packet");
    }
    Ok(code)
}

fn decode_connect(mut r: Reader<'_>) -> Result<Packet, DecodeError> {
    let name = r.str()?;
    let level = r.u8()?;
    let protocol = match (name, level) {
        ("MQTT", 4) => ProtocolVersion::V3_1_1,
        ("MQTT", 5) => ProtocolVersion::V5,
        ("MQIsdp", 3) => ProtocolVersion::V3_1,
        // [MQTT-3.1.2-2] the server answers CONNACK 0x84 / return code 1.
        ("MQTT", _) => {
            return Err(DecodeError::UnsupportedProtocol(
                "unsupported MQTT protocol level",
            ))
        }
        ("MQIsdp", _) => {
            return Err(DecodeError::UnsupportedProtocol(
                "unsupported MQIsdp protocol level",
            ))
        }
        // [MQTT-3.1.2-1] not MQTT at all: close without answering.
        _ => return r.malformed("unknown protocol name"),
    };
    let v5 = protocol.is_v5();
    let flags = r.u8()?;
    if flags & 0x01 != 0 {
        return r.malformed("reserved connect flag set"); // [MQTT-3.1.2-3]
    }
    let clean_start = flags & 0x02 != 0;
    let will_flag = flags & 0x04 != 0;
    let will_qos = (flags >> 3) & 0x03;
    let will_retain = flags & 0x20 != 0;
    let password_flag = flags & 0x40 != 0;
    let username_flag = flags & 0x80 != 0;
    if !will_flag && (will_qos != 0 || will_retain) {
        // [MQTT-3.1.2-11] [MQTT-3.1.2-13] (3.1.1: [MQTT-3.1.2-13] [MQTT-3.1.2-15])
        return r.malformed("will QoS or will retain set without will flag");
    }
    let Some(will_qos) = QoS::from_u8(will_qos) else {
        return r.malformed("will QoS 3"); // [MQTT-3.1.2-12] (3.1.1: [MQTT-3.1.2-14])
    };
    if !v5 && password_flag && !username_flag {
        return r.malformed("password flag without user name flag"); // 3.1.1 [MQTT-3.1.2-22]
    }
    let keep_alive = r.u16()?;
    let properties = read_properties(&mut r, v5, PropCtx::CONNECT)?;
    let client_id = r.string()?;
    let will = if will_flag {
        let properties = read_properties(&mut r, v5, PropCtx::WILL)?;
        let topic = r.str()?;
        if let Err(why) = topic::validate_topic_name(topic) {
            return Err(DecodeError::TopicName {
                packet: r.packet,
                why,
            });
        }
        let topic = topic.to_owned();
        let payload = r.binary()?;
        Some(Will {
            topic,
            payload,
            qos: will_qos,
            retain: will_retain,
            properties,
        })
    } else {
        None
    };
    let username = if username_flag {
        Some(r.string()?)
    } else {
        None
    };
    let password = if password_flag {
        Some(r.binary()?)
    } else {
        None
    };
    r.finish()?;
    Ok(Packet::Connect(Box::new(Connect {
        protocol,
        clean_start,
        keep_alive,
        client_id,
        will,
        username,
        password,
        properties,
    })))
}

fn decode_connack(mut r: Reader<'_>, version: ProtocolVersion) -> Result<Packet, DecodeError> {
    let ack_flags = r.u8()?;
    let session_present = match version {
        // MQTT 3.1 has no session present flag: the byte is unused.
        ProtocolVersion::V3_1 => false,
        _ => {
            if ack_flags & 0xFE != 0 {
                return r.malformed("reserved connect acknowledge flags set"); // [MQTT-3.2.2-1]
            }
            ack_flags & 0x01 != 0
        }
    };
    let reason = if version.is_v5() {
        reason_in(&mut r, reason::CONNACK)?
    } else {
        let code = r.u8()?;
        if code > 5 {
            return r.protocol("reserved CONNACK return code");
        }
        ReasonCode::from_v3_connack(code)
    };
    if session_present && reason != ReasonCode::SUCCESS {
        return r.protocol("session present with a non-zero reason code"); // [MQTT-3.2.2-6] (3.1.1: -4)
    }
    let properties = read_properties(&mut r, version.is_v5(), PropCtx::CONNACK)?;
    r.finish()?;
    Ok(Packet::ConnAck(ConnAck {
        session_present,
        reason,
        properties,
    }))
}

/// PUBLISH is decoded from the buffer in place: the header fields are parsed from a borrowed slice,
/// then the payload is split off the buffer as a zero-copy `Bytes` (one reference count increment).
fn decode_publish(buf: &mut BytesMut, h: FixedHeader, version: ProtocolVersion) -> Decoded {
    let flags = h.flags();
    let total = h.packet_len();
    let mut r = Reader::new(&buf[h.header_len..total], "PUBLISH");
    let dup = flags & 0x08 != 0;
    let retain = flags & 0x01 != 0;
    let Some(qos) = QoS::from_u8((flags >> 1) & 0x03) else {
        return r.malformed("QoS 3"); // [MQTT-3.3.1-4]
    };
    if dup && qos == QoS::AtMostOnce {
        return r.malformed("DUP set on a QoS 0 message"); // [MQTT-3.3.1-2]
    }
    let (topic, wildcard) = r.topic()?;
    let packet_id = if qos == QoS::AtMostOnce {
        None
    } else {
        Some(read_packet_id(&mut r)?)
    };
    let properties = read_properties(&mut r, version.is_v5(), PropCtx::PUBLISH)?;
    if topic.is_empty() {
        if version.is_v5() {
            if properties.topic_alias.is_none() {
                // MQTT 5.0 3.3.2.1: a zero-length topic name needs a topic alias.
                return r.protocol("empty topic name without topic alias");
            }
        } else {
            return Err(DecodeError::TopicName {
                packet: r.packet,
                why: "topic name is empty",
            });
        }
    } else if wildcard {
        return Err(DecodeError::TopicName {
            packet: r.packet,
            why: "topic name contains a wildcard", // [MQTT-3.3.2-2]
        });
    }
    let topic = std::sync::Arc::<str>::from(topic);
    let payload_at = h.header_len + r.position();
    let payload = if payload_at == total {
        buf.advance(total);
        Bytes::new()
    } else {
        buf.advance(payload_at);
        buf.split_to(total - payload_at).freeze()
    };
    Ok(Some(Packet::Publish(Publish {
        dup,
        qos,
        retain,
        topic,
        packet_id,
        payload,
        properties,
    })))
}

#[inline]
fn decode_pub_resp(
    mut r: Reader<'_>,
    v5: bool,
    set: ReasonSet,
    kind: fn(PubResp) -> Packet,
) -> Decoded {
    let packet_id = read_packet_id(&mut r)?;
    // MQTT 5.0 3.4.2.1: reason code and properties may be omitted (remaining length 2 or 3).
    if !v5 || r.is_empty() {
        r.finish()?;
        return Ok(Some(kind(PubResp::new(packet_id))));
    }
    let reason = reason_in(&mut r, set)?;
    let properties = if r.is_empty() {
        crate::Properties::default()
    } else {
        props_codec::decode(&mut r, PropCtx::ACK)?
    };
    r.finish()?;
    Ok(Some(kind(PubResp {
        packet_id,
        reason,
        properties,
    })))
}

fn decode_subscribe(mut r: Reader<'_>, v5: bool) -> Result<Packet, DecodeError> {
    let packet_id = read_packet_id(&mut r)?;
    let properties = read_properties(&mut r, v5, PropCtx::SUBSCRIBE)?;
    let mut filters = Vec::new();
    while !r.is_empty() {
        let filter = r.str()?;
        if let Err(why) = topic::validate_topic_filter(filter) {
            return Err(DecodeError::Malformed {
                packet: r.packet,
                why,
            });
        }
        let o = r.u8()?;
        let options = if v5 {
            if o & 0xC0 != 0 {
                return r.malformed("reserved subscription option bits set"); // [MQTT-3.8.3-5]
            }
            let Some(qos) = QoS::from_u8(o & 0x03) else {
                return r.protocol("subscription QoS 3"); // MQTT 5.0 3.8.3.1
            };
            let retain_handling = match (o >> 4) & 0x03 {
                0 => RetainHandling::SendAtSubscribe,
                1 => RetainHandling::SendIfNew,
                2 => RetainHandling::DoNotSend,
                _ => return r.protocol("retain handling 3"), // MQTT 5.0 3.8.3.1
            };
            let no_local = o & 0x04 != 0;
            if no_local && topic::parse_shared(filter).is_some() {
                return r.protocol("no local on a shared subscription"); // [MQTT-3.8.3-4]
            }
            SubscriptionOptions {
                qos,
                no_local,
                retain_as_published: o & 0x08 != 0,
                retain_handling,
            }
        } else {
            // 3.1.1 [MQTT-3-8.3-4]: upper 6 bits reserved, QoS 0..=2.
            let qos = match QoS::from_u8(o) {
                Some(qos) => qos,
                None => return r.malformed("invalid requested QoS byte"),
            };
            SubscriptionOptions {
                qos,
                ..SubscriptionOptions::default()
            }
        };
        filters.push((filter.to_owned(), options));
    }
    if filters.is_empty() {
        return r.protocol("no topic filters"); // [MQTT-3.8.3-3]
    }
    Ok(Packet::Subscribe(Subscribe {
        packet_id,
        filters,
        properties,
    }))
}

fn decode_suback(mut r: Reader<'_>, v5: bool) -> Result<Packet, DecodeError> {
    let packet_id = read_packet_id(&mut r)?;
    let properties = read_properties(&mut r, v5, PropCtx::ACK)?;
    let set = if v5 {
        reason::SUBACK
    } else {
        reason::SUBACK_V3
    }; // 3.1.1 [MQTT-3.9.3-2]
    let mut reasons = Vec::with_capacity(r.remaining());
    while !r.is_empty() {
        reasons.push(reason_in(&mut r, set)?);
    }
    if reasons.is_empty() {
        return r.protocol("no reason codes");
    }
    Ok(Packet::SubAck(SubAck {
        packet_id,
        reasons,
        properties,
    }))
}

fn decode_unsubscribe(mut r: Reader<'_>, v5: bool) -> Result<Packet, DecodeError> {
    let packet_id = read_packet_id(&mut r)?;
    let properties = read_properties(&mut r, v5, PropCtx::UNSUBSCRIBE)?;
    let mut filters = Vec::new();
    while !r.is_empty() {
        let filter = r.str()?;
        if let Err(why) = topic::validate_topic_filter(filter) {
            return Err(DecodeError::Malformed {
                packet: r.packet,
                why,
            });
        }
        filters.push(filter.to_owned());
    }
    if filters.is_empty() {
        return r.protocol("no topic filters"); // [MQTT-3.10.3-2]
    }
    Ok(Packet::Unsubscribe(Unsubscribe {
        packet_id,
        filters,
        properties,
    }))
}

fn decode_unsuback(mut r: Reader<'_>, v5: bool) -> Result<Packet, DecodeError> {
    let packet_id = read_packet_id(&mut r)?;
    let mut ack = UnsubAck {
        packet_id,
        reasons: Vec::new(),
        properties: Default::default(),
    };
    if v5 {
        ack.properties = props_codec::decode(&mut r, PropCtx::ACK)?;
        ack.reasons.reserve(r.remaining());
        while !r.is_empty() {
            ack.reasons.push(reason_in(&mut r, reason::UNSUBACK)?);
        }
        if ack.reasons.is_empty() {
            return r.protocol("no reason codes");
        }
    }
    r.finish()?;
    Ok(Packet::UnsubAck(ack))
}

/// DISCONNECT and AUTH: an optional reason code and optional properties (MQTT 5.0 3.14.2.1, 3.15.2.1).
fn decode_reason_only(
    mut r: Reader<'_>,
    v5: bool,
    set: ReasonSet,
    ctx: PropCtx,
) -> Result<(ReasonCode, crate::Properties), DecodeError> {
    let mut reason = ReasonCode::SUCCESS;
    let mut properties = crate::Properties::default();
    if v5 && !r.is_empty() {
        reason = reason_in(&mut r, set)?;
        if !r.is_empty() {
            properties = props_codec::decode(&mut r, ctx)?;
        }
    }
    r.finish()?;
    Ok((reason, properties))
}
