//! Which MQTT 5 reason codes each packet may carry (MQTT 5.0 section 2.4, table 2-6). The decoder treats
//! any other value as a Protocol Error; the encoder refuses to write it.

use crate::ReasonCode;

/// A set of reason codes, one bit per byte value.
#[derive(Clone, Copy)]
pub(crate) struct ReasonSet([u64; 4]);

impl ReasonSet {
    const fn of(codes: &[u8]) -> ReasonSet {
        let mut bits = [0u64; 4];
        let mut i = 0;
        while i < codes.len() {
            let c = codes[i] as usize;
            bits[c / 64] |= 1 << (c % 64);
            i += 1;
        }
        ReasonSet(bits)
    }

    #[inline]
    pub fn contains(self, code: ReasonCode) -> bool {
        let c = code.0 as usize;
        self.0[c / 64] & (1 << (c % 64)) != 0
    }
}

pub(crate) const CONNACK: ReasonSet = ReasonSet::of(&[
    0x00, 0x80, 0x81, 0x82, 0x83, 0x84, 0x85, 0x86, 0x87, 0x88, 0x89, 0x8A, 0x8C, 0x90, 0x95, 0x97,
    0x99, 0x9A, 0x9B, 0x9C, 0x9D, 0x9F,
]);

/// PUBACK and PUBREC.
pub(crate) const PUBACK: ReasonSet =
    ReasonSet::of(&[0x00, 0x10, 0x80, 0x83, 0x87, 0x90, 0x91, 0x97, 0x99]);

/// PUBREL and PUBCOMP.
pub(crate) const PUBREL: ReasonSet = ReasonSet::of(&[0x00, 0x92]);

pub(crate) const SUBACK: ReasonSet = ReasonSet::of(&[
    0x00, 0x01, 0x02, 0x80, 0x83, 0x87, 0x8F, 0x91, 0x97, 0x9E, 0xA1, 0xA2,
]);

/// MQTT 3.1.1 SUBACK return codes [MQTT-3.9.3-2].
pub(crate) const SUBACK_V3: ReasonSet = ReasonSet::of(&[0x00, 0x01, 0x02, 0x80]);

pub(crate) const UNSUBACK: ReasonSet = ReasonSet::of(&[0x00, 0x11, 0x80, 0x83, 0x87, 0x8F, 0x91]);

pub(crate) const DISCONNECT: ReasonSet = ReasonSet::of(&[
    0x00, 0x04, 0x80, 0x81, 0x82, 0x83, 0x87, 0x89, 0x8B, 0x8C, 0x8D, 0x8E, 0x8F, 0x90, 0x93, 0x94,
    0x95, 0x96, 0x97, 0x98, 0x99, 0x9A, 0x9B, 0x9C, 0x9D, 0x9E, 0x9F, 0xA0, 0xA1, 0xA2,
]);

pub(crate) const AUTH: ReasonSet = ReasonSet::of(&[0x00, 0x18, 0x19]);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sets_hold_their_codes() {
        assert!(CONNACK.contains(ReasonCode::UNSUPPORTED_PROTOCOL_VERSION));
        assert!(!CONNACK.contains(ReasonCode::GRANTED_QOS_1));
        assert!(PUBACK.contains(ReasonCode::NO_MATCHING_SUBSCRIBERS));
        assert!(!PUBREL.contains(ReasonCode::NO_MATCHING_SUBSCRIBERS));
        assert!(PUBREL.contains(ReasonCode::PACKET_IDENTIFIER_NOT_FOUND));
        assert!(SUBACK.contains(ReasonCode::WILDCARD_SUBSCRIPTIONS_NOT_SUPPORTED));
        assert!(DISCONNECT.contains(ReasonCode::SESSION_TAKEN_OVER));
        assert!(!DISCONNECT.contains(ReasonCode(0xFF)));
        assert!(AUTH.contains(ReasonCode::REAUTHENTICATE));
        assert!(!AUTH.contains(ReasonCode::UNSPECIFIED_ERROR));
    }
}
