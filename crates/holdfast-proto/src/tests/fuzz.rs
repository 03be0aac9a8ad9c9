//! A deterministic fuzzing pass in the ordinary test suite: valid packets of every version, mutated
//! (bit flips, byte changes, truncation, insertion, splicing), and plain random bytes, all fed to the
//! same oracle as the cargo-fuzz target.

use bytes::BytesMut;
use proptest::strategy::{Strategy, ValueTree};
use proptest::test_runner::TestRunner;

use super::strategies::packet;
use super::*;
use crate::fuzzing::fuzz_decode_counted;

/// xorshift64*: enough randomness for mutations, fixed seed for reproducibility.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

fn mutate(rng: &mut Rng, data: &mut Vec<u8>, donor: &[u8]) {
    for _ in 0..1 + rng.below(4) {
        match rng.below(7) {
            0 if !data.is_empty() => {
                let i = rng.below(data.len());
                data[i] ^= 1 << rng.below(8);
            }
            1 if !data.is_empty() => {
                let i = rng.below(data.len());
                data[i] = rng.next() as u8;
            }
            2 => {
                let len = rng.below(data.len() + 1);
                data.truncate(len);
            }
            3 => {
                let i = rng.below(data.len() + 1);
                data.insert(i, [0x00, 0xFF, 0x7F, 0x80, rng.next() as u8][rng.below(5)]);
            }
            4 if !data.is_empty() => {
                let i = rng.below(data.len());
                data.remove(i);
            }
            5 => data.extend_from_slice(&donor[..rng.below(donor.len() + 1)]),
            _ if data.len() > 1 => {
                // Interesting values where the fixed header and lengths live.
                let i = rng.below(data.len().min(8));
                data[i] = [0x00, 0x01, 0x02, 0x7F, 0x80, 0xFF, 0x62, 0x82][rng.below(8)];
            }
            _ => {}
        }
    }
}

/// `per_version` valid encoded packets of each version, always the same ones.
fn seeds(per_version: usize) -> Vec<Vec<u8>> {
    let mut runner = TestRunner::deterministic();
    let mut seeds = Vec::new();
    for v in ALL {
        let strategy = packet(v);
        for _ in 0..per_version {
            let p = strategy.new_tree(&mut runner).unwrap().current();
            let mut buf = BytesMut::new();
            encode_packet(&p, v, &mut buf).unwrap();
            seeds.push(buf.to_vec());
        }
    }
    seeds
}

#[test]
fn fuzz_mutated_packets_and_random_bytes() {
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let seeds = seeds(200);
    let mut decoded_mutants = 0;
    for i in 0..3_000 {
        let mut data = seeds[i % seeds.len()].clone();
        let donor = seeds[rng.below(seeds.len())].clone();
        mutate(&mut rng, &mut data, &donor);
        decoded_mutants += fuzz_decode_counted(&data);
    }
    for _ in 0..1_000 {
        let len = rng.below(48);
        let data: Vec<u8> = (0..len).map(|_| rng.next() as u8).collect();
        fuzz_decode_counted(&data);
    }
    // The unmutated seeds, concatenated as one stream: every one of them decodes (at least with the
    // version it was made for and no size limit).
    assert!(fuzz_decode_counted(&seeds.concat()) >= seeds.len());
    // Mutants still reach the deep parts of the decoder rather than all failing up front.
    assert!(
        decoded_mutants > 3_000,
        "only {decoded_mutants} packets decoded from mutants"
    );
}

/// Seeds the cargo-fuzz corpus with valid packets of every type and version:
/// `HOLDFAST_FUZZ_SEEDS=$PWD/fuzz/corpus/decode cargo test -p holdfast-proto write_fuzz_seeds -- --ignored`
#[test]
#[ignore = "writes files; run by hand to seed the cargo-fuzz corpus"]
fn write_fuzz_seeds() {
    let dir = std::env::var("HOLDFAST_FUZZ_SEEDS")
        .expect("set HOLDFAST_FUZZ_SEEDS to the corpus directory");
    std::fs::create_dir_all(&dir).unwrap();
    for (i, seed) in seeds(300).iter().enumerate() {
        std::fs::write(format!("{dir}/seed-{i:04}"), seed).unwrap();
    }
}
