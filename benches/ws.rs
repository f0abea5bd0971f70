//! WebSocket benchmark: tether's `ws` against tokio-tungstenite, same run.
//!
//! `cargo bench -p tether-bench --bench ws` (`-- --help` for the options). Each server runs in
//! its own child process (this binary re-executed with `--server`), pinned to
//! CPU 1; the load runs here, pinned to CPU 0. Servers run in turn (A B A B …)
//! and the tables show each one's median and the ratio of tether to
//! tokio-tungstenite.
//!
//! - **echo**: 100 connections, 4 messages in flight each, 64 B and 4 KiB
//!   messages alternating text and binary (tether-load's `ws` protocol, every
//!   byte checked): messages/s, server CPU per message, and for tether heap
//!   allocations per message (a counting allocator in the child).
//! - **fan-out**: `--subs` (5,000) WebSocket subscribers on one server; one of
//!   them publishes 64 B messages, 4 in flight, each reaching every subscriber
//!   (tether: every connection subscribes to one topic, the frame is built
//!   once and published as one `Bytes`; tokio-tungstenite: a
//!   `tokio::sync::broadcast` channel and a writer task per connection).
//!   Deliveries/s and deliveries per server CPU-second; every subscriber checks
//!   that it gets every message in order.
//! - **idle**: server RSS growth per WebSocket connection, `--idle` (10,000)
//!   connections held after the handshake with a 30 s heartbeat armed.
//!
//! `cargo test -p tether-bench --bench ws` runs a quick check of every case (small counts,
//! one short round).

#[path = "common/alloc.rs"]
mod alloc;
#[path = "common/procstat.rs"]
#[allow(dead_code)]
mod procstat;
#[path = "common/sys.rs"]
#[allow(dead_code)]
mod sys;

use std::io::{BufRead, BufReader, Write};
use std::net::SocketAddr;
use std::process::{Child, Command, ExitCode, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tether::net::ListenAddr;
use tether::ws::{Endpoint, Event, Message, OpCode, WsState, server_frame};
use tether::{Action, Conn, ConnId, Engine, EventHandler, Options};
use tether_load::proto::ws::Ws;
use tether_load::{Generator, Setup, Shape};

#[global_allocator]
static ALLOC: alloc::CountingAlloc = alloc::CountingAlloc;

const LOAD_CPU: usize = 0;
const SERVER_CPU: usize = 1;
const KINDS: [&str; 2] = ["tether", "tungstenite"];
/// Messages a fan-out publisher keeps in flight.
const WINDOW: u64 = 4;
const DEADLINE: Duration = Duration::from_secs(30);

struct Config {
    secs: f64,
    rounds: usize,
    conns: u32,
    subs: u32,
    idle: u32,
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if let Some(i) = args.iter().position(|a| a == "--server") {
        let kind = args.get(i + 1).cloned().unwrap_or_default();
        let case = args.get(i + 2).cloned().unwrap_or_default();
        return server_main(&kind, &case);
    }
    if args.iter().any(|a| a == "--help" || a == "-h") {
        println!("usage: ws [--secs S] [--rounds N] [--subs N] [--idle N]");
        return ExitCode::SUCCESS;
    }
    let bench = args.iter().any(|a| a == "--bench");
    let mut config = if bench {
        Config {
            secs: 3.0,
            rounds: 3,
            conns: 100,
            subs: 5000,
            idle: 10_000,
        }
    } else {
        Config {
            secs: 0.5,
            rounds: 1,
            conns: 10,
            subs: 100,
            idle: 200,
        }
    };
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let mut num = || it.next().and_then(|v| v.parse::<f64>().ok());
        match a.as_str() {
            "--secs" => config.secs = num().unwrap_or(config.secs),
            "--rounds" => config.rounds = num().map_or(config.rounds, |n| n as usize),
            "--subs" => config.subs = num().map_or(config.subs, |n| n as u32),
            "--idle" => config.idle = num().map_or(config.idle, |n| n as u32),
            _ => {}
        }
    }
    let _ = sys::pin_to_cpu(LOAD_CPU);
    let _ = sys::raise_open_file_limit();
    let load = procstat::load_average().map_or("?".into(), |l| format!("{l:.2}"));
    println!("WebSocket bench, load average {load} at start");
    for size in [64usize, 4096] {
        let runs = in_turn(&config, |kind| echo_run(kind, size, &config));
        report(
            &format!("echo {size} B, {} conns x 4 in flight", config.conns),
            &runs,
            "msg",
        );
    }
    let runs = in_turn(&config, |kind| fanout_run(kind, &config));
    report(
        &format!("fan-out 64 B to {} subscribers", config.subs),
        &runs,
        "delivery",
    );
    println!(
        "\nidle: server RSS growth per connection, {} connections, heartbeat 30 s",
        config.idle
    );
    for kind in KINDS {
        match idle_run(kind, config.idle) {
            Ok(per) => println!("  {kind:12} {per:8.0} B"),
            Err(e) => println!("  {kind:12} failed: {e}"),
        }
    }
    let load = procstat::load_average().map_or("?".into(), |l| format!("{l:.2}"));
    println!("load average {load} at the end");
    ExitCode::SUCCESS
}

/// One measured window of one server.
#[derive(Clone, Copy, Debug)]
struct Figures {
    /// Messages (echo) or deliveries (fan-out) per second.
    rate: f64,
    /// Server CPU nanoseconds per message or delivery.
    cpu_ns: f64,
    /// Server heap allocations per message or delivery (tether only).
    allocs: Option<f64>,
}

fn in_turn(
    config: &Config,
    run: impl Fn(&str) -> Result<Figures, String>,
) -> Vec<(String, Vec<Figures>)> {
    let mut out: Vec<(String, Vec<Figures>)> =
        KINDS.iter().map(|k| (k.to_string(), Vec::new())).collect();
    for round in 0..config.rounds {
        for (kind, figures) in &mut out {
            match run(kind) {
                Ok(f) => {
                    eprintln!(
                        "  round {} {kind}: {:.0}/s, {:.0} ns CPU each",
                        round + 1,
                        f.rate,
                        f.cpu_ns
                    );
                    figures.push(f);
                }
                Err(e) => eprintln!("  round {} {kind} failed: {e}", round + 1),
            }
        }
    }
    out
}

fn median(mut v: Vec<f64>) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

fn report(title: &str, runs: &[(String, Vec<Figures>)], unit: &str) {
    println!("\n{title}");
    println!(
        "  {:12} {:>12} {:>16} {:>18} {:>12}",
        "server",
        format!("{unit}/s"),
        format!("CPU ns/{unit}"),
        format!("{unit}/CPU-second"),
        format!("allocs/{unit}")
    );
    let mut per_cpu = Vec::new();
    for (kind, figures) in runs {
        let rate = median(figures.iter().map(|f| f.rate).collect());
        let cpu = median(figures.iter().map(|f| f.cpu_ns).collect());
        let allocs = figures.iter().filter_map(|f| f.allocs).collect::<Vec<_>>();
        let allocs = if allocs.is_empty() {
            "-".into()
        } else {
            format!("{:.3}", median(allocs))
        };
        println!(
            "  {kind:12} {rate:12.0} {cpu:16.0} {:18.0} {allocs:>12}",
            1e9 / cpu
        );
        per_cpu.push(1e9 / cpu);
    }
    if let [t, r] = per_cpu[..] {
        println!("  tether / tungstenite per CPU-second: {:.2}x", t / r);
    }
}

/// A server child: `--server KIND CASE`.
struct Server {
    child: Child,
    addr: SocketAddr,
}

impl Server {
    fn start(kind: &str, case: &str) -> Result<Server, String> {
        let mut child = Command::new(std::env::current_exe().map_err(|e| e.to_string())?)
            .args(["--server", kind, case])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .map_err(|e| e.to_string())?;
        let mut line = String::new();
        let mut out = BufReader::new(child.stdout.take().ok_or("no stdout")?);
        out.read_line(&mut line).map_err(|e| e.to_string())?;
        let addr = line
            .trim()
            .strip_prefix("listening on ")
            .and_then(|a| a.parse().ok())
            .ok_or_else(|| format!("child said {line:?}"))?;
        child.stdout = Some(out.into_inner());
        Ok(Server { child, addr })
    }

    fn cpu_ns(&self) -> f64 {
        procstat::cpu_time(self.child.id()).map_or(f64::NAN, |d| d.as_nanos() as f64)
    }

    fn rss(&self) -> f64 {
        procstat::rss_bytes(self.child.id()).map_or(f64::NAN, |b| b as f64)
    }

    /// The child's allocation count (it answers `allocs` on stdin).
    fn allocs(&mut self) -> Option<f64> {
        let stdin = self.child.stdin.as_mut()?;
        writeln!(stdin, "allocs").ok()?;
        let mut line = String::new();
        let mut out = BufReader::new(self.child.stdout.take()?);
        out.read_line(&mut line).ok()?;
        self.child.stdout = Some(out.into_inner());
        line.trim().parse().ok()
    }

    fn quit(mut self) {
        drop(self.child.stdin.take());
        let end = Instant::now() + Duration::from_secs(10);
        while self.child.try_wait().ok().flatten().is_none() {
            if Instant::now() > end {
                let _ = self.child.kill();
                break;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        let _ = self.child.wait();
    }
}

fn echo_run(kind: &str, size: usize, config: &Config) -> Result<Figures, String> {
    let mut server = Server::start(kind, "echo")?;
    let setup = Setup {
        addr: ListenAddr::Tcp(server.addr),
        loops: 1,
        shape: Shape {
            depth: 4,
            interval_ns: None,
            conns: config.conns,
            hold: false,
            heartbeat: None,
            handshake: true,
            batch: false,
        },
        reconnect: false,
    };
    let mut generator =
        Generator::start(&setup, Ws::new("127.0.0.1", "/", size)).map_err(|e| e.to_string())?;
    generator.dial(config.conns).map_err(|e| e.to_string())?;
    let (q, ok) = generator.wait_for(Instant::now() + DEADLINE, |q| {
        q.up == u64::from(config.conns)
    });
    if !ok {
        return Err(format!("only {} connections up", q.up));
    }
    std::thread::sleep(Duration::from_secs_f64(config.secs / 4.0));
    let (before, cpu0, allocs0) = (generator.snapshot(), server.cpu_ns(), server.allocs());
    std::thread::sleep(Duration::from_secs_f64(config.secs));
    let (after, cpu1, allocs1) = (generator.snapshot(), server.cpu_ns(), server.allocs());
    let window = after.since(&before);
    let errors = window.counters.errors();
    generator.stop();
    server.quit();
    let n = window.requests() as f64;
    if errors > 0 || n == 0.0 {
        return Err(format!("{errors} errors, {n} messages"));
    }
    Ok(Figures {
        rate: window.rps(),
        cpu_ns: (cpu1 - cpu0) / n,
        allocs: allocs0
            .zip(allocs1)
            .filter(|_| kind == "tether")
            .map(|(a, b)| (b - a) / n),
    })
}

/// What the fan-out and idle clients share.
#[derive(Default)]
struct Counts {
    opened: AtomicU64,
    delivered: AtomicU64,
    broken: AtomicU64,
    running: AtomicBool,
    publisher: Mutex<Option<ConnId>>,
}

#[derive(Default)]
struct SubState {
    ws: WsState,
    publisher: bool,
    next: u64,
}

impl std::borrow::Borrow<WsState> for SubState {
    fn borrow(&self) -> &WsState {
        &self.ws
    }
}

impl std::borrow::BorrowMut<WsState> for SubState {
    fn borrow_mut(&mut self) -> &mut WsState {
        &mut self.ws
    }
}

/// The load side of fan-out and idle: WebSocket clients that count opens,
/// check every message they get (sequence numbers in order) and, for the
/// publisher, send the next message when one of its own comes back.
struct Sub {
    ws: Endpoint,
    counts: Arc<Counts>,
}

fn message(seq: u64) -> [u8; 64] {
    let mut m = [b'x'; 64];
    m[..8].copy_from_slice(&seq.to_le_bytes());
    m
}

impl EventHandler for Sub {
    type State = SubState;

    fn on_open(&mut self, conn: &mut Conn<'_, SubState>) -> Action {
        self.ws.connect(conn, "127.0.0.1", "/");
        Action::Continue
    }

    fn on_traffic(&mut self, conn: &mut Conn<'_, SubState>) -> Action {
        let counts = &self.counts;
        self.ws.serve(conn, |ws, event| match event {
            Event::Open => {
                if ws.conn().state().publisher {
                    *counts.publisher.lock().unwrap() = Some(ws.conn().id());
                }
                counts.opened.fetch_add(1, Ordering::Relaxed);
            }
            Event::Message(Message::Binary(m)) => {
                let state = ws.conn().state_mut();
                let seq = m.get(..8).map_or(u64::MAX, |b| {
                    u64::from_le_bytes(b.try_into().unwrap_or_default())
                });
                if seq != state.next || m != message(seq) {
                    counts.broken.fetch_add(1, Ordering::Relaxed);
                }
                state.next = seq + 1;
                counts.delivered.fetch_add(1, Ordering::Relaxed);
                if state.publisher && counts.running.load(Ordering::Relaxed) {
                    ws.send_binary(&message(seq + WINDOW));
                }
            }
            _ => {}
        })
    }

    fn on_wake(&mut self, conn: &mut Conn<'_, SubState>) -> Action {
        let mut ws = self.ws.writer(conn);
        for seq in 0..WINDOW {
            ws.send_binary(&message(seq));
        }
        Action::Continue
    }
}

fn clients(counts: &Arc<Counts>) -> Result<Engine, String> {
    let counts = Arc::clone(counts);
    let mut options = Options::default();
    options.loops = 1;
    Engine::builder(move |_| Sub {
        ws: Endpoint::default(),
        counts: Arc::clone(&counts),
    })
    .options(options)
    .start()
    .map_err(|e| e.to_string())
}

/// Dials `n` clients (the first one the publisher), 256 at a time, and waits
/// until all have opened.
fn dial_all(
    engine: &Engine,
    counts: &Counts,
    addr: SocketAddr,
    n: u32,
    publisher: bool,
) -> Result<(), String> {
    let end = Instant::now() + DEADLINE;
    for i in 0..n {
        let state = SubState {
            publisher: publisher && i == 0,
            ..SubState::default()
        };
        engine.connect(addr, state).map_err(|e| e.to_string())?;
        if i % 256 == 255 {
            while counts.opened.load(Ordering::Relaxed) < u64::from(i) / 2 {
                if Instant::now() > end {
                    return Err("dialing stalled".into());
                }
                std::thread::sleep(Duration::from_millis(1));
            }
        }
    }
    while counts.opened.load(Ordering::Relaxed) < u64::from(n) {
        if Instant::now() > end {
            return Err(format!(
                "{} of {n} opened",
                counts.opened.load(Ordering::Relaxed)
            ));
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    Ok(())
}

fn fanout_run(kind: &str, config: &Config) -> Result<Figures, String> {
    let mut server = Server::start(kind, "fanout")?;
    let counts = Arc::new(Counts::default());
    let engine = clients(&counts)?;
    dial_all(&engine, &counts, server.addr, config.subs, true)?;
    let publisher = counts.publisher.lock().unwrap().ok_or("no publisher")?;
    counts.running.store(true, Ordering::Relaxed);
    engine.wake(publisher).map_err(|e| e.to_string())?;
    std::thread::sleep(Duration::from_secs_f64(config.secs / 4.0));
    let (d0, t0, cpu0, allocs0) = (
        counts.delivered.load(Ordering::Relaxed),
        Instant::now(),
        server.cpu_ns(),
        server.allocs(),
    );
    std::thread::sleep(Duration::from_secs_f64(config.secs));
    let (d1, t1, cpu1, allocs1) = (
        counts.delivered.load(Ordering::Relaxed),
        Instant::now(),
        server.cpu_ns(),
        server.allocs(),
    );
    counts.running.store(false, Ordering::Relaxed);
    engine.stop();
    engine.join();
    server.quit();
    let n = (d1 - d0) as f64;
    let broken = counts.broken.load(Ordering::Relaxed);
    if broken > 0 || n == 0.0 {
        return Err(format!(
            "{broken} deliveries out of order or wrong, {n} delivered"
        ));
    }
    Ok(Figures {
        rate: n / (t1 - t0).as_secs_f64(),
        cpu_ns: (cpu1 - cpu0) / n,
        allocs: allocs0
            .zip(allocs1)
            .filter(|_| kind == "tether")
            .map(|(a, b)| (b - a) / n),
    })
}

fn idle_run(kind: &str, n: u32) -> Result<f64, String> {
    let server = Server::start(kind, "idle")?;
    let counts = Arc::new(Counts::default());
    let engine = clients(&counts)?;
    // A few connections first, so one-off growth (pools, tables) is not
    // charged to the per-connection figure.
    dial_all(&engine, &counts, server.addr, 64, false)?;
    std::thread::sleep(Duration::from_millis(300));
    let before = server.rss();
    counts.opened.store(0, Ordering::Relaxed);
    dial_all(&engine, &counts, server.addr, n, false)?;
    std::thread::sleep(Duration::from_millis(1000));
    let after = server.rss();
    engine.stop();
    engine.join();
    server.quit();
    Ok((after - before) / f64::from(n))
}

// ---- the server children ----

fn server_main(kind: &str, case: &str) -> ExitCode {
    let _ = sys::pin_to_cpu(SERVER_CPU);
    let _ = sys::raise_open_file_limit();
    let addr = match kind {
        "tether" => tether_server(case),
        "tungstenite" => tungstenite_server(case),
        _ => Err(format!("unknown server {kind}")),
    };
    let addr = match addr {
        Ok(a) => a,
        Err(e) => {
            eprintln!("ws bench server: {e}");
            return ExitCode::FAILURE;
        }
    };
    println!("listening on {addr}");
    let _ = std::io::stdout().flush();
    for line in std::io::stdin().lock().lines() {
        match line.as_deref() {
            Ok("allocs") => {
                println!("{}", alloc::allocations());
                let _ = std::io::stdout().flush();
            }
            Ok(_) => {}
            Err(_) => break,
        }
    }
    ExitCode::SUCCESS
}

/// The fan-out case's topic: every open connection is subscribed to it.
const ALL: &str = "all";

/// tether: echo, or every message from any connection published to the topic
/// every open connection subscribes to, framed once (one `Bytes` for all).
struct TetherServer {
    ws: Endpoint,
    fanout: bool,
}

impl EventHandler for TetherServer {
    type State = WsState;

    fn on_traffic(&mut self, conn: &mut Conn<'_, WsState>) -> Action {
        let fanout = self.fanout;
        self.ws.serve(conn, |ws, event| match event {
            Event::Open if fanout => {
                let _ = ws.conn().subscribe(ALL);
            }
            Event::Message(Message::Text(t)) => ws.send_text(t),
            Event::Message(Message::Binary(b)) if fanout => {
                // Framed once; every subscriber's queue holds the same Bytes.
                ws.conn().publish(ALL, server_frame(OpCode::Binary, b));
            }
            Event::Message(Message::Binary(b)) => ws.send_binary(b),
            _ => {}
        })
    }

    fn on_heartbeat(&mut self, conn: &mut Conn<'_, WsState>) -> Action {
        self.ws.heartbeat(conn)
    }

    fn on_timer(&mut self, conn: &mut Conn<'_, WsState>, key: u64) -> Action {
        self.ws.timer(conn, key)
    }
}

fn tether_server(case: &str) -> Result<SocketAddr, String> {
    let fanout = case == "fanout";
    let mut options = Options::default();
    options.loops = 1;
    if case == "idle" {
        options.heartbeat = Some(Duration::from_secs(30));
    }
    if fanout {
        // Keep every subscriber's emptied output queue for the next message.
        options.pool_max_idle = 8192;
    }
    let engine = Engine::builder(move |_| TetherServer {
        ws: Endpoint::default(),
        fanout,
    })
    .options(options)
    .listen("127.0.0.1:0")
    .start()
    .map_err(|e| e.to_string())?;
    let addr = engine.local_addrs()[0];
    // The engine serves until the process exits.
    std::mem::forget(engine);
    Ok(addr)
}

fn tungstenite_server(case: &str) -> Result<SocketAddr, String> {
    use futures_util::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::Message as TMsg;

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    let listener = runtime
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .map_err(|e| e.to_string())?;
    let addr = listener.local_addr().map_err(|e| e.to_string())?;
    let case = case.to_string();
    let (tx, _) = tokio::sync::broadcast::channel::<TMsg>(1024);
    std::thread::spawn(move || {
        runtime.block_on(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else { continue };
                let _ = stream.set_nodelay(true);
                let tx = tx.clone();
                let case = case.clone();
                tokio::spawn(async move {
                    let Ok(ws) = tokio_tungstenite::accept_async(stream).await else { return };
                    match case.as_str() {
                        "fanout" => {
                            let (mut sink, mut stream) = ws.split();
                            let mut rx = tx.subscribe();
                            tokio::spawn(async move {
                                loop {
                                    match rx.recv().await {
                                        Ok(m) => {
                                            if sink.send(m).await.is_err() {
                                                break;
                                            }
                                        }
                                        Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => continue,
                                        Err(_) => break,
                                    }
                                }
                            });
                            while let Some(Ok(m)) = stream.next().await {
                                if m.is_binary() {
                                    let _ = tx.send(m);
                                }
                            }
                        }
                        "idle" => {
                            let (mut sink, mut stream) = ws.split();
                            let mut beat = tokio::time::interval(Duration::from_secs(30));
                            beat.tick().await;
                            loop {
                                tokio::select! {
                                    m = stream.next() => match m {
                                        Some(Ok(m)) if m.is_text() || m.is_binary() => {
                                            if sink.send(m).await.is_err() { break; }
                                        }
                                        Some(Ok(_)) => {}
                                        _ => break,
                                    },
                                    _ = beat.tick() => {
                                        if sink.send(TMsg::Ping(Default::default())).await.is_err() { break; }
                                    }
                                }
                            }
                        }
                        _ => {
                            let (mut sink, mut stream) = ws.split();
                            while let Some(Ok(m)) = stream.next().await {
                                if (m.is_text() || m.is_binary()) && sink.send(m).await.is_err() {
                                    break;
                                }
                            }
                        }
                    }
                });
            }
        });
    });
    Ok(addr)
}
