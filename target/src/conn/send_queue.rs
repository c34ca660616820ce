//! The queue of what a connection has to send: PDU headers encoded when queued, data referenced
//! where it lies (a request's DMA buffer), and markers that act once everything before them
//! has been sent.
//!
//! Its own file because it is a data structure apart from the socket: it gathers iovecs for a
//! vectored write and accounts for what the write took; the connection does the I/O and acts
//! on the markers. Sized at connection setup, so queueing allocates nothing.

use std::collections::VecDeque;
use std::io::IoSlice;

use vfnvme_tcp::digest::DIGEST_LEN;

use super::request::Request;

/// The largest header we send with its digest and pad (a TermReq with the offending header).
pub(super) const MAX_SENT_HEADER: usize = 160;
/// Iovecs per vectored write: a read takes three (C2HData header, data, CapsuleResp), so one
/// write carries the responses of 42 reads, a whole round's at queue depth 32 (at 32, it took
/// 4 writes; SPDK batches 64 iovecs per sendmsg). Far below the kernel's UIO_MAXIOV (1024).
pub(super) const IOVECS_PER_WRITE: usize = 128;

/// Something to send.
pub(super) enum Outgoing {
    Header {
        bytes: [u8; MAX_SENT_HEADER],
        len: usize,
    },
    /// `len` bytes of a request's buffer, then its data digest if any.
    RequestData {
        request: u16,
        len: usize,
        digest: Option<[u8; DIGEST_LEN]>,
    },
    /// Admin command data (already followed by its digest when digests are on).
    AdminData(Vec<u8>),
    /// Everything before has been sent: the request is done.
    Release(u16),
    /// Everything before has been sent: close the connection (for this reason).
    Close(&'static str),
}

impl Outgoing {
    fn len(&self) -> usize {
        match self {
            Self::Header { len, .. } => *len,
            Self::RequestData { len, digest, .. } => len + digest.map_or(0, |d| d.len()),
            Self::AdminData(bytes) => bytes.len(),
            Self::Release(_) | Self::Close(_) => 0,
        }
    }
}

/// A marker that reached the front of the queue (see [`SendQueue::pop_marker`]).
pub(super) enum Marker {
    Release(u16),
    Close(&'static str),
}

pub(super) struct SendQueue {
    items: VecDeque<Outgoing>,
    /// Bytes of the first item already sent.
    sent_of_first: usize,
}

impl SendQueue {
    pub(super) fn with_capacity(capacity: usize) -> Self {
        Self {
            items: VecDeque::with_capacity(capacity),
            sent_of_first: 0,
        }
    }

    pub(super) fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    pub(super) fn push(&mut self, item: Outgoing) {
        self.items.push_back(item);
    }

    pub(super) fn push_header(&mut self, bytes: [u8; MAX_SENT_HEADER], len: usize) {
        self.push(Outgoing::Header { bytes, len });
    }

    /// Drops everything queued (the connection closes).
    pub(super) fn clear(&mut self) {
        self.items.clear();
        self.sent_of_first = 0;
    }

    /// Takes a Release or Close marker off the front, if one is there.
    pub(super) fn pop_marker(&mut self) -> Option<Marker> {
        let marker = match self.items.front()? {
            Outgoing::Release(index) => Marker::Release(*index),
            Outgoing::Close(why) => Marker::Close(why),
            _ => return None,
        };
        self.items.pop_front();
        Some(marker)
    }

    /// Fills `slices` with what is unsent, up to the first Close marker; returns how many.
    pub(super) fn gather<'a>(
        &'a self,
        requests: &'a [Request],
        slices: &mut [IoSlice<'a>; IOVECS_PER_WRITE],
    ) -> usize {
        let mut count = 0;
        let mut skip = self.sent_of_first;
        for item in &self.items {
            // Nothing queued after a Close may reach the wire (a drive completing a command
            // of a terminated connection queues its response there).
            if count + 2 > IOVECS_PER_WRITE || matches!(item, Outgoing::Close(_)) {
                break;
            }
            let (first, second): (&[u8], &[u8]) = match item {
                Outgoing::Header { bytes, len } => (&bytes[..*len], &[]),
                Outgoing::RequestData {
                    request,
                    len,
                    digest,
                } => {
                    let buffer = requests[usize::from(*request)]
                        .buffer
                        .as_ref()
                        .expect("data is sent from the request's buffer");
                    (
                        &buffer.as_slice()[..*len],
                        digest.as_ref().map_or(&[][..], |d| &d[..]),
                    )
                }
                Outgoing::AdminData(bytes) => (bytes, &[]),
                Outgoing::Release(_) | Outgoing::Close(_) => (&[], &[]),
            };
            for part in [first, second] {
                if skip >= part.len() {
                    skip -= part.len();
                    continue;
                }
                slices[count] = IoSlice::new(&part[skip..]);
                skip = 0;
                count += 1;
            }
        }
        count
    }

    /// Accounts for `written` bytes sent from the front. When they reach the end of the front
    /// item, it goes and the bytes left over are returned; otherwise `None`.
    pub(super) fn take_sent(&mut self, written: usize) -> Option<usize> {
        let front = self.items.front()?;
        let left = front.len() - self.sent_of_first;
        if written < left {
            self.sent_of_first += written;
            return None;
        }
        self.sent_of_first = 0;
        self.items.pop_front();
        Some(written - left)
    }
}
