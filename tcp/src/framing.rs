//! Splitting the received byte stream into PDUs, without allocating per PDU and without
//! copying large data through an intermediate buffer.
//!
//! [`PduReader`] owns one buffer, allocated once, that receives the socket's bytes while the
//! connection waits for headers. It hands out validated, digest-checked headers; the data of a
//! PDU is placed by the caller. The loop of a connection looks like:
//!
//! ```text
//! loop {
//!     match reader.poll()? {
//!         ReadEvent::NeedMoreBytes => {
//!             let n = socket.read(reader.recv_buffer())?;   // WouldBlock: wait for readiness
//!             reader.commit_received(n);
//!         }
//!         ReadEvent::Header { header, layout } => {
//!             // dispatch; if layout.data_len > 0, choose where the data goes: the DMA buffer
//!             // of the command, at the offset DATAO says.
//!         }
//!         ReadEvent::Data { .. } => {
//!             let dst = /* the part of the DMA buffer still to fill */;
//!             let copied = reader.copy_buffered_data(dst);    // bytes that came with the header
//!             let rest = &mut dst[copied..copied + reader.data_remaining()];
//!             if !rest.is_empty() {
//!                 let n = socket.read(rest)?;                  // straight into DMA memory
//!                 reader.data_received_directly(&rest[..n]);
//!             }
//!         }
//!         ReadEvent::DataComplete(digest) => {
//!             // digest: Err(DataDigestMismatch) means complete the command with a Transient
//!             // Transport Error; the connection itself carries on.
//!         }
//!     }
//! }
//! ```
//!
//! Reading into [`recv_buffer`](PduReader::recv_buffer) takes as many bytes as the socket has,
//! so one system call can bring in several small PDUs (command capsules, 72 bytes each); any data
//! bytes that came along are then copied out by `copy_buffered_data`, and only the rest is read
//! straight into the destination. A caller that wants no copy at all can bound its reads by
//! [`header_bytes_needed`](PduReader::header_bytes_needed), at the cost of more reads.
//!
//! Data digests are computed incrementally over the data as it passes through
//! `copy_buffered_data` and `data_received_directly`, so the data is never read twice.

use zerocopy::FromBytes;

use crate::digest::{Crc32c, DIGEST_LEN};
use crate::pdu::{
    check_data_digest, decode_header, validate_common_header, CommonHeader, DataDigestMismatch,
    DecodeConfig, PduError, PduHeader, PduLayout, COMMON_HEADER_LEN, MAX_DATA_OFFSET,
};

/// The smallest receive buffer: room for the longest header, its digest and pad (`pdo` is at
/// most 255) and a data digest.
pub const MIN_RECV_BUFFER_LEN: usize = MAX_DATA_OFFSET + 1 + DIGEST_LEN;

/// What the reader needs or has, from [`PduReader::poll`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReadEvent {
    /// Read from the socket into [`PduReader::recv_buffer`], then call
    /// [`PduReader::commit_received`].
    NeedMoreBytes,
    /// A complete header, validated and with its header digest verified. When
    /// `layout.data_len > 0` the reader is now in the data phase of this PDU.
    Header {
        header: PduHeader,
        layout: PduLayout,
    },
    /// `remaining` data bytes of the current PDU are still to be placed, with
    /// [`PduReader::copy_buffered_data`] and [`PduReader::data_received_directly`].
    Data { remaining: usize },
    /// All data of the current PDU (and its digest, if any) has been received. An `Err` is a data
    /// digest mismatch, which fails the command, not the connection.
    DataComplete(Result<(), DataDigestMismatch>),
}

#[derive(Clone, Copy, Debug)]
enum ReadState {
    /// Waiting for the 8-byte common header.
    CommonHeader,
    /// Common header validated; waiting for the rest of the header, header digest and pad.
    Header(PduLayout),
    /// Waiting for data; `crc` accumulates the data digest when one follows.
    Data {
        remaining: usize,
        crc: Option<Crc32c>,
    },
    /// Waiting for the data digest.
    DataDigest(Crc32c),
    /// A fatal error was found; the stream cannot be resynchronised.
    Failed(PduError),
}

/// Incremental PDU framing over a fixed, preallocated receive buffer. See the module
/// documentation for the calling pattern.
#[derive(Debug)]
pub struct PduReader {
    buf: Box<[u8]>,
    /// First buffered byte not yet consumed.
    start: usize,
    /// End of the buffered bytes.
    end: usize,
    config: DecodeConfig,
    state: ReadState,
}

impl PduReader {
    /// A reader with a receive buffer of `capacity` bytes (at least [`MIN_RECV_BUFFER_LEN`]).
    /// Larger buffers let one read bring in more PDUs.
    pub fn new(config: DecodeConfig, capacity: usize) -> Self {
        assert!(
            capacity >= MIN_RECV_BUFFER_LEN,
            "receive buffer of {capacity} bytes cannot hold the largest header"
        );
        Self {
            buf: vec![0; capacity].into_boxed_slice(),
            start: 0,
            end: 0,
            config,
            state: ReadState::CommonHeader,
        }
    }

    /// Changes the validation rules for the PDUs after the current one: after ICReq/ICResp, to
    /// enable the negotiated digests, alignment and data limits.
    pub fn set_config(&mut self, config: DecodeConfig) {
        self.config = config;
    }

    /// Bytes received but not yet consumed.
    pub fn buffered_len(&self) -> usize {
        self.end - self.start
    }

    fn buffered(&self) -> &[u8] {
        &self.buf[self.start..self.end]
    }

    /// Where to read socket bytes to. Buffered bytes are first moved to the front of the buffer
    /// (a few header bytes at most, in the steady state), so the whole rest is free. Empty only
    /// if the buffer is full of data bytes of the current PDU that the caller has not taken.
    pub fn recv_buffer(&mut self) -> &mut [u8] {
        if self.start > 0 {
            self.buf.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
        }
        &mut self.buf[self.end..]
    }

    /// Records that `len` bytes were read into [`recv_buffer`](Self::recv_buffer).
    pub fn commit_received(&mut self, len: usize) {
        assert!(
            len <= self.buf.len() - self.end,
            "committed more than the receive buffer holds"
        );
        self.end += len;
    }

    /// How many more bytes the reader needs before [`poll`](Self::poll) can produce the next
    /// header or data digest; 0 in the data phase (see
    /// [`data_remaining`](Self::data_remaining)) or when a header is already complete.
    pub fn header_bytes_needed(&self) -> usize {
        let needed = match self.state {
            ReadState::CommonHeader => COMMON_HEADER_LEN,
            ReadState::Header(layout) => layout.data_offset,
            ReadState::DataDigest(_) => DIGEST_LEN,
            ReadState::Data { .. } | ReadState::Failed(_) => 0,
        };
        needed.saturating_sub(self.buffered_len())
    }

    /// Data bytes of the current PDU not yet placed (buffered ones included).
    pub fn data_remaining(&self) -> usize {
        match self.state {
            ReadState::Data { remaining, .. } => remaining,
            _ => 0,
        }
    }

    /// Advances over the buffered bytes as far as possible.
    ///
    /// After an error the stream has lost framing: every later call returns the same error, and
    /// the connection should send a TermReq built from it and close.
    pub fn poll(&mut self) -> Result<ReadEvent, PduError> {
        loop {
            match self.state {
                ReadState::Failed(error) => return Err(error),
                ReadState::CommonHeader => {
                    let Ok((ch, _)) = CommonHeader::ref_from_prefix(self.buffered()) else {
                        return Ok(ReadEvent::NeedMoreBytes);
                    };
                    match validate_common_header(ch, &self.config) {
                        Ok(layout) => self.state = ReadState::Header(layout),
                        Err(error) => return Err(self.fail(error)),
                    }
                }
                ReadState::Header(layout) => {
                    if self.buffered_len() < layout.data_offset {
                        return Ok(ReadEvent::NeedMoreBytes);
                    }
                    let header = match decode_header(self.buffered(), &layout) {
                        Ok(header) => header,
                        Err(error) => return Err(self.fail(error)),
                    };
                    self.start += layout.data_offset;
                    self.state = if layout.data_len > 0 {
                        ReadState::Data {
                            remaining: layout.data_len,
                            crc: layout.data_digest.then(Crc32c::new),
                        }
                    } else {
                        ReadState::CommonHeader
                    };
                    return Ok(ReadEvent::Header { header, layout });
                }
                ReadState::Data { remaining: 0, crc } => match crc {
                    Some(crc) => self.state = ReadState::DataDigest(crc),
                    None => {
                        self.state = ReadState::CommonHeader;
                        return Ok(ReadEvent::DataComplete(Ok(())));
                    }
                },
                ReadState::Data { remaining, .. } => return Ok(ReadEvent::Data { remaining }),
                ReadState::DataDigest(crc) => {
                    let Some(&received) = self.buffered().first_chunk::<DIGEST_LEN>() else {
                        return Ok(ReadEvent::NeedMoreBytes);
                    };
                    self.start += DIGEST_LEN;
                    self.state = ReadState::CommonHeader;
                    return Ok(ReadEvent::DataComplete(check_data_digest(crc, received)));
                }
            }
        }
    }

    fn fail(&mut self, error: PduError) -> PduError {
        self.state = ReadState::Failed(error);
        error
    }

    /// Data phase: copies the current PDU's data bytes that are already buffered into the start
    /// of `dst`, as many as fit, and returns how many.
    pub fn copy_buffered_data(&mut self, dst: &mut [u8]) -> usize {
        let ReadState::Data { remaining, crc } = &mut self.state else {
            return 0;
        };
        let len = dst.len().min(*remaining).min(self.end - self.start);
        let data = &self.buf[self.start..self.start + len];
        dst[..len].copy_from_slice(data);
        if let Some(crc) = crc {
            crc.update(data);
        }
        *remaining -= len;
        self.start += len;
        len
    }

    /// Data phase: records data bytes of the current PDU that the caller read from the socket
    /// into its own buffer, and adds them to the data digest. Only valid once the buffered data
    /// has been taken (`copy_buffered_data` returned less than asked), and for at most
    /// [`data_remaining`](Self::data_remaining) bytes: otherwise the stream would be reordered,
    /// and that is a bug in the caller, so it panics.
    pub fn data_received_directly(&mut self, data: &[u8]) {
        assert_eq!(
            self.buffered_len(),
            0,
            "data read past buffered bytes of the same stream"
        );
        let ReadState::Data { remaining, crc } = &mut self.state else {
            panic!("data received outside the data phase");
        };
        assert!(
            data.len() <= *remaining,
            "data read past the end of the PDU"
        );
        if let Some(crc) = crc {
            crc.update(data);
        }
        *remaining -= data.len();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pdu::{EncodeConfig, H2CData, ICReq, PduType, Role, TermReq};
    use vfnvme_spec::Command;

    fn config(digests: bool) -> DecodeConfig {
        DecodeConfig {
            header_digest: digests,
            data_digest: digests,
            pda: 0,
            max_in_capsule_data: 8192,
            max_data_pdu_len: 65536,
            ..DecodeConfig::initial(Role::Controller)
        }
    }

    fn encode_config(digests: bool, pda: u8) -> EncodeConfig {
        EncodeConfig {
            header_digest: digests,
            data_digest: digests,
            pda,
        }
    }

    fn capsule_cmd(cid: u16, config: &EncodeConfig, data: &[u8]) -> Vec<u8> {
        let mut command = Command::new(0x01, 1);
        command.set_cid(cid);
        let mut out = vec![0u8; 256 + data.len()];
        let len = PduHeader::CapsuleCmd(command)
            .encode(config, &[data], &mut out)
            .unwrap();
        out.truncate(len);
        out
    }

    fn h2c_data(cccid: u16, config: &EncodeConfig, data: &[u8]) -> Vec<u8> {
        let header = PduHeader::H2CData(H2CData {
            cccid,
            ttag: 1,
            datao: 0,
            datal: data.len() as u32,
            last: true,
        });
        let mut out = vec![0u8; 256 + data.len()];
        let len = header.encode(config, &[data], &mut out).unwrap();
        out.truncate(len);
        out
    }

    fn feed(reader: &mut PduReader, bytes: &[u8]) {
        let space = reader.recv_buffer();
        space[..bytes.len()].copy_from_slice(bytes);
        reader.commit_received(bytes.len());
    }

    /// Feeds at most `chunk` bytes of `rest`, as much as the receive buffer takes; returns how many.
    fn feed_some(reader: &mut PduReader, rest: &[u8], chunk: usize) -> usize {
        let len = chunk.min(rest.len()).min(reader.recv_buffer().len());
        feed(reader, &rest[..len]);
        len
    }

    /// One PDU as the reader delivered it: header, data, data digest verdict.
    type Received = (PduHeader, Vec<u8>, Option<Result<(), DataDigestMismatch>>);

    /// Feeds `stream` `chunk` bytes at a time; data is copied out of the reader's buffer.
    fn receive_all(reader: &mut PduReader, stream: &[u8], chunk: usize) -> Vec<Received> {
        let mut received: Vec<Received> = Vec::new();
        let mut at = 0;
        loop {
            match reader.poll().unwrap() {
                ReadEvent::NeedMoreBytes => {
                    if at == stream.len() {
                        return received;
                    }
                    at += feed_some(reader, &stream[at..], chunk);
                }
                ReadEvent::Header { header, .. } => received.push((header, Vec::new(), None)),
                ReadEvent::Data { remaining } => {
                    let mut dst = vec![0u8; remaining];
                    let copied = reader.copy_buffered_data(&mut dst);
                    assert!(copied > 0 || reader.buffered_len() == 0);
                    received
                        .last_mut()
                        .unwrap()
                        .1
                        .extend_from_slice(&dst[..copied]);
                    if copied == 0 {
                        at += feed_some(reader, &stream[at..], chunk);
                    }
                }
                ReadEvent::DataComplete(digest) => received.last_mut().unwrap().2 = Some(digest),
            }
        }
    }

    #[test]
    fn any_chunking_yields_the_same_pdus() {
        for digests in [false, true] {
            for pda in [0, 5] {
                let encode = encode_config(digests, pda);
                let data: Vec<u8> = (0..3000u32).map(|i| (i % 251) as u8).collect();
                let mut stream = capsule_cmd(1, &encode, &[]);
                stream.extend(capsule_cmd(2, &encode, &data));
                stream.extend(h2c_data(2, &encode, &data[..777]));
                stream.extend(capsule_cmd(3, &encode, &[]));
                let mut decode = config(digests);
                decode.pda = pda;
                let expected =
                    receive_all(&mut PduReader::new(decode, 4096), &stream, stream.len());
                assert_eq!(expected.len(), 4);
                assert_eq!(expected[1].1, data);
                assert_eq!(expected[2].1, data[..777]);
                assert_eq!(expected[1].2, Some(Ok(())));
                for chunk in [1, 2, 3, 7, 8, 71, 72, 76, 100, 4096] {
                    let mut reader = PduReader::new(decode, MIN_RECV_BUFFER_LEN);
                    assert_eq!(
                        receive_all(&mut reader, &stream, chunk),
                        expected,
                        "chunk {chunk}"
                    );
                }
            }
        }
    }

    /// The path the connection uses for large writes: exactly the header is buffered, the data
    /// is read straight into the destination, the digest checked incrementally.
    #[test]
    fn data_lands_directly_in_the_destination() {
        let encode = encode_config(true, 0);
        let data: Vec<u8> = (0..16384u32).map(|i| (i * 31) as u8).collect();
        let pdu = h2c_data(9, &encode, &data);
        let mut reader = PduReader::new(config(true), MIN_RECV_BUFFER_LEN);
        let mut wire = &pdu[..];

        assert_eq!(reader.poll(), Ok(ReadEvent::NeedMoreBytes));
        assert_eq!(reader.header_bytes_needed(), COMMON_HEADER_LEN);
        feed(&mut reader, &wire[..8]);
        wire = &wire[8..];
        assert_eq!(reader.poll(), Ok(ReadEvent::NeedMoreBytes));
        let rest = reader.header_bytes_needed();
        assert_eq!(rest, 24 + 4 - 8);
        feed(&mut reader, &wire[..rest]);
        wire = &wire[rest..];
        let ReadEvent::Header { header, layout } = reader.poll().unwrap() else {
            panic!("expected a header");
        };
        assert!(matches!(header, PduHeader::H2CData(h) if h.cccid == 9));
        assert_eq!(layout.data_len, data.len());

        let mut dma = vec![0u8; data.len()];
        assert_eq!(reader.poll(), Ok(ReadEvent::Data { remaining: 16384 }));
        assert_eq!(reader.copy_buffered_data(&mut dma), 0);
        let mut filled = 0;
        for socket_read in [1000, 5000, 10384] {
            let dst = &mut dma[filled..filled + socket_read];
            dst.copy_from_slice(&wire[..socket_read]);
            wire = &wire[socket_read..];
            reader.data_received_directly(dst);
            filled += socket_read;
            assert_eq!(reader.data_remaining(), data.len() - filled);
        }
        assert_eq!(dma, data);
        assert_eq!(reader.poll(), Ok(ReadEvent::NeedMoreBytes));
        assert_eq!(reader.header_bytes_needed(), DIGEST_LEN);
        feed(&mut reader, wire);
        assert_eq!(reader.poll(), Ok(ReadEvent::DataComplete(Ok(()))));
        assert_eq!(reader.poll(), Ok(ReadEvent::NeedMoreBytes));
    }

    #[test]
    fn data_digest_mismatch_fails_only_the_command() {
        let encode = encode_config(true, 0);
        let mut stream = capsule_cmd(1, &encode, &[0x5a; 64]);
        let corrupt_at = stream.len() - 10;
        stream[corrupt_at] ^= 0xff;
        stream.extend(capsule_cmd(2, &encode, &[]));
        let received = receive_all(&mut PduReader::new(config(true), 1024), &stream, 13);
        assert_eq!(
            received.len(),
            2,
            "the stream goes on after a data digest error"
        );
        let mismatch = received[0].2.unwrap().unwrap_err();
        let status = mismatch.completion_status();
        assert_eq!(
            status.sc(),
            vfnvme_spec::status::generic::TRANSIENT_TRANSPORT_ERROR
        );
        assert!(matches!(received[1].0, PduHeader::CapsuleCmd(c) if c.cid() == 2));
    }

    #[test]
    fn fatal_errors_are_sticky() {
        let encode = encode_config(true, 0);
        let mut stream = capsule_cmd(1, &encode, &[]);
        stream[20] ^= 1;
        let mut reader = PduReader::new(config(true), 1024);
        feed(&mut reader, &stream);
        let error = reader.poll().unwrap_err();
        assert_eq!(error.fatal_error_status(), 0x03);
        feed(&mut reader, &capsule_cmd(2, &encode, &[]));
        assert_eq!(reader.poll(), Err(error));
        assert_eq!(reader.header_bytes_needed(), 0);
    }

    #[test]
    fn common_header_is_rejected_before_the_rest_arrives() {
        let mut reader = PduReader::new(config(false), 1024);
        feed(&mut reader, &[0x04, 0, 72, 0, 0x10, 0, 0, 0]);
        let error = reader.poll().unwrap_err();
        assert_eq!(
            (error.fatal_error_status(), error.field_offset()),
            (0x01, 4)
        );
    }

    #[test]
    fn negotiation_then_digests() {
        let mut reader = PduReader::new(DecodeConfig::initial(Role::Controller), 1024);
        let ic_req = ICReq {
            header_digest: true,
            data_digest: true,
            ..ICReq::default()
        };
        let mut stream = vec![0u8; 128];
        crate::pdu::encode_ic_req(&ic_req, &mut stream).unwrap();
        feed(&mut reader, &stream);
        let ReadEvent::Header { header, .. } = reader.poll().unwrap() else {
            panic!("expected ICReq");
        };
        assert_eq!(header, PduHeader::ICReq(ic_req));
        reader.set_config(config(true));
        feed(&mut reader, &capsule_cmd(1, &encode_config(true, 0), &[]));
        let ReadEvent::Header { layout, .. } = reader.poll().unwrap() else {
            panic!("expected CapsuleCmd");
        };
        assert_eq!(
            (layout.pdu_type, layout.header_digest),
            (PduType::CapsuleCmd, true)
        );
    }

    #[test]
    fn term_req_data_is_the_offending_header() {
        let mut reader = PduReader::new(config(true), 1024);
        let mut stream = vec![0u8; 200];
        let term = TermReq { fes: 2, fei: 0 };
        let len = crate::pdu::encode_term_req(Role::Host, &term, &[7u8; 30], &mut stream).unwrap();
        let received = receive_all(&mut reader, &stream[..len], 5);
        assert_eq!(
            received,
            vec![(PduHeader::H2CTermReq(term), vec![7u8; 30], Some(Ok(())))]
        );
    }
}
