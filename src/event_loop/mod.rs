//! One event loop: a mio poller, a slab of connections, the run loop.

use std::io::{self, Read, Write};
use std::panic::{self, AssertUnwindSafe};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use mio::{Events, Interest, Poll, Token};
use slab::Slab;

use crate::buffer::BufferPool;
use crate::conn::{CloseRequest, Conn};
use crate::ctx::LoopCtx;
use crate::engine::Engine;
use crate::handler::EventHandler;
use crate::id::ConnId;
use crate::inbox::Command;
use crate::lb::Balancer;
use crate::options::Options;
use crate::reason::{Action, CloseReason, Idle};
use crate::stats::bump;
use crate::timeouts::{Due, Timing};
use crate::timer::TimerWheel;

mod accept;
mod budget;
mod commands;
pub(crate) mod core;
mod dial;
mod layered;
mod listen;
#[macro_use]
mod sessions;
mod timers;
mod udp;
mod write;

use self::core::{
    CLOSE_AFTER_FLUSH, CONNECTING, LAYERED, LoopCore, NO_LISTENER, PAUSED, PEER_CLOSED,
    PendingClose, REG_READ, REG_WRITE, SUBSCRIBED, Slot, SlotIo, UserTimer,
};
use crate::net::stream::Stream;
use crate::slots::Slots;
use crate::timer::deadline::instant_after;
use dial::PendingDial;
use listen::Listener;
pub(crate) use listen::{ListenSocket, LoopListener};
use udp::UdpBatches;

/// Token of the loop's waker; listeners count down from just below it and
/// connections use their slab key, so the three never meet.
pub(crate) const WAKER: Token = Token(usize::MAX);
const MAX_LISTENERS: usize = 1024;
const FIRST_LISTENER: usize = usize::MAX - 1;
const MAX_CONN_KEY: usize = FIRST_LISTENER - MAX_LISTENERS;

fn listener_token(i: usize) -> Token {
    Token(FIRST_LISTENER - i)
}

fn listener_index(token: Token) -> Option<usize> {
    let i = FIRST_LISTENER.checked_sub(token.0)?;
    (token.0 != WAKER.0 && i < MAX_LISTENERS).then_some(i)
}

/// Where a callback's input comes from.
#[derive(Clone, Copy)]
enum Input {
    None,
    /// `rbuf[..n]`, the loop's read buffer, when the connection had nothing buffered.
    Shared(usize),
    /// The connection's own inbound buffer.
    Own,
    /// `layer_bufs.plain[..n]`: what a connection's layer decrypted.
    Plain(usize),
}

enum Callback {
    Open,
    Traffic(Input),
    Wake,
    Writable,
    Idle(Idle),
    Heartbeat,
    Timer(u64),
}

pub(crate) struct EventLoop<H: EventHandler> {
    handler: H,
    conns: Slots<Slot<H::State>>,
    rbuf: Box<[u8]>,
    /// Plaintext and records of connections with a layer (TLS, PROXY header).
    layer_bufs: crate::layer::LayerBufs,
    core: LoopCore,
    poll: Poll,
    listeners: Vec<Listener>,
    /// Set when this loop accepts for every loop (one shared listener).
    balancer: Option<Balancer>,
    opts: Options,
    next_generation: u32,
    /// Connections to read again without waiting for an event: their read budget ran
    /// out, or reading resumed after backpressure.
    ready_reads: Vec<(usize, u32)>,
    /// Listeners whose accept budget ran out with connections still queued.
    ready_accepts: Vec<usize>,
    /// The other halves of the two lists above, swapped in while they run.
    spare_reads: Vec<(usize, u32)>,
    spare_accepts: Vec<usize>,
    /// The other half of `core.dirty`, swapped in while the dirty pass runs.
    spare_dirty: Vec<(usize, u32)>,
    commands: Vec<Command>,
    open_counts: Vec<usize>,
    /// Drain deadline once stopping.
    stopping: Option<Instant>,
    /// Batch buffers for UDP listeners, made on first use.
    udp: Option<Box<UdpBatches>>,
    /// A descriptor held back so that, out of descriptors, one can still be freed
    /// to accept and close a waiting connection.
    reserve_fd: Option<std::fs::File>,
    /// Dialed links waiting for their next attempt, and when each is due.
    pending_dials: Slab<PendingDial<H::State>>,
    dial_wheel: TimerWheel<u32>,
    /// UDP sessions of session listeners and dialed sessions.
    sessions: sessions::Sessions<H::State>,
    /// Busy polling: the loop time until which polls do not block.
    spin_until: Option<Instant>,
}

impl<H: EventHandler> EventLoop<H> {
    pub(crate) fn new(
        loop_id: usize,
        poll: Poll,
        handler: H,
        sockets: Vec<LoopListener>,
        engine: Engine,
        opts: Options,
    ) -> io::Result<Self> {
        let mut listeners = Vec::with_capacity(sockets.len());
        let accept_for_all = sockets.iter().any(|l| l.shared);
        for (i, mut inner) in sockets.into_iter().enumerate() {
            inner.socket.register(poll.registry(), listener_token(i))?;
            listeners.push(Listener {
                inner,
                paused_until: None,
                backoff: opts.accept_backoff_min,
            });
        }
        let sessions = sessions::Sessions::new(&listeners, &opts, loop_id);
        Ok(EventLoop {
            handler,
            conns: Slots::default(),
            rbuf: vec![0; opts.read_buffer_size].into_boxed_slice(),
            layer_bufs: Default::default(),
            core: LoopCore {
                loop_id,
                scratch: Vec::with_capacity(opts.read_buffer_size),
                cb_key: usize::MAX,
                dirty: Vec::new(),
                spare_queues: Vec::new(),
                max_spare_queues: opts.pool_max_idle,
                counts: Default::default(),
                topics: crate::topics::Topics::new(opts.topic_limits()),
                members: Vec::new(),
                max_backpressure: opts.max_backpressure,
                slow_subscriber: opts.slow_subscriber,
                ticker: Default::default(),
                tick: None,
                sealed: Vec::new(),
                engine,
                now: Instant::now(),
                max_outbound: opts.max_outbound,
                high_watermark: opts.write_high_watermark,
                origin: Instant::now(),
                now_ms: 0,
                conn_wheel: TimerWheel::new(0),
                user_wheel: TimerWheel::new(0),
                next_check: u64::MAX,
                user_timers: Default::default(),
                timeouts: opts.timeouts(),
                pool: BufferPool::new(opts.pool_buffer_size, opts.pool_max_idle),
                udp: crate::udp_session::udp::UdpOut::new(opts.max_udp_queued),
            },
            poll,
            listeners,
            balancer: accept_for_all.then(|| Balancer::new(opts.load_balancer)),
            opts,
            next_generation: 0,
            ready_reads: Vec::new(),
            ready_accepts: Vec::new(),
            spare_reads: Vec::new(),
            spare_accepts: Vec::new(),
            spare_dirty: Vec::new(),
            commands: Vec::new(),
            open_counts: Vec::new(),
            stopping: None,
            reserve_fd: std::fs::File::open("/dev/null").ok(),
            udp: None,
            pending_dials: Slab::new(),
            dial_wheel: TimerWheel::new(0),
            sessions,
            spin_until: None,
        })
    }

    pub(crate) fn run(&mut self) {
        let mut events = Events::with_capacity(1024);
        self.set_busy_poll();
        self.with_ctx(|h, ctx| h.on_boot(ctx));
        self.core.ticker.start(self.core.now_ns());
        self.tick();
        self.flush_dirty();
        loop {
            self.flush_udp();
            let timeout = self.busy_poll_timeout(self.poll_timeout());
            if let Err(e) = self.poll.poll(&mut events, timeout) {
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                log::error!("loop {}: poll failed: {e}", self.core.loop_id);
                break;
            }
            self.set_clock();
            self.note_busy(!events.is_empty());
            for event in events.iter() {
                let token = event.token();
                if token == WAKER {
                    self.drain_inbox();
                } else if let Some(i) = listener_index(token) {
                    self.accept(i);
                } else if let Some(slot) = token.0.checked_sub(sessions::DIALED_TOKEN) {
                    self.read_dialed(slot as u32);
                } else if self
                    .conns
                    .get(token.0)
                    .is_some_and(|s| s.io.flags & CONNECTING != 0)
                {
                    self.connect_event(token.0);
                } else {
                    if event.is_writable() || event.is_write_closed() {
                        self.on_writable_event(token.0);
                    }
                    if event.is_readable() || event.is_read_closed() || event.is_error() {
                        self.read(token.0, event.is_read_closed() || event.is_error());
                    }
                }
            }
            self.run_ready_work();
            self.run_ready_dialed();
            self.expire_timers();
            self.expire_sessions();
            // End of the pass: what callbacks and commands queued goes out, one
            // writev per connection.
            self.flush_dirty();
            self.enforce_budget();
            self.publish_gauges();
            if let Some(deadline) = self.stopping {
                if self.conns.is_empty() || self.core.now >= deadline {
                    break;
                }
                self.close_flushed_while_stopping();
            }
        }
        // What on_shutdown queued goes out before the sessions close.
        self.flush_udp();
        self.close_all_sessions();
        let keys: Vec<usize> = self.conns.keys().collect();
        for key in keys {
            self.close(key, CloseReason::Shutdown);
        }
    }

    /// Busy polling: while within `busy_poll` of the last events, poll without
    /// blocking instead of sleeping.
    fn busy_poll_timeout(&self, timeout: Option<Duration>) -> Option<Duration> {
        match self.spin_until {
            Some(until) if self.core.now < until && timeout != Some(Duration::ZERO) => {
                Some(Duration::ZERO)
            }
            _ => timeout,
        }
    }

    /// Events arrived: busy polling goes on for another `busy_poll` from now.
    fn note_busy(&mut self, events: bool) {
        if let (true, Some(spin)) = (events, self.opts.busy_poll) {
            self.spin_until = Some(instant_after(self.core.now, spin));
        }
    }

    fn set_clock(&mut self) {
        self.core.now = Instant::now();
        self.core.now_ms = (self.core.now - self.core.origin).as_millis() as u64;
    }

    fn poll_timeout(&self) -> Option<Duration> {
        if !self.ready_reads.is_empty()
            || !self.ready_accepts.is_empty()
            || !self.core.dirty.is_empty()
            || self.sessions_ready()
        {
            return Some(Duration::ZERO);
        }
        let origin = self.core.origin;
        let next_check = (self.core.next_check != u64::MAX).then_some(self.core.next_check);
        // The ticker's deadline is exact to the nanosecond. mio rounds a timeout
        // up to whole milliseconds, so the wakeup never comes before a deadline
        // (the loop checks it against the clock, not against milliseconds) and
        // never spins on a sub-millisecond remainder.
        let wake_at = [next_check, self.sessions.next_expiry()]
            .into_iter()
            .flatten()
            .map(|ms| instant_after(origin, Duration::from_millis(ms)))
            .chain(
                self.core
                    .ticker
                    .next()
                    .map(|ns| instant_after(origin, Duration::from_nanos(ns))),
            )
            .chain(self.listeners.iter().filter_map(|l| l.paused_until))
            .chain(self.stopping)
            .min()?;
        // The clock is read only when there is a deadline to wait for.
        Some(wake_at.saturating_duration_since(Instant::now()))
    }

    /// Runs a loop-level callback with a context over all the loop's connections.
    fn with_ctx(&mut self, f: impl FnOnce(&mut H, &mut LoopCtx<'_, H::State>)) {
        let mut peers = self.conns.all();
        let mut ctx = LoopCtx {
            core: &mut self.core,
            own: None,
            peers: &mut peers,
        };
        let handler = &mut self.handler;
        if panic::catch_unwind(AssertUnwindSafe(|| f(handler, &mut ctx))).is_err() {
            log::error!("loop {}: a loop callback panicked", self.core.loop_id);
        }
    }

    /// Work that has no event to announce it: reads whose budget ran out, accepts
    /// left in the backlog, listeners whose EMFILE pause is over.
    fn run_ready_work(&mut self) {
        // Double-buffered: the work may queue more while the list runs, so it runs
        // from the spare list and both keep their capacity (no allocation).
        if !self.ready_reads.is_empty() {
            let mut reads = std::mem::take(&mut self.spare_reads);
            std::mem::swap(&mut reads, &mut self.ready_reads);
            for &(key, generation) in &reads {
                if self
                    .conns
                    .get(key)
                    .is_some_and(|s| s.io.generation == generation)
                {
                    self.read(key, true);
                }
            }
            reads.clear();
            self.spare_reads = reads;
        }
        if !self.ready_accepts.is_empty() {
            let mut accepts = std::mem::take(&mut self.spare_accepts);
            std::mem::swap(&mut accepts, &mut self.ready_accepts);
            for &i in &accepts {
                self.accept(i);
            }
            accepts.clear();
            self.spare_accepts = accepts;
        }
        for i in 0..self.listeners.len() {
            if self.listeners[i]
                .paused_until
                .is_some_and(|t| t <= self.core.now)
            {
                self.listeners[i].paused_until = None;
                self.accept(i);
            }
        }
    }

    // ---- reading ----

    /// Reads until the socket is drained, the budget is spent or the connection
    /// closes. `to_eof`: keep reading after a short read (the event said the peer
    /// closed or errored, and that must be observed).
    fn read(&mut self, key: usize, to_eof: bool) {
        let mut budget = self.opts.read_budget;
        loop {
            let Some(slot) = self.conns.get_mut(key) else {
                return;
            };
            let io = &mut slot.io;
            if io.flags & (PAUSED | CLOSE_AFTER_FLUSH | PEER_CLOSED) != 0 {
                return;
            }
            let generation = io.generation;
            let n = match (&io.stream).read(&mut self.rbuf) {
                Ok(0) => {
                    self.peer_closed(key);
                    return;
                }
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    self.close(key, io_reason(e));
                    return;
                }
            };
            bump(
                &self.core.engine.counters(self.core.loop_id).bytes_in,
                n as u64,
            );
            io.timing.last_read = crate::timeouts::stamp(self.core.now_ms);
            if io.flags & LAYERED != 0 {
                self.layered_read(key, n);
            } else {
                let input = match io.inbound.as_mut() {
                    None => Input::Shared(n),
                    Some(inbound) => {
                        if inbound.len() + n > self.opts.max_inbound {
                            self.close(key, CloseReason::InboundOverflow);
                            return;
                        }
                        self.core
                            .pool
                            .append(inbound, &self.rbuf[..n], self.opts.max_inbound);
                        if self.enforce_budget() && !self.conns.contains(key) {
                            return;
                        }
                        Input::Own
                    }
                };
                self.callback(key, Callback::Traffic(input));
            }
            if self
                .conns
                .get(key)
                .is_none_or(|s| s.io.generation != generation)
            {
                return;
            }
            budget = budget.saturating_sub(n);
            if n < self.rbuf.len() && !to_eof {
                // A short read drained the socket; with edge triggering the kernel
                // reports the next arrival (or FIN) as a new event, so the extra
                // read that would only return EAGAIN is skipped.
                return;
            }
            if budget == 0 {
                self.ready_reads.push((key, generation));
                return;
            }
        }
    }

    fn peer_closed(&mut self, key: usize) {
        let Some(slot) = self.conns.get_mut(key) else {
            return;
        };
        slot.io.flags |= PEER_CLOSED;
        if let Some(reason) = slot.io.layer.as_ref().and_then(|l| l.eof_reason()) {
            self.close(key, reason);
        } else if slot.io.outbound.is_none() {
            self.close(key, CloseReason::PeerClosed);
        } else {
            self.update_interest(key);
        }
    }

    // ---- callbacks ----

    /// Runs one connection callback, then applies what it asked for: keeps unread
    /// input, flushes output, closes.
    fn callback(&mut self, key: usize, which: Callback) {
        let Some((slot, mut peers)) = self.conns.split(key) else {
            return;
        };
        let id = ConnId {
            loop_id: self.core.loop_id as u16,
            slot: key as u32,
            generation: slot.io.generation,
        };
        let input_kind = match which {
            Callback::Traffic(input) => input,
            _ => Input::None,
        };
        // The inbound buffer leaves the slot for the callback, so the slot can be
        // borrowed as a whole beside the input.
        let mut inbound = match input_kind {
            Input::Own => slot.io.inbound.take(),
            _ => None,
        };
        let input: &[u8] = match input_kind {
            Input::None => &[],
            Input::Shared(n) => &self.rbuf[..n],
            Input::Own => inbound.as_deref().map_or(&[], |b| b.as_slice()),
            Input::Plain(n) => &self.layer_bufs.plain[..n],
        };
        self.core.cb_key = key;
        let mut conn = Conn::new(
            key,
            id,
            &mut slot.io,
            &mut slot.state,
            &mut peers,
            input,
            &mut self.core,
        );
        let handler = &mut self.handler;
        let result = panic::catch_unwind(AssertUnwindSafe(|| match which {
            Callback::Open => handler.on_open(&mut conn),
            Callback::Traffic(_) => handler.on_traffic(&mut conn),
            Callback::Wake => handler.on_wake(&mut conn),
            Callback::Writable => handler.on_writable(&mut conn),
            Callback::Idle(kind) => handler.on_idle(&mut conn, kind),
            Callback::Heartbeat => handler.on_heartbeat(&mut conn),
            Callback::Timer(key) => handler.on_timer(&mut conn, key),
        }));
        let (consumed, close, overflow) = (conn.consumed, conn.close, conn.overflow);
        let fail = conn.fail.take();
        let mut rearm = conn.timing_changed;
        let io = &mut slot.io;
        let pending_close = std::mem::take(&mut io.close);

        // Keep what the handler left unread.
        match input_kind {
            Input::None => {}
            Input::Shared(n) | Input::Plain(n) => {
                if consumed < n {
                    let left = match input_kind {
                        Input::Plain(_) => &self.layer_bufs.plain[consumed..n],
                        _ => &self.rbuf[consumed..n],
                    };
                    let mut buf = self.core.pool.take();
                    self.core.pool.append(&mut buf, left, self.opts.max_inbound);
                    io.inbound = Some(buf);
                    // A partial frame starts now; the frame timeout counts from here.
                    io.timing.partial_since = crate::timeouts::stamp(self.core.now_ms);
                    rearm |= io.timing.cfg(&self.core.timeouts).frame > 0;
                }
            }
            Input::Own => {
                if let Some(mut buf) = inbound.take() {
                    buf.consume(consumed);
                    if buf.is_empty() {
                        self.core.pool.give(buf);
                    } else {
                        io.inbound = Some(buf);
                    }
                }
            }
        }
        self.core.cb_key = usize::MAX;

        let action = match result {
            Ok(action) => action,
            Err(_) => {
                log::error!("handler panicked on {id}; closing it");
                self.core.scratch.clear();
                self.close(key, CloseReason::Panic);
                return;
            }
        };
        if overflow || pending_close == PendingClose::Overflow {
            self.core.scratch.clear();
            self.close(key, CloseReason::WriteOverflow);
            return;
        }
        if !self.flush_scratch(key) {
            return;
        }
        if let Some(reason) = fail {
            self.close(key, reason);
            return;
        }
        match pending_close {
            PendingClose::None | PendingClose::Overflow => {}
            PendingClose::Local => {
                self.close(key, CloseReason::Local);
                return;
            }
            PendingClose::SlowSubscriber => {
                self.close(key, CloseReason::SlowSubscriber);
                return;
            }
        }
        if rearm {
            self.rearm(key);
        }
        match action {
            Action::Continue => {}
            Action::Close => {
                let reason = match which {
                    Callback::Idle(kind) => CloseReason::IdleTimeout(kind),
                    _ => CloseReason::Local,
                };
                self.close(key, reason);
                return;
            }
            Action::Shutdown => self.core.engine.signal_stop(self.opts.shutdown_timeout),
        }
        match close {
            CloseRequest::None => {}
            CloseRequest::Now => self.close(key, CloseReason::Local),
            CloseRequest::AfterFlush => {
                if let Some(slot) = self.conns.get_mut(key) {
                    slot.io.flags |= CLOSE_AFTER_FLUSH;
                    if slot.io.outbound.is_none() {
                        self.close(key, CloseReason::Local);
                    } else {
                        self.update_interest(key);
                    }
                }
            }
        }
    }

    // ---- closing ----

    /// Removes the connection, runs `on_close` once, returns its buffers.
    fn close(&mut self, key: usize, reason: CloseReason) {
        let Some(mut slot) = self.conns.try_remove(key) else {
            return;
        };
        let io = &mut slot.io;
        if io.flags & CONNECTING != 0 {
            // Never opened, so there is nothing to report; only its entry to drop.
            if let Some(entry) = io.timing.entry {
                self.core.conn_wheel.cancel(entry);
            }
            return;
        }
        if reason.is_local() {
            let mut flushed = true;
            if let Some(out) = io.outbound.as_mut() {
                // Best effort, never blocking: whatever the socket takes now.
                let _ = out.write_to(
                    &io.stream,
                    &mut self.core.pool,
                    &mut self.core.counts.writes,
                );
                flushed = out.is_empty();
            }
            if flushed {
                self.send_close_notify(&mut slot.io);
            }
        }
        let io = &mut slot.io;
        if io.flags & SUBSCRIBED != 0 {
            self.core.topics.remove_conn(key);
        }
        // A connection whose layer never opened was never reported to the
        // handler; it is counted, not heard of.
        let opened = !io.layer.as_ref().is_some_and(|l| l.is_pending());
        let id = ConnId {
            loop_id: self.core.loop_id as u16,
            slot: key as u32,
            generation: io.generation,
        };
        crate::memory::report::overload_close(id, &reason, self.core.now);
        // Counted closed before `on_close`, so whoever it notifies sees the count.
        self.core
            .engine
            .counters(self.core.loop_id)
            .record_close(&reason);
        if let Some(entry) = io.timing.entry.take() {
            self.core.conn_wheel.cancel(entry);
        }
        if io.timing.has_user_timers {
            let slot_key = key as u32;
            let armed: Vec<(u64, crate::timer::TimerId)> = self
                .core
                .user_timers
                .range((slot_key, 0)..=(slot_key, u64::MAX))
                .map(|(&(_, k), &id)| (k, id))
                .collect();
            for (k, id) in armed {
                self.core.user_timers.remove(&(slot_key, k));
                self.core.user_wheel.cancel(id);
            }
        }
        let mut peers = self.conns.all();
        let mut conn = Conn::new(
            key,
            id,
            &mut slot.io,
            &mut slot.state,
            &mut peers,
            &[],
            &mut self.core,
        );
        conn.discard = true;
        let handler = &mut self.handler;
        if opened
            && panic::catch_unwind(AssertUnwindSafe(|| handler.on_close(&mut conn, &reason)))
                .is_err()
        {
            log::error!("on_close panicked on {id}");
        }
        if let Some(layer) = slot.io.layer.as_mut() {
            layer.release(&mut self.core.pool);
        }
        if let Some(buf) = slot.io.inbound.take() {
            self.core.pool.give(buf);
        }
        if let Some(q) = slot.io.outbound.take() {
            self.core.recycle(q);
        }
        // Dropping the stream closes the socket, which also removes it from epoll.
        let Slot { io, state } = slot;
        let SlotIo { stream, dial, .. } = io;
        drop(stream);
        if let Some(info) = dial {
            self.maybe_redial(info, state);
        }
    }
}

fn slot_generation<S>(conns: &Slots<Slot<S>>, key: usize) -> Option<u32> {
    conns.get(key).map(|s| s.io.generation)
}

fn io_reason(e: io::Error) -> CloseReason {
    match e.kind() {
        io::ErrorKind::ConnectionReset
        | io::ErrorKind::BrokenPipe
        | io::ErrorKind::ConnectionAborted => CloseReason::Reset,
        _ => CloseReason::Io(e),
    }
}
