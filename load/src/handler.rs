//! The event handler each load loop runs: writes requests as the load shape
//! allows, reads and checks responses, records latencies.
//!
//! Closed loop keeps `depth` requests in flight per connection and times each
//! from when it was written. Open loop gives every connection its own schedule
//! (`conns / rate` apart, staggered across connections), sends what is due up to
//! `depth` in flight, and times each request from its *scheduled* send time, so
//! a server that falls behind is charged for the wait (no coordinated omission).

use std::collections::{HashSet, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use tether::{Action, CloseReason, Conn, ConnId, ConnectFailure, EventHandler, LoopCtx, Redial};

use crate::control::Control;
use crate::proto::Protocol;
use crate::rng::Rng;
use crate::stats::{Counter, Counters, LoopStats, histogram};

/// How often a loop looks at the controls.
pub const TICK: Duration = Duration::from_millis(10);
/// Every this many ticks a loop publishes its latencies (adding histograms
/// walks every bucket: not each tick).
const PUBLISH_TICKS: u32 = 5;
/// The longest a latency waits to be published.
pub const PUBLISH_EVERY: Duration = Duration::from_millis(10 * PUBLISH_TICKS as u64);
/// The user timer of a connection waiting for its next scheduled send.
const SEND_TIMER: u64 = 1;

/// The load put on each connection.
#[derive(Debug, Clone, Copy)]
pub struct Shape {
    /// Requests in flight per connection, at most.
    pub depth: u32,
    /// Open loop: nanoseconds between one connection's scheduled requests.
    pub interval_ns: Option<u64>,
    /// Connections in the run (to stagger open-loop schedules).
    pub conns: u32,
    /// Send nothing but heartbeats (`None`: nothing at all).
    pub hold: bool,
    /// Hold mode: one request after this long without sending.
    pub heartbeat: Option<Duration>,
    /// Closed loop: write `depth` requests at once and the next batch only
    /// when all are answered (how wrk's pipeline script and redis-benchmark
    /// `-P` pipeline), instead of topping up as each answer arrives.
    pub batch: bool,
    /// Each connection first makes one round trip of its own (outside any
    /// budget), so a caller knows every connection is served before the load.
    pub handshake: bool,
}

/// What the loops of a run share.
#[derive(Debug)]
pub struct Shared<P> {
    /// The protocol.
    pub proto: P,
    /// The load shape.
    pub shape: Shape,
    /// Stop, budget and failure.
    pub control: Control,
    /// One per loop.
    pub loops: Vec<LoopStats>,
    /// Time zero of every timestamp.
    pub epoch: Instant,
}

/// One connection's state.
#[derive(Debug, Default)]
pub struct ConnState<C> {
    proto: C,
    /// The connection's number in the run, `0..conns`.
    pub index: u32,
    in_flight: u32,
    /// Send (or scheduled send) time of each request in flight, oldest first.
    sent: VecDeque<u64>,
    /// Open loop: when the next request is due.
    due: u64,
    /// The handshake round trip is done.
    greeted: bool,
}

impl<C: Default> ConnState<C> {
    /// The state of connection `index`.
    pub fn new(index: u32) -> Self {
        ConnState {
            index,
            ..Default::default()
        }
    }
}

/// The handler of one loop.
pub struct LoadHandler<P: Protocol> {
    shared: Arc<Shared<P>>,
    loop_id: usize,
    counters: Counters,
    in_flight: u64,
    up: u64,
    recent: Histogram<u64>,
    scratch: Vec<u8>,
    rng: Rng,
    /// Open connections, to wake when a budget is raised.
    open: HashSet<ConnId>,
    resumes_seen: u64,
    ticks: u32,
}

impl<P: Protocol> LoadHandler<P> {
    /// The handler of loop `loop_id`.
    pub fn new(shared: Arc<Shared<P>>, loop_id: usize) -> Self {
        let resumes_seen = shared.control.resumes();
        LoadHandler {
            shared,
            loop_id,
            counters: Counters::default(),
            in_flight: 0,
            up: 0,
            recent: histogram(),
            scratch: Vec::with_capacity(64 * 1024),
            rng: Rng::new(0x5eed ^ loop_id as u64),
            open: HashSet::new(),
            resumes_seen,
            ticks: 0,
        }
    }

    fn ns(&self, t: Instant) -> u64 {
        t.saturating_duration_since(self.shared.epoch).as_nanos() as u64
    }

    fn publish(&self) {
        self.shared.loops[self.loop_id].publish(&self.counters, self.in_flight, self.up);
    }

    /// Sends what the shape allows now; `force` sends one request even in hold
    /// mode (a heartbeat).
    fn fill(&mut self, conn: &mut Conn<'_, ConnState<P::Conn>>, force: bool) {
        let shape = self.shared.shape;
        let greeting = shape.handshake && !conn.state().greeted;
        let force = force || greeting;
        if self.shared.control.is_stopped() || (shape.hold && !force) {
            return;
        }
        let now = self.ns(conn.now());
        let st = conn.state_mut();
        let room = if force {
            u32::from(st.in_flight == 0)
        } else if shape.batch && st.in_flight > 0 {
            0
        } else {
            shape.depth.saturating_sub(st.in_flight)
        };
        let mut want = room;
        if let (Some(interval), false) = (shape.interval_ns, force) {
            let due = if st.due <= now {
                ((now - st.due) / interval + 1).min(u64::from(room)) as u32
            } else {
                0
            };
            want = due;
        }
        let n = match want {
            0 => 0,
            _ if force => want,
            _ => self.shared.control.take(want),
        };
        self.scratch.clear();
        for _ in 0..n {
            self.shared
                .proto
                .request(&mut st.proto, st.index, &mut self.rng, &mut self.scratch);
            match shape.interval_ns {
                Some(interval) if !force => {
                    st.sent.push_back(st.due);
                    st.due += interval;
                }
                _ => st.sent.push_back(now),
            }
        }
        st.in_flight += n;
        let next_due = match shape.interval_ns {
            Some(_) if !force && st.in_flight < shape.depth => Some(st.due.saturating_sub(now)),
            _ => None,
        };
        if n > 0 {
            self.in_flight += u64::from(n);
            self.counters
                .add(Counter::BytesOut, self.scratch.len() as u64);
            conn.write(&self.scratch);
        }
        if let Some(wait) = next_due {
            // Timers have 1 ms resolution and fire in the tick after their
            // deadline; asking one tick sooner makes them fire within a tick
            // either side of the due time instead of up to two ticks late (one
            // that fires early finds nothing due and asks again).
            let wait = Duration::from_nanos(wait).saturating_sub(Duration::from_millis(1));
            conn.set_timer(wait, SEND_TIMER);
        }
    }

    /// The connection is gone or reset: what it had in flight is lost.
    fn forget(&mut self, st: &mut ConnState<P::Conn>) {
        self.in_flight -= u64::from(st.in_flight);
        self.counters.add(Counter::Lost, u64::from(st.in_flight));
        st.in_flight = 0;
        st.sent.clear();
    }
}

impl<P: Protocol> EventHandler for LoadHandler<P> {
    type State = ConnState<P::Conn>;

    fn on_open(&mut self, conn: &mut Conn<'_, Self::State>) -> Action {
        let shape = self.shared.shape;
        let now = self.ns(conn.now());
        let id = conn.id();
        let st = conn.state_mut();
        self.forget(st);
        st.proto = Default::default();
        st.greeted = false;
        if st.sent.capacity() < shape.depth as usize && !shape.hold {
            st.sent.reserve_exact(shape.depth as usize);
        }
        if let Some(interval) = shape.interval_ns {
            st.due = now + interval * u64::from(st.index) / u64::from(shape.conns.max(1));
        }
        self.open.insert(id);
        self.up += 1;
        self.counters.add(Counter::Connects, 1);
        if shape.hold {
            conn.set_heartbeat(shape.heartbeat);
        }
        self.fill(conn, false);
        self.publish();
        Action::Continue
    }

    fn on_traffic(&mut self, conn: &mut Conn<'_, Self::State>) -> Action {
        let input = conn.read_buf();
        let now = self.ns(conn.now());
        let st = conn.state_mut();
        let read = self
            .shared
            .proto
            .responses(&mut st.proto, st.index, input, st.in_flight);
        let r = match read {
            Ok(r) => r,
            Err(e) => {
                self.counters.add(Counter::VerifyFailures, 1);
                let why = format!("connection {}: {e}", st.index);
                self.shared.control.fail(why);
                self.publish();
                return Action::Close;
            }
        };
        for _ in 0..r.completed {
            if let Some(t) = st.sent.pop_front() {
                self.recent.saturating_record(now.saturating_sub(t).max(1));
            }
        }
        st.in_flight -= r.completed;
        st.greeted |= r.completed > 0;
        self.in_flight -= u64::from(r.completed);
        self.counters.add(Counter::Requests, u64::from(r.completed));
        self.counters.add(Counter::Refused, u64::from(r.refused));
        self.counters.add(Counter::BytesIn, r.consumed as u64);
        conn.consume(r.consumed);
        if r.close {
            // The server announced it closes; the redial reopens the link.
            self.publish();
            return Action::Close;
        }
        self.fill(conn, false);
        self.publish();
        Action::Continue
    }

    fn on_timer(&mut self, conn: &mut Conn<'_, Self::State>, _key: u64) -> Action {
        self.fill(conn, false);
        self.publish();
        Action::Continue
    }

    fn on_wake(&mut self, conn: &mut Conn<'_, Self::State>) -> Action {
        self.fill(conn, false);
        self.publish();
        Action::Continue
    }

    fn on_heartbeat(&mut self, conn: &mut Conn<'_, Self::State>) -> Action {
        self.fill(conn, true);
        self.publish();
        Action::Continue
    }

    fn on_close(&mut self, conn: &mut Conn<'_, Self::State>, reason: &CloseReason) {
        let id = conn.id();
        self.open.remove(&id);
        self.up -= 1;
        if !reason.is_local() && !self.shared.control.is_stopped() {
            self.counters.add(Counter::Closed, 1);
        }
        let st = conn.state_mut();
        self.forget(st);
        self.publish();
    }

    fn on_boot(&mut self, _ctx: &mut LoopCtx<'_, Self::State>) {
        self.publish();
    }

    fn on_tick(&mut self, ctx: &mut LoopCtx<'_, Self::State>) -> Option<Duration> {
        self.ticks += 1;
        if self.ticks % PUBLISH_TICKS == 0 || self.shared.control.is_stopped() {
            self.shared.loops[self.loop_id].publish_latency(&mut self.recent);
        }
        let resumes = self.shared.control.resumes();
        if resumes != self.resumes_seen {
            self.resumes_seen = resumes;
            for &id in &self.open {
                let _ = ctx.engine().wake(id);
            }
        }
        Some(TICK)
    }

    fn on_connect_failed(
        &mut self,
        _ctx: &mut LoopCtx<'_, Self::State>,
        _failure: &ConnectFailure,
        _state: &mut Self::State,
    ) {
        self.counters.add(Counter::ConnectFailures, 1);
        self.publish();
    }

    fn on_reconnecting(
        &mut self,
        _ctx: &mut LoopCtx<'_, Self::State>,
        _redial: &Redial,
        _state: &mut Self::State,
    ) {
        self.counters.add(Counter::Reconnects, 1);
        self.publish();
    }

    fn on_shutdown(&mut self, _ctx: &mut LoopCtx<'_, Self::State>) {
        self.shared.loops[self.loop_id].publish_latency(&mut self.recent);
    }
}
