//! What a run counts: per-loop counters and latency histograms, published by the
//! loops and read by whoever drives the run, and the snapshots taken of them.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;

/// Highest latency recorded, in nanoseconds; longer ones are recorded as this.
pub const MAX_LATENCY_NS: u64 = 100_000_000_000;

/// A latency histogram in nanoseconds, 3 significant digits, fixed bounds (so
/// recording never allocates).
pub fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, MAX_LATENCY_NS, 3).expect("valid fixed bounds")
}

/// What is counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Counter {
    /// Responses completed and checked.
    Requests,
    /// Of those, well-formed refusals (non-2xx status, Redis error reply).
    Refused,
    /// Request bytes written.
    BytesOut,
    /// Response bytes read.
    BytesIn,
    /// Connections established (first or again).
    Connects,
    /// Dial attempts that failed.
    ConnectFailures,
    /// Connections the server closed or reset during the run.
    Closed,
    /// Requests in flight on a connection when it closed.
    Lost,
    /// Redials scheduled after a connection was lost.
    Reconnects,
    /// Responses that failed their check (wrong bytes, malformed).
    VerifyFailures,
}

/// Number of [`Counter`]s.
pub const COUNTERS: usize = 10;

impl Counter {
    /// Every counter, in index order.
    pub const ALL: [Counter; COUNTERS] = [
        Counter::Requests,
        Counter::Refused,
        Counter::BytesOut,
        Counter::BytesIn,
        Counter::Connects,
        Counter::ConnectFailures,
        Counter::Closed,
        Counter::Lost,
        Counter::Reconnects,
        Counter::VerifyFailures,
    ];

    /// Its name in the output.
    pub fn name(self) -> &'static str {
        match self {
            Counter::Requests => "requests",
            Counter::Refused => "refused",
            Counter::BytesOut => "bytes_out",
            Counter::BytesIn => "bytes_in",
            Counter::Connects => "connects",
            Counter::ConnectFailures => "connect_failures",
            Counter::Closed => "closed",
            Counter::Lost => "lost",
            Counter::Reconnects => "reconnects",
            Counter::VerifyFailures => "verify_failures",
        }
    }
}

/// One value per [`Counter`].
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Counters(pub [u64; COUNTERS]);

impl Counters {
    /// The value of `c`.
    pub fn get(&self, c: Counter) -> u64 {
        self.0[c as usize]
    }

    /// Adds `n` to `c`.
    pub fn add(&mut self, c: Counter, n: u64) {
        self.0[c as usize] += n;
    }

    /// Each counter minus the one in `earlier`.
    pub fn since(&self, earlier: &Counters) -> Counters {
        let mut out = *self;
        for (o, e) in out.0.iter_mut().zip(earlier.0) {
            *o = o.saturating_sub(e);
        }
        out
    }

    /// Errors: refusals, failed checks, failed dials, connections closed by the
    /// server.
    pub fn errors(&self) -> u64 {
        [
            Counter::Refused,
            Counter::VerifyFailures,
            Counter::ConnectFailures,
            Counter::Closed,
        ]
        .iter()
        .map(|&c| self.get(c))
        .sum()
    }
}

/// What one loop publishes: written only by its loop, read by anyone.
#[derive(Debug)]
pub struct LoopStats {
    counters: [AtomicU64; COUNTERS],
    in_flight: AtomicU64,
    up: AtomicU64,
    latency: Mutex<Histogram<u64>>,
}

impl Default for LoopStats {
    fn default() -> Self {
        LoopStats {
            counters: Default::default(),
            in_flight: AtomicU64::new(0),
            up: AtomicU64::new(0),
            latency: Mutex::new(histogram()),
        }
    }
}

impl LoopStats {
    /// Publishes the loop's running totals.
    pub fn publish(&self, counters: &Counters, in_flight: u64, up: u64) {
        for (a, v) in self.counters.iter().zip(counters.0) {
            a.store(v, Ordering::Relaxed);
        }
        self.in_flight.store(in_flight, Ordering::Relaxed);
        self.up.store(up, Ordering::Relaxed);
    }

    /// Moves the loop's recent latencies into the published histogram.
    pub fn publish_latency(&self, recent: &mut Histogram<u64>) {
        if recent.is_empty() {
            return;
        }
        let mut total = self.latency.lock().unwrap_or_else(|p| p.into_inner());
        // Same bounds on both sides: adding never fails or allocates.
        let _ = total.add(&*recent);
        recent.reset();
    }
}

/// The totals of every loop at one instant.
#[derive(Debug, Clone)]
pub struct Snapshot {
    /// When it was taken.
    pub at: Instant,
    /// Counters summed over the loops.
    pub counters: Counters,
    /// Requests sent and not yet answered.
    pub in_flight: u64,
    /// Connections open.
    pub up: u64,
    /// Every latency recorded so far (lags the counters by up to one loop tick).
    pub latency: Histogram<u64>,
}

impl Snapshot {
    /// Reads and sums `loops`.
    pub fn take(loops: &[LoopStats]) -> Snapshot {
        let at = Instant::now();
        let (counters, in_flight, up) = Snapshot::take_counters(loops);
        let mut latency = histogram();
        for l in loops {
            let h = l.latency.lock().unwrap_or_else(|p| p.into_inner());
            let _ = latency.add(&*h);
        }
        Snapshot {
            at,
            counters,
            in_flight,
            up,
            latency,
        }
    }

    /// Only the counters, connections in flight and connections up: no lock.
    pub fn take_counters(loops: &[LoopStats]) -> (Counters, u64, u64) {
        let mut out = (Counters::default(), 0, 0);
        for l in loops {
            for (c, a) in out.0.0.iter_mut().zip(&l.counters) {
                *c += a.load(Ordering::Relaxed);
            }
            out.1 += l.in_flight.load(Ordering::Relaxed);
            out.2 += l.up.load(Ordering::Relaxed);
        }
        out
    }

    /// What happened between `earlier` and this snapshot.
    pub fn since(&self, earlier: &Snapshot) -> Window {
        let mut latency = self.latency.clone();
        let _ = latency.subtract(&earlier.latency);
        Window {
            elapsed: self.at.saturating_duration_since(earlier.at),
            counters: self.counters.since(&earlier.counters),
            latency,
        }
    }
}

/// The figures of a span of a run.
#[derive(Debug, Clone)]
pub struct Window {
    /// How long it lasted.
    pub elapsed: Duration,
    /// What was counted in it.
    pub counters: Counters,
    /// Latencies in nanoseconds.
    pub latency: Histogram<u64>,
}

impl Window {
    /// Completed requests.
    pub fn requests(&self) -> u64 {
        self.counters.get(Counter::Requests)
    }

    /// Completed requests per second.
    pub fn rps(&self) -> f64 {
        let s = self.elapsed.as_secs_f64();
        if s > 0.0 {
            self.requests() as f64 / s
        } else {
            0.0
        }
    }

    /// Latency at quantile `q` in microseconds (0 with no sample).
    pub fn latency_us(&self, q: f64) -> f64 {
        if self.latency.is_empty() {
            return 0.0;
        }
        self.latency.value_at_quantile(q) as f64 / 1000.0
    }

    /// Highest latency in microseconds.
    pub fn max_us(&self) -> f64 {
        if self.latency.is_empty() {
            return 0.0;
        }
        self.latency.max() as f64 / 1000.0
    }
}
