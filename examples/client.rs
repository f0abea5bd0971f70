//! A long-lived client: dials, keeps the link warm with heartbeats, and
//! reconnects with exponential backoff whenever it is lost.
//!
//! ```text
//! cargo run --release --example frame_echo &
//! cargo run --release --example client -- --addr 127.0.0.1:9001 --heartbeat-ms 1000
//! ```
//!
//! Speaks 4-byte big-endian length-prefixed frames (`frame_echo` answers them,
//! and so does any byte echo server). Every heartbeat interval it sends a ping
//! frame; the frame that comes back is the pong. A link that stays silent for
//! three intervals is considered dead and redialed.
//!
//! Flags: `--addr ADDR` (default `127.0.0.1:9001`), `--initial-backoff-ms MS`
//! (default 1000), `--max-backoff-ms MS` (default 30000), `--heartbeat-ms MS`
//! (default 1000). Prints one line per event, flushed at once:
//! `connected <addr>`, `disconnected <reason>`,
//! `reconnecting in <ms>ms (attempt <n>)`, `pong <rtt_us>us`. Retries forever;
//! exits cleanly on SIGINT or SIGTERM.

mod common;

use std::io::Write;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use tether::client::backoff::{BackoffPolicy, Jitter};
use tether::codec::LengthPrefixed;
use tether::{
    Action, CloseReason, ConnectFailure, ConnectOptions, Engine, FrameConn, FrameHandler, Framed,
    LoopCtx, Options, Redial,
};

/// One line on stdout, flushed: scripts read these as they happen.
fn say(line: std::fmt::Arguments<'_>) {
    let mut out = std::io::stdout().lock();
    let _ = out.write_fmt(line);
    let _ = out.write_all(b"\n");
    let _ = out.flush();
}

#[derive(Default)]
struct Link {
    /// When the outstanding ping left, and its sequence number.
    ping: Option<(u64, Instant)>,
    seq: u64,
}

struct Pinger;

impl FrameHandler for Pinger {
    type State = Link;
    type Codec = LengthPrefixed;

    fn on_open(&mut self, conn: &mut FrameConn<'_, '_, Link, LengthPrefixed>) -> Action {
        match conn.peer_addr() {
            Ok(addr) => say(format_args!("connected {addr}")),
            Err(_) => say(format_args!("connected")),
        }
        self.on_heartbeat(conn)
    }

    fn on_frame(
        &mut self,
        conn: &mut FrameConn<'_, '_, Link, LengthPrefixed>,
        frame: &[u8],
    ) -> Action {
        let link = conn.state_mut();
        if let Some((seq, sent)) = link.ping {
            if frame == seq.to_be_bytes() {
                link.ping = None;
                say(format_args!("pong {}us", sent.elapsed().as_micros()));
            }
        }
        Action::Continue
    }

    fn on_heartbeat(&mut self, conn: &mut FrameConn<'_, '_, Link, LengthPrefixed>) -> Action {
        let link = conn.state_mut();
        link.seq += 1;
        let seq = link.seq;
        link.ping = Some((seq, Instant::now()));
        match conn.write_frame(&seq.to_be_bytes()) {
            Ok(()) => Action::Continue,
            Err(_) => Action::Close,
        }
    }

    fn on_close(
        &mut self,
        conn: &mut FrameConn<'_, '_, Link, LengthPrefixed>,
        reason: &CloseReason,
    ) {
        conn.state_mut().ping = None;
        say(format_args!("disconnected {reason}"));
    }

    fn on_connect_failed(
        &mut self,
        _ctx: &mut LoopCtx<'_>,
        failure: &ConnectFailure,
        _link: &mut Link,
    ) {
        log::info!("connect to {} failed: {}", failure.addr, failure.error);
        if let Some(delay) = failure.retry_in {
            say(format_args!(
                "reconnecting in {}ms (attempt {})",
                delay.as_millis(),
                failure.attempt
            ));
        }
    }

    fn on_reconnecting(&mut self, _ctx: &mut LoopCtx<'_>, redial: &Redial, _link: &mut Link) {
        say(format_args!(
            "reconnecting in {}ms (attempt {})",
            redial.delay.as_millis(),
            redial.attempt
        ));
    }
}

struct Args {
    addr: SocketAddr,
    initial: u64,
    max: u64,
    heartbeat: u64,
}

fn parse_args() -> Result<Args, String> {
    let mut a = Args {
        addr: "127.0.0.1:9001".parse().expect("a valid default"),
        initial: 1000,
        max: 30_000,
        heartbeat: 1000,
    };
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let value = args.next().ok_or(format!("{flag} needs a value"))?;
        let ms = || {
            value
                .parse::<u64>()
                .map_err(|_| format!("{flag} needs a number"))
        };
        match flag.as_str() {
            "--addr" => {
                a.addr = match tether::net::ListenAddr::parse(&value).map_err(|e| e.to_string())? {
                    tether::net::ListenAddr::Tcp(addr) => addr,
                    other => return Err(format!("client dials TCP addresses, not {other}")),
                };
            }
            "--initial-backoff-ms" => a.initial = ms()?.max(1),
            "--max-backoff-ms" => a.max = ms()?.max(1),
            "--heartbeat-ms" => a.heartbeat = ms()?.max(1),
            _ => {
                return Err("usage: client [--addr ADDR] [--initial-backoff-ms MS] \
                            [--max-backoff-ms MS] [--heartbeat-ms MS]"
                    .into());
            }
        }
    }
    Ok(a)
}

fn main() -> ExitCode {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("warn")).init();
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("client: {e}");
            return ExitCode::from(2);
        }
    };
    // Before anything is announced: a signal right after the first output line
    // must find its handler installed.
    let mut signals = match common::shutdown_signals("client") {
        Ok(s) => s,
        Err(code) => return code,
    };
    let heartbeat = Duration::from_millis(args.heartbeat);
    let mut options = Options::default();
    options.loops = 1;
    options.heartbeat = Some(heartbeat);
    // Three missed pongs in a row: the link is dead even if TCP has not noticed.
    options.read_idle_timeout = Some(heartbeat * 3);
    let engine = match Engine::builder(|_| Framed::new(LengthPrefixed::new(), Pinger))
        .options(options)
        .start()
    {
        Ok(e) => e,
        Err(e) => {
            eprintln!("client: {e}");
            return ExitCode::FAILURE;
        }
    };
    let policy = BackoffPolicy::default()
        .with_initial(Duration::from_millis(args.initial))
        .with_max_delay(Duration::from_millis(args.max.max(args.initial)))
        .with_jitter(Jitter::None)
        .with_max_attempts(None);
    let connect = ConnectOptions::default()
        .timeout(Duration::from_secs(5))
        .reconnect(policy);
    if let Err(e) = engine.connect_with(
        args.addr,
        tether::FramedState::<Link, LengthPrefixed>::new(Link::default()),
        connect,
    ) {
        eprintln!("client: {e}");
        return ExitCode::FAILURE;
    }
    let _ = signals.forever().next();
    engine.stop();
    ExitCode::SUCCESS
}
