//! Sending datagrams and managing sessions from any callback of a loop.

use std::io;
use std::net::SocketAddr;
use std::num::NonZeroU32;

use mio::net::UdpSocket;

use super::SessionId;
use super::outbox::{Outbox, Target};

/// The listener tag of sessions this side dialed ([`Udp::connect`]).
pub(crate) const DIALED: u32 = 0xFFFF;

/// The tag of a session table: loop in the high half, listener in the low.
pub(crate) fn tag(loop_id: usize, listener: u32) -> u32 {
    ((loop_id as u32) << 16) | (listener & 0xFFFF)
}

/// One dialed UDP socket: connected to its peer, its own ephemeral port.
#[derive(Debug)]
pub(crate) struct DialedSlot {
    pub(crate) generation: NonZeroU32,
    pub(crate) socket: Option<UdpSocket>,
    pub(crate) peer: SocketAddr,
}

/// The loop's UDP output and session requests, shared by every callback.
#[derive(Debug)]
pub(crate) struct UdpOut {
    pub(crate) outbox: Outbox,
    /// Sessions a callback asked to close, applied after it returns.
    pub(crate) closes: Vec<SessionId>,
    pub(crate) dialed: Vec<DialedSlot>,
    pub(crate) dialed_free: Vec<u32>,
    /// Dialed slots not yet registered with the poller nor opened.
    pub(crate) dialed_new: Vec<u32>,
}

impl UdpOut {
    pub(crate) fn new(max_bytes: usize) -> Self {
        UdpOut {
            outbox: Outbox::new(max_bytes),
            closes: Vec::new(),
            dialed: Vec::new(),
            dialed_free: Vec::new(),
            dialed_new: Vec::new(),
        }
    }

    /// The public handle callbacks send through.
    pub(crate) fn handle(&mut self, loop_id: usize) -> Udp<'_> {
        Udp { out: self, loop_id }
    }

    /// The dialed slot of `id`, if it is a live dialed session.
    pub(crate) fn dialed(&self, id: SessionId) -> Option<&DialedSlot> {
        if id.tag & 0xFFFF != DIALED {
            return None;
        }
        let slot = self.dialed.get(id.slot as usize)?;
        (slot.generation == id.generation && slot.socket.is_some()).then_some(slot)
    }

    /// Frees a dialed slot, returning its socket.
    pub(crate) fn release_dialed(&mut self, slot: u32) -> Option<UdpSocket> {
        let s = self.dialed.get_mut(slot as usize)?;
        let socket = s.socket.take()?;
        s.generation = s.generation.checked_add(1).unwrap_or(NonZeroU32::MIN);
        self.dialed_free.push(slot);
        Some(socket)
    }
}

/// UDP from any callback of a loop: send to sessions and addresses, close
/// sessions, dial new ones.
///
/// Everything sent is queued and goes out after the loop has run the
/// callbacks of its current iteration (events, timers, the tick), in the order
/// queued, with `sendmmsg(2)` batches per socket: a tick that sends a snapshot
/// to every player costs one system call per batch of up to 64 datagrams.
/// UDP promises nothing: a datagram to a session that has ended by then, or
/// that the socket refuses, is dropped and counted in
/// `Counts::datagrams_dropped`.
#[derive(Debug)]
pub struct Udp<'a> {
    pub(crate) out: &'a mut UdpOut,
    pub(crate) loop_id: usize,
}

impl Udp<'_> {
    /// Queues `data` for session `to` of this loop. Returns `false` when it is
    /// dropped at once: the id belongs to another loop, or the loop's queue
    /// (`Options::max_udp_queued` bytes) is full.
    pub fn send(&mut self, to: SessionId, data: &[u8]) -> bool {
        if (to.tag >> 16) as usize != self.loop_id {
            return false;
        }
        self.out.outbox.push(Target::Session(to), data)
    }

    /// Queues `data` for `addr` from UDP listener `listener` (its index among
    /// the builder's addresses) on this loop. Returns `false` when the queue is
    /// full.
    pub fn send_to(&mut self, listener: usize, addr: SocketAddr, data: &[u8]) -> bool {
        self.out.outbox.push(Target::Addr { listener, addr }, data)
    }

    /// Closes session `id` after the current callback: `on_session_close` runs
    /// with [`SessionClose::Local`](super::SessionClose::Local). A stale id is
    /// ignored.
    pub fn close(&mut self, id: SessionId) {
        self.out.closes.push(id);
    }

    /// Dials a UDP session to `peer` from a new socket on an ephemeral port,
    /// connected to `peer` (so only its datagrams arrive). The session opens
    /// (`on_session_open`) after the current callback returns, with a default
    /// state; it has no idle timeout. Sends to it may be queued at once.
    ///
    /// # Errors
    ///
    /// Creating, binding or connecting the socket failed (e.g. out of
    /// descriptors).
    pub fn connect(&mut self, peer: SocketAddr) -> io::Result<SessionId> {
        let any: SocketAddr = if peer.is_ipv4() {
            (std::net::Ipv4Addr::UNSPECIFIED, 0).into()
        } else {
            (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
        };
        let socket = UdpSocket::bind(any)?;
        socket.connect(peer)?;
        let slot = match self.out.dialed_free.pop() {
            Some(slot) => slot,
            None => {
                self.out.dialed.push(DialedSlot {
                    generation: NonZeroU32::MIN,
                    socket: None,
                    peer,
                });
                (self.out.dialed.len() - 1) as u32
            }
        };
        let s = &mut self.out.dialed[slot as usize];
        s.socket = Some(socket);
        s.peer = peer;
        self.out.dialed_new.push(slot);
        Ok(SessionId {
            tag: tag(self.loop_id, DIALED),
            slot,
            generation: s.generation,
        })
    }

    /// Datagrams queued and not yet sent.
    pub fn queued(&self) -> usize {
        self.out.outbox.len()
    }
}
