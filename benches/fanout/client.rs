//! The load client: members and one publisher in one single-threaded mio loop.
//!
//! It connects the members (each says [`wire::SUBSCRIBE`] and waits for
//! [`wire::JOINED`]), then the publisher, which keeps `window` messages in flight:
//! a message is complete when every member has it, and each completion lets the
//! publisher send one more. Every byte of every delivery is checked, and each
//! member must see the messages in order with no gap. The latency of a message is
//! the time from its write by the publisher to its arrival at the last member.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream as StdStream};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use mio::net::TcpStream;
use mio::{Events, Interest, Poll, Token};

use crate::child::{Counters, ServerChild};
use crate::perf::SyscallCounter;
use crate::servers::ServerKind;
use crate::wire;

/// Messages tracked at once; the window must stay below it.
const RING: usize = 4096;
/// A run in which nothing arrives for this long has failed.
const STALL: Duration = Duration::from_secs(10);
const READ_BUFFER: usize = 256 * 1024;

/// One fan-out case.
#[derive(Clone, Copy, Debug)]
pub struct Case {
    pub members: usize,
    /// Bytes per message, header included.
    pub size: usize,
}

/// How a run goes.
#[derive(Clone, Copy, Debug)]
pub struct Plan {
    pub loops: usize,
    pub warmup: Duration,
    pub measure: Duration,
    /// Messages in flight.
    pub window: usize,
    /// Count syscalls with perf during the measured window.
    pub perf: bool,
}

/// What one fan-out run measured.
#[derive(Clone, Debug)]
pub struct Figures {
    pub deliveries_per_sec: f64,
    pub cpu_ns_per_delivery: f64,
    pub syscalls_per_delivery: Option<f64>,
    pub allocs_per_delivery: f64,
    pub copies_per_delivery: f64,
    pub p50_us: f64,
    pub p99_us: f64,
}

/// Why a run produced no figures.
#[derive(Debug)]
pub enum RunError {
    /// A delivery was wrong: the bench stops.
    Corrupt(String),
    /// The run could not be made (a server did not start, a stall, …).
    Failed(String),
}

impl From<io::Error> for RunError {
    fn from(e: io::Error) -> Self {
        RunError::Failed(e.to_string())
    }
}

/// One member connection as the client sees it.
struct Member {
    stream: TcpStream,
    joined: bool,
    /// The sequence number of the next message, once the first has arrived.
    next: Option<u64>,
    /// The incomplete last message.
    partial: Vec<u8>,
}

/// Connects `n` members to `addr` and waits until the server has joined each.
fn join_members(poll: &mut Poll, addr: SocketAddr, n: usize) -> Result<Vec<Member>, RunError> {
    let mut members = Vec::with_capacity(n);
    for i in 0..n {
        let mut stream = TcpStream::from_std(connect(addr, wire::SUBSCRIBE)?);
        poll.registry()
            .register(&mut stream, Token(i), Interest::READABLE)?;
        members.push(Member {
            stream,
            joined: false,
            next: None,
            partial: Vec::new(),
        });
    }
    let mut events = Events::with_capacity(1024);
    let mut joined = 0;
    let deadline = Instant::now() + STALL;
    let mut byte = [0u8; 1];
    while joined < n {
        if Instant::now() > deadline {
            return Err(RunError::Failed(format!("{joined} of {n} members joined")));
        }
        poll.poll(&mut events, Some(Duration::from_millis(50)))?;
        for event in &events {
            let member = &mut members[event.token().0];
            if member.joined {
                continue;
            }
            match member.stream.read(&mut byte) {
                Ok(1) if byte[0] == wire::JOINED => {
                    member.joined = true;
                    joined += 1;
                }
                Ok(_) => return Err(RunError::Corrupt(format!("join answered {byte:?}"))),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => return Err(e.into()),
            }
        }
    }
    Ok(members)
}

fn connect(addr: SocketAddr, role: u8) -> io::Result<StdStream> {
    let mut stream = StdStream::connect(addr)?;
    stream.set_nodelay(true)?;
    stream.write_all(&[role])?;
    stream.set_nonblocking(true)?;
    Ok(stream)
}

impl Member {
    /// Reads and checks all that arrived, calling `deliver` with each message's
    /// sequence number.
    fn read(
        &mut self,
        buf: &mut [u8],
        size: usize,
        mut deliver: impl FnMut(u64),
    ) -> Result<(), RunError> {
        loop {
            let kept = self.partial.len();
            buf[..kept].copy_from_slice(&self.partial);
            let n = match self.stream.read(&mut buf[kept..]) {
                Ok(0) => return Err(RunError::Failed("the server closed a member".into())),
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e.into()),
            };
            let mut input = &buf[..kept + n];
            while input.len() >= size {
                let seq = wire::verify(&input[..size], size).map_err(RunError::Corrupt)?;
                match self.next {
                    Some(next) if next != seq => {
                        return Err(RunError::Corrupt(format!(
                            "message {seq} arrived where {next} was due"
                        )));
                    }
                    _ => self.next = Some(seq + 1),
                }
                deliver(seq);
                input = &input[size..];
            }
            self.partial.clear();
            self.partial.extend_from_slice(input);
        }
    }
}

/// Publish times and delivery counts of the messages in flight.
struct Tracker {
    members: u32,
    published_at: Vec<Option<Instant>>,
    delivered: Vec<u32>,
    deliveries: u64,
    completed: u64,
    latency: Histogram<u64>,
    recording: bool,
}

impl Tracker {
    fn new(members: usize) -> Tracker {
        Tracker {
            members: members as u32,
            published_at: vec![None; RING],
            delivered: vec![0; RING],
            deliveries: 0,
            completed: 0,
            latency: Histogram::new_with_bounds(1, 60_000_000_000, 3).expect("valid bounds"),
            recording: false,
        }
    }

    fn deliver(&mut self, seq: u64) {
        let slot = seq as usize % RING;
        self.deliveries += 1;
        self.delivered[slot] += 1;
        if self.delivered[slot] == self.members {
            self.delivered[slot] = 0;
            self.completed += 1;
            let published = self.published_at[slot].take();
            if let (Some(at), true) = (published, self.recording) {
                let _ = self.latency.record(at.elapsed().as_nanos() as u64);
            }
        }
    }
}

/// The publisher's connection and what it has not written yet.
struct Publisher {
    stream: TcpStream,
    next: u64,
    out: Vec<u8>,
    written: usize,
}

impl Publisher {
    /// Publishes until `window` messages are in flight, then writes what it can.
    fn publish(
        &mut self,
        tracker: &mut Tracker,
        size: usize,
        window: usize,
    ) -> Result<(), RunError> {
        let in_flight = (self.next - tracker.completed) as usize;
        if in_flight < window {
            let now = Instant::now();
            for _ in in_flight..window {
                let at = self.out.len();
                self.out.resize(at + size, 0);
                wire::encode(self.next, &mut self.out[at..]);
                tracker.published_at[self.next as usize % RING] = Some(now);
                self.next += 1;
            }
        }
        while self.written < self.out.len() {
            match self.stream.write(&self.out[self.written..]) {
                Ok(n) => self.written += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e.into()),
            }
        }
        self.out.clear();
        self.written = 0;
        Ok(())
    }
}

/// Runs one fan-out case against a fresh `kind` server.
pub fn fanout(kind: ServerKind, case: Case, plan: &Plan) -> Result<Figures, RunError> {
    assert!(plan.window < RING, "window too large");
    let mut server = ServerChild::spawn(kind, plan.loops)?;
    let mut poll = Poll::new()?;
    let mut members = join_members(&mut poll, server.addr(), case.members)?;
    let publisher_token = Token(case.members);
    let mut publisher = Publisher {
        stream: TcpStream::from_std(connect(server.addr(), wire::PUBLISH)?),
        next: 0,
        out: Vec::new(),
        written: 0,
    };
    poll.registry()
        .register(&mut publisher.stream, publisher_token, Interest::WRITABLE)?;
    let mut tracker = Tracker::new(case.members);
    let mut buf = vec![0u8; READ_BUFFER];
    let mut events = Events::with_capacity(1024);

    let warm_until = Instant::now() + plan.warmup;
    let mut perf_attach = None;
    let mut start: Option<(Instant, u64, Counters, Option<SyscallCounter>)> = None;
    let mut last_progress = (Instant::now(), 0);
    loop {
        publisher.publish(&mut tracker, case.size, plan.window)?;
        poll.poll(&mut events, Some(Duration::from_millis(10)))?;
        for event in &events {
            if event.token() == publisher_token {
                continue;
            }
            members[event.token().0].read(&mut buf, case.size, |seq| tracker.deliver(seq))?;
        }
        let now = Instant::now();
        if tracker.deliveries != last_progress.1 {
            last_progress = (now, tracker.deliveries);
        } else if now - last_progress.0 > STALL {
            return Err(RunError::Failed(format!(
                "no delivery for {STALL:?} ({} so far)",
                tracker.deliveries
            )));
        }
        match &start {
            None if now >= warm_until => {
                // perf needs a moment to attach: the load goes on meanwhile.
                let attach = perf_attach.get_or_insert_with(|| {
                    let (tx, rx) = mpsc::channel();
                    let pid = server.pid();
                    let perf = plan.perf;
                    thread::spawn(move || {
                        let _ = tx.send(perf.then(|| SyscallCounter::attach(pid)));
                    });
                    rx
                });
                let Ok(perf) = attach.try_recv() else {
                    continue;
                };
                let perf = perf.transpose().map_err(RunError::Failed)?;
                let counters = server.counters()?;
                tracker.recording = true;
                start = Some((Instant::now(), tracker.deliveries, counters, perf));
            }
            Some((t0, _, _, _)) if now - *t0 >= plan.measure => break,
            _ => {}
        }
    }
    let end = server.counters()?;
    let elapsed = Instant::now();
    let (t0, deliveries0, begin, perf) = start.expect("the measured window started");
    let syscalls = perf
        .map(|p| p.finish().map(|count| count.total))
        .transpose()
        .map_err(RunError::Failed)?;
    let deliveries = (tracker.deliveries - deliveries0) as f64;
    if deliveries == 0.0 {
        return Err(RunError::Failed(format!(
            "nothing delivered in the measured window ({} before it, {} published)",
            tracker.deliveries, publisher.next
        )));
    }
    let figures = Figures {
        deliveries_per_sec: deliveries / (elapsed - t0).as_secs_f64(),
        cpu_ns_per_delivery: (end.cpu_nanos - begin.cpu_nanos) as f64 / deliveries,
        syscalls_per_delivery: syscalls.map(|n| n as f64 / deliveries),
        allocs_per_delivery: (end.allocs - begin.allocs) as f64 / deliveries,
        copies_per_delivery: (end.copies - begin.copies) as f64 / deliveries,
        p50_us: tracker.latency.value_at_quantile(0.50) as f64 / 1000.0,
        p99_us: tracker.latency.value_at_quantile(0.99) as f64 / 1000.0,
    };
    drop(members);
    drop(publisher);
    server.quit()?;
    Ok(figures)
}

/// What one ticker run measured.
#[derive(Clone, Debug)]
pub struct TickFigures {
    /// Ticks the median member received in the measured window.
    pub ticks: u64,
    /// The fewest and most any member received.
    pub ticks_min: u64,
    pub ticks_max: u64,
    /// Arrival-to-arrival intervals at the members, all members together.
    pub interval_p50_us: f64,
    pub interval_p99_us: f64,
    pub cpu_ns_per_delivery: f64,
}

/// Runs the ticker case: `members` members of a fresh `kind` ticker server, each
/// receiving `size`-byte messages; ticks are counted over `window` after `settle`.
pub fn ticker(
    kind: ServerKind,
    members: usize,
    size: usize,
    loops: usize,
    settle: Duration,
    window: Duration,
) -> Result<TickFigures, RunError> {
    let mut server = ServerChild::spawn(kind, loops)?;
    let mut poll = Poll::new()?;
    let mut conns = join_members(&mut poll, server.addr(), members)?;
    let mut buf = vec![0u8; READ_BUFFER];
    let mut events = Events::with_capacity(1024);
    let mut last_arrival: Vec<Option<Instant>> = vec![None; members];
    let mut ticks = vec![0u64; members];
    let mut intervals = Histogram::<u64>::new_with_bounds(1, 60_000_000_000, 3).expect("bounds");
    let t0 = Instant::now() + settle;
    let t1 = t0 + window;
    let mut begin = None;
    let mut deliveries = 0u64;
    loop {
        let now = Instant::now();
        if now >= t1 {
            break;
        }
        if begin.is_none() && now >= t0 {
            begin = Some(server.counters()?);
        }
        poll.poll(&mut events, Some(t1 - now))?;
        let now = Instant::now();
        let measuring = now >= t0 && now < t1;
        for event in &events {
            let i = event.token().0;
            conns[i].read(&mut buf, size, |_| {
                if measuring {
                    ticks[i] += 1;
                    deliveries += 1;
                    if let Some(prev) = last_arrival[i] {
                        let _ = intervals.record((now - prev).as_nanos() as u64);
                    }
                }
                last_arrival[i] = Some(now);
            })?;
        }
    }
    let end = server.counters()?;
    let begin = begin.ok_or_else(|| RunError::Failed("the window never started".into()))?;
    drop(conns);
    server.quit()?;
    ticks.sort_unstable();
    Ok(TickFigures {
        ticks: ticks[members / 2],
        ticks_min: ticks[0],
        ticks_max: ticks[members - 1],
        interval_p50_us: intervals.value_at_quantile(0.50) as f64 / 1000.0,
        interval_p99_us: intervals.value_at_quantile(0.99) as f64 / 1000.0,
        cpu_ns_per_delivery: (end.cpu_nanos - begin.cpu_nanos) as f64 / deliveries.max(1) as f64,
    })
}
