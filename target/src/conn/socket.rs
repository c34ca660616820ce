//! A connection's socket: the plain TCP stream, or TLS 1.3 over it (a TLS listener's). Its own
//! file so that the connection reads and writes one type whatever the channel; the plain path
//! is the stream's own calls behind one match.
//!
//! TLS: the handshake runs non-blocking on the poll group, driven by reads (the host speaks
//! first; the ICReq timeout covers a stalled handshake). A read returns at most one record's
//! plaintext; what is left of it stays in OpenSSL, where epoll cannot see it, so
//! [`Socket::pending`] tells the connection to read on. Writes gather the queued slices into
//! one send buffer allocated with the connection and hand it to SSL_write; after a
//! WANT_WRITE the queue still starts with the same bytes, which the next write passes again
//! (as OpenSSL requires).

use std::io::{self, IoSlice, Read, Write};
use std::net::{Shutdown, TcpStream};

use openssl::ex_data::Index;
use openssl::ssl::{HandshakeError, MidHandshakeSslStream, Ssl, SslStream};

use crate::tls::{PskPeer, TlsServer};

/// What one TLS write carries at most: four maximal records.
const TLS_SEND_BUFFER: usize = 64 << 10;

pub enum Socket {
    Plain(TcpStream),
    Tls(Box<TlsSocket>),
}

pub struct TlsSocket {
    state: TlsState,
    send_buffer: Box<[u8]>,
    /// The host's address, for the refusal's log line.
    peer: String,
    /// Where the PSK callback records who the identity names.
    psk_peer: Index<Ssl, PskPeer>,
}

enum TlsState {
    Handshaking(MidHandshakeSslStream<TcpStream>),
    Open(SslStream<TcpStream>),
    /// Only between taking the handshake out and putting its result back.
    Moving,
}

impl Socket {
    /// Starts the server handshake of a session of `server` on `stream` from `peer`
    /// (non-blocking).
    pub fn accept_tls(stream: TcpStream, server: &TlsServer, peer: &str) -> io::Result<Socket> {
        let ssl = server.session(peer)?;
        let mut socket = TlsSocket {
            state: TlsState::Moving,
            send_buffer: vec![0; TLS_SEND_BUFFER].into_boxed_slice(),
            peer: peer.to_owned(),
            psk_peer: server.psk_peer_index(),
        };
        socket.state = match ssl.accept(stream) {
            Ok(open) => TlsState::Open(open),
            Err(HandshakeError::WouldBlock(mid)) => TlsState::Handshaking(mid),
            Err(HandshakeError::Failure(mid)) => return Err(socket.refused(&mid)),
            Err(HandshakeError::SetupFailure(error)) => return Err(io::Error::other(error)),
        };
        Ok(Socket::Tls(Box::new(socket)))
    }

    /// The TCP stream (for epoll and addresses).
    pub fn stream(&self) -> &TcpStream {
        match self {
            Socket::Plain(stream) => stream,
            Socket::Tls(tls) => match &tls.state {
                TlsState::Handshaking(mid) => mid.get_ref(),
                TlsState::Open(stream) => stream.get_ref(),
                TlsState::Moving => unreachable!("a TLS socket is never left moving"),
            },
        }
    }

    /// Plaintext OpenSSL holds that the stream no longer shows as readable.
    pub fn pending(&self) -> usize {
        match self {
            Socket::Plain(_) => 0,
            Socket::Tls(tls) => match &tls.state {
                TlsState::Open(stream) => stream.ssl().pending(),
                _ => 0,
            },
        }
    }

    /// Who the PSK identity named, once the handshake is done (plain: nobody).
    pub fn psk_peer(&self) -> Option<&PskPeer> {
        match self {
            Socket::Tls(tls) => match &tls.state {
                TlsState::Open(stream) => stream.ssl().ex_data(tls.psk_peer),
                _ => None,
            },
            Socket::Plain(_) => None,
        }
    }

    /// Whether a short read means the kernel had nothing more (the stream and OpenSSL).
    pub fn drained_after(&self, read: usize, asked: usize) -> bool {
        read < asked && self.pending() == 0
    }

    /// Reads plaintext; over TLS, drives the handshake first.
    pub fn read(&mut self, buffer: &mut [u8]) -> io::Result<usize> {
        match self {
            Socket::Plain(stream) => stream.read(buffer),
            Socket::Tls(tls) => {
                tls.handshake()?;
                match &mut tls.state {
                    TlsState::Open(stream) => stream.read(buffer),
                    _ => Err(io::ErrorKind::WouldBlock.into()),
                }
            }
        }
    }

    pub fn write_vectored(&mut self, slices: &[IoSlice<'_>]) -> io::Result<usize> {
        match self {
            Socket::Plain(stream) => stream.write_vectored(slices),
            Socket::Tls(tls) => {
                let TlsSocket {
                    state, send_buffer, ..
                } = &mut **tls;
                let TlsState::Open(stream) = state else {
                    return Err(io::ErrorKind::WouldBlock.into());
                };
                let mut len = 0;
                for slice in slices {
                    let take = slice.len().min(send_buffer.len() - len);
                    send_buffer[len..len + take].copy_from_slice(&slice[..take]);
                    len += take;
                    if len == send_buffer.len() {
                        break;
                    }
                }
                stream.write(&send_buffer[..len])
            }
        }
    }

    pub fn shutdown(&self, how: Shutdown) -> io::Result<()> {
        self.stream().shutdown(how)
    }
}

impl TlsSocket {
    /// Drives the handshake on; an error ends the connection.
    fn handshake(&mut self) -> io::Result<()> {
        if !matches!(self.state, TlsState::Handshaking(_)) {
            return Ok(());
        }
        let TlsState::Handshaking(mid) = std::mem::replace(&mut self.state, TlsState::Moving)
        else {
            unreachable!("checked above");
        };
        match mid.handshake() {
            Ok(open) => {
                self.state = TlsState::Open(open);
                Ok(())
            }
            Err(HandshakeError::WouldBlock(mid)) => {
                self.state = TlsState::Handshaking(mid);
                Err(io::ErrorKind::WouldBlock.into())
            }
            Err(HandshakeError::Failure(mid)) => {
                let refused = self.refused(&mid);
                self.state = TlsState::Handshaking(mid);
                Err(refused)
            }
            // OpenSSL reports setup failures before a handshake starts; should one come
            // here after all, the connection ends like any failed handshake.
            Err(HandshakeError::SetupFailure(error)) => Err(io::Error::other(error)),
        }
    }

    /// Logs a failed handshake with who and why, and gives the error that closes the
    /// connection.
    fn refused(&self, mid: &MidHandshakeSslStream<TcpStream>) -> io::Error {
        let why = match mid.ssl().ex_data(self.psk_peer) {
            Some(peer) => format!(
                "host {} for subsystem {} presented a PSK that is not the configured one \
                 (check its tls_psk_file)",
                peer.host_nqn, peer.subsystem_nqn
            ),
            None => "no configured PSK identity came with a TLS 1.3 handshake (a host without \
                     TLS on this TLS listener, an identity not configured, or a cipher suite \
                     other than TLS_AES_128_GCM_SHA256)"
                .to_owned(),
        };
        log::warn!(
            "{}: TLS handshake refused: {why}: {}",
            self.peer,
            mid.error()
        );
        io::Error::other(format!("TLS handshake refused: {why}"))
    }
}
