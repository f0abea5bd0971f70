//! Shared helpers for the integration tests: a recording handler and clients
//! that wait for events with deadlines instead of sleeping.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::mpsc::{Receiver, Sender, channel};
use std::time::{Duration, Instant};

use tether::{Action, CloseReason, Conn, ConnId, EventHandler};

pub mod served;

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

/// An engine with one loop, listening on an ephemeral loopback port.
pub fn one_loop<H: EventHandler>(
    factory: impl Fn(usize) -> H + Send + Sync + 'static,
) -> tether::Engine {
    tether::Engine::builder(factory)
        .loops(1)
        .listen("127.0.0.1:0")
        .start()
        .expect("an engine on loopback")
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

// ---- waiting on counters, raw client sockets, child-process servers ----

/// Polls `engine.stats()` until `pred` holds, or panics with the last snapshot.
///
/// Gauges (`buffer_bytes`, `timers`, …) are published once per loop iteration,
/// so they may trail the event that changed them by one iteration.
pub fn stats_until(
    engine: &tether::Engine,
    what: &str,
    mut pred: impl FnMut(&tether::Stats) -> bool,
) -> tether::Stats {
    let end = Instant::now() + DEADLINE;
    loop {
        let stats = engine.stats();
        if pred(&stats) {
            return stats;
        }
        assert!(
            Instant::now() < end,
            "no {what} within {DEADLINE:?}; last stats: {stats:#?}"
        );
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// A client whose receive buffer is `rcvbuf` bytes (before the kernel's
/// doubling), set before connecting so the advertised window stays small.
///
/// The server's send buffer still autotunes to a few MiB on loopback, so output
/// backs up in the server only past that much.
pub fn connect_small_rcvbuf(addr: SocketAddr, rcvbuf: usize) -> TcpStream {
    use socket2::{Domain, Socket, Type};
    let sock = Socket::new(Domain::for_address(addr), Type::STREAM, None).unwrap();
    sock.set_recv_buffer_size(rcvbuf).unwrap();
    sock.connect(&addr.into()).expect("connect");
    let s: TcpStream = sock.into();
    s.set_read_timeout(Some(DEADLINE)).unwrap();
    s.set_write_timeout(Some(DEADLINE)).unwrap();
    s.set_nodelay(true).unwrap();
    s
}

/// Closes with RST instead of FIN.
pub fn reset(s: TcpStream) {
    socket2::SockRef::from(&s)
        .set_linger(Some(Duration::ZERO))
        .unwrap();
    drop(s);
}

/// Sets the soft RLIMIT_NOFILE of this process (at most the hard limit).
pub fn set_nofile(soft: u64) {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit only read and write the rlimit we pass.
    let rc = unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) != 0 {
            -1
        } else {
            lim.rlim_cur = soft.min(lim.rlim_max);
            libc::setrlimit(libc::RLIMIT_NOFILE, &lim)
        }
    };
    assert_eq!(rc, 0, "setrlimit: {}", std::io::Error::last_os_error());
}

/// Resident set size of a process, KiB; `None` if /proc cannot be read (a
/// process out of descriptors cannot open it).
pub fn rss_kib(pid: u32) -> Option<u64> {
    let statm = std::fs::read_to_string(format!("/proc/{pid}/statm")).ok()?;
    let pages: u64 = statm.split(' ').nth(1)?.parse().ok()?;
    Some(pages * 4)
}

/// Open descriptors of a process; `None` if /proc cannot be read. Counted
/// from this process, the listing's own descriptor is included.
pub fn fd_count(pid: u32) -> Option<u64> {
    Some(std::fs::read_dir(format!("/proc/{pid}/fd")).ok()?.count() as u64)
}

/// The line a [`child_serve`] server prints for `stats`, parsed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChildStats {
    pub open: u64,
    pub accepted: u64,
    pub closed: u64,
    pub rejected: u64,
    pub shed: u64,
    pub buffer_bytes: u64,
    pub pool_idle_bytes: u64,
    pub bytes_in: u64,
    /// 0 when the child could not read /proc (out of descriptors).
    pub rss_kib: u64,
    /// 0 when the child could not read /proc (out of descriptors).
    pub fds: u64,
}

/// Child side of a server run in a re-executed test binary: prints its address,
/// then answers each `stats` line on stdin with one `stats …` line, until stdin
/// closes; then stops the engine.
pub fn child_serve(engine: &tether::Engine) {
    use std::io::BufRead;
    println!("listening on {}", engine.local_addrs()[0]);
    let pid = std::process::id();
    for line in std::io::stdin().lock().lines() {
        let Ok(line) = line else { break };
        if line.trim() == "stats" {
            let t = engine.stats().total;
            println!(
                "stats {} {} {} {} {} {} {} {} {} {}",
                t.open,
                t.accepted,
                t.closed,
                t.rejected,
                t.shed,
                t.buffer_bytes,
                t.pool_idle_bytes,
                t.bytes_in,
                rss_kib(pid).unwrap_or(0),
                fd_count(pid).unwrap_or(0),
            );
        }
    }
    engine.stop();
}

/// Parent side of [`child_serve`]: the test binary re-executed for one test
/// with `env` set, so the test body knows to play the server.
pub struct ChildServer {
    pub process: std::process::Child,
    pub addr: SocketAddr,
    stdin: Option<std::process::ChildStdin>,
    lines: std::io::Lines<std::io::BufReader<std::process::ChildStdout>>,
}

impl ChildServer {
    pub fn spawn(test: &str, env: &str) -> ChildServer {
        use std::io::BufRead;
        use std::process::{Command, Stdio};
        let mut process = Command::new(std::env::current_exe().unwrap())
            .args([test, "--exact", "--nocapture"])
            .env(env, "1")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stdin = process.stdin.take();
        let mut lines = std::io::BufReader::new(process.stdout.take().unwrap()).lines();
        let addr = loop {
            let Some(Ok(line)) = lines.next() else {
                let out = process.wait_with_output().unwrap();
                panic!(
                    "child exited before listening: {}",
                    String::from_utf8_lossy(&out.stderr)
                );
            };
            if let Some(a) = line.strip_prefix("listening on ") {
                break a.parse().unwrap();
            }
        };
        ChildServer {
            process,
            addr,
            stdin,
            lines,
        }
    }

    pub fn pid(&self) -> u32 {
        self.process.id()
    }

    pub fn stats(&mut self) -> ChildStats {
        let stdin = self.stdin.as_mut().expect("child running");
        let asked = writeln!(stdin, "stats").and_then(|()| stdin.flush());
        loop {
            let line = match (&asked, self.lines.next()) {
                (Ok(()), Some(Ok(line))) => line,
                _ => {
                    let mut stderr = String::new();
                    if let Some(mut e) = self.process.stderr.take() {
                        let _ = e.read_to_string(&mut stderr);
                    }
                    panic!("child did not answer stats: {stderr}");
                }
            };
            if let Some(rest) = line.strip_prefix("stats ") {
                let n: Vec<u64> = rest.split(' ').map(|x| x.parse().unwrap()).collect();
                return ChildStats {
                    open: n[0],
                    accepted: n[1],
                    closed: n[2],
                    rejected: n[3],
                    shed: n[4],
                    buffer_bytes: n[5],
                    pool_idle_bytes: n[6],
                    bytes_in: n[7],
                    rss_kib: n[8],
                    fds: n[9],
                };
            }
        }
    }

    /// Polls the child's stats until `pred` holds, or panics.
    pub fn stats_until(
        &mut self,
        what: &str,
        mut pred: impl FnMut(&ChildStats) -> bool,
    ) -> ChildStats {
        let end = Instant::now() + DEADLINE;
        loop {
            let s = self.stats();
            if pred(&s) {
                return s;
            }
            assert!(Instant::now() < end, "child: no {what}; last {s:?}");
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// Closes the child's stdin (it stops its engine and exits) and returns its
    /// stderr; panics if it failed.
    pub fn finish(mut self) -> String {
        drop(self.stdin.take());
        let out = self.process.wait_with_output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(out.status.success(), "child failed: {stderr}");
        stderr
    }
}

/// An example binary built next to the running test (cargo builds the
/// examples for integration tests).
pub fn example(name: &str) -> std::path::PathBuf {
    let mut dir = std::env::current_exe().unwrap();
    dir.pop();
    if dir.ends_with("deps") {
        dir.pop();
    }
    dir.join("examples").join(name)
}

/// Whether an outside program is installed; prints a skip notice if not.
pub fn have_tool(tool: &str) -> bool {
    let found = std::process::Command::new(tool)
        .arg("--version")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok();
    if !found {
        println!("notice: {tool} is not installed; skipping");
    }
    found
}
