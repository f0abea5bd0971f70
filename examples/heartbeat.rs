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
//! Flags: `--addr ADDR` (default `127.0.0.1:9002`), `--idle-timeout-ms MS`
//! (default 1000), `--heartbeat-ms MS` (default 300), `--pings N` (default 5).

mod common;

use std::io::Write;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use tether::client::backoff::{BackoffPolicy, Jitter};
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

    fn on_reconnecting(&mut self, _ctx: &mut tether::LoopCtx<'_>, r: &Redial, _link: &mut Link) {
        say(format_args!(
            "client: reconnecting in {}ms",
            r.delay.as_millis()
        ));
    }
}

fn arg<T: std::str::FromStr>(args: &[String], flag: &str, default: T) -> Result<T, String> {
    match args.iter().position(|a| a == flag) {
        None => Ok(default),
        Some(i) => args
            .get(i + 1)
            .and_then(|v| v.parse().ok())
            .ok_or(format!("{flag} needs a value")),
    }
}

fn main() -> ExitCode {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("warn")).init();
    let args: Vec<String> = std::env::args().skip(1).collect();
    let parsed = (|| {
        Ok::<_, String>((
            arg::<String>(&args, "--addr", "127.0.0.1:9002".into())?,
            arg(&args, "--idle-timeout-ms", 1000u64)?,
            arg(&args, "--heartbeat-ms", 300u64)?,
            arg(&args, "--pings", 5u64)?,
        ))
    })();
    let (addr, idle_ms, heartbeat_ms, pings) = match parsed {
        Ok(p) => p,
        Err(e) => {
            eprintln!("heartbeat: {e}");
            return ExitCode::from(2);
        }
    };

    // Before anything is announced: a signal right after the first output line
    // must find its handler installed.
    let mut signals = match common::shutdown_signals("heartbeat") {
        Ok(s) => s,
        Err(code) => return code,
    };
    let mut server_opts = Options::default();
    server_opts.loops = 1;
    server_opts.idle_timeout = Some(Duration::from_millis(idle_ms.max(1)));
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
    let server_addr: SocketAddr = server.local_addrs()[0];
    say(format_args!("listening on {server_addr}"));

    let mut client_opts = Options::default();
    client_opts.loops = 1;
    client_opts.heartbeat = Some(Duration::from_millis(heartbeat_ms.max(1)));
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
