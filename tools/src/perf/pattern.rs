//! The data pattern `perf -w verify` writes and checks, and `vfnvme pattern` prints.
//!
//! Logical block `lba` of `block_size` bytes, under seed `seed`, is `block_size / 8`
//! little-endian u64 words; word `i` is
//!
//! ```text
//! lba.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ seed.rotate_left(17) ^ (i as u64).wrapping_mul(0xD6E8_FEB8_6659_FD93)
//! ```
//!
//! Every block differs from every other and from itself shifted by a word, so data written to
//! or read from the wrong LBA, or misplaced inside a transfer, does not pass as correct.

const LBA_MULTIPLIER: u64 = 0x9E37_79B9_7F4A_7C15;
const WORD_MULTIPLIER: u64 = 0xD6E8_FEB8_6659_FD93;
const WORD_BYTES: usize = 8;

/// Word `index` of block `lba`.
pub fn word(lba: u64, seed: u64, index: usize) -> u64 {
    lba.wrapping_mul(LBA_MULTIPLIER)
        ^ seed.rotate_left(17)
        ^ (index as u64).wrapping_mul(WORD_MULTIPLIER)
}

/// Fills `out` (whole blocks of `block_size` bytes) with the pattern of the blocks starting at
/// `start_lba`.
pub fn fill(out: &mut [u8], start_lba: u64, block_size: usize, seed: u64) {
    for (block, data) in out.chunks_exact_mut(block_size).enumerate() {
        let lba = start_lba + block as u64;
        for (index, bytes) in data.chunks_exact_mut(WORD_BYTES).enumerate() {
            bytes.copy_from_slice(&word(lba, seed, index).to_le_bytes());
        }
    }
}

/// The first difference between data and the pattern.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Mismatch {
    pub lba: u64,
    /// Byte offset of the differing word inside its block.
    pub offset: usize,
    pub expected: u64,
    pub found: u64,
}

/// What checking a transfer against the pattern found.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CheckResult {
    /// Blocks with at least one wrong word.
    pub bad_blocks: u64,
    pub first: Option<Mismatch>,
}

/// Checks `data` (whole blocks) against the pattern of the blocks starting at `start_lba`.
pub fn check(data: &[u8], start_lba: u64, block_size: usize, seed: u64) -> CheckResult {
    let mut result = CheckResult::default();
    for (block, block_data) in data.chunks_exact(block_size).enumerate() {
        let lba = start_lba + block as u64;
        let mismatch =
            block_data
                .chunks_exact(WORD_BYTES)
                .enumerate()
                .find_map(|(index, bytes)| {
                    let found = u64::from_le_bytes(bytes.try_into().expect("chunks of 8 bytes"));
                    let expected = word(lba, seed, index);
                    (found != expected).then_some(Mismatch {
                        lba,
                        offset: index * WORD_BYTES,
                        expected,
                        found,
                    })
                });
        if let Some(mismatch) = mismatch {
            result.bad_blocks += 1;
            result.first.get_or_insert(mismatch);
        }
    }
    result
}

/// Whether blocks of `block_size` bytes hold whole pattern words.
pub fn fits_block_size(block_size: usize) -> bool {
    block_size > 0 && block_size.is_multiple_of(WORD_BYTES)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_known_word() {
        // lba 3, seed 1, word 2: 0xDAA6_6D2C_7DDF_743F ^ 0x2_0000 ^ 0xADD1_FD70_CCB3_FB26,
        // worked out independently of the code.
        assert_eq!(word(3, 1, 2), 0x7777_905C_B16E_8F19);
        assert_eq!(word(0, 0, 0), 0);
    }

    #[test]
    fn fill_is_little_endian_words() {
        let mut block = [0u8; 512];
        fill(&mut block, 7, 512, 1);
        assert_eq!(block[..8], word(7, 1, 0).to_le_bytes());
        assert_eq!(block[504..], word(7, 1, 63).to_le_bytes());
    }

    #[test]
    fn check_accepts_the_pattern_and_finds_a_flipped_bit() {
        let mut data = vec![0u8; 4 * 512];
        fill(&mut data, 100, 512, 9);
        assert_eq!(check(&data, 100, 512, 9), CheckResult::default());
        data[512 + 17] ^= 0x10;
        let result = check(&data, 100, 512, 9);
        assert_eq!(result.bad_blocks, 1);
        let first = result.first.unwrap();
        assert_eq!((first.lba, first.offset), (101, 16));
        assert_eq!(first.expected ^ first.found, 0x10 << 8);
    }

    #[test]
    fn data_of_another_lba_or_seed_does_not_pass() {
        let mut data = vec![0u8; 512];
        fill(&mut data, 5, 512, 1);
        assert_eq!(check(&data, 6, 512, 1).bad_blocks, 1);
        assert_eq!(check(&data, 5, 512, 2).bad_blocks, 1);
    }
}
