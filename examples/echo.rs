//! An echo server: every byte received is sent back.
//!
//! ```text
//! cargo run --release --example echo -- --addr 127.0.0.1:9000 --loops 2
//! ```
//!
//! Flags: `--addr ADDR` (default `127.0.0.1:9000`; `host:port`,
//! `tcp://host:port`, `udp://host:port` to echo datagrams,
//! `unix:///path/to/socket`, or `tls://host:port` with `--tls-cert PEM
//! --tls-key PEM`, which need `--features tls`), `--loops N` (default: cores), `--reuseport on|off`,
//! `--lb round-robin|least-conn|source-hash`, `--idle-timeout-ms MS` (close
//! connections idle that long; 0 = off, the default), `--frame-timeout-ms MS`
//! (close a connection whose unread input is held that long; 0 = off, the
//! default: echo consumes everything at once), `--max-connections N` (default
//! 10000; 0 = unlimited), `--memory-budget-mb MB` (buffer memory all
//! connections may hold together; past it the largest holders are shed;
//! default 256, 0 = none), `--busy-poll-us N` (low-latency mode: poll without
//! blocking for N µs after each burst of events; 0 = off, the default). Prints
//! `listening on <addr>` once it accepts; stops
//! gracefully on SIGINT or SIGTERM. `--help` prints the usage; a usage error
//! exits with status 2. Logging: `RUST_LOG=debug`.

mod common;

use std::process::ExitCode;

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

const USAGE: &str = "[--addr ADDR] [--loops N] [--reuseport on|off] \
     [--lb round-robin|least-conn|source-hash] [--idle-timeout-ms MS] \
     [--frame-timeout-ms MS] [--max-connections N] [--memory-budget-mb MB] \
     [--busy-poll-us N] [--tls-cert PEM --tls-key PEM]";

struct Args {
    addr: String,
    options: Options,
    tls: Option<common::tls::ServerConfig>,
}

fn parse_args(cli: &mut common::Cli) -> Result<Args, common::Usage> {
    let mut addr = "127.0.0.1:9000".to_string();
    let mut options = Options::default();
    let mut tls = common::tls::TlsFlags::default();
    let mut limits = common::ServerLimits {
        frame_timeout: None,
        idle_timeout: None,
        max_connections: 10_000,
        memory_budget: Some(256 * 1024 * 1024),
    };
    while let Some(flag) = cli.flag() {
        match flag.as_str() {
            "--addr" => addr = common::tls::address(&flag, cli.value(&flag)?, |_| Ok(()))?,
            "--loops" => options.loops = cli.number(&flag, 1..=1024)?,
            "--reuseport" => {
                options.reuse_port = match cli.value(&flag)?.as_str() {
                    "on" => true,
                    "off" => false,
                    other => {
                        return Err(format!(
                            "--reuseport takes on|off, not {}",
                            common::shown(other)
                        )
                        .into());
                    }
                }
            }
            "--lb" => {
                let v = cli.value(&flag)?;
                options.load_balancer = LoadBalancer::parse(&v).ok_or(format!(
                    "--lb takes round-robin|least-conn|source-hash, not {}",
                    common::shown(&v)
                ))?;
            }
            "--busy-poll-us" => {
                let us = cli.number(&flag, 0..=1_000_000u64)?;
                options.busy_poll = (us > 0).then(|| std::time::Duration::from_micros(us));
            }
            other => {
                if !limits.flag(cli, other)? && !tls.flag(cli, other)? {
                    return Err(cli.unknown(other));
                }
            }
        }
    }
    limits.apply(&mut options);
    if tls.given() != addr.starts_with("tls://") {
        return Err("--tls-cert and --tls-key go with a tls:// --addr".into());
    }
    let tls = tls.config(&[])?;
    Ok(Args { addr, options, tls })
}

fn main() -> ExitCode {
    let (args, signals) = match common::start("echo", USAGE, "info", parse_args) {
        Ok(started) => started,
        Err(code) => return code,
    };
    let builder = Engine::builder(|_loop| Echo)
        .options(args.options)
        .listen(args.addr);
    #[cfg(feature = "tls")]
    let builder = match args.tls {
        Some(cfg) => builder.tls_config(cfg),
        None => builder,
    };
    #[cfg(not(feature = "tls"))]
    let _ = args.tls;
    common::serve_until_signal("echo", builder.start(), signals)
}
