//! The textual key representations `nvme gen-dhchap-key` and `nvme gen-tls-key` print:
//! `<PREFIX>:<NN>:<base64 of key || CRC-32 of key, little-endian>:`.

use base64::alphabet;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use base64::Engine;
use zeroize::Zeroizing;

/// Standard base64; padding written, and accepted present or absent (Linux's and SPDK's
/// decoders take both).
const BASE64: GeneralPurpose = GeneralPurpose::new(
    &alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// Why a key representation was refused. The messages never contain key material.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum KeyFormatError {
    #[error("the key does not start with `{expected}:` (generate one with `{tool}`)")]
    Prefix {
        expected: &'static str,
        tool: &'static str,
    },
    #[error("the key's hash indicator `{found}` is not one of {allowed} (the two digits after `{prefix}:`)")]
    Indicator {
        found: String,
        allowed: &'static str,
        prefix: &'static str,
    },
    #[error("the key is not valid base64; copy it again exactly as `{tool}` printed it")]
    Base64 { tool: &'static str },
    #[error("the key decodes to {found} bytes; {expected}")]
    Length {
        found: usize,
        expected: &'static str,
    },
    #[error("the key's CRC-32 does not match its bytes: the key was mistyped or cut short")]
    Crc,
}

/// What a representation looks like.
pub(crate) struct Format {
    pub prefix: &'static str,
    pub tool: &'static str,
    /// The indicators allowed, for the message.
    pub allowed: &'static str,
    /// The key lengths allowed, and how to say so.
    pub key_lens: &'static [usize],
    pub lengths: &'static str,
}

/// Splits `text` (surrounding white space ignored) into its indicator and the key bytes,
/// checking the CRC. The trailing `:` may be missing, as Linux accepts.
pub(crate) fn decode(
    format: &Format,
    text: &str,
) -> Result<(u8, Zeroizing<Vec<u8>>), KeyFormatError> {
    let text = text.trim();
    let rest = text
        .strip_prefix(format.prefix)
        .and_then(|r| r.strip_prefix(':'))
        .ok_or(KeyFormatError::Prefix {
            expected: format.prefix,
            tool: format.tool,
        })?;
    let indicator_error = |found: &str| KeyFormatError::Indicator {
        found: found.chars().take(2).collect(),
        allowed: format.allowed,
        prefix: format.prefix,
    };
    let (indicator, encoded) = rest.split_once(':').ok_or_else(|| indicator_error(rest))?;
    if indicator.len() != 2 || !indicator.bytes().all(|b| b.is_ascii_digit()) {
        return Err(indicator_error(indicator));
    }
    let indicator: u8 = indicator.parse().map_err(|_| indicator_error(indicator))?;
    let encoded = encoded.strip_suffix(':').unwrap_or(encoded);
    let decoded = Zeroizing::new(
        BASE64
            .decode(encoded)
            .map_err(|_| KeyFormatError::Base64 { tool: format.tool })?,
    );
    let key_len = decoded.len().saturating_sub(4);
    if decoded.len() < 4 || !format.key_lens.contains(&key_len) {
        return Err(KeyFormatError::Length {
            found: decoded.len(),
            expected: format.lengths,
        });
    }
    let (key, crc) = decoded.split_at(key_len);
    if crc32fast::hash(key).to_le_bytes() != crc {
        return Err(KeyFormatError::Crc);
    }
    Ok((indicator, Zeroizing::new(key.to_vec())))
}

/// The representation of `key` with `indicator`.
pub(crate) fn encode(format: &Format, indicator: u8, key: &[u8]) -> Zeroizing<String> {
    let mut raw = Zeroizing::new(Vec::with_capacity(key.len() + 4));
    raw.extend_from_slice(key);
    raw.extend_from_slice(&crc32fast::hash(key).to_le_bytes());
    let mut text = Zeroizing::new(String::with_capacity(
        format.prefix.len() + 8 + raw.len() * 2,
    ));
    text.push_str(format.prefix);
    text.push_str(&format!(":{indicator:02}:"));
    BASE64.encode_string(raw.as_slice(), &mut text);
    text.push(':');
    text
}
