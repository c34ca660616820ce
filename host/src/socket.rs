//! A queue's TCP socket: blocking while one command is waited for (`execute`), non-blocking
//! while the caller busy-polls (`vfnvme perf --connect`), and the outgoing bytes of commands
//! queued but not yet written, so that one round's submissions leave in one `write`.
//!
//! The mode changes only when the caller switches between waiting and polling, not per call.
//! A PDU that must go out whole before the next (a queued capsule cut short by a full send
//! buffer, an H2CData) is finished in blocking mode, as every write was before batching.
//!
//! Over TLS the same calls go through OpenSSL: a read gives plaintext (OpenSSL keeps the rest
//! of a record, and the next read, blocking or not, gets it first); a write retried after
//! WouldBlock passes the same bytes again, as OpenSSL requires (the context allows a moved
//! buffer).

use std::io::{self, ErrorKind, IoSlice, Read, Write};
use std::net::TcpStream;

use openssl::ssl::SslStream;

/// The byte stream under a queue: plain TCP, or TLS over it.
pub(crate) enum HostStream {
    Plain(TcpStream),
    Tls(Box<SslStream<TcpStream>>),
}

impl HostStream {
    fn tcp(&self) -> &TcpStream {
        match self {
            HostStream::Plain(stream) => stream,
            HostStream::Tls(stream) => stream.get_ref(),
        }
    }

    fn read(&mut self, buffer: &mut [u8]) -> io::Result<usize> {
        match self {
            HostStream::Plain(stream) => stream.read(buffer),
            HostStream::Tls(stream) => stream.read(buffer),
        }
    }

    fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        match self {
            HostStream::Plain(stream) => stream.write(bytes),
            HostStream::Tls(stream) => stream.write(bytes),
        }
    }

    fn write_vectored(&mut self, slices: &[IoSlice<'_>]) -> io::Result<usize> {
        match self {
            HostStream::Plain(stream) => stream.write_vectored(slices),
            // One record per slice: SslStream writes the first non-empty one.
            HostStream::Tls(stream) => stream.write_vectored(slices),
        }
    }
}

/// Capsules one queue batches before a write without growing its buffer: headers (72 bytes,
/// 80 with a header digest) of this many commands.
const PENDING_CAPACITY: usize = 128 * 80;

pub(crate) struct HostSocket {
    stream: HostStream,
    nonblocking: bool,
    /// Encoded PDUs not yet (fully) written, from `sent` on.
    pending: Vec<u8>,
    sent: usize,
}

impl HostSocket {
    pub(crate) fn new(stream: HostStream) -> Self {
        Self {
            stream,
            nonblocking: false,
            pending: Vec::with_capacity(PENDING_CAPACITY),
            sent: 0,
        }
    }

    pub(crate) fn stream(&self) -> &TcpStream {
        self.stream.tcp()
    }

    /// Switches to non-blocking (busy-polling) or blocking mode; a system call only when the
    /// mode changes.
    pub(crate) fn set_nonblocking(&mut self, nonblocking: bool) -> std::io::Result<()> {
        if self.nonblocking != nonblocking {
            self.stream.tcp().set_nonblocking(nonblocking)?;
            self.nonblocking = nonblocking;
        }
        Ok(())
    }

    /// Queues encoded PDU bytes for the next [`flush`](Self::flush).
    pub(crate) fn queue(&mut self, bytes: &[u8]) {
        self.pending.extend_from_slice(bytes);
    }

    /// Whether queued bytes wait to be written.
    pub(crate) fn has_pending(&self) -> bool {
        self.sent < self.pending.len()
    }

    /// Writes queued bytes: all of them in blocking mode; as many as the socket takes now in
    /// non-blocking mode (the rest goes with the next flush).
    pub(crate) fn flush(&mut self) -> std::io::Result<()> {
        while self.has_pending() {
            match self.stream.write(&self.pending[self.sent..]) {
                Ok(0) => return Err(ErrorKind::WriteZero.into()),
                Ok(n) => self.sent += n,
                Err(error) if error.kind() == ErrorKind::Interrupted => {}
                Err(error) if error.kind() == ErrorKind::WouldBlock && self.nonblocking => {
                    return Ok(())
                }
                Err(error) => return Err(error),
            }
        }
        self.pending.clear();
        self.sent = 0;
        Ok(())
    }

    /// Writes every queued byte, blocking if the socket's send buffer is full.
    pub(crate) fn flush_all(&mut self) -> std::io::Result<()> {
        self.flush()?;
        if self.has_pending() {
            self.blocking(Self::flush)?;
        }
        Ok(())
    }

    /// Runs `write` in blocking mode, then returns to the mode before.
    fn blocking(
        &mut self,
        write: impl FnOnce(&mut Self) -> std::io::Result<()>,
    ) -> std::io::Result<()> {
        let was_nonblocking = self.nonblocking;
        self.set_nonblocking(false)?;
        let written = write(self);
        self.set_nonblocking(was_nonblocking)?;
        written
    }

    /// Writes the queued bytes, then all of `parts`, in order, with as few system calls as the
    /// socket allows; the slice list lives on the stack (the write path of every H2CData).
    pub(crate) fn write_all_vectored<const N: usize>(
        &mut self,
        parts: &[&[u8]; N],
    ) -> std::io::Result<()> {
        self.flush_all()?;
        let was_nonblocking = self.nonblocking;
        let mut skip = 0usize;
        let total: usize = parts.iter().map(|p| p.len()).sum();
        while skip < total {
            let mut slices = [IoSlice::new(&[]); N];
            let mut count = 0;
            let mut offset = skip;
            for part in parts {
                if offset >= part.len() {
                    offset -= part.len();
                    continue;
                }
                slices[count] = IoSlice::new(&part[offset..]);
                count += 1;
                offset = 0;
            }
            match self.stream.write_vectored(&slices[..count]) {
                Ok(0) => return Err(ErrorKind::WriteZero.into()),
                Ok(written) => skip += written,
                Err(error) if error.kind() == ErrorKind::Interrupted => {}
                // The send buffer is full: the rest of this PDU waits for room.
                Err(error) if error.kind() == ErrorKind::WouldBlock && self.nonblocking => {
                    self.set_nonblocking(false)?
                }
                Err(error) => return Err(error),
            }
        }
        self.set_nonblocking(was_nonblocking)
    }

    /// Reads into `buffer`: `Ok(None)` when nothing is there to read in non-blocking mode,
    /// `Ok(Some(0))` when the peer closed the connection.
    pub(crate) fn read(&mut self, buffer: &mut [u8]) -> std::io::Result<Option<usize>> {
        loop {
            match self.stream.read(buffer) {
                Ok(n) => return Ok(Some(n)),
                Err(error) if error.kind() == ErrorKind::Interrupted => {}
                Err(error) if error.kind() == ErrorKind::WouldBlock && self.nonblocking => {
                    return Ok(None)
                }
                Err(error) => return Err(error),
            }
        }
    }
}
