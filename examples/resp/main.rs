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
mod pubsub;
mod server;

use std::process::ExitCode;
use std::sync::{Arc, Mutex};

use tether::net::ListenAddr;
use tether::{Engine, Options};

use keyspace::Keyspace;
use server::Server;

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
    let ((addr, mut options), signals) = match common::start("resp", USAGE, "info", parse_args) {
        Ok(started) => started,
        Err(code) => return code,
    };
    // A channel's topic name is at most twice its length plus two.
    options.max_topic_len = 2 * pubsub::MAX_CHANNEL + 2;
    let db = Arc::new(Mutex::new(Keyspace::new()));
    let channels = pubsub::Shared::default();
    let engine = Engine::builder(move |_loop| Server::new(db.clone(), channels.clone()))
        .options(options)
        .listen(addr)
        .start();
    common::serve_until_signal("resp", engine, signals)
}
