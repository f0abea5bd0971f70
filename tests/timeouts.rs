//! Timeouts over real loopback sockets: idle kinds, heartbeats, frame timeout,
//! per-connection timers and the loop ticker.

mod util;

use std::io::Write;
use std::sync::mpsc::{Sender, channel};
use std::time::{Duration, Instant};

use tether::{Action, CloseReason, Conn, Engine, EventHandler, Idle, LoopCtx, Options};
use util::*;

#[derive(Debug, Clone, PartialEq, Eq)]
enum T {
    Open,
    Close(String),
    Idle(Idle),
    Heartbeat,
    Timer(u64),
    Tick(String),
}

/// Consumes complete lines only (so a line without `\n` is a partial frame),
/// answers `ping` heartbeats, reports everything.
struct Timed {
    tx: Sender<(Instant, T)>,
    /// On open: arm timer keys 1 (after 100 ms) and 2 (after 150 ms), cancel 2.
    arm_timers: bool,
    /// Per-connection read-idle override set in on_open.
    read_idle: Option<Duration>,
    keep_on_idle: bool,
    ticks: Option<Duration>,
}

impl Timed {
    fn new(tx: Sender<(Instant, T)>) -> Self {
        Timed {
            tx,
            arm_timers: false,
            read_idle: None,
            keep_on_idle: false,
            ticks: None,
        }
    }
    fn report(&self, t: T) {
        let _ = self.tx.send((Instant::now(), t));
    }
}

impl EventHandler for Timed {
    type State = ();

    fn on_open(&mut self, conn: &mut Conn<'_, ()>) -> Action {
        if self.arm_timers {
            conn.set_timer(Duration::from_millis(100), 1);
            conn.set_timer(Duration::from_millis(150), 2);
            assert!(conn.cancel_timer(2));
            assert!(!conn.cancel_timer(3));
        }
        if self.read_idle.is_some() {
            conn.set_idle_timeout(Idle::Read, self.read_idle);
        }
        self.report(T::Open);
        Action::Continue
    }

    fn on_traffic(&mut self, conn: &mut Conn<'_, ()>) -> Action {
        while let Some(end) = conn.read_buf().iter().position(|&b| b == b'\n') {
            conn.consume(end + 1);
        }
        Action::Continue
    }

    fn on_close(&mut self, _conn: &mut Conn<'_, ()>, reason: &CloseReason) {
        self.report(T::Close(reason_name(reason)));
        if let CloseReason::IdleTimeout(kind) = reason {
            self.report(T::Idle(*kind));
        }
    }

    fn on_idle(&mut self, _conn: &mut Conn<'_, ()>, kind: Idle) -> Action {
        if self.keep_on_idle {
            self.report(T::Idle(kind));
            Action::Continue
        } else {
            Action::Close
        }
    }

    fn on_heartbeat(&mut self, conn: &mut Conn<'_, ()>) -> Action {
        conn.write(b"ping\n");
        self.report(T::Heartbeat);
        Action::Continue
    }

    fn on_timer(&mut self, _conn: &mut Conn<'_, ()>, key: u64) -> Action {
        self.report(T::Timer(key));
        Action::Continue
    }

    fn on_tick(&mut self, _ctx: &mut LoopCtx<'_, Self::State>) -> Option<Duration> {
        let name = std::thread::current()
            .name()
            .unwrap_or_default()
            .to_string();
        self.report(T::Tick(name));
        self.ticks
    }
}

fn start(
    opts: Options,
    tweak: impl Fn(&mut Timed) + Send + Sync + 'static,
) -> (Engine, std::sync::mpsc::Receiver<(Instant, T)>) {
    let (tx, rx) = channel();
    let engine = Engine::builder(move |_| {
        let mut h = Timed::new(tx.clone());
        tweak(&mut h);
        h
    })
    .options(opts)
    .loops(1)
    .listen("127.0.0.1:0")
    .start()
    .unwrap();
    (engine, rx)
}

fn next(
    rx: &std::sync::mpsc::Receiver<(Instant, T)>,
    what: &str,
    want: impl Fn(&T) -> bool,
) -> Instant {
    let end = Instant::now() + DEADLINE;
    loop {
        match rx.recv_timeout(end.saturating_duration_since(Instant::now())) {
            Ok((at, t)) if want(&t) => return at,
            Ok(_) => {}
            Err(_) => panic!("no {what} within {DEADLINE:?}"),
        }
    }
}

fn opts() -> Options {
    Options::default()
}

#[test]
fn idle_connection_is_closed_after_the_timeout() {
    let mut o = opts();
    o.idle_timeout = Some(Duration::from_millis(200));
    let (engine, rx) = start(o, |_| {});
    let mut c = connect(engine.local_addrs()[0]);
    let opened = next(&rx, "open", |t| *t == T::Open);
    let closed = next(&rx, "idle close", |t| *t == T::Close("IdleTimeout".into()));
    next(&rx, "kind", |t| *t == T::Idle(Idle::All));
    let waited = closed - opened;
    assert!(
        waited >= Duration::from_millis(200),
        "closed early: {waited:?}"
    );
    assert!(
        waited < Duration::from_millis(1200),
        "closed late: {waited:?}"
    );
    assert_eq!(read_to_eof(&mut c), b"");
    engine.stop();
}

#[test]
fn traffic_keeps_a_connection_and_silence_closes_it_as_read_idle() {
    let mut o = opts();
    o.read_idle_timeout = Some(Duration::from_millis(150));
    let (engine, rx) = start(o, |_| {});
    let mut c = connect(engine.local_addrs()[0]);
    next(&rx, "open", |t| *t == T::Open);
    let begin = Instant::now();
    // One line every 50 ms for 600 ms: four times the timeout, never idle.
    while begin.elapsed() < Duration::from_millis(600) {
        c.write_all(b"x\n").unwrap();
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(
        rx.try_iter().all(|(_, t)| !matches!(t, T::Close(_))),
        "closed while active"
    );
    let closed = next(&rx, "read idle close", |t| {
        *t == T::Close("IdleTimeout".into())
    });
    assert!(closed - begin >= Duration::from_millis(600));
    next(&rx, "kind", |t| *t == T::Idle(Idle::Read));
    engine.stop();
}

#[test]
fn heartbeats_keep_an_all_idle_connection_open() {
    let mut o = opts();
    o.idle_timeout = Some(Duration::from_millis(200));
    o.heartbeat = Some(Duration::from_millis(50));
    let (engine, rx) = start(o, |_| {});
    let mut c = connect(engine.local_addrs()[0]);
    next(&rx, "open", |t| *t == T::Open);
    // Ten pings span 500 ms, more than twice the idle timeout.
    for _ in 0..10 {
        assert_eq!(read_n(&mut c, 5), b"ping\n");
    }
    assert!(
        rx.try_iter().all(|(_, t)| !matches!(t, T::Close(_))),
        "heartbeats keep it open"
    );
    assert_eq!(engine.connection_count(), 1);
    engine.stop();
}

#[test]
fn heartbeat_waits_for_write_idleness() {
    let mut o = opts();
    o.heartbeat = Some(Duration::from_millis(100));
    o.read_idle_timeout = Some(Duration::from_secs(30));
    let (engine, rx) = start(o, |h| h.keep_on_idle = true);
    let mut c = connect(engine.local_addrs()[0]);
    let opened = next(&rx, "open", |t| *t == T::Open);
    let first = next(&rx, "heartbeat", |t| *t == T::Heartbeat);
    let second = next(&rx, "heartbeat", |t| *t == T::Heartbeat);
    assert!(first - opened >= Duration::from_millis(100));
    assert!(
        second - first >= Duration::from_millis(100),
        "one per interval of silence"
    );
    assert_eq!(read_n(&mut c, 10), b"ping\nping\n");
    engine.stop();
}

#[test]
fn frame_timeout_fires_on_a_trickle() {
    let mut o = opts();
    o.frame_timeout = Some(Duration::from_millis(300));
    o.read_idle_timeout = Some(Duration::from_millis(250));
    let (engine, rx) = start(o, |_| {});
    let mut c = connect(engine.local_addrs()[0]);
    next(&rx, "open", |t| *t == T::Open);
    let begin = Instant::now();
    // A line that never ends, one byte per 100 ms: the read-idle timeout never
    // expires, the frame timeout does.
    let closed = loop {
        if c.write_all(b"a").is_err() {
            break next(&rx, "frame timeout", |t| matches!(t, T::Close(_)));
        }
        if let Ok((at, t)) = rx.recv_timeout(Duration::from_millis(100)) {
            assert_eq!(t, T::Close("FrameTimeout".into()));
            break at;
        }
        assert!(begin.elapsed() < DEADLINE, "no frame timeout");
    };
    let waited = closed - begin;
    assert!(
        waited >= Duration::from_millis(300),
        "frame timeout early: {waited:?}"
    );
    engine.stop();
}

#[test]
fn user_timers_fire_once_and_cancelled_ones_never() {
    let (engine, rx) = start(opts(), |h| h.arm_timers = true);
    let _c = connect(engine.local_addrs()[0]);
    let opened = next(&rx, "open", |t| *t == T::Open);
    let fired = next(&rx, "timer 1", |t| *t == T::Timer(1));
    assert!(fired - opened >= Duration::from_millis(100));
    // Key 2 was cancelled: nothing but silence for well past its deadline.
    assert!(rx.recv_timeout(Duration::from_millis(200)).is_err());
    engine.stop();
}

#[test]
fn timers_of_a_closed_connection_never_fire() {
    let (engine, rx) = start(opts(), |h| h.arm_timers = true);
    let c = connect(engine.local_addrs()[0]);
    next(&rx, "open", |t| *t == T::Open);
    drop(c);
    next(&rx, "close", |t| matches!(t, T::Close(_)));
    // Key 1 was due 100 ms after open; give it three times that.
    assert!(
        rx.recv_timeout(Duration::from_millis(300)).is_err(),
        "a timer fired after close"
    );
    engine.stop();
}

#[test]
fn per_connection_idle_override() {
    // Engine-wide read idle is long; the handler shortens it for its connections.
    let mut o = opts();
    o.read_idle_timeout = Some(Duration::from_secs(60));
    let (engine, rx) = start(o, |h| h.read_idle = Some(Duration::from_millis(100)));
    let _c = connect(engine.local_addrs()[0]);
    let opened = next(&rx, "open", |t| *t == T::Open);
    let closed = next(&rx, "override close", |t| {
        *t == T::Close("IdleTimeout".into())
    });
    assert!(closed - opened >= Duration::from_millis(100));
    assert!(closed - opened < Duration::from_secs(5));
    engine.stop();
}

#[test]
fn ticker_runs_on_the_loop_thread() {
    let (engine, rx) = start(opts(), |h| h.ticks = Some(Duration::from_millis(20)));
    let mut first = None;
    for k in 0..5u32 {
        let at = next(&rx, "tick", |t| *t == T::Tick("tether-loop-0".into()));
        let first = *first.get_or_insert(at);
        // Fixed rate: tick k is due k periods after the first one's deadline and
        // never runs before it (a late tick does not push the later ones back).
        assert!(
            at - first + Duration::from_millis(2) >= Duration::from_millis(20) * k,
            "tick {k} came early"
        );
    }
    engine.stop();
}
