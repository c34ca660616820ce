//! The NVMe/TCP transport (NVMe/TCP Transport Specification 1.0).
//!
//! - [`pdu`]: PDU headers, typed decode with validation (errors map to TermReq FES/FEI), and
//!   encoders writing into caller buffers; both directions, so our initiator shares the code.
//! - [`digest`]: CRC32C header and data digests, incremental.
//! - [`framing`]: [`PduReader`], which cuts the received stream into PDUs and lets the data of a
//!   PDU land directly in the caller's (DMA) buffer.

#![forbid(unsafe_code)]

pub mod digest;
pub mod framing;
pub mod pdu;

pub use framing::{PduReader, ReadEvent};
pub use pdu::{
    DataDigestMismatch, DecodeConfig, EncodeConfig, PduError, PduHeader, PduLayout, Role,
};
