//! MQTT 5 properties on the wire (MQTT 5.0 section 2.2.2): which packet may carry which property
//! (table 2-4), how often, and which values are legal. Decoding and encoding apply the same rules, so
//! whatever the encoder writes the decoder accepts.

use bytes::{BufMut, BytesMut};

use crate::wire::{put_binary, put_str, put_varint, varint_len, Reader, MAX_VARINT};
use crate::{topic, DecodeError, EncodeError, Properties};

const PAYLOAD_FORMAT_INDICATOR: u8 = 0x01;
const MESSAGE_EXPIRY_INTERVAL: u8 = 0x02;
const CONTENT_TYPE: u8 = 0x03;
const RESPONSE_TOPIC: u8 = 0x08;
const CORRELATION_DATA: u8 = 0x09;
const SUBSCRIPTION_IDENTIFIER: u8 = 0x0B;
const SESSION_EXPIRY_INTERVAL: u8 = 0x11;
const ASSIGNED_CLIENT_IDENTIFIER: u8 = 0x12;
const SERVER_KEEP_ALIVE: u8 = 0x13;
const AUTHENTICATION_METHOD: u8 = 0x15;
const AUTHENTICATION_DATA: u8 = 0x16;
const REQUEST_PROBLEM_INFORMATION: u8 = 0x17;
const WILL_DELAY_INTERVAL: u8 = 0x18;
const REQUEST_RESPONSE_INFORMATION: u8 = 0x19;
const RESPONSE_INFORMATION: u8 = 0x1A;
const SERVER_REFERENCE: u8 = 0x1C;
const REASON_STRING: u8 = 0x1F;
const RECEIVE_MAXIMUM: u8 = 0x21;
const TOPIC_ALIAS_MAXIMUM: u8 = 0x22;
const TOPIC_ALIAS: u8 = 0x23;
const MAXIMUM_QOS: u8 = 0x24;
const RETAIN_AVAILABLE: u8 = 0x25;
const USER_PROPERTY: u8 = 0x26;
const MAXIMUM_PACKET_SIZE: u8 = 0x27;
const WILDCARD_SUBSCRIPTION_AVAILABLE: u8 = 0x28;
const SUBSCRIPTION_IDENTIFIER_AVAILABLE: u8 = 0x29;
const SHARED_SUBSCRIPTION_AVAILABLE: u8 = 0x2A;

const fn mask(ids: &[u8]) -> u64 {
    let mut m = 0u64;
    let mut i = 0;
    while i < ids.len() {
        m |= 1 << ids[i];
        i += 1;
    }
    m
}

#[inline]
const fn bit(id: u8) -> u64 {
    1 << id
}

/// The packet (or the will) a property section belongs to: which identifiers it may hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct PropCtx {
    allowed: u64,
    /// Identifiers that may appear more than once.
    repeatable: u64,
}

impl PropCtx {
    const fn new(ids: &[u8]) -> PropCtx {
        PropCtx {
            allowed: mask(ids) | bit(USER_PROPERTY),
            repeatable: bit(USER_PROPERTY),
        }
    }

    /// May this section hold the property `id`?
    #[cfg(test)]
    pub fn allows(self, id: u8) -> bool {
        id < 64 && self.allowed & bit(id) != 0
    }

    pub const CONNECT: PropCtx = PropCtx::new(&[
        SESSION_EXPIRY_INTERVAL,
        RECEIVE_MAXIMUM,
        MAXIMUM_PACKET_SIZE,
        TOPIC_ALIAS_MAXIMUM,
        REQUEST_RESPONSE_INFORMATION,
        REQUEST_PROBLEM_INFORMATION,
        AUTHENTICATION_METHOD,
        AUTHENTICATION_DATA,
    ]);
    pub const WILL: PropCtx = PropCtx::new(&[
        WILL_DELAY_INTERVAL,
        PAYLOAD_FORMAT_INDICATOR,
        MESSAGE_EXPIRY_INTERVAL,
        CONTENT_TYPE,
        RESPONSE_TOPIC,
        CORRELATION_DATA,
    ]);
    pub const CONNACK: PropCtx = PropCtx::new(&[
        SESSION_EXPIRY_INTERVAL,
        RECEIVE_MAXIMUM,
        MAXIMUM_QOS,
        RETAIN_AVAILABLE,
        MAXIMUM_PACKET_SIZE,
        ASSIGNED_CLIENT_IDENTIFIER,
        TOPIC_ALIAS_MAXIMUM,
        REASON_STRING,
        WILDCARD_SUBSCRIPTION_AVAILABLE,
        SUBSCRIPTION_IDENTIFIER_AVAILABLE,
        SHARED_SUBSCRIPTION_AVAILABLE,
        SERVER_KEEP_ALIVE,
        RESPONSE_INFORMATION,
        SERVER_REFERENCE,
        AUTHENTICATION_METHOD,
        AUTHENTICATION_DATA,
    ]);
    pub const PUBLISH: PropCtx = PropCtx {
        allowed: mask(&[
            PAYLOAD_FORMAT_INDICATOR,
            MESSAGE_EXPIRY_INTERVAL,
            TOPIC_ALIAS,
            RESPONSE_TOPIC,
            CORRELATION_DATA,
            USER_PROPERTY,
            SUBSCRIPTION_IDENTIFIER,
            CONTENT_TYPE,
        ]),
        repeatable: mask(&[USER_PROPERTY, SUBSCRIPTION_IDENTIFIER]),
    };
    /// PUBACK, PUBREC, PUBREL, PUBCOMP, SUBACK and UNSUBACK.
    pub const ACK: PropCtx = PropCtx::new(&[REASON_STRING]);
    pub const SUBSCRIBE: PropCtx = PropCtx::new(&[SUBSCRIPTION_IDENTIFIER]);
    pub const UNSUBSCRIBE: PropCtx = PropCtx::new(&[]);
    pub const DISCONNECT: PropCtx =
        PropCtx::new(&[SESSION_EXPIRY_INTERVAL, REASON_STRING, SERVER_REFERENCE]);
    pub const AUTH: PropCtx =
        PropCtx::new(&[AUTHENTICATION_METHOD, AUTHENTICATION_DATA, REASON_STRING]);
}

/// Every identifier defined by MQTT 5.0.
const KNOWN: u64 = PropCtx::CONNECT.allowed
    | PropCtx::WILL.allowed
    | PropCtx::CONNACK.allowed
    | PropCtx::PUBLISH.allowed
    | PropCtx::DISCONNECT.allowed
    | PropCtx::AUTH.allowed;

#[inline]
fn flag(r: &mut Reader<'_>, why: &'static str) -> Result<u8, DecodeError> {
    let v = r.u8()?;
    if v > 1 {
        return r.protocol(why);
    }
    Ok(v)
}

#[inline]
fn nonzero_u16(r: &mut Reader<'_>, why: &'static str) -> Result<u16, DecodeError> {
    let v = r.u16()?;
    if v == 0 {
        return r.protocol(why);
    }
    Ok(v)
}

/// Decode a property section (length and properties) for the packet `ctx` describes.
pub(crate) fn decode(r: &mut Reader<'_>, ctx: PropCtx) -> Result<Properties, DecodeError> {
    let len = r.varint()? as usize;
    let mut p = Properties::default();
    if len == 0 {
        return Ok(p);
    }
    let saved = r.limit(len, "property length runs past the end of the packet")?;
    let mut seen = 0u64;
    while !r.is_empty() {
        let id = r.varint()?;
        if id >= 64 || KNOWN & (1u64 << id) == 0 {
            return r.malformed("unknown property identifier");
        }
        let id = id as u8;
        let b = bit(id);
        if ctx.allowed & b == 0 {
            // MQTT 5.0 section 2.2.2.2: an identifier not valid for the packet type is malformed.
            return r.malformed("property not allowed in this packet");
        }
        if seen & b != 0 && ctx.repeatable & b == 0 {
            return r.protocol("property included more than once");
        }
        seen |= b;
        match id {
            PAYLOAD_FORMAT_INDICATOR => {
                p.payload_format_indicator =
                    Some(flag(r, "payload format indicator must be 0 or 1")?)
            }
            MESSAGE_EXPIRY_INTERVAL => p.message_expiry_interval = Some(r.u32()?),
            CONTENT_TYPE => p.content_type = Some(r.string()?),
            RESPONSE_TOPIC => {
                let t = r.str()?;
                if topic::validate_topic_name(t).is_err() {
                    return r.protocol("response topic is not a valid topic name");
                    // [MQTT-3.3.2-14]
                }
                p.response_topic = Some(t.to_owned());
            }
            CORRELATION_DATA => p.correlation_data = Some(r.binary()?),
            SUBSCRIPTION_IDENTIFIER => {
                let v = r.varint()?;
                if v == 0 {
                    return r.protocol("subscription identifier 0");
                }
                p.subscription_identifiers.push(v);
            }
            SESSION_EXPIRY_INTERVAL => p.session_expiry_interval = Some(r.u32()?),
            ASSIGNED_CLIENT_IDENTIFIER => p.assigned_client_identifier = Some(r.string()?),
            SERVER_KEEP_ALIVE => p.server_keep_alive = Some(r.u16()?),
            AUTHENTICATION_METHOD => p.authentication_method = Some(r.string()?),
            AUTHENTICATION_DATA => p.authentication_data = Some(r.binary()?),
            REQUEST_PROBLEM_INFORMATION => {
                p.request_problem_information =
                    Some(flag(r, "request problem information must be 0 or 1")?)
            }
            WILL_DELAY_INTERVAL => p.will_delay_interval = Some(r.u32()?),
            REQUEST_RESPONSE_INFORMATION => {
                p.request_response_information =
                    Some(flag(r, "request response information must be 0 or 1")?)
            }
            RESPONSE_INFORMATION => p.response_information = Some(r.string()?),
            SERVER_REFERENCE => p.server_reference = Some(r.string()?),
            REASON_STRING => p.reason_string = Some(r.string()?),
            RECEIVE_MAXIMUM => p.receive_maximum = Some(nonzero_u16(r, "receive maximum 0")?),
            TOPIC_ALIAS_MAXIMUM => p.topic_alias_maximum = Some(r.u16()?),
            TOPIC_ALIAS => p.topic_alias = Some(nonzero_u16(r, "topic alias 0")?),
            MAXIMUM_QOS => p.maximum_qos = Some(flag(r, "maximum QoS must be 0 or 1")?),
            RETAIN_AVAILABLE => {
                p.retain_available = Some(flag(r, "retain available must be 0 or 1")?)
            }
            USER_PROPERTY => {
                let k = r.string()?;
                let v = r.string()?;
                p.user_properties.push((k, v));
            }
            MAXIMUM_PACKET_SIZE => {
                let v = r.u32()?;
                if v == 0 {
                    return r.protocol("maximum packet size 0");
                }
                p.maximum_packet_size = Some(v);
            }
            WILDCARD_SUBSCRIPTION_AVAILABLE => {
                p.wildcard_subscription_available =
                    Some(flag(r, "wildcard subscription available must be 0 or 1")?)
            }
            SUBSCRIPTION_IDENTIFIER_AVAILABLE => {
                p.subscription_identifier_available =
                    Some(flag(r, "subscription identifier available must be 0 or 1")?)
            }
            SHARED_SUBSCRIPTION_AVAILABLE => {
                p.shared_subscription_available =
                    Some(flag(r, "shared subscription available must be 0 or 1")?)
            }
            _ => return r.malformed("unknown property identifier"),
        }
    }
    r.restore(saved)?;
    if p.authentication_data.is_some() && p.authentication_method.is_none() {
        // MQTT 5.0 3.1.2.11.10, 3.2.2.3.18, 3.15.2.2.3
        return r.protocol("authentication data without authentication method");
    }
    Ok(p)
}

#[inline]
fn opt_str(s: &Option<String>) -> usize {
    s.as_ref().map_or(0, |s| 3 + s.len())
}

/// Bytes of the properties themselves, without the length prefix.
pub(crate) fn content_len(p: &Properties) -> usize {
    let fixed = |present: bool, n: usize| if present { n } else { 0 };
    let mut n = fixed(p.payload_format_indicator.is_some(), 2)
        + fixed(p.message_expiry_interval.is_some(), 5)
        + opt_str(&p.content_type)
        + opt_str(&p.response_topic)
        + p.correlation_data.as_ref().map_or(0, |b| 3 + b.len())
        + fixed(p.session_expiry_interval.is_some(), 5)
        + opt_str(&p.assigned_client_identifier)
        + fixed(p.server_keep_alive.is_some(), 3)
        + opt_str(&p.authentication_method)
        + p.authentication_data.as_ref().map_or(0, |b| 3 + b.len())
        + fixed(p.request_problem_information.is_some(), 2)
        + fixed(p.will_delay_interval.is_some(), 5)
        + fixed(p.request_response_information.is_some(), 2)
        + opt_str(&p.response_information)
        + opt_str(&p.server_reference)
        + opt_str(&p.reason_string)
        + fixed(p.receive_maximum.is_some(), 3)
        + fixed(p.topic_alias_maximum.is_some(), 3)
        + fixed(p.topic_alias.is_some(), 3)
        + fixed(p.maximum_qos.is_some(), 2)
        + fixed(p.retain_available.is_some(), 2)
        + fixed(p.maximum_packet_size.is_some(), 5)
        + fixed(p.wildcard_subscription_available.is_some(), 2)
        + fixed(p.subscription_identifier_available.is_some(), 2)
        + fixed(p.shared_subscription_available.is_some(), 2);
    for &id in &p.subscription_identifiers {
        n += 1 + varint_len(id as usize);
    }
    for (k, v) in &p.user_properties {
        n += 5 + k.len() + v.len();
    }
    n
}

/// Bytes of a property section: length prefix and properties.
#[inline]
pub(crate) fn section_len(p: &Properties) -> usize {
    let n = content_len(p);
    varint_len(n) + n
}

/// The identifiers present in `p`.
fn present(p: &Properties) -> u64 {
    let mut m = 0u64;
    let mut set = |present: bool, id: u8| {
        if present {
            m |= bit(id)
        }
    };
    set(
        p.payload_format_indicator.is_some(),
        PAYLOAD_FORMAT_INDICATOR,
    );
    set(p.message_expiry_interval.is_some(), MESSAGE_EXPIRY_INTERVAL);
    set(p.content_type.is_some(), CONTENT_TYPE);
    set(p.response_topic.is_some(), RESPONSE_TOPIC);
    set(p.correlation_data.is_some(), CORRELATION_DATA);
    set(
        !p.subscription_identifiers.is_empty(),
        SUBSCRIPTION_IDENTIFIER,
    );
    set(p.session_expiry_interval.is_some(), SESSION_EXPIRY_INTERVAL);
    set(
        p.assigned_client_identifier.is_some(),
        ASSIGNED_CLIENT_IDENTIFIER,
    );
    set(p.server_keep_alive.is_some(), SERVER_KEEP_ALIVE);
    set(p.authentication_method.is_some(), AUTHENTICATION_METHOD);
    set(p.authentication_data.is_some(), AUTHENTICATION_DATA);
    set(
        p.request_problem_information.is_some(),
        REQUEST_PROBLEM_INFORMATION,
    );
    set(p.will_delay_interval.is_some(), WILL_DELAY_INTERVAL);
    set(
        p.request_response_information.is_some(),
        REQUEST_RESPONSE_INFORMATION,
    );
    set(p.response_information.is_some(), RESPONSE_INFORMATION);
    set(p.server_reference.is_some(), SERVER_REFERENCE);
    set(p.reason_string.is_some(), REASON_STRING);
    set(p.receive_maximum.is_some(), RECEIVE_MAXIMUM);
    set(p.topic_alias_maximum.is_some(), TOPIC_ALIAS_MAXIMUM);
    set(p.topic_alias.is_some(), TOPIC_ALIAS);
    set(p.maximum_qos.is_some(), MAXIMUM_QOS);
    set(p.retain_available.is_some(), RETAIN_AVAILABLE);
    set(!p.user_properties.is_empty(), USER_PROPERTY);
    set(p.maximum_packet_size.is_some(), MAXIMUM_PACKET_SIZE);
    set(
        p.wildcard_subscription_available.is_some(),
        WILDCARD_SUBSCRIPTION_AVAILABLE,
    );
    set(
        p.subscription_identifier_available.is_some(),
        SUBSCRIPTION_IDENTIFIER_AVAILABLE,
    );
    set(
        p.shared_subscription_available.is_some(),
        SHARED_SUBSCRIPTION_AVAILABLE,
    );
    m
}

struct W<'b> {
    buf: &'b mut BytesMut,
    packet: &'static str,
}

impl W<'_> {
    #[inline]
    fn err<T>(&self, why: &'static str) -> Result<T, EncodeError> {
        Err(EncodeError::Invalid {
            packet: self.packet,
            why,
        })
    }
    #[inline]
    fn flag(&mut self, id: u8, v: Option<u8>, why: &'static str) -> Result<(), EncodeError> {
        if let Some(v) = v {
            if v > 1 {
                return self.err(why);
            }
            self.buf.put_u8(id);
            self.buf.put_u8(v);
        }
        Ok(())
    }
    #[inline]
    fn u16(
        &mut self,
        id: u8,
        v: Option<u16>,
        nonzero: Option<&'static str>,
    ) -> Result<(), EncodeError> {
        if let Some(v) = v {
            if let (0, Some(why)) = (v, nonzero) {
                return self.err(why);
            }
            self.buf.put_u8(id);
            self.buf.put_u16(v);
        }
        Ok(())
    }
    #[inline]
    fn u32(&mut self, id: u8, v: Option<u32>) {
        if let Some(v) = v {
            self.buf.put_u8(id);
            self.buf.put_u32(v);
        }
    }
    #[inline]
    fn str(&mut self, id: u8, v: &Option<String>) -> Result<(), EncodeError> {
        if let Some(v) = v {
            self.buf.put_u8(id);
            put_str(self.buf, v, self.packet)?;
        }
        Ok(())
    }
    #[inline]
    fn bin(&mut self, id: u8, v: &Option<bytes::Bytes>) -> Result<(), EncodeError> {
        if let Some(v) = v {
            self.buf.put_u8(id);
            put_binary(self.buf, v, self.packet)?;
        }
        Ok(())
    }
}

/// Write a property section for the packet `ctx` describes, refusing anything [`decode`] would reject.
pub(crate) fn encode(
    buf: &mut BytesMut,
    p: &Properties,
    ctx: PropCtx,
    packet: &'static str,
) -> Result<(), EncodeError> {
    let len = content_len(p);
    put_varint(buf, len);
    if len == 0 {
        return Ok(());
    }
    let invalid = |why| Err(EncodeError::Invalid { packet, why });
    if present(p) & !ctx.allowed != 0 {
        return invalid("property not allowed in this packet");
    }
    if p.subscription_identifiers.len() > 1 && ctx.repeatable & bit(SUBSCRIPTION_IDENTIFIER) == 0 {
        return invalid("more than one subscription identifier");
    }
    if p.authentication_data.is_some() && p.authentication_method.is_none() {
        return invalid("authentication data without authentication method");
    }
    if let Some(t) = &p.response_topic {
        if topic::validate_topic_name(t).is_err() {
            return invalid("response topic is not a valid topic name");
        }
    }
    let mut w = W { buf, packet };
    w.flag(
        PAYLOAD_FORMAT_INDICATOR,
        p.payload_format_indicator,
        "payload format indicator must be 0 or 1",
    )?;
    w.u32(MESSAGE_EXPIRY_INTERVAL, p.message_expiry_interval);
    w.str(CONTENT_TYPE, &p.content_type)?;
    w.str(RESPONSE_TOPIC, &p.response_topic)?;
    w.bin(CORRELATION_DATA, &p.correlation_data)?;
    for &id in &p.subscription_identifiers {
        if id == 0 || id > MAX_VARINT {
            return invalid("subscription identifier outside 1..=268435455");
        }
        w.buf.put_u8(SUBSCRIPTION_IDENTIFIER);
        put_varint(w.buf, id as usize);
    }
    w.u32(SESSION_EXPIRY_INTERVAL, p.session_expiry_interval);
    w.str(ASSIGNED_CLIENT_IDENTIFIER, &p.assigned_client_identifier)?;
    w.u16(SERVER_KEEP_ALIVE, p.server_keep_alive, None)?;
    w.str(AUTHENTICATION_METHOD, &p.authentication_method)?;
    w.bin(AUTHENTICATION_DATA, &p.authentication_data)?;
    w.flag(
        REQUEST_PROBLEM_INFORMATION,
        p.request_problem_information,
        "request problem information must be 0 or 1",
    )?;
    w.u32(WILL_DELAY_INTERVAL, p.will_delay_interval);
    w.flag(
        REQUEST_RESPONSE_INFORMATION,
        p.request_response_information,
        "request response information must be 0 or 1",
    )?;
    w.str(RESPONSE_INFORMATION, &p.response_information)?;
    w.str(SERVER_REFERENCE, &p.server_reference)?;
    w.str(REASON_STRING, &p.reason_string)?;
    w.u16(
        RECEIVE_MAXIMUM,
        p.receive_maximum,
        Some("receive maximum 0"),
    )?;
    w.u16(TOPIC_ALIAS_MAXIMUM, p.topic_alias_maximum, None)?;
    w.u16(TOPIC_ALIAS, p.topic_alias, Some("topic alias 0"))?;
    w.flag(MAXIMUM_QOS, p.maximum_qos, "maximum QoS must be 0 or 1")?;
    w.flag(
        RETAIN_AVAILABLE,
        p.retain_available,
        "retain available must be 0 or 1",
    )?;
    for (k, v) in &p.user_properties {
        w.buf.put_u8(USER_PROPERTY);
        put_str(w.buf, k, packet)?;
        put_str(w.buf, v, packet)?;
    }
    if p.maximum_packet_size == Some(0) {
        return invalid("maximum packet size 0");
    }
    w.u32(MAXIMUM_PACKET_SIZE, p.maximum_packet_size);
    w.flag(
        WILDCARD_SUBSCRIPTION_AVAILABLE,
        p.wildcard_subscription_available,
        "wildcard subscription available must be 0 or 1",
    )?;
    w.flag(
        SUBSCRIPTION_IDENTIFIER_AVAILABLE,
        p.subscription_identifier_available,
        "subscription identifier available must be 0 or 1",
    )?;
    w.flag(
        SHARED_SUBSCRIPTION_AVAILABLE,
        p.shared_subscription_available,
        "shared subscription available must be 0 or 1",
    )?;
    Ok(())
}
