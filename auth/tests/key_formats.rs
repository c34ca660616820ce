//! Refused key representations say why without showing the key; secrets never print.

use vfnvme_auth::{DhchapSecret, HashId, KeyFormatError, PskHash, TlsPsk};

/// A valid 32-byte secret (bytes 0..32, SHA-256 transformation) as nvme-cli prints it
/// (base64 and CRC-32 computed with Python's base64 and zlib).
const SECRET: &str = "DHHC-1:01:AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh+KfiaR:";

#[test]
fn a_valid_secret_parses_with_or_without_its_trailing_colon_and_surrounding_space() {
    let secret = DhchapSecret::new(&(0..32).collect::<Vec<u8>>(), Some(HashId::Sha256)).unwrap();
    assert_eq!(secret.representation().as_str(), SECRET);
    for text in [
        SECRET,
        SECRET.trim_end_matches(':'),
        &format!("  {SECRET}\n"),
    ] {
        let parsed = DhchapSecret::parse(text).unwrap();
        assert_eq!(parsed.representation().as_str(), SECRET);
        assert_eq!(parsed.transform(), Some(HashId::Sha256));
    }
}

#[test]
fn a_wrong_crc_is_refused() {
    // One base64 digit of the key changed: the key no longer matches its CRC-32.
    let typo = SECRET.replacen("AAEC", "AAED", 1);
    assert_eq!(DhchapSecret::parse(&typo).unwrap_err(), KeyFormatError::Crc);
    assert_eq!(
        KeyFormatError::Crc.to_string(),
        "the key's CRC-32 does not match its bytes: the key was mistyped or cut short"
    );
}

#[test]
fn a_wrong_length_is_refused_with_the_lengths_allowed() {
    // 16 bytes of key and their CRC.
    let short = "DHHC-1:00:AAECAwQFBgcICQoLDA0OD4jizs4=:";
    let err = DhchapSecret::parse(short).unwrap_err();
    assert!(
        matches!(err, KeyFormatError::Length { found: 20, .. }),
        "{err:?}"
    );
    assert_eq!(
        err.to_string(),
        "the key decodes to 20 bytes; a DH-HMAC-CHAP secret is 32, 48 or 64 bytes followed by \
         its 4-byte CRC-32"
    );
    assert!(matches!(
        DhchapSecret::parse("DHHC-1:00:AAE=:").unwrap_err(),
        KeyFormatError::Length { found: 2, .. }
    ));
    assert!(DhchapSecret::new(&[0; 33], None).is_err());
    // A SHA-384 TLS key must be 48 bytes.
    assert!(TlsPsk::new(&[0; 32], Some(PskHash::Sha384)).is_err());
}

#[test]
fn a_wrong_prefix_indicator_or_base64_is_refused() {
    let err = DhchapSecret::parse("NVMeTLSkey-1:01:AAAA:").unwrap_err();
    assert_eq!(
        err.to_string(),
        "the key does not start with `DHHC-1:` (generate one with `nvme gen-dhchap-key`)"
    );
    assert_eq!(
        TlsPsk::parse(SECRET).unwrap_err().to_string(),
        "the key does not start with `NVMeTLSkey-1:` (generate one with `nvme gen-tls-key`)"
    );
    let err = DhchapSecret::parse(&SECRET.replacen(":01:", ":04:", 1)).unwrap_err();
    assert_eq!(
        err.to_string(),
        "the key's hash indicator `04` is not one of 00 (none), 01 (SHA-256), 02 (SHA-384) or \
         03 (SHA-512) (the two digits after `DHHC-1:`)"
    );
    assert!(matches!(
        DhchapSecret::parse(&SECRET.replacen(":01:", ":1:", 1)).unwrap_err(),
        KeyFormatError::Indicator { .. }
    ));
    assert_eq!(
        DhchapSecret::parse(&SECRET.replacen('A', "*", 1)).unwrap_err(),
        KeyFormatError::Base64 {
            tool: "nvme gen-dhchap-key"
        }
    );
    assert!(matches!(
        TlsPsk::parse("NVMeTLSkey-1:03:LFKHx3GLh/WxQ3Qix/hiXhgJO/Ixkvwbye6I1Ys3uH5JBiAx:")
            .unwrap_err(),
        KeyFormatError::Indicator { .. }
    ));
}

#[test]
fn secrets_do_not_print_their_keys() {
    let secret = DhchapSecret::parse(SECRET).unwrap();
    let shown = format!("{secret:?}");
    assert_eq!(
        shown,
        "DhchapSecret { key_len: 32, transform: Some(Sha256), .. }"
    );
    let transformed = secret.transformed("nqn.host");
    assert_eq!(format!("{transformed:?}"), "Digest(32 bytes)");
    let psk = TlsPsk::new(&[7; 48], None).unwrap();
    assert_eq!(
        format!("{psk:?}"),
        "TlsPsk { key_len: 48, transform: None, .. }"
    );
    // No error message carries the key's base64.
    let typo = SECRET.replacen("AAEC", "AAED", 1);
    let message = DhchapSecret::parse(&typo).unwrap_err().to_string();
    assert!(!message.contains("AAED"), "{message}");
}
