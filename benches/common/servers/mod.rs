//! The server side: the child process entry point and the servers compared.
//!
//! Each server runs in its own child process (this bench binary, re-executed with
//! `--server`), so that its CPU time, allocations and memory are its own. The child
//! binds, prints `listening on ADDR`, then obeys lines on stdin: `stats` prints
//! `allocs N`, `cpu` prints `cpu NANOS` (its own CPU time, user + system, from
//! `CLOCK_PROCESS_CPUTIME_ID`: nanosecond resolution where `/proc` counts 10 ms
//! ticks), and `quit` or the end of stdin stops it.
//!
//! The same kinds serve TCP echo (the echo bench) and UDP echo (`--udp`, the udp
//! bench); `tether-idle` is TCP only and `tether-batch` UDP only.

mod mio_echo;
mod mio_udp;
mod tether_echo;
mod tether_udp;
mod tokio_echo;
mod tokio_udp;

#[allow(unused_imports)] // used by some of the bench binaries only
pub use tether_echo::Echo;

use std::fmt;
use std::io::{self, BufRead};
use std::net::SocketAddr;
use std::process::ExitCode;

use super::alloc;
use super::sys;
use super::wire::Proto;

/// Line prefixes of the parent–child protocol.
pub const LISTENING: &str = "listening on ";
pub const ALLOCS: &str = "allocs ";
pub const CPU: &str = "cpu ";

/// The CPU the server child runs on; the load generator takes CPU 0.
const SERVER_CPU: usize = 1;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ServerKind {
    /// The hand-written mio loop: the practical limit.
    Mio,
    /// Idiomatic tokio: what most Rust users would pick instead.
    Tokio,
    /// The framework under test.
    Tether,
    /// tether with `Options::idle_timeout` = 60 s: one armed timer-wheel entry per
    /// connection (TCP only).
    TetherIdle,
    /// tether with `Options::udp_batch` = 32: `recvmmsg`/`sendmmsg` (UDP only).
    TetherBatch,
}

impl ServerKind {
    pub fn parse(name: &str) -> Option<ServerKind> {
        match name {
            "mio" => Some(ServerKind::Mio),
            "tokio" => Some(ServerKind::Tokio),
            "tether" => Some(ServerKind::Tether),
            "tether-idle" => Some(ServerKind::TetherIdle),
            "tether-batch" => Some(ServerKind::TetherBatch),
            _ => None,
        }
    }

    /// The server this one is a variant of, compared side by side in the reports.
    pub fn base(self) -> Option<ServerKind> {
        match self {
            ServerKind::TetherIdle | ServerKind::TetherBatch => Some(ServerKind::Tether),
            _ => None,
        }
    }

    /// Whether this kind serves TCP echo (`udp == false`) or UDP echo.
    pub fn serves(self, udp: bool) -> bool {
        match self {
            ServerKind::TetherIdle => !udp,
            ServerKind::TetherBatch => udp,
            _ => true,
        }
    }
}

impl fmt::Display for ServerKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ServerKind::Mio => "mio",
            ServerKind::Tokio => "tokio",
            ServerKind::Tether => "tether",
            ServerKind::TetherIdle => "tether-idle",
            ServerKind::TetherBatch => "tether-batch",
        })
    }
}

/// Parses a comma-separated server list, keeping only kinds that serve `udp`.
pub fn parse_list(list: &str, udp: bool) -> Result<Vec<ServerKind>, String> {
    list.split(',')
        .map(|s| {
            let kind =
                ServerKind::parse(s.trim()).ok_or_else(|| format!("unknown server {s:?}"))?;
            if kind.serves(udp) {
                Ok(kind)
            } else {
                Err(format!(
                    "{kind} does not serve {}",
                    if udp { "UDP" } else { "TCP" }
                ))
            }
        })
        .collect()
}

/// What the child is told on its command line.
#[derive(Debug)]
pub struct ServerArgs {
    pub kind: ServerKind,
    pub proto: Proto,
    /// UDP echo instead of TCP echo.
    pub udp: bool,
    pub addr: SocketAddr,
    pub loops: usize,
}

/// A started server: where it listens, and how to stop it.
struct Running {
    addr: SocketAddr,
    stop: Box<dyn FnOnce()>,
}

/// Entry point of a server child.
pub fn child_main(args: &ServerArgs) -> ExitCode {
    if let Err(e) = sys::raise_open_file_limit().and_then(|_| sys::pin_to_cpu(SERVER_CPU)) {
        eprintln!("{} server: {e}", args.kind);
        return ExitCode::FAILURE;
    }
    let started = match (args.udp, args.kind) {
        (false, ServerKind::Mio) => mio_echo::start(args.proto, args.addr),
        (false, ServerKind::Tokio) => tokio_echo::start(args.proto, args.addr, args.loops),
        (false, ServerKind::Tether) => tether_echo::start(args.proto, args.addr, args.loops, false),
        (false, ServerKind::TetherIdle) => {
            tether_echo::start(args.proto, args.addr, args.loops, true)
        }
        (true, ServerKind::Mio) => mio_udp::start(args.addr),
        (true, ServerKind::Tokio) => tokio_udp::start(args.addr, args.loops),
        (true, ServerKind::Tether) => tether_udp::start(args.addr, args.loops, 1),
        (true, ServerKind::TetherBatch) => tether_udp::start(args.addr, args.loops, 32),
        (udp, kind) => Err(io::Error::other(format!(
            "{kind} does not serve {}",
            if udp { "UDP" } else { "TCP" }
        ))),
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
            Ok("quit") | Err(_) => break,
            Ok(other) => eprintln!("{} server: unknown command {other:?}", args.kind),
        }
    }
    (running.stop)();
    ExitCode::SUCCESS
}
