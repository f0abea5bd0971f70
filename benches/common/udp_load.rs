//! The UDP load generator: one thread, one mio loop, several connected client
//! sockets, each keeping a window of datagrams in flight, and every echoed
//! datagram checked against what was sent.
//!
//! Datagrams carry a per-socket sequence number followed by bytes seeded by the
//! socket's index (see [`Message`]): a datagram echoed to the wrong socket,
//! corrupted or truncated does not match, and one never sent is told by its number.
//! UDP may lose datagrams: one unanswered for [`LOSS_TIMEOUT`] counts as lost and
//! leaves the window, so loss never hangs the load; an answer arriving after that
//! counts as late. Sending and receiving use `sendmmsg`/`recvmmsg`, so the load
//! generator spends far less per datagram than the servers it measures.

use std::collections::VecDeque;
use std::fmt;
use std::io;
use std::net::{SocketAddr, UdpSocket as StdUdpSocket};
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use mio::net::UdpSocket;
use mio::{Events, Interest, Poll, Token};

use super::wire::{Message, Proto};

/// A datagram unanswered for this long is counted lost.
pub const LOSS_TIMEOUT: Duration = Duration::from_millis(200);
/// A run fails when datagrams are in flight and none has come back for this long.
const STALL_LIMIT: Duration = Duration::from_secs(5);
/// Datagrams per `recvmmsg`.
const BATCH: usize = 64;
/// Receive buffer per datagram: larger than any datagram sent, so a longer answer
/// is seen as such.
const MAX_DATAGRAM: usize = 2048;
/// How often the loop wakes to expire lost datagrams when nothing arrives.
const TICK: Duration = Duration::from_millis(10);

/// The load put on the server.
#[derive(Clone, Copy, Debug)]
pub struct UdpLoad {
    /// Client sockets, each with its own port.
    pub sockets: usize,
    /// Datagrams in flight per socket.
    pub window: usize,
    /// Bytes per datagram.
    pub payload: usize,
}

/// What one window of time saw.
pub struct UdpWindow {
    pub sent: u64,
    /// Answers received in time and verified.
    pub received: u64,
    /// Datagrams given up as lost in this window.
    pub lost: u64,
    /// Answers that came after their datagram was counted lost.
    pub late: u64,
    /// The same answer received twice.
    pub duplicates: u64,
    pub elapsed: Duration,
    /// Round-trip time in nanoseconds.
    pub latency: Histogram<u64>,
}

#[derive(Debug)]
pub enum UdpError {
    /// Wrong bytes came back: the server is wrong.
    Corrupt(String),
    /// Datagrams were in flight and none came back for [`STALL_LIMIT`].
    Stalled {
        in_flight: u64,
    },
    Io(io::Error),
}

impl fmt::Display for UdpError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            UdpError::Corrupt(why) => f.write_str(why),
            UdpError::Stalled { in_flight } => write!(
                f,
                "{in_flight} datagrams in flight and none answered for {STALL_LIMIT:?}"
            ),
            UdpError::Io(e) => write!(f, "{e}"),
        }
    }
}

impl From<io::Error> for UdpError {
    fn from(e: io::Error) -> Self {
        UdpError::Io(e)
    }
}

/// State of one datagram sent.
#[derive(Clone, Copy)]
enum Fate {
    InFlight(Instant),
    Answered,
    Lost,
}

struct Sock {
    index: usize,
    socket: UdpSocket,
    template: Message,
    next_seq: u64,
    /// Sequence number of `fates[0]`.
    base: u64,
    fates: VecDeque<Fate>,
    in_flight: usize,
    /// Datagrams queued and not sent yet, back to back.
    out: Vec<u8>,
}

/// Client sockets connected to one server, and the loop that drives them.
pub struct UdpClient {
    load: UdpLoad,
    poll: Poll,
    events: Events,
    socks: Vec<Sock>,
    recv: RecvBatch,
    in_flight: u64,
}

impl UdpClient {
    pub fn connect(server: SocketAddr, load: UdpLoad) -> Result<UdpClient, UdpError> {
        assert!(load.payload >= 8 && load.payload <= MAX_DATAGRAM / 2);
        let poll = Poll::new()?;
        let mut socks = Vec::with_capacity(load.sockets);
        for index in 0..load.sockets {
            let std_socket = StdUdpSocket::bind(SocketAddr::from(([127, 0, 0, 1], 0)))?;
            std_socket.connect(server)?;
            std_socket.set_nonblocking(true)?;
            let mut socket = UdpSocket::from_std(std_socket);
            poll.registry()
                .register(&mut socket, Token(index), Interest::READABLE)?;
            socks.push(Sock {
                index,
                socket,
                template: Message::new(Proto::Raw, load.payload, index),
                next_seq: 0,
                base: 0,
                fates: VecDeque::new(),
                in_flight: 0,
                out: Vec::new(),
            });
        }
        Ok(UdpClient {
            load,
            poll,
            events: Events::with_capacity(256),
            socks,
            recv: RecvBatch::new(),
            in_flight: 0,
        })
    }

    /// Keeps every socket's window full for `duration`; datagrams in flight at the
    /// end stay in flight for the next call.
    pub fn run(&mut self, duration: Duration) -> Result<UdpWindow, UdpError> {
        self.drive(duration, true)
    }

    /// Sends nothing more and waits until every datagram in flight is answered or
    /// counted lost (at most [`LOSS_TIMEOUT`] and a tick).
    pub fn drain(&mut self) -> Result<UdpWindow, UdpError> {
        self.drive(LOSS_TIMEOUT * 2 + TICK * 2, false)
    }

    fn drive(&mut self, duration: Duration, send: bool) -> Result<UdpWindow, UdpError> {
        let start = Instant::now();
        let end = start + duration;
        let mut window = UdpWindow {
            sent: 0,
            received: 0,
            lost: 0,
            late: 0,
            duplicates: 0,
            elapsed: Duration::ZERO,
            latency: Histogram::new_with_bounds(1, 60_000_000_000, 3)
                .expect("static histogram bounds are valid"),
        };
        let window_size = if send { self.load.window } else { 0 };
        for sock in &mut self.socks {
            let queued = sock.top_up(start, window_size);
            self.in_flight += queued;
            window.sent += queued;
            sock.flush()?;
        }
        let mut last_progress = start;
        loop {
            let now = Instant::now();
            if now >= end || (!send && self.in_flight == 0) {
                break;
            }
            if self.in_flight == 0 {
                last_progress = now;
            } else if now - last_progress > STALL_LIMIT {
                return Err(UdpError::Stalled {
                    in_flight: self.in_flight,
                });
            }
            let timeout = end.saturating_duration_since(now).min(TICK);
            match self.poll.poll(&mut self.events, Some(timeout)) {
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                result => result?,
            }
            let now = Instant::now();
            for event in &self.events {
                let sock = &mut self.socks[event.token().0];
                let got = sock.receive(&mut self.recv, now, &mut window)?;
                if got > 0 {
                    self.in_flight -= got;
                    last_progress = now;
                }
            }
            for sock in &mut self.socks {
                self.in_flight -= sock.expire(now, &mut window);
                let queued = sock.top_up(now, window_size);
                self.in_flight += queued;
                window.sent += queued;
                sock.flush()?;
            }
        }
        window.elapsed = start.elapsed();
        Ok(window)
    }
}

impl Sock {
    /// Queues datagrams until `window` are in flight; returns how many.
    fn top_up(&mut self, now: Instant, window: usize) -> u64 {
        let mut queued = 0;
        while self.in_flight < window {
            self.template.append_to(&mut self.out, self.next_seq);
            self.next_seq += 1;
            self.fates.push_back(Fate::InFlight(now));
            self.in_flight += 1;
            queued += 1;
        }
        queued
    }

    /// Sends the queued datagrams with `sendmmsg`, as many as the socket takes.
    fn flush(&mut self) -> io::Result<()> {
        let len = self.template.bytes().len();
        let mut sent = 0;
        while sent < self.out.len() {
            let pending = &self.out[sent..];
            let count = (pending.len() / len).min(BATCH);
            let mut iovs: [libc::iovec; BATCH] = [libc::iovec {
                iov_base: std::ptr::null_mut(),
                iov_len: 0,
            }; BATCH];
            // SAFETY: all-zero bytes are a valid `mmsghdr` (null pointers, zero lengths).
            let mut msgs: [libc::mmsghdr; BATCH] = unsafe { std::mem::zeroed() };
            for i in 0..count {
                iovs[i] = libc::iovec {
                    iov_base: pending[i * len..].as_ptr() as *mut libc::c_void,
                    iov_len: len,
                };
                msgs[i].msg_hdr.msg_iov = &mut iovs[i];
                msgs[i].msg_hdr.msg_iovlen = 1;
            }
            // SAFETY: `msgs[..count]` point at `iovs`, which point into `self.out`,
            // all alive and unmoved for the call; the socket is connected, so no
            // address is needed; the kernel only reads the payloads.
            let rc = unsafe {
                libc::sendmmsg(
                    self.socket.as_raw_fd(),
                    msgs.as_mut_ptr(),
                    count as libc::c_uint,
                    libc::MSG_DONTWAIT,
                )
            };
            if rc < 0 {
                let e = io::Error::last_os_error();
                match e.kind() {
                    io::ErrorKind::Interrupted => continue,
                    // Full send buffer: the rest goes on a later tick.
                    io::ErrorKind::WouldBlock => break,
                    // An ICMP error for an earlier datagram; the socket is fine.
                    io::ErrorKind::ConnectionRefused => continue,
                    _ => return Err(e),
                }
            }
            sent += rc as usize * len;
        }
        self.out.drain(..sent);
        Ok(())
    }

    /// Reads every datagram waiting; returns how many in-flight datagrams got
    /// their answer.
    fn receive(
        &mut self,
        batch: &mut RecvBatch,
        now: Instant,
        window: &mut UdpWindow,
    ) -> Result<u64, UdpError> {
        let mut answered = 0;
        loop {
            let n = match batch.recv(self.socket.as_raw_fd()) {
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(answered),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                // An ICMP error for an earlier datagram: the server is gone or not
                // up yet; the stall limit tells.
                Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => continue,
                Err(e) => return Err(e.into()),
            };
            for i in 0..n {
                let (data, truncated) = batch.get(i);
                answered += self.check(data, truncated, now, window)?;
            }
            // A short batch drained the socket; edge triggering reports the next one.
            if n < BATCH {
                return Ok(answered);
            }
        }
    }

    /// Verifies one answer; 1 if it answers a datagram in flight.
    fn check(
        &mut self,
        data: &[u8],
        truncated: bool,
        now: Instant,
        window: &mut UdpWindow,
    ) -> Result<u64, UdpError> {
        let want = self.template.bytes();
        if truncated || data.len() != want.len() {
            return Err(UdpError::Corrupt(format!(
                "socket {}: a datagram of {}{} bytes came back, {} were sent",
                self.index,
                if truncated { "more than " } else { "" },
                data.len(),
                want.len()
            )));
        }
        let seq = u64::from_le_bytes(data[..8].try_into().expect("8 bytes"));
        if seq >= self.next_seq {
            return Err(UdpError::Corrupt(format!(
                "socket {}: answer to datagram {seq}, never sent (next is {})",
                self.index, self.next_seq
            )));
        }
        if let Some(at) = data[8..].iter().zip(&want[8..]).position(|(a, b)| a != b) {
            return Err(UdpError::Corrupt(format!(
                "socket {}, datagram {seq}, byte {}: got {:#04x}, sent {:#04x}",
                self.index,
                at + 8,
                data[at + 8],
                want[at + 8]
            )));
        }
        let Some(fate) = seq
            .checked_sub(self.base)
            .and_then(|i| self.fates.get_mut(i as usize))
        else {
            // Settled and forgotten: answered or lost long ago.
            window.late += 1;
            return Ok(0);
        };
        match *fate {
            Fate::InFlight(sent) => {
                *fate = Fate::Answered;
                self.in_flight -= 1;
                window.received += 1;
                let nanos = now.duration_since(sent).as_nanos();
                window
                    .latency
                    .saturating_record(u64::try_from(nanos).unwrap_or(u64::MAX));
                self.settle();
                Ok(1)
            }
            Fate::Lost => {
                window.late += 1;
                Ok(0)
            }
            Fate::Answered => {
                window.duplicates += 1;
                Ok(0)
            }
        }
    }

    /// Counts as lost every datagram in flight for longer than [`LOSS_TIMEOUT`];
    /// returns how many.
    fn expire(&mut self, now: Instant, window: &mut UdpWindow) -> u64 {
        let mut lost = 0;
        for fate in &mut self.fates {
            match *fate {
                Fate::InFlight(sent) if now.duration_since(sent) > LOSS_TIMEOUT => {
                    *fate = Fate::Lost;
                    lost += 1;
                }
                // Sent in order: the rest are younger.
                Fate::InFlight(_) => break,
                _ => {}
            }
        }
        self.in_flight -= lost as usize;
        window.lost += lost;
        self.settle();
        lost
    }

    /// Forgets settled datagrams at the front.
    fn settle(&mut self) {
        while let Some(Fate::Answered | Fate::Lost) = self.fates.front() {
            self.fates.pop_front();
            self.base += 1;
        }
    }
}

/// Buffers, iovecs and headers for one `recvmmsg` of up to [`BATCH`] datagrams.
struct RecvBatch {
    bufs: Box<[u8]>,
    iovs: Box<[libc::iovec]>,
    msgs: Box<[libc::mmsghdr]>,
}

impl RecvBatch {
    fn new() -> RecvBatch {
        let mut bufs = vec![0u8; BATCH * MAX_DATAGRAM].into_boxed_slice();
        let mut iovs: Box<[libc::iovec]> = (0..BATCH)
            .map(|i| libc::iovec {
                iov_base: bufs[i * MAX_DATAGRAM..].as_mut_ptr().cast(),
                iov_len: MAX_DATAGRAM,
            })
            .collect();
        let msgs = (0..BATCH)
            .map(|i| {
                // SAFETY: all-zero bytes are a valid `mmsghdr` (null pointers, zero lengths).
                let mut msg: libc::mmsghdr = unsafe { std::mem::zeroed() };
                msg.msg_hdr.msg_iov = &mut iovs[i];
                msg.msg_hdr.msg_iovlen = 1;
                msg
            })
            .collect();
        // The boxes' heap blocks never move, so the pointers stay valid when the
        // boxes themselves are moved into the struct.
        RecvBatch { bufs, iovs, msgs }
    }

    /// One non-blocking `recvmmsg`; returns how many datagrams arrived.
    fn recv(&mut self, fd: i32) -> io::Result<usize> {
        let _ = &self.iovs;
        // SAFETY: every header points at one iovec of `self.iovs`, each pointing at
        // its own MAX_DATAGRAM bytes of `self.bufs`; all live as long as `self` and
        // are exclusively borrowed through `&mut self` for the call.
        let rc = unsafe {
            libc::recvmmsg(
                fd,
                self.msgs.as_mut_ptr(),
                BATCH as libc::c_uint,
                libc::MSG_DONTWAIT,
                std::ptr::null_mut(),
            )
        };
        if rc < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(rc as usize)
    }

    /// Datagram `i` of the last batch, and whether it was truncated.
    fn get(&self, i: usize) -> (&[u8], bool) {
        let len = (self.msgs[i].msg_len as usize).min(MAX_DATAGRAM);
        let truncated = self.msgs[i].msg_hdr.msg_flags & libc::MSG_TRUNC != 0;
        (
            &self.bufs[i * MAX_DATAGRAM..i * MAX_DATAGRAM + len],
            truncated,
        )
    }
}
