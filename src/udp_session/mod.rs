//! UDP sessions: connection-like per-peer state over a datagram socket.
//!
//! UDP has no connections, but a game server, a DNS-over-UDP resolver or a
//! QUIC-like protocol keeps per-peer state all the same. This module is the
//! sans-IO part of that: a [`SessionTable`] maps remote addresses to sessions
//! with typed state, a cap and an idle timeout on a timer wheel, and
//! [`Cookies`] check that a new source can receive at the address it claims
//! before the table spends anything on it. Neither reads a clock or touches a
//! socket; time is milliseconds passed in, so both are tested with a virtual
//! clock.
//!
//! The reactor side: [`EngineBuilder::listen_sessions`](crate::EngineBuilder::listen_sessions)
//! turns sessions on for a UDP listener; the handler's `on_new_source` (the
//! validation hook), `on_session_open`, `on_session_datagram` and
//! `on_session_close` see [`NewSource`] and [`Session`]; [`Udp`], reachable from
//! every callback of the loop, sends to a [`SessionId`] and dials sessions.

mod cookie;
mod options;
pub(crate) mod outbox;
mod session;
mod siphash;
mod source;
mod table;
pub(crate) mod udp;

use std::fmt;
use std::num::NonZeroU32;

pub use cookie::{COOKIE_LEN, Cookie, CookieKey, Cookies};
pub use options::SessionOptions;
pub use session::{Session, SessionClose};
pub use source::{Admit, NewSource};
pub use table::{Expired, InsertError, SessionTable};
pub use udp::Udp;

/// Identifies one UDP session for its whole life.
///
/// The table's tag (for the engine's tables, the loop and listener), the slot
/// and a generation: once a session ends its id goes stale, and a send or
/// lookup with it finds nothing rather than the session that reused the slot.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SessionId {
    pub(crate) tag: u32,
    pub(crate) slot: u32,
    pub(crate) generation: NonZeroU32,
}

impl SessionId {
    /// The tag of the table that issued it.
    pub fn tag(self) -> u32 {
        self.tag
    }

    /// Its slot in the table: dense, reused after the session ends.
    pub fn slot(self) -> u32 {
        self.slot
    }

    /// The slot's generation when the session opened.
    pub fn generation(self) -> u32 {
        self.generation.get()
    }

    /// The id packed into one `u64`: `tag (16 low bits) | slot (24) | generation (24)`,
    /// unique while a table holds fewer than 2^24 sessions.
    pub fn as_u64(self) -> u64 {
        ((self.tag as u64 & 0xFFFF) << 48)
            | ((self.slot as u64 & 0xFF_FFFF) << 24)
            | (self.generation.get() as u64 & 0xFF_FFFF)
    }
}

impl fmt::Debug for SessionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl fmt::Display for SessionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "session#{}.{}.{}", self.tag, self.slot, self.generation)
    }
}
