//! The server side: the child process entry point and the servers compared.
//!
//! Each server runs in its own child process (this bench binary, re-executed with
//! `--server`), pinned to CPU 1, so that its CPU time, allocations, payload copies
//! and syscalls are its own. The child binds, prints `listening on ADDR`, then obeys
//! lines on stdin: `stats` prints `allocs N`, `cpu` prints `cpu NANOS` (its own CPU
//! time, user + system), `copies` prints `copies N` (payload copies so far), and
//! `quit` or the end of stdin stops it.

mod mio_fanout;
mod tether_fanout;
mod tether_ticker;
mod tokio_fanout;
mod tokio_ticker;

use std::fmt;
use std::io::{self, BufRead};
use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::{alloc, sys};

/// Line prefixes of the parent–child protocol.
pub const LISTENING: &str = "listening on ";
pub const ALLOCS: &str = "allocs ";
pub const CPU: &str = "cpu ";
pub const COPIES: &str = "copies ";

/// The CPU the server child runs on; the load client takes CPU 0.
const SERVER_CPU: usize = 1;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ServerKind {
    /// The idiomatic tokio server.
    Tokio,
    /// The hand-written mio fan-out loop: the practical limit.
    Mio,
    /// tether through its topics, one publish per read.
    Tether,
    /// tether through its topics, one publish per message.
    TetherPerMessage,
    /// tokio's `interval` pushing to every member through a broadcast channel.
    TokioTicker,
    /// tether's fixed-rate `on_tick` pushing to every connection of its loop.
    TetherTicker,
}

impl ServerKind {
    pub const ALL: [ServerKind; 6] = [
        ServerKind::Tokio,
        ServerKind::Mio,
        ServerKind::Tether,
        ServerKind::TetherPerMessage,
        ServerKind::TokioTicker,
        ServerKind::TetherTicker,
    ];
    /// The servers of the fan-out cases, in the order they run.
    pub const FANOUT: [ServerKind; 4] = [
        ServerKind::Tokio,
        ServerKind::Mio,
        ServerKind::Tether,
        ServerKind::TetherPerMessage,
    ];
    /// The servers of the ticker case.
    pub const TICKER: [ServerKind; 2] = [ServerKind::TokioTicker, ServerKind::TetherTicker];

    pub fn parse(name: &str) -> Option<ServerKind> {
        ServerKind::ALL.into_iter().find(|k| k.to_string() == name)
    }
}

impl fmt::Display for ServerKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ServerKind::Tokio => "tokio",
            ServerKind::Mio => "mio",
            ServerKind::Tether => "tether",
            ServerKind::TetherPerMessage => "tether-per-message",
            ServerKind::TokioTicker => "tokio-ticker",
            ServerKind::TetherTicker => "tether-ticker",
        })
    }
}

/// What the child is told on its command line.
#[derive(Debug)]
pub struct ServerArgs {
    pub kind: ServerKind,
    pub addr: SocketAddr,
    pub loops: usize,
}

/// A started server: where it listens, how to read its payload copies, and how to
/// stop it.
pub(crate) struct Running {
    addr: SocketAddr,
    stop: Box<dyn FnOnce()>,
    copies: Box<dyn Fn() -> u64>,
}

/// Starts a tether server with `loops` loops on `addr`; its payload copies are
/// the engine's own count plus what the handler counted itself.
fn start_tether<H: tether::EventHandler>(
    addr: SocketAddr,
    loops: usize,
    factory: impl Fn(usize) -> H + Send + Sync + 'static,
) -> io::Result<Running> {
    let mut options = tether::Options::default();
    options.loops = loops.max(1);
    options.backlog = 4096;
    // Every member's emptied output queue is kept for the next pass: with the
    // default 1,024 spare queues a loop of 4,000 members would allocate again.
    options.pool_max_idle = 8192;
    let engine = tether::Engine::builder(factory)
        .options(options)
        .listen(addr.to_string())
        .start()
        .map_err(io::Error::other)?;
    let stats = engine.clone();
    Ok(Running {
        addr: engine.local_addrs()[0],
        stop: Box::new(move || engine.stop()),
        copies: Box::new(move || stats.stats().total.copies + copies()),
    })
}

/// Payload copies the hand-written servers made (each counts its own).
static COPIES_MADE: AtomicU64 = AtomicU64::new(0);

fn count_copies(n: u64) {
    COPIES_MADE.fetch_add(n, Ordering::Relaxed);
}

fn copies() -> u64 {
    COPIES_MADE.load(Ordering::Relaxed)
}

/// Entry point of a server child.
pub fn child_main(args: &ServerArgs) -> ExitCode {
    if let Err(e) = sys::raise_open_file_limit().and_then(|_| sys::pin_to_cpu(SERVER_CPU)) {
        eprintln!("{} server: {e}", args.kind);
        return ExitCode::FAILURE;
    }
    let started = match args.kind {
        ServerKind::Tokio => tokio_fanout::start(args.addr, args.loops),
        ServerKind::Mio => mio_fanout::start(args.addr, args.loops),
        ServerKind::Tether => tether_fanout::start(args.addr, args.loops, false),
        ServerKind::TetherPerMessage => tether_fanout::start(args.addr, args.loops, true),
        ServerKind::TokioTicker => tokio_ticker::start(args.addr, args.loops),
        ServerKind::TetherTicker => tether_ticker::start(args.addr, args.loops),
    };
    let running = match started {
        Ok(running) => running,
        Err(e) => {
            eprintln!("{} server: cannot start: {e}", args.kind);
            return ExitCode::FAILURE;
        }
    };
    println!("{LISTENING}{}", running.addr);
    for line in io::stdin().lock().lines() {
        match line.as_deref() {
            Ok("stats") => println!("{ALLOCS}{}", alloc::allocations()),
            Ok("cpu") => println!("{CPU}{}", sys::process_cpu_nanos()),
            Ok("copies") => println!("{COPIES}{}", (running.copies)()),
            Ok("quit") | Err(_) => break,
            Ok(other) => eprintln!("{} server: unknown command {other:?}", args.kind),
        }
    }
    (running.stop)();
    ExitCode::SUCCESS
}

/// The ticker case's rate: 60 Hz, a period that is not a whole number of
/// milliseconds.
const TICK_PERIOD: std::time::Duration = std::time::Duration::from_nanos(16_666_667);
/// Bytes of each ticker message.
pub const TICK_SIZE: usize = 200;
