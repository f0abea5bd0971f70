//! Faults a long-lived server meets in production, over loopback: peers that
//! never read, reset mid-transfer, half-close, trickle bytes, storm the
//! listener, crash the handler, exhaust descriptors, or are addressed by ids
//! that went stale. Every loop is bounded in count and time.

mod util;

use std::collections::VecDeque;
use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, Sender, channel};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use tether::codec::LengthPrefixed;
use tether::{
    Action, CloseReason, Conn, ConnId, Engine, EventHandler, Options, SendError, decode_frames,
};
use util::*;

const KIB: usize = 1024;
const MIB: usize = 1024 * 1024;
/// See tests/limits.rs: loopback absorbs ~4 MiB for a peer that never reads.
const TINY_RCVBUF: usize = 4 * KIB;

fn options(loops: usize) -> Options {
    let mut o = Options::default();
    o.loops = loops;
    o.reuse_port = true;
    o
}

fn start<H: EventHandler>(
    options: Options,
    factory: impl Fn(usize) -> H + Send + Sync + 'static,
) -> Engine {
    Engine::builder(factory)
        .options(options)
        .listen("127.0.0.1:0")
        .start()
        .unwrap()
}

/// Collects close reasons until `n` closes were seen.
fn closes(rx: &Receiver<Ev>, n: usize) -> Vec<String> {
    (0..n)
        .map(
            |_| match wait_for(rx, "close", |e| matches!(e, Ev::Close(..))) {
                Ev::Close(_, r) => r,
                _ => unreachable!(),
            },
        )
        .collect()
}

/// The ways a client learns it was turned away rather than left hanging.
fn told(e: &std::io::Error) -> bool {
    matches!(
        e.kind(),
        ErrorKind::UnexpectedEof
            | ErrorKind::ConnectionReset
            | ErrorKind::ConnectionRefused
            | ErrorKind::ConnectionAborted
            | ErrorKind::BrokenPipe
    )
}

/// Writes up to `limit` bytes without reading, until a write makes no progress
/// for `stall`. Returns the bytes the kernel took, and the still open socket.
fn push_without_reading(mut s: TcpStream, limit: usize, stall: Duration) -> (usize, TcpStream) {
    s.set_write_timeout(Some(stall)).unwrap();
    let chunk = pattern(64 * KIB, 200);
    let mut sent = 0;
    while sent < limit {
        match s.write(&chunk[..chunk.len().min(limit - sent)]) {
            Ok(n) => sent += n,
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(_) => break,
        }
    }
    (sent, s)
}

// ---- peers that do not read ----

#[test]
fn slow_consumer_that_never_reads_stays_within_the_cap_and_others_are_served() {
    let (factory, rx) = recorder();
    let engine = start(options(1), factory);
    let addr = engine.local_addrs()[0];
    let opts = Options::default();
    let bound = opts.max_outbound + opts.pool_buffer_size;

    let slow = connect(addr);
    let _ = next_event(&rx, "slow client open");
    let writer =
        thread::spawn(move || push_without_reading(slow, 200 * MIB, Duration::from_secs(1)));
    let mut others: Vec<_> = (0..8).map(|_| connect(addr)).collect();
    let mut max_lent = 0;
    let mut rounds = 0u64;
    let end = Instant::now() + 2 * DEADLINE;
    while !writer.is_finished() {
        assert!(Instant::now() < end, "the writer never stalled");
        for (i, c) in others.iter_mut().enumerate() {
            roundtrip(c, &pattern(16 * KIB, rounds * 8 + i as u64));
        }
        rounds += 1;
        max_lent = max_lent.max(engine.stats().total.buffer_bytes);
    }
    let (pushed, slow) = writer.join().unwrap();
    let stats = engine.stats().total;
    max_lent = max_lent.max(stats.buffer_bytes);
    eprintln!(
        "slow consumer: pushed {} KiB before stalling, server read {} KiB, \
         max buffer_bytes {max_lent}, others served {rounds} rounds",
        pushed / KIB,
        stats.bytes_in / KIB as u64
    );
    assert!(
        rounds > 0,
        "other connections were served while the slow one backed up"
    );
    assert!(max_lent <= bound, "buffer_bytes {max_lent} > {bound}");
    assert!(pushed < 200 * MIB, "backpressure never reached the client");
    // Paused, not overflowed: the slow connection is still open.
    assert_eq!(engine.connection_count(), 9);
    assert!(
        rx.try_iter().all(|e| matches!(e, Ev::Open(_))),
        "no connection closed"
    );

    reset(slow);
    assert!(["Reset", "Io"].contains(&closes(&rx, 1)[0].as_str()));
    for (i, c) in others.iter_mut().enumerate() {
        roundtrip(c, &pattern(100, i as u64));
    }
    drop(others);
    closes(&rx, 8);
    stats_until(&engine, "buffers returned", |s| s.total.buffer_bytes == 0);
    engine.stop();
}

const RSS_CHILD: &str = "TETHER_FAULTS_RSS_CHILD";

#[test]
fn two_hundred_mib_from_a_client_that_never_reads_grows_the_server_by_under_8_mib() {
    if std::env::var_os(RSS_CHILD).is_some() {
        let (factory, _rx) = recorder();
        let engine = start(options(1), factory);
        return child_serve(&engine);
    }
    let mut server = ChildServer::spawn(
        "two_hundred_mib_from_a_client_that_never_reads_grows_the_server_by_under_8_mib",
        RSS_CHILD,
    );
    // Warm up: the loop's read buffer and scratch space are touched once.
    let mut warm = connect(server.addr);
    roundtrip(&mut warm, &pattern(256 * KIB, 1));
    drop(warm);
    let baseline = server.stats_until("warm-up closed", |s| s.open == 0);

    let slow = connect(server.addr);
    let writer =
        thread::spawn(move || push_without_reading(slow, 200 * MIB, Duration::from_secs(1)));
    let (mut max_rss, mut max_lent) = (baseline.rss_kib, 0);
    let end = Instant::now() + 2 * DEADLINE;
    while !writer.is_finished() {
        assert!(Instant::now() < end, "the writer never stalled");
        let s = server.stats();
        max_rss = max_rss.max(s.rss_kib);
        max_lent = max_lent.max(s.buffer_bytes);
        thread::sleep(Duration::from_millis(10));
    }
    let (pushed, slow) = writer.join().unwrap();
    let s = server.stats();
    max_rss = max_rss.max(s.rss_kib);
    max_lent = max_lent.max(s.buffer_bytes);
    let growth = max_rss.saturating_sub(baseline.rss_kib);
    eprintln!(
        "200 MiB never-reading client: the kernel took {} KiB before backpressure \
         held it, the server read {} KiB; server RSS {} -> {} KiB (+{growth} KiB), \
         max buffer_bytes {max_lent}",
        pushed / KIB,
        s.bytes_in / KIB as u64,
        baseline.rss_kib,
        max_rss
    );
    assert!(growth < 8 * 1024, "server RSS grew by {growth} KiB");
    assert!(max_lent as usize <= 4 * MIB + 4 * KIB);
    assert_eq!(s.open, 1, "paused, not closed");
    drop(slow);
    server.finish();
}

/// A server that writes up to the cap (never past it) whenever woken: the
/// pending output's buffer must stay within the cap too.
struct FillToCap {
    tx: Sender<Ev>,
}

impl EventHandler for FillToCap {
    type State = ();

    fn on_open(&mut self, conn: &mut Conn<'_, ()>) -> Action {
        let _ = self.tx.send(Ev::Open(conn.id()));
        Action::Continue
    }

    fn on_traffic(&mut self, conn: &mut Conn<'_, ()>) -> Action {
        conn.consume(conn.read_buf().len());
        Action::Continue
    }

    fn on_wake(&mut self, conn: &mut Conn<'_, ()>) -> Action {
        let chunk = [5u8; 64 * KIB];
        while conn.outbound_len() + chunk.len() <= 4 * MIB {
            conn.write(&chunk);
        }
        let _ = self.tx.send(Ev::Wake(conn.id()));
        Action::Continue
    }

    fn on_close(&mut self, conn: &mut Conn<'_, ()>, reason: &CloseReason) {
        let _ = self.tx.send(Ev::Close(conn.id(), reason_name(reason)));
    }
}

#[test]
fn output_kept_at_the_cap_for_a_peer_that_never_reads_stays_within_the_cap() {
    let (tx, rx) = channel();
    let mut o = options(1);
    o.max_outbound = 4 * MIB;
    let engine = start(o, move |_| FillToCap { tx: tx.clone() });
    let client = connect_small_rcvbuf(engine.local_addrs()[0], TINY_RCVBUF);
    let Ev::Open(id) = next_event(&rx, "open") else {
        panic!("expected open")
    };
    let bound = 4 * MIB + 4 * KIB;
    let mut max_lent = 0;
    for _ in 0..50 {
        engine.wake(id).unwrap();
        match next_event(&rx, "wake") {
            Ev::Wake(_) => {}
            other => panic!("unexpected {other:?}"),
        }
        max_lent = max_lent.max(engine.stats().total.buffer_bytes);
        // Lets the socket take a little between top-ups, as a live peer does.
        thread::sleep(Duration::from_millis(2));
    }
    assert!(
        max_lent <= bound,
        "{max_lent} bytes of buffers lent for at most {} pending",
        4 * MIB
    );
    drop(client);
    engine.stop();
}

// ---- peers that go away mid-transfer ----

/// Greets with `size` patterned bytes, echoes, reports opens and closes.
struct Greeter {
    tx: Sender<Ev>,
    size: usize,
}

impl EventHandler for Greeter {
    type State = ();

    fn on_open(&mut self, conn: &mut Conn<'_, ()>) -> Action {
        let _ = self.tx.send(Ev::Open(conn.id()));
        conn.write(&pattern(self.size, 5));
        Action::Continue
    }

    fn on_traffic(&mut self, conn: &mut Conn<'_, ()>) -> Action {
        let data = conn.read_buf();
        conn.write(data);
        conn.consume(data.len());
        Action::Continue
    }

    fn on_close(&mut self, conn: &mut Conn<'_, ()>, reason: &CloseReason) {
        let _ = self.tx.send(Ev::Close(conn.id(), reason_name(reason)));
    }
}

fn greeter(size: usize) -> (Engine, Receiver<Ev>) {
    let (tx, rx) = channel();
    let mut o = options(2);
    o.max_outbound = 4 * size;
    let engine = start(o, move |_| Greeter {
        tx: tx.clone(),
        size,
    });
    (engine, rx)
}

#[test]
fn peer_reset_in_the_middle_of_a_large_write_closes_only_that_connection() {
    let size = 8 * MIB;
    let (engine, rx) = greeter(size);
    let addr = engine.local_addrs()[0];
    // Readers take their greetings while the others reset theirs halfway, and
    // keep their connections, so every close seen first is a reset one.
    let readers: Vec<_> = (0..4)
        .map(|_| {
            let mut c = connect(addr);
            thread::spawn(move || {
                assert!(read_n(&mut c, size) == pattern(size, 5), "greeting intact");
                c
            })
        })
        .collect();
    for _ in 0..8 {
        let mut c = connect(addr);
        read_n(&mut c, 100 * KIB);
        reset(c);
    }
    let reasons = closes(&rx, 8);
    assert!(
        reasons.iter().all(|r| r == "Reset" || r == "Io"),
        "{reasons:?}"
    );
    for r in readers {
        let mut c = r.join().unwrap();
        roundtrip(&mut c, b"unaffected by the resets");
    }
    assert_eq!(closes(&rx, 4), ["PeerClosed"; 4]);
    let s = stats_until(&engine, "buffers returned", |s| {
        s.total.open == 0 && s.total.buffer_bytes == 0
    });
    assert_eq!(s.total.closed_by.panic, 0);
    assert_eq!(s.total.closed, 12);
    engine.stop();
}

#[test]
fn half_close_with_pending_output_delivers_everything_then_closes_peer_closed() {
    let size = 8 * MIB;
    let (engine, rx) = greeter(size);
    let mut c = connect(engine.local_addrs()[0]);
    let msg = pattern(100 * KIB, 6);
    c.write_all(&msg).unwrap();
    c.shutdown(Shutdown::Write).unwrap();
    // The greeting is still pending in the server (the kernel holds ~4 MiB).
    stats_until(&engine, "pending greeting", |s| {
        s.total.buffer_bytes > 64 * KIB
    });
    let got = read_to_eof(&mut c);
    assert_eq!(got.len(), size + msg.len());
    assert!(got[..size] == pattern(size, 5), "greeting intact");
    assert!(got[size..] == msg, "echo after the greeting");
    assert_eq!(closes(&rx, 1), ["PeerClosed"]);
    engine.stop();
}

// ---- trickling peers ----

/// Echoes frames; reports closes.
struct FrameEcho {
    codec: LengthPrefixed,
    tx: Sender<Ev>,
}

impl EventHandler for FrameEcho {
    type State = ();

    fn on_traffic(&mut self, conn: &mut Conn<'_, ()>) -> Action {
        decode_frames(conn, &mut self.codec, |conn, f| {
            conn.write_frame(f).unwrap();
            Action::Continue
        })
    }

    fn on_close(&mut self, conn: &mut Conn<'_, ()>, r: &CloseReason) {
        let _ = self.tx.send(Ev::Close(conn.id(), reason_name(r)));
    }
}

fn frame_echo(o: Options) -> (Engine, Receiver<Ev>) {
    let (tx, rx) = channel();
    let engine = start(o, move |_| FrameEcho {
        codec: LengthPrefixed::new(),
        tx: tx.clone(),
    });
    (engine, rx)
}

fn frame(payload: &[u8]) -> Vec<u8> {
    let mut out = (payload.len() as u32).to_be_bytes().to_vec();
    out.extend_from_slice(payload);
    out
}

#[test]
fn small_partial_frames_after_a_large_one_hold_default_size_buffers() {
    let (engine, _rx) = frame_echo(options(1));
    let addr = engine.local_addrs()[0];
    let default = Options::default().pool_buffer_size;

    // A 40 KiB frame arriving in two halves grows its connection's inbound
    // buffer; the buffer goes back to the pool when the frame completes.
    let mut big = connect(addr);
    let wire = frame(&pattern(40 * KIB, 10));
    let half = wire.len() / 2;
    big.write_all(&wire[..half]).unwrap();
    stats_until(&engine, "half a frame held", |s| {
        s.total.bytes_in == half as u64 && s.total.buffer_bytes > 0
    });
    big.write_all(&wire[half..]).unwrap();
    assert!(read_n(&mut big, wire.len()) == wire, "large frame echoed");
    stats_until(&engine, "the buffer returned", |s| {
        s.total.buffer_bytes == 0
    });

    // Eight connections each hold ten bytes of a frame: a default buffer each
    // is plenty. Memory must not depend on what earlier connections needed.
    let mut small = Vec::new();
    let mut sent = wire.len() as u64;
    for _ in 0..8 {
        let mut c = connect(addr);
        c.write_all(&frame(&[1; 100])[..10]).unwrap();
        sent += 10;
        small.push(c);
        stats_until(&engine, "the partial frame held", |s| {
            s.total.bytes_in == sent
        });
    }
    // Gauges are published at the end of a loop iteration: two round trips
    // later the one that read the last partial frame has ended.
    for _ in 0..2 {
        let ping = frame(b"ping");
        big.write_all(&ping).unwrap();
        assert_eq!(read_n(&mut big, ping.len()), ping);
    }
    let s = engine.stats();
    assert!(
        s.total.buffer_bytes <= 8 * default,
        "eight 10-byte partial frames hold {} bytes of buffers ({} would do)",
        s.total.buffer_bytes,
        8 * default
    );
    drop(small);
    engine.stop();
}

#[test]
fn one_byte_at_a_time_trickle_decodes_correctly() {
    let (engine, _rx) = frame_echo(options(1));
    let mut c = connect(engine.local_addrs()[0]);
    let wire: Vec<u8> = [frame(b"first frame"), frame(&pattern(40, 8))].concat();
    for (i, b) in wire.iter().enumerate() {
        c.write_all(&[*b]).unwrap();
        // Each byte is its own read: wait until the server has taken it.
        stats_until(&engine, "one more byte read", |s| {
            s.total.bytes_in == i as u64 + 1
        });
    }
    assert_eq!(read_n(&mut c, wire.len()), wire);
    let s = stats_until(&engine, "no partial frame left", |s| {
        s.total.buffer_bytes == 0
    })
    .total;
    assert_eq!((s.frames_in, s.frames_out), (2, 2));
    engine.stop();
}

#[test]
fn trickle_slower_than_the_frame_timeout_closes_with_frame_timeout() {
    let timeout = Duration::from_millis(300);
    let mut o = options(1);
    o.frame_timeout = Some(timeout);
    let (engine, rx) = frame_echo(o);
    let mut c = connect(engine.local_addrs()[0]);
    let wire = frame(&pattern(100, 9));
    let started = Instant::now();
    // 104 bytes at 20 ms is two seconds, far past the timeout; bytes keep
    // arriving, which must not keep a partial frame alive.
    let mut closed = None;
    for b in &wire {
        if c.write_all(&[*b]).is_err() {
            break;
        }
        if let Ok(ev) = rx.recv_timeout(Duration::from_millis(20)) {
            closed = Some(ev);
            break;
        }
    }
    let ev = closed.unwrap_or_else(|| next_event(&rx, "the frame timeout"));
    let took = started.elapsed();
    assert_eq!(ev, Ev::Close(ev_id(&ev), "FrameTimeout".into()));
    assert!(
        took >= timeout && took < timeout + Duration::from_secs(2),
        "closed after {took:?}"
    );
    assert_eq!(engine.stats().total.closed_by.frame_timeout, 1);
    engine.stop();
}

#[test]
fn a_dialed_connection_to_a_trickling_server_closes_with_frame_timeout() {
    // The server claims a 60,000-byte frame, then sends a byte every 20 ms:
    // active enough for any idle timeout, never a whole frame.
    let server = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = server.local_addr().unwrap();
    let trickler = thread::spawn(move || {
        let (mut s, _) = server.accept().unwrap();
        let _ = s.write_all(&60_000u32.to_be_bytes());
        let end = Instant::now() + DEADLINE;
        while Instant::now() < end && s.write_all(&[0]).is_ok() {
            thread::sleep(Duration::from_millis(20));
        }
    });
    let timeout = Duration::from_millis(300);
    let mut o = options(1);
    o.frame_timeout = Some(timeout);
    o.read_idle_timeout = Some(Duration::from_millis(200));
    let (tx, rx) = channel();
    let engine = Engine::builder(move |_| FrameEcho {
        codec: LengthPrefixed::new(),
        tx: tx.clone(),
    })
    .options(o)
    .start()
    .unwrap();
    let started = Instant::now();
    engine.connect(addr, ()).unwrap();
    assert_eq!(closes(&rx, 1), ["FrameTimeout"]);
    assert!(started.elapsed() >= timeout, "{:?}", started.elapsed());
    engine.stop();
    trickler.join().unwrap();
}

fn ev_id(ev: &Ev) -> ConnId {
    match ev {
        Ev::Open(id) | Ev::Close(id, _) | Ev::Wake(id) => *id,
    }
}

// ---- storms ----

/// Echoes; the first connection's `on_open` holds the loop until released, so
/// a storm meets a full backlog.
struct GatedEcho {
    entered: Sender<()>,
    gate: Arc<Mutex<Option<Receiver<()>>>>,
}

impl EventHandler for GatedEcho {
    type State = ();

    fn on_open(&mut self, _conn: &mut Conn<'_, ()>) -> Action {
        let gate = self.gate.lock().unwrap().take();
        if let Some(gate) = gate {
            let _ = self.entered.send(());
            let _ = gate.recv_timeout(DEADLINE);
        }
        Action::Continue
    }

    fn on_traffic(&mut self, conn: &mut Conn<'_, ()>) -> Action {
        let data = conn.read_buf();
        conn.write(data);
        conn.consume(data.len());
        Action::Continue
    }
}

/// Starts `n` connects at once and waits up to `wait` for the handshakes.
/// Returns the connected streams (blocking, with deadlines), and how many were
/// refused and how many got no answer (SYNs the kernel dropped for a full
/// backlog and retried at 1 s, 3 s, …).
fn connect_burst(addr: SocketAddr, n: usize, wait: Duration) -> (Vec<TcpStream>, usize, usize) {
    use mio::{Events, Interest, Poll, Token};
    let mut poll = Poll::new().unwrap();
    let mut pending: Vec<Option<mio::net::TcpStream>> = (0..n)
        .map(|i| {
            let mut s = mio::net::TcpStream::connect(addr).unwrap();
            poll.registry()
                .register(&mut s, Token(i), Interest::WRITABLE)
                .unwrap();
            Some(s)
        })
        .collect();
    let (mut connected, mut refused) = (Vec::new(), 0);
    let mut events = Events::with_capacity(1024);
    let end = Instant::now() + wait;
    let mut left = n;
    while left > 0 {
        let now = Instant::now();
        if now >= end {
            break;
        }
        poll.poll(&mut events, Some(end - now)).unwrap();
        for ev in events.iter() {
            let i = ev.token().0;
            let Some(s) = pending[i].as_ref() else {
                continue;
            };
            match s.take_error().unwrap() {
                Some(e) => {
                    assert!(told(&e), "connect: {e}");
                    refused += 1;
                }
                // A wakeup before the handshake completed: keep waiting.
                None if s.peer_addr().is_err() => continue,
                None => {
                    let mut s = pending[i].take().unwrap();
                    poll.registry().deregister(&mut s).unwrap();
                    let s = TcpStream::from(s);
                    s.set_nonblocking(false).unwrap();
                    s.set_read_timeout(Some(DEADLINE)).unwrap();
                    s.set_write_timeout(Some(DEADLINE)).unwrap();
                    connected.push(s);
                    left -= 1;
                    continue;
                }
            }
            pending[i] = None;
            left -= 1;
        }
    }
    (connected, refused, left)
}

#[test]
fn connection_storm_larger_than_the_backlog_is_served_or_refused_cleanly() {
    const STORM: usize = 1000;
    let (entered, entered_rx) = channel();
    let (release, gate) = channel();
    let gate = Arc::new(Mutex::new(Some(gate)));
    let mut o = options(1);
    o.backlog = 16;
    let engine = start(o, move |_| GatedEcho {
        entered: entered.clone(),
        gate: gate.clone(),
    });
    let addr = engine.local_addrs()[0];
    let holder = connect(addr);
    entered_rx.recv_timeout(DEADLINE).unwrap();
    let started = Instant::now();
    // The loop is held while the storm arrives: the backlog overflows. The
    // length of the hold is not what is tested.
    let releaser = thread::spawn(move || {
        thread::sleep(Duration::from_millis(300));
        release.send(()).unwrap();
    });
    // Two SYN retries (at 1 s and 3 s) fit in the wait.
    let (mut clients, refused, unanswered) = connect_burst(addr, STORM, Duration::from_secs(5));
    releaser.join().unwrap();
    // Every client the kernel connected is served (or told) by the server.
    let (mut served, mut told_off) = (0, 0);
    for (i, c) in clients.iter_mut().enumerate() {
        let msg = pattern(32, i as u64);
        let attempt = c.write_all(&msg).and_then(|()| {
            let mut back = [0u8; 32];
            c.read_exact(&mut back).map(|()| back)
        });
        match attempt {
            Ok(back) => {
                assert_eq!(back[..], msg[..], "echo of client {i}");
                served += 1;
            }
            Err(e) if told(&e) => told_off += 1,
            Err(e) => panic!("client {i} neither served nor refused: {e}"),
        }
    }
    let took = started.elapsed();
    eprintln!(
        "storm of {STORM} on a backlog of 16: {served} served, {told_off} closed, \
         {refused} refused, {unanswered} unanswered by the kernel, in {took:?}"
    );
    assert_eq!(served + told_off + refused + unanswered, STORM);
    assert!(served >= 16, "at least the backlog's worth was served");
    assert!(took < 2 * DEADLINE, "storm took {took:?}");
    let s = engine.stats().total;
    assert!(s.accepted > served as u64, "{} accepted", s.accepted);
    drop(clients);
    drop(holder);
    stats_until(&engine, "all closed", |s| s.total.open == 0);
    engine.stop();
}

#[test]
fn handler_panics_under_load_close_only_the_panicking_connections() {
    const CLIENTS: usize = 200;
    const ROUNDS: usize = 20;
    let (factory, rx) = recorder();
    let engine = start(options(2), factory);
    let addr = engine.local_addrs()[0];
    let workers: Vec<_> = (0..8)
        .map(|t| {
            thread::spawn(move || {
                let mut clients: Vec<(usize, Option<TcpStream>)> = (0..CLIENTS / 8)
                    .map(|i| (t * CLIENTS / 8 + i, Some(connect(addr))))
                    .collect();
                let mut panicked = 0;
                for round in 0..ROUNDS {
                    for (n, slot) in clients.iter_mut() {
                        let Some(c) = slot.as_mut() else { continue };
                        if round == ROUNDS / 2 && *n % 5 == 0 {
                            c.write_all(b"PANIC now").unwrap();
                            let mut rest = Vec::new();
                            match c.read_to_end(&mut rest) {
                                Ok(_) => assert!(rest.is_empty()),
                                Err(e) => assert!(told(&e), "{e}"),
                            }
                            *slot = None;
                            panicked += 1;
                        } else {
                            roundtrip(c, &pattern(256, (*n * ROUNDS + round) as u64));
                        }
                    }
                }
                (panicked, clients)
            })
        })
        .collect();
    let mut panicked = 0;
    let mut survivors = Vec::new();
    for w in workers {
        let (p, clients) = w.join().unwrap();
        panicked += p;
        survivors.extend(clients.into_iter().filter_map(|(_, c)| c));
    }
    assert_eq!(panicked, CLIENTS / 5);
    let s = stats_until(&engine, "panics counted", |s| {
        s.total.closed_by.panic == panicked as u64
    });
    assert_eq!(s.total.closed, panicked as u64, "only the panicking closed");
    assert_eq!(s.total.open, CLIENTS - panicked);
    drop(survivors);
    let s = stats_until(&engine, "all closed", |s| s.total.open == 0);
    let by = s.total.closed_by;
    assert_eq!(
        (s.total.accepted, s.total.closed),
        (CLIENTS as u64, CLIENTS as u64)
    );
    assert_eq!(
        (by.panic, by.peer_closed),
        (panicked as u64, (CLIENTS - panicked) as u64)
    );
    let reasons = closes(&rx, CLIENTS);
    assert_eq!(reasons.iter().filter(|r| *r == "Panic").count(), panicked);
    engine.stop();
}

const EMFILE_CHILD: &str = "TETHER_FAULTS_EMFILE_CHILD";
const EMFILE_FD_LIMIT: u64 = 64;

#[test]
fn emfile_storm_every_client_is_served_or_shed_and_the_server_recovers() {
    const THREADS: usize = 6;
    const PER_THREAD: usize = 50;
    if std::env::var_os(EMFILE_CHILD).is_some() {
        set_nofile(EMFILE_FD_LIMIT);
        let (factory, _rx) = recorder();
        let engine = start(options(1), factory);
        return child_serve(&engine);
    }
    let mut server = ChildServer::spawn(
        "emfile_storm_every_client_is_served_or_shed_and_the_server_recovers",
        EMFILE_CHILD,
    );
    let addr: SocketAddr = server.addr;
    // Each thread holds its connections, so together they need several times
    // the child's descriptors; clients waiting in the backlog get served as
    // earlier ones finish, or are shed.
    let started = Instant::now();
    let workers: Vec<_> = (0..THREADS)
        .map(|t| {
            thread::spawn(move || {
                let clients: Vec<_> = (0..PER_THREAD).map(|_| connect(addr)).collect();
                let (mut served, mut shed) = (0, 0);
                for (i, mut c) in clients.into_iter().enumerate() {
                    let msg = pattern(64, (t * PER_THREAD + i) as u64);
                    let attempt = c.write_all(&msg).and_then(|()| {
                        let mut back = [0u8; 64];
                        c.read_exact(&mut back).map(|()| back)
                    });
                    match attempt {
                        Ok(back) => {
                            assert_eq!(back[..], msg[..]);
                            served += 1;
                        }
                        Err(e) if told(&e) => shed += 1,
                        Err(e) => panic!("client {t}/{i} hung: {e}"),
                    }
                }
                (served, shed)
            })
        })
        .collect();
    let (mut served, mut shed) = (0, 0);
    for w in workers {
        let (a, b) = w.join().unwrap();
        served += a;
        shed += b;
    }
    let took = started.elapsed();
    let s = server.stats_until("all closed", |s| s.open == 0);
    eprintln!(
        "EMFILE storm: {served} served, {shed} shed in {took:?}; server {} accepted, {} shed",
        s.accepted, s.shed
    );
    assert_eq!(served + shed, THREADS * PER_THREAD);
    assert_eq!(
        s.accepted, served as u64,
        "every accepted client was served"
    );
    assert_eq!(s.shed, shed as u64, "every client told off was shed");
    assert!(s.shed > 0, "descriptors ran out");
    let mut after = connect(addr);
    roundtrip(&mut after, b"the server recovered");
    drop(after);
    server.finish();
}

// ---- stale ids ----

/// Gives every connection a unique tag, greets with it and lists `(id, tag)`
/// so other threads can address it, also long after it closed.
struct Tagger {
    next_tag: Arc<AtomicU64>,
    registry: Arc<Mutex<VecDeque<(ConnId, u64)>>>,
}

impl EventHandler for Tagger {
    type State = u64;

    fn on_open(&mut self, conn: &mut Conn<'_, u64>) -> Action {
        let tag = self.next_tag.fetch_add(1, Ordering::Relaxed);
        *conn.state_mut() = tag;
        conn.write(&tag.to_le_bytes());
        let mut r = self.registry.lock().unwrap();
        if r.len() == 256 {
            r.pop_front();
        }
        r.push_back((conn.id(), tag));
        Action::Continue
    }

    fn on_traffic(&mut self, conn: &mut Conn<'_, u64>) -> Action {
        conn.consume(conn.read_buf().len());
        Action::Continue
    }
}

/// Reads until `quiet` passes without data; checks every 16-byte record
/// carries `tag`, and a trailing partial record the part of it that arrived.
/// Returns the records seen.
fn check_records(c: &mut TcpStream, tag: u64, quiet: Duration) -> usize {
    c.set_read_timeout(Some(quiet)).unwrap();
    let mut data = Vec::new();
    let mut buf = [0u8; 4096];
    for _ in 0..1000 {
        match c.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => data.extend_from_slice(&buf[..n]),
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => break,
            Err(e) => panic!("reading records: {e}"),
        }
    }
    let want = tag.to_le_bytes();
    for (i, record) in data.chunks(16).enumerate() {
        let n = record.len().min(8);
        assert_eq!(
            record[..n],
            want[..n],
            "record {i} of connection tagged {tag} carries another connection's tag"
        );
    }
    data.len() / 16
}

#[test]
fn stale_conn_ids_under_churn_never_deliver_to_another_connection() {
    const CLIENT_THREADS: usize = 4;
    const CYCLES: usize = 150;
    const SENDERS: usize = 2;
    let registry = Arc::new(Mutex::new(VecDeque::new()));
    let next_tag = Arc::new(AtomicU64::new(1));
    let engine = {
        let registry = registry.clone();
        start(options(2), move |_| Tagger {
            next_tag: next_tag.clone(),
            registry: registry.clone(),
        })
    };
    let addr = engine.local_addrs()[0];
    let done = Arc::new(AtomicBool::new(false));
    let senders: Vec<_> = (0..SENDERS)
        .map(|t| {
            let (engine, registry, done) = (engine.clone(), registry.clone(), done.clone());
            thread::spawn(move || {
                let mut x = 0x9E37_79B9_7F4A_7C15u64 ^ t as u64;
                let mut sent = 0u64;
                let end = Instant::now() + 2 * DEADLINE;
                while !done.load(Ordering::Relaxed) && Instant::now() < end && sent < 2_000_000 {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    let pick = {
                        let r = registry.lock().unwrap();
                        (!r.is_empty()).then(|| r[x as usize % r.len()])
                    };
                    let Some((id, tag)) = pick else {
                        thread::yield_now();
                        continue;
                    };
                    let mut record = tag.to_le_bytes().to_vec();
                    record.extend_from_slice(&sent.to_le_bytes());
                    match engine.send(id, record) {
                        Ok(()) => sent += 1,
                        Err(SendError::InboxFull { .. }) => thread::yield_now(),
                        Err(e) => panic!("send: {e}"),
                    }
                }
                sent
            })
        })
        .collect();
    let clients: Vec<_> = (0..CLIENT_THREADS)
        .map(|_| {
            thread::spawn(move || {
                let mut records = 0;
                for _ in 0..CYCLES {
                    let mut c = connect(addr);
                    let tag = u64::from_le_bytes(read_n(&mut c, 8).try_into().unwrap());
                    records += check_records(&mut c, tag, Duration::from_millis(3));
                }
                records
            })
        })
        .collect();
    let records: usize = clients.into_iter().map(|c| c.join().unwrap()).sum();
    done.store(true, Ordering::Relaxed);
    let sent: u64 = senders.into_iter().map(|s| s.join().unwrap()).sum();
    let s = stats_until(&engine, "all closed", |s| s.total.open == 0);
    eprintln!(
        "stale ids: {sent} sends, {records} records received and checked, {} stale commands dropped",
        s.total.stale_commands
    );
    assert!(records > 0, "some sends reached live connections");
    assert!(s.total.stale_commands > 0, "the churn produced stale ids");
    assert_eq!(s.total.accepted, (CLIENT_THREADS * CYCLES) as u64);
    engine.stop();
}
