//! Property tests of the NVMe/TCP PDU layer over random streams: valid PDUs arrive intact
//! whatever the read chunking and data placement; mutated and random bytes never panic, and
//! every fatal error maps to a defined TermReq FES.
//!
//! Deterministic: a fixed-seed xorshift generator, so a failure reproduces by its case number.

mod common;

use common::Rng;
use vfnvme_spec::{Command, Completion};
use vfnvme_tcp::pdu::{C2HData, H2CData, ICReq, ICResp, PduError, TermReq, MAX_PDA, R2T};
use vfnvme_tcp::{
    DataDigestMismatch, DecodeConfig, EncodeConfig, PduHeader, PduReader, ReadEvent, Role,
};

const MAX_IN_CAPSULE: u32 = 8192;
const MAX_DATA_PDU: u32 = 16384;

#[derive(Clone, Copy)]
struct Connection {
    receiver: Role,
    encode: EncodeConfig,
    decode: DecodeConfig,
}

fn random_connection(rng: &mut Rng) -> Connection {
    let receiver = if rng.chance(2) {
        Role::Controller
    } else {
        Role::Host
    };
    let header_digest = rng.chance(2);
    let data_digest = rng.chance(2);
    let pda = if rng.chance(2) { 0 } else { rng.below(8) as u8 };
    Connection {
        receiver,
        encode: EncodeConfig {
            header_digest,
            data_digest,
            pda,
        },
        decode: DecodeConfig {
            local_role: receiver,
            header_digest,
            data_digest,
            pda,
            max_in_capsule_data: MAX_IN_CAPSULE,
            max_data_pdu_len: MAX_DATA_PDU,
        },
    }
}

fn random_data(rng: &mut Rng, max: usize) -> Vec<u8> {
    let len = if rng.chance(3) {
        rng.size(max)
    } else {
        rng.size(64)
    };
    rng.bytes(len)
}

fn random_command(rng: &mut Rng) -> Command {
    let raw: [u8; 64] = rng.bytes(64).try_into().unwrap();
    Command::from_bytes(&raw)
}

fn random_completion(rng: &mut Rng) -> Completion {
    let raw: [u8; 16] = rng.bytes(16).try_into().unwrap();
    Completion::from_bytes(&raw)
}

/// A valid PDU the peer of `receiver` may send, and its data.
/// A termination request with FES and FEI from `n` and up to 128 bytes of offending header.
fn random_term(rng: &mut Rng, n: u64) -> (TermReq, Vec<u8>) {
    let len = rng.below(129);
    let data = rng.bytes(len);
    let term = TermReq {
        fes: n as u16,
        fei: (n >> 16) as u32,
    };
    (term, data)
}

fn random_pdu(rng: &mut Rng, receiver: Role) -> (PduHeader, Vec<u8>) {
    let n = rng.next();
    match (receiver, rng.below(4)) {
        (Role::Controller, 0) => (
            PduHeader::ICReq(ICReq {
                pfv: 0,
                hpda: rng.below(usize::from(MAX_PDA) + 1) as u8,
                header_digest: n & 1 != 0,
                data_digest: n & 2 != 0,
                maxr2t: (n >> 32) as u32,
            }),
            vec![],
        ),
        (Role::Controller, 1) => {
            let data = if rng.chance(3) {
                vec![]
            } else {
                random_data(rng, MAX_IN_CAPSULE as usize)
            };
            (PduHeader::CapsuleCmd(random_command(rng)), data)
        }
        (Role::Controller, 2) => {
            let data = random_data(rng, MAX_DATA_PDU as usize);
            let h2c = H2CData {
                cccid: n as u16,
                ttag: (n >> 16) as u16,
                datao: (n >> 32) as u32,
                datal: data.len() as u32,
                last: n & 1 != 0,
            };
            (PduHeader::H2CData(h2c), data)
        }
        (Role::Controller, _) => {
            let (term, data) = random_term(rng, n);
            (PduHeader::H2CTermReq(term), data)
        }
        (Role::Host, 0) => {
            let ic_resp = ICResp {
                pfv: 0,
                cpda: rng.below(usize::from(MAX_PDA) + 1) as u8,
                header_digest: n & 1 != 0,
                data_digest: n & 2 != 0,
                maxh2cdata: 4096 + 4 * (n >> 40) as u32,
            };
            if rng.chance(4) {
                let (term, data) = random_term(rng, n);
                (PduHeader::C2HTermReq(term), data)
            } else {
                (PduHeader::ICResp(ic_resp), vec![])
            }
        }
        (Role::Host, 1) => (PduHeader::CapsuleResp(random_completion(rng)), vec![]),
        (Role::Host, 2) => {
            let data = random_data(rng, MAX_DATA_PDU as usize);
            let last = n & 1 != 0;
            let c2h = C2HData {
                cccid: n as u16,
                datao: (n >> 32) as u32,
                datal: data.len() as u32,
                last,
                success: last && n & 2 != 0,
            };
            (PduHeader::C2HData(c2h), data)
        }
        (Role::Host, _) => {
            let r2t = R2T {
                cccid: n as u16,
                ttag: (n >> 16) as u16,
                r2to: (n >> 32) as u32,
                r2tl: rng.next() as u32,
            };
            (PduHeader::R2T(r2t), vec![])
        }
    }
}

fn random_stream(rng: &mut Rng, connection: &Connection) -> (Vec<u8>, Vec<(PduHeader, Vec<u8>)>) {
    let mut stream = Vec::new();
    let mut pdus = Vec::new();
    let mut out = vec![0u8; 512 + MAX_DATA_PDU as usize];
    for _ in 0..rng.size(10) {
        let (header, data) = random_pdu(rng, connection.receiver);
        let len = header
            .encode(&connection.encode, &[&data], &mut out)
            .unwrap_or_else(|e| panic!("encoding {header:?}: {e}"));
        stream.extend_from_slice(&out[..len]);
        pdus.push((header, data));
    }
    (stream, pdus)
}

type Delivered = (PduHeader, Vec<u8>, Option<Result<(), DataDigestMismatch>>);

/// Drives a reader over `stream` as a connection would, with random read sizes and random data
/// placement (copy out of the reader's buffer, or read "from the socket" straight into the
/// destination). Returns what was delivered and the fatal error, if any.
fn drive(rng: &mut Rng, config: DecodeConfig, stream: &[u8]) -> (Vec<Delivered>, Option<PduError>) {
    let capacity = if rng.chance(2) {
        vfnvme_tcp::framing::MIN_RECV_BUFFER_LEN
    } else {
        rng.size(16384)
            .max(vfnvme_tcp::framing::MIN_RECV_BUFFER_LEN)
    };
    let mut reader = PduReader::new(config, capacity);
    let mut delivered: Vec<Delivered> = Vec::new();
    let mut at = 0;
    let max_chunk = [1, 7, 100, 5000][rng.below(4)];
    loop {
        let event = match reader.poll() {
            Ok(event) => event,
            Err(error) => {
                assert_eq!(reader.poll(), Err(error), "errors are sticky");
                return (delivered, Some(error));
            }
        };
        match event {
            ReadEvent::NeedMoreBytes => {
                if at == stream.len() {
                    return (delivered, None);
                }
                let space = reader.recv_buffer();
                let len = rng.size(max_chunk).min(stream.len() - at).min(space.len());
                space[..len].copy_from_slice(&stream[at..at + len]);
                reader.commit_received(len);
                at += len;
            }
            ReadEvent::Header { header, layout } => {
                assert!(layout.data_offset <= layout.plen);
                assert!(layout.data_offset + layout.data_len <= layout.plen);
                delivered.push((header, Vec::with_capacity(layout.data_len), None));
            }
            ReadEvent::Data { remaining } => {
                assert_eq!(remaining, reader.data_remaining());
                let mut dst = vec![0u8; rng.size(remaining)];
                let copied = reader.copy_buffered_data(&mut dst);
                let data = &mut delivered.last_mut().unwrap().1;
                data.extend_from_slice(&dst[..copied]);
                if copied == 0 {
                    if at == stream.len() {
                        return (delivered, None);
                    }
                    let len = dst.len().min(stream.len() - at);
                    dst[..len].copy_from_slice(&stream[at..at + len]);
                    reader.data_received_directly(&dst[..len]);
                    data.extend_from_slice(&dst[..len]);
                    at += len;
                }
            }
            ReadEvent::DataComplete(verdict) => {
                let last = delivered.last_mut().unwrap();
                assert!(last.2.is_none(), "one verdict per PDU");
                last.2 = Some(verdict);
            }
        }
    }
}

fn assert_valid_error(error: &PduError, case: u64) {
    let fes = error.fatal_error_status();
    assert!(
        (0x01..=0x06).contains(&fes),
        "case {case}: FES {fes:#x} for {error}"
    );
    let fei = error.field_offset();
    match fes {
        0x01 | 0x06 => assert!(fei < 128, "case {case}: FEI {fei} outside any header"),
        _ => assert_eq!(fei, 0, "case {case}: FEI reserved for FES {fes:#x}"),
    }
    assert_eq!(error.term_req().fes, fes);
}

#[test]
fn valid_streams_arrive_intact_whatever_the_chunking() {
    let mut rng = Rng::new(1);
    for case in 0..5000 {
        let connection = random_connection(&mut rng);
        let (stream, pdus) = random_stream(&mut rng, &connection);
        let (delivered, error) = drive(&mut rng, connection.decode, &stream);
        assert_eq!(error, None, "case {case}");
        assert_eq!(delivered.len(), pdus.len(), "case {case}");
        for ((header, data, verdict), (sent_header, sent_data)) in delivered.iter().zip(&pdus) {
            assert_eq!(header, sent_header, "case {case}");
            assert_eq!(data, sent_data, "case {case}");
            let expected_verdict = (!sent_data.is_empty()).then_some(Ok(()));
            assert_eq!(*verdict, expected_verdict, "case {case}");
        }
    }
}

#[test]
fn mutated_streams_never_panic_and_errors_map_to_fes() {
    let mut rng = Rng::new(2);
    let mut fatal = 0;
    let mut digest_errors = 0;
    for case in 0..20_000 {
        let connection = random_connection(&mut rng);
        let (mut stream, _) = random_stream(&mut rng, &connection);
        for _ in 0..rng.size(4) {
            let at = rng.below(stream.len());
            match rng.below(4) {
                0 => stream[at] ^= 1 << rng.below(8),
                1 => stream[at] = rng.next() as u8,
                2 => stream.truncate(at),
                _ => {
                    // Aim at the common header of the first PDU, where validation lives.
                    let at = rng.below(8.min(stream.len()));
                    stream[at] = rng.next() as u8;
                }
            }
            if stream.is_empty() {
                break;
            }
        }
        let (delivered, error) = drive(&mut rng, connection.decode, &stream);
        if let Some(error) = error {
            assert_valid_error(&error, case);
            fatal += 1;
        }
        for (_, _, verdict) in &delivered {
            if let Some(Err(mismatch)) = verdict {
                assert_eq!(mismatch.completion_status().sc(), 0x22);
                digest_errors += 1;
            }
        }
    }
    assert!(fatal > 4000, "mutations should mostly be caught: {fatal}");
    assert!(digest_errors > 0, "some mutations hit digested data");
}

#[test]
fn random_bytes_never_panic_and_errors_map_to_fes() {
    let mut rng = Rng::new(3);
    for case in 0..20_000 {
        let connection = random_connection(&mut rng);
        let len = rng.size(600);
        let mut stream = rng.bytes(len);
        if rng.chance(2) {
            // A plausible start makes the validation beyond the type and hlen checks reachable.
            let types: &[u8] = match connection.receiver {
                Role::Controller => &[0x00, 0x02, 0x04, 0x06],
                Role::Host => &[0x01, 0x03, 0x05, 0x07, 0x09],
            };
            stream[0] = types[rng.below(types.len())];
            if stream.len() > 2 {
                stream[2] = [24, 72, 128][rng.below(3)];
            }
            if stream.len() > 7 {
                stream[5..8].fill(0);
            }
        }
        let (_, error) = drive(&mut rng, connection.decode, &stream);
        if let Some(error) = error {
            assert_valid_error(&error, case);
        }
    }
}
