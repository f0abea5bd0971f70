//! Runtime counters: plain per-loop numbers, summed when asked for.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use crate::reason::CloseReason;

/// Connections closed, by reason.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ClosedBy {
    /// [`CloseReason::Local`].
    pub local: u64,
    /// [`CloseReason::PeerClosed`].
    pub peer_closed: u64,
    /// [`CloseReason::Reset`].
    pub reset: u64,
    /// [`CloseReason::IdleTimeout`].
    pub idle_timeout: u64,
    /// [`CloseReason::FrameTimeout`].
    pub frame_timeout: u64,
    /// [`CloseReason::Protocol`].
    pub protocol: u64,
    /// [`CloseReason::WriteOverflow`].
    pub write_overflow: u64,
    /// [`CloseReason::InboundOverflow`].
    pub inbound_overflow: u64,
    /// [`CloseReason::Io`].
    pub io: u64,
    /// [`CloseReason::Panic`].
    pub panic: u64,
    /// [`CloseReason::Shutdown`].
    pub shutdown: u64,
    /// [`CloseReason::Proxy`].
    pub proxy: u64,
    /// `CloseReason::Tls` (feature `tls`).
    pub tls: u64,
    /// [`CloseReason::MemoryBudget`].
    pub memory_budget: u64,
    /// [`CloseReason::SlowSubscriber`].
    pub slow_subscriber: u64,
}

const REASONS: usize = 15;

fn reason_index(reason: &CloseReason) -> usize {
    match reason {
        CloseReason::Local => 0,
        CloseReason::PeerClosed => 1,
        CloseReason::Reset => 2,
        CloseReason::IdleTimeout(_) => 3,
        CloseReason::FrameTimeout => 4,
        CloseReason::Protocol(_) => 5,
        CloseReason::WriteOverflow => 6,
        CloseReason::InboundOverflow => 7,
        CloseReason::Io(_) => 8,
        CloseReason::Panic => 9,
        CloseReason::Shutdown => 10,
        CloseReason::Proxy(_) => 11,
        #[cfg(feature = "tls")]
        CloseReason::Tls(_) => 12,
        CloseReason::MemoryBudget => 13,
        CloseReason::SlowSubscriber => 14,
    }
}

impl ClosedBy {
    fn from_array(a: [u64; REASONS]) -> ClosedBy {
        ClosedBy {
            local: a[0],
            peer_closed: a[1],
            reset: a[2],
            idle_timeout: a[3],
            frame_timeout: a[4],
            protocol: a[5],
            write_overflow: a[6],
            inbound_overflow: a[7],
            io: a[8],
            panic: a[9],
            shutdown: a[10],
            proxy: a[11],
            tls: a[12],
            memory_budget: a[13],
            slow_subscriber: a[14],
        }
    }

    fn add(&mut self, o: &ClosedBy) {
        let fields = [
            (&mut self.local, o.local),
            (&mut self.peer_closed, o.peer_closed),
            (&mut self.reset, o.reset),
            (&mut self.idle_timeout, o.idle_timeout),
            (&mut self.frame_timeout, o.frame_timeout),
            (&mut self.protocol, o.protocol),
            (&mut self.write_overflow, o.write_overflow),
            (&mut self.inbound_overflow, o.inbound_overflow),
            (&mut self.io, o.io),
            (&mut self.panic, o.panic),
            (&mut self.shutdown, o.shutdown),
            (&mut self.proxy, o.proxy),
            (&mut self.tls, o.tls),
            (&mut self.memory_budget, o.memory_budget),
            (&mut self.slow_subscriber, o.slow_subscriber),
        ];
        for (mine, theirs) in fields {
            *mine += theirs;
        }
    }
}

/// One loop's counters, or their sum.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Counts {
    /// Connections open now.
    pub open: usize,
    /// Connections accepted or dialed (and established) since start.
    pub accepted: u64,
    /// Connections closed since start.
    pub closed: u64,
    /// The same, by reason.
    pub closed_by: ClosedBy,
    /// Sockets accepted and closed at once because `max_connections` was reached.
    pub rejected: u64,
    /// Sockets accepted and closed at once to shed load when out of descriptors.
    pub shed: u64,
    /// Bytes read from sockets.
    pub bytes_in: u64,
    /// Bytes written to sockets.
    pub bytes_out: u64,
    /// Frames decoded by [`decode_frames`](crate::decode_frames).
    pub frames_in: u64,
    /// Frames written with [`FrameConn::write_frame`](crate::FrameConn::write_frame)
    /// and [`write_frame`](crate::write_frame).
    pub frames_out: u64,
    /// Commands dropped because their connection id was stale.
    pub stale_commands: u64,
    /// UDP datagrams received.
    pub datagrams_in: u64,
    /// UDP datagrams sent.
    pub datagrams_out: u64,
    /// UDP datagrams the socket refused to send (dropped).
    pub datagrams_dropped: u64,
    /// UDP datagrams dropped unread because their source was the engine's own
    /// address or port 0 (see `Options::udp_allow_own_source`).
    pub datagrams_reflected: u64,
    /// Bytes of buffer capacity owned by connections with bytes in flight.
    pub buffer_bytes: usize,
    /// Bytes of buffer capacity idle in the pools.
    pub pool_idle_bytes: usize,
    /// Armed timer entries (connection timeouts and user timers).
    pub timers: usize,
    /// Payload copies into outbound buffers: one per [`Conn::write`] /
    /// `ConnRef::write` call, plus one per callback output the socket took only
    /// part of (the rest is kept). A `Bytes` given to `send`, `broadcast` or
    /// `publish` is never copied and never counted here.
    ///
    /// [`Conn::write`]: crate::Conn::write
    pub copies: u64,
    /// Bytes those copies moved.
    pub copied_bytes: u64,
    /// `Bytes` segments queued without a copy (one per recipient of a `send`,
    /// `broadcast` or `publish`).
    pub shared_segments: u64,
    /// `write`/`writev` calls made for connections.
    pub writes: u64,
    /// Distinct topics with at least one subscriber (a gauge; a topic with
    /// members on two loops counts twice in the total).
    pub topics: usize,
    /// Topic memberships (a gauge).
    pub subscriptions: usize,
    /// Topic messages dropped for slow subscribers (`SlowSubscriber::Drop`).
    pub topic_drops: u64,
}

impl Counts {
    fn add(&mut self, o: &Counts) {
        self.open += o.open;
        self.accepted += o.accepted;
        self.closed += o.closed;
        self.closed_by.add(&o.closed_by);
        self.rejected += o.rejected;
        self.shed += o.shed;
        self.bytes_in += o.bytes_in;
        self.bytes_out += o.bytes_out;
        self.frames_in += o.frames_in;
        self.frames_out += o.frames_out;
        self.stale_commands += o.stale_commands;
        self.datagrams_in += o.datagrams_in;
        self.datagrams_out += o.datagrams_out;
        self.datagrams_dropped += o.datagrams_dropped;
        self.datagrams_reflected += o.datagrams_reflected;
        self.buffer_bytes += o.buffer_bytes;
        self.pool_idle_bytes += o.pool_idle_bytes;
        self.timers += o.timers;
        self.copies += o.copies;
        self.copied_bytes += o.copied_bytes;
        self.shared_segments += o.shared_segments;
        self.writes += o.writes;
        self.topics += o.topics;
        self.subscriptions += o.subscriptions;
        self.topic_drops += o.topic_drops;
    }
}

/// A snapshot of an engine's counters: the total and each loop's.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Stats {
    /// Summed over all loops.
    pub total: Counts,
    /// Per loop, by loop index.
    pub loops: Vec<Counts>,
}

/// Counters one loop publishes. Only that loop writes them (except `open`, which
/// the accepting loop also raises when it hands a socket over), so most updates
/// are a plain load and store.
#[derive(Debug, Default)]
pub(crate) struct LoopCounters {
    pub(crate) open: AtomicUsize,
    pub(crate) accepted: AtomicU64,
    pub(crate) closed: AtomicU64,
    closed_by: [AtomicU64; REASONS],
    pub(crate) rejected: AtomicU64,
    pub(crate) shed: AtomicU64,
    pub(crate) bytes_in: AtomicU64,
    pub(crate) bytes_out: AtomicU64,
    pub(crate) frames_in: AtomicU64,
    pub(crate) frames_out: AtomicU64,
    pub(crate) stale_commands: AtomicU64,
    pub(crate) datagrams_in: AtomicU64,
    pub(crate) datagrams_out: AtomicU64,
    pub(crate) datagrams_dropped: AtomicU64,
    pub(crate) datagrams_reflected: AtomicU64,
    pub(crate) buffer_bytes: AtomicUsize,
    pub(crate) pool_idle_bytes: AtomicUsize,
    pub(crate) timers: AtomicUsize,
    pub(crate) copies: AtomicU64,
    pub(crate) copied_bytes: AtomicU64,
    pub(crate) shared_segments: AtomicU64,
    pub(crate) writes: AtomicU64,
    pub(crate) topics: AtomicUsize,
    pub(crate) subscriptions: AtomicUsize,
    pub(crate) topic_drops: AtomicU64,
}

/// Adds to a counter that only the calling loop writes: no locked instruction
/// on the data path.
#[inline]
pub(crate) fn bump(counter: &AtomicU64, n: u64) {
    counter.store(counter.load(Ordering::Relaxed) + n, Ordering::Relaxed);
}

impl LoopCounters {
    pub(crate) fn record_close(&self, reason: &CloseReason) {
        self.open.fetch_sub(1, Ordering::Relaxed);
        bump(&self.closed, 1);
        bump(&self.closed_by[reason_index(reason)], 1);
    }

    fn snapshot(&self) -> Counts {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        Counts {
            open: self.open.load(Ordering::Relaxed),
            accepted: get(&self.accepted),
            closed: get(&self.closed),
            closed_by: ClosedBy::from_array(std::array::from_fn(|i| get(&self.closed_by[i]))),
            rejected: get(&self.rejected),
            shed: get(&self.shed),
            bytes_in: get(&self.bytes_in),
            bytes_out: get(&self.bytes_out),
            frames_in: get(&self.frames_in),
            frames_out: get(&self.frames_out),
            stale_commands: get(&self.stale_commands),
            datagrams_in: get(&self.datagrams_in),
            datagrams_out: get(&self.datagrams_out),
            datagrams_dropped: get(&self.datagrams_dropped),
            datagrams_reflected: get(&self.datagrams_reflected),
            buffer_bytes: self.buffer_bytes.load(Ordering::Relaxed),
            pool_idle_bytes: self.pool_idle_bytes.load(Ordering::Relaxed),
            timers: self.timers.load(Ordering::Relaxed),
            copies: get(&self.copies),
            copied_bytes: get(&self.copied_bytes),
            shared_segments: get(&self.shared_segments),
            writes: get(&self.writes),
            topics: self.topics.load(Ordering::Relaxed),
            subscriptions: self.subscriptions.load(Ordering::Relaxed),
            topic_drops: get(&self.topic_drops),
        }
    }
}

pub(crate) fn collect(counters: &[LoopCounters]) -> Stats {
    let loops: Vec<Counts> = counters.iter().map(LoopCounters::snapshot).collect();
    let mut total = Counts::default();
    for l in &loops {
        total.add(l);
    }
    Stats { total, loops }
}
