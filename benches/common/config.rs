//! The bench's command line and environment.

use std::net::SocketAddr;
use std::time::Duration;

use super::servers::{self, ServerArgs, ServerKind};
use super::wire::{MAX_FRAME_PAYLOAD, MIN_PAYLOAD, Proto};

pub const USAGE: &str = "\
End-to-end echo benchmark: tether against a raw mio loop and idiomatic tokio.

usage: cargo bench -p tether-bench --bench echo -- [options]

  --servers LIST   servers to compare, in turn: mio, tokio, tether, tether-idle
                   [mio,tokio,tether; tether-idle too in the idle case and
                   the 64 B, 100-connection case]
  --proto P        raw | frame (4-byte length prefix)   [raw]
  --sizes LIST     payload bytes per request            [64,4096; frame: 256]
  --conns LIST     connection counts                    [1,100,1000]
  --depth D        requests in flight per connection    [4]
  --rate R         open loop at R requests/s in total   [closed loop]
  --rounds N       rounds of A B C ...; medians are reported  [3]
  --idle N         idle connections for the memory case, 0 skips  [10000]
  --idle-secs S    seconds the idle connections are held while the server's
                   CPU time and loop wakeups are counted
                   [5, or env TETHER_BENCH_IDLE_SECS]
  --warmup S       seconds of warmup per run  [1, or env TETHER_BENCH_WARMUP]
  --secs S         seconds measured per run   [3, or env TETHER_BENCH_SECS]

Without --bench (cargo bench passes it; cargo test -p tether-bench --benches does not) the
defaults make a quick check instead: one round of 0.1 s + 0.3 s, 1 and 100
connections, 1,000 idle held 0.5 s. Other unknown arguments are ignored.

Exact figures (--exact; see BENCHMARKING.md):

  --exact                 instructions and syscalls per request instead of the
                          timed runs: each server under valgrind --tool=callgrind
                          with a short and a long load (user-space instructions
                          per request = difference in instructions / difference
                          in requests), then natively under perf stat
                          -e raw_syscalls:sys_enter during a fixed load
  --servers LIST          [mio,tokio,tether]
  --conns N --depth D     closed loop  [100 connections, depth 4]
  --proto P --sizes B     raw 64 B requests, or frame 256 B payloads  [raw]
  --exact-requests S,L    short and long load under callgrind  [20000,120000]
  --syscall-requests N    requests counted under perf  [200000]
  --rounds N              perf runs per server, median shown  [3]
  --no-callgrind | --no-perf   skip one of the two parts
  env TETHER_BENCH_KEEP_CALLGRIND=1 keeps the callgrind files for
  callgrind_annotate and prints their paths";

/// What this invocation of the binary is for.
#[derive(Debug)]
pub enum Mode {
    /// Run the benchmark (the parent process).
    Bench(Config),
    /// Count instructions and syscalls per request (`--exact`).
    Exact(ExactConfig),
    /// Be one server (a child process the parent started).
    Server(ServerArgs),
    Help,
}

#[derive(Debug)]
pub struct Config {
    /// A quick correctness check rather than a measurement (no `--bench`).
    pub quick: bool,
    /// The servers of every load case (and of the idle case when given with
    /// `--servers`).
    pub servers: Vec<ServerKind>,
    /// `--servers` was given: no server is added to any case.
    pub servers_given: bool,
    pub proto: Proto,
    pub sizes: Vec<usize>,
    pub conns: Vec<usize>,
    pub depth: usize,
    pub rate: Option<f64>,
    pub rounds: usize,
    pub idle: usize,
    /// How long the idle connections are held while the server's CPU is counted.
    pub idle_hold: Duration,
    pub warmup: Duration,
    pub measure: Duration,
}

/// The one load case in which the default run also measures `tether-idle`.
pub const IDLE_VARIANT_CASE: (usize, usize) = (64, 100);

impl Config {
    /// The servers compared with `payload` bytes over `conns` connections.
    pub fn servers_for_load(&self, payload: usize, conns: usize) -> Vec<ServerKind> {
        let mut servers = self.servers.clone();
        if !self.servers_given && (payload, conns) == IDLE_VARIANT_CASE {
            servers.push(ServerKind::TetherIdle);
        }
        servers
    }

    /// The servers compared in the idle case.
    pub fn servers_for_idle(&self) -> Vec<ServerKind> {
        let mut servers = self.servers.clone();
        if !self.servers_given {
            servers.push(ServerKind::TetherIdle);
        }
        servers
    }
}

/// What `--exact` measures.
#[derive(Debug)]
pub struct ExactConfig {
    pub servers: Vec<ServerKind>,
    /// Raw echo, or frames behind a 4-byte length prefix.
    pub proto: Proto,
    pub payload: usize,
    pub conns: usize,
    pub depth: usize,
    /// Requests of the short and of the long load under callgrind.
    pub short: u64,
    pub long: u64,
    /// Requests counted under `perf stat`.
    pub syscall_requests: u64,
    /// perf runs per server, in turn.
    pub rounds: usize,
    pub callgrind: bool,
    pub perf: bool,
}

pub fn parse(args: impl Iterator<Item = String>) -> Result<Mode, String> {
    let args: Vec<String> = args.collect();
    let value = |flag: &str| -> Result<Option<&str>, String> {
        match args.iter().position(|a| a == flag) {
            None => Ok(None),
            Some(i) => args
                .get(i + 1)
                .map(|v| Some(v.as_str()))
                .ok_or_else(|| format!("{flag} needs a value")),
        }
    };
    if args.iter().any(|a| a == "--help" || a == "-h") {
        return Ok(Mode::Help);
    }
    let proto = match value("--proto")? {
        Some(p) => Proto::parse(p).ok_or_else(|| format!("unknown protocol {p:?}"))?,
        None => Proto::Raw,
    };
    if let Some(kind) = value("--server")? {
        return Ok(Mode::Server(ServerArgs {
            kind: ServerKind::parse(kind).ok_or_else(|| format!("unknown server {kind:?}"))?,
            proto,
            udp: args.iter().any(|a| a == "--udp"),
            addr: parsed(value("--addr")?, "--addr")?
                .unwrap_or(SocketAddr::from(([127, 0, 0, 1], 0))),
            loops: parsed(value("--loops")?, "--loops")?.unwrap_or(1),
        }));
    }
    let servers_given = value("--servers")?.is_some();
    let servers = match value("--servers")? {
        Some(list) => servers::parse_list(list, false)?,
        None => vec![ServerKind::Mio, ServerKind::Tokio, ServerKind::Tether],
    };
    if args.iter().any(|a| a == "--exact") {
        let (short, long) = match list(value("--exact-requests")?, "--exact-requests")? {
            None => (20_000, 120_000),
            Some(v) if v.len() == 2 && v[0] < v[1] => (v[0] as u64, v[1] as u64),
            Some(_) => return Err("--exact-requests takes SHORT,LONG with SHORT < LONG".into()),
        };
        let exact = ExactConfig {
            servers,
            proto,
            payload: list(value("--sizes")?, "--sizes")?
                .and_then(|s| s.first().copied())
                .unwrap_or(match proto {
                    Proto::Raw => 64,
                    Proto::Frame => 256,
                }),
            conns: list(value("--conns")?, "--conns")?
                .and_then(|c| c.first().copied())
                .unwrap_or(100),
            depth: parsed(value("--depth")?, "--depth")?.unwrap_or(4),
            short,
            long,
            syscall_requests: parsed(value("--syscall-requests")?, "--syscall-requests")?
                .unwrap_or(200_000),
            rounds: parsed(value("--rounds")?, "--rounds")?.unwrap_or(3),
            callgrind: !args.iter().any(|a| a == "--no-callgrind"),
            perf: !args.iter().any(|a| a == "--no-perf"),
        };
        if exact.conns == 0 || exact.depth == 0 || exact.rounds == 0 {
            return Err("--conns, --depth and --rounds must be at least 1".into());
        }
        if exact.syscall_requests == 0 {
            return Err("--syscall-requests must be at least 1".into());
        }
        return Ok(Mode::Exact(exact));
    }
    let default_sizes = match proto {
        Proto::Raw => vec![64, 4096],
        Proto::Frame => vec![256],
    };
    // Run by `cargo test -p tether-bench --benches`, the bench verifies every server in seconds
    // instead of measuring for minutes.
    let quick = !args.iter().any(|a| a == "--bench");
    let (rounds, warmup, secs, conns, idle, idle_secs) = if quick {
        (1, 0.1, 0.3, vec![1, 100], 1_000, 0.5)
    } else {
        (3, 1.0, 3.0, vec![1, 100, 1_000], 10_000, 5.0)
    };
    let config = Config {
        quick,
        servers,
        servers_given,
        proto,
        sizes: list(value("--sizes")?, "--sizes")?.unwrap_or(default_sizes),
        conns: list(value("--conns")?, "--conns")?.unwrap_or(conns),
        depth: parsed(value("--depth")?, "--depth")?.unwrap_or(4),
        rate: parsed(value("--rate")?, "--rate")?,
        rounds: parsed(value("--rounds")?, "--rounds")?.unwrap_or(rounds),
        idle: parsed(value("--idle")?, "--idle")?.unwrap_or(idle),
        idle_hold: seconds(value("--idle-secs")?, "TETHER_BENCH_IDLE_SECS", idle_secs)?,
        warmup: seconds(value("--warmup")?, "TETHER_BENCH_WARMUP", warmup)?,
        measure: seconds(value("--secs")?, "TETHER_BENCH_SECS", secs)?,
    };
    validate(&config)?;
    Ok(Mode::Bench(config))
}

fn validate(config: &Config) -> Result<(), String> {
    if config.servers.is_empty() || config.sizes.is_empty() || config.conns.is_empty() {
        return Err("--servers, --sizes and --conns need at least one entry".into());
    }
    if let Some(&size) = config
        .sizes
        .iter()
        .find(|&&s| !(MIN_PAYLOAD..=MAX_FRAME_PAYLOAD).contains(&s))
    {
        return Err(format!(
            "size {size} out of range: requests carry an 8-byte sequence number and frames are at most {MAX_FRAME_PAYLOAD} bytes"
        ));
    }
    if config.conns.contains(&0) || config.depth == 0 || config.rounds == 0 {
        return Err("--conns, --depth and --rounds must be at least 1".into());
    }
    if config.rate.is_some_and(|r| !(r.is_finite() && r > 0.0)) {
        return Err("--rate must be a positive number of requests per second".into());
    }
    if config.measure.is_zero() {
        return Err("the measure window must be longer than zero".into());
    }
    Ok(())
}

fn parsed<T: std::str::FromStr>(value: Option<&str>, flag: &str) -> Result<Option<T>, String> {
    value
        .map(|v| v.parse().map_err(|_| format!("{flag}: cannot parse {v:?}")))
        .transpose()
}

fn list(value: Option<&str>, flag: &str) -> Result<Option<Vec<usize>>, String> {
    value
        .map(|v| {
            v.split(',')
                .map(|n| n.trim().replace('_', "").parse())
                .collect::<Result<_, _>>()
                .map_err(|_| format!("{flag}: cannot parse {v:?}"))
        })
        .transpose()
}

/// A duration in seconds from the flag, else the environment variable, else `default`.
fn seconds(flag: Option<&str>, env: &str, default: f64) -> Result<Duration, String> {
    let from_env = std::env::var(env).ok();
    let secs = match flag.or(from_env.as_deref()) {
        Some(v) => v
            .parse::<f64>()
            .map_err(|_| format!("cannot parse {v:?} as seconds"))?,
        None => default,
    };
    Duration::try_from_secs_f64(secs)
        .map_err(|_| format!("{secs} is not a valid number of seconds"))
}
