//! The stamp at the front of every payload: who sent it, its place in that publisher's sequence, and
//! when it was sent, on a monotonic clock shared by every task of the process.

use std::time::Instant;

/// Bytes taken by a [`Stamp`]; the rest of the payload is zero padding.
pub const STAMP_LEN: usize = 20;

/// Publisher id (u32), sequence number (u64) and send time in ns (u64), big-endian.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stamp {
    pub publisher: u32,
    pub seq: u64,
    pub sent_ns: u64,
}

impl Stamp {
    /// Writes the stamp over the first [`STAMP_LEN`] bytes of `out`.
    ///
    /// # Panics
    /// If `out` is shorter than [`STAMP_LEN`].
    #[inline]
    pub fn write(&self, out: &mut [u8]) {
        out[0..4].copy_from_slice(&self.publisher.to_be_bytes());
        out[4..12].copy_from_slice(&self.seq.to_be_bytes());
        out[12..20].copy_from_slice(&self.sent_ns.to_be_bytes());
    }

    /// Reads the stamp at the front of a payload; `None` when it is too short to hold one.
    #[inline]
    pub fn read(payload: &[u8]) -> Option<Stamp> {
        let head: &[u8; STAMP_LEN] = payload.get(..STAMP_LEN)?.try_into().ok()?;
        let (p, rest) = head.split_at(4);
        let (s, t) = rest.split_at(8);
        Some(Stamp {
            publisher: u32::from_be_bytes(p.try_into().ok()?),
            seq: u64::from_be_bytes(s.try_into().ok()?),
            sent_ns: u64::from_be_bytes(t.try_into().ok()?),
        })
    }
}

/// Nanoseconds since a base instant. Copied into every task so that a send time stamped by one
/// task and a receive time read by another are on the same scale.
#[derive(Debug, Clone, Copy)]
pub struct Clock {
    base: Instant,
}

impl Clock {
    pub fn new() -> Clock {
        Clock {
            base: Instant::now(),
        }
    }

    #[inline]
    pub fn now_ns(&self) -> u64 {
        self.ns_at(Instant::now())
    }

    /// The clock's reading at `at` (0 before the base).
    #[inline]
    pub fn ns_at(&self, at: Instant) -> u64 {
        u64::try_from(at.saturating_duration_since(self.base).as_nanos()).unwrap_or(u64::MAX)
    }
}

impl Default for Clock {
    fn default() -> Clock {
        Clock::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stamp_round_trips_at_the_front_of_a_padded_payload() {
        let stamp = Stamp {
            publisher: 0xDEAD_BEEF,
            seq: u64::MAX - 1,
            sent_ns: 1_234_567_890_123,
        };
        let mut payload = vec![0u8; 64];
        stamp.write(&mut payload);
        assert_eq!(Stamp::read(&payload), Some(stamp));
        assert!(payload[STAMP_LEN..].iter().all(|&b| b == 0), "padding");
        assert_eq!(Stamp::read(&payload[..STAMP_LEN]), Some(stamp), "exact");
    }

    #[test]
    fn stamp_layout_is_big_endian_id_seq_time() {
        let mut out = [0u8; STAMP_LEN];
        Stamp {
            publisher: 1,
            seq: 2,
            sent_ns: 3,
        }
        .write(&mut out);
        assert_eq!(
            out,
            [0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0, 3]
        );
    }

    #[test]
    fn short_payload_has_no_stamp() {
        assert_eq!(Stamp::read(&[0u8; STAMP_LEN - 1]), None);
        assert_eq!(Stamp::read(&[]), None);
    }

    #[test]
    fn clock_is_monotonic_from_its_base() {
        let clock = Clock::new();
        let a = clock.now_ns();
        let b = clock.now_ns();
        assert!(b >= a);
        assert_eq!(clock.ns_at(clock.base), 0);
    }
}
