//! Heartbeats and idle timeouts, both ends in one process.
//!
//! ```text
//! cargo run --release --example heartbeat -- --idle-timeout-ms 1000 --heartbeat-ms 300 --pings 5
//! ```
//!
//! The server closes connections that stay silent for `--idle-timeout-ms`. The
//! client sends a ping every `--heartbeat-ms` of silence, which keeps its link
//! open; after `--pings N` pings (0 = never) it stops, the server drops it as
//! idle, and the client reconnects and starts over. One line per event, e.g.
//! `server: open conn#0.0.0`, `client: ping 3`, `client: pong 3 (41us)`,
//! `server: closed conn#0.0.0 (idle timeout)`. Runs until SIGINT or SIGTERM.
//!
//! Flags: `--addr ADDR` (default `127.0.0.1:9002`; TCP or `unix:///path`),
//! `--idle-timeout-ms MS` (default 1000), `--heartbeat-ms MS` (default 300),
//! `--pings N` (default 5). `--help` prints the usage; a usage error (an
//! unknown flag too) exits with status 2.

mod common;

use std::io::Write;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use tether::client::backoff::{BackoffPolicy, Jitter};
use tether::net::ListenAddr;
use tether::{Action, CloseReason, Conn, ConnectOptions, Engine, EventHandler, Options, Redial};

fn say(line: std::fmt::Arguments<'_>) {
    let mut out = std::io::stdout().lock();
    let _ = out.write_fmt(line);
    let _ = out.write_all(b"\n");
    let _ = out.flush();
}

/// Echoes pings; its idle timeout comes from the engine options.
struct Server;

impl EventHandler for Server {
    type State = ();

    fn on_open(&mut self, conn: &mut Conn<'_, ()>) -> Action {
        say(format_args!("server: open {}", conn.id()));
        Action::Continue
    }

    fn on_traffic(&mut self, conn: &mut Conn<'_, ()>) -> Action {
        let data = conn.read_buf();
        conn.write(data);
        conn.consume(data.len());
        Action::Continue
    }

    fn on_close(&mut self, conn: &mut Conn<'_, ()>, reason: &CloseReason) {
        say(format_args!("server: closed {} ({reason})", conn.id()));
    }
}

/// Pings on write-idleness, up to a limit per connection.
struct Client {
    pings: u64,
}

#[derive(Default)]
struct Link {
    sent: u64,
    last_ping: Option<Instant>,
}

impl EventHandler for Client {
    type State = Link;

    fn on_open(&mut self, conn: &mut Conn<'_, Link>) -> Action {
        *conn.state_mut() = Link::default();
        say(format_args!("client: connected {}", conn.id()));
        Action::Continue
    }

    fn on_traffic(&mut self, conn: &mut Conn<'_, Link>) -> Action {
        // Pings are 8-byte sequence numbers; the echo returns them whole or split.
        while conn.read_buf().len() >= 8 {
            let mut seq = [0u8; 8];
            seq.copy_from_slice(&conn.read_buf()[..8]);
            conn.consume(8);
            let rtt = conn
                .state()
                .last_ping
                .map_or(0, |t| t.elapsed().as_micros());
            say(format_args!(
                "client: pong {} ({rtt}us)",
                u64::from_be_bytes(seq)
            ));
        }
        Action::Continue
    }

    fn on_heartbeat(&mut self, conn: &mut Conn<'_, Link>) -> Action {
        let link = conn.state_mut();
        if self.pings != 0 && link.sent >= self.pings {
            if link.sent == self.pings {
                link.sent += 1;
                say(format_args!("client: going quiet"));
            }
            return Action::Continue;
        }
        link.sent += 1;
        link.last_ping = Some(Instant::now());
        let seq = link.sent;
        say(format_args!("client: ping {seq}"));
        conn.write(&seq.to_be_bytes());
        Action::Continue
    }

    fn on_close(&mut self, _conn: &mut Conn<'_, Link>, reason: &CloseReason) {
        say(format_args!("client: disconnected ({reason})"));
    }

    fn on_reconnecting(
        &mut self,
        _ctx: &mut tether::LoopCtx<'_, Self::State>,
        r: &Redial,
        _link: &mut Link,
    ) {
        say(format_args!(
            "client: reconnecting in {}ms",
            r.delay.as_millis()
        ));
    }
}

const USAGE: &str = "[--addr ADDR] [--idle-timeout-ms MS] [--heartbeat-ms MS] [--pings N]";

struct Args {
    addr: String,
    idle: Duration,
    heartbeat: Duration,
    pings: u64,
}

fn parse_args(cli: &mut common::Cli) -> Result<Args, common::Usage> {
    let mut a = Args {
        addr: "127.0.0.1:9002".into(),
        idle: Duration::from_millis(1000),
        heartbeat: Duration::from_millis(300),
        pings: 5,
    };
    while let Some(flag) = cli.flag() {
        match flag.as_str() {
            "--addr" => {
                a.addr = common::address(&flag, cli.value(&flag)?, |a| match a {
                    ListenAddr::Udp(_) => Err("heartbeats need a stream; use tcp:// or unix://"),
                    _ => Ok(()),
                })?
            }
            "--idle-timeout-ms" => a.idle = cli.positive_millis(&flag)?,
            "--heartbeat-ms" => a.heartbeat = cli.positive_millis(&flag)?,
            "--pings" => a.pings = cli.number(&flag, 0..=u64::MAX)?,
            other => return Err(cli.unknown(other)),
        }
    }
    Ok(a)
}

fn main() -> ExitCode {
    let (
        Args {
            addr,
            idle,
            heartbeat,
            pings,
        },
        mut signals,
    ) = match common::start("heartbeat", USAGE, "warn", parse_args) {
        Ok(started) => started,
        Err(code) => return code,
    };
    let mut server_opts = Options::default();
    server_opts.loops = 1;
    server_opts.idle_timeout = Some(idle);
    let server = match Engine::builder(|_| Server)
        .options(server_opts)
        .listen(addr)
        .start()
    {
        Ok(e) => e,
        Err(e) => {
            eprintln!("heartbeat: {e}");
            return ExitCode::FAILURE;
        }
    };
    let server_addr = server.listen_addrs()[0].clone();
    say(format_args!("listening on {}", common::announced(&server)));

    let mut client_opts = Options::default();
    client_opts.loops = 1;
    client_opts.heartbeat = Some(heartbeat);
    let client = match Engine::builder(move |_| Client { pings })
        .options(client_opts)
        .start()
    {
        Ok(e) => e,
        Err(e) => {
            eprintln!("heartbeat: {e}");
            return ExitCode::FAILURE;
        }
    };
    let policy = BackoffPolicy::default()
        .with_initial(Duration::from_millis(200))
        .with_jitter(Jitter::None);
    let dialed = client.connect_with(
        server_addr,
        Link::default(),
        ConnectOptions::default().reconnect(policy),
    );
    if let Err(e) = dialed {
        eprintln!("heartbeat: {e}");
        return ExitCode::FAILURE;
    }
    let _ = signals.forever().next();
    client.stop();
    server.stop();
    ExitCode::SUCCESS
}
