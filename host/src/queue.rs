//! One connection, one fabric queue: ICReq/ICResp, command submission with in-capsule data or
//! R2T/H2CData, C2HData straight into the command's slot, completions. The data path of
//! `vfnvme perf --connect`: `enqueue`, `flush` and `poll` allocate nothing.
//!
//! Two ways to drive a queue: [`HostQueue::execute`] (or `submit` then `poll(true, ..)`) sends
//! each command at once and blocks in `read` until a completion arrives; a busy-polling caller
//! queues a round's commands with `enqueue` and calls `poll(false, ..)`, which writes them in
//! one system call, reads whatever bytes are there and reaps every completion in them, and
//! never blocks.

use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use vfnvme_spec::fabrics::{
    ConnectCommand, ConnectData, FabricsCommand, CATTR_DISABLE_SQ_FLOW_CONTROL,
};
use vfnvme_spec::sgl::SglDescriptor;
use vfnvme_spec::{Command, Status};
use vfnvme_tcp::pdu::{self, H2CData, ICReq, PduError};
use vfnvme_tcp::{DecodeConfig, EncodeConfig, PduHeader, PduReader, ReadEvent, Role};

use crate::error::HostError;
use crate::options::HostOptions;
use crate::socket::{HostSocket, HostStream};

const RECV_BUFFER_LEN: usize = 64 * 1024;

/// A completed command.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HostCompletion {
    pub tag: u64,
    pub cid: u16,
    pub status: Status,
    pub result: u32,
    /// Completion DW1 (the upper half of an 8-byte Property Get).
    pub dw1: u32,
}

/// One command id's state and its data buffers, allocated once at connection time.
struct Slot {
    busy: bool,
    tag: u64,
    /// Data to send after an R2T.
    write: Vec<u8>,
    write_len: usize,
    /// Data received by C2HData.
    read: Vec<u8>,
    read_len: usize,
}

/// One connection: one fabric queue.
pub struct HostQueue {
    socket: HostSocket,
    address: SocketAddr,
    qid: u16,
    entries: u16,
    reader: PduReader,
    encode: EncodeConfig,
    /// Largest write sent in the capsule rather than after R2T.
    pub(crate) in_capsule_max: usize,
    max_h2c_data: usize,
    slots: Vec<Slot>,
    free: Vec<u16>,
    /// The C2HData being received: slot and offset.
    receiving: Option<(u16, usize)>,
    send_buffer: Vec<u8>,
    timeout: Duration,
}

impl HostQueue {
    /// Connects the socket (over TLS with a PSK) and exchanges ICReq/ICResp.
    pub(crate) fn open(
        address: SocketAddr,
        subsystem_nqn: &str,
        entries: u16,
        options: &HostOptions,
    ) -> Result<Self, HostError> {
        let io = |operation| {
            move |source| HostError::Io {
                address,
                operation,
                source,
            }
        };
        let socket =
            TcpStream::connect_timeout(&address, options.timeout).map_err(io("connect"))?;
        socket.set_nodelay(true).map_err(io("setsockopt"))?;
        // Bounds every blocking wait for a completion.
        socket
            .set_read_timeout(Some(options.timeout))
            .map_err(io("setsockopt"))?;
        let stream = match &options.tls_psk {
            Some(psk) => HostStream::Tls(Box::new(crate::tls::connect(
                socket,
                address,
                psk,
                &options.host_nqn,
                subsystem_nqn,
            )?)),
            None => HostStream::Plain(socket),
        };
        let mut queue = Self {
            socket: HostSocket::new(stream),
            address,
            qid: 0,
            entries,
            reader: PduReader::new(DecodeConfig::initial(Role::Host), RECV_BUFFER_LEN),
            encode: EncodeConfig::default(),
            in_capsule_max: 0,
            max_h2c_data: 0,
            slots: (0..entries)
                .map(|_| Slot {
                    busy: false,
                    tag: 0,
                    write: vec![0; options.max_data_len],
                    write_len: 0,
                    read: vec![0; options.max_data_len],
                    read_len: 0,
                })
                .collect(),
            free: (0..entries).rev().collect(),
            receiving: None,
            send_buffer: vec![0; 256 + options.max_data_len.min(16 * 1024)],
            timeout: options.timeout,
        };
        let request = ICReq {
            pfv: pdu::PFV_1_0,
            hpda: 0,
            header_digest: options.header_digest,
            data_digest: options.data_digest,
            maxr2t: 0,
        };
        let len = pdu::encode_ic_req(&request, &mut queue.send_buffer).expect("ICReq fits");
        queue.socket.queue(&queue.send_buffer[..len]);
        queue.flush_all()?;
        let response = loop {
            match queue.next_event()? {
                ReadEvent::Header {
                    header: PduHeader::ICResp(response),
                    ..
                } => break response,
                ReadEvent::Header {
                    header: PduHeader::C2HTermReq(term),
                    ..
                } => {
                    return Err(HostError::Terminated {
                        address,
                        fes: term.fes,
                        fei: term.fei,
                    })
                }
                ReadEvent::NeedMoreBytes => {
                    queue.receive()?;
                }
                _ => {
                    return Err(HostError::Protocol {
                        address,
                        error: PduError::SequenceError("expected ICResp"),
                    })
                }
            }
        };
        queue.encode = EncodeConfig {
            header_digest: response.header_digest,
            data_digest: response.data_digest,
            pda: response.cpda,
        };
        queue.max_h2c_data = response.maxh2cdata as usize;
        queue.reader.set_config(DecodeConfig {
            local_role: Role::Host,
            header_digest: response.header_digest,
            data_digest: response.data_digest,
            pda: 0,
            max_in_capsule_data: 0,
            max_data_pdu_len: options.max_data_len.max(64 * 1024) as u32,
        });
        Ok(queue)
    }

    pub fn qid(&self) -> u16 {
        self.qid
    }

    /// Commands submitted and not completed.
    pub fn outstanding(&self) -> usize {
        usize::from(self.entries) - self.free.len()
    }

    fn io_error(&self, operation: &'static str) -> impl FnOnce(std::io::Error) -> HostError {
        let address = self.address;
        move |source| HostError::Io {
            address,
            operation,
            source,
        }
    }

    fn flush_all(&mut self) -> Result<(), HostError> {
        let error = self.io_error("send");
        self.socket.flush_all().map_err(error)
    }

    /// Writes the commands [`enqueue`](Self::enqueue)d so far, as many bytes as the socket takes
    /// now (all of them unless the queue is being busy-polled); `poll` does this too.
    pub fn flush(&mut self) -> Result<(), HostError> {
        let error = self.io_error("send");
        self.socket.flush().map_err(error)
    }

    /// Reads what the socket has (blocking for it unless busy-polling). `Ok(None)`: nothing
    /// there; `Ok(Some(n))`: `n` bytes and whether they filled the receive buffer.
    fn receive(&mut self) -> Result<Option<bool>, HostError> {
        let error = self.io_error("receive");
        let buffer = self.reader.recv_buffer();
        let space = buffer.len();
        let Some(n) = self.socket.read(buffer).map_err(error)? else {
            return Ok(None);
        };
        if n == 0 {
            return Err(HostError::Closed {
                address: self.address,
            });
        }
        self.reader.commit_received(n);
        Ok(Some(n == space))
    }

    fn next_event(&mut self) -> Result<ReadEvent, HostError> {
        self.reader.poll().map_err(|error| HostError::Protocol {
            address: self.address,
            error,
        })
    }

    /// Sends `command` with `write` as its data (in the capsule when it fits, else after R2T),
    /// or expecting `read_len` bytes back, at once. Returns the command id.
    pub fn submit(
        &mut self,
        command: Command,
        write: &[u8],
        read_len: usize,
        tag: u64,
    ) -> Result<u16, HostError> {
        let cid = self.enqueue(command, write, read_len, tag)?;
        self.flush_all()?;
        Ok(cid)
    }

    /// As [`submit`](Self::submit), but the command waits in the queue's send buffer for the
    /// next [`flush`](Self::flush) or [`poll`](Self::poll): a round's commands go out in one
    /// write.
    pub fn enqueue(
        &mut self,
        mut command: Command,
        write: &[u8],
        read_len: usize,
        tag: u64,
    ) -> Result<u16, HostError> {
        let Some(cid) = self.free.pop() else {
            return Err(HostError::QueueFull {
                address: self.address,
                entries: self.entries,
            });
        };
        command.set_cid(cid);
        let slot = &mut self.slots[usize::from(cid)];
        slot.busy = true;
        slot.tag = tag;
        slot.read_len = 0;
        slot.write_len = 0;
        let in_capsule = !write.is_empty() && write.len() <= self.in_capsule_max;
        let data_len = write.len().max(read_len);
        let descriptor = if data_len == 0 {
            SglDescriptor::default()
        } else if in_capsule {
            SglDescriptor::in_capsule(data_len as u32)
        } else {
            SglDescriptor::transport(data_len as u32)
        };
        descriptor.store_in(&mut command);
        if !write.is_empty() && !in_capsule {
            slot.write[..write.len()].copy_from_slice(write);
            slot.write_len = write.len();
        }
        let capsule_data: &[u8] = if in_capsule { write } else { &[] };
        let encoded =
            pdu::encode_capsule_cmd(&self.encode, &command, capsule_data, &mut self.send_buffer);
        let len = encoded.map_err(|_| HostError::Protocol {
            address: self.address,
            error: PduError::DataLimitExceeded {
                len: write.len() as u64,
                max: self.send_buffer.len() as u64,
            },
        })?;
        self.socket.queue(&self.send_buffer[..len]);
        Ok(cid)
    }

    /// Writes what was enqueued, receives and handles PDUs; reports completions to
    /// `on_complete`. With `wait`, blocks until at least one completion arrived. Without, never
    /// blocks: reads what the socket has (until it has no more, or a read leaves room in the
    /// receive buffer) and reaps every completion in it; returns 0 when nothing arrived.
    pub fn poll(
        &mut self,
        wait: bool,
        mut on_complete: impl FnMut(HostCompletion, &[u8]),
    ) -> Result<usize, HostError> {
        let mut completed = 0;
        self.socket
            .set_nonblocking(!wait)
            .map_err(self.io_error("fcntl"))?;
        self.flush()?;
        // Busy-polling: the last read left room in the buffer, so the socket had no more.
        let mut drained = false;
        loop {
            match self.next_event()? {
                ReadEvent::NeedMoreBytes if wait && completed > 0 => return Ok(completed),
                ReadEvent::NeedMoreBytes if wait => match self.receive() {
                    Err(HostError::Io { source, .. })
                        if matches!(
                            source.kind(),
                            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                        ) =>
                    {
                        return Err(HostError::Timeout {
                            address: self.address,
                            what: "a completion",
                            timeout: self.timeout,
                        })
                    }
                    received => {
                        received?;
                    }
                },
                ReadEvent::NeedMoreBytes if drained => return Ok(completed),
                ReadEvent::NeedMoreBytes => match self.receive()? {
                    None => return Ok(completed),
                    Some(filled) => drained = !filled,
                },
                ReadEvent::Header { header, .. } => match header {
                    PduHeader::CapsuleResp(cqe) => {
                        completed += 1;
                        self.complete(
                            cqe.cid,
                            cqe.status(),
                            (cqe.result, cqe.dw1),
                            &mut on_complete,
                        );
                    }
                    PduHeader::C2HData(data) => {
                        let slot = self.slots.get(usize::from(data.cccid));
                        if slot.is_none_or(|s| {
                            !s.busy || data.datao as usize + data.datal as usize > s.read.len()
                        }) {
                            return Err(HostError::Protocol {
                                address: self.address,
                                error: PduError::DataOutOfRange("C2HData for no command"),
                            });
                        }
                        self.receiving = Some((data.cccid, data.datao as usize));
                        if data.success {
                            // Completed once the data is in; remembered by the flag below.
                            self.slots[usize::from(data.cccid)].read_len = usize::MAX;
                        }
                    }
                    PduHeader::R2T(r2t) => self.answer_r2t(r2t)?,
                    PduHeader::C2HTermReq(term) => {
                        return Err(HostError::Terminated {
                            address: self.address,
                            fes: term.fes,
                            fei: term.fei,
                        })
                    }
                    _ => {
                        return Err(HostError::Protocol {
                            address: self.address,
                            error: PduError::SequenceError("unexpected PDU"),
                        })
                    }
                },
                ReadEvent::Data { remaining } => {
                    let (cid, offset) = self.receiving.expect("data follows a C2HData header");
                    let slot = &mut self.slots[usize::from(cid)];
                    let window = &mut slot.read[offset..offset + remaining];
                    let copied = self.reader.copy_buffered_data(window);
                    self.receiving = Some((cid, offset + copied));
                    let rest = &mut window[copied..];
                    if rest.is_empty() {
                        continue;
                    }
                    if drained {
                        return Ok(completed);
                    }
                    let address = self.address;
                    let read = self.socket.read(rest).map_err(|source| HostError::Io {
                        address,
                        operation: "receive",
                        source,
                    })?;
                    match read {
                        None => return Ok(completed),
                        Some(0) => return Err(HostError::Closed { address }),
                        Some(n) => {
                            drained = !wait && n < rest.len();
                            self.reader.data_received_directly(&rest[..n]);
                            self.receiving = Some((cid, offset + copied + n));
                        }
                    }
                }
                ReadEvent::DataComplete(digest) => {
                    let (cid, end) = self.receiving.take().expect("data was being received");
                    let slot = &mut self.slots[usize::from(cid)];
                    let success_flag = slot.read_len == usize::MAX;
                    slot.read_len = end;
                    if let Err(mismatch) = digest {
                        completed += 1;
                        self.complete(cid, mismatch.completion_status(), (0, 0), &mut on_complete);
                    } else if success_flag {
                        completed += 1;
                        self.complete(cid, Status::SUCCESS, (0, 0), &mut on_complete);
                    }
                }
            }
        }
    }

    fn complete(
        &mut self,
        cid: u16,
        status: Status,
        (result, dw1): (u32, u32),
        on_complete: &mut impl FnMut(HostCompletion, &[u8]),
    ) {
        let Some(slot) = self.slots.get_mut(usize::from(cid)).filter(|s| s.busy) else {
            log::warn!("{}: completion for unknown command id {cid}", self.address);
            return;
        };
        slot.busy = false;
        let read_len = if slot.read_len == usize::MAX {
            0
        } else {
            slot.read_len
        };
        let completion = HostCompletion {
            tag: slot.tag,
            cid,
            status,
            result,
            dw1,
        };
        on_complete(completion, &slot.read[..read_len]);
        self.free.push(cid);
    }

    fn answer_r2t(&mut self, r2t: pdu::R2T) -> Result<(), HostError> {
        let Some(slot) = self.slots.get(usize::from(r2t.cccid)).filter(|s| s.busy) else {
            return Err(HostError::Protocol {
                address: self.address,
                error: PduError::SequenceError("R2T for no command"),
            });
        };
        let end = r2t.r2to as usize + r2t.r2tl as usize;
        if end > slot.write_len {
            return Err(HostError::Protocol {
                address: self.address,
                error: PduError::DataOutOfRange("R2T beyond the command's data"),
            });
        }
        let chunk = self.max_h2c_data.max(4096);
        let mut offset = r2t.r2to as usize;
        while offset < end {
            let len = chunk.min(end - offset);
            let header = H2CData {
                cccid: r2t.cccid,
                ttag: r2t.ttag,
                datao: offset as u32,
                datal: len as u32,
                last: offset + len == end,
            };
            let data = &self.slots[usize::from(r2t.cccid)].write[offset..offset + len];
            let layout = pdu::encode_h2c_data_header(&self.encode, &header, &mut self.send_buffer)
                .expect("a data header fits");
            let digest = pdu::data_digest(&[data]);
            let digest_len = if layout.data_digest { digest.len() } else { 0 };
            let parts = [
                &self.send_buffer[..layout.data_offset],
                data,
                &digest[..digest_len],
            ];
            let error = self.io_error("send");
            self.socket.write_all_vectored(&parts).map_err(error)?;
            offset += len;
        }
        Ok(())
    }

    /// Submits and waits for one command (the admin path).
    pub fn execute(
        &mut self,
        command: Command,
        write: &[u8],
        read_len: usize,
        what: &'static str,
    ) -> Result<(u32, Vec<u8>), HostError> {
        self.execute_completion(command, write, read_len, what)
            .map(|(done, data)| (done.result, data))
    }

    /// As [`execute`](Self::execute), returning the whole completion.
    pub fn execute_completion(
        &mut self,
        command: Command,
        write: &[u8],
        read_len: usize,
        what: &'static str,
    ) -> Result<(HostCompletion, Vec<u8>), HostError> {
        let cid = self.submit(command, write, read_len, 0)?;
        let mut outcome = None;
        while outcome.is_none() {
            self.poll(true, |done, data| {
                if done.cid == cid {
                    outcome = Some((done, data.to_vec()));
                }
            })?;
        }
        let (done, data) = outcome.expect("loop ends with an outcome");
        if !done.status.is_success() {
            return Err(HostError::Command {
                address: self.address,
                what,
                status: done.status,
            });
        }
        Ok((done, data))
    }

    /// The target's address.
    pub fn address(&self) -> SocketAddr {
        self.address
    }

    /// The connection's socket (to watch for the target closing it).
    pub fn socket(&self) -> &TcpStream {
        self.socket.stream()
    }

    /// Fabrics Disconnect of this I/O queue: once it completes the target has released the
    /// queue ID, so it may be connected again at once. The target then closes the connection.
    pub fn disconnect(mut self) -> Result<(), HostError> {
        let command = FabricsCommand::Disconnect.to_command(0);
        self.execute(command, &[], 0, "Disconnect").map(|_| ())
    }

    /// Fabrics Connect on this connection.
    pub(crate) fn connect(
        &mut self,
        qid: u16,
        cntlid: u16,
        subsystem_nqn: &str,
        options: &HostOptions,
    ) -> Result<u32, HostError> {
        let command = FabricsCommand::Connect(ConnectCommand {
            recfmt: 0,
            qid,
            sqsize: self.entries - 1,
            cattr: if options.disable_sq_flow_control {
                CATTR_DISABLE_SQ_FLOW_CONTROL
            } else {
                0
            },
            kato_ms: if qid == 0 {
                options.keep_alive_timeout_ms
            } else {
                0
            },
        })
        .to_command(0);
        let data = ConnectData {
            host_id: options.host_id,
            cntlid,
            subsystem_nqn: subsystem_nqn.to_owned(),
            host_nqn: options.host_nqn.clone(),
        }
        .to_bytes();
        // Connect's data always travels in the capsule (8 KiB are always accepted for it).
        self.in_capsule_max = self.in_capsule_max.max(data.len());
        let (result, _) = self.execute(command, &data, 0, "Connect")?;
        self.qid = qid;
        Ok(result)
    }
}
