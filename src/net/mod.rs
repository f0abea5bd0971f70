//! Addresses and listening sockets.

mod addr;
pub(crate) mod listener;

pub use addr::{AddrError, ListenAddr};
