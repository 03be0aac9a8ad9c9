//! Wire primitives shared by the decoder and encoder: a bounds-checked cursor over a packet body and
//! the writers for integers, variable byte integers, UTF-8 strings and binary data (MQTT 5.0 section 1.5).

use bytes::{BufMut, Bytes, BytesMut};

use crate::{DecodeError, EncodeError};

/// Largest value a variable byte integer can carry (4 bytes) [MQTT-1.5.5-1].
pub const MAX_VARINT: u32 = 268_435_455;
/// Largest Remaining Length of a packet.
pub const MAX_REMAINING_LENGTH: usize = MAX_VARINT as usize;
/// Largest packet on the wire: 1 byte of type and flags, 4 bytes of remaining length, and the body.
pub const MAX_PACKET_SIZE: usize = 1 + 4 + MAX_REMAINING_LENGTH;

/// A cursor over one packet body. Every read is bounds checked; nothing is sized by an untrusted length
/// before that length has been checked against the bytes actually present.
pub(crate) struct Reader<'a> {
    data: &'a [u8],
    pos: usize,
    end: usize,
    pub packet: &'static str,
}

impl<'a> Reader<'a> {
    #[inline]
    pub fn new(data: &'a [u8], packet: &'static str) -> Reader<'a> {
        Reader {
            data,
            pos: 0,
            end: data.len(),
            packet,
        }
    }

    /// Bytes read so far.
    #[inline]
    pub fn position(&self) -> usize {
        self.pos
    }

    #[inline]
    pub fn malformed<T>(&self, why: &'static str) -> Result<T, DecodeError> {
        Err(DecodeError::Malformed {
            packet: self.packet,
            why,
        })
    }

    #[inline]
    pub fn protocol<T>(&self, why: &'static str) -> Result<T, DecodeError> {
        Err(DecodeError::Protocol {
            packet: self.packet,
            why,
        })
    }

    #[inline]
    pub fn remaining(&self) -> usize {
        self.end - self.pos
    }

    #[inline]
    pub fn is_empty(&self) -> bool {
        self.pos >= self.end
    }

    /// Fail unless every byte up to the current limit has been read.
    #[inline]
    pub fn finish(&self) -> Result<(), DecodeError> {
        if self.pos == self.end {
            Ok(())
        } else {
            self.malformed("unexpected bytes after the last field")
        }
    }

    /// Restrict reads to the next `len` bytes; returns the previous limit for [`Reader::restore`].
    #[inline]
    pub fn limit(&mut self, len: usize, why: &'static str) -> Result<usize, DecodeError> {
        if len > self.remaining() {
            return self.malformed(why);
        }
        let saved = self.end;
        self.end = self.pos + len;
        Ok(saved)
    }

    /// Undo [`Reader::limit`] after checking the limited section was read exactly.
    #[inline]
    pub fn restore(&mut self, saved_end: usize) -> Result<(), DecodeError> {
        self.finish()?;
        self.end = saved_end;
        Ok(())
    }

    #[inline]
    fn take(&mut self, n: usize) -> Result<&'a [u8], DecodeError> {
        if n > self.remaining() {
            return self.malformed("field runs past the end of the packet");
        }
        let s = &self.data[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }

    #[inline]
    pub fn u8(&mut self) -> Result<u8, DecodeError> {
        if self.pos < self.end {
            let b = self.data[self.pos];
            self.pos += 1;
            Ok(b)
        } else {
            self.malformed("field runs past the end of the packet")
        }
    }

    #[inline]
    pub fn u16(&mut self) -> Result<u16, DecodeError> {
        let b = self.take(2)?;
        Ok(u16::from_be_bytes([b[0], b[1]]))
    }

    #[inline]
    pub fn u32(&mut self) -> Result<u32, DecodeError> {
        let b = self.take(4)?;
        Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    /// A variable byte integer of at most 4 bytes; non-minimal encodings are accepted.
    #[inline]
    pub fn varint(&mut self) -> Result<u32, DecodeError> {
        let mut value = 0u32;
        for i in 0..4 {
            let b = self.u8()?;
            value |= u32::from(b & 0x7F) << (7 * i);
            if b & 0x80 == 0 {
                return Ok(value);
            }
        }
        self.malformed("variable byte integer longer than 4 bytes")
    }

    /// A UTF-8 encoded string: valid UTF-8 without U+0000 [MQTT-1.5.4-1] [MQTT-1.5.4-2].
    #[inline]
    pub fn str(&mut self) -> Result<&'a str, DecodeError> {
        let n = usize::from(self.u16()?);
        let raw = self.take(n)?;
        let Ok(s) = std::str::from_utf8(raw) else {
            return self.malformed("string is not valid UTF-8");
        };
        if raw.contains(&0) {
            return self.malformed("string contains U+0000");
        }
        Ok(s)
    }

    /// A PUBLISH topic name: a string as [`Reader::str`], checked in one pass, with whether it holds
    /// a wildcard character (for the caller to report as an invalid topic name).
    #[inline]
    pub fn topic(&mut self) -> Result<(&'a str, bool), DecodeError> {
        let n = usize::from(self.u16()?);
        let raw = self.take(n)?;
        let Ok(s) = std::str::from_utf8(raw) else {
            return self.malformed("string is not valid UTF-8");
        };
        let scan = scan_topic(raw);
        if scan.nul {
            return self.malformed("string contains U+0000");
        }
        Ok((s, scan.wildcard))
    }

    #[inline]
    pub fn string(&mut self) -> Result<String, DecodeError> {
        self.str().map(str::to_owned)
    }

    /// Binary data: two-byte length and that many bytes (copied).
    #[inline]
    pub fn binary(&mut self) -> Result<Bytes, DecodeError> {
        let n = usize::from(self.u16()?);
        self.take(n).map(Bytes::copy_from_slice)
    }
}

/// What one pass over a topic's bytes found.
pub(crate) struct TopicScan {
    pub nul: bool,
    pub wildcard: bool,
}

/// Look for U+0000 and wildcards in one branch-free pass (topics are short; this beats three scans).
#[inline]
pub(crate) fn scan_topic(raw: &[u8]) -> TopicScan {
    let (mut nul, mut wildcard) = (false, false);
    for &b in raw {
        nul |= b == 0;
        wildcard |= (b == b'+') | (b == b'#');
    }
    TopicScan { nul, wildcard }
}

/// Bytes taken by `value` as a variable byte integer.
#[inline]
pub fn varint_len(value: usize) -> usize {
    match value {
        0..=127 => 1,
        128..=16_383 => 2,
        16_384..=2_097_151 => 3,
        _ => 4,
    }
}

/// Write a variable byte integer. `value` must be at most [`MAX_VARINT`].
#[inline]
pub fn put_varint(buf: &mut BytesMut, mut value: usize) {
    debug_assert!(value <= MAX_REMAINING_LENGTH);
    loop {
        let mut b = (value & 0x7F) as u8;
        value >>= 7;
        if value > 0 {
            b |= 0x80;
        }
        buf.put_u8(b);
        if value == 0 {
            return;
        }
    }
}

/// Write a UTF-8 string field. Fails for strings over 65,535 bytes or containing U+0000, which the
/// decoder would reject.
#[inline]
pub fn put_str(buf: &mut BytesMut, s: &str, packet: &'static str) -> Result<(), EncodeError> {
    if s.len() > usize::from(u16::MAX) {
        return Err(EncodeError::Invalid {
            packet,
            why: "string longer than 65535 bytes",
        });
    }
    if s.as_bytes().contains(&0) {
        return Err(EncodeError::Invalid {
            packet,
            why: "string contains U+0000",
        });
    }
    buf.put_u16(s.len() as u16);
    buf.put_slice(s.as_bytes());
    Ok(())
}

/// Write a binary data field. Fails for data over 65,535 bytes.
#[inline]
pub fn put_binary(buf: &mut BytesMut, b: &[u8], packet: &'static str) -> Result<(), EncodeError> {
    if b.len() > usize::from(u16::MAX) {
        return Err(EncodeError::Invalid {
            packet,
            why: "binary data longer than 65535 bytes",
        });
    }
    buf.put_u16(b.len() as u16);
    buf.put_slice(b);
    Ok(())
}
