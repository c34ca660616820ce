//! A host's side of a connection as one byte stream, built from the PDU encoders: the seeds of
//! the `connection` target and of the `pdu` target.

use vfnvme_host::HostOptions;
use vfnvme_spec::fabrics::{ConnectCommand, ConnectData, FabricsCommand};
use vfnvme_spec::sgl::SglDescriptor;
use vfnvme_spec::Command;
use vfnvme_tcp::pdu::{self, H2CData, ICReq};
use vfnvme_tcp::{EncodeConfig, PduHeader};

/// PDUs a host sends, in order, framed as the connection negotiated.
#[derive(Clone, Debug, Default)]
pub struct HostStream {
    encode: EncodeConfig,
    bytes: Vec<u8>,
}

impl HostStream {
    pub fn new() -> Self {
        Self::default()
    }

    /// ICReq asking for the given digests and alignment; later PDUs are framed with them (the
    /// target grants what is asked).
    pub fn ic_req(mut self, header_digest: bool, data_digest: bool, hpda: u8) -> Self {
        let request = ICReq {
            pfv: pdu::PFV_1_0,
            hpda,
            header_digest,
            data_digest,
            maxr2t: 0,
        };
        self = self.pdu(PduHeader::ICReq(request), &[]);
        self.encode = EncodeConfig {
            header_digest,
            data_digest,
            pda: 0,
        };
        self
    }

    /// Any PDU with its data.
    pub fn pdu(mut self, header: PduHeader, data: &[u8]) -> Self {
        let mut out = vec![0u8; data.len() + 512];
        let len = header
            .encode(&self.encode, &[data], &mut out)
            .expect("the seed's PDU encodes");
        self.bytes.extend_from_slice(&out[..len]);
        self
    }

    /// A CapsuleCmd with `command`; `in_capsule` data travels in the capsule (the SGL says so),
    /// else the SGL asks the transport for `transfer` bytes.
    pub fn command(self, mut command: Command, cid: u16, in_capsule: &[u8], transfer: u32) -> Self {
        command.set_cid(cid);
        let sgl = if in_capsule.is_empty() {
            SglDescriptor::transport(transfer)
        } else {
            SglDescriptor::in_capsule(in_capsule.len() as u32)
        };
        sgl.store_in(&mut command);
        self.pdu(PduHeader::CapsuleCmd(command), in_capsule)
    }

    /// A Connect of queue `qid` (0: the admin queue of a new controller) of controller
    /// `cntlid`, by the host [`HostOptions::default`] names.
    pub fn connect(self, subsystem_nqn: &str, qid: u16, cntlid: u16) -> Self {
        let connect = FabricsCommand::Connect(ConnectCommand {
            recfmt: 0,
            qid,
            sqsize: if qid == 0 { 31 } else { 127 },
            cattr: 0,
            kato_ms: 0,
        });
        let data = connect_data(subsystem_nqn, cntlid).to_bytes();
        self.command(connect.to_command(0), 0x77, &data, 0)
    }

    /// H2CData for the R2T `ttag` of command `cccid`.
    pub fn h2c_data(self, cccid: u16, ttag: u16, datao: u32, data: &[u8], last: bool) -> Self {
        let header = H2CData {
            cccid,
            ttag,
            datao,
            datal: data.len() as u32,
            last,
        };
        self.pdu(PduHeader::H2CData(header), data)
    }

    pub fn into_bytes(self) -> Vec<u8> {
        self.bytes
    }
}

/// The Connect data of the host [`HostOptions::default`] names.
pub fn connect_data(subsystem_nqn: &str, cntlid: u16) -> ConnectData {
    let host = HostOptions::default();
    ConnectData {
        host_id: host.host_id,
        cntlid,
        subsystem_nqn: subsystem_nqn.to_owned(),
        host_nqn: host.host_nqn,
    }
}
