//! The limits that keep one slow peer or one burst from taking a server down:
//! write watermarks, the outbound cap (from callbacks and from `Engine::send`),
//! the send inbox bound, `max_connections`, the accept budget per wakeup, the
//! reserve descriptor, the graceful stop deadline, and the counters that
//! account for all of it.

mod util;

use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::sync::mpsc::{Receiver, RecvTimeoutError, Sender, channel};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tether::codec::LengthPrefixed;
use tether::{
    Action, CloseReason, Conn, ConnId, Counts, Engine, EventHandler, LoopCtx, Options, SendError,
    Stats, decode_frames,
};
use util::*;

const KIB: usize = 1024;
const MIB: usize = 1024 * 1024;
/// Keeps the client's advertised window small. On loopback the server's send
/// buffer still autotunes to about 4 MiB, so a non-reading peer absorbs some
/// 3-4 MiB before output backs up in the server: tests that need pending
/// output write more than that.
const TINY_RCVBUF: usize = 4 * KIB;

#[test]
fn documented_limit_defaults() {
    let o = Options::default();
    assert_eq!(o.write_high_watermark, 64 * KIB);
    assert_eq!(o.write_low_watermark, 32 * KIB);
    assert_eq!(o.max_outbound, 8 * MIB + 64 * KIB);
    assert_eq!(o.max_inbound, 8 * MIB + 64 * KIB);
    assert_eq!(o.max_connections, usize::MAX);
    assert_eq!(o.accepts_per_wakeup, 64);
    assert_eq!(o.memory_budget, None);
    assert!(!o.udp_allow_own_source);
}

#[test]
fn defaults_are_coherent_a_maximal_default_frame_can_be_echoed() {
    let o = Options::default();
    let frame = tether::codec::DEFAULT_MAX_FRAME_LEN + 4;
    assert!(
        o.max_inbound >= frame,
        "a maximal frame must fit the input cap"
    );
    assert!(o.max_outbound >= frame, "and its echo the output cap");
    assert!(o.write_high_watermark <= o.max_outbound);
}

/// Collects log records of tether at warn and above, for the whole binary.
struct Captured;

static WARNINGS: Mutex<Vec<String>> = Mutex::new(Vec::new());

impl log::Log for Captured {
    fn enabled(&self, m: &log::Metadata<'_>) -> bool {
        m.level() <= log::Level::Warn
    }

    fn log(&self, r: &log::Record<'_>) {
        if self.enabled(r.metadata()) {
            WARNINGS
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .push(format!("{} {}", r.level(), r.args()));
        }
    }

    fn flush(&self) {}
}

#[test]
fn write_overflow_closes_are_logged_at_warn_once_per_interval() {
    static LOGGER: Captured = Captured;
    let _ = log::set_logger(&LOGGER);
    log::set_max_level(log::LevelFilter::Warn);
    let (engine, rx) = start_probe(one_loop(), Probe::new);
    let addr = engine.local_addrs()[0];
    let mut clients = Vec::new();
    for _ in 0..20 {
        let client = connect_small_rcvbuf(addr, TINY_RCVBUF);
        let P::Open(id) = next_p(&rx, "open") else {
            panic!("expected open")
        };
        engine.send(id, vec![7u8; 12 * MIB]).unwrap();
        wait_p(&rx, "the overflow close", |p| matches!(p, P::Close(_)));
        clients.push(client);
    }
    assert_eq!(engine.stats().total.closed_by.write_overflow, 20);
    let lines: Vec<String> = WARNINGS
        .lock()
        .unwrap()
        .iter()
        .filter(|l| l.contains("max_outbound"))
        .cloned()
        .collect();
    assert_eq!(lines.len(), 1, "one warn line per interval: {lines:#?}");
    assert!(lines[0].starts_with("WARN "), "{lines:?}");
    engine.stop();
}

// ---- a handler driven from the test thread through `Engine::wake` ----

#[derive(Debug)]
enum P {
    Open(ConnId),
    Wake {
        writable_before: bool,
        outbound_after: usize,
        writable_after: bool,
        wrote: bool,
    },
    Writable {
        outbound: usize,
        writable: bool,
    },
    Traffic(Vec<u8>),
    Close(String),
    Shutdown,
}

/// On wake writes `chunk` bytes (the k-th wake's chunk is `pattern(chunk, k)`),
/// only while `is_writable()` unless `force`; with a gate, blocks the loop in
/// `on_wake` until the test releases it. Records everything it sees.
struct Probe {
    tx: Sender<P>,
    chunk: usize,
    force: bool,
    gate: Option<Arc<Mutex<Receiver<()>>>>,
    /// Written on open (a greeting that backs up when the client never reads).
    greeting: usize,
}

impl Probe {
    fn new(tx: &Sender<P>) -> Probe {
        Probe {
            tx: tx.clone(),
            chunk: 0,
            force: false,
            gate: None,
            greeting: 0,
        }
    }
}

impl EventHandler for Probe {
    /// Chunks written so far.
    type State = u64;

    fn on_open(&mut self, conn: &mut Conn<'_, u64>) -> Action {
        let _ = self.tx.send(P::Open(conn.id()));
        if self.greeting > 0 {
            conn.write(&pattern(self.greeting, 99));
        }
        Action::Continue
    }

    fn on_traffic(&mut self, conn: &mut Conn<'_, u64>) -> Action {
        let data = conn.read_buf();
        let _ = self.tx.send(P::Traffic(data.to_vec()));
        conn.consume(data.len());
        Action::Continue
    }

    fn on_wake(&mut self, conn: &mut Conn<'_, u64>) -> Action {
        if let Some(gate) = &self.gate {
            let _ = self.tx.send(P::Wake {
                writable_before: true,
                outbound_after: 0,
                writable_after: true,
                wrote: false,
            });
            let _ = gate.lock().unwrap().recv_timeout(DEADLINE);
            return Action::Continue;
        }
        let writable_before = conn.is_writable();
        let wrote = self.chunk > 0 && (writable_before || self.force);
        if wrote {
            let k = *conn.state();
            conn.write(&pattern(self.chunk, k));
            *conn.state_mut() += 1;
        }
        let _ = self.tx.send(P::Wake {
            writable_before,
            outbound_after: conn.outbound_len(),
            writable_after: conn.is_writable(),
            wrote,
        });
        Action::Continue
    }

    fn on_writable(&mut self, conn: &mut Conn<'_, u64>) -> Action {
        let _ = self.tx.send(P::Writable {
            outbound: conn.outbound_len(),
            writable: conn.is_writable(),
        });
        Action::Continue
    }

    fn on_close(&mut self, _conn: &mut Conn<'_, u64>, reason: &CloseReason) {
        let _ = self.tx.send(P::Close(reason_name(reason)));
    }

    fn on_shutdown(&mut self, ctx: &mut LoopCtx<'_, Self::State>) {
        let _ = ctx;
        let _ = self.tx.send(P::Shutdown);
    }
}

fn next_p(rx: &Receiver<P>, what: &str) -> P {
    rx.recv_timeout(DEADLINE)
        .unwrap_or_else(|_| panic!("no event within {DEADLINE:?} while waiting for {what}"))
}

fn wait_p(rx: &Receiver<P>, what: &str, mut pred: impl FnMut(&P) -> bool) -> P {
    let end = Instant::now() + DEADLINE;
    loop {
        match rx.recv_timeout(end.saturating_duration_since(Instant::now())) {
            Ok(ev) if pred(&ev) => return ev,
            Ok(_) => {}
            Err(_) => panic!("no {what} within {DEADLINE:?}"),
        }
    }
}

fn start_probe(
    options: Options,
    make: impl Fn(&Sender<P>) -> Probe + Send + Sync + 'static,
) -> (Engine, Receiver<P>) {
    let (tx, rx) = channel();
    let engine = Engine::builder(move |_| make(&tx))
        .options(options)
        .listen("127.0.0.1:0")
        .start()
        .unwrap();
    (engine, rx)
}

/// One loop, with the 4 MiB output cap these scenarios are written around.
fn one_loop() -> Options {
    let mut o = Options::default();
    o.loops = 1;
    o.max_outbound = 4 * MIB;
    o
}

/// Reads until EOF or a reset, whichever ends the stream; panics at the
/// deadline. Returns the bytes read.
fn drain_until_closed(s: &mut TcpStream) -> usize {
    let end = Instant::now() + DEADLINE;
    let mut buf = vec![0; 64 * KIB];
    let mut total = 0;
    loop {
        assert!(Instant::now() < end, "stream still open after {DEADLINE:?}");
        match s.read(&mut buf) {
            Ok(0) => return total,
            Ok(n) => total += n,
            Err(e) if e.kind() == ErrorKind::ConnectionReset => return total,
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => panic!("reading until closed: {e}"),
        }
    }
}

// ---- backpressure ----

#[test]
fn backpressure_pauses_reading_above_high_watermark_and_resumes_below_low() {
    let chunk = 128 * KIB;
    let (engine, rx) = start_probe(one_loop(), move |tx| Probe {
        chunk,
        ..Probe::new(tx)
    });
    let mut client = connect_small_rcvbuf(engine.local_addrs()[0], TINY_RCVBUF);
    let P::Open(id) = next_p(&rx, "open") else {
        panic!("expected open")
    };

    // Write while writable; the client does not read, so output backs up.
    let mut chunks = 0u64;
    let mut paused = false;
    for _ in 0..128 {
        engine.wake(id).unwrap();
        let P::Wake {
            writable_before,
            outbound_after,
            writable_after,
            wrote,
        } = next_p(&rx, "wake")
        else {
            panic!("expected wake")
        };
        assert_eq!(
            writable_after,
            outbound_after <= 64 * KIB,
            "is_writable() is outbound <= high watermark ({outbound_after} bytes)"
        );
        chunks += wrote as u64;
        if !writable_before {
            paused = true;
            break;
        }
    }
    assert!(paused, "output never rose above the high watermark");

    // Paused: bytes the client sends now are not read. A short window suffices,
    // an unpaused loop reads them within microseconds.
    client.write_all(b"ping").unwrap();
    match rx.recv_timeout(Duration::from_millis(150)) {
        Err(RecvTimeoutError::Timeout) => {}
        other => panic!("a paused connection was served: {other:?}"),
    }
    assert_eq!(engine.stats().total.bytes_in, 0);

    // Draining lets output fall to the low watermark: `on_writable`, then the
    // bytes that waited are read.
    for k in 0..chunks {
        assert!(
            read_n(&mut client, chunk) == pattern(chunk, k),
            "chunk {k} intact"
        );
    }
    match next_p(&rx, "on_writable") {
        P::Writable { outbound, writable } => {
            assert!(outbound <= 32 * KIB, "resumed at {outbound} pending bytes");
            assert!(writable);
        }
        other => panic!("expected on_writable first, got {other:?}"),
    }
    match next_p(&rx, "the waiting ping") {
        P::Traffic(data) => assert_eq!(data, b"ping"),
        other => panic!("expected the ping, got {other:?}"),
    }
    assert_eq!(engine.stats().total.bytes_in, 4);
    engine.stop();
}

#[test]
fn writes_past_max_outbound_close_with_write_overflow() {
    let (engine, rx) = start_probe(one_loop(), |tx| Probe {
        chunk: MIB,
        force: true,
        ..Probe::new(tx)
    });
    let mut client = connect_small_rcvbuf(engine.local_addrs()[0], TINY_RCVBUF);
    let P::Open(id) = next_p(&rx, "open") else {
        panic!("expected open")
    };
    let mut largest = 0;
    let reason = 'outer: {
        // The kernel absorbs a few MiB at most; 32 MiB is far past the cap.
        for _ in 0..32 {
            engine.wake(id).unwrap();
            match next_p(&rx, "wake") {
                P::Wake { outbound_after, .. } => largest = largest.max(outbound_after),
                P::Close(reason) => break 'outer reason,
                other => panic!("unexpected {other:?}"),
            }
            if let Ok(P::Close(reason)) = rx.try_recv() {
                break 'outer reason;
            }
        }
        match next_p(&rx, "close") {
            P::Close(reason) => reason,
            other => panic!("expected close, got {other:?}"),
        }
    };
    assert_eq!(reason, "WriteOverflow");
    assert!(largest <= 4 * MIB, "pending output reached {largest}");
    assert_eq!(engine.stats().total.closed_by.write_overflow, 1);
    drain_until_closed(&mut client);
    engine.stop();
}

#[test]
fn engine_send_past_max_outbound_closes_with_write_overflow() {
    let (engine, rx) = start_probe(one_loop(), Probe::new);
    let mut client = connect_small_rcvbuf(engine.local_addrs()[0], TINY_RCVBUF);
    let P::Open(id) = next_p(&rx, "open") else {
        panic!("expected open")
    };
    for k in 0..64 {
        engine.send(id, pattern(512 * KIB, k)).unwrap();
    }
    match next_p(&rx, "close") {
        P::Close(reason) => assert_eq!(reason, "WriteOverflow"),
        other => panic!("expected close, got {other:?}"),
    }
    let stats = stats_until(&engine, "sends after the close dropped", |s| {
        s.total.stale_commands > 0
    });
    assert_eq!(stats.total.closed_by.write_overflow, 1);
    drain_until_closed(&mut client);
    engine.stop();
}

#[test]
fn one_engine_send_larger_than_max_outbound_closes_with_write_overflow() {
    let (engine, rx) = start_probe(one_loop(), Probe::new);
    let mut client = connect_small_rcvbuf(engine.local_addrs()[0], TINY_RCVBUF);
    let P::Open(id) = next_p(&rx, "open") else {
        panic!("expected open")
    };
    // About 4 MiB fit in the kernel, the rest must not all be kept.
    engine.send(id, vec![7u8; 12 * MIB]).unwrap();
    match rx.recv_timeout(DEADLINE) {
        Ok(P::Close(reason)) => assert_eq!(reason, "WriteOverflow"),
        Ok(other) => panic!("expected close, got {other:?}"),
        Err(_) => panic!(
            "still open with {} bytes of buffers lent (max_outbound is {})",
            engine.stats().total.buffer_bytes,
            4 * MIB
        ),
    }
    let stats = stats_until(&engine, "buffers returned", |s| s.total.open == 0);
    assert_eq!(stats.total.closed_by.write_overflow, 1);
    drain_until_closed(&mut client);
    engine.stop();
}

#[test]
fn max_inbox_bytes_bounds_what_other_threads_queue() {
    let (release, gate) = channel();
    let gate = Arc::new(Mutex::new(gate));
    let mut options = one_loop();
    options.max_inbox_bytes = 256 * KIB;
    let (engine, rx) = start_probe(options, move |tx| Probe {
        gate: Some(gate.clone()),
        ..Probe::new(tx)
    });
    let mut client = connect(engine.local_addrs()[0]);
    let P::Open(id) = next_p(&rx, "open") else {
        panic!("expected open")
    };
    // Hold the loop inside `on_wake` so nothing leaves the inbox.
    engine.wake(id).unwrap();
    wait_p(&rx, "the loop blocked in on_wake", |e| {
        matches!(e, P::Wake { .. })
    });

    let chunk = 64 * KIB;
    for k in 0..4 {
        engine.send(id, pattern(chunk, k)).unwrap();
    }
    assert_eq!(
        engine.send(id, pattern(chunk, 4)),
        Err(SendError::InboxFull {
            queued: 256 * KIB,
            max: 256 * KIB
        })
    );
    release.send(()).unwrap();
    // Once the loop takes the batch the bound frees up again.
    let end = Instant::now() + DEADLINE;
    loop {
        match engine.send(id, pattern(chunk, 4)) {
            Ok(()) => break,
            Err(SendError::InboxFull { .. }) if Instant::now() < end => {
                std::thread::sleep(Duration::from_millis(1))
            }
            Err(e) => panic!("send after the loop caught up: {e}"),
        }
    }
    for k in 0..5 {
        assert!(
            read_n(&mut client, chunk) == pattern(chunk, k),
            "chunk {k} delivered in order"
        );
    }
    engine.stop();
}

// ---- accepting ----

#[test]
fn max_connections_rejects_extra_sockets_without_disturbing_established_ones() {
    let (factory, rx) = recorder();
    let mut options = Options::default();
    options.loops = 2;
    options.reuse_port = true;
    options.max_connections = 8;
    let engine = Engine::builder(factory)
        .options(options)
        .listen("127.0.0.1:0")
        .start()
        .unwrap();
    let addr = engine.local_addrs()[0];
    let mut clients: Vec<_> = (0..8).map(|_| connect(addr)).collect();
    for (i, c) in clients.iter_mut().enumerate() {
        roundtrip(c, &pattern(100, i as u64));
    }
    for _ in 0..8 {
        wait_for(&rx, "open", |e| matches!(e, Ev::Open(_)));
    }
    // One at a time, so two loops never race for the last place.
    for j in 1..=4 {
        let mut extra = connect(addr);
        let _ = extra.write_all(b"let me in");
        drain_until_closed(&mut extra);
        stats_until(&engine, "rejected counted", |s| s.total.rejected == j);
    }
    for (i, c) in clients.iter_mut().enumerate() {
        roundtrip(c, &pattern(1000, 100 + i as u64));
    }
    let stats = engine.stats().total;
    assert_eq!((stats.accepted, stats.open, stats.closed), (8, 8, 0));
    assert!(rx.try_recv().is_err(), "rejected sockets never opened");

    // A place freed by a close is available again.
    drop(clients.pop());
    wait_for(&rx, "close", |e| matches!(e, Ev::Close(..)));
    let mut late = connect(addr);
    roundtrip(&mut late, b"admitted after a close");
    assert_eq!(engine.stats().total.rejected, 4);
    engine.stop();
}

/// Echoes; answers `count?` with how many connections were accepted when it
/// was served; blocks the loop in `on_wake` until released.
struct StormProbe {
    tx: Sender<ConnId>,
    gate: Arc<Mutex<Receiver<()>>>,
}

impl EventHandler for StormProbe {
    type State = ();

    fn on_open(&mut self, conn: &mut Conn<'_, ()>) -> Action {
        let _ = self.tx.send(conn.id());
        Action::Continue
    }

    fn on_traffic(&mut self, conn: &mut Conn<'_, ()>) -> Action {
        let data = conn.read_buf();
        if data == b"count?" {
            let n = conn.engine().stats().total.accepted;
            conn.write(format!("{n:>8}").as_bytes());
        } else {
            conn.write(data);
        }
        conn.consume(data.len());
        Action::Continue
    }

    fn on_wake(&mut self, _conn: &mut Conn<'_, ()>) -> Action {
        let _ = self.gate.lock().unwrap().recv_timeout(DEADLINE);
        Action::Continue
    }
}

#[test]
fn an_accept_storm_is_taken_in_bounded_batches_while_established_ones_are_served() {
    const STORM: usize = 600;
    const PER_WAKEUP: usize = 4;
    let (release, gate) = channel();
    let gate = Arc::new(Mutex::new(gate));
    let (tx, opened) = channel();
    let mut options = one_loop();
    options.backlog = 2 * STORM as i32;
    options.accepts_per_wakeup = PER_WAKEUP;
    let engine = Engine::builder(move |_| StormProbe {
        tx: tx.clone(),
        gate: gate.clone(),
    })
    .options(options)
    .listen("127.0.0.1:0")
    .start()
    .unwrap();
    let addr = engine.local_addrs()[0];
    let mut established = connect(addr);
    roundtrip(&mut established, b"hello");
    let id = opened.recv_timeout(DEADLINE).unwrap();

    // Block the loop, let the storm queue up in the backlog, then ask the
    // established connection a question and let the loop go.
    engine.wake(id).unwrap();
    let mut storm: Vec<_> = (0..STORM).map(|_| connect(addr)).collect();
    established.write_all(b"count?").unwrap();
    release.send(()).unwrap();
    let served_at: u64 = String::from_utf8(read_n(&mut established, 8))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert!(
        served_at <= 1 + 8 * PER_WAKEUP as u64,
        "the established connection waited for {served_at} accepts"
    );

    for (i, c) in storm.iter_mut().enumerate() {
        c.write_all(&pattern(16, i as u64)).unwrap();
    }
    for (i, c) in storm.iter_mut().enumerate() {
        assert_eq!(read_n(c, 16), pattern(16, i as u64), "storm client {i}");
    }
    assert_eq!(engine.stats().total.accepted, 1 + STORM as u64);
    engine.stop();
}

const SHED_CHILD: &str = "TETHER_LIMITS_SHED_CHILD";
const SHED_FD_LIMIT: u64 = 64;

#[test]
fn out_of_descriptors_the_reserve_sheds_a_waiting_connection() {
    if std::env::var_os(SHED_CHILD).is_some() {
        set_nofile(SHED_FD_LIMIT);
        let (factory, _rx) = recorder();
        let engine = Engine::builder(factory)
            .loops(1)
            .listen("127.0.0.1:0")
            .start()
            .unwrap();
        return child_serve(&engine);
    }
    let mut server = ChildServer::spawn(
        "out_of_descriptors_the_reserve_sheds_a_waiting_connection",
        SHED_CHILD,
    );
    let mut clients: Vec<_> = (0..2 * SHED_FD_LIMIT)
        .map(|_| connect(server.addr))
        .collect();
    roundtrip(&mut clients[0], b"first is served");
    let before = server
        .stats_until("a shed connection", |s| s.shed >= 1)
        .shed;

    // Shed peers are told at once (EOF or reset) instead of hanging.
    let mut told = 0;
    for c in &clients {
        c.set_nonblocking(true).unwrap();
        match (&*c).read(&mut [0u8; 16]) {
            Ok(0) => told += 1,
            Err(e) if e.kind() == ErrorKind::ConnectionReset => told += 1,
            Err(e) if e.kind() == ErrorKind::WouldBlock => {}
            other => panic!("unexpected {other:?}"),
        }
        c.set_nonblocking(false).unwrap();
    }
    let after = server.stats().shed;
    assert!(
        before <= told && told <= after,
        "{told} clients saw a close, {before}..={after} were shed"
    );
    roundtrip(&mut clients[0], b"established one unharmed");
    drop(clients);
    server.stats_until("all closed", |s| s.open == 0);
    server.finish();
}

// ---- graceful stop ----

#[test]
fn stop_with_timeout_stops_accepting_flushes_and_closes_the_rest_at_the_deadline() {
    let greeting = 16 * MIB;
    let mut options = Options::default();
    options.max_outbound = 32 * MIB;
    options.loops = 2;
    options.reuse_port = true;
    let (engine, rx) = start_probe(options, move |tx| Probe {
        greeting,
        ..Probe::new(tx)
    });
    let addr = engine.local_addrs()[0];
    let reader = connect(addr);
    let never_reads = connect_small_rcvbuf(addr, TINY_RCVBUF);
    for _ in 0..2 {
        wait_p(&rx, "open", |e| matches!(e, P::Open(_)));
    }
    // Both greetings are pending: nobody has read yet.
    stats_until(&engine, "greetings pending", |s| {
        s.total.buffer_bytes >= 2 * 64 * KIB
    });
    let reading = std::thread::spawn(move || {
        let mut reader = reader;
        read_to_eof(&mut reader)
    });

    let drain = Duration::from_millis(1500);
    let stopper = engine.clone();
    let started = Instant::now();
    let stopping = std::thread::spawn(move || {
        stopper.stop_with_timeout(drain);
        started.elapsed()
    });
    let mut shutdowns = 0;
    let mut reasons = Vec::new();
    while shutdowns < 2 {
        match next_p(&rx, "on_shutdown on both loops") {
            P::Shutdown => shutdowns += 1,
            P::Close(r) => reasons.push(r),
            _ => {}
        }
    }
    // Listeners are gone once on_shutdown runs.
    let refused = TcpStream::connect_timeout(&addr, Duration::from_secs(2));
    assert!(refused.is_err(), "accepted a connection while stopping");

    let took = stopping.join().unwrap();
    assert!(
        took + Duration::from_millis(50) >= drain && took < drain + Duration::from_secs(3),
        "stop took {took:?} for a {drain:?} deadline"
    );
    assert!(
        reading.join().unwrap() == pattern(greeting, 99),
        "the reading client got all its output"
    );
    while let Ok(ev) = rx.try_recv() {
        if let P::Close(r) = ev {
            reasons.push(r);
        }
    }
    assert_eq!(reasons, ["Shutdown", "Shutdown"]);
    let stats = engine.stats().total;
    assert_eq!((stats.open, stats.closed_by.shutdown), (0, 2));
    drop(never_reads);
}

// ---- counters ----

/// Frames: `id?` answers the connection id, `timer` arms a timer, `close`
/// closes, `panic` panics, `big` answers a 6 MiB frame (more than the kernel
/// buffers of a loopback peer that does not read), anything else echoes.
struct Script {
    codec: LengthPrefixed,
    tx: Sender<Ev>,
}

impl EventHandler for Script {
    type State = ();

    fn on_open(&mut self, conn: &mut Conn<'_, ()>) -> Action {
        let _ = self.tx.send(Ev::Open(conn.id()));
        Action::Continue
    }

    fn on_traffic(&mut self, conn: &mut Conn<'_, ()>) -> Action {
        decode_frames(conn, &mut self.codec, |conn, f| {
            match f {
                b"id?" => {
                    let id = conn.id().to_string();
                    conn.write_frame(id.as_bytes()).unwrap();
                }
                b"timer" => {
                    conn.set_timer(Duration::from_secs(600), 1);
                    conn.write_frame(b"armed").unwrap();
                }
                b"close" => return Action::Close,
                b"panic" => panic!("scripted panic"),
                b"big" => conn.write_frame(&vec![7u8; BIG]).unwrap(),
                other => conn.write_frame(other).unwrap(),
            }
            Action::Continue
        })
    }

    fn on_close(&mut self, conn: &mut Conn<'_, ()>, r: &CloseReason) {
        let _ = self.tx.send(Ev::Close(conn.id(), reason_name(r)));
    }
}

const BIG: usize = 6 * MIB;

fn frame(payload: &[u8]) -> Vec<u8> {
    let mut out = (payload.len() as u32).to_be_bytes().to_vec();
    out.extend_from_slice(payload);
    out
}

fn read_frame(s: &mut TcpStream) -> Vec<u8> {
    let len = u32::from_be_bytes(read_n(s, 4).try_into().unwrap()) as usize;
    read_n(s, len)
}

fn sum_loops(loops: &[Counts]) -> Counts {
    let mut t = Counts::default();
    for l in loops {
        t.open += l.open;
        t.accepted += l.accepted;
        t.closed += l.closed;
        t.closed_by.local += l.closed_by.local;
        t.closed_by.peer_closed += l.closed_by.peer_closed;
        t.closed_by.reset += l.closed_by.reset;
        t.closed_by.idle_timeout += l.closed_by.idle_timeout;
        t.closed_by.frame_timeout += l.closed_by.frame_timeout;
        t.closed_by.protocol += l.closed_by.protocol;
        t.closed_by.write_overflow += l.closed_by.write_overflow;
        t.closed_by.inbound_overflow += l.closed_by.inbound_overflow;
        t.closed_by.io += l.closed_by.io;
        t.closed_by.panic += l.closed_by.panic;
        t.closed_by.shutdown += l.closed_by.shutdown;
        t.rejected += l.rejected;
        t.shed += l.shed;
        t.bytes_in += l.bytes_in;
        t.bytes_out += l.bytes_out;
        t.frames_in += l.frames_in;
        t.frames_out += l.frames_out;
        t.stale_commands += l.stale_commands;
        t.buffer_bytes += l.buffer_bytes;
        t.pool_idle_bytes += l.pool_idle_bytes;
        t.timers += l.timers;
        t.closed_by.slow_subscriber += l.closed_by.slow_subscriber;
        t.copies += l.copies;
        t.copied_bytes += l.copied_bytes;
        t.shared_segments += l.shared_segments;
        t.writes += l.writes;
        t.topics += l.topics;
        t.subscriptions += l.subscriptions;
        t.topic_drops += l.topic_drops;
    }
    t
}

/// Invariants every quiescent snapshot must satisfy, overall and per loop.
fn check_consistent(stats: &Stats) {
    assert_eq!(stats.total, sum_loops(&stats.loops), "total is the sum");
    for (i, c) in stats.loops.iter().chain([&stats.total]).enumerate() {
        let b = &c.closed_by;
        let by_reason = b.local
            + b.peer_closed
            + b.reset
            + b.idle_timeout
            + b.frame_timeout
            + b.protocol
            + b.write_overflow
            + b.inbound_overflow
            + b.io
            + b.panic
            + b.slow_subscriber
            + b.shutdown;
        assert_eq!(c.closed, by_reason, "loop {i}: closed = sum by reason");
        assert_eq!(
            c.accepted,
            c.closed + c.open as u64,
            "loop {i}: accepted = closed + open"
        );
    }
}

#[test]
fn stats_add_up_in_a_scripted_scenario() {
    let (tx, rx) = channel();
    let mut options = Options::default();
    options.loops = 2;
    options.reuse_port = true;
    options.max_connections = 6;
    options.max_outbound = 2 * BIG;
    let engine = Engine::builder(move |_| Script {
        codec: LengthPrefixed::new(),
        tx: tx.clone(),
    })
    .options(options)
    .listen("127.0.0.1:0")
    .start()
    .unwrap();
    let addr = engine.local_addrs()[0];
    let (mut bytes_in, mut bytes_out) = (0u64, 0u64);
    let mut send = |s: &mut TcpStream, payload: &[u8]| {
        s.write_all(&frame(payload)).unwrap();
        bytes_in += 4 + payload.len() as u64;
    };

    // a, b, c, d, e, f learn their ids; a seventh is over the limit.
    let mut clients: Vec<TcpStream> = (0..5).map(|_| connect(addr)).collect();
    clients.push(connect_small_rcvbuf(addr, TINY_RCVBUF));
    let mut ids = Vec::new();
    for c in clients.iter_mut() {
        send(c, b"id?");
        let id = String::from_utf8(read_frame(c)).unwrap();
        bytes_out += 4 + id.len() as u64;
        ids.push(id);
    }
    let mut opened = Vec::new();
    for _ in 0..6 {
        if let Ev::Open(id) = wait_for(&rx, "open", |e| matches!(e, Ev::Open(_))) {
            opened.push(id);
        }
    }
    let id_of = |name: &str| *opened.iter().find(|id| id.to_string() == name).unwrap();
    let mut seventh = connect(addr);
    drain_until_closed(&mut seventh);
    stats_until(&engine, "one rejected", |s| s.total.rejected == 1);

    let [a, b, c, d, e, f] = <[TcpStream; 6]>::try_from(clients).unwrap();
    let (mut a, mut c, mut d, mut f) = (a, c, d, f);
    send(&mut a, b"timer");
    assert_eq!(read_frame(&mut a), b"armed");
    bytes_out += 4 + 5;
    stats_until(&engine, "one timer armed", |s| s.total.timers == 1);

    let closed = |who: &str, reasons: &[&str]| {
        let ev = wait_for(&rx, who, |e| matches!(e, Ev::Close(..)));
        let Ev::Close(id, reason) = ev else {
            unreachable!()
        };
        assert_eq!(
            id,
            id_of(&ids[(who.as_bytes()[0] - b'a') as usize]),
            "{who}"
        );
        assert!(reasons.contains(&reason.as_str()), "{who}: {reason}");
    };
    drop(b);
    closed("b", &["PeerClosed"]);
    send(&mut c, b"close");
    closed("c", &["Local"]);
    send(&mut d, b"panic");
    closed("d", &["Panic"]);
    reset(e);
    closed("e", &["Reset"]);
    engine
        .send(id_of(&ids[1]), &b"to b, long gone"[..])
        .unwrap();
    stats_until(&engine, "the stale send counted", |s| {
        s.total.stale_commands == 1
    });
    send(&mut f, b"big");
    let s = stats_until(&engine, "f's frame pending", |s| {
        s.total.buffer_bytes > 64 * KIB
    });

    check_consistent(&s);
    let t = &s.total;
    assert_eq!((t.open, t.accepted, t.closed), (2, 6, 4));
    let by = t.closed_by;
    assert_eq!((by.local, by.peer_closed, by.panic, by.reset), (1, 1, 1, 1));
    assert_eq!(
        (t.rejected, t.shed, t.stale_commands, t.timers),
        (1, 0, 1, 1)
    );
    // id? x6, timer, close, panic, big in; id x6, armed, big out.
    assert_eq!((t.frames_in, t.frames_out), (10, 8));
    assert_eq!(t.bytes_in, bytes_in);
    assert!(
        t.bytes_out >= bytes_out && t.bytes_out < bytes_out + 4 + BIG as u64,
        "bytes_out {} for {bytes_out} + part of the big frame",
        t.bytes_out
    );
    assert!(t.buffer_bytes <= 2 * BIG + 4 * KIB);

    engine.close(id_of(&ids[0])).unwrap();
    closed("a", &["Local"]);
    reset(f);
    closed("f", &["Reset", "Io"]);
    let s = stats_until(&engine, "everything returned", |s| {
        s.total.open == 0 && s.total.timers == 0 && s.total.buffer_bytes == 0
    });
    check_consistent(&s);
    let t = &s.total;
    assert_eq!((t.accepted, t.closed), (6, 6));
    assert_eq!(t.closed_by.local, 2);
    assert_eq!(t.closed_by.reset + t.closed_by.io, 2);
    assert_eq!(
        t.pool_idle_bytes % (4 * KIB),
        0,
        "pools keep only default-size buffers; grown ones are freed"
    );
    assert_eq!(t.bytes_in, bytes_in);
    drop(a);
    engine.stop();
}

/// Decodes frames and drops them: a partial frame is held as unconsumed input.
struct FrameSink {
    codec: LengthPrefixed,
}

impl EventHandler for FrameSink {
    type State = ();

    fn on_traffic(&mut self, conn: &mut Conn<'_, ()>) -> Action {
        decode_frames(conn, &mut self.codec, |_, _| Action::Continue)
    }
}

const BUDGET_CHILD: &str = "TETHER_LIMITS_BUDGET_CHILD";
const BUDGET: usize = 16 * MIB;

#[test]
fn two_thousand_connections_claiming_8_mib_frames_stay_within_the_memory_budget() {
    if std::env::var_os(BUDGET_CHILD).is_some() {
        let mut o = one_loop();
        o.memory_budget = Some(BUDGET);
        let engine = Engine::builder(|_| FrameSink {
            codec: LengthPrefixed::new(),
        })
        .options(o)
        .listen("127.0.0.1:0")
        .start()
        .unwrap();
        return child_serve(&engine);
    }
    let mut server = ChildServer::spawn(
        "two_thousand_connections_claiming_8_mib_frames_stay_within_the_memory_budget",
        BUDGET_CHILD,
    );
    let baseline = server.stats().rss_kib;
    // Each claims a frame just under 8 MiB and sends 32 KiB of it: 64 MiB of
    // partial frames in all, four times the budget.
    let mut wire = ((8 * MIB - 1) as u32).to_be_bytes().to_vec();
    wire.extend(std::iter::repeat_n(0u8, 32 * KIB));
    const N: usize = 2000;
    let mut clients = Vec::with_capacity(N);
    let (mut peak_buffers, mut peak_rss) = (0, 0);
    let mut note = |s: ChildStats| {
        peak_buffers = peak_buffers.max(s.buffer_bytes);
        peak_rss = peak_rss.max(s.rss_kib);
        s
    };
    for i in 0..N {
        let mut c = TcpStream::connect(server.addr).expect("connect");
        // A shed connection may be reset while this is still in flight.
        let _ = c.write_all(&wire);
        clients.push(c);
        if i % 100 == 99 {
            note(server.stats());
        }
    }
    // Until every connection was accepted and the input stops moving.
    let mut last = note(server.stats_until("all accepted", |s| s.accepted as usize == N));
    let end = Instant::now() + DEADLINE;
    loop {
        std::thread::sleep(Duration::from_millis(50));
        let s = note(server.stats());
        if s.bytes_in == last.bytes_in {
            break;
        }
        last = s;
        assert!(Instant::now() < end, "input never settled: {s:?}");
    }
    eprintln!(
        "budget {} KiB: peak buffers {} KiB, RSS {baseline} -> peak {peak_rss} KiB, {} shed",
        BUDGET / KIB,
        peak_buffers / 1024,
        last.closed
    );
    assert!(last.closed > 0, "the budget shed nobody: {last:?}");
    assert!(
        peak_buffers as usize <= BUDGET,
        "connections held {peak_buffers} bytes of buffers, budget {BUDGET}"
    );
    let grew_kib = peak_rss.saturating_sub(baseline);
    assert!(
        grew_kib as usize <= (BUDGET + 24 * MIB) / KIB,
        "RSS grew by {grew_kib} KiB with a budget of {} KiB",
        BUDGET / KIB
    );
    drop(clients);
    let _ = server.finish();
}
