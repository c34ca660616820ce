//! Fixed-size string fields of the wire formats: Serial Number, Model Number and firmware
//! revisions (ASCII, space padded), NQNs (NUL padded), and the discovery log's transport
//! addresses. Their own file because Identify, log pages, Connect data and the discovery log
//! all hold them: one definition of padding and trimming for all.

use std::fmt;

use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout, Unaligned};

/// `N` bytes of text, padded at the end with spaces or NULs.
#[repr(transparent)]
#[derive(Clone, Copy, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned)]
pub struct PaddedString<const N: usize>(pub [u8; N]);

impl<const N: usize> PaddedString<N> {
    /// `text` filled up with spaces, truncated to `N` bytes.
    pub fn space_padded(text: &str) -> Self {
        Self::padded(text, b' ')
    }

    /// `text` filled up with NULs, truncated to `N` bytes.
    pub fn nul_padded(text: &str) -> Self {
        Self::padded(text, 0)
    }

    fn padded(text: &str, pad: u8) -> Self {
        let mut field = [pad; N];
        let len = text.len().min(N);
        field[..len].copy_from_slice(&text.as_bytes()[..len]);
        Self(field)
    }

    /// The text without its trailing spaces and NULs.
    pub fn trimmed(&self) -> &[u8] {
        let end = self
            .0
            .iter()
            .rposition(|&b| b != b' ' && b != 0)
            .map_or(0, |i| i + 1);
        &self.0[..end]
    }
}

impl<const N: usize> Default for PaddedString<N> {
    fn default() -> Self {
        Self([0; N])
    }
}

/// Whether the trimmed text is `text`.
impl<const N: usize> PartialEq<&str> for PaddedString<N> {
    fn eq(&self, text: &&str) -> bool {
        self.trimmed() == text.as_bytes()
    }
}

/// The trimmed text, invalid UTF-8 replaced.
impl<const N: usize> fmt::Display for PaddedString<N> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&String::from_utf8_lossy(self.trimmed()))
    }
}

impl<const N: usize> fmt::Debug for PaddedString<N> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", String::from_utf8_lossy(self.trimmed()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pads_truncates_and_trims() {
        assert_eq!(&PaddedString::<6>::space_padded("ab").0, b"ab    ");
        assert_eq!(&PaddedString::<4>::nul_padded("ab").0, b"ab\0\0");
        assert_eq!(&PaddedString::<3>::space_padded("abcdef").0, b"abc");
        let mixed = PaddedString(*b" a b \0 \0");
        assert_eq!(mixed.trimmed(), b" a b");
        assert_eq!(mixed.to_string(), " a b");
        assert_eq!(mixed, " a b");
        assert_eq!(PaddedString::<4>::default().to_string(), "");
    }
}
