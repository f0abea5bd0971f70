//! Huge durations mean "never": connect timeouts, user timers, reconnect
//! backoff, stop and shutdown deadlines of `Duration::MAX` neither fire at once
//! nor panic a loop; and a loop thread that dies is never silent.

mod util;

use std::net::{SocketAddr, TcpListener};
use std::sync::mpsc::{Receiver, Sender, channel};
use std::time::{Duration, Instant};

use tether::client::backoff::{BackoffPolicy, Jitter};
use tether::{
    Action, CloseReason, Conn, ConnId, ConnectFailure, ConnectOptions, Engine, EventHandler,
    LoopCtx, Options, SendError,
};
use util::*;

#[derive(Debug, PartialEq)]
enum Seen {
    Open(ConnId),
    Timer(u64),
    Failed,
    Close(String),
}

/// Arms a `Duration::MAX` timer (key 1) and a short one (key 2) on open, and
/// reports what happens.
struct Watcher {
    tx: Sender<Seen>,
}

impl EventHandler for Watcher {
    type State = ();

    fn on_open(&mut self, conn: &mut Conn<'_, ()>) -> Action {
        conn.set_timer(Duration::MAX, 1);
        conn.set_timer(Duration::from_millis(30), 2);
        let _ = self.tx.send(Seen::Open(conn.id()));
        Action::Continue
    }

    fn on_traffic(&mut self, conn: &mut Conn<'_, ()>) -> Action {
        let n = conn.read_buf().len();
        conn.consume(n);
        Action::Continue
    }

    fn on_timer(&mut self, _conn: &mut Conn<'_, ()>, key: u64) -> Action {
        let _ = self.tx.send(Seen::Timer(key));
        Action::Continue
    }

    fn on_close(&mut self, _conn: &mut Conn<'_, ()>, reason: &CloseReason) {
        let _ = self.tx.send(Seen::Close(reason_name(reason)));
    }

    fn on_connect_failed(
        &mut self,
        _: &mut LoopCtx<'_, Self::State>,
        _: &ConnectFailure,
        _: &mut (),
    ) {
        let _ = self.tx.send(Seen::Failed);
    }
}

fn watcher(o: Options, listen: bool) -> (Engine, Receiver<Seen>) {
    let (tx, rx) = channel();
    let mut b = Engine::builder(move |_| Watcher { tx: tx.clone() }).options(o);
    if listen {
        b = b.listen("127.0.0.1:0");
    }
    (b.start().unwrap(), rx)
}

fn one_loop() -> Options {
    let mut o = Options::default();
    o.loops = 1;
    o
}

fn next(rx: &Receiver<Seen>, what: &str) -> Seen {
    rx.recv_timeout(DEADLINE)
        .unwrap_or_else(|_| panic!("no {what} within {DEADLINE:?}"))
}

/// Nothing arrives for `quiet` (a wrong answer here arrives at once, and
/// thousands of times).
fn nothing_for(rx: &Receiver<Seen>, quiet: Duration) {
    if let Ok(seen) = rx.recv_timeout(quiet) {
        panic!("expected quiet, got {seen:?}");
    }
}

/// The loop still works: a fresh dial opens (the wrong answer to a huge
/// duration can also be a loop thread that panicked and went quiet).
fn still_serving(engine: &Engine, rx: &Receiver<Seen>) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    engine.connect(l.local_addr().unwrap(), ()).unwrap();
    assert!(matches!(next(rx, "the control dial"), Seen::Open(_)));
}

#[test]
fn a_timer_of_duration_max_never_fires() {
    let (engine, rx) = watcher(one_loop(), true);
    let _c = connect(engine.local_addrs()[0]);
    assert!(matches!(next(&rx, "open"), Seen::Open(_)));
    // The short timer comes first and alone: the endless one is still armed.
    assert_eq!(next(&rx, "the 30 ms timer"), Seen::Timer(2));
    nothing_for(&rx, Duration::from_millis(100));
    engine.stop();
}

/// A listener whose accept queue is full: connects to it stay pending.
fn black_hole() -> (socket2::Socket, Vec<std::net::TcpStream>, SocketAddr) {
    let l = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    l.bind(&"127.0.0.1:0".parse::<SocketAddr>().unwrap().into())
        .unwrap();
    l.listen(0).unwrap();
    let addr = l.local_addr().unwrap().as_socket().unwrap();
    let mut held = Vec::new();
    // Fill the queue; a connect that does not complete at once means it is full.
    for _ in 0..8 {
        match std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(200)) {
            Ok(s) => held.push(s),
            Err(_) => break,
        }
    }
    (l, held, addr)
}

#[test]
fn a_connect_timeout_of_duration_max_waits_instead_of_failing_at_once() {
    let (_l, _held, addr) = black_hole();
    let (engine, rx) = watcher(one_loop(), false);
    // The control: a short timeout does fail.
    engine
        .connect_with(
            addr,
            (),
            ConnectOptions::default().timeout(Duration::from_millis(50)),
        )
        .unwrap();
    assert_eq!(next(&rx, "the short connect timeout"), Seen::Failed);
    engine
        .connect_with(addr, (), ConnectOptions::default().timeout(Duration::MAX))
        .unwrap();
    nothing_for(&rx, Duration::from_millis(300));
    still_serving(&engine, &rx);
    engine.stop();
}

#[test]
fn a_backoff_of_duration_max_redials_never_not_thousands_of_times() {
    // A port nothing listens on: every attempt is refused at once.
    let addr = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let (engine, rx) = watcher(one_loop(), false);
    let policy = BackoffPolicy::default()
        .with_initial(Duration::from_millis(u64::MAX))
        .with_max_delay(Duration::MAX)
        .with_jitter(Jitter::None)
        .with_max_attempts(None);
    engine
        .connect_with(addr, (), ConnectOptions::default().reconnect(policy))
        .unwrap();
    assert_eq!(next(&rx, "the refused attempt"), Seen::Failed);
    nothing_for(&rx, Duration::from_millis(300));
    still_serving(&engine, &rx);
    engine.stop();
}

#[test]
fn stop_with_a_timeout_of_duration_max_closes_cleanly() {
    for via_options in [false, true] {
        let mut o = one_loop();
        if via_options {
            o.shutdown_timeout = Duration::MAX;
        }
        let (engine, rx) = watcher(o, true);
        let _c = connect(engine.local_addrs()[0]);
        assert!(matches!(next(&rx, "open"), Seen::Open(_)));
        let started = Instant::now();
        if via_options {
            engine.stop();
        } else {
            engine.stop_with_timeout(Duration::MAX);
        }
        assert!(started.elapsed() < DEADLINE);
        let closed = loop {
            match next(&rx, "the close") {
                Seen::Close(r) => break r,
                _ => continue,
            }
        };
        assert_eq!(closed, "Shutdown", "via options: {via_options}");
        assert_eq!(engine.connection_count(), 0);
    }
}

/// A connection state whose `Drop` panics once armed: the panic happens in
/// the loop itself, outside any callback.
#[derive(Default)]
struct Bomb(bool);

impl Drop for Bomb {
    fn drop(&mut self) {
        if self.0 && !std::thread::panicking() {
            panic!("a state that panics when dropped");
        }
    }
}

struct Armer {
    tx: Sender<ConnId>,
}

impl EventHandler for Armer {
    type State = Bomb;

    fn on_open(&mut self, conn: &mut Conn<'_, Bomb>) -> Action {
        let _ = self.tx.send(conn.id());
        Action::Continue
    }

    fn on_traffic(&mut self, conn: &mut Conn<'_, Bomb>) -> Action {
        let n = conn.read_buf().len();
        conn.consume(n);
        conn.state_mut().0 = true;
        Action::Close
    }
}

#[test]
fn calls_for_a_loop_whose_thread_died_fail_with_loop_died() {
    let (tx, rx) = channel();
    let engine = Engine::builder(move |_| Armer { tx: tx.clone() })
        .loops(1)
        .listen("127.0.0.1:0")
        .start()
        .unwrap();
    let addr = engine.local_addrs()[0];
    let mut c = connect(addr);
    let id = rx.recv_timeout(DEADLINE).unwrap();
    std::io::Write::write_all(&mut c, b"boom").unwrap();
    let end = Instant::now() + DEADLINE;
    let err = loop {
        match engine.send(id, &b"anyone there?"[..]) {
            Err(e) => break e,
            Ok(()) => assert!(Instant::now() < end, "sends were still accepted"),
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    assert_eq!(err, SendError::LoopDied { loop_id: 0 });
    assert_eq!(engine.close(id), Err(SendError::LoopDied { loop_id: 0 }));
    assert_eq!(
        engine
            .connect_with(addr, Bomb::default(), ConnectOptions::default().on_loop(0))
            .unwrap_err(),
        SendError::LoopDied { loop_id: 0 }
    );
    assert_eq!(engine.connection_count(), 0);
    engine.stop();
}
