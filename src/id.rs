//! Connection identity that stays valid across threads and detects slot reuse.

use std::fmt;

/// Identifies one connection for its whole life, across threads.
///
/// A `ConnId` names the loop that owns the connection, its slot in that loop's
/// slab and a generation number. Slots are reused once a connection closes; the
/// generation is what tells the old connection from the new one, so a command sent
/// with a stale id (for example [`Engine::send`](crate::Engine::send) to a
/// connection that has since closed) is dropped rather than delivered to whichever
/// connection took the slot next.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ConnId {
    pub(crate) loop_id: u16,
    pub(crate) slot: u32,
    pub(crate) generation: u32,
}

impl ConnId {
    /// Index of the event loop that owns the connection.
    pub fn loop_id(self) -> usize {
        self.loop_id as usize
    }

    /// The id packed into one `u64`, e.g. to use as a map key in another system.
    ///
    /// The layout is `loop (16 bits) | slot (24 bits) | generation (24 bits)`
    /// truncated, so it is unique only while fewer than 2^24 connections are open
    /// per loop; keep the `ConnId` itself where exactness matters.
    pub fn as_u64(self) -> u64 {
        ((self.loop_id as u64) << 48)
            | ((self.slot as u64 & 0xFF_FFFF) << 24)
            | (self.generation as u64 & 0xFF_FFFF)
    }
}

impl fmt::Debug for ConnId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl fmt::Display for ConnId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "conn#{}.{}.{}", self.loop_id, self.slot, self.generation)
    }
}
