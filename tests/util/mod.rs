//! Shared helpers for the integration tests: a recording handler and clients
//! that wait for events with deadlines instead of sleeping.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::mpsc::{Receiver, Sender, channel};
use std::time::{Duration, Instant};

use tether::{Action, CloseReason, Conn, ConnId, EventHandler};

/// Generous: tests must pass on a loaded 2-core machine, and an event that comes
/// at all comes well within it.
pub const DEADLINE: Duration = Duration::from_secs(10);

/// What a [`Recorder`] saw, in order, from every loop.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ev {
    Open(ConnId),
    Close(ConnId, String),
    Wake(ConnId),
}

/// Echoes like the echo example and reports opens, closes and wakes.
/// Input `PANIC` makes it panic; on wake it writes `woke`.
pub struct Recorder {
    pub tx: Sender<Ev>,
}

impl EventHandler for Recorder {
    type State = ();

    fn on_open(&mut self, conn: &mut Conn<'_, ()>) -> Action {
        let _ = self.tx.send(Ev::Open(conn.id()));
        Action::Continue
    }

    fn on_traffic(&mut self, conn: &mut Conn<'_, ()>) -> Action {
        let data = conn.read_buf();
        if data.starts_with(b"PANIC") {
            panic!("asked to panic");
        }
        conn.write(data);
        conn.consume(data.len());
        Action::Continue
    }

    fn on_close(&mut self, conn: &mut Conn<'_, ()>, reason: &CloseReason) {
        let _ = self.tx.send(Ev::Close(conn.id(), reason_name(reason)));
    }

    fn on_wake(&mut self, conn: &mut Conn<'_, ()>) -> Action {
        let _ = self.tx.send(Ev::Wake(conn.id()));
        conn.write(b"woke");
        Action::Continue
    }
}

/// The variant name of a close reason: `Local`, `Reset`, `IdleTimeout`, …
pub fn reason_name(reason: &CloseReason) -> String {
    let debug = format!("{reason:?}");
    debug.split('(').next().unwrap_or_default().to_string()
}

/// A recorder factory and the receiving end of its events.
pub fn recorder() -> (
    impl Fn(usize) -> Recorder + Send + Sync + 'static,
    Receiver<Ev>,
) {
    let (tx, rx) = channel();
    (move |_| Recorder { tx: tx.clone() }, rx)
}

/// Next event, or a panic naming what was awaited.
pub fn next_event(rx: &Receiver<Ev>, what: &str) -> Ev {
    rx.recv_timeout(DEADLINE)
        .unwrap_or_else(|_| panic!("no event within {DEADLINE:?} while waiting for {what}"))
}

/// Skips events until one matches.
pub fn wait_for(rx: &Receiver<Ev>, what: &str, mut pred: impl FnMut(&Ev) -> bool) -> Ev {
    let end = Instant::now() + DEADLINE;
    loop {
        let left = end.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(ev) if pred(&ev) => return ev,
            Ok(_) => {}
            Err(_) => panic!("no {what} within {DEADLINE:?}"),
        }
    }
}

/// A blocking client socket with read and write deadlines.
pub fn connect(addr: SocketAddr) -> TcpStream {
    let s = TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(DEADLINE)).unwrap();
    s.set_write_timeout(Some(DEADLINE)).unwrap();
    s.set_nodelay(true).unwrap();
    s
}

/// Reads exactly `n` bytes or panics at the deadline.
pub fn read_n(s: &mut TcpStream, n: usize) -> Vec<u8> {
    let mut buf = vec![0; n];
    s.read_exact(&mut buf)
        .expect("read_exact within the deadline");
    buf
}

/// Reads until EOF (or the deadline, which panics).
pub fn read_to_eof(s: &mut TcpStream) -> Vec<u8> {
    let mut out = Vec::new();
    s.read_to_end(&mut out).expect("EOF within the deadline");
    out
}

/// Writes `msg` and checks that exactly `msg` comes back.
pub fn roundtrip(s: &mut TcpStream, msg: &[u8]) {
    s.write_all(msg).unwrap();
    assert_eq!(read_n(s, msg.len()), msg);
}

/// A deterministic pattern, so a misplaced byte is noticed.
pub fn pattern(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}
