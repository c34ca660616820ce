//! What one DH-HMAC-CHAP exchange costs a side in each FFDHE group: a key pair (g^x mod p)
//! plus the shared secret (y^x mod p), the two modular exponentiations each side does per
//! transaction. Median of 7 runs; one core.

use std::time::{Duration, Instant};

use vfnvme_auth::{DhGroupId, DhKeyPair};

const RUNS: usize = 7;
const EXCHANGES_PER_RUN: u32 = 8;

fn main() {
    for group in DhGroupId::ALL.into_iter().skip(1) {
        let peer = DhKeyPair::generate(group).expect("a key pair");
        let mut runs: Vec<Duration> = (0..RUNS)
            .map(|_| {
                let start = Instant::now();
                for _ in 0..EXCHANGES_PER_RUN {
                    let pair = DhKeyPair::generate(group).expect("a key pair");
                    std::hint::black_box(pair.shared_secret(peer.public_value()).expect("valid"));
                }
                start.elapsed() / EXCHANGES_PER_RUN
            })
            .collect();
        runs.sort();
        println!(
            "{group}: {:.2} ms per side per exchange (median of {RUNS}, min {:.2}, max {:.2})",
            runs[RUNS / 2].as_secs_f64() * 1e3,
            runs[0].as_secs_f64() * 1e3,
            runs[RUNS - 1].as_secs_f64() * 1e3,
        );
    }
}
