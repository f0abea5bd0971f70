//! The validation hook's view of a datagram from a source without a session.

use std::net::SocketAddr;

use super::outbox::{Outbox, Target};
use super::{Cookie, Cookies};

/// What [`EventHandler::on_new_source`](crate::EventHandler::on_new_source)
/// decides for a source without a session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[must_use]
pub enum Admit {
    /// Open a session for the source and deliver this datagram to it.
    Open,
    /// Keep nothing; the datagram is dropped (after any reply the hook sent).
    Drop,
}

/// A datagram from a source that has no session yet.
///
/// The source address is unproven: anyone can write it. Before admitting, a
/// server should prove the peer receives there with a cookie round trip:
/// answer the first datagram with [`NewSource::cookie`] and admit only a
/// datagram that carries it back ([`NewSource::check_cookie`]). The check
/// keeps no state, so spoofed sources cost one reply each and no memory.
#[derive(Debug)]
pub struct NewSource<'a> {
    pub(crate) data: &'a [u8],
    pub(crate) peer: SocketAddr,
    pub(crate) listener: usize,
    pub(crate) cookies: &'a Cookies,
    pub(crate) clock_ms: u64,
    pub(crate) out: &'a mut Outbox,
}

impl<'a> NewSource<'a> {
    /// The payload.
    pub fn data(&self) -> &'a [u8] {
        self.data
    }

    /// The claimed source address.
    pub fn peer(&self) -> SocketAddr {
        self.peer
    }

    /// The listener's index among the builder's addresses.
    pub fn listener(&self) -> usize {
        self.listener
    }

    /// A cookie for this source, to send back with [`NewSource::reply`].
    pub fn cookie(&self) -> Cookie {
        self.cookies.mint(self.peer, self.clock_ms)
    }

    /// Whether `bytes` is a cookie minted for this source recently.
    pub fn check_cookie(&self, bytes: &[u8]) -> bool {
        self.cookies.check(self.peer, bytes, self.clock_ms)
    }

    /// Sends `data` to the source (queued and sent with the loop's batch).
    /// Returns `false` when the loop's outgoing queue is full.
    pub fn reply(&mut self, data: &[u8]) -> bool {
        let to = Target::Addr {
            listener: self.listener,
            addr: self.peer,
        };
        self.out.push(to, data)
    }
}
