//! PDU header validation and decoding on arbitrary bytes, both receiving roles, digests and
//! alignments as the settings byte says (see `vfnvme_fuzz::pdu_input`), and `PduReader`
//! framing of the same stream cut into arbitrary chunks.
//!
//! Invariants: a validated layout is consistent with the common header; an error maps to a
//! defined FES (and an FEI inside the header); a decoded header encodes and decodes back to
//! itself; the reader's events do not depend on how the stream was cut; after an error the
//! reader repeats it.

#![no_main]
#![forbid(unsafe_code)]

use libfuzzer_sys::fuzz_target;
use vfnvme_fuzz::pdu_input::{encode_config, PduInput};
use vfnvme_fuzz::Rng;
use vfnvme_spec::tcp::fes;
use vfnvme_tcp::pdu::{decode_header, validate_common_header, CommonHeader, PduError, PduType};
use vfnvme_tcp::{DataDigestMismatch, DecodeConfig, PduHeader, PduLayout, PduReader, ReadEvent};
use zerocopy::FromBytes;

fuzz_target!(|data: &[u8]| {
    let Some(input) = PduInput::parse(data) else {
        return;
    };
    check_first_header(&input);
    let whole = read_stream(&input, None);
    let chunked = read_stream(&input, Some(Rng::new(input.chunk_seed)));
    assert_eq!(whole, chunked, "the reader's events depend on the chunking");
});

fn check_error(error: &PduError, hlen: usize) {
    let status = error.fatal_error_status();
    assert!(
        (fes::INVALID_HEADER_FIELD..=fes::UNSUPPORTED_PARAMETER).contains(&status),
        "{error} has FES {status}"
    );
    let term = error.term_req();
    assert_eq!((term.fes, term.fei), (status, error.field_offset()));
    if matches!(
        status,
        fes::INVALID_HEADER_FIELD | fes::UNSUPPORTED_PARAMETER
    ) {
        assert!(
            (error.field_offset() as usize) < hlen.max(8),
            "{error}: FEI outside the header"
        );
    } else {
        assert_eq!(error.field_offset(), 0, "{error}: FEI is reserved");
    }
}

/// The first PDU's header on its own, with the connection's final settings.
fn check_first_header(input: &PduInput<'_>) {
    let config = input.config;
    let Ok((common, _)) = CommonHeader::read_from_prefix(input.stream) else {
        return;
    };
    let layout = match validate_common_header(&common, &config) {
        Ok(layout) => layout,
        Err(error) => return check_error(&error, usize::from(common.hlen)),
    };
    check_layout(&layout, &common, &config);
    if input.stream.len() < layout.header_len() {
        return;
    }
    match decode_header(input.stream, &layout) {
        Ok(header) => check_round_trip(&header, &layout, &config),
        Err(error) => check_error(&error, layout.hlen),
    }
}

fn check_layout(layout: &PduLayout, common: &CommonHeader, config: &DecodeConfig) {
    assert_eq!(layout.pdu_type as u8, common.pdu_type);
    assert_ne!(layout.pdu_type.sender(), config.local_role);
    assert_eq!(layout.hlen, usize::from(common.hlen));
    assert_eq!(layout.hlen, layout.pdu_type.header_len());
    assert_eq!(layout.plen, common.plen.get() as usize);
    assert!(layout.data_offset >= layout.hlen);
    let digest = if layout.data_digest { 4 } else { 0 };
    if layout.data_len == 0 {
        assert_eq!(layout.plen, layout.data_offset);
    } else if matches!(layout.pdu_type, PduType::H2CTermReq | PduType::C2HTermReq) {
        assert_eq!(layout.plen, layout.hlen + layout.data_len);
    } else {
        assert!(layout.data_offset >= layout.header_len());
        assert_eq!(layout.plen, layout.data_offset + layout.data_len + digest);
        let max = if layout.pdu_type == PduType::CapsuleCmd {
            config.max_in_capsule_data
        } else {
            config.max_data_pdu_len
        };
        assert!(layout.data_len <= max as usize);
    }
}

/// A decoded header encodes (as the sender frames it) and decodes back to itself, with the
/// same amount of data.
fn check_round_trip(header: &PduHeader, layout: &PduLayout, config: &DecodeConfig) {
    let mut out = [0u8; 512];
    let encoded = header
        .encode_header(&encode_config(config), layout.data_len, &mut out)
        .unwrap_or_else(|e| panic!("{header:?} decoded but does not encode: {e}"));
    let (common, _) = CommonHeader::read_from_prefix(&out[..]).unwrap();
    let again = validate_common_header(&common, config)
        .unwrap_or_else(|e| panic!("encoded {header:?} does not validate: {e}"));
    assert_eq!(again, encoded);
    assert_eq!(
        (again.pdu_type, again.hlen, again.header_digest),
        (layout.pdu_type, layout.hlen, layout.header_digest)
    );
    assert_eq!(
        (again.data_len, again.data_digest),
        (layout.data_len, layout.data_digest)
    );
    let decoded = decode_header(&out[..again.data_offset], &again)
        .unwrap_or_else(|e| panic!("encoded {header:?} does not decode: {e}"));
    assert_eq!(&decoded, header);
}

/// What the reader produced, event by event; data as the bytes placed.
#[derive(Debug, PartialEq, Eq)]
enum Seen {
    Header(PduHeader, PduLayout),
    Data(Vec<u8>),
    DataComplete(Result<(), DataDigestMismatch>),
    Failed(PduError),
    /// The stream ended.
    End,
}

/// Feeds the stream to a reader: as much as the buffer takes at a time (`chunks` None), or in
/// chunks of 1 to 200 bytes. In the data phase, with `direct_data`, bytes not yet buffered go
/// straight to the destination as a connection reads them into a DMA buffer.
fn read_stream(input: &PduInput<'_>, mut chunks: Option<Rng>) -> Vec<Seen> {
    let initial = if input.negotiate {
        DecodeConfig::initial(input.config.local_role)
    } else {
        input.config
    };
    let mut reader = PduReader::new(initial, input.buffer_len);
    let mut rest = input.stream;
    let mut seen = Vec::new();
    let mut next_len = |available: usize| match &mut chunks {
        Some(rng) => rng.between_one_and(200).min(available),
        None => available,
    };
    let mut data = Vec::new();
    loop {
        match reader.poll() {
            Err(error) => {
                check_error(&error, 128);
                assert_eq!(reader.poll(), Err(error), "the reader forgot its error");
                seen.push(Seen::Failed(error));
                return seen;
            }
            Ok(ReadEvent::NeedMoreBytes) => {
                if rest.is_empty() {
                    seen.push(Seen::End);
                    return seen;
                }
                let buffer = reader.recv_buffer();
                assert!(!buffer.is_empty(), "no room for more header bytes");
                let len = next_len(buffer.len().min(rest.len()));
                buffer[..len].copy_from_slice(&rest[..len]);
                reader.commit_received(len);
                rest = &rest[len..];
            }
            Ok(ReadEvent::Header { header, layout }) => {
                if input.negotiate && matches!(header, PduHeader::ICReq(_) | PduHeader::ICResp(_)) {
                    reader.set_config(input.config);
                }
                seen.push(Seen::Header(header, layout));
            }
            Ok(ReadEvent::Data { remaining }) => {
                let start = data.len();
                data.resize(start + remaining, 0);
                let copied = reader.copy_buffered_data(&mut data[start..]);
                data.truncate(start + copied);
                if copied == 0 {
                    if rest.is_empty() {
                        seen.push(Seen::Data(std::mem::take(&mut data)));
                        seen.push(Seen::End);
                        return seen;
                    }
                    if input.direct_data {
                        let len = next_len(remaining.min(rest.len()));
                        reader.data_received_directly(&rest[..len]);
                        data.extend_from_slice(&rest[..len]);
                        rest = &rest[len..];
                    } else {
                        let buffer = reader.recv_buffer();
                        let len = next_len(buffer.len().min(rest.len()));
                        buffer[..len].copy_from_slice(&rest[..len]);
                        reader.commit_received(len);
                        rest = &rest[len..];
                    }
                }
                assert_eq!(reader.data_remaining(), remaining - (data.len() - start));
            }
            Ok(ReadEvent::DataComplete(digest)) => {
                seen.push(Seen::Data(std::mem::take(&mut data)));
                seen.push(Seen::DataComplete(digest));
            }
        }
    }
}
