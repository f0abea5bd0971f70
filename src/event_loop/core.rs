//! The loop's private state that callbacks reach through [`Conn`](crate::Conn)
//! and [`LoopCtx`](crate::LoopCtx): the connection slots, the clock, the timer
//! wheels, the buffer pool, the scratch buffer, the dirty list and the topics.
//!
//! # The write path
//!
//! A connection's output goes one of two ways:
//!
//! - **The echo fast path.** A callback writing to its own connection with
//!   nothing queued writes into the loop's `scratch` buffer; one `write(2)`
//!   sends it right after the callback returns, and only what the socket does
//!   not take is copied into the connection's queue.
//! - **The queue.** Everything else (writes while output is queued, writes to
//!   other connections of the loop, `send(Bytes)`, broadcasts, publishes,
//!   `Engine::send`) is appended to the connection's [`Outbound`] queue (copied
//!   small writes and shared `Bytes` segments) and the connection is put on the
//!   loop's dirty list, once. The dirty list is flushed at the end of each pass
//!   of the loop (after the event batch, the ready work, the timers and the
//!   ticker), one `writev` per connection: all the messages a pass produced for
//!   a connection, from any number of callbacks and commands, share that one
//!   syscall. A write made while output is queued joins the queue behind it, so
//!   bytes reach the socket in the order they were written.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use bytes::Bytes;

use crate::buffer::outbound::Outbound;
use crate::buffer::{Buf, BufferPool};
use crate::client::DialId;
use crate::client::backoff::Backoff;
use crate::engine::Engine;
use crate::net::ListenAddr;
use crate::net::stream::Stream;
use crate::options::SlowSubscriber;
use crate::slots::Split;
use crate::ticker::{Fired, Ticker};
use crate::timeouts::{TimeoutCfg, Timing};
use crate::timer::{TimerId, TimerWheel};
use crate::topics::Topics;

// Slot flags.
/// READABLE is registered (cleared while reading is paused by backpressure).
pub(crate) const REG_READ: u16 = 1;
/// WRITABLE is registered (only while the socket refuses output).
pub(crate) const REG_WRITE: u16 = 2;
/// Output went above the high watermark: reading stops until it drains to the low.
pub(crate) const PAUSED: u16 = 4;
/// Close once the pending output is flushed.
pub(crate) const CLOSE_AFTER_FLUSH: u16 = 8;
/// The peer sent FIN; close with `PeerClosed` once output is flushed.
pub(crate) const PEER_CLOSED: u16 = 16;
/// A dialed connection whose connect has not completed; not yet opened.
pub(crate) const CONNECTING: u16 = 32;
/// On the loop's dirty list: queued output or a close waits for the end of the pass.
pub(crate) const DIRTY: u16 = 64;
/// The last write was short: the socket is full and a WRITABLE event will say
/// when it drains, so the dirty pass does not try again before that.
pub(crate) const BLOCKED: u16 = 128;
/// Member of at least one topic: close must leave them.
pub(crate) const SUBSCRIBED: u16 = 256;
/// Input and output go through the connection's layer (a PROXY header still
/// awaited, or TLS); mirrors `Layer::intercepts` so the hot path tests a bit.
pub(crate) const LAYERED: u16 = 512;

/// A close asked for from outside the connection's own callback (a write to it
/// overflowed, a slow subscriber, `ConnRef::close`), applied by the dirty pass.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) enum PendingClose {
    #[default]
    None,
    Local,
    Overflow,
    SlowSubscriber,
}

/// What a dialed connection keeps to redial itself (boxed in its slot: accepted
/// connections pay 8 bytes for it).
#[derive(Debug)]
pub(crate) struct DialInfo {
    pub(crate) dial: DialId,
    pub(crate) addr: ListenAddr,
    pub(crate) timeout: Duration,
    pub(crate) backoff: Option<Backoff>,
    /// TLS to run over the connection once connected.
    #[cfg(feature = "tls")]
    pub(crate) tls: Option<crate::tls::ClientTls>,
}

/// The part of a connection's slot that does not depend on the handler's state.
#[derive(Debug)]
pub(crate) struct SlotIo {
    pub(crate) stream: Stream,
    pub(crate) generation: u32,
    pub(crate) flags: u16,
    /// The listener that accepted it (its index among the engine's addresses);
    /// `NO_LISTENER` for dialed connections.
    pub(crate) listener: u16,
    pub(crate) close: PendingClose,
    /// Topic messages dropped for this connection (slow-subscriber policy).
    pub(crate) dropped: u32,
    pub(crate) inbound: Option<Box<Buf>>,
    pub(crate) outbound: Option<Box<Outbound>>,
    pub(crate) timing: Timing,
    /// Set for dialed connections: where to redial and how.
    pub(crate) dial: Option<Box<DialInfo>>,
    /// PROXY header and TLS state, for connections that have either.
    pub(crate) layer: Option<Box<crate::layer::Layer>>,
}

impl SlotIo {
    /// Bytes in the connection's queue.
    #[inline]
    pub(crate) fn queued(&self) -> usize {
        self.outbound.as_ref().map_or(0, |q| q.len())
    }

    /// Output must be sealed (TLS) before it is queued.
    #[inline]
    pub(crate) fn seals(&self) -> bool {
        self.flags & LAYERED != 0
    }

    /// An opened connection (not one still connecting).
    #[inline]
    pub(crate) fn is_open(&self) -> bool {
        self.flags & CONNECTING == 0
    }
}

pub(crate) const NO_LISTENER: u16 = u16::MAX;

/// One connection's slot. Kept small: a connection with nothing in flight owns
/// no buffer, only this.
#[derive(Debug)]
pub(crate) struct Slot<S> {
    pub(crate) io: SlotIo,
    pub(crate) state: S,
}

/// The other connections of the loop, as a callback reaches them: the slots
/// around the one whose callback runs, or all of them for loop-level callbacks.
pub(crate) trait PeerSlots<S> {
    fn peer(&mut self, key: usize) -> Option<(&mut SlotIo, &mut S)>;
    fn each(&mut self, f: &mut dyn FnMut(usize, &mut SlotIo, &mut S));
}

impl<S> PeerSlots<S> for Split<'_, Slot<S>> {
    #[inline]
    fn peer(&mut self, key: usize) -> Option<(&mut SlotIo, &mut S)> {
        self.get_mut(key).map(|s| (&mut s.io, &mut s.state))
    }

    fn each(&mut self, f: &mut dyn FnMut(usize, &mut SlotIo, &mut S)) {
        self.for_each(|k, s| f(k, &mut s.io, &mut s.state));
    }
}

/// A user timer's wheel payload.
#[derive(Debug, Clone, Copy)]
pub(crate) struct UserTimer {
    pub(crate) slot: u32,
    pub(crate) generation: u32,
    pub(crate) key: u64,
}

/// Counters the loop keeps as plain numbers and publishes once per pass.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct LocalCounts {
    pub(crate) copies: u64,
    pub(crate) copied_bytes: u64,
    pub(crate) shared: u64,
    pub(crate) writes: u64,
    pub(crate) topic_drops: u64,
}

/// Loop-wide context shared by every callback of one loop.
#[derive(Debug)]
pub(crate) struct LoopCore {
    pub(crate) loop_id: usize,
    /// Output written during one callback by a connection with nothing queued;
    /// flushed with one `write` when the callback returns.
    pub(crate) scratch: Vec<u8>,
    /// Slab key of the connection whose callback runs (the owner of `scratch`),
    /// `usize::MAX` outside connection callbacks.
    pub(crate) cb_key: usize,
    /// Connections with queued output or a pending close, flushed at the end of
    /// the pass: `(key, generation)`, each at most once (flag `DIRTY`).
    pub(crate) dirty: Vec<(usize, u32)>,
    /// Empty outbound queues kept for reuse (they keep their segment capacity).
    #[allow(clippy::vec_box)]
    pub(crate) spare_queues: Vec<Box<Outbound>>,
    pub(crate) max_spare_queues: usize,
    pub(crate) engine: Engine,
    pub(crate) now: Instant,
    pub(crate) max_outbound: usize,
    pub(crate) high_watermark: usize,
    /// The clock origin of the wheels: loop milliseconds count from here.
    pub(crate) origin: Instant,
    pub(crate) now_ms: u64,
    /// One entry per connection with a timeout configured: `(slot, generation)`.
    pub(crate) conn_wheel: TimerWheel<(u32, u32)>,
    pub(crate) user_wheel: TimerWheel<UserTimer>,
    /// `(slot, key)` of every armed user timer, for `cancel_timer` and close.
    pub(crate) user_timers: BTreeMap<(u32, u64), TimerId>,
    pub(crate) timeouts: TimeoutCfg,
    pub(crate) pool: BufferPool,
    /// No wheel has anything due before this loop time: the wheels are not
    /// touched on iterations before it. Lowered by every insert (`note_deadline`),
    /// recomputed after each expiry pass.
    pub(crate) next_check: u64,
    /// Datagrams and session requests queued by callbacks.
    pub(crate) udp: crate::udp_session::udp::UdpOut,
    pub(crate) counts: LocalCounts,
    pub(crate) topics: Topics,
    /// Members of a topic being published to (reused, so publishing allocates
    /// nothing in steady state).
    pub(crate) members: Vec<(usize, u32)>,
    pub(crate) max_backpressure: usize,
    pub(crate) slow_subscriber: SlowSubscriber,
    pub(crate) ticker: Ticker,
    /// Set while `on_tick` runs.
    pub(crate) tick: Option<Fired>,
    /// Records of output sealed for a TLS connection on its way into the queue.
    pub(crate) sealed: Vec<u8>,
}

impl LoopCore {
    /// Records that a timer is due at `at`, so the loop looks at the wheels then.
    pub(crate) fn note_deadline(&mut self, at: u64) {
        self.next_check = self.next_check.min(at);
    }

    /// Nanoseconds of the loop clock (the ticker's time base).
    pub(crate) fn now_ns(&self) -> u64 {
        u64::try_from((self.now - self.origin).as_nanos()).unwrap_or(u64::MAX)
    }

    /// Puts connection `key` on the dirty list, once.
    #[inline]
    pub(crate) fn mark_dirty(&mut self, key: usize, io: &mut SlotIo) {
        if io.flags & DIRTY == 0 {
            io.flags |= DIRTY;
            self.dirty.push((key, io.generation));
        }
    }

    /// Output pending for connection `key`: its queue, plus the scratch buffer
    /// when its own callback runs.
    #[inline]
    pub(crate) fn pending(&self, key: usize, io: &SlotIo) -> usize {
        let scratch = if key == self.cb_key {
            self.scratch.len()
        } else {
            0
        };
        io.queued() + scratch
    }

    /// Requests a close applied by the dirty pass (the first reason wins).
    pub(crate) fn request_close(&mut self, key: usize, io: &mut SlotIo, why: PendingClose) {
        if io.close == PendingClose::None {
            io.close = why;
        }
        self.mark_dirty(key, io);
    }

    /// False when `len` more bytes would exceed `max_outbound` (the connection is
    /// then closed with `WriteOverflow`) or the connection is closing.
    fn admit(&mut self, key: usize, io: &mut SlotIo, len: usize) -> bool {
        if matches!(
            io.close,
            PendingClose::Overflow | PendingClose::SlowSubscriber
        ) {
            return false;
        }
        if self.pending(key, io).saturating_add(len) > self.max_outbound {
            self.request_close(key, io, PendingClose::Overflow);
            io.close = PendingClose::Overflow;
            return false;
        }
        true
    }

    /// Makes sure connection `key` has a queue. When `key`'s own callback runs,
    /// what it wrote into the scratch buffer moves in first, so the order of its
    /// writes holds.
    fn open_queue(&mut self, key: usize, io: &mut SlotIo) -> bool {
        if io.outbound.is_none() {
            io.outbound = Some(self.spare_queues.pop().unwrap_or_default());
        }
        if key == self.cb_key && !self.scratch.is_empty() {
            let scratch = std::mem::take(&mut self.scratch);
            self.counts.copies += 1;
            self.counts.copied_bytes += scratch.len() as u64;
            let ok = self.push_plain(key, io, &scratch);
            self.scratch = scratch;
            self.scratch.clear();
            return ok;
        }
        true
    }

    /// Copies `data` into the queue, sealed first on a TLS connection.
    fn push_plain(&mut self, key: usize, io: &mut SlotIo, data: &[u8]) -> bool {
        let Some(q) = io.outbound.as_deref_mut() else {
            return false;
        };
        match io.layer.as_deref_mut().filter(|l| l.intercepts()) {
            None => q.push_copy(&mut self.pool, data),
            Some(layer) => {
                self.sealed.clear();
                match layer.seal(data, &mut self.sealed) {
                    Ok(true) => q.push_copy(&mut self.pool, &self.sealed),
                    Ok(false) => q.push_copy(&mut self.pool, data),
                    Err(reason) => {
                        log::debug!("loop {}: sealing failed: {reason}", self.loop_id);
                        self.request_close(key, io, PendingClose::Local);
                        return false;
                    }
                }
            }
        }
        true
    }

    /// Appends a copy of `data` to connection `key`'s queue. False if refused.
    pub(crate) fn queue_copy(&mut self, key: usize, io: &mut SlotIo, data: &[u8]) -> bool {
        if !self.admit(key, io, data.len()) {
            return false;
        }
        if data.is_empty() {
            return true;
        }
        self.counts.copies += 1;
        self.counts.copied_bytes += data.len() as u64;
        if !self.open_queue(key, io) || !self.push_plain(key, io, data) {
            return false;
        }
        self.mark_dirty(key, io);
        true
    }

    /// Appends `data` to connection `key`'s queue without copying. False if
    /// refused.
    pub(crate) fn queue_shared(&mut self, key: usize, io: &mut SlotIo, data: Bytes) -> bool {
        if !self.admit(key, io, data.len()) {
            return false;
        }
        if data.is_empty() {
            return true;
        }
        if !self.open_queue(key, io) {
            return false;
        }
        if io.seals() {
            // TLS: the bytes are encrypted per connection, so they are copied.
            self.counts.copies += 1;
            self.counts.copied_bytes += data.len() as u64;
            if !self.push_plain(key, io, &data) {
                return false;
            }
        } else if let Some(q) = io.outbound.as_deref_mut() {
            self.counts.shared += 1;
            q.push_shared(data);
        }
        self.mark_dirty(key, io);
        true
    }

    /// A topic message for subscriber `key`: queued, or, above
    /// `max_backpressure`, dropped or the subscriber closed, as configured.
    pub(crate) fn deliver_topic(&mut self, key: usize, io: &mut SlotIo, data: &Bytes) {
        if !io.is_open() || io.close != PendingClose::None {
            return;
        }
        if self.pending(key, io).saturating_add(data.len()) > self.max_backpressure {
            match self.slow_subscriber {
                SlowSubscriber::Drop => {
                    io.dropped = io.dropped.saturating_add(1);
                    self.counts.topic_drops += 1;
                }
                SlowSubscriber::Close => {
                    self.request_close(key, io, PendingClose::SlowSubscriber);
                }
            }
            return;
        }
        self.queue_shared(key, io, data.clone());
    }

    /// Takes back an emptied queue for reuse.
    pub(crate) fn recycle(&mut self, mut q: Box<Outbound>) {
        q.clear(&mut self.pool);
        if self.spare_queues.len() < self.max_spare_queues {
            self.spare_queues.push(q);
        }
    }
}

pub(crate) use crate::timer::deadline::ms_ceil;
