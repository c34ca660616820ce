//! The management thread: epoll over the control socket, its clients and a stop eventfd.
//! Requests are JSON values, newline-delimited or back to back (SPDK's rpc.py sends objects
//! without a newline); each is answered in order with one line. Requests are carried out one
//! at a time, so changes never interleave; clients connected at once are all served.
//!
//! The [`ManagementServer`] handle owns the thread: dropping it stops the thread, which drops
//! the socket (removing its file) and every client, and joins it.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::os::fd::AsFd;
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use nix::sys::epoll::{Epoll, EpollCreateFlags, EpollEvent, EpollFlags, EpollTimeout};
use nix::sys::eventfd::{EfdFlags, EventFd};
use serde_json::Value;

use super::context::Management;
use super::methods::dispatch;
use super::protocol::{response, Request, RpcError, PARSE_ERROR};
use super::socket::{ControlSocket, SocketError};

const LISTENER_TOKEN: u64 = 0;
const STOP_TOKEN: u64 = 1;
const FIRST_CLIENT_TOKEN: u64 = 2;
/// A request is at most this long; a client sending more is answered a parse error and
/// closed.
const MAX_REQUEST_BYTES: usize = 1 << 20;
/// A client that does not take its answer within this is dropped (the thread serves others).
const WRITE_TIMEOUT: Duration = Duration::from_secs(5);

/// The running management thread.
pub struct ManagementServer {
    stop: Arc<EventFd>,
    thread: Option<JoinHandle<()>>,
}

impl ManagementServer {
    /// Binds the socket at `path` and starts the thread serving it for `management`.
    pub fn start(path: &Path, management: Management) -> Result<Self, SocketError> {
        let io = |source| SocketError::Io {
            path: path.to_owned(),
            source,
        };
        let socket = ControlSocket::bind(path)?;
        let stop = Arc::new(
            EventFd::from_value_and_flags(0, EfdFlags::EFD_NONBLOCK).map_err(|e| io(e.into()))?,
        );
        let epoll = Epoll::new(EpollCreateFlags::EPOLL_CLOEXEC).map_err(|e| io(e.into()))?;
        epoll
            .add(
                socket.listener().as_fd(),
                EpollEvent::new(EpollFlags::EPOLLIN, LISTENER_TOKEN),
            )
            .map_err(|e| io(e.into()))?;
        epoll
            .add(
                stop.as_fd(),
                EpollEvent::new(EpollFlags::EPOLLIN, STOP_TOKEN),
            )
            .map_err(|e| io(e.into()))?;
        log::info!("management socket: {}", socket.path().display());
        let server = Server {
            socket,
            epoll,
            clients: BTreeMap::new(),
            next_token: FIRST_CLIENT_TOKEN,
            management,
        };
        let stop_for_thread = Arc::clone(&stop);
        let thread = std::thread::Builder::new()
            .name("management".into())
            .spawn(move || server.run(&stop_for_thread))
            .map_err(io)?;
        Ok(Self {
            stop,
            thread: Some(thread),
        })
    }
}

impl Drop for ManagementServer {
    fn drop(&mut self) {
        let _ = self.stop.write(1);
        if let Some(thread) = self.thread.take() {
            if thread.join().is_err() {
                log::error!("the management thread panicked");
            }
        }
    }
}

struct Client {
    stream: UnixStream,
    /// Bytes received and not yet a whole request.
    pending: Vec<u8>,
}

struct Server {
    socket: ControlSocket,
    epoll: Epoll,
    clients: BTreeMap<u64, Client>,
    next_token: u64,
    management: Management,
}

impl Server {
    fn run(mut self, stop: &EventFd) {
        let mut events = [EpollEvent::empty(); 16];
        loop {
            let ready = match self.epoll.wait(&mut events, EpollTimeout::NONE) {
                Ok(ready) => ready,
                Err(nix::errno::Errno::EINTR) => continue,
                Err(error) => {
                    log::error!("management socket: epoll failed ({error}); it stops answering");
                    return;
                }
            };
            for event in &events[..ready] {
                match event.data() {
                    STOP_TOKEN => {
                        let _ = stop.read();
                        return;
                    }
                    LISTENER_TOKEN => self.accept(),
                    token => self.serve(token),
                }
            }
        }
    }

    fn accept(&mut self) {
        loop {
            match self.socket.listener().accept() {
                Ok((stream, _)) => {
                    // Blocking: read only when epoll says there is input, so a read never
                    // waits; writes wait at most WRITE_TIMEOUT.
                    if stream.set_nonblocking(false).is_err()
                        || stream.set_write_timeout(Some(WRITE_TIMEOUT)).is_err()
                    {
                        continue;
                    }
                    let token = self.next_token;
                    self.next_token += 1;
                    let watched = self
                        .epoll
                        .add(stream.as_fd(), EpollEvent::new(EpollFlags::EPOLLIN, token));
                    if watched.is_ok() {
                        self.clients.insert(
                            token,
                            Client {
                                stream,
                                pending: Vec::new(),
                            },
                        );
                    }
                }
                Err(error) if error.kind() == std::io::ErrorKind::WouldBlock => return,
                Err(error) => {
                    log::warn!("management socket: accept failed: {error}");
                    return;
                }
            }
        }
    }

    /// Reads what client `token` sent and answers every whole request in it.
    fn serve(&mut self, token: u64) {
        let Some(client) = self.clients.get_mut(&token) else {
            return;
        };
        let mut chunk = [0u8; 16 * 1024];
        let keep = match client.stream.read(&mut chunk) {
            Ok(0) | Err(_) => false,
            Ok(len) => {
                client.pending.extend_from_slice(&chunk[..len]);
                answer(client, &mut self.management)
            }
        };
        if !keep {
            if let Some(client) = self.clients.remove(&token) {
                let _ = self.epoll.delete(client.stream.as_fd());
            }
        }
    }
}

/// Answers the whole requests in `client.pending`, leaving a partial one there. Returns
/// whether to keep the client (not after a parse error or a failed write).
fn answer(client: &mut Client, management: &mut Management) -> bool {
    let mut values = serde_json::Deserializer::from_slice(&client.pending).into_iter::<Value>();
    let mut answers = Vec::new();
    let mut consumed = 0;
    let mut keep = true;
    loop {
        match values.next() {
            None => {
                consumed = values.byte_offset();
                break;
            }
            Some(Ok(value)) => {
                consumed = values.byte_offset();
                if let Some(answer) = handle(value, management) {
                    answers.push(answer);
                }
            }
            Some(Err(error)) if error.is_eof() && client.pending.len() <= MAX_REQUEST_BYTES => {
                break
            }
            Some(Err(error)) => {
                let why = if error.is_eof() {
                    format!("a request is at most {MAX_REQUEST_BYTES} bytes")
                } else {
                    format!("not JSON: {error}")
                };
                answers.push(response(Value::Null, Err(RpcError::new(PARSE_ERROR, why))));
                keep = false;
                break;
            }
        }
    }
    client.pending.drain(..consumed);
    for answer in answers {
        let mut line = answer.to_string();
        line.push('\n');
        if client.stream.write_all(line.as_bytes()).is_err() {
            return false;
        }
    }
    keep
}

/// The answer to request `value` (`None` for a notification).
fn handle(value: Value, management: &mut Management) -> Option<Value> {
    match Request::parse(value) {
        Err((id, error)) => Some(response(id, Err(error))),
        Ok(request) => {
            let outcome = dispatch(management, &request.method, request.params);
            if let Err(error) = &outcome {
                log::info!("management: {} refused: {}", request.method, error.message);
            }
            request.id.map(|id| response(id, outcome))
        }
    }
}
