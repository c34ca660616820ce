//! Typed PDU headers to bytes, written into the caller's buffer: the common header and the
//! PDU-specific header through the wire layouts of `vfnvme_spec::tcp`, then header digest and
//! pad. The data itself is the caller's to send from its own buffers (or copied in, for small
//! PDUs, by [`PduHeader::encode`]). Nothing here allocates: it runs for every PDU sent.

use thiserror::Error;
use vfnvme_spec::tcp::{self as wire, dgst, flags};
use vfnvme_spec::{Command, Completion};
use zerocopy::little_endian::{U16, U32};
use zerocopy::{Immutable, IntoBytes};

use super::types::{
    digest_len, C2HData, EncodeConfig, H2CData, ICReq, ICResp, Payload, PduHeader, PduLayout,
    PduType, Role, TermReq, MAX_PDA, R2T, TERM_REQ_MAX_DATA_LEN,
};
use crate::digest::{self, Crc32c, DIGEST_LEN};

/// A PDU could not be encoded.
#[derive(Clone, Copy, Debug, Error, PartialEq, Eq)]
pub enum EncodeError {
    #[error("output buffer too small: {needed} bytes needed, {available} available")]
    BufferTooSmall { needed: usize, available: usize },
    #[error("{pdu_type:?} cannot carry {data_len} bytes of data")]
    InvalidDataLength { pdu_type: PduType, data_len: usize },
}

fn ensure_len(out: &[u8], needed: usize) -> Result<(), EncodeError> {
    if out.len() < needed {
        Err(EncodeError::BufferTooSmall {
            needed,
            available: out.len(),
        })
    } else {
        Ok(())
    }
}

impl PduHeader {
    /// The layout of this PDU when it carries `data_len` bytes of data.
    pub fn layout(&self, config: &EncodeConfig, data_len: usize) -> Result<PduLayout, EncodeError> {
        let pdu_type = self.pdu_type();
        let bad_len = EncodeError::InvalidDataLength { pdu_type, data_len };
        let datal_matches = |datal: u32| datal as usize == data_len && data_len > 0;
        let data_allowed = match self {
            Self::ICReq(_) | Self::ICResp(_) | Self::CapsuleResp(_) | Self::R2T(_) => data_len == 0,
            Self::H2CTermReq(_) | Self::C2HTermReq(_) => data_len <= TERM_REQ_MAX_DATA_LEN,
            Self::CapsuleCmd(_) => true,
            Self::H2CData(h) => datal_matches(h.datal),
            Self::C2HData(c) => datal_matches(c.datal),
        };
        if !data_allowed {
            return Err(bad_len);
        }
        let hlen = pdu_type.header_len();
        let digests = pdu_type.may_carry_digests();
        let header_digest = digests && config.header_digest;
        let header_len = hlen + digest_len(header_digest);
        let (data_offset, data_digest) = match pdu_type.payload() {
            Payload::TermReqData => (hlen, false),
            _ if data_len == 0 => (header_len, false),
            _ => {
                let alignment = (usize::from(config.pda.min(MAX_PDA)) + 1) * 4;
                (
                    header_len.next_multiple_of(alignment),
                    digests && config.data_digest,
                )
            }
        };
        let plen = data_offset
            .checked_add(data_len)
            .and_then(|len| len.checked_add(digest_len(data_digest)))
            .filter(|&len| u32::try_from(len).is_ok())
            .ok_or(bad_len)?;
        Ok(PduLayout {
            pdu_type,
            hlen,
            header_digest,
            data_offset,
            data_len,
            data_digest,
            plen,
        })
    }

    /// Writes everything before the data: common header, PDU-specific header, header digest and
    /// pad, for a PDU carrying `data_len` bytes of data. Returns the layout; the bytes written
    /// are `out[..layout.data_offset]`. The data (straight from its buffers, e.g. with a
    /// vectored write) and then the data digest (see [`Crc32c`]) are the caller's to send.
    pub fn encode_header(
        &self,
        config: &EncodeConfig,
        data_len: usize,
        out: &mut [u8],
    ) -> Result<PduLayout, EncodeError> {
        let layout = self.layout(config, data_len)?;
        ensure_len(out, layout.data_offset)?;
        let out = &mut out[..layout.data_offset];
        let has_data = layout.data_len > 0 && layout.pdu_type.payload() != Payload::TermReqData;
        let common = wire::CommonHeader {
            pdu_type: layout.pdu_type as u8,
            flags: self.flags(&layout),
            hlen: layout.hlen as u8,
            pdo: if has_data {
                layout.data_offset as u8
            } else {
                0
            },
            plen: U32::new(layout.plen as u32),
        };
        match self {
            Self::ICReq(ic) => put(
                out,
                wire::ICReqHeader {
                    common,
                    pfv: U16::new(ic.pfv),
                    hpda: ic.hpda,
                    dgst: dgst_bits(ic.header_digest, ic.data_digest),
                    maxr2t: U32::new(ic.maxr2t),
                    reserved: [0; 112],
                },
            ),
            Self::ICResp(ic) => put(
                out,
                wire::ICRespHeader {
                    common,
                    pfv: U16::new(ic.pfv),
                    cpda: ic.cpda,
                    dgst: dgst_bits(ic.header_digest, ic.data_digest),
                    maxh2cdata: U32::new(ic.maxh2cdata),
                    reserved: [0; 112],
                },
            ),
            Self::H2CTermReq(term) | Self::C2HTermReq(term) => put(
                out,
                wire::TermReqHeader {
                    common,
                    fes: U16::new(term.fes),
                    fei: U32::new(term.fei),
                    reserved: [0; 10],
                },
            ),
            Self::CapsuleCmd(command) => put(
                out,
                wire::CapsuleCmdHeader {
                    common,
                    sqe: command.to_bytes(),
                },
            ),
            Self::CapsuleResp(completion) => put(
                out,
                wire::CapsuleRespHeader {
                    common,
                    cqe: completion.to_bytes(),
                },
            ),
            Self::H2CData(h2c) => put(
                out,
                wire::H2CDataHeader {
                    common,
                    cccid: U16::new(h2c.cccid),
                    ttag: U16::new(h2c.ttag),
                    datao: U32::new(h2c.datao),
                    datal: U32::new(h2c.datal),
                    reserved: [0; 4],
                },
            ),
            Self::C2HData(c2h) => put(
                out,
                wire::C2HDataHeader {
                    common,
                    cccid: U16::new(c2h.cccid),
                    reserved0: [0; 2],
                    datao: U32::new(c2h.datao),
                    datal: U32::new(c2h.datal),
                    reserved1: [0; 4],
                },
            ),
            Self::R2T(r2t) => put(
                out,
                wire::R2THeader {
                    common,
                    cccid: U16::new(r2t.cccid),
                    ttag: U16::new(r2t.ttag),
                    r2to: U32::new(r2t.r2to),
                    r2tl: U32::new(r2t.r2tl),
                    reserved: [0; 4],
                },
            ),
        }
        let (header, after) = out.split_at_mut(layout.hlen);
        after.fill(0);
        if layout.header_digest {
            after[..DIGEST_LEN].copy_from_slice(&digest::crc32c(header).to_le_bytes());
        }
        Ok(layout)
    }

    /// The common header's FLAGS: the digests `layout` has, and the data PDUs' own bits.
    fn flags(&self, layout: &PduLayout) -> u8 {
        let mut bits = 0;
        if layout.header_digest {
            bits |= flags::HDGSTF;
        }
        if layout.data_digest {
            bits |= flags::DDGSTF;
        }
        match self {
            Self::H2CData(H2CData { last: true, .. }) => bits |= flags::DATA_LAST,
            Self::C2HData(c2h) => {
                if c2h.last {
                    bits |= flags::DATA_LAST;
                }
                if c2h.success {
                    bits |= flags::DATA_SUCCESS;
                }
            }
            _ => {}
        }
        bits
    }

    /// Writes the whole PDU: header (see [`encode_header`](Self::encode_header)), the
    /// concatenation of `data`, and the data digest if negotiated. For small PDUs (in-capsule
    /// data, TermReq, tests); large data should be sent from its own buffers instead.
    /// Returns the number of bytes written (`plen`).
    pub fn encode(
        &self,
        config: &EncodeConfig,
        data: &[&[u8]],
        out: &mut [u8],
    ) -> Result<usize, EncodeError> {
        let data_len = data.iter().map(|slice| slice.len()).sum();
        let layout = self.layout(config, data_len)?;
        ensure_len(out, layout.plen)?;
        self.encode_header(config, data_len, out)?;
        let mut at = layout.data_offset;
        let mut crc = Crc32c::new();
        for slice in data {
            out[at..at + slice.len()].copy_from_slice(slice);
            crc.update(slice);
            at += slice.len();
        }
        if layout.data_digest {
            out[at..at + DIGEST_LEN].copy_from_slice(&crc.to_wire());
        }
        Ok(layout.plen)
    }
}

/// ICResp (controller → host).
pub fn encode_ic_resp(ic_resp: &ICResp, out: &mut [u8]) -> Result<usize, EncodeError> {
    PduHeader::ICResp(*ic_resp).encode(&EncodeConfig::default(), &[], out)
}

/// ICReq (host → controller).
pub fn encode_ic_req(ic_req: &ICReq, out: &mut [u8]) -> Result<usize, EncodeError> {
    PduHeader::ICReq(*ic_req).encode(&EncodeConfig::default(), &[], out)
}

/// A TermReq reporting `error`, carrying (up to 128 bytes of) the offending PDU header, sent by
/// `sender` (the controller sends C2HTermReq, the host H2CTermReq).
pub fn encode_term_req(
    sender: Role,
    term: &TermReq,
    offending_header: &[u8],
    out: &mut [u8],
) -> Result<usize, EncodeError> {
    let header = match sender {
        Role::Controller => PduHeader::C2HTermReq(*term),
        Role::Host => PduHeader::H2CTermReq(*term),
    };
    let data = &offending_header[..offending_header.len().min(TERM_REQ_MAX_DATA_LEN)];
    header.encode(&EncodeConfig::default(), &[data], out)
}

/// CapsuleResp carrying `completion` (controller → host).
pub fn encode_capsule_resp(
    config: &EncodeConfig,
    completion: &Completion,
    out: &mut [u8],
) -> Result<usize, EncodeError> {
    PduHeader::CapsuleResp(*completion).encode(config, &[], out)
}

/// R2T (controller → host).
pub fn encode_r2t(config: &EncodeConfig, r2t: &R2T, out: &mut [u8]) -> Result<usize, EncodeError> {
    PduHeader::R2T(*r2t).encode(config, &[], out)
}

/// The part of a C2HData PDU before its data (controller → host). Send the data from the DMA
/// buffer next, then, if `layout.data_digest`, [`data_digest`] of that data.
pub fn encode_c2h_data_header(
    config: &EncodeConfig,
    c2h: &C2HData,
    out: &mut [u8],
) -> Result<PduLayout, EncodeError> {
    PduHeader::C2HData(*c2h).encode_header(config, c2h.datal as usize, out)
}

/// The part of an H2CData PDU before its data (host → controller); as
/// [`encode_c2h_data_header`].
pub fn encode_h2c_data_header(
    config: &EncodeConfig,
    h2c: &H2CData,
    out: &mut [u8],
) -> Result<PduLayout, EncodeError> {
    PduHeader::H2CData(*h2c).encode_header(config, h2c.datal as usize, out)
}

/// A whole CapsuleCmd with optional in-capsule data (host → controller).
pub fn encode_capsule_cmd(
    config: &EncodeConfig,
    command: &Command,
    in_capsule_data: &[u8],
    out: &mut [u8],
) -> Result<usize, EncodeError> {
    PduHeader::CapsuleCmd(*command).encode(config, &[in_capsule_data], out)
}

/// The data digest trailer of data spread over `slices`.
pub fn data_digest(slices: &[&[u8]]) -> [u8; DIGEST_LEN] {
    digest::crc32c_of(slices).to_le_bytes()
}

/// Writes `header` at the start of `out`, which [`ensure_len`] made long enough.
fn put<T: IntoBytes + Immutable>(out: &mut [u8], header: T) {
    header
        .write_to_prefix(out)
        .expect("the buffer was checked to hold the header");
}

/// ICReq/ICResp DGST: the digests asked for or granted.
const fn dgst_bits(header_digest: bool, data_digest: bool) -> u8 {
    (if header_digest { dgst::HEADER } else { 0 }) | (if data_digest { dgst::DATA } else { 0 })
}

#[cfg(test)]
mod tests {
    use super::super::test_support::*;
    use super::*;

    fn all_headers() -> Vec<(PduHeader, Vec<u8>)> {
        let data: Vec<u8> = (0..4096u32).map(|i| (i * 13) as u8).collect();
        vec![
            (
                PduHeader::ICReq(ICReq {
                    pfv: 0,
                    hpda: 3,
                    header_digest: true,
                    data_digest: false,
                    maxr2t: 15,
                }),
                vec![],
            ),
            (
                PduHeader::ICResp(ICResp {
                    pfv: 0,
                    cpda: 31,
                    header_digest: false,
                    data_digest: true,
                    maxh2cdata: 131_072,
                }),
                vec![],
            ),
            (
                PduHeader::H2CTermReq(TermReq { fes: 2, fei: 0 }),
                vec![0xab; 24],
            ),
            (
                PduHeader::C2HTermReq(TermReq { fes: 1, fei: 16 }),
                vec![0xcd; 128],
            ),
            (PduHeader::C2HTermReq(TermReq { fes: 3, fei: 0 }), vec![]),
            (PduHeader::CapsuleCmd(sample_command()), vec![]),
            (PduHeader::CapsuleCmd(sample_command()), data.clone()),
            (PduHeader::CapsuleResp(sample_completion()), vec![]),
            (
                PduHeader::H2CData(H2CData {
                    cccid: 9,
                    ttag: 0x77,
                    datao: 8192,
                    datal: 4096,
                    last: true,
                }),
                data.clone(),
            ),
            (
                PduHeader::C2HData(C2HData {
                    cccid: 9,
                    datao: 0,
                    datal: 4096,
                    last: true,
                    success: true,
                }),
                data.clone(),
            ),
            (
                PduHeader::C2HData(C2HData {
                    cccid: 10,
                    datao: 4096,
                    datal: 100,
                    last: false,
                    success: false,
                }),
                data[..100].to_vec(),
            ),
            (
                PduHeader::R2T(R2T {
                    cccid: 5,
                    ttag: 1,
                    r2to: 4096,
                    r2tl: 65536,
                }),
                vec![],
            ),
        ]
    }

    #[test]
    fn every_pdu_type_round_trips() {
        for header_digest in [false, true] {
            for data_digest in [false, true] {
                for pda in [0, 1, 7] {
                    let encode_config = EncodeConfig {
                        header_digest,
                        data_digest,
                        pda,
                    };
                    for (header, data) in all_headers() {
                        let receiver = match header.pdu_type().sender() {
                            Role::Host => Role::Controller,
                            Role::Controller => Role::Host,
                        };
                        let mut config = decode_config(receiver, header_digest, data_digest);
                        config.pda = pda;
                        let bytes = encode(header, &encode_config, &data);
                        let (decoded, layout) = decode(&bytes, &config)
                            .unwrap_or_else(|e| panic!("{header:?} with {encode_config:?}: {e}"));
                        assert_eq!(decoded, header);
                        assert_eq!(layout.plen, bytes.len());
                        assert_eq!(layout.data_len, data.len());
                        let data_at = &bytes[layout.data_offset..][..layout.data_len];
                        assert_eq!(data_at, &data[..]);
                        if layout.data_digest {
                            let trailer = &bytes[layout.data_offset + layout.data_len..];
                            assert_eq!(trailer, super::data_digest(&[&data]));
                        }
                        if layout.data_len > 0 && header.pdu_type().may_carry_digests() {
                            assert_eq!(layout.data_offset % ((usize::from(pda) + 1) * 4), 0);
                        }
                    }
                }
            }
        }
    }

    /// The bytes of a CapsuleResp with header digest, written out by hand: the common header,
    /// the CQE, and the CRC32C of those 24 bytes little-endian, as Linux's `nvme_tcp_hdgst`
    /// writes it (see the `digest` module).
    #[test]
    fn capsule_resp_wire_bytes() {
        let config = EncodeConfig {
            header_digest: true,
            data_digest: true,
            pda: 0,
        };
        let mut out = [0u8; 64];
        let len = encode_capsule_resp(&config, &sample_completion(), &mut out).unwrap();
        assert_eq!(len, 28);
        assert_eq!(out[..8], [0x05, 0x01, 24, 0, 28, 0, 0, 0]);
        assert_eq!(out[8..24], sample_completion().to_bytes());
        let crc = digest::crc32c(&out[..24]);
        assert_eq!(out[24..28], crc.to_le_bytes());
    }

    /// C2HData carrying "123456789" ends with the CRC32C check value 0xE3069283, least
    /// significant byte first.
    #[test]
    fn data_digest_test_vector() {
        let config = EncodeConfig {
            header_digest: false,
            data_digest: true,
            pda: 0,
        };
        let c2h = PduHeader::C2HData(C2HData {
            cccid: 1,
            datao: 0,
            datal: 9,
            last: true,
            success: false,
        });
        let bytes = encode(c2h, &config, b"123456789");
        assert_eq!(bytes.len(), 24 + 9 + 4);
        assert_eq!(bytes[..8], [0x07, 0x06, 24, 24, 37, 0, 0, 0]);
        assert_eq!(bytes[33..], [0x83, 0x92, 0x06, 0xe3]);
        assert_eq!(data_digest(&[b"1234", b"56789"]), [0x83, 0x92, 0x06, 0xe3]);
    }

    #[test]
    fn split_header_encoding_matches_whole_encoding() {
        let config = EncodeConfig {
            header_digest: true,
            data_digest: true,
            pda: 3,
        };
        let data = [7u8; 600];
        let c2h = C2HData {
            cccid: 3,
            datao: 0,
            datal: 600,
            last: true,
            success: true,
        };
        let whole = encode(PduHeader::C2HData(c2h), &config, &data);
        let mut header = [0u8; 64];
        let layout = encode_c2h_data_header(&config, &c2h, &mut header).unwrap();
        assert_eq!(layout.data_offset, 32, "24 + 4 digest, aligned to 16");
        let mut assembled = header[..layout.data_offset].to_vec();
        assembled.extend_from_slice(&data);
        assembled.extend_from_slice(&data_digest(&[&data[..100], &data[100..]]));
        assert_eq!(assembled, whole);
    }

    #[test]
    fn encoders_refuse_short_buffers_and_bad_lengths() {
        let config = EncodeConfig::default();
        let mut small = [0u8; 20];
        assert_eq!(
            encode_capsule_resp(&config, &sample_completion(), &mut small),
            Err(EncodeError::BufferTooSmall {
                needed: 24,
                available: 20
            })
        );
        let mut out = [0u8; 256];
        let h2c = H2CData {
            datal: 10,
            ..H2CData::default()
        };
        assert_eq!(
            PduHeader::H2CData(h2c).encode(&config, &[&[0u8; 9]], &mut out),
            Err(EncodeError::InvalidDataLength {
                pdu_type: PduType::H2CData,
                data_len: 9
            })
        );
        assert!(PduHeader::R2T(R2T::default())
            .encode(&config, &[&[1u8]], &mut out)
            .is_err());
        let term = TermReq { fes: 1, fei: 2 };
        let len = encode_term_req(Role::Controller, &term, &[9u8; 200], &mut out).unwrap();
        assert_eq!(len, 24 + 128, "offending header truncated to 128 bytes");
    }
}
