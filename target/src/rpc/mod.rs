//! The management interface: JSON-RPC 2.0 over a Unix socket (`[target] rpc_socket`), served
//! by one thread the [`Target`](crate::tgt::Target) owns. Method names and shapes follow
//! SPDK's `rpc.py` where they fit; docs/rpc.md is the reference.
//!
//! - `socket.rs`: the socket file (mode 0600, stale ones replaced, live ones refused);
//! - `protocol.rs`: requests, responses, error codes, params whose errors name the field;
//! - `params.rs`: each method's params, SPDK's extra fields accepted or refused by name;
//! - `context.rs`: the running configuration every change is checked against;
//! - `subsystems.rs`: the `nvmf_*` methods of subsystems and controllers; `hosts.rs`: those
//!   of their hosts and the hosts' keys; `listeners.rs`: those of listeners, which open and
//!   close them; `namespaces.rs`: `nvmf_subsystem_add_ns` / `remove_ns`; `keyring.rs`: SPDK's
//!   file keyring (`keyring_file_add_key` ...), whose keys `nvmf_subsystem_add_host` and
//!   `nvmf_subsystem_set_keys` give hosts;
//! - `methods.rs`: the table, the dispatch and the methods about the whole
//!   (`rpc_get_methods`, `save_config`);
//! - `server.rs`: the thread and its clients.
//!
//! Subsystems and their hosts are read at Connect time only: the management thread changes
//! them under the registry's locks, and the I/O path never takes one.

mod context;
mod hosts;
mod keyring;
mod listeners;
mod methods;
mod namespaces;
mod params;
mod protocol;
mod server;
mod socket;
mod stats;
mod subsystems;

pub use context::Management;
pub use protocol::{
    INTERNAL_ERROR, INVALID_PARAMS, INVALID_REQUEST, METHOD_NOT_FOUND, PARSE_ERROR,
};
pub use server::ManagementServer;
pub use socket::SocketError;
