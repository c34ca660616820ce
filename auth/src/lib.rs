//! NVMe in-band authentication (DH-HMAC-CHAP, NVMe Base Specification 2.0 section 8.13) and
//! the NVMe/TCP TLS pre-shared key handling (TP 8011 / 8018): secrets and their textual
//! representations, the transformed keys, the challenge responses, FFDHE key exchange, the
//! PSK identity and derivations, reading secrets from files, and one queue's exchange as two
//! transport-free state machines ([`ControllerAuth`] for the target, [`HostAuth`] for the
//! initiator). The wire formats are `vfnvme_spec::auth`'s. See docs/authentication.md.
//!
//! Nothing here logs or prints a key: secret types wipe themselves when dropped and their
//! `Debug` shows lengths and hash functions only.

#![forbid(unsafe_code)]

mod chap;
mod controller;
mod dh;
mod ffdhe;
mod hash;
mod host;
mod nonce;
mod representation;
mod secret;
mod secret_file;
mod tls_context;
mod tls_psk;

pub use chap::{augmented_challenge, Transaction};
pub use controller::{ControllerAuth, ControllerPolicy, Received};
pub use dh::{DhError, DhGroupId, DhKeyPair};
pub use hash::{Digest, HashId, MAX_DIGEST_LEN};
pub use host::{HostAuth, HostAuthError};
pub use representation::KeyFormatError;
pub use secret::DhchapSecret;
pub use secret_file::{read_dhchap_secret, read_secret_file, read_tls_psk, SecretFileError};
pub use tls_context::{restrict as restrict_tls_context, CIPHER_SUITE as TLS_CIPHER_SUITE};
pub use tls_psk::{IdentityVersion, PskHash, TlsCredentials, TlsPsk};
