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
//! frame; the frame that comes back is the pong. The link is considered dead and
//! redialed when it stays silent for three intervals, when a ping is not
//! answered within the pong timeout (whatever else the server sends), or when
//! a partial frame is held that long (a server trickling bytes).
//!
//! Flags: `--addr ADDR` (default `127.0.0.1:9001`, TCP), `--initial-backoff-ms MS`
//! (default 1000), `--max-backoff-ms MS` (default 30000), `--heartbeat-ms MS`
//! (default 1000), `--pong-timeout-ms MS` (default three heartbeats). Prints one
//! line per event, flushed at once: `connected <addr>`, `disconnected <reason>`,
//! `reconnecting in <ms>ms (attempt <n>)`, `pong <rtt_us>us`,
//! `pong timeout after <ms>ms`. Retries forever; exits cleanly on SIGINT or
//! SIGTERM. `--help` prints the usage; a usage error exits with status 2.

mod common;

use std::io::Write;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use tether::client::backoff::{BackoffPolicy, Jitter};
use tether::codec::LengthPrefixed;
use tether::net::ListenAddr;
use tether::{
    Action, CloseReason, Conn, ConnectFailure, ConnectOptions, Engine, EventHandler, LoopCtx,
    Options, Redial, decode_frames, write_frame,
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

/// The largest frame the client takes: pongs are 8 bytes, anything much larger
/// is not an answer.
const MAX_FRAME: usize = 64 * 1024;

struct Pinger {
    codec: LengthPrefixed,
    /// A ping unanswered this long marks the link dead.
    pong_timeout: Duration,
}

impl EventHandler for Pinger {
    type State = Link;

    fn on_open(&mut self, conn: &mut Conn<'_, Link>) -> Action {
        match conn.peer_addr() {
            Ok(addr) => say(format_args!("connected {addr}")),
            Err(_) => say(format_args!("connected")),
        }
        self.on_heartbeat(conn)
    }

    fn on_traffic(&mut self, conn: &mut Conn<'_, Link>) -> Action {
        decode_frames(conn, &mut self.codec, |conn, frame| {
            let link = conn.state_mut();
            if let Some((seq, sent)) = link.ping {
                if frame == seq.to_be_bytes() {
                    link.ping = None;
                    say(format_args!("pong {}us", sent.elapsed().as_micros()));
                }
            }
            Action::Continue
        })
    }

    fn on_heartbeat(&mut self, conn: &mut Conn<'_, Link>) -> Action {
        let link = conn.state_mut();
        if let Some((_, sent)) = link.ping {
            // One ping in flight at a time; an unanswered one past its deadline
            // means the link is dead, whatever else the server keeps sending.
            if sent.elapsed() >= self.pong_timeout {
                say(format_args!(
                    "pong timeout after {}ms",
                    sent.elapsed().as_millis()
                ));
                return Action::Close;
            }
            return Action::Continue;
        }
        link.seq += 1;
        let seq = link.seq;
        link.ping = Some((seq, Instant::now()));
        match write_frame(conn, &self.codec, &seq.to_be_bytes()) {
            Ok(()) => Action::Continue,
            Err(_) => Action::Close,
        }
    }

    fn on_close(&mut self, conn: &mut Conn<'_, Link>, reason: &CloseReason) {
        conn.state_mut().ping = None;
        say(format_args!("disconnected {reason}"));
    }

    fn on_connect_failed(
        &mut self,
        _ctx: &mut LoopCtx<'_, Self::State>,
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

    fn on_reconnecting(
        &mut self,
        _ctx: &mut LoopCtx<'_, Self::State>,
        redial: &Redial,
        _link: &mut Link,
    ) {
        say(format_args!(
            "reconnecting in {}ms (attempt {})",
            redial.delay.as_millis(),
            redial.attempt
        ));
    }
}

const USAGE: &str = "[--addr ADDR] [--initial-backoff-ms MS] [--max-backoff-ms MS] \
                     [--heartbeat-ms MS] [--pong-timeout-ms MS]";

struct Args {
    addr: SocketAddr,
    initial: Duration,
    max: Duration,
    heartbeat: Duration,
    pong_timeout: Option<Duration>,
}

fn parse_args(cli: &mut common::Cli) -> Result<Args, common::Usage> {
    let mut a = Args {
        addr: "127.0.0.1:9001".parse().expect("a valid default"),
        initial: Duration::from_millis(1000),
        max: Duration::from_millis(30_000),
        heartbeat: Duration::from_millis(1000),
        pong_timeout: None,
    };
    while let Some(flag) = cli.flag() {
        match flag.as_str() {
            "--addr" => {
                let v = common::address(&flag, cli.value(&flag)?, |a| match a {
                    ListenAddr::Tcp(_) => Ok(()),
                    _ => Err("client dials TCP addresses"),
                })?;
                match ListenAddr::parse(&v) {
                    Ok(ListenAddr::Tcp(addr)) => a.addr = addr,
                    _ => {
                        return Err(
                            format!("{flag} {}: not a TCP address", common::shown(&v)).into()
                        );
                    }
                }
            }
            "--initial-backoff-ms" => a.initial = cli.positive_millis(&flag)?,
            "--max-backoff-ms" => a.max = cli.positive_millis(&flag)?,
            "--heartbeat-ms" => a.heartbeat = cli.positive_millis(&flag)?,
            "--pong-timeout-ms" => a.pong_timeout = Some(cli.positive_millis(&flag)?),
            other => return Err(cli.unknown(other)),
        }
    }
    Ok(a)
}

fn main() -> ExitCode {
    let (args, mut signals) = match common::start("client", USAGE, "warn", parse_args) {
        Ok(started) => started,
        Err(code) => return code,
    };
    let heartbeat = args.heartbeat;
    let pong_timeout = args.pong_timeout.unwrap_or(heartbeat.saturating_mul(3));
    let mut options = Options::default();
    options.loops = 1;
    options.heartbeat = Some(heartbeat);
    // Silence for three intervals: the link is dead even if TCP has not noticed.
    options.read_idle_timeout = Some(heartbeat.saturating_mul(3));
    // A server that trickles a frame byte by byte keeps the link "active"
    // forever; holding a partial frame that long ends it too.
    options.frame_timeout = Some(pong_timeout);
    let codec = match LengthPrefixed::builder().max_frame_len(MAX_FRAME).build() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("client: {e}");
            return ExitCode::FAILURE;
        }
    };
    let engine = match Engine::builder(move |_| Pinger {
        codec: codec.clone(),
        pong_timeout,
    })
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
        .with_initial(args.initial)
        .with_max_delay(args.max.max(args.initial))
        .with_jitter(Jitter::None)
        .with_max_attempts(None);
    let connect = ConnectOptions::default()
        .timeout(Duration::from_secs(5))
        .reconnect(policy);
    if let Err(e) = engine.connect_with(args.addr, Link::default(), connect) {
        eprintln!("client: {e}");
        return ExitCode::FAILURE;
    }
    let _ = signals.forever().next();
    engine.stop();
    ExitCode::SUCCESS
}
