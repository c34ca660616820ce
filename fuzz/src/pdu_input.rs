//! The `pdu` target's input: a settings byte, a chunking seed byte, then the received stream.
//!
//! Settings bits: 0 the receiver (0: a controller, reading what hosts send; 1: a host),
//! 1 header digests, 2 data digests, 3 negotiation (the reader starts with
//! [`DecodeConfig::initial`] and takes the settings after the first ICReq/ICResp, as a
//! connection does), 4-5 the data alignment (PDA 0, 1, 3 or 31), 6 a receive buffer of the
//! smallest allowed size instead of 64 KiB, 7 data read straight into the caller's buffer
//! (`data_received_directly`) instead of only through `copy_buffered_data`.

use vfnvme_tcp::framing::MIN_RECV_BUFFER_LEN;
use vfnvme_tcp::{DecodeConfig, EncodeConfig, Role};

/// In-capsule data a controller under test accepts (the target's default).
pub const MAX_IN_CAPSULE_DATA: u32 = 8192;
/// Data in one H2CData/C2HData PDU accepted (a MAXH2CDATA).
pub const MAX_DATA_PDU_LEN: u32 = 16384;
const PDA_CHOICES: [u8; 4] = [0, 1, 3, 31];
/// Room for several PDUs per read, as a connection's buffer has.
const LARGE_BUFFER: usize = 16 * 1024;

const RECEIVER_IS_HOST: u8 = 1 << 0;
const HEADER_DIGEST: u8 = 1 << 1;
const DATA_DIGEST: u8 = 1 << 2;
const NEGOTIATE: u8 = 1 << 3;
const PDA_SHIFT: u8 = 4;
const SMALL_BUFFER: u8 = 1 << 6;
const DIRECT_DATA: u8 = 1 << 7;

/// A decoded `pdu` input.
#[derive(Clone, Copy, Debug)]
pub struct PduInput<'a> {
    /// The rules once the connection is set up.
    pub config: DecodeConfig,
    pub negotiate: bool,
    pub buffer_len: usize,
    pub direct_data: bool,
    pub chunk_seed: u8,
    pub stream: &'a [u8],
}

impl<'a> PduInput<'a> {
    pub fn parse(data: &'a [u8]) -> Option<Self> {
        let [settings, chunk_seed, stream @ ..] = data else {
            return None;
        };
        let local_role = if settings & RECEIVER_IS_HOST != 0 {
            Role::Host
        } else {
            Role::Controller
        };
        Some(Self {
            config: DecodeConfig {
                local_role,
                header_digest: settings & HEADER_DIGEST != 0,
                data_digest: settings & DATA_DIGEST != 0,
                pda: PDA_CHOICES[usize::from(settings >> PDA_SHIFT & 3)],
                max_in_capsule_data: MAX_IN_CAPSULE_DATA,
                max_data_pdu_len: MAX_DATA_PDU_LEN,
            },
            negotiate: settings & NEGOTIATE != 0,
            buffer_len: if settings & SMALL_BUFFER != 0 {
                MIN_RECV_BUFFER_LEN
            } else {
                LARGE_BUFFER
            },
            direct_data: settings & DIRECT_DATA != 0,
            chunk_seed: *chunk_seed,
            stream,
        })
    }

    /// How the sender framed what this input's receiver accepts.
    pub fn encode_config(&self) -> EncodeConfig {
        encode_config(&self.config)
    }
}

/// The sender's side of `config`.
pub fn encode_config(config: &DecodeConfig) -> EncodeConfig {
    EncodeConfig {
        header_digest: config.header_digest,
        data_digest: config.data_digest,
        pda: config.pda,
    }
}

/// The settings byte of an input whose receiver is `receiver`, with the digests given, PDA
/// choice `pda_choice` (0..4) and the framing options.
pub fn settings_byte(
    receiver: Role,
    header_digest: bool,
    data_digest: bool,
    negotiate: bool,
    pda_choice: u8,
    small_buffer: bool,
    direct_data: bool,
) -> u8 {
    let bit = |on: bool, mask: u8| if on { mask } else { 0 };
    bit(receiver == Role::Host, RECEIVER_IS_HOST)
        | bit(header_digest, HEADER_DIGEST)
        | bit(data_digest, DATA_DIGEST)
        | bit(negotiate, NEGOTIATE)
        | (pda_choice & 3) << PDA_SHIFT
        | bit(small_buffer, SMALL_BUFFER)
        | bit(direct_data, DIRECT_DATA)
}
