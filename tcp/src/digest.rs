//! CRC32C header and data digests.
//!
//! Wire format: the digest is the standard CRC32C (Castagnoli, reflected, initial value and final
//! XOR `0xffff_ffff`; the check value of `"123456789"` is `0xE306_9283`) stored little-endian.
//! Linux computes it as `put_unaligned_le32(~crc32c(~0, pdu, len), pdu + len)`: its `crc32c()`
//! is the raw register update without the pre/post inversion, so `~crc32c(~0, ..)` is exactly
//! the standard value, written least significant byte first. SPDK does the same
//! (`crc32c_update(.., ~0) ^ ~0`, then `MAKE_DIGEST_WORD`, little-endian). So "123456789"
//! travels as `83 92 06 e3`.

/// Length of a header or data digest on the wire.
pub const DIGEST_LEN: usize = 4;

/// A CRC32C computed incrementally, so that data arriving in pieces (socket reads straight into
/// a DMA buffer, or a C2HData payload made of several buffers) is digested as it passes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Crc32c(u32);

impl Crc32c {
    /// The digest of no bytes.
    pub const fn new() -> Self {
        Self(0)
    }

    /// Extends the digest with the next bytes of the stream.
    pub fn update(&mut self, bytes: &[u8]) {
        self.0 = crc32c::crc32c_append(self.0, bytes);
    }

    /// The digest of everything passed to [`update`](Self::update) so far.
    pub const fn value(self) -> u32 {
        self.0
    }

    /// The digest as its 4 bytes on the wire.
    pub const fn to_wire(self) -> [u8; DIGEST_LEN] {
        self.0.to_le_bytes()
    }
}

/// The CRC32C of `bytes`.
pub fn crc32c(bytes: &[u8]) -> u32 {
    crc32c::crc32c(bytes)
}

/// The CRC32C of the concatenation of `slices`, e.g. the data of one C2HData PDU spread over
/// several DMA buffers.
pub fn crc32c_of(slices: &[&[u8]]) -> u32 {
    let mut crc = Crc32c::new();
    for slice in slices {
        crc.update(slice);
    }
    crc.value()
}

/// The digest value carried by 4 wire bytes.
pub const fn from_wire(bytes: [u8; DIGEST_LEN]) -> u32 {
    u32::from_le_bytes(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn check_value_and_wire_bytes() {
        assert_eq!(crc32c(b"123456789"), 0xe306_9283);
        let mut crc = Crc32c::new();
        crc.update(b"123456789");
        assert_eq!(crc.to_wire(), [0x83, 0x92, 0x06, 0xe3]);
        assert_eq!(from_wire(crc.to_wire()), 0xe306_9283);
    }

    #[test]
    fn incremental_equals_one_shot() {
        let data: Vec<u8> = (0..10_000u32).map(|i| (i * 7 + 3) as u8).collect();
        let whole = crc32c(&data);
        for split in [0, 1, 3, 4096, 9999, 10_000] {
            let (a, b) = data.split_at(split);
            assert_eq!(crc32c_of(&[a, b]), whole, "split at {split}");
        }
        assert_eq!(Crc32c::new().value(), crc32c(b""));
    }

    /// A known NVMe/TCP header digest: an all-zero 72-byte CapsuleCmd header except its common
    /// header. Computed independently with the bit-by-bit reference algorithm below, so that a
    /// wrong polynomial, seed or final XOR in the accelerated path would show.
    #[test]
    fn matches_bitwise_reference() {
        fn reference(bytes: &[u8]) -> u32 {
            let mut crc = !0u32;
            for &byte in bytes {
                crc ^= u32::from(byte);
                for _ in 0..8 {
                    crc = if crc & 1 != 0 {
                        (crc >> 1) ^ 0x82f6_3b78
                    } else {
                        crc >> 1
                    };
                }
            }
            !crc
        }
        let mut header = [0u8; 72];
        header[..8].copy_from_slice(&[0x04, 0x01, 72, 0, 76, 0, 0, 0]);
        assert_eq!(crc32c(&header), reference(&header));
        assert_eq!(reference(b"123456789"), 0xe306_9283);
    }
}
