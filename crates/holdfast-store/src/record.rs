//! The on-disk encoding: segment headers, record framing and the body of each record.
//!
//! ```text
//! segment  = header record*
//! header   = "HOLDFAST" version:u16 flags:u8 0:u8 seq:u64 crc:u32          (24 bytes, crc of the 20 before)
//! record   = 0xA5 len:u32 crc:u32 body[len]                                (crc32c of len and body)
//! body     = 1 count:u32 op*                                               (a batch, applied whole)
//!          | 2 ops:varint bytes:varint                                     (end of a snapshot)
//!          | 3 next:varint                                                 (end of a segment)
//! ```
//! Integers are little-endian; `varint` is LEB128; strings and byte strings are a varint length and
//! the bytes; `Option`s are a 0/1 byte and the value. Properties are a varint count of (MQTT property
//! identifier, value) pairs, so every field of [`Properties`] that is set is kept.

use bytes::BufMut;

pub(crate) use crate::codec::put_varint;
use crate::codec::{
    put_bool, put_bytes, put_opt_varint, put_properties, put_str, PayloadArena, Reader,
};

use crate::{Op, OutEntry, SessionRecord, StoredMessage, StoredState, StoredWill};

pub(crate) const SEGMENT_MAGIC: &[u8; 8] = b"HOLDFAST";
pub(crate) const FORMAT_VERSION: u16 = 1;
pub(crate) const HEADER_LEN: usize = 24;
/// Header flag: this segment starts with a complete snapshot; older segments are superseded.
pub(crate) const FLAG_SNAPSHOT: u8 = 1;

pub(crate) const RECORD_MAGIC: u8 = 0xA5;
pub(crate) const RECORD_HEADER_LEN: usize = 9;
/// Larger lengths are taken as damage.
pub(crate) const MAX_RECORD_LEN: usize = 1 << 30;

const BODY_BATCH: u8 = 1;
const BODY_SNAPSHOT_END: u8 = 2;
const BODY_SEGMENT_END: u8 = 3;

/// A segment header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct SegmentHeader {
    pub version: u16,
    pub flags: u8,
    pub seq: u64,
}

impl SegmentHeader {
    pub fn encode(&self) -> [u8; HEADER_LEN] {
        let mut h = [0u8; HEADER_LEN];
        h[..8].copy_from_slice(SEGMENT_MAGIC);
        h[8..10].copy_from_slice(&self.version.to_le_bytes());
        h[10] = self.flags;
        h[12..20].copy_from_slice(&self.seq.to_le_bytes());
        let crc = crc32c::crc32c(&h[..20]);
        h[20..24].copy_from_slice(&crc.to_le_bytes());
        h
    }

    /// None if the bytes are not a valid header (short, wrong magic, bad checksum).
    pub fn decode(b: &[u8]) -> Option<SegmentHeader> {
        if b.len() < HEADER_LEN || &b[..8] != SEGMENT_MAGIC {
            return None;
        }
        let crc = u32::from_le_bytes(b[20..24].try_into().ok()?);
        if crc32c::crc32c(&b[..20]) != crc {
            return None;
        }
        Some(SegmentHeader {
            version: u16::from_le_bytes([b[8], b[9]]),
            flags: b[10],
            seq: u64::from_le_bytes(b[12..20].try_into().ok()?),
        })
    }

    pub fn is_snapshot(&self) -> bool {
        self.flags & FLAG_SNAPSHOT != 0
    }
}

/// What a record holds.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Record {
    Batch(Vec<Op>),
    /// The snapshot before it is complete: `ops` ops in `bytes` bytes (header included).
    SnapshotEnd {
        ops: u64,
        bytes: u64,
    },
    /// The segment is complete; the log goes on in segment `next`. Every segment but the last ends
    /// with one, so a segment cut short is noticed.
    SegmentEnd {
        next: u64,
    },
}

/// Why a record cannot be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Bad {
    /// The file ends inside the record.
    Incomplete,
    /// The record is there but wrong.
    Corrupt(&'static str),
}

// ---------------------------------------------------------------- framing

/// Appends one batch record to `buf`. An empty batch writes nothing.
pub(crate) fn encode_batch(buf: &mut Vec<u8>, ops: &[Op]) {
    if ops.is_empty() {
        return;
    }
    let start = begin_record(buf, BODY_BATCH);
    buf.put_u32_le(ops.len() as u32);
    for op in ops {
        encode_op(buf, op);
    }
    finish_record(buf, start);
}

pub(crate) fn encode_snapshot_end(buf: &mut Vec<u8>, ops: u64, bytes: u64) {
    let start = begin_record(buf, BODY_SNAPSHOT_END);
    put_varint(buf, ops);
    put_varint(buf, bytes);
    finish_record(buf, start);
}

pub(crate) fn encode_segment_end(buf: &mut Vec<u8>, next: u64) {
    let start = begin_record(buf, BODY_SEGMENT_END);
    put_varint(buf, next);
    finish_record(buf, start);
}

/// Writes the magic byte, room for length and checksum, and the body kind; returns the start.
fn begin_record(buf: &mut Vec<u8>, kind: u8) -> usize {
    let start = buf.len();
    buf.put_u8(RECORD_MAGIC);
    buf.put_u32_le(0);
    buf.put_u32_le(0);
    buf.put_u8(kind);
    start
}

fn finish_record(buf: &mut [u8], start: usize) {
    let len = (buf.len() - start - RECORD_HEADER_LEN) as u32;
    buf[start + 1..start + 5].copy_from_slice(&len.to_le_bytes());
    let crc = crc32c::crc32c(&buf[start + 1..start + 5]);
    let crc = crc32c::crc32c_append(crc, &buf[start + RECORD_HEADER_LEN..]);
    buf[start + 5..start + 9].copy_from_slice(&crc.to_le_bytes());
}

/// Bytes of ops in `buf`, a run of complete batch records (their framing left out).
pub(crate) fn batch_op_bytes(buf: &[u8]) -> u64 {
    let mut total = 0;
    let mut pos = 0;
    while pos + RECORD_HEADER_LEN <= buf.len() {
        let len = u32::from_le_bytes(buf[pos + 1..pos + 5].try_into().unwrap()) as usize;
        // The body starts with its kind and the op count.
        total += len.saturating_sub(5) as u64;
        pos += RECORD_HEADER_LEN + len;
    }
    total
}

/// Reads the record at `pos`: the record and the offset after it.
#[cfg(test)]
pub(crate) fn read_record(buf: &[u8], pos: usize) -> Result<(Record, usize), Bad> {
    let mut ops = Vec::new();
    let (record, next) = read_record_in(buf, pos, &mut PayloadArena::default(), &mut ops)?;
    match record {
        Record::Batch(_) => Ok((Record::Batch(ops), next)),
        other => Ok((other, next)),
    }
}

/// [`read_record`] for replay: a batch's ops are appended to `ops` (all of them, or none if the
/// record is bad) and `Record::Batch` comes back empty, so no vector is allocated per record; message
/// payloads are copied into `arena`.
pub(crate) fn read_record_in(
    buf: &[u8],
    pos: usize,
    arena: &mut PayloadArena,
    ops: &mut Vec<Op>,
) -> Result<(Record, usize), Bad> {
    let rest = &buf[pos..];
    if rest.first() != Some(&RECORD_MAGIC) {
        return Err(Bad::Corrupt("bad record magic"));
    }
    if rest.len() < RECORD_HEADER_LEN {
        return Err(Bad::Incomplete);
    }
    let len = u32::from_le_bytes(rest[1..5].try_into().unwrap()) as usize;
    if len > MAX_RECORD_LEN || len == 0 {
        return Err(Bad::Corrupt("bad record length"));
    }
    if rest.len() < RECORD_HEADER_LEN + len {
        return Err(Bad::Incomplete);
    }
    let crc = u32::from_le_bytes(rest[5..9].try_into().unwrap());
    let body = &rest[RECORD_HEADER_LEN..RECORD_HEADER_LEN + len];
    if crc32c::crc32c_append(crc32c::crc32c(&rest[1..5]), body) != crc {
        return Err(Bad::Corrupt("checksum mismatch"));
    }
    let before = ops.len();
    match decode_body(body, arena, ops) {
        Ok(record) => Ok((record, pos + RECORD_HEADER_LEN + len)),
        Err(why) => {
            ops.truncate(before); // a batch is applied whole or not at all
            Err(Bad::Corrupt(why))
        }
    }
}

fn decode_body(
    body: &[u8],
    arena: &mut PayloadArena,
    ops: &mut Vec<Op>,
) -> Result<Record, &'static str> {
    let mut r = Reader { buf: body };
    let record = match r.u8()? {
        BODY_BATCH => {
            let n = r.u32()? as usize;
            // Every op takes at least two bytes: don't let a bad count allocate.
            if n > r.buf.len() / 2 {
                return Err("bad op count");
            }
            ops.reserve(n);
            for _ in 0..n {
                ops.push(decode_op(&mut r, arena)?);
            }
            Record::Batch(Vec::new())
        }
        BODY_SNAPSHOT_END => Record::SnapshotEnd {
            ops: r.varint()?,
            bytes: r.varint()?,
        },
        BODY_SEGMENT_END => Record::SegmentEnd { next: r.varint()? },
        _ => return Err("unknown record kind"),
    };
    if !r.buf.is_empty() {
        return Err("trailing bytes in record");
    }
    Ok(record)
}

// ---------------------------------------------------------------- ops

const PUT_SESSION: u8 = 1;
const DELETE_SESSION: u8 = 2;
const PUT_SUBSCRIPTION: u8 = 3;
const DELETE_SUBSCRIPTION: u8 = 4;
const PUT_MESSAGE: u8 = 5;
const DELETE_MESSAGE: u8 = 6;
const PUT_OUTBOUND: u8 = 7;
const DELETE_OUTBOUND: u8 = 8;
const PUT_INBOUND_QOS2: u8 = 9;
const DELETE_INBOUND_QOS2: u8 = 10;
const PUT_RETAINED: u8 = 11;
const DELETE_RETAINED: u8 = 12;

pub(crate) fn encode_op(buf: &mut Vec<u8>, op: &Op) {
    match op {
        Op::PutSession { client_id, record } => put_session(buf, client_id, record),
        Op::DeleteSession { client_id } => {
            buf.put_u8(DELETE_SESSION);
            put_str(buf, client_id);
        }
        Op::PutSubscription {
            client_id,
            filter,
            options,
            id,
        } => put_subscription(buf, client_id, filter, *options, *id),
        Op::DeleteSubscription { client_id, filter } => {
            buf.put_u8(DELETE_SUBSCRIPTION);
            put_str(buf, client_id);
            put_str(buf, filter);
        }
        Op::PutMessage { id, message } => put_message(buf, *id, message),
        Op::DeleteMessage { id } => {
            buf.put_u8(DELETE_MESSAGE);
            put_varint(buf, *id);
        }
        Op::PutOutbound {
            client_id,
            seq,
            entry,
        } => put_outbound(buf, client_id, *seq, entry),
        Op::DeleteOutbound { client_id, seq } => {
            buf.put_u8(DELETE_OUTBOUND);
            put_str(buf, client_id);
            put_varint(buf, *seq);
        }
        Op::PutInboundQos2 {
            client_id,
            packet_id,
        } => put_inbound(buf, client_id, *packet_id),
        Op::DeleteInboundQos2 {
            client_id,
            packet_id,
        } => {
            buf.put_u8(DELETE_INBOUND_QOS2);
            put_str(buf, client_id);
            buf.put_u16_le(*packet_id);
        }
        Op::PutRetained { topic, message_id } => put_retained(buf, topic, *message_id),
        Op::DeleteRetained { topic } => {
            buf.put_u8(DELETE_RETAINED);
            put_str(buf, topic);
        }
    }
}

// The `put_*` encoders take borrowed parts so a snapshot is written straight from the state.

pub(crate) fn put_session(buf: &mut Vec<u8>, client_id: &str, r: &SessionRecord) {
    buf.put_u8(PUT_SESSION);
    put_str(buf, client_id);
    buf.put_u8(r.protocol);
    put_varint(buf, u64::from(r.expiry));
    put_opt_varint(buf, r.disconnected_at);
    match &r.will {
        None => buf.put_u8(0),
        Some(w) => {
            buf.put_u8(1);
            put_str(buf, &w.topic);
            put_bytes(buf, &w.payload);
            buf.put_u8(w.qos);
            put_bool(buf, w.retain);
            put_properties(buf, &w.properties);
        }
    }
    put_opt_varint(buf, r.will_due);
}

pub(crate) fn put_subscription(
    buf: &mut Vec<u8>,
    client_id: &str,
    filter: &str,
    options: u8,
    id: Option<u32>,
) {
    buf.put_u8(PUT_SUBSCRIPTION);
    put_str(buf, client_id);
    put_str(buf, filter);
    buf.put_u8(options);
    put_opt_varint(buf, id.map(u64::from));
}

pub(crate) fn put_message(buf: &mut Vec<u8>, id: u64, m: &StoredMessage) {
    buf.put_u8(PUT_MESSAGE);
    put_varint(buf, id);
    put_str(buf, &m.topic);
    put_bytes(buf, &m.payload);
    buf.put_u8(m.qos);
    put_bool(buf, m.retain);
    put_properties(buf, &m.properties);
    put_opt_varint(buf, m.expires_at);
    match &m.publisher {
        None => buf.put_u8(0),
        Some(p) => {
            buf.put_u8(1);
            put_str(buf, p);
        }
    }
}

pub(crate) fn put_outbound(buf: &mut Vec<u8>, client_id: &str, seq: u64, e: &OutEntry) {
    buf.put_u8(PUT_OUTBOUND);
    put_str(buf, client_id);
    put_varint(buf, seq);
    put_varint(buf, e.message_id);
    buf.put_u8(e.qos);
    put_bool(buf, e.retain);
    put_varint(buf, e.subscription_ids.len() as u64);
    for id in &e.subscription_ids {
        put_varint(buf, u64::from(*id));
    }
    match e.packet_id {
        None => buf.put_u8(0),
        Some(p) => {
            buf.put_u8(1);
            buf.put_u16_le(p);
        }
    }
    put_bool(buf, e.released);
}

pub(crate) fn put_inbound(buf: &mut Vec<u8>, client_id: &str, packet_id: u16) {
    buf.put_u8(PUT_INBOUND_QOS2);
    put_str(buf, client_id);
    buf.put_u16_le(packet_id);
}

pub(crate) fn put_retained(buf: &mut Vec<u8>, topic: &str, message_id: u64) {
    buf.put_u8(PUT_RETAINED);
    put_str(buf, topic);
    put_varint(buf, message_id);
}

fn decode_op(r: &mut Reader<'_>, arena: &mut PayloadArena) -> Result<Op, &'static str> {
    Ok(match r.u8()? {
        PUT_SESSION => {
            let client_id = arena.client_id(r)?;
            let protocol = r.u8()?;
            let expiry = r.varint_u32()?;
            let disconnected_at = r.opt_varint()?;
            let will = match r.bool()? {
                false => None,
                true => Some(StoredWill {
                    topic: r.string()?,
                    payload: r.bytes()?,
                    qos: r.u8()?,
                    retain: r.bool()?,
                    properties: r.properties()?,
                }),
            };
            let will_due = r.opt_varint()?;
            let record = SessionRecord {
                protocol,
                expiry,
                disconnected_at,
                will,
                will_due,
            };
            Op::PutSession { client_id, record }
        }
        DELETE_SESSION => Op::DeleteSession {
            client_id: arena.client_id(r)?,
        },
        PUT_SUBSCRIPTION => Op::PutSubscription {
            client_id: arena.client_id(r)?,
            filter: r.string()?,
            options: r.u8()?,
            id: match r.bool()? {
                false => None,
                true => Some(r.varint_u32()?),
            },
        },
        DELETE_SUBSCRIPTION => Op::DeleteSubscription {
            client_id: arena.client_id(r)?,
            filter: r.string()?,
        },
        PUT_MESSAGE => {
            let id = r.varint()?;
            let message = StoredMessage {
                topic: arena.topic(r)?,
                payload: arena.copy(r.slice()?),
                qos: r.u8()?,
                retain: r.bool()?,
                properties: r.properties()?,
                expires_at: r.opt_varint()?,
                publisher: match r.bool()? {
                    false => None,
                    true => Some(arena.publisher(r)?),
                },
            };
            Op::PutMessage { id, message }
        }
        DELETE_MESSAGE => Op::DeleteMessage { id: r.varint()? },
        PUT_OUTBOUND => {
            let client_id = arena.client_id(r)?;
            let seq = r.varint()?;
            let message_id = r.varint()?;
            let qos = r.u8()?;
            let retain = r.bool()?;
            let n = r.varint()? as usize;
            if n > r.buf.len() {
                return Err("bad subscription id count");
            }
            let mut subscription_ids = Vec::with_capacity(n);
            for _ in 0..n {
                subscription_ids.push(r.varint_u32()?);
            }
            let packet_id = match r.bool()? {
                false => None,
                true => Some(r.u16()?),
            };
            let released = r.bool()?;
            let entry = OutEntry {
                message_id,
                qos,
                retain,
                subscription_ids,
                packet_id,
                released,
            };
            Op::PutOutbound {
                client_id,
                seq,
                entry,
            }
        }
        DELETE_OUTBOUND => Op::DeleteOutbound {
            client_id: arena.client_id(r)?,
            seq: r.varint()?,
        },
        PUT_INBOUND_QOS2 => Op::PutInboundQos2 {
            client_id: arena.client_id(r)?,
            packet_id: r.u16()?,
        },
        DELETE_INBOUND_QOS2 => Op::DeleteInboundQos2 {
            client_id: arena.client_id(r)?,
            packet_id: r.u16()?,
        },
        PUT_RETAINED => Op::PutRetained {
            topic: r.string()?,
            message_id: r.varint()?,
        },
        DELETE_RETAINED => Op::DeleteRetained { topic: r.string()? },
        _ => return Err("unknown op"),
    })
}

// ---------------------------------------------------------------- snapshot

/// Encodes `state` as batch records of about `record` bytes each (damage to one loses no more), handing
/// the buffer to `emit` (which may clear it) whenever it holds `flush` bytes, and at the end; returns
/// the number of ops.
pub(crate) fn encode_state<E>(
    state: &StoredState,
    buf: &mut Vec<u8>,
    record: usize,
    flush: usize,
    mut emit: impl FnMut(&mut Vec<u8>) -> Result<(), E>,
) -> Result<u64, E> {
    let mut w = ChunkWriter {
        start: None,
        count: 0,
        ops: 0,
        record,
        flush,
    };
    for (id, m) in &state.messages {
        w.op(buf, &mut emit, |b| put_message(b, *id, m))?;
    }
    for (client_id, s) in &state.sessions {
        w.op(buf, &mut emit, |b| put_session(b, client_id, &s.record))?;
        for (filter, (options, id)) in &s.subscriptions {
            w.op(buf, &mut emit, |b| {
                put_subscription(b, client_id, filter, *options, *id)
            })?;
        }
        for (seq, e) in &s.outbound {
            w.op(buf, &mut emit, |b| put_outbound(b, client_id, *seq, e))?;
        }
        for packet_id in &s.inbound_qos2 {
            w.op(buf, &mut emit, |b| put_inbound(b, client_id, *packet_id))?;
        }
    }
    for (topic, id) in &state.retained {
        w.op(buf, &mut emit, |b| put_retained(b, topic, *id))?;
    }
    w.close(buf);
    emit(buf)?;
    Ok(w.ops)
}

struct ChunkWriter {
    start: Option<usize>,
    count: u32,
    ops: u64,
    record: usize,
    flush: usize,
}

impl ChunkWriter {
    fn op<E>(
        &mut self,
        buf: &mut Vec<u8>,
        emit: &mut impl FnMut(&mut Vec<u8>) -> Result<(), E>,
        put: impl FnOnce(&mut Vec<u8>),
    ) -> Result<(), E> {
        if self.start.is_none() {
            self.start = Some(begin_record(buf, BODY_BATCH));
            buf.put_u32_le(0);
        }
        put(buf);
        self.count += 1;
        self.ops += 1;
        if self
            .start
            .is_some_and(|start| buf.len() - start >= self.record)
        {
            self.close(buf);
            if buf.len() >= self.flush {
                emit(buf)?;
            }
        }
        Ok(())
    }

    fn close(&mut self, buf: &mut [u8]) {
        if let Some(start) = self.start.take() {
            let at = start + RECORD_HEADER_LEN + 1;
            buf[at..at + 4].copy_from_slice(&self.count.to_le_bytes());
            finish_record(buf, start);
            self.count = 0;
        }
    }
}

#[cfg(test)]
#[path = "record_tests.rs"]
pub(crate) mod tests;
