//! What a callback sees of one connection.

use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use socket2::SockRef;

use crate::client::DialId;
use crate::ctx::LoopCtx;
use crate::engine::Engine;
use crate::event_loop::core::{LoopCore, NO_LISTENER, PeerSlots, SlotIo, UserTimer};
use crate::id::ConnId;
use crate::reason::{CloseReason, Idle};
use crate::timeouts::TimeoutCfg;
use crate::timer::deadline::ms_after;
use crate::topics::TopicError;

/// What the callback asked to happen to its connection besides writing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) enum CloseRequest {
    #[default]
    None,
    Now,
    AfterFlush,
}

/// One connection as a callback sees it: its state, its unread input, its output,
/// and through [`Conn::ctx`] the rest of its loop.
///
/// Input: [`Conn::read_buf`] is every byte received and not yet consumed, as one
/// slice. Call [`Conn::consume`] for what was handled; the rest is kept and shown
/// again with the next bytes. The slice borrows the loop's read buffer when
/// possible, so reading costs no copy.
///
/// Output: [`Conn::write`] copies bytes, [`Conn::send`] queues a [`Bytes`]
/// without copying it. A callback that writes to its own connection with
/// nothing queued gets one `write(2)` right after it returns; anything else
/// (output already queued, `send`, writes to other connections through
/// [`Conn::ctx`]) joins the connection's queue and goes out at the end of the
/// loop's pass, one `writev` per connection. Either way bytes reach the socket
/// in the order they were written. Output the socket does not take at once is
/// kept and sent when the socket drains; past
/// [`Options::max_outbound`](crate::Options::max_outbound) the connection is
/// closed with [`CloseReason::WriteOverflow`](crate::CloseReason::WriteOverflow).
pub struct Conn<'a, S> {
    pub(crate) key: usize,
    pub(crate) id: ConnId,
    pub(crate) io: &'a mut SlotIo,
    pub(crate) state: &'a mut S,
    /// Every other connection of the loop.
    pub(crate) peers: &'a mut dyn PeerSlots<S>,
    pub(crate) input: &'a [u8],
    pub(crate) consumed: usize,
    pub(crate) core: &'a mut LoopCore,
    /// Timeouts were changed; the loop re-arms the connection's entry.
    pub(crate) timing_changed: bool,
    pub(crate) close: CloseRequest,
    /// A close with a specific reason (a protocol error), applied after the callback.
    pub(crate) fail: Option<CloseReason>,
    pub(crate) overflow: bool,
    /// Writes are dropped (in `on_close`).
    pub(crate) discard: bool,
}

impl<S> fmt::Debug for Conn<'_, S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Conn")
            .field("id", &self.id)
            .field("unread", &(self.input.len() - self.consumed))
            .field("outbound_len", &self.outbound_len())
            .finish_non_exhaustive()
    }
}

impl<'a, S> Conn<'a, S> {
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn new(
        key: usize,
        id: ConnId,
        io: &'a mut SlotIo,
        state: &'a mut S,
        peers: &'a mut dyn PeerSlots<S>,
        input: &'a [u8],
        core: &'a mut LoopCore,
    ) -> Self {
        Conn {
            key,
            id,
            io,
            state,
            peers,
            input,
            consumed: 0,
            core,
            timing_changed: false,
            close: CloseRequest::None,
            fail: None,
            overflow: false,
            discard: false,
        }
    }

    /// This connection's id, valid from any thread for the engine's commands.
    pub fn id(&self) -> ConnId {
        self.id
    }

    /// For an accepted connection, the index of its listener among the addresses
    /// given to the builder (see [`Engine::listen_addrs`]); `None` when dialed.
    pub fn listener(&self) -> Option<usize> {
        (self.io.listener != NO_LISTENER).then_some(self.io.listener as usize)
    }

    /// For a dialed connection, its link's identity, stable across reconnects.
    pub fn dial_id(&self) -> Option<DialId> {
        self.io.dial.as_ref().map(|d| d.dial)
    }

    /// The peer's address: the client's, as the PROXY protocol header named it
    /// on a listener that reads one, else the socket's (`getpeername(2)`; fails
    /// once the peer has reset).
    pub fn peer_addr(&self) -> io::Result<SocketAddr> {
        match self.io.layer.as_deref().and_then(|l| l.peer_addr()) {
            Some(addr) => Ok(addr),
            None => self.io.stream.peer_addr(),
        }
    }

    /// The socket's own peer address, which behind a balancer speaking the PROXY
    /// protocol is the balancer's.
    pub fn socket_peer_addr(&self) -> io::Result<SocketAddr> {
        self.io.stream.peer_addr()
    }

    /// The PROXY protocol header the connection started with (its addresses and
    /// TLVs), on a listener that reads one.
    pub fn proxy_header(&self) -> Option<&crate::proxy::ProxyHeader> {
        self.io.layer.as_deref().and_then(|l| l.proxy_header())
    }

    /// The TLS session of a `tls://` or TLS-dialed connection (ALPN, version).
    #[cfg(feature = "tls")]
    pub fn tls(&self) -> Option<&crate::tls::TlsSession> {
        self.io.layer.as_deref().and_then(|l| l.tls())
    }

    /// The local address of the socket.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.io.stream.local_addr()
    }

    /// The per-connection state.
    pub fn state(&self) -> &S {
        self.state
    }

    /// The per-connection state, mutably.
    pub fn state_mut(&mut self) -> &mut S {
        self.state
    }

    /// Bytes received and not yet consumed, oldest first, as one slice.
    ///
    /// The slice stays valid for the whole callback, also across calls to
    /// [`Conn::write`] and [`Conn::consume`], so it can be echoed or parsed in place.
    pub fn read_buf(&self) -> &'a [u8] {
        &self.input[self.consumed..]
    }

    /// Marks the first `n` bytes of [`Conn::read_buf`] as handled.
    ///
    /// # Panics
    ///
    /// Panics if `n` exceeds `read_buf().len()` (which closes this connection with
    /// [`CloseReason::Panic`](crate::CloseReason::Panic)).
    pub fn consume(&mut self, n: usize) {
        let left = self.input.len() - self.consumed;
        assert!(n <= left, "consume({n}) with only {left} unread bytes");
        self.consumed += n;
    }

    /// Copies `data` into the connection's output.
    ///
    /// If the pending output would exceed `Options::max_outbound`, the data is
    /// dropped and the connection closes with `CloseReason::WriteOverflow` after the
    /// callback.
    #[inline]
    pub fn write(&mut self, data: &[u8]) {
        if self.discard || self.overflow {
            return;
        }
        if self.io.outbound.is_none() {
            // The fast path: nothing queued, so the bytes gather in the loop's
            // scratch buffer and go out in one write after the callback.
            if self.core.scratch.len().saturating_add(data.len()) > self.core.max_outbound {
                self.overflow = true;
                return;
            }
            self.core.scratch.extend_from_slice(data);
            self.core.counts.copies += 1;
        } else if !self.core.queue_copy(self.key, self.io, data) {
            self.overflow = true;
        }
    }

    /// Appends to the connection's output with `fill` writing straight into the
    /// buffer it gathers in, for the frame layer to build a frame in place (its
    /// header patched in front of the payload once the payload is written). What
    /// `fill` appends counts as one copy; beyond `Options::max_outbound` it is
    /// dropped as [`Conn::write`] would drop it. `fill` must only append.
    #[inline]
    pub(crate) fn write_in_place<R>(&mut self, fill: impl FnOnce(&mut Vec<u8>) -> R) -> R {
        let before = self.core.scratch.len();
        let r = fill(&mut self.core.scratch);
        let added = self.core.scratch.len() - before;
        if self.discard || self.overflow || added == 0 {
            self.core.scratch.truncate(before);
        } else if self.io.outbound.is_none() {
            // The fast path, as in `write`: the bytes stay in the scratch buffer.
            if self.core.scratch.len() > self.core.max_outbound {
                self.core.scratch.truncate(before);
                self.overflow = true;
            } else {
                self.core.counts.copies += 1;
            }
        } else {
            // Output is queued: the frame, built at the scratch buffer's end, is
            // queued as one copy behind it.
            let scratch = std::mem::take(&mut self.core.scratch);
            let queued = self.core.queue_copy(self.key, self.io, &scratch[before..]);
            self.core.scratch = scratch;
            self.core.scratch.truncate(before);
            if !queued {
                self.overflow = true;
            }
        }
        r
    }

    /// Queues `data` without copying it: the connection holds a reference to the
    /// same allocation (so one `Bytes` sent to many connections is stored once)
    /// until the socket has taken it, also when it takes only part of it.
    ///
    /// Limits as for [`Conn::write`].
    pub fn send(&mut self, data: Bytes) {
        if self.discard || self.overflow {
            return;
        }
        if !self.core.queue_shared(self.key, self.io, data) {
            self.overflow = true;
        }
    }

    /// Bytes queued and not yet taken by the socket (including this callback's
    /// output).
    pub fn outbound_len(&self) -> usize {
        self.core.pending(self.key, self.io)
    }

    /// Topic messages dropped for this connection because its pending output was
    /// above [`Options::max_backpressure`](crate::Options::max_backpressure)
    /// (with [`SlowSubscriber::Drop`](crate::SlowSubscriber::Drop)), since it
    /// opened. Compare with a value kept in the state to learn of new drops.
    pub fn dropped(&self) -> u32 {
        self.io.dropped
    }

    /// The loop this connection runs on: other connections by id, broadcast,
    /// topics, the clock. See [`LoopCtx`].
    ///
    /// ```no_run
    /// # use tether::{Action, Conn, ConnId, EventHandler};
    /// struct Relay;
    /// impl EventHandler for Relay {
    ///     /// The connection this one relays to (same loop).
    ///     type State = Option<ConnId>;
    ///     fn on_traffic(&mut self, conn: &mut Conn<'_, Self::State>) -> Action {
    ///         let data = conn.read_buf();
    ///         if let Some(peer) = *conn.state() {
    ///             if let Some(mut other) = conn.ctx().conn(peer) {
    ///                 other.write(data);
    ///             }
    ///         }
    ///         conn.consume(data.len());
    ///         Action::Continue
    ///     }
    /// }
    /// ```
    pub fn ctx(&mut self) -> LoopCtx<'_, S> {
        let own = if self.discard {
            None
        } else {
            Some((self.key, &mut *self.io, &mut *self.state))
        };
        LoopCtx {
            core: &mut *self.core,
            own,
            peers: &mut *self.peers,
        }
    }

    /// Subscribes this connection to `topic` (see [`LoopCtx::subscribe`]).
    ///
    /// # Errors
    ///
    /// [`TopicError`] when a limit is reached or the name is too long.
    pub fn subscribe(&mut self, topic: &str) -> Result<bool, TopicError> {
        let id = self.id;
        self.ctx().subscribe(id, topic)
    }

    /// Unsubscribes this connection from `topic`; false if it was not subscribed.
    pub fn unsubscribe(&mut self, topic: &str) -> bool {
        let id = self.id;
        self.ctx().unsubscribe(id, topic)
    }

    /// Publishes `data` to every subscriber of `topic` on every loop (see
    /// [`LoopCtx::publish`]).
    pub fn publish(&mut self, topic: &str, data: Bytes) -> usize {
        self.ctx().publish(topic, data)
    }

    /// False while pending output is above the high watermark: the peer is not
    /// keeping up and the connection is not being read. `on_writable` runs when it
    /// drains to the low watermark.
    pub fn is_writable(&self) -> bool {
        self.outbound_len() <= self.core.high_watermark
    }

    /// Closes the connection after this callback. Output written so far is sent as
    /// far as the socket takes it without blocking.
    pub fn close(&mut self) {
        self.close = CloseRequest::Now;
    }

    /// Stops reading and closes the connection once every queued byte is sent.
    pub fn close_after_flush(&mut self) {
        if self.close == CloseRequest::None {
            self.close = CloseRequest::AfterFlush;
        }
    }

    /// True once this callback asked for the connection to close.
    pub fn is_closing(&self) -> bool {
        self.close != CloseRequest::None || self.fail.is_some() || self.overflow
    }

    /// Closes after the callback with a specific reason.
    pub(crate) fn close_with(&mut self, reason: CloseReason) {
        if self.fail.is_none() {
            self.fail = Some(reason);
        }
    }

    /// The engine this connection belongs to.
    pub fn engine(&self) -> &Engine {
        &self.core.engine
    }

    /// UDP from this callback: send to sessions of this loop, dial sessions.
    pub fn udp(&mut self) -> crate::udp_session::Udp<'_> {
        self.core.udp.handle(self.core.loop_id)
    }

    /// The index of the loop serving this connection.
    pub fn loop_id(&self) -> usize {
        self.core.loop_id
    }

    /// The loop's clock, read once per loop iteration.
    pub fn now(&self) -> Instant {
        self.core.now
    }

    /// Arms a timer: `on_timer(conn, key)` runs after `after` (1 ms resolution,
    /// never early). Setting a key that is already armed moves it. Timers are
    /// cancelled when the connection closes.
    pub fn set_timer(&mut self, after: Duration, key: u64) {
        if self.discard {
            return;
        }
        // The loop clock is rounded down; one more tick keeps the timer from
        // firing early.
        let deadline = ms_after(self.core.now_ms, after).saturating_add(1);
        let timer = UserTimer {
            slot: self.id.slot,
            generation: self.id.generation,
            key,
        };
        let id = self.core.user_wheel.insert(deadline, timer);
        self.core.note_deadline(deadline);
        if let Some(old) = self.core.user_timers.insert((self.id.slot, key), id) {
            self.core.user_wheel.cancel(old);
        }
        self.io.timing.has_user_timers = true;
    }

    /// Cancels the timer `key`; false if it was not armed.
    pub fn cancel_timer(&mut self, key: u64) -> bool {
        match self.core.user_timers.remove(&(self.id.slot, key)) {
            Some(id) => self.core.user_wheel.cancel(id).is_some(),
            None => false,
        }
    }

    /// Sets (or with `None` turns off) this connection's idle timeout of `kind`,
    /// overriding the engine's option. The clock counts from the last activity.
    pub fn set_idle_timeout(&mut self, kind: Idle, timeout: Option<Duration>) {
        let ms = crate::timeouts::ms(timeout);
        self.override_timeouts(|c| match kind {
            Idle::Read => c.read_idle = ms,
            Idle::Write => c.write_idle = ms,
            Idle::All => c.all_idle = ms,
        });
    }

    /// Sets (or turns off) this connection's heartbeat interval: `on_heartbeat`
    /// runs after that long without sending.
    pub fn set_heartbeat(&mut self, interval: Option<Duration>) {
        let ms = crate::timeouts::ms(interval);
        self.override_timeouts(|c| c.heartbeat = ms);
    }

    /// Sets (or turns off) this connection's frame timeout: the longest it may
    /// hold unconsumed input.
    pub fn set_frame_timeout(&mut self, timeout: Option<Duration>) {
        let ms = crate::timeouts::ms(timeout);
        self.override_timeouts(|c| c.frame = ms);
    }

    fn override_timeouts(&mut self, change: impl FnOnce(&mut TimeoutCfg)) {
        let defaults = self.core.timeouts;
        change(
            self.io
                .timing
                .overrides
                .get_or_insert_with(|| Box::new(defaults)),
        );
        self.timing_changed = true;
    }

    /// Sets `TCP_NODELAY` (on by default through `SocketOptions::nodelay`).
    pub fn set_nodelay(&self, on: bool) -> io::Result<()> {
        SockRef::from(&self.io.stream).set_tcp_nodelay(on)
    }

    /// The socket, to read or set options not covered here.
    pub fn socket(&self) -> SockRef<'_> {
        SockRef::from(&self.io.stream)
    }

    /// True for a Unix domain socket connection.
    pub fn is_unix(&self) -> bool {
        self.io.stream.is_unix()
    }

    /// Enables TCP keepalive probes after `idle` without traffic, or disables them.
    pub fn set_keepalive(&self, idle: Option<Duration>) -> io::Result<()> {
        let sock = SockRef::from(&self.io.stream);
        match idle {
            Some(idle) => sock.set_tcp_keepalive(&socket2::TcpKeepalive::new().with_time(idle)),
            None => sock.set_keepalive(false),
        }
    }

    /// Sets `SO_LINGER`. `Some(Duration::ZERO)` makes the close send RST.
    pub fn set_linger(&self, linger: Option<Duration>) -> io::Result<()> {
        SockRef::from(&self.io.stream).set_linger(linger)
    }
}
