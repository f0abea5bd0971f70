//! Addresses, listening sockets, connection streams and socket options.

mod addr;
pub(crate) mod listener;
pub mod mmsg;
mod printable;
pub(crate) mod reflection;
pub(crate) mod socket_file;
mod sockopt;
pub(crate) mod stream;

pub use addr::{AddrError, ListenAddr};
pub use sockopt::{Keepalive, SocketOptions};
