//! The server side: the child process entry point and the echo servers compared.
//!
//! Each server runs in its own child process (this bench binary, re-executed with
//! `--server`), so that its CPU time, allocations and memory are its own. The child
//! binds, prints `listening on ADDR`, then obeys lines on stdin: `stats` prints
//! `allocs N`, and `quit` or the end of stdin stops it.

mod mio_echo;
mod tether_echo;
mod tokio_echo;

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
}

impl ServerKind {
    pub fn parse(name: &str) -> Option<ServerKind> {
        match name {
            "mio" => Some(ServerKind::Mio),
            "tokio" => Some(ServerKind::Tokio),
            "tether" => Some(ServerKind::Tether),
            _ => None,
        }
    }
}

impl fmt::Display for ServerKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ServerKind::Mio => "mio",
            ServerKind::Tokio => "tokio",
            ServerKind::Tether => "tether",
        })
    }
}

/// What the child is told on its command line.
#[derive(Debug)]
pub struct ServerArgs {
    pub kind: ServerKind,
    pub proto: Proto,
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
    let started = match args.kind {
        // The reference loop is single-threaded by definition.
        ServerKind::Mio => mio_echo::start(args.proto, args.addr),
        ServerKind::Tokio => tokio_echo::start(args.proto, args.addr, args.loops),
        ServerKind::Tether => tether_echo::start(args.proto, args.addr, args.loops),
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
            Ok("quit") | Err(_) => break,
            Ok(other) => eprintln!("{} server: unknown command {other:?}", args.kind),
        }
    }
    (running.stop)();
    ExitCode::SUCCESS
}
