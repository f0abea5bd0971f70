//! The benches' load: tether-load's generator (one load loop, so one thread, on
//! the load CPU) seen through what a measurement needs: connect and check every
//! connection, drive for a span or for a count of requests, read the window.
//!
//! Closed loop (the default) keeps `depth` requests in flight per connection and
//! times each from when it was written. Open loop (`rate`) gives every connection
//! a fixed schedule and times each request from its *scheduled* send, so a server
//! that falls behind is charged for the wait (no coordinated omission). Every
//! echoed byte is checked.

use std::fmt;
use std::net::SocketAddr;
use std::thread;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use tether::net::ListenAddr;
use tether_load::proto::{echo::Echo, frame::Frame};
use tether_load::{Counter, Generator, Quick, Setup, Shape};

use super::wire::Proto;

/// A run fails when requests are in flight and none has completed for this long.
const STALL_LIMIT: Duration = Duration::from_secs(5);
/// Connections dialed before waiting for them to be up: no burst overflows the
/// server's accept queue (which would stall on SYN retransmits).
const DIAL_BATCH: u32 = 256;
const POLL: Duration = Duration::from_millis(1);

/// The load put on every connection.
#[derive(Clone, Copy, Debug)]
pub struct Load {
    pub proto: Proto,
    /// Payload bytes per request (the frame header comes on top in frame mode).
    pub payload: usize,
    /// Requests in flight per connection.
    pub depth: usize,
    /// Open loop: requests per second over all connections. `None` is closed loop.
    pub rate: Option<f64>,
}

/// What one measure window saw.
pub struct Window {
    /// Responses completed (and verified) within the window.
    pub requests: u64,
    pub elapsed: Duration,
    /// Request latency in nanoseconds.
    pub latency: Histogram<u64>,
}

#[derive(Debug)]
pub enum LoadError {
    /// A response failed its check (what was wrong): the server is wrong.
    Corrupt(String),
    /// The server closed this many connections.
    Closed(u64),
    /// Requests were in flight and none completed for [`STALL_LIMIT`].
    Stalled { in_flight: u64 },
    /// A counted load or the setup did not complete within its time limit.
    TimedOut { completed: u64, wanted: u64 },
    /// The generator could not start or dial.
    Start(String),
}

impl LoadError {
    /// Wrong bytes came back: no figure of this server means anything.
    pub fn is_corruption(&self) -> bool {
        matches!(self, LoadError::Corrupt(_))
    }
}

impl fmt::Display for LoadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LoadError::Corrupt(why) => f.write_str(why),
            LoadError::Closed(n) => write!(f, "{n} connections closed by the server"),
            LoadError::Stalled { in_flight } => write!(
                f,
                "{in_flight} requests in flight and none answered for {STALL_LIMIT:?}"
            ),
            LoadError::TimedOut { completed, wanted } => write!(
                f,
                "only {completed} of {wanted} requests answered in the time allowed"
            ),
            LoadError::Start(why) => write!(f, "load generator: {why}"),
        }
    }
}

/// Established, checked connections to one server and the loop driving them.
pub struct Client {
    generator: Generator,
    /// Sending waits for a budget (after connect or a counted load).
    paused: bool,
}

impl Client {
    /// Opens `count` connections to `addr` and makes one verified round trip on
    /// each, so that every connection is known to be accepted and served before it
    /// counts. The load waits until [`run`](Client::run) or
    /// [`run_requests`](Client::run_requests).
    pub fn connect(
        addr: SocketAddr,
        count: usize,
        load: Load,
        deadline: Instant,
    ) -> Result<Client, LoadError> {
        let conns = count as u32;
        let setup = Setup {
            addr: ListenAddr::Tcp(addr),
            loops: 1,
            shape: Shape {
                depth: load.depth.max(1) as u32,
                interval_ns: load
                    .rate
                    .map(|r| (f64::from(conns.max(1)) * 1e9 / r).max(1.0) as u64),
                conns,
                hold: false,
                heartbeat: None,
                handshake: true,
                batch: false,
            },
            reconnect: false,
        };
        let mut generator = match load.proto {
            Proto::Raw => Generator::start(&setup, Echo::new(load.payload)),
            Proto::Frame => Generator::start(&setup, Frame::new(load.payload)),
        }
        .map_err(|e| LoadError::Start(e.to_string()))?;
        generator.control().set_allowance(Some(0));
        while generator.dialed() < conns {
            let n = DIAL_BATCH.min(conns - generator.dialed());
            generator
                .dial(n)
                .map_err(|e| LoadError::Start(e.to_string()))?;
            let want = u64::from(generator.dialed());
            let (q, ok) = generator.wait_for(deadline, |q| {
                q.counters.get(Counter::Requests) >= want || q.counters.get(Counter::Closed) > 0
            });
            check(&generator, &q)?;
            if !ok {
                return Err(LoadError::TimedOut {
                    completed: q.counters.get(Counter::Requests),
                    wanted: want,
                });
            }
        }
        Ok(Client {
            generator,
            paused: true,
        })
    }

    /// Drives the load for `duration` and returns what completed in that time.
    /// Requests in flight at the end stay in flight for the next window.
    pub fn run(&mut self, duration: Duration) -> Result<Window, LoadError> {
        if self.paused {
            self.generator.control().set_allowance(None);
            self.paused = false;
        }
        let before = self.generator.snapshot();
        let end = before.at + duration;
        self.watch(|_, now| now >= end)?;
        let after = self.generator.snapshot();
        Ok(window(&after.since(&before)))
    }

    /// Closed loop only: sends exactly `requests` more requests, keeping `depth` in
    /// flight per connection while any are left to send, and returns once every
    /// request in flight is answered, so no request is left in flight. The count
    /// includes requests a previous [`Client::run`] left in flight: `requests` = 0
    /// only drains them. Fails with [`LoadError::TimedOut`] after `limit`.
    pub fn run_requests(&mut self, requests: u64, limit: Duration) -> Result<Window, LoadError> {
        self.generator.control().set_allowance(Some(requests));
        self.paused = true;
        let before = self.generator.snapshot();
        let wanted = before.counters.get(Counter::Requests) + before.in_flight + requests;
        let deadline = before.at + limit;
        let done = self.watch(|q, now| {
            (q.counters.get(Counter::Requests) >= wanted && q.in_flight == 0) || now >= deadline
        })?;
        // The loops publish latencies every tick: wait for the last ones.
        thread::sleep(tether_load::handler::PUBLISH_EVERY + tether_load::handler::TICK);
        let mut after = self.generator.snapshot();
        after.at = done;
        if after.in_flight > 0 || after.counters.get(Counter::Requests) < wanted {
            return Err(LoadError::TimedOut {
                completed: after.counters.get(Counter::Requests)
                    - before.counters.get(Counter::Requests),
                wanted: wanted - before.counters.get(Counter::Requests),
            });
        }
        Ok(window(&after.since(&before)))
    }

    /// Polls the counters until `done`, failing on a check or a stall; returns
    /// when `done` held.
    fn watch(&self, done: impl Fn(&Quick, Instant) -> bool) -> Result<Instant, LoadError> {
        let mut last = (0, Instant::now());
        loop {
            let now = Instant::now();
            let q = self.generator.quick();
            check(&self.generator, &q)?;
            if done(&q, now) {
                return Ok(now);
            }
            let requests = q.counters.get(Counter::Requests);
            if requests != last.0 || q.in_flight == 0 {
                last = (requests, now);
            } else if now - last.1 > STALL_LIMIT {
                return Err(LoadError::Stalled {
                    in_flight: q.in_flight,
                });
            }
            thread::sleep(POLL);
        }
    }
}

/// The failure the counters or the generator show, if any.
fn check(generator: &Generator, q: &Quick) -> Result<(), LoadError> {
    if let Some(why) = generator.control().failure() {
        return Err(LoadError::Corrupt(why));
    }
    match q.counters.get(Counter::Closed) {
        0 => Ok(()),
        n => Err(LoadError::Closed(n)),
    }
}

fn window(w: &tether_load::Window) -> Window {
    Window {
        requests: w.requests(),
        elapsed: w.elapsed,
        latency: w.latency.clone(),
    }
}
