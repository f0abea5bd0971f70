//! The session table: remote address → session, with typed state, a cap and
//! idle expiry on a timer wheel (sans-IO: time is passed in).

use std::collections::HashMap;
use std::fmt;
use std::net::SocketAddr;
use std::num::NonZeroU32;

use super::SessionId;
use crate::timer::{TimerId, TimerWheel};

/// Why [`SessionTable::insert`] created no session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InsertError {
    /// The table holds its maximum number of sessions.
    Full,
    /// The address already has this session.
    Exists(SessionId),
}

impl fmt::Display for InsertError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            InsertError::Full => f.write_str("session table is full"),
            InsertError::Exists(id) => write!(f, "address already has {id}"),
        }
    }
}

impl std::error::Error for InsertError {}

struct Live<S> {
    addr: SocketAddr,
    /// Loop time of the last datagram from the peer.
    last_active: u64,
    timer: Option<TimerId>,
    state: S,
}

struct Slot<S> {
    generation: NonZeroU32,
    live: Option<Live<S>>,
}

/// A session that expired, removed from the table by
/// [`SessionTable::poll_expired`].
#[derive(Debug)]
pub struct Expired<S> {
    /// Its id, now stale.
    pub id: SessionId,
    /// The peer.
    pub addr: SocketAddr,
    /// Its state.
    pub state: S,
}

/// UDP sessions of one socket, keyed by remote address.
///
/// Each session has an id (slot and generation: an id kept after the session
/// ended never reaches the session that reuses its slot), a typed state `S`
/// and, when the table has an idle timeout, one entry in the table's timer
/// wheel. [`touch`](Self::touch) only stamps the session's last activity; its
/// entry fires at the original deadline, finds the session active since and is
/// re-armed for the remainder, so a busy session costs no timer operation per
/// datagram (the same scheme as connections' idle timeouts).
///
/// The table never reads a clock: every time is a `u64` of milliseconds on the
/// caller's clock.
///
/// # Examples
///
/// ```
/// use tether::udp_session::SessionTable;
///
/// let mut table: SessionTable<u32> = SessionTable::new(0, 2, 1_000, 0);
/// let peer = "192.0.2.1:9000".parse().unwrap();
/// let id = table.insert(peer, 7, 0).unwrap();
/// assert_eq!(table.lookup(peer), Some(id));
/// table.touch(id, 600);
/// assert!(table.poll_expired(1_000).is_none()); // active at 600: lives to 1 600
/// let gone = table.poll_expired(1_600).unwrap();
/// assert_eq!((gone.id, gone.state), (id, 7));
/// assert!(table.get(id).is_none());
/// ```
pub struct SessionTable<S> {
    by_addr: HashMap<SocketAddr, u32>,
    slots: Vec<Slot<S>>,
    free: Vec<u32>,
    wheel: TimerWheel<u32>,
    max: usize,
    idle_ms: u64,
    tag: u32,
}

impl<S> SessionTable<S> {
    /// An empty table for at most `max` sessions, expiring sessions idle for
    /// `idle_ms` (0: never), whose clock reads `now_ms`. `tag` is stamped on
    /// every id it issues (the reactor puts its loop and listener there) and
    /// ids with another tag are not found.
    pub fn new(tag: u32, max: usize, idle_ms: u64, now_ms: u64) -> Self {
        SessionTable {
            by_addr: HashMap::new(),
            slots: Vec::new(),
            free: Vec::new(),
            wheel: TimerWheel::new(now_ms),
            max: max.min(u32::MAX as usize - 1),
            idle_ms,
            tag,
        }
    }

    /// Sessions open.
    pub fn len(&self) -> usize {
        self.by_addr.len()
    }

    /// Whether no session is open.
    pub fn is_empty(&self) -> bool {
        self.by_addr.is_empty()
    }

    /// The most sessions the table holds.
    pub fn max(&self) -> usize {
        self.max
    }

    /// Whether another session fits.
    pub fn is_full(&self) -> bool {
        self.len() >= self.max
    }

    /// The idle timeout in milliseconds (0: none).
    pub fn idle_ms(&self) -> u64 {
        self.idle_ms
    }

    /// The session of `addr`, if any.
    pub fn lookup(&self, addr: SocketAddr) -> Option<SessionId> {
        let slot = *self.by_addr.get(&addr)?;
        Some(self.id_of(slot))
    }

    /// Opens a session for `addr` with `state` at time `now_ms`.
    ///
    /// # Errors
    ///
    /// [`InsertError::Exists`] when `addr` already has a session (the state is
    /// dropped), [`InsertError::Full`] at the cap.
    pub fn insert(
        &mut self,
        addr: SocketAddr,
        state: S,
        now_ms: u64,
    ) -> Result<SessionId, InsertError> {
        if let Some(id) = self.lookup(addr) {
            return Err(InsertError::Exists(id));
        }
        if self.is_full() {
            return Err(InsertError::Full);
        }
        let slot = match self.free.pop() {
            Some(slot) => slot,
            None => {
                self.slots.push(Slot {
                    generation: NonZeroU32::MIN,
                    live: None,
                });
                (self.slots.len() - 1) as u32
            }
        };
        let timer = (self.idle_ms > 0)
            .then(|| self.wheel.insert(now_ms.saturating_add(self.idle_ms), slot));
        self.slots[slot as usize].live = Some(Live {
            addr,
            last_active: now_ms,
            timer,
            state,
        });
        self.by_addr.insert(addr, slot);
        Ok(self.id_of(slot))
    }

    /// Records traffic from the session at `now_ms`, postponing its expiry.
    /// Returns `false` for a stale id.
    pub fn touch(&mut self, id: SessionId, now_ms: u64) -> bool {
        match self.live_mut(id) {
            Some(live) => {
                live.last_active = live.last_active.max(now_ms);
                true
            }
            None => false,
        }
    }

    /// Ends a session, returning its address and state; `None` for a stale id.
    pub fn remove(&mut self, id: SessionId) -> Option<(SocketAddr, S)> {
        self.live_mut(id)?;
        let live = self.release(id.slot)?;
        if let Some(t) = live.timer {
            self.wheel.cancel(t);
        }
        Some((live.addr, live.state))
    }

    /// The session's state.
    pub fn get(&self, id: SessionId) -> Option<&S> {
        self.live(id).map(|l| &l.state)
    }

    /// The session's state, mutably.
    pub fn get_mut(&mut self, id: SessionId) -> Option<&mut S> {
        self.live_mut(id).map(|l| &mut l.state)
    }

    /// The session's peer address.
    pub fn addr(&self, id: SessionId) -> Option<SocketAddr> {
        self.live(id).map(|l| l.addr)
    }

    /// Every open session, in slot order.
    pub fn iter(&self) -> impl Iterator<Item = (SessionId, SocketAddr, &S)> + '_ {
        let tag = self.tag;
        self.slots.iter().enumerate().filter_map(move |(i, s)| {
            let live = s.live.as_ref()?;
            Some((id(tag, i as u32, s.generation), live.addr, &live.state))
        })
    }

    /// Every open session with its state mutable, in slot order.
    pub fn iter_mut(&mut self) -> impl Iterator<Item = (SessionId, SocketAddr, &mut S)> + '_ {
        let tag = self.tag;
        self.slots.iter_mut().enumerate().filter_map(move |(i, s)| {
            let live = s.live.as_mut()?;
            Some((id(tag, i as u32, s.generation), live.addr, &mut live.state))
        })
    }

    /// When [`poll_expired`](Self::poll_expired) next has work: a lower bound
    /// on the earliest expiry, or `None` without sessions to expire.
    pub fn next_expiry(&self) -> Option<u64> {
        self.wheel.next_expiry()
    }

    /// Removes and returns one session idle for the timeout at `now_ms`; call
    /// until `None`. Sessions active since their entry was armed are re-armed
    /// for the remainder instead.
    pub fn poll_expired(&mut self, now_ms: u64) -> Option<Expired<S>> {
        while let Some((_, slot)) = self.wheel.poll_expired(now_ms) {
            let Some(live) = self
                .slots
                .get_mut(slot as usize)
                .and_then(|s| s.live.as_mut())
            else {
                continue;
            };
            let deadline = live.last_active + self.idle_ms;
            if deadline > now_ms {
                live.timer = Some(self.wheel.insert(deadline, slot));
                continue;
            }
            live.timer = None;
            let id = self.id_of(slot);
            let live = self.release(slot)?;
            return Some(Expired {
                id,
                addr: live.addr,
                state: live.state,
            });
        }
        None
    }

    fn id_of(&self, slot: u32) -> SessionId {
        id(self.tag, slot, self.slots[slot as usize].generation)
    }

    fn live(&self, id: SessionId) -> Option<&Live<S>> {
        let slot = self.slots.get(id.slot as usize)?;
        if id.tag != self.tag || slot.generation != id.generation {
            return None;
        }
        slot.live.as_ref()
    }

    fn live_mut(&mut self, id: SessionId) -> Option<&mut Live<S>> {
        let slot = self.slots.get_mut(id.slot as usize)?;
        if id.tag != self.tag || slot.generation != id.generation {
            return None;
        }
        slot.live.as_mut()
    }

    /// Frees a slot: its generation moves on so ids issued for it go stale.
    fn release(&mut self, slot: u32) -> Option<Live<S>> {
        let s = self.slots.get_mut(slot as usize)?;
        let live = s.live.take()?;
        s.generation = s.generation.checked_add(1).unwrap_or(NonZeroU32::MIN);
        self.by_addr.remove(&live.addr);
        self.free.push(slot);
        Some(live)
    }
}

fn id(tag: u32, slot: u32, generation: NonZeroU32) -> SessionId {
    SessionId {
        tag,
        slot,
        generation,
    }
}

impl<S> fmt::Debug for SessionTable<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SessionTable")
            .field("len", &self.len())
            .field("max", &self.max)
            .field("idle_ms", &self.idle_ms)
            .finish_non_exhaustive()
    }
}
