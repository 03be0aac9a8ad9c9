//! A small deterministic random number generator (SplitMix64) for tests that pick random
//! moments, offsets and choices. Every test prints its seed; `HOLDFAST_TEST_SEED=<n>` replays
//! a run with that seed (timing-dependent tests replay the same choices, not the same timing).

use std::time::{SystemTime, UNIX_EPOCH};

pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    /// The seed from `HOLDFAST_TEST_SEED`, or a fresh one from the clock; printed with `what`
    /// so that a failing run can be replayed.
    pub fn from_env(what: &str) -> (Rng, u64) {
        let seed = match std::env::var("HOLDFAST_TEST_SEED") {
            Ok(s) if !s.trim().is_empty() => s
                .trim()
                .parse()
                .unwrap_or_else(|_| panic!("HOLDFAST_TEST_SEED={s:?}: expected a u64")),
            _ => SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map(|d| d.as_nanos() as u64)
                .unwrap_or(0x5eed),
        };
        eprintln!("{what}: seed {seed} (replay with HOLDFAST_TEST_SEED={seed})");
        (Rng(seed), seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `lo..hi` (`hi > lo`).
    pub fn range(&mut self, lo: u64, hi: u64) -> u64 {
        assert!(hi > lo, "empty range {lo}..{hi}");
        lo + self.next_u64() % (hi - lo)
    }

    /// Uniform in `lo..hi` for indexes and offsets.
    pub fn usize(&mut self, lo: usize, hi: usize) -> usize {
        self.range(lo as u64, hi as u64) as usize
    }

    /// True with probability `percent` / 100.
    pub fn chance(&mut self, percent: u64) -> bool {
        self.range(0, 100) < percent
    }
}
