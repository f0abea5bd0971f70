//! The load generator: one thread, one mio loop, many pipelined connections, and
//! every echoed byte checked against what was sent.
//!
//! Each connection keeps up to `depth` requests in flight. Closed loop (the default)
//! sends a new request as soon as a response completes, and times it from that
//! moment. Open loop (`rate`) releases requests on a fixed global schedule, round
//! robin over the connections, and times each from its *scheduled* start: a server
//! that falls behind is charged for the wait, so the latency figures are free of
//! coordinated omission.

use std::collections::VecDeque;
use std::fmt;
use std::io::{self, Read, Write};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use mio::net::TcpStream;
use mio::{Events, Interest, Poll, Token};

use super::wire::{Message, Proto};

/// A run fails when requests are in flight and none has completed for this long.
const STALL_LIMIT: Duration = Duration::from_secs(5);
const READ_BUFFER: usize = 64 * 1024;

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
    /// An echoed byte differs from the byte sent: the server is wrong.
    Mismatch {
        conn: usize,
        seq: u64,
        offset: usize,
        got: u8,
        want: u8,
    },
    /// The server sent bytes that no request asked for.
    Unexpected {
        conn: usize,
        bytes: usize,
    },
    /// The server closed a connection.
    Closed {
        conn: usize,
    },
    /// Requests were in flight and none completed for [`STALL_LIMIT`].
    Stalled {
        in_flight: u64,
    },
    /// A counted load did not complete within its time limit.
    TimedOut {
        completed: u64,
        wanted: u64,
    },
    Io(io::Error),
}

impl LoadError {
    /// Wrong bytes came back: no figure of this server means anything.
    pub fn is_corruption(&self) -> bool {
        matches!(
            self,
            LoadError::Mismatch { .. } | LoadError::Unexpected { .. }
        )
    }
}

impl fmt::Display for LoadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LoadError::Mismatch {
                conn,
                seq,
                offset,
                got,
                want,
            } => write!(
                f,
                "connection {conn}, request {seq}, byte {offset}: got {got:#04x}, sent {want:#04x}"
            ),
            LoadError::Unexpected { conn, bytes } => {
                write!(
                    f,
                    "connection {conn}: {bytes} bytes arrived with no request in flight"
                )
            }
            LoadError::Closed { conn } => write!(f, "connection {conn} closed by the server"),
            LoadError::Stalled { in_flight } => write!(
                f,
                "{in_flight} requests in flight and none answered for {STALL_LIMIT:?}"
            ),
            LoadError::TimedOut { completed, wanted } => write!(
                f,
                "only {completed} of {wanted} requests answered in the time allowed"
            ),
            LoadError::Io(e) => write!(f, "{e}"),
        }
    }
}

impl From<io::Error> for LoadError {
    fn from(e: io::Error) -> Self {
        LoadError::Io(e)
    }
}

/// A set of established connections to one server, and the loop that drives them.
pub struct Client {
    load: Load,
    poll: Poll,
    events: Events,
    conns: Vec<Conn>,
    read_buf: Box<[u8]>,
    in_flight: u64,
    /// Open loop only: the schedule, which runs on across windows.
    schedule: Option<Schedule>,
}

impl Client {
    /// Opens `count` connections to `addr` and makes one verified round trip on each,
    /// so that every connection is known to be accepted and served before it counts.
    ///
    /// Connections are set up one at a time: no burst can overflow the server's
    /// accept queue (which would stall on SYN retransmits), and a loopback round
    /// trip costs tens of microseconds, so 10,000 take about a second.
    pub fn connect(
        addr: SocketAddr,
        count: usize,
        load: Load,
        deadline: Instant,
    ) -> Result<Client, LoadError> {
        let poll = Poll::new()?;
        let mut conns = Vec::with_capacity(count);
        for index in 0..count {
            let mut conn = Conn::handshake(addr, index, load, deadline)?;
            poll.registry().register(
                &mut conn.stream,
                Token(index),
                Interest::READABLE | Interest::WRITABLE,
            )?;
            conns.push(conn);
        }
        let schedule = load.rate.map(|rate| Schedule {
            interval_ns: 1e9 / rate,
            start: None,
            released: 0,
        });
        Ok(Client {
            load,
            poll,
            events: Events::with_capacity(1024),
            conns,
            read_buf: vec![0; READ_BUFFER].into_boxed_slice(),
            in_flight: 0,
            schedule,
        })
    }

    /// Drives the load for `duration` and returns what completed in that time.
    /// Requests in flight at the end stay in flight for the next window.
    pub fn run(&mut self, duration: Duration) -> Result<Window, LoadError> {
        self.drive(duration, None)
    }

    /// Closed loop only: sends exactly `requests` more requests, keeping `depth` in
    /// flight per connection while any are left to send, and returns once every
    /// request in flight is answered, so no request is left in flight. The count
    /// includes requests a previous [`Client::run`] left in flight: `requests` = 0
    /// only drains them. Fails with [`LoadError::TimedOut`] after `limit`.
    pub fn run_requests(&mut self, requests: u64, limit: Duration) -> Result<Window, LoadError> {
        assert!(self.schedule.is_none(), "a counted load is closed loop");
        let wanted = requests + self.in_flight;
        let window = self.drive(limit, Some(requests))?;
        if self.in_flight > 0 {
            return Err(LoadError::TimedOut {
                completed: window.requests,
                wanted,
            });
        }
        Ok(window)
    }

    /// Drives the load until `duration` has passed or, with a `budget` of requests
    /// to send, until all are sent and answered.
    fn drive(&mut self, duration: Duration, mut budget: Option<u64>) -> Result<Window, LoadError> {
        let start = Instant::now();
        let end = start + duration;
        let mut window = Window {
            requests: 0,
            elapsed: Duration::ZERO,
            latency: Histogram::new_with_bounds(1, 60_000_000_000, 3)
                .expect("static histogram bounds are valid"),
        };
        let depth = self.load.depth;
        let closed_loop = self.schedule.is_none();
        for conn in &mut self.conns {
            self.in_flight += conn.top_up(start, depth, closed_loop, &mut budget);
            conn.flush()?;
        }
        let mut last_progress = start;
        loop {
            let now = Instant::now();
            if now >= end || (budget == Some(0) && self.in_flight == 0) {
                break;
            }
            if self.in_flight == 0 {
                last_progress = now;
            } else if now - last_progress > STALL_LIMIT {
                return Err(LoadError::Stalled {
                    in_flight: self.in_flight,
                });
            }
            let mut wake_at = end.min(now + STALL_LIMIT);
            if let Some(schedule) = &mut self.schedule {
                while let Some((index, due)) = schedule.pop_due(now, self.conns.len()) {
                    let conn = &mut self.conns[index];
                    conn.due.push_back(due);
                    self.in_flight += conn.top_up(now, depth, false, &mut None);
                    conn.flush()?;
                }
                wake_at = wake_at.min(schedule.next_due());
            }
            // epoll's timeout is in milliseconds: busy-poll when the next event of
            // our own is closer than that, so the schedule stays accurate.
            let mut timeout = wake_at.saturating_duration_since(now);
            if timeout < Duration::from_millis(1) {
                timeout = Duration::ZERO;
            }
            match self.poll.poll(&mut self.events, Some(timeout)) {
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                result => result?,
            }
            for event in &self.events {
                let conn = &mut self.conns[event.token().0];
                let now = Instant::now();
                if event.is_readable() {
                    let done = conn.receive(&mut self.read_buf, now, &mut window.latency)?;
                    if done > 0 {
                        self.in_flight -= done;
                        window.requests += done;
                        last_progress = now;
                    }
                }
                self.in_flight += conn.top_up(now, depth, closed_loop, &mut budget);
                conn.flush()?;
            }
        }
        window.elapsed = start.elapsed();
        Ok(window)
    }
}

/// The open-loop schedule: request `n` (counted over all connections) is due at
/// `start + n * interval`, on connection `n % connections`.
struct Schedule {
    interval_ns: f64,
    /// Set when the first window starts.
    start: Option<Instant>,
    released: u64,
}

impl Schedule {
    fn next_due(&self) -> Instant {
        let offset = Duration::from_nanos((self.released as f64 * self.interval_ns) as u64);
        self.start.expect("the schedule has started") + offset
    }

    /// The next request due by `now`, if any: its connection and scheduled start.
    fn pop_due(&mut self, now: Instant, conns: usize) -> Option<(usize, Instant)> {
        self.start.get_or_insert(now);
        let due = self.next_due();
        if due > now {
            return None;
        }
        let conn = (self.released % conns as u64) as usize;
        self.released += 1;
        Some((conn, due))
    }
}

struct Conn {
    index: usize,
    stream: TcpStream,
    /// The request template; each request is a copy with its sequence number.
    request: Message,
    /// The response being received: the request it echoes.
    expected: Message,
    next_seq: u64,
    expected_seq: u64,
    /// How far into `expected` the bytes received so far reach.
    received: usize,
    out: Vec<u8>,
    written: usize,
    /// Start time of each request sent and not fully answered, oldest first.
    in_flight: VecDeque<Instant>,
    /// Open loop: scheduled start of requests not sent yet because `depth` are in flight.
    due: VecDeque<Instant>,
}

impl Conn {
    /// Connects (blocking) and makes the first round trip, request 0.
    fn handshake(
        addr: SocketAddr,
        index: usize,
        load: Load,
        deadline: Instant,
    ) -> Result<Conn, LoadError> {
        let remaining = || {
            let left = deadline.saturating_duration_since(Instant::now());
            // Zero means "no timeout" to std; an expired deadline must time out instead.
            left.max(Duration::from_millis(1))
        };
        let context = |e: io::Error| io::Error::new(e.kind(), format!("connection {index}: {e}"));
        let mut stream =
            std::net::TcpStream::connect_timeout(&addr, remaining()).map_err(context)?;
        stream.set_nodelay(true)?;
        stream.set_write_timeout(Some(remaining()))?;
        stream.set_read_timeout(Some(remaining()))?;
        let request = Message::new(load.proto, load.payload, index);
        stream.write_all(request.bytes()).map_err(context)?;
        let mut echo = vec![0; request.bytes().len()];
        stream.read_exact(&mut echo).map_err(context)?;
        stream.set_nonblocking(true)?;
        let now = Instant::now();
        let mut conn = Conn {
            index,
            stream: TcpStream::from_std(stream),
            request,
            expected: Message::new(load.proto, load.payload, index),
            next_seq: 1,
            expected_seq: 0,
            received: 0,
            out: Vec::new(),
            written: 0,
            in_flight: VecDeque::with_capacity(load.depth),
            due: VecDeque::new(),
        };
        conn.in_flight.push_back(now);
        conn.verify(&echo, now, None)?;
        Ok(conn)
    }

    /// Sends requests until `depth` are in flight; returns how many it queued.
    /// Closed loop starts them now; open loop only sends those already due. A
    /// `budget` of requests left to send is counted down and respected.
    fn top_up(
        &mut self,
        now: Instant,
        depth: usize,
        closed_loop: bool,
        budget: &mut Option<u64>,
    ) -> u64 {
        let mut sent = 0;
        while self.in_flight.len() < depth && *budget != Some(0) {
            let start = if closed_loop {
                now
            } else {
                match self.due.pop_front() {
                    Some(scheduled) => scheduled,
                    None => break,
                }
            };
            if let Some(left) = budget {
                *left -= 1;
            }
            self.request.append_to(&mut self.out, self.next_seq);
            self.next_seq += 1;
            self.in_flight.push_back(start);
            sent += 1;
        }
        sent
    }

    /// Writes queued requests until done or the socket is full.
    fn flush(&mut self) -> io::Result<()> {
        while self.written < self.out.len() {
            match self.stream.write(&self.out[self.written..]) {
                Ok(n) => self.written += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        self.out.clear();
        self.written = 0;
        Ok(())
    }

    /// Reads and verifies what arrived; returns how many responses completed.
    fn receive(
        &mut self,
        buf: &mut [u8],
        now: Instant,
        latency: &mut Histogram<u64>,
    ) -> Result<u64, LoadError> {
        let mut completed = 0;
        loop {
            match self.stream.read(buf) {
                Ok(0) => return Err(LoadError::Closed { conn: self.index }),
                Ok(n) => {
                    completed += self.verify(&buf[..n], now, Some(&mut *latency))?;
                    // A short read drained the socket. Edge-triggered epoll reports
                    // every later arrival, so the read that would say WouldBlock is
                    // a wasted syscall.
                    if n < buf.len() {
                        return Ok(completed);
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(completed),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e.into()),
            }
        }
    }

    /// Checks `data` against the bytes expected next and records each completed
    /// response's latency.
    fn verify(
        &mut self,
        mut data: &[u8],
        now: Instant,
        mut latency: Option<&mut Histogram<u64>>,
    ) -> Result<u64, LoadError> {
        let mut completed = 0;
        while !data.is_empty() {
            let Some(&start) = self.in_flight.front() else {
                return Err(LoadError::Unexpected {
                    conn: self.index,
                    bytes: data.len(),
                });
            };
            let want = &self.expected.bytes()[self.received..];
            let n = want.len().min(data.len());
            if data[..n] != want[..n] {
                let at = data
                    .iter()
                    .zip(want)
                    .position(|(a, b)| a != b)
                    .expect("the slices differ");
                return Err(LoadError::Mismatch {
                    conn: self.index,
                    seq: self.expected_seq,
                    offset: self.received + at,
                    got: data[at],
                    want: want[at],
                });
            }
            data = &data[n..];
            self.received += n;
            if self.received == self.expected.bytes().len() {
                self.received = 0;
                self.expected_seq += 1;
                self.expected.set_seq(self.expected_seq);
                self.in_flight.pop_front();
                if let Some(histogram) = latency.as_deref_mut() {
                    let nanos = now.duration_since(start).as_nanos();
                    histogram.saturating_record(u64::try_from(nanos).unwrap_or(u64::MAX));
                }
                completed += 1;
            }
        }
        Ok(completed)
    }
}
