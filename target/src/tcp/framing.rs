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

use super::digest::{Crc32c, DIGEST_LEN};
use super::pdu::{
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

    pub fn config(&self) -> &DecodeConfig {
        &self.config
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
                    let Some(bytes) = self.buffered().first_chunk::<COMMON_HEADER_LEN>() else {
                        return Ok(ReadEvent::NeedMoreBytes);
                    };
                    let ch = CommonHeader::parse(bytes);
                    match validate_common_header(&ch, &self.config) {
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
