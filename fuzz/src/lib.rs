//! What the fuzz targets (`fuzz_targets/*.rs`) and the seed corpus writer (`examples/
//! seed_corpus.rs`) share: how a `pdu` or `auth` input names its connection settings, a host's byte
//! stream built from the PDU encoders, the controllers the `admin` and `connect_data` targets
//! talk to, and the live target of the `connection` target. See docs/fuzzing.md.

#![forbid(unsafe_code)]

pub mod admin_input;
pub mod auth_input;
pub mod controllers;
pub mod host_stream;
pub mod live;
pub mod pdu_input;

/// A small deterministic generator (xorshift64), for choices an input's seed byte drives.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u8) -> Self {
        Self(u64::from(seed).wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1)
    }

    /// A value in `1..=max`.
    pub fn between_one_and(&mut self, max: usize) -> usize {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        1 + (self.0 % max as u64) as usize
    }
}
