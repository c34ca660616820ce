//! NVMe in-band authentication (NVMe Base Specification 2.0, "Authentication", TP 8006):
//! the Authentication Send / Authentication Receive Fabrics commands and the DH-HMAC-CHAP
//! messages they carry, as wire layouts, decoded forms and encoders.
//!
//! Checked against Linux `include/linux/nvme.h` (`struct nvmf_auth_*`) and SPDK
//! `include/spdk/nvmf_spec.h` (`struct spdk_nvmf_auth_*`, `spdk_nvmf_dhchap_*`): the same
//! sizes (negotiate header 8, protocol descriptor 64, challenge / reply / success1 / success2
//! headers 16, failure 8) and values. Decoding refuses what SPDK's target refuses, with the
//! AUTH_Failure reason code explanation it answers ([`FailureReason`]).

mod message;
mod wire;

pub use message::{
    Challenge, DhchapProtocol, Failure, Message, Negotiate, Reply, Success1, Success2,
};
pub use wire::*;
