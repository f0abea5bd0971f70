//! An echo server: every byte received is sent back.
//!
//! ```text
//! cargo run --release --example echo -- --addr 127.0.0.1:9000 --loops 2
//! ```
//!
//! Flags: `--addr ADDR` (default `127.0.0.1:9000`; `host:port`,
//! `tcp://host:port`, `udp://host:port` to echo datagrams, or
//! `unix:///path/to/socket`), `--loops N` (default: cores), `--reuseport on|off`,
//! `--lb round-robin|least-conn|source-hash`, `--idle-timeout-ms MS` (close
//! connections idle that long; 0 = off, the default). Prints `listening on <addr>` once it
//! accepts; stops gracefully on SIGINT or SIGTERM. Logging: `RUST_LOG=debug`.

mod common;

use std::io::Write;
use std::process::ExitCode;

use tether::net::ListenAddr;
use tether::{Action, CloseReason, Conn, Datagram, Engine, EventHandler, LoadBalancer, Options};

struct Echo;

impl EventHandler for Echo {
    type State = ();

    fn on_open(&mut self, conn: &mut Conn<'_, ()>) -> Action {
        log::debug!("{} opened from {:?}", conn.id(), conn.peer_addr());
        Action::Continue
    }

    fn on_traffic(&mut self, conn: &mut Conn<'_, ()>) -> Action {
        let data = conn.read_buf();
        conn.write(data);
        conn.consume(data.len());
        Action::Continue
    }

    fn on_close(&mut self, conn: &mut Conn<'_, ()>, reason: &CloseReason) {
        log::debug!("{} closed: {reason}", conn.id());
    }

    fn on_datagram(&mut self, dgram: &mut Datagram<'_>) -> Action {
        if let Err(e) = dgram.reply(dgram.data()) {
            log::debug!("reply to {} dropped: {e}", dgram.peer());
        }
        Action::Continue
    }
}

struct Args {
    addr: String,
    options: Options,
}

fn parse_args() -> Result<Args, String> {
    let mut addr = "127.0.0.1:9000".to_string();
    let mut options = Options::default();
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let mut value = || args.next().ok_or(format!("{flag} needs a value"));
        match flag.as_str() {
            "--addr" => addr = value()?,
            "--loops" => {
                options.loops = value()?
                    .parse()
                    .map_err(|_| "--loops needs a positive number".to_string())?
            }
            "--reuseport" => {
                options.reuse_port = match value()?.as_str() {
                    "on" => true,
                    "off" => false,
                    other => return Err(format!("--reuseport takes on|off, not {other}")),
                }
            }
            "--idle-timeout-ms" => {
                let ms: u64 = value()?
                    .parse()
                    .map_err(|_| "--idle-timeout-ms needs a number of milliseconds".to_string())?;
                options.idle_timeout = (ms > 0).then(|| std::time::Duration::from_millis(ms));
            }
            "--lb" => {
                let v = value()?;
                options.load_balancer = LoadBalancer::parse(&v).ok_or(format!(
                    "--lb takes round-robin|least-conn|source-hash, not {v}"
                ))?;
            }
            "-h" | "--help" => {
                println!(
                    "usage: echo [--addr ADDR] [--loops N] [--reuseport on|off] \
                     [--lb round-robin|least-conn|source-hash] [--idle-timeout-ms MS]"
                );
                std::process::exit(0);
            }
            other => return Err(format!("unknown flag {other}")),
        }
    }
    Ok(Args { addr, options })
}

fn main() -> ExitCode {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("echo: {e}");
            return ExitCode::from(2);
        }
    };
    // Before anything is announced: a signal right after the first output line
    // must find its handler installed.
    let mut signals = match common::shutdown_signals("echo") {
        Ok(s) => s,
        Err(code) => return code,
    };
    let engine = match Engine::builder(|_loop| Echo)
        .options(args.options)
        .listen(args.addr)
        .start()
    {
        Ok(engine) => engine,
        Err(e) => {
            eprintln!("echo: {e}");
            return ExitCode::FAILURE;
        }
    };
    let mut stdout = std::io::stdout();
    // TCP prints a bare `host:port`, the form scripts and load generators take.
    let shown = match &engine.listen_addrs()[0] {
        ListenAddr::Tcp(addr) => addr.to_string(),
        other => other.to_string(),
    };
    let _ = writeln!(stdout, "listening on {shown}");
    let _ = stdout.flush();
    if let Some(sig) = signals.forever().next() {
        log::info!("signal {sig}: stopping");
    }
    engine.stop();
    ExitCode::SUCCESS
}
