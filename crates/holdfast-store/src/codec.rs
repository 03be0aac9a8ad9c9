//! The primitive encodings of the log format: LEB128 varints, length-prefixed strings and bytes,
//! options, booleans, and [`Properties`] as (MQTT property identifier, value) pairs so that every
//! field that is set is kept. Decoding is strict: anything out of place is an error, so damage that
//! slips past the checksum is still caught.

use std::sync::Arc;

use bytes::{BufMut, Bytes, BytesMut};
use holdfast_proto::Properties;

pub(crate) fn put_varint(buf: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        buf.push((v as u8) | 0x80);
        v >>= 7;
    }
    buf.push(v as u8);
}

pub(crate) fn put_opt_varint(buf: &mut Vec<u8>, v: Option<u64>) {
    match v {
        None => buf.put_u8(0),
        Some(v) => {
            buf.put_u8(1);
            put_varint(buf, v);
        }
    }
}

pub(crate) fn put_bool(buf: &mut Vec<u8>, v: bool) {
    buf.put_u8(u8::from(v));
}

pub(crate) fn put_str(buf: &mut Vec<u8>, s: &str) {
    put_bytes(buf, s.as_bytes());
}

pub(crate) fn put_bytes(buf: &mut Vec<u8>, b: &[u8]) {
    put_varint(buf, b.len() as u64);
    buf.extend_from_slice(b);
}

/// How a property's value is encoded.
enum PropValue<'a> {
    Byte(u8),
    U16(u16),
    U32(u32),
    Varint(u32),
    Str(&'a str),
    Bin(&'a [u8]),
    Pair(&'a str, &'a str),
}

/// Every set field of `p`, as (MQTT property identifier, value).
fn property_list(p: &Properties) -> Vec<(u8, PropValue<'_>)> {
    use PropValue::*;
    let mut v = Vec::new();
    let byte = |id, x: Option<u8>| x.map(|x| (id, Byte(x)));
    let bytes = [
        byte(0x01, p.payload_format_indicator),
        byte(0x17, p.request_problem_information),
        byte(0x19, p.request_response_information),
        byte(0x24, p.maximum_qos),
        byte(0x25, p.retain_available),
        byte(0x28, p.wildcard_subscription_available),
        byte(0x29, p.subscription_identifier_available),
        byte(0x2A, p.shared_subscription_available),
    ];
    v.extend(bytes.into_iter().flatten());
    let u32s = [
        (0x02, p.message_expiry_interval),
        (0x11, p.session_expiry_interval),
        (0x18, p.will_delay_interval),
        (0x27, p.maximum_packet_size),
    ];
    v.extend(
        u32s.into_iter()
            .filter_map(|(id, x)| x.map(|x| (id, U32(x)))),
    );
    let u16s = [
        (0x13, p.server_keep_alive),
        (0x21, p.receive_maximum),
        (0x22, p.topic_alias_maximum),
        (0x23, p.topic_alias),
    ];
    v.extend(
        u16s.into_iter()
            .filter_map(|(id, x)| x.map(|x| (id, U16(x)))),
    );
    let strs = [
        (0x03, &p.content_type),
        (0x08, &p.response_topic),
        (0x12, &p.assigned_client_identifier),
        (0x15, &p.authentication_method),
        (0x1A, &p.response_information),
        (0x1C, &p.server_reference),
        (0x1F, &p.reason_string),
    ];
    v.extend(
        strs.into_iter()
            .filter_map(|(id, x)| x.as_deref().map(|x| (id, Str(x)))),
    );
    let bins = [(0x09, &p.correlation_data), (0x16, &p.authentication_data)];
    v.extend(
        bins.into_iter()
            .filter_map(|(id, x)| x.as_deref().map(|x| (id, Bin(x)))),
    );
    v.extend(
        p.subscription_identifiers
            .iter()
            .map(|x| (0x0B, Varint(*x))),
    );
    v.extend(p.user_properties.iter().map(|(k, x)| (0x26, Pair(k, x))));
    v
}

pub(crate) fn put_properties(buf: &mut Vec<u8>, p: &Properties) {
    if p.is_empty() {
        buf.put_u8(0);
        return;
    }
    let list = property_list(p);
    put_varint(buf, list.len() as u64);
    for (id, value) in list {
        buf.put_u8(id);
        match value {
            PropValue::Byte(x) => buf.put_u8(x),
            PropValue::U16(x) => buf.put_u16_le(x),
            PropValue::U32(x) => buf.put_u32_le(x),
            PropValue::Varint(x) => put_varint(buf, u64::from(x)),
            PropValue::Str(x) => put_str(buf, x),
            PropValue::Bin(x) => put_bytes(buf, x),
            PropValue::Pair(k, x) => {
                put_str(buf, k);
                put_str(buf, x);
            }
        }
    }
}

pub(crate) struct Reader<'a> {
    pub buf: &'a [u8],
}

impl<'a> Reader<'a> {
    pub(crate) fn take(&mut self, n: usize) -> Result<&'a [u8], &'static str> {
        if self.buf.len() < n {
            return Err("record body too short");
        }
        let (head, rest) = self.buf.split_at(n);
        self.buf = rest;
        Ok(head)
    }

    pub(crate) fn u8(&mut self) -> Result<u8, &'static str> {
        Ok(self.take(1)?[0])
    }

    pub(crate) fn u16(&mut self) -> Result<u16, &'static str> {
        Ok(u16::from_le_bytes(self.take(2)?.try_into().unwrap()))
    }

    pub(crate) fn u32(&mut self) -> Result<u32, &'static str> {
        Ok(u32::from_le_bytes(self.take(4)?.try_into().unwrap()))
    }

    pub(crate) fn bool(&mut self) -> Result<bool, &'static str> {
        match self.u8()? {
            0 => Ok(false),
            1 => Ok(true),
            _ => Err("bad boolean"),
        }
    }

    pub(crate) fn varint(&mut self) -> Result<u64, &'static str> {
        let mut v = 0u64;
        for i in 0..10 {
            let b = self.u8()?;
            v |= u64::from(b & 0x7f) << (7 * i);
            if b & 0x80 == 0 {
                if i == 9 && b > 1 {
                    break;
                }
                return Ok(v);
            }
        }
        Err("bad varint")
    }

    pub(crate) fn varint_u32(&mut self) -> Result<u32, &'static str> {
        u32::try_from(self.varint()?).map_err(|_| "varint out of range")
    }

    pub(crate) fn opt_varint(&mut self) -> Result<Option<u64>, &'static str> {
        match self.bool()? {
            false => Ok(None),
            true => self.varint().map(Some),
        }
    }

    pub(crate) fn slice(&mut self) -> Result<&'a [u8], &'static str> {
        let n = usize::try_from(self.varint()?).map_err(|_| "bad length")?;
        self.take(n)
    }

    pub(crate) fn string(&mut self) -> Result<String, &'static str> {
        self.str().map(str::to_owned)
    }

    pub(crate) fn str(&mut self) -> Result<&'a str, &'static str> {
        let b = self.slice()?;
        std::str::from_utf8(b).map_err(|_| "string is not UTF-8")
    }

    pub(crate) fn bytes(&mut self) -> Result<Bytes, &'static str> {
        self.slice().map(Bytes::copy_from_slice)
    }

    pub(crate) fn properties(&mut self) -> Result<Properties, &'static str> {
        let n = self.varint()?;
        let mut p = Properties::default();
        for _ in 0..n {
            match self.u8()? {
                0x01 => p.payload_format_indicator = Some(self.u8()?),
                0x17 => p.request_problem_information = Some(self.u8()?),
                0x19 => p.request_response_information = Some(self.u8()?),
                0x24 => p.maximum_qos = Some(self.u8()?),
                0x25 => p.retain_available = Some(self.u8()?),
                0x28 => p.wildcard_subscription_available = Some(self.u8()?),
                0x29 => p.subscription_identifier_available = Some(self.u8()?),
                0x2A => p.shared_subscription_available = Some(self.u8()?),
                0x02 => p.message_expiry_interval = Some(self.u32()?),
                0x11 => p.session_expiry_interval = Some(self.u32()?),
                0x18 => p.will_delay_interval = Some(self.u32()?),
                0x27 => p.maximum_packet_size = Some(self.u32()?),
                0x13 => p.server_keep_alive = Some(self.u16()?),
                0x21 => p.receive_maximum = Some(self.u16()?),
                0x22 => p.topic_alias_maximum = Some(self.u16()?),
                0x23 => p.topic_alias = Some(self.u16()?),
                0x03 => p.content_type = Some(self.string()?),
                0x08 => p.response_topic = Some(self.string()?),
                0x12 => p.assigned_client_identifier = Some(self.string()?),
                0x15 => p.authentication_method = Some(self.string()?),
                0x1A => p.response_information = Some(self.string()?),
                0x1C => p.server_reference = Some(self.string()?),
                0x1F => p.reason_string = Some(self.string()?),
                0x09 => p.correlation_data = Some(self.bytes()?),
                0x16 => p.authentication_data = Some(self.bytes()?),
                0x0B => p.subscription_identifiers.push(self.varint_u32()?),
                0x26 => p.user_properties.push((self.string()?, self.string()?)),
                _ => return Err("unknown property"),
            }
        }
        Ok(p)
    }
}

/// Copies small payloads read back from the log into shared blocks: one allocation per block
/// instead of one per message, and clones that only count references (a `Bytes` made from a `Vec`
/// allocates again when first cloned). A block is freed with the last payload in it, so what stays
/// pinned is at most the payload bytes a start restored. Names (client ids, topics) repeated from
/// one record to the next (a queue's entries, a topic's messages) share one allocation too.
#[derive(Default)]
pub(crate) struct PayloadArena {
    block: BytesMut,
    client_id: Option<Arc<str>>,
    publisher: Option<Arc<str>>,
    topic: Option<Arc<str>>,
}

impl PayloadArena {
    const BLOCK: usize = 8 << 10;
    /// Larger payloads get their own allocation.
    const MAX_SHARED: usize = 1 << 10;

    pub(crate) fn copy(&mut self, b: &[u8]) -> Bytes {
        if b.is_empty() {
            return Bytes::new();
        }
        if b.len() > Self::MAX_SHARED {
            return Bytes::copy_from_slice(b);
        }
        if self.block.capacity() - self.block.len() < b.len() {
            self.block = BytesMut::with_capacity(Self::BLOCK);
        }
        self.block.extend_from_slice(b);
        self.block.split().freeze()
    }

    pub(crate) fn client_id(&mut self, r: &mut Reader<'_>) -> Result<Arc<str>, &'static str> {
        Self::shared(&mut self.client_id, r)
    }

    pub(crate) fn publisher(&mut self, r: &mut Reader<'_>) -> Result<Arc<str>, &'static str> {
        Self::shared(&mut self.publisher, r)
    }

    pub(crate) fn topic(&mut self, r: &mut Reader<'_>) -> Result<Arc<str>, &'static str> {
        Self::shared(&mut self.topic, r)
    }

    fn shared(last: &mut Option<Arc<str>>, r: &mut Reader<'_>) -> Result<Arc<str>, &'static str> {
        let s = r.str()?;
        match last {
            Some(l) if **l == *s => Ok(l.clone()),
            _ => Ok(last.insert(Arc::from(s)).clone()),
        }
    }
}
