//! The TLS parameters NVMe/TCP's secure channel uses on both sides (TP 8011): TLS 1.3 only,
//! one cipher suite, no certificates, no session tickets. The target's server context and the
//! initiator's client context both start from [`restrict`], so the two cannot drift apart.
//!
//! OpenSSL through the `openssl` crate (rustls has no external PSKs). The crate binds only the
//! legacy PSK callbacks, which OpenSSL serves in TLS 1.3 with TLS_AES_128_GCM_SHA256 alone.

use openssl::error::ErrorStack;
use openssl::ssl::{SslContextBuilder, SslMode, SslOptions, SslVersion};

/// The only cipher suite: OpenSSL's legacy PSK callbacks give TLS 1.3 no other.
pub const CIPHER_SUITE: &str = "TLS_AES_128_GCM_SHA256";

/// TLS 1.3 only, [`CIPHER_SUITE`] only, no tickets (as TP 8011 and SPDK).
pub fn restrict(builder: &mut SslContextBuilder) -> Result<(), ErrorStack> {
    builder.set_min_proto_version(Some(SslVersion::TLS1_3))?;
    builder.set_max_proto_version(Some(SslVersion::TLS1_3))?;
    builder.set_ciphersuites(CIPHER_SUITE)?;
    builder.set_options(SslOptions::NO_TICKET);
    // Writes may be partial and retried from a buffer that moved (a send buffer refilled
    // from a queue that still starts with the same bytes).
    builder.set_mode(SslMode::ENABLE_PARTIAL_WRITE | SslMode::ACCEPT_MOVING_WRITE_BUFFER);
    builder.set_num_tickets(0)?;
    Ok(())
}
