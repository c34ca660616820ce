//! What to do next: the workload kinds, and where each I/O goes.

use std::fmt;

/// The `-w` workloads.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Workload {
    Read,
    Write,
    #[value(name = "randread")]
    RandRead,
    #[value(name = "randwrite")]
    RandWrite,
    /// One sequential pass writing the pattern and reading it back.
    Verify,
}

impl fmt::Display for Workload {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = match self {
            Self::Read => "read",
            Self::Write => "write",
            Self::RandRead => "randread",
            Self::RandWrite => "randwrite",
            Self::Verify => "verify",
        };
        f.write_str(name)
    }
}

/// A range of blocks one I/O covers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Extent {
    pub lba: u64,
    pub blocks: u32,
}

/// Hands out extents of `io_blocks` blocks over a namespace of `ns_blocks` blocks, which holds
/// at least one whole extent.
pub enum Offsets {
    /// Wraps around at the end; an extent never crosses it.
    Sequential {
        next: u64,
        io_blocks: u32,
        ns_blocks: u64,
    },
    /// Uniform over the aligned extents.
    Random {
        rng: XorShift,
        io_blocks: u32,
        extents: u64,
    },
    /// Once over the namespace; the last extent is cut short at its end.
    SinglePass {
        next: u64,
        io_blocks: u32,
        ns_blocks: u64,
    },
}

impl Offsets {
    pub fn new(workload: Workload, io_blocks: u32, ns_blocks: u64, seed: u64) -> Self {
        match workload {
            Workload::Read | Workload::Write => Self::Sequential {
                next: 0,
                io_blocks,
                ns_blocks,
            },
            Workload::RandRead | Workload::RandWrite => Self::Random {
                rng: XorShift::new(seed),
                io_blocks,
                extents: ns_blocks / u64::from(io_blocks),
            },
            Workload::Verify => Self::SinglePass {
                next: 0,
                io_blocks,
                ns_blocks,
            },
        }
    }

    /// The next extent; `None` once a single pass is complete.
    pub fn next_extent(&mut self) -> Option<Extent> {
        match self {
            Self::Sequential {
                next,
                io_blocks,
                ns_blocks,
            } => {
                if *next + u64::from(*io_blocks) > *ns_blocks {
                    *next = 0;
                }
                let lba = *next;
                *next += u64::from(*io_blocks);
                Some(Extent {
                    lba,
                    blocks: *io_blocks,
                })
            }
            Self::Random {
                rng,
                io_blocks,
                extents,
            } => Some(Extent {
                lba: rng.below(*extents) * u64::from(*io_blocks),
                blocks: *io_blocks,
            }),
            Self::SinglePass {
                next,
                io_blocks,
                ns_blocks,
            } => {
                let remaining = ns_blocks.checked_sub(*next).filter(|&left| left > 0)?;
                let blocks = remaining.min(u64::from(*io_blocks)) as u32;
                let lba = *next;
                *next += u64::from(blocks);
                Some(Extent { lba, blocks })
            }
        }
    }
}

/// xorshift64*: fast, small, and plenty for spreading offsets (not for anything secret).
pub struct XorShift(u64);

impl XorShift {
    pub fn new(seed: u64) -> Self {
        // splitmix64 of the seed, so that small seeds start far apart and seed 0 works too.
        let mut z = seed.wrapping_add(0x9E37_79B9_7F4A_7C15);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        Self(if z == 0 { 1 } else { z })
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// Uniform in `0..bound` (`bound > 0`), by Lemire's multiply-shift.
    pub fn below(&mut self, bound: u64) -> u64 {
        ((u128::from(self.next_u64()) * u128::from(bound)) >> 64) as u64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn take(offsets: &mut Offsets, count: usize) -> Vec<Extent> {
        std::iter::from_fn(|| offsets.next_extent())
            .take(count)
            .collect()
    }

    #[test]
    fn sequential_wraps_before_crossing_the_end() {
        let mut offsets = Offsets::new(Workload::Read, 4, 10, 1);
        let lbas: Vec<u64> = take(&mut offsets, 5).iter().map(|e| e.lba).collect();
        assert_eq!(lbas, [0, 4, 0, 4, 0]);
    }

    #[test]
    fn a_single_pass_covers_every_block_once() {
        let mut offsets = Offsets::new(Workload::Verify, 4, 10, 1);
        let extents = take(&mut offsets, 10);
        assert_eq!(
            extents,
            [
                Extent { lba: 0, blocks: 4 },
                Extent { lba: 4, blocks: 4 },
                Extent { lba: 8, blocks: 2 }
            ]
        );
    }

    #[test]
    fn random_extents_are_aligned_in_range_and_spread() {
        let mut offsets = Offsets::new(Workload::RandRead, 8, 8 * 16 + 3, 42);
        let mut seen = [0u32; 16];
        for extent in take(&mut offsets, 16_000) {
            assert_eq!(extent.lba % 8, 0);
            seen[(extent.lba / 8) as usize] += 1;
        }
        assert!(seen.iter().all(|&n| (800..1200).contains(&n)), "{seen:?}");
    }

    #[test]
    fn the_same_seed_gives_the_same_offsets() {
        let mut a = Offsets::new(Workload::RandWrite, 1, 1000, 7);
        let mut b = Offsets::new(Workload::RandWrite, 1, 1000, 7);
        assert_eq!(take(&mut a, 100), take(&mut b, 100));
    }
}
