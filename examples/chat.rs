//! A chat server with rooms, built on tether's topics.
//!
//! ```text
//! cargo run --release --example chat -- --addr 127.0.0.1:9002 --loops 2
//! ```
//!
//! Flags: `--addr ADDR` (default `127.0.0.1:9002`; `host:port`, `tcp://host:port`
//! or `unix:///path/to/socket`), `--loops N` (default: cores). Prints
//! `listening on <addr>` once it accepts; stops on SIGINT or SIGTERM. `--help`
//! prints the usage; a usage error exits with status 2.
//!
//! The protocol, one command per line (`\n`, an optional `\r` before it is
//! dropped):
//!
//! | client sends | server answers |
//! | --- | --- |
//! | `JOIN <room>` | `JOINED <room> <members>` to the joiner; leaves the room it was in first |
//! | `MSG <text>` | `MSG <text>` to every member of the sender's room, the sender included |
//! | `LEAVE` | `LEFT` |
//! | `MSG` or `LEAVE` outside a room, anything else | `ERR <reason>` |
//! | a line over 4 KiB | `ERR line too long`, then the connection is closed |
//!
//! A room is a topic: `JOIN` subscribes the connection, `MSG` publishes the line
//! to it, so delivery takes no lock and reaches the members on every loop, each
//! loop's with one queued `Bytes` shared by all of them. A connection that leaves
//! its room or closes is no longer a member. `<members>` is the number of members
//! of the room, on all loops, just after the join: the loops keep one small shared
//! table of member counts, touched on `JOIN`, `LEAVE` and close only, never on a
//! message. Connections are handed to the loops in turn, so consecutive clients
//! land on different loops. A room name is 1 to 64 bytes of printable ASCII
//! without spaces.

mod common;

use std::collections::HashMap;
use std::io::Write;
use std::process::ExitCode;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use tether::net::ListenAddr;
use tether::{Action, CloseReason, Conn, Engine, EventHandler, Options};

const USAGE: &str = "[--addr ADDR] [--loops N]";

/// The longest line taken, without its newline.
const MAX_LINE: usize = 4096;
/// The longest room name.
const MAX_ROOM: usize = 64;

/// Members per room, on all loops.
type Counts = Arc<Mutex<HashMap<String, usize>>>;

struct Chat {
    counts: Counts,
}

/// A connection's room, when it is in one.
type Member = Option<String>;

impl EventHandler for Chat {
    type State = Member;

    fn on_traffic(&mut self, conn: &mut Conn<'_, Member>) -> Action {
        loop {
            let input = conn.read_buf();
            let Some(end) = input.iter().position(|&b| b == b'\n') else {
                if input.len() > MAX_LINE {
                    conn.write(b"ERR line too long\n");
                    conn.close_after_flush();
                }
                return Action::Continue;
            };
            let line = &input[..end];
            let line = line.strip_suffix(b"\r").unwrap_or(line);
            if line.len() > MAX_LINE {
                conn.write(b"ERR line too long\n");
                conn.close_after_flush();
                return Action::Continue;
            }
            self.command(conn, line);
            conn.consume(end + 1);
        }
    }

    fn on_close(&mut self, conn: &mut Conn<'_, Member>, _reason: &CloseReason) {
        if let Some(room) = conn.state_mut().take() {
            self.left(&room);
        }
    }
}

impl Chat {
    fn command(&mut self, conn: &mut Conn<'_, Member>, line: &[u8]) {
        if let Some(text) = line.strip_prefix(b"MSG ") {
            let Some(room) = conn.state().clone() else {
                return conn.write(b"ERR not in a room\n");
            };
            // One buffer for the line, shared by every member it reaches.
            let mut message = Vec::with_capacity(text.len() + 5);
            message.extend_from_slice(b"MSG ");
            message.extend_from_slice(text);
            message.push(b'\n');
            conn.publish(&room, Bytes::from(message));
        } else if let Some(room) = line.strip_prefix(b"JOIN ") {
            match room_name(room) {
                Some(room) => self.join(conn, room),
                None => conn.write(b"ERR bad room name\n"),
            }
        } else if line == b"LEAVE" {
            match conn.state_mut().take() {
                Some(room) => {
                    conn.unsubscribe(&room);
                    self.left(&room);
                    conn.write(b"LEFT\n");
                }
                None => conn.write(b"ERR not in a room\n"),
            }
        } else if line == b"JOIN" || line == b"MSG" {
            conn.write(b"ERR missing argument\n");
        } else {
            conn.write(b"ERR unknown command\n");
        }
    }

    fn join(&mut self, conn: &mut Conn<'_, Member>, room: &str) {
        if let Some(old) = conn.state_mut().take() {
            conn.unsubscribe(&old);
            self.left(&old);
        }
        if let Err(e) = conn.subscribe(room) {
            let _ = writeln!(Line(conn), "ERR {e}");
            return;
        }
        let members = {
            let mut counts = self.counts.lock().unwrap_or_else(|p| p.into_inner());
            let n = counts.entry(room.to_owned()).or_insert(0);
            *n += 1;
            *n
        };
        let _ = writeln!(Line(conn), "JOINED {room} {members}");
        *conn.state_mut() = Some(room.to_owned());
    }

    fn left(&mut self, room: &str) {
        let mut counts = self.counts.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(n) = counts.get_mut(room) {
            *n -= 1;
            if *n == 0 {
                counts.remove(room);
            }
        }
    }
}

/// `room` as a room name: 1 to 64 bytes of printable ASCII, no spaces.
fn room_name(room: &[u8]) -> Option<&str> {
    let ok = (1..=MAX_ROOM).contains(&room.len()) && room.iter().all(|b| b.is_ascii_graphic());
    ok.then(|| std::str::from_utf8(room).ok()).flatten()
}

/// Formats a reply straight into the connection's output.
struct Line<'c, 'a>(&'c mut Conn<'a, Member>);

impl Write for Line<'_, '_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.write(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

struct Args {
    addr: String,
    options: Options,
}

fn parse_args(cli: &mut common::Cli) -> Result<Args, common::Usage> {
    let mut addr = "127.0.0.1:9002".to_string();
    let mut options = Options::default();
    while let Some(flag) = cli.flag() {
        match flag.as_str() {
            "--addr" => {
                addr = common::address(&flag, cli.value(&flag)?, |a| match a {
                    ListenAddr::Udp(_) => Err("chat needs a stream; use tcp:// or unix://"),
                    _ => Ok(()),
                })?
            }
            "--loops" => options.loops = cli.number(&flag, 1..=1024)?,
            other => return Err(cli.unknown(other)),
        }
    }
    // One acceptor hands connections to the loops in turn.
    options.reuse_port = false;
    options.load_balancer = tether::LoadBalancer::RoundRobin;
    Ok(Args { addr, options })
}

fn main() -> ExitCode {
    let (args, signals) = match common::start("chat", USAGE, "info", parse_args) {
        Ok(started) => started,
        Err(code) => return code,
    };
    let counts = Counts::default();
    let engine = Engine::builder(move |_| Chat {
        counts: counts.clone(),
    })
    .options(args.options)
    .listen(args.addr)
    .start();
    common::serve_until_signal("chat", engine, signals)
}
