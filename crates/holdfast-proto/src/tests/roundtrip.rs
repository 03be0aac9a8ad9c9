//! Property tests: encode -> decode is the identity for every packet a version can carry, and
//! `encoded_len` is exactly what `encode_packet` writes.

use bytes::BytesMut;
use proptest::prelude::*;

use super::strategies::packet;
use super::*;
use crate::fuzzing::check_round_trip;

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn round_trip_v31(p in packet(V31)) {
        check_round_trip(&p, V31);
    }

    #[test]
    fn round_trip_v311(p in packet(V311)) {
        check_round_trip(&p, V311);
    }

    #[test]
    fn round_trip_v5(p in packet(V5)) {
        check_round_trip(&p, V5);
    }

    /// A stream of packets decodes back in order, each consuming exactly its own bytes.
    #[test]
    fn stream_round_trip_v5(ps in proptest::collection::vec(packet(V5), 1..6)) {
        let mut buf = BytesMut::new();
        for p in &ps {
            let before = buf.len();
            encode_packet(p, V5, &mut buf).unwrap();
            prop_assert_eq!(buf.len() - before, encoded_len(p, V5));
        }
        for p in &ps {
            let got = decode_packet(&mut buf, V5, usize::MAX).unwrap().unwrap();
            prop_assert_eq!(&got, p);
        }
        prop_assert!(buf.is_empty());
    }

    /// Arbitrary bytes never panic, whatever the version or limit.
    #[test]
    fn arbitrary_bytes_never_panic(data in proptest::collection::vec(any::<u8>(), 0..64)) {
        crate::fuzzing::fuzz_decode(&data);
    }
}
