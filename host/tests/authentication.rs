//! `authenticate` over a real socket against a minimal controller: one thread that speaks
//! NVMe/TCP (ICReq, Connect, Authentication Send / Receive) with `vfnvme_tcp`'s PDU code and
//! answers with `vfnvme_auth::ControllerAuth`, as the target's connection is to.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::thread::{self, JoinHandle};

use vfnvme_auth::{
    ControllerAuth, ControllerPolicy, DhGroupId, DhchapSecret, HashId, HostAuthError,
};
use vfnvme_host::{Host, HostError, HostOptions};
use vfnvme_spec::auth::{connect_authreq, AuthCommand, AuthDirection, FailureReason};
use vfnvme_spec::{Command, Completion, Status};
use vfnvme_tcp::pdu::{self, C2HData, ICResp, PFV_1_0};
use vfnvme_tcp::{DecodeConfig, EncodeConfig, PduHeader, PduReader, ReadEvent, Role};

const SUBSYSTEM: &str = "nqn.2024-01.io.vfnvme:auth-test";

/// What the controller thread saw: whether the queue ended authenticated, and why not.
struct Outcome {
    authenticated: bool,
    failure: Option<FailureReason>,
}

struct Controller {
    socket: TcpStream,
    reader: PduReader,
    auth: ControllerAuth,
}

impl Controller {
    fn next_header(&mut self) -> Option<(PduHeader, usize)> {
        loop {
            match self.reader.poll().expect("well-formed PDUs") {
                ReadEvent::NeedMoreBytes => {
                    let n = self.socket.read(self.reader.recv_buffer()).ok()?;
                    if n == 0 {
                        return None;
                    }
                    self.reader.commit_received(n);
                }
                ReadEvent::Header { header, layout } => return Some((header, layout.data_len)),
                other => panic!("unexpected {other:?}"),
            }
        }
    }

    fn data(&mut self, len: usize) -> Vec<u8> {
        let mut data = vec![0u8; len];
        let mut got = 0;
        while got < len {
            got += self.reader.copy_buffered_data(&mut data[got..]);
            if got < len {
                let n = self.socket.read(self.reader.recv_buffer()).expect("data");
                self.reader.commit_received(n);
            }
        }
        assert!(matches!(
            self.reader.poll(),
            Ok(ReadEvent::DataComplete(Ok(())))
        ));
        data
    }

    fn respond(&mut self, command: &Command, status: Status, result: u32) {
        let completion = Completion {
            result,
            cid: command.cid(),
            status_phase: status.raw() << 1,
            ..Completion::default()
        };
        let mut bytes = [0u8; 64];
        let len = pdu::encode_capsule_resp(&EncodeConfig::default(), &completion, &mut bytes)
            .expect("encodes");
        self.socket.write_all(&bytes[..len]).expect("sent");
    }

    fn send_data(&mut self, command: &Command, data: &[u8]) {
        let header = C2HData {
            cccid: command.cid(),
            datao: 0,
            datal: data.len() as u32,
            last: true,
            success: false,
        };
        let mut bytes = [0u8; 64];
        let layout = pdu::encode_c2h_data_header(&EncodeConfig::default(), &header, &mut bytes)
            .expect("encodes");
        self.socket
            .write_all(&bytes[..layout.data_offset])
            .expect("sent");
        self.socket.write_all(data).expect("sent");
    }

    /// Serves one connection until the host closes it or the exchange fails.
    fn serve(mut self) -> Outcome {
        let Some((PduHeader::ICReq(_), _)) = self.next_header() else {
            panic!("ICReq first")
        };
        let ic_resp = ICResp {
            pfv: PFV_1_0,
            cpda: 0,
            header_digest: false,
            data_digest: false,
            maxh2cdata: 65536,
        };
        let mut bytes = [0u8; 128];
        let len = pdu::encode_ic_resp(&ic_resp, &mut bytes).expect("encodes");
        self.socket.write_all(&bytes[..len]).expect("sent");
        self.reader.set_config(DecodeConfig {
            max_in_capsule_data: 8192,
            max_data_pdu_len: 65536,
            ..DecodeConfig::initial(Role::Controller)
        });
        while let Some((header, data_len)) = self.next_header() {
            let PduHeader::CapsuleCmd(command) = header else {
                panic!("only commands expected")
            };
            let data = if data_len > 0 {
                self.data(data_len)
            } else {
                Vec::new()
            };
            match AuthCommand::parse(&command) {
                // Connect: controller 1, and the host must authenticate.
                None => self.respond(&command, Status::SUCCESS, 1 | connect_authreq::ATR),
                Some(Ok(AuthCommand {
                    direction: AuthDirection::Send,
                    length,
                })) => {
                    assert_eq!(length as usize, data.len());
                    self.auth.send(&data);
                    self.respond(&command, Status::SUCCESS, 0);
                }
                Some(Ok(AuthCommand {
                    direction: AuthDirection::Receive,
                    length,
                })) => {
                    let received = self.auth.receive(length).expect("AL of 4 KiB");
                    self.send_data(&command, &received.data);
                    self.respond(&command, Status::SUCCESS, 0);
                    if received.close {
                        break;
                    }
                }
                Some(Err(status)) => self.respond(&command, status, 0),
            }
        }
        Outcome {
            authenticated: self.auth.is_authenticated(),
            failure: self.auth.failure().map(|f| f.reason),
        }
    }
}

fn controller(auth: ControllerAuth) -> (SocketAddr, JoinHandle<Outcome>) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("a port");
    let address = listener.local_addr().unwrap();
    let handle = thread::spawn(move || {
        let (socket, _) = listener.accept().expect("the host connects");
        Controller {
            socket,
            reader: PduReader::new(DecodeConfig::initial(Role::Controller), 64 * 1024),
            auth,
        }
        .serve()
    });
    (address, handle)
}

fn secret(byte: u8) -> DhchapSecret {
    DhchapSecret::new(&[byte; 48], Some(HashId::Sha384)).unwrap()
}

/// Connects, authenticates the admin queue with `host_secret` (asking the controller to prove
/// `ctrl_secret` if given) against a controller holding `target_host_secret` and
/// `target_ctrl_secret`, closes; the host's result and the controller's view.
fn clone(secret: &DhchapSecret) -> DhchapSecret {
    DhchapSecret::parse(&secret.representation()).expect("its own representation")
}

fn run(
    target_host_secret: &DhchapSecret,
    target_ctrl_secret: Option<&DhchapSecret>,
    host_secret: &DhchapSecret,
    ctrl_secret: Option<&DhchapSecret>,
) -> (Result<(), HostError>, Outcome) {
    let options = HostOptions {
        dhchap_secret: Some(Arc::new(clone(host_secret))),
        dhchap_ctrl_secret: ctrl_secret.map(|s| Arc::new(clone(s))),
        dhchap_dh_groups: vec![DhGroupId::Ffdhe2048, DhGroupId::Null],
        ..HostOptions::default()
    };
    let ctrl = ControllerAuth::new(
        &options.host_nqn,
        SUBSYSTEM,
        target_host_secret,
        target_ctrl_secret,
        ControllerPolicy::default(),
    );
    let (address, handle) = controller(ctrl);
    // The Connect response sets ATR: `Host::connect` runs the exchange with the options' keys.
    let result = Host::connect(address, SUBSYSTEM, options).map(drop);
    (result, handle.join().expect("the controller thread"))
}

#[test]
fn the_right_keys_authenticate_the_queue_both_ways() {
    let (host_key, ctrl_key) = (secret(1), secret(2));
    let (result, outcome) = run(&host_key, Some(&ctrl_key), &host_key, Some(&ctrl_key));
    result.unwrap();
    assert!(outcome.authenticated);
    assert_eq!(outcome.failure, None);
    // Unidirectional: the host asks for no proof.
    let (result, outcome) = run(&host_key, None, &host_key, None);
    result.unwrap();
    assert!(outcome.authenticated);
}

#[test]
fn a_wrong_host_key_is_refused_by_the_controller() {
    let (result, outcome) = run(&secret(1), None, &secret(9), None);
    let err = result.unwrap_err();
    assert!(
        matches!(
            err,
            HostError::Authentication {
                qid: 0,
                source: HostAuthError::Refused { explanation: 1 },
                ..
            }
        ),
        "{err:?}"
    );
    assert!(
        err.to_string().ends_with(
            "queue 0: DH-HMAC-CHAP authentication failed: the controller refused \
             authentication: authentication failed"
        ),
        "{err}"
    );
    assert!(!outcome.authenticated);
    assert_eq!(outcome.failure, Some(FailureReason::Failed));
}

#[test]
fn a_wrong_controller_key_makes_the_host_give_up_with_failure2() {
    let host_key = secret(1);
    let (result, outcome) = run(&host_key, Some(&secret(2)), &host_key, Some(&secret(3)));
    let err = result.unwrap_err();
    assert!(
        matches!(
            &err,
            HostError::Authentication {
                source: HostAuthError::Refusing { error, .. },
                ..
            } if error.reason == FailureReason::Failed
        ),
        "{err:?}"
    );
    // The controller got the host's Failure2 and does not count the queue as authenticated.
    assert!(!outcome.authenticated);
    assert_eq!(outcome.failure, Some(FailureReason::Failed));
}
