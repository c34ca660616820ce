//! `pdu` seeds: every PDU type for both receivers, framed in each way, and whole sessions.

use vfnvme_fuzz::host_stream::HostStream;
use vfnvme_fuzz::pdu_input::{settings_byte, PduInput};
use vfnvme_spec::{nvm_opcode, Command, Completion};
use vfnvme_tcp::pdu::{C2HData, H2CData, ICReq, ICResp, TermReq, PFV_1_0, R2T};
use vfnvme_tcp::{PduHeader, Role};

use crate::shared::{sample_command, Seeds};

/// One PDU of each type each receiver accepts, framed with and without digests, aligned or
/// not; then whole streams that negotiate first, read in small chunks.
pub fn seeds() -> Seeds {
    let data: Vec<u8> = (0..512u32).map(|i| (i * 13) as u8).collect();
    let from_host: [(&str, PduHeader, &[u8]); 5] = [
        ("icreq", PduHeader::ICReq(ic_req()), &[]),
        ("capsule", PduHeader::CapsuleCmd(sample_command()), &[]),
        (
            "capsule-data",
            PduHeader::CapsuleCmd(sample_command()),
            &data,
        ),
        ("h2cdata", PduHeader::H2CData(h2c(data.len())), &data),
        ("h2ctermreq", PduHeader::H2CTermReq(term()), &data[..24]),
    ];
    let from_controller: [(&str, PduHeader, &[u8]); 5] = [
        ("icresp", PduHeader::ICResp(ic_resp()), &[]),
        ("capsuleresp", PduHeader::CapsuleResp(completion()), &[]),
        ("c2hdata", PduHeader::C2HData(c2h(data.len())), &data),
        ("r2t", PduHeader::R2T(r2t()), &[]),
        ("c2htermreq", PduHeader::C2HTermReq(term()), &data[..72]),
    ];
    let mut seeds = Vec::new();
    for (receiver, pdus) in [(Role::Controller, from_host), (Role::Host, from_controller)] {
        for (digests, pda_choice) in [(false, 0), (true, 0), (false, 1), (true, 3)] {
            for (name, header, data) in &pdus {
                let settings =
                    settings_byte(receiver, digests, digests, false, pda_choice, false, false);
                let input = [settings, 0];
                let parsed = PduInput::parse(&input).expect("two bytes parse");
                let mut out = vec![0u8; 1024];
                let len = header
                    .encode(&parsed.encode_config(), &[data], &mut out)
                    .expect("seed PDU encodes");
                let mut bytes = input.to_vec();
                bytes.extend_from_slice(&out[..len]);
                let framing = if digests { "digests" } else { "plain" };
                seeds.push((format!("{name}-{framing}-pda{pda_choice}"), bytes));
            }
        }
    }
    for (digests, small_buffer, direct) in [(false, false, false), (true, true, true)] {
        let settings = settings_byte(
            Role::Controller,
            digests,
            digests,
            true,
            0,
            small_buffer,
            direct,
        );
        let stream = HostStream::new()
            .ic_req(digests, digests, 0)
            .command(sample_command(), 7, &data[..256], 0)
            .command(Command::nvm_rw(nvm_opcode::WRITE, 1, 0, 1), 8, &[], 512)
            .h2c_data(8, 0, 0, &data, true)
            .into_bytes();
        let mut bytes = vec![settings, 0x2a];
        bytes.extend_from_slice(&stream);
        let name = if digests {
            "session-digests"
        } else {
            "session-plain"
        };
        seeds.push((name.to_owned(), bytes));
    }
    seeds
}

fn ic_req() -> ICReq {
    ICReq {
        pfv: PFV_1_0,
        hpda: 0,
        header_digest: true,
        data_digest: true,
        maxr2t: 0,
    }
}

fn ic_resp() -> ICResp {
    ICResp {
        pfv: PFV_1_0,
        cpda: 0,
        header_digest: true,
        data_digest: false,
        maxh2cdata: 16384,
    }
}

fn term() -> TermReq {
    TermReq { fes: 1, fei: 4 }
}

fn completion() -> Completion {
    Completion {
        result: 1,
        sq_head: 3,
        cid: 7,
        ..Completion::default()
    }
}

fn h2c(len: usize) -> H2CData {
    H2CData {
        cccid: 7,
        ttag: 1,
        datao: 0,
        datal: len as u32,
        last: true,
    }
}

fn c2h(len: usize) -> C2HData {
    C2HData {
        cccid: 7,
        datao: 0,
        datal: len as u32,
        last: true,
        success: true,
    }
}

fn r2t() -> R2T {
    R2T {
        cccid: 7,
        ttag: 1,
        r2to: 0,
        r2tl: 8192,
    }
}
