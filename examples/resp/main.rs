//! A Redis-compatible server over `tether::codec::Resp`.
//!
//! ```text
//! cargo run --release --example resp -- --addr 127.0.0.1:6380 --loops 1
//! redis-cli -p 6380 set greeting hello
//! ```
//!
//! Flags: `--addr ADDR` (default `127.0.0.1:6379`), `--loops N` (default 1).
//! Prints `listening on <addr>`; stops on SIGINT or SIGTERM.
//!
//! Commands: PING, ECHO, SET (EX/PX/NX/XX), GET, DEL, EXISTS,
//! INCR/DECR/INCRBY/DECRBY, EXPIRE/PEXPIRE/TTL/PTTL, MSET/MGET,
//! LPUSH/RPUSH/LPOP/RPOP/LRANGE/LLEN, SADD/SREM/SMEMBERS/SCARD/SPOP,
//! HSET/HGET/HDEL/HGETALL, PUBLISH/SUBSCRIBE/UNSUBSCRIBE, CONFIG GET, COMMAND
//! (DOCS, COUNT), SELECT 0, FLUSHALL, DBSIZE, QUIT, and inline commands.
//!
//! One keyspace for all loops: a `Mutex<Keyspace>` taken once per batch of
//! commands that arrived together (not once per command), so a pipelined batch
//! runs atomically and a single loop never contends.

mod commands;
#[path = "../common/mod.rs"]
mod common;
mod keyspace;

use std::process::ExitCode;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tether::codec::Resp;
use tether::codec::resp::{Decoded, RespWrite};
use tether::net::ListenAddr;
use tether::{Action, Conn, Engine, EventHandler, LoopCtx, Options};

use commands::{Argv, Outcome};
use keyspace::Keyspace;

/// Commands are flat arrays of bulk strings; a bulk string may not exceed what
/// a connection may buffer anyway.
const DECODER: Resp = Resp::new()
    .max_bulk(4 * 1024 * 1024)
    .max_array(1024 * 1024)
    .max_depth(1);

/// How often a loop removes expired keys (lookups also expire lazily).
const EXPIRY_SWEEP: Duration = Duration::from_millis(100);

struct Server {
    db: Arc<Mutex<Keyspace>>,
}

/// Per connection.
#[derive(Default)]
struct Client {
    /// Don't decode again until this many bytes are buffered (a large bulk
    /// string arriving in pieces is not rescanned per read).
    want: usize,
}

fn lock(db: &Mutex<Keyspace>) -> MutexGuard<'_, Keyspace> {
    db.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl EventHandler for Server {
    type State = Client;

    fn on_traffic(&mut self, conn: &mut Conn<'_, Client>) -> Action {
        let input = conn.read_buf();
        if input.len() < conn.state().want {
            return Action::Continue;
        }
        let mut db: Option<MutexGuard<'_, Keyspace>> = None;
        let mut pos = 0;
        let mut want = 0;
        while pos < input.len() {
            match DECODER.decode(&input[pos..]) {
                Ok(Decoded::Frame(frame, used)) => {
                    pos += used;
                    let args = match frame.args() {
                        Ok(args) => args,
                        Err(e) => {
                            protocol_error(conn, &e);
                            break;
                        }
                    };
                    let argv = Argv::new(args);
                    if argv.len() == 0 {
                        continue; // an empty inline line
                    }
                    let db = db.get_or_insert_with(|| lock(&self.db));
                    let now = db.ms(conn.now());
                    if commands::execute(db, conn, &argv, now) == Outcome::Quit {
                        conn.close_after_flush();
                        break;
                    }
                }
                Ok(Decoded::Incomplete { needed }) => {
                    want = (input.len() - pos).saturating_add(needed);
                    break;
                }
                Err(e) => {
                    protocol_error(conn, &e);
                    break;
                }
            }
        }
        conn.state_mut().want = want;
        conn.consume(pos);
        Action::Continue
    }

    fn on_tick(&mut self, ctx: &mut LoopCtx<'_>) -> Option<Duration> {
        let mut db = lock(&self.db);
        let now = db.ms(ctx.now());
        db.expire_due(now);
        Some(EXPIRY_SWEEP)
    }
}

/// Redis's answer to a broken stream: an error line, then the close.
fn protocol_error(conn: &mut Conn<'_, Client>, e: &tether::codec::resp::RespError) {
    let line = format!("ERR Protocol error: {e}");
    conn.put_error(line.as_bytes());
    conn.close_after_flush();
}

const USAGE: &str = "[--addr HOST:PORT] [--loops N]";

fn parse_args(cli: &mut common::Cli) -> Result<(String, Options), common::Usage> {
    let mut addr = "127.0.0.1:6379".to_string();
    let mut options = Options::default();
    options.loops = 1;
    while let Some(flag) = cli.flag() {
        match flag.as_str() {
            "--addr" => {
                addr = common::address(&flag, cli.value(&flag)?, |a| match a {
                    ListenAddr::Udp(_) => Err("RESP needs a stream; use host:port"),
                    _ => Ok(()),
                })?
            }
            "--loops" => options.loops = cli.number(&flag, 1..=1024)?,
            other => return Err(cli.unknown(other)),
        }
    }
    Ok((addr, options))
}

fn main() -> ExitCode {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();
    let (addr, options) = match common::Cli::new("resp", USAGE).parse(parse_args) {
        Ok(a) => a,
        Err(code) => return code,
    };
    let signals = match common::shutdown_signals("resp") {
        Ok(s) => s,
        Err(code) => return code,
    };
    let db = Arc::new(Mutex::new(Keyspace::new()));
    let engine = Engine::builder(move |_loop| Server { db: db.clone() })
        .options(options)
        .listen(addr)
        .start();
    common::serve_until_signal("resp", engine, signals)
}
