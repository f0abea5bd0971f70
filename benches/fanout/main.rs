//! Fan-out benchmark: one publisher, N members of one room, each message delivered
//! to every member; tether against a hand-written mio loop and idiomatic tokio.
//!
//! `cargo bench -p tether-bench --bench fanout` (add `-- --help` for the options). Each server runs
//! in its own child process (this binary re-executed with `--server`) pinned to
//! CPU 1, with 2 loops; the load client runs here, single-threaded, pinned to CPU 0.
//! Servers run in turn (A B C A B C …), each run against a fresh child, and the
//! tables show each server's median and its ratios to the references in the same
//! run (see BENCHMARKING.md).
//!
//! Per server and case: deliveries/s, server CPU per delivery (the child's own
//! user + system time), syscalls per delivery (`perf stat -e
//! raw_syscalls:sys_enter -p PID` over the measured window, when perf can count
//! here), heap allocations and payload copies per delivery (counted in the child),
//! and publish-to-last-delivery latency p50/p99. Every byte of every delivery is
//! verified; a wrong or missing byte aborts the bench.
//!
//! The ticker case: a server pushing a 200 B message to each of 1,000 connections
//! at 60 Hz; ticks each member received in 10 s, and the arrival-to-arrival
//! interval p50/p99 the members saw.
//!
//! `cargo test -p tether-bench --bench fanout` runs the same binary without `--bench`: then the
//! defaults shrink to a quick check (100 members, one short round, a 1 s ticker)
//! that every server starts, delivers correctly and stops.

mod child;
mod client;
mod servers;
mod wire;

#[path = "../common/alloc.rs"]
mod alloc;
#[path = "../common/perf.rs"]
#[allow(dead_code)]
mod perf;
#[path = "../common/procstat.rs"]
#[allow(dead_code)]
mod procstat;
#[path = "../common/sys.rs"]
mod sys;

use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

use alloc::CountingAlloc;
use client::{Case, Figures, Plan, RunError, TickFigures};
use servers::{ServerArgs, ServerKind, TICK_SIZE};

#[global_allocator]
static ALLOC: CountingAlloc = CountingAlloc;

/// The load client's CPU; server children pin themselves to the other one.
const LOAD_CPU: usize = 0;

const USAGE: &str = "\
Fan-out benchmark: one publisher, N members of one room; tether against a
hand-written mio loop and idiomatic tokio.

usage: cargo bench -p tether-bench --bench fanout -- [options]

  --servers LIST   servers compared, in turn
                   [tokio,mio,tether,tether-per-message]
  --members LIST   members of the room                   [2000,8000]
  --sizes LIST     bytes per message, header included    [64,1024]
  --loops N        server loops (tokio: worker threads)  [2]
  --window W       messages in flight                    [8]
  --rounds N       rounds of A B C ...; medians shown    [3]
  --warmup S       seconds of warmup per run             [1]
  --secs S         seconds measured per run              [3]
  --no-perf        do not count syscalls
  --ticker-members N   members of the 60 Hz ticker case, 0 skips it  [1000]
  --ticker-secs S      seconds the ticks are counted over            [10]
  --ticker-only        only the ticker case

Without --bench (cargo bench passes it; cargo test -p tether-bench --benches does not) the
defaults make a quick check instead: 100 members, 64 B, one round of
0.2 s + 0.5 s, no perf, a 1 s ticker with 100 members.";

struct Config {
    servers: Vec<ServerKind>,
    members: Vec<usize>,
    sizes: Vec<usize>,
    plan: Plan,
    rounds: usize,
    ticker_members: usize,
    ticker_secs: Duration,
    fanout: bool,
}

enum Mode {
    Bench(Config),
    Server(ServerArgs),
    Help,
}

fn main() -> ExitCode {
    match parse(std::env::args().skip(1).collect()) {
        Ok(Mode::Server(args)) => servers::child_main(&args),
        Ok(Mode::Bench(config)) => bench(&config),
        Ok(Mode::Help) => {
            println!("{USAGE}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("fanout bench: {e}\n\n{USAGE}");
            ExitCode::from(2)
        }
    }
}

fn parse(args: Vec<String>) -> Result<Mode, String> {
    let quick = !args.iter().any(|a| a == "--bench");
    let mut config = Config {
        servers: ServerKind::FANOUT.to_vec(),
        members: if quick { vec![100] } else { vec![2000, 8000] },
        sizes: if quick { vec![64] } else { vec![64, 1024] },
        plan: Plan {
            loops: 2,
            warmup: Duration::from_millis(if quick { 200 } else { 1000 }),
            measure: Duration::from_millis(if quick { 500 } else { 3000 }),
            window: 8,
            perf: !quick,
        },
        rounds: if quick { 1 } else { 3 },
        ticker_members: if quick { 100 } else { 1000 },
        ticker_secs: Duration::from_secs(if quick { 1 } else { 10 }),
        fanout: true,
    };
    let mut server: Option<ServerKind> = None;
    let mut addr: SocketAddr = ([127, 0, 0, 1], 0).into();
    let mut it = args.into_iter();
    while let Some(arg) = it.next() {
        let mut value = || it.next().ok_or_else(|| format!("{arg} needs a value"));
        match arg.as_str() {
            "--help" | "-h" => return Ok(Mode::Help),
            "--bench" => {}
            "--server" => {
                let name = value()?;
                server = Some(ServerKind::parse(&name).ok_or(format!("unknown server {name:?}"))?);
            }
            "--addr" => addr = value()?.parse().map_err(|e| format!("--addr: {e}"))?,
            "--servers" => {
                config.servers = list(&value()?, |s| {
                    ServerKind::parse(s)
                        .filter(|k| ServerKind::FANOUT.contains(k))
                        .ok_or(format!("unknown server {s:?}"))
                })?;
            }
            "--members" => config.members = list(&value()?, number)?,
            "--sizes" => config.sizes = list(&value()?, size)?,
            "--loops" => config.plan.loops = number(&value()?)?.max(1),
            "--window" => config.plan.window = number(&value()?)?.clamp(1, 1024),
            "--rounds" => config.rounds = number(&value()?)?.max(1),
            "--warmup" => config.plan.warmup = seconds(&value()?)?,
            "--secs" => config.plan.measure = seconds(&value()?)?,
            "--no-perf" => config.plan.perf = false,
            "--ticker-members" => config.ticker_members = number(&value()?)?,
            "--ticker-secs" => config.ticker_secs = seconds(&value()?)?,
            "--ticker-only" => config.fanout = false,
            // cargo passes its own flags through (e.g. a test filter): ignore them.
            _ => {}
        }
    }
    Ok(match server {
        Some(kind) => Mode::Server(ServerArgs {
            kind,
            addr,
            loops: config.plan.loops,
        }),
        None => Mode::Bench(config),
    })
}

fn list<T>(text: &str, item: impl Fn(&str) -> Result<T, String>) -> Result<Vec<T>, String> {
    text.split(',').map(|s| item(s.trim())).collect()
}

fn number(text: &str) -> Result<usize, String> {
    text.parse().map_err(|_| format!("not a number: {text:?}"))
}

fn size(text: &str) -> Result<usize, String> {
    let n = number(text)?;
    if (wire::HEADER..=wire::MAX_MESSAGE).contains(&n) {
        Ok(n)
    } else {
        Err(format!(
            "message size {n} outside {}..={}",
            wire::HEADER,
            wire::MAX_MESSAGE
        ))
    }
}

fn seconds(text: &str) -> Result<Duration, String> {
    text.parse::<f64>()
        .ok()
        .filter(|s| s.is_finite() && *s >= 0.0)
        .map(Duration::from_secs_f64)
        .ok_or_else(|| format!("not a number of seconds: {text:?}"))
}

fn bench(config: &Config) -> ExitCode {
    if let Err(e) = sys::raise_open_file_limit() {
        eprintln!("warning: cannot raise the open-file limit: {e}");
    }
    if let Err(e) = sys::pin_to_cpu(LOAD_CPU) {
        eprintln!("warning: cannot pin the load client: {e}");
    }
    let mut plan = config.plan;
    if plan.perf {
        if let Err(why) = perf::check() {
            println!("notice: syscalls not counted: {why}\n");
            plan.perf = false;
        }
    }
    println!(
        "## Fan-out benchmark: {}\n\n\
         Loopback; each server in its own process with {} loops, pinned to CPU 1; the \
         load client on CPU 0; {} messages in flight; {} s warmup, {} s measured; {}; \
         every delivery verified. {}\n",
        names(&config.servers),
        plan.loops,
        plan.window,
        plan.warmup.as_secs_f64(),
        plan.measure.as_secs_f64(),
        match config.rounds {
            1 => "one round".to_owned(),
            n => format!("servers in turn, {n} rounds, medians shown"),
        },
        load_line(),
    );
    let mut failed = 0;
    if config.fanout {
        for &size in &config.sizes {
            for &members in &config.members {
                let case = Case { members, size };
                let label = format!("{members} members, {size} B");
                let Some(runs) = in_turn(&config.servers, config.rounds, &label, |kind| {
                    client::fanout(kind, case, &plan)
                }) else {
                    return ExitCode::FAILURE;
                };
                failed += failures(&runs);
                println!("{}", fanout_table(&label, &runs));
            }
        }
    }
    if config.ticker_members > 0 {
        let kinds = ServerKind::TICKER;
        let label = format!(
            "60 Hz ticker, {} B to {} members",
            TICK_SIZE, config.ticker_members
        );
        let Some(runs) = in_turn(&kinds, config.rounds.min(2), &label, |kind| {
            client::ticker(
                kind,
                config.ticker_members,
                TICK_SIZE,
                plan.loops,
                Duration::from_secs(1),
                config.ticker_secs,
            )
        }) else {
            return ExitCode::FAILURE;
        };
        failed += failures(&runs);
        println!("{}", ticker_table(&label, config.ticker_secs, &runs));
    }
    println!("{}", load_line());
    if failed > 0 {
        eprintln!("fanout bench: {failed} runs failed");
        return ExitCode::FAILURE;
    }
    ExitCode::SUCCESS
}

fn names(kinds: &[ServerKind]) -> String {
    kinds
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(" vs ")
}

fn load_line() -> String {
    match procstat::load_average() {
        Some(load) => format!("Load average (1 min): {load:.2}."),
        None => String::new(),
    }
}

type Runs<T> = Vec<(ServerKind, Vec<Result<T, String>>)>;

fn failures<T>(runs: &Runs<T>) -> usize {
    runs.iter()
        .map(|(_, results)| results.iter().filter(|r| r.is_err()).count())
        .sum()
}

/// Runs every server in turn, `rounds` times; `None` when a delivery was wrong.
fn in_turn<T: std::fmt::Debug>(
    servers: &[ServerKind],
    rounds: usize,
    label: &str,
    run: impl Fn(ServerKind) -> Result<T, RunError>,
) -> Option<Runs<T>> {
    let mut runs: Runs<T> = servers.iter().map(|&k| (k, Vec::new())).collect();
    for round in 1..=rounds {
        for (kind, results) in &mut runs {
            let result = match run(*kind) {
                Ok(value) => {
                    eprintln!("[{label}] round {round}/{rounds} {kind}: {value:?}");
                    Ok(value)
                }
                Err(RunError::Corrupt(e)) => {
                    eprintln!("[{label}] {kind} delivered wrong bytes: {e}; aborting");
                    return None;
                }
                Err(RunError::Failed(why)) => {
                    eprintln!("[{label}] round {round}/{rounds} {kind}: run failed: {why}");
                    Err(why)
                }
            };
            results.push(result);
        }
    }
    Some(runs)
}

fn median(mut values: Vec<f64>) -> Option<f64> {
    values.sort_by(f64::total_cmp);
    let mid = values.len() / 2;
    match values.len() {
        0 => None,
        n if n % 2 == 1 => Some(values[mid]),
        _ => Some((values[mid - 1] + values[mid]) / 2.0),
    }
}

/// The median of `field` over the successful runs of `kind`.
fn median_of<T>(
    runs: &Runs<T>,
    kind: ServerKind,
    field: impl Fn(&T) -> Option<f64>,
) -> Option<f64> {
    let (_, results) = runs.iter().find(|(k, _)| *k == kind)?;
    median(
        results
            .iter()
            .filter_map(|r| r.as_ref().ok())
            .filter_map(&field)
            .collect(),
    )
}

fn fanout_table(label: &str, runs: &Runs<Figures>) -> String {
    let mut out = format!(
        "### {label}\n\n\
         | server | deliveries/s | ×mio | ×tokio | CPU ns/delivery | ×tokio | syscalls/delivery | allocs/delivery | copies/delivery | p50 µs | p99 µs |\n\
         | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |\n"
    );
    let rate = |k| median_of(runs, k, |f: &Figures| Some(f.deliveries_per_sec));
    let cpu = |k| median_of(runs, k, |f: &Figures| Some(f.cpu_ns_per_delivery));
    for (kind, results) in runs {
        let kind = *kind;
        let ok = results.iter().filter(|r| r.is_ok()).count();
        let name = match ok == results.len() {
            true => kind.to_string(),
            false => format!("{kind} ({ok}/{} runs)", results.len()),
        };
        let of = |field: fn(&Figures) -> Option<f64>| median_of(runs, kind, field);
        let ratio = |a: Option<f64>, b: Option<f64>| match (a, b) {
            (Some(a), Some(b)) if b > 0.0 => format!("{:.2}", a / b),
            _ => "–".to_owned(),
        };
        let fixed = |v: Option<f64>, digits: usize| match v {
            Some(v) => format!("{v:.digits$}"),
            None => "–".to_owned(),
        };
        out.push_str(&format!(
            "| {name} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |\n",
            fixed(rate(kind), 0),
            ratio(rate(kind), rate(ServerKind::Mio)),
            ratio(rate(kind), rate(ServerKind::Tokio)),
            fixed(cpu(kind), 0),
            ratio(cpu(kind), cpu(ServerKind::Tokio)),
            fixed(of(|f| f.syscalls_per_delivery), 4),
            fixed(of(|f| Some(f.allocs_per_delivery)), 4),
            fixed(of(|f| Some(f.copies_per_delivery)), 4),
            fixed(of(|f| Some(f.p50_us)), 0),
            fixed(of(|f| Some(f.p99_us)), 0),
        ));
    }
    out
}

fn ticker_table(label: &str, window: Duration, runs: &Runs<TickFigures>) -> String {
    let mut out = format!(
        "### {label}\n\n\
         | server | ticks in {:.0} s (median member) | fewest–most | interval p50 µs | p99 µs | CPU ns/delivery |\n\
         | --- | ---: | ---: | ---: | ---: | ---: |\n",
        window.as_secs_f64()
    );
    for (kind, results) in runs {
        for figures in results {
            match figures {
                Ok(f) => out.push_str(&format!(
                    "| {kind} | {} | {}–{} | {:.0} | {:.0} | {:.0} |\n",
                    f.ticks,
                    f.ticks_min,
                    f.ticks_max,
                    f.interval_p50_us,
                    f.interval_p99_us,
                    f.cpu_ns_per_delivery
                )),
                Err(why) => out.push_str(&format!("| {kind} | failed: {why} | | | | |\n")),
            }
        }
    }
    out
}
