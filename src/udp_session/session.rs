//! What a session callback sees of its session, and why sessions end.

use std::fmt;
use std::net::SocketAddr;
use std::time::Instant;

use super::SessionId;
use super::outbox::Target;
use super::udp::{DIALED, Udp, UdpOut};
use crate::engine::Engine;

/// Why a UDP session ended. `on_session_close` receives exactly one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum SessionClose {
    /// The application closed it ([`Session::close`], [`Udp::close`],
    /// `Action::Close` from a session callback).
    Local,
    /// No datagram from the peer for the listener's idle timeout.
    IdleTimeout,
    /// A dialed session's socket failed (e.g. the peer's port is closed:
    /// `ECONNREFUSED` from an ICMP error).
    Error,
    /// The engine is stopping.
    Shutdown,
}

impl fmt::Display for SessionClose {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            SessionClose::Local => "closed locally",
            SessionClose::IdleTimeout => "idle timeout",
            SessionClose::Error => "socket error",
            SessionClose::Shutdown => "engine shutdown",
        })
    }
}

/// One UDP session as a callback sees it: its state, its peer, a way to send.
#[derive(Debug)]
pub struct Session<'a, S> {
    pub(crate) id: SessionId,
    pub(crate) peer: SocketAddr,
    pub(crate) state: &'a mut S,
    pub(crate) out: &'a mut UdpOut,
    pub(crate) loop_id: usize,
    pub(crate) close: bool,
    pub(crate) now: Instant,
    pub(crate) engine: &'a Engine,
}

impl<S> Session<'_, S> {
    /// The session's id: keep it to send to the session from other callbacks
    /// of this loop (`udp().send(id, …)`).
    pub fn id(&self) -> SessionId {
        self.id
    }

    /// The peer's address.
    pub fn peer(&self) -> SocketAddr {
        self.peer
    }

    /// The listener's index among the builder's addresses, or `None` for a
    /// session this side dialed.
    pub fn listener(&self) -> Option<usize> {
        let l = self.id.tag & 0xFFFF;
        (l != DIALED).then_some(l as usize)
    }

    /// The per-session state.
    pub fn state(&self) -> &S {
        self.state
    }

    /// The per-session state, mutably.
    pub fn state_mut(&mut self) -> &mut S {
        self.state
    }

    /// Queues `data` for the peer; see [`Udp`] for when it is sent. Returns
    /// `false` when the loop's queue is full.
    pub fn send(&mut self, data: &[u8]) -> bool {
        let to = match self.listener() {
            Some(listener) => Target::Addr {
                listener,
                addr: self.peer,
            },
            None => Target::Session(self.id),
        };
        self.out.outbox.push(to, data)
    }

    /// Ends the session after this callback (`on_session_close` with
    /// [`SessionClose::Local`]). Datagrams already queued for it are sent.
    pub fn close(&mut self) {
        self.close = true;
    }

    /// UDP for the rest of the loop: other sessions, addresses, dialing.
    pub fn udp(&mut self) -> Udp<'_> {
        self.out.handle(self.loop_id)
    }

    /// The loop's index.
    pub fn loop_id(&self) -> usize {
        self.loop_id
    }

    /// The loop's clock, read once per loop iteration.
    pub fn now(&self) -> Instant {
        self.now
    }

    /// The engine.
    pub fn engine(&self) -> &Engine {
        self.engine
    }
}
