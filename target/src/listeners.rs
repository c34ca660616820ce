//! The target's listeners: the table every thread reads (where each listens, over which
//! channel, whether it still does), and the acceptor's sockets, which the management thread
//! opens and closes while the target runs (`nvmf_subsystem_add_listener` with a new address,
//! `nvmf_subsystem_remove_listener` of the last subsystem on one, as SPDK's listeners go with
//! their last subsystem).
//!
//! A listener's index never changes and is never reused: connections, subsystems' reachable
//! listeners and port IDs name listeners by index, so a closed listener keeps its slot and a
//! listener opened again at the same address gets a new one. The table is read at accept,
//! Connect and discovery time, never on the I/O path.
//!
//! The management thread binds a new socket itself (so that a refused address is its error to
//! report) and hands it over through [`ListenerControl`]: a queue and an eventfd the acceptor
//! waits on beside its listeners.

use std::net::{SocketAddr, TcpListener};
use std::os::fd::AsFd;
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use nix::sys::epoll::{Epoll, EpollEvent, EpollFlags};
use nix::sys::eventfd::{EfdFlags, EventFd};

use crate::config::SecureChannel;

/// One listener as hosts and the discovery log see it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ListenerInfo {
    pub address: SocketAddr,
    pub secure_channel: SecureChannel,
    /// Closed listeners keep their index; nothing reaches them.
    pub open: bool,
}

impl ListenerInfo {
    /// An open plain (not TLS) listener on `address`.
    pub fn plain(address: SocketAddr) -> ListenerInfo {
        ListenerInfo {
            address,
            secure_channel: SecureChannel::None,
            open: true,
        }
    }
}

/// Every listener the target has had, by index.
pub struct ListenerTable {
    entries: RwLock<Vec<ListenerInfo>>,
}

impl ListenerTable {
    pub fn new(entries: Vec<ListenerInfo>) -> ListenerTable {
        ListenerTable {
            entries: RwLock::new(entries),
        }
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Vec<ListenerInfo>> {
        self.entries
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Listener `index` (every index handed out is in the table).
    pub fn get(&self, index: usize) -> ListenerInfo {
        self.read()[index]
    }

    /// Every listener, closed ones included, by index.
    pub fn all(&self) -> Vec<ListenerInfo> {
        self.read().clone()
    }

    /// The open listener on `address`, if any.
    pub fn find_open(&self, address: SocketAddr) -> Option<usize> {
        self.read()
            .iter()
            .position(|info| info.open && info.address == address)
    }

    /// Adds a listener; returns its index.
    pub(crate) fn push(&self, info: ListenerInfo) -> usize {
        let mut entries = self
            .entries
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        entries.push(info);
        entries.len() - 1
    }

    pub(crate) fn mark_closed(&self, index: usize) {
        self.entries
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner())[index]
            .open = false;
    }
}

/// What the management thread asks of the acceptor.
enum ListenerChange {
    /// Accept on this socket, listener `index`.
    Open(usize, TcpListener),
    /// Stop accepting on listener `index` and close its socket; then say so.
    Close(usize, Sender<()>),
}

/// The management thread's end of the acceptor's inbox.
pub struct ListenerControl {
    changes: Sender<ListenerChange>,
    wake: Arc<EventFd>,
}

/// How long the management thread waits for the acceptor to close a socket.
const CLOSE_WAIT: Duration = Duration::from_secs(5);

impl ListenerControl {
    /// Hands `socket`, listener `index` of the table, to the acceptor.
    pub fn open(&self, index: usize, socket: TcpListener) {
        self.send(ListenerChange::Open(index, socket));
    }

    /// Asks the acceptor to close listener `index`; returns once it has (or the acceptor is
    /// gone: the target is stopping).
    pub fn close(&self, index: usize) {
        let (done, closed) = mpsc::channel();
        self.send(ListenerChange::Close(index, done));
        if closed.recv_timeout(CLOSE_WAIT).is_err() {
            log::warn!("listener {index}: the acceptor did not confirm closing it");
        }
    }

    fn send(&self, change: ListenerChange) {
        // A send fails only when the acceptor is gone, and with it every socket.
        if self.changes.send(change).is_ok() {
            let _ = self.wake.write(1);
        }
    }
}

/// The acceptor's sockets, by listener index (`None`: closed), and its end of the inbox.
pub struct AcceptorListeners {
    sockets: Vec<Option<TcpListener>>,
    changes: Receiver<ListenerChange>,
    wake: Arc<EventFd>,
}

/// The inbox's epoll token (listeners count from 0).
pub const CHANGE_TOKEN: u64 = u64::MAX - 1;

impl AcceptorListeners {
    /// The acceptor's side for `sockets` (registered in `epoll` by their index) and the
    /// management thread's [`ListenerControl`].
    pub fn new(
        sockets: Vec<TcpListener>,
        epoll: &Epoll,
    ) -> nix::Result<(AcceptorListeners, ListenerControl)> {
        let wake = Arc::new(EventFd::from_value_and_flags(
            0,
            EfdFlags::EFD_NONBLOCK | EfdFlags::EFD_CLOEXEC,
        )?);
        epoll.add(
            wake.as_fd(),
            EpollEvent::new(EpollFlags::EPOLLIN, CHANGE_TOKEN),
        )?;
        let (sender, changes) = mpsc::channel();
        let listeners = AcceptorListeners {
            sockets: sockets.into_iter().map(Some).collect(),
            changes,
            wake: Arc::clone(&wake),
        };
        listeners.register(epoll);
        Ok((
            listeners,
            ListenerControl {
                changes: sender,
                wake,
            },
        ))
    }

    /// Listener `index`'s socket, if open.
    pub fn socket(&self, index: usize) -> Option<&TcpListener> {
        self.sockets.get(index).and_then(Option::as_ref)
    }

    /// Puts every open socket in `epoll` (at start, and when accepting resumes).
    pub fn register(&self, epoll: &Epoll) {
        for (index, socket) in self.sockets.iter().enumerate() {
            if let Some(socket) = socket {
                add(epoll, index, socket);
            }
        }
    }

    /// Takes every socket out of `epoll` (accepting pauses).
    pub fn unregister(&self, epoll: &Epoll) {
        for socket in self.sockets.iter().flatten() {
            let _ = epoll.delete(socket.as_fd());
        }
    }

    /// Carries out what the management thread asked; new sockets join `epoll` unless
    /// accepting is paused (they join when it resumes).
    pub fn apply_changes(&mut self, epoll: &Epoll, paused: bool) {
        let _ = self.wake.read();
        while let Ok(change) = self.changes.try_recv() {
            match change {
                ListenerChange::Open(index, socket) => {
                    if !paused {
                        add(epoll, index, &socket);
                    }
                    if self.sockets.len() <= index {
                        self.sockets.resize_with(index + 1, || None);
                    }
                    log::info!("listening on {:?}", socket.local_addr());
                    self.sockets[index] = Some(socket);
                }
                ListenerChange::Close(index, done) => {
                    if let Some(socket) = self.sockets.get_mut(index).and_then(Option::take) {
                        let _ = epoll.delete(socket.as_fd());
                        log::info!("stopped listening on {:?}", socket.local_addr());
                    }
                    let _ = done.send(());
                }
            }
        }
    }
}

fn add(epoll: &Epoll, index: usize, socket: &TcpListener) {
    let event = EpollEvent::new(EpollFlags::EPOLLIN, index as u64);
    if let Err(error) = epoll.add(socket.as_fd(), event) {
        log::error!("cannot accept on {:?}: {error}", socket.local_addr());
    }
}
