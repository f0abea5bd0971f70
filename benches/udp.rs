//! End-to-end UDP echo benchmark: tether against a raw mio loop and idiomatic tokio.
//!
//! `cargo bench -p tether-bench --bench udp` (add `-- --help` for the options). As in the echo
//! bench, each server runs in its own child process (this binary re-executed with
//! `--server`), pinned to CPU 1, and the load generator runs here on CPU 0. Servers
//! run in turn (A B C D, A B C D, …), each run against a fresh child; the table
//! shows medians, and ratios to raw mio taken round by round.
//!
//! The load generator keeps a window of 64-byte datagrams in flight from several
//! client sockets (`sendmmsg`/`recvmmsg`, so it is cheaper per datagram than any
//! server) and verifies every answer: a wrong byte, a wrong length or an answer to
//! a datagram never sent aborts the bench. UDP may lose datagrams: one unanswered
//! for 200 ms counts as lost and leaves the window, so loss is counted, never hung
//! on.
//!
//! Per server: datagrams/s, p50/p99 round trip, server CPU µs per datagram (from
//! /proc), heap allocations per datagram, syscalls per datagram (`perf stat -e
//! raw_syscalls:sys_enter -p PID` over one extra second after the timed window,
//! when perf works here), and datagrams lost.
//!
//! `cargo test -p tether-bench --bench udp` runs a quick check instead (one short round, no perf).

mod common;

use std::fmt::Write as _;
use std::process::ExitCode;
use std::time::Duration;

use common::alloc::CountingAlloc;
use common::child::{Launch, ServerChild};
use common::config::{self, Mode};
use common::measure::{RunError, report_quit};
use common::perf::{self, SyscallCounter};
use common::report::{self, Runs, median, paired_ratio};
use common::rotation::in_turn;
use common::servers::{self, ServerKind};
use common::udp_load::{UdpClient, UdpLoad};
use common::{exact, procstat, sys};

#[global_allocator]
static ALLOC: CountingAlloc = CountingAlloc;

/// The load generator's CPU; server children pin themselves to the other one.
const LOAD_CPU: usize = 0;
/// Every server gets one loop (thread): one core serves, the other loads.
const LOOPS: usize = 1;

const USAGE: &str = "\
End-to-end UDP echo benchmark: tether against a raw mio loop and idiomatic tokio.

usage: cargo bench -p tether-bench --bench udp -- [options]

  --servers LIST   servers to compare, in turn: mio, tokio, tether (udp_batch 1),
                   tether-batch (udp_batch 32)   [mio,tokio,tether,tether-batch]
  --size B         bytes per datagram            [64]
  --sockets N      client sockets                [8]
  --window W       datagrams in flight per socket [16]
  --rounds N       rounds of A B C D; medians are reported  [3]
  --warmup S       seconds of warmup per run  [1, or env TETHER_BENCH_WARMUP]
  --secs S         seconds measured per run   [3, or env TETHER_BENCH_SECS]
  --syscall-secs S seconds counted under perf stat after the timed window,
                   0 skips  [1]
  --exact          user-space instructions per datagram instead: each server
                   twice under valgrind --tool=callgrind, 2 s and 6 s of load;
                   Δinstructions / Δdatagrams answered

Without --bench (cargo bench passes it; cargo test -p tether-bench --benches does not) the
defaults make a quick check instead: one round of 0.1 s + 0.3 s, no perf.";

struct Config {
    quick: bool,
    servers: Vec<ServerKind>,
    load: UdpLoad,
    rounds: usize,
    warmup: Duration,
    measure: Duration,
    syscall_window: Duration,
}

/// One server's figures from one run.
#[derive(Clone, Copy, Debug)]
struct Figures {
    dgram_per_sec: f64,
    p50_us: f64,
    p99_us: f64,
    cpu_us_per_dgram: f64,
    allocs_per_dgram: f64,
    /// `None` when perf is not used.
    syscalls_per_dgram: Option<f64>,
    /// Lost in the timed window, out of `sent`.
    lost: u64,
    late: u64,
    duplicates: u64,
    sent: u64,
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.iter().any(|a| a == "--server") {
        return match config::parse(args.into_iter()) {
            Ok(Mode::Server(args)) => servers::child_main(&args),
            Ok(_) => ExitCode::FAILURE,
            Err(e) => {
                eprintln!("udp bench server: {e}");
                ExitCode::from(2)
            }
        };
    }
    if args.iter().any(|a| a == "--help" || a == "-h") {
        println!("{USAGE}");
        return ExitCode::SUCCESS;
    }
    let config = match parse(&args) {
        Ok(config) => config,
        Err(e) => {
            eprintln!("udp bench: {e}\n\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    if args.iter().any(|a| a == "--exact") {
        if let Err(e) = sys::pin_to_cpu(LOAD_CPU) {
            eprintln!("warning: cannot pin the load generator: {e}");
        }
        return exact(&config);
    }
    bench(&config)
}

/// Load of the short and of the long callgrind run.
const EXACT_SHORT: Duration = Duration::from_secs(2);
const EXACT_LONG: Duration = Duration::from_secs(6);

/// One callgrind run: the server's instructions, and the datagrams it answered.
struct Counted {
    instructions: u64,
    answered: u64,
    lost: u64,
}

fn callgrind_run(kind: ServerKind, load: UdpLoad, secs: Duration) -> Result<Counted, RunError> {
    let out = exact::callgrind_out(&format!("udp-{kind}-{}", secs.as_secs()));
    let mut launch = Launch::udp(kind, LOOPS);
    launch.wrapper = exact::callgrind_wrapper(&out);
    let server = ServerChild::launch(&launch)?;
    let mut client = UdpClient::connect(server.addr(), load)?;
    let window = client.run(secs)?;
    let drained = client.drain()?;
    drop(client);
    server.quit()?;
    let instructions = exact::callgrind_total(&out);
    exact::discard_callgrind_out(&out);
    let answered = |w: &common::udp_load::UdpWindow| w.received + w.late + w.duplicates;
    Ok(Counted {
        instructions: instructions?,
        answered: answered(&window) + answered(&drained),
        lost: window.lost + drained.lost,
    })
}

/// `--exact`: user-space instructions per datagram under callgrind.
fn exact(config: &Config) -> ExitCode {
    let version = match exact::check_valgrind() {
        Ok(version) => version,
        Err(e) => {
            eprintln!("udp bench --exact: {e}");
            return ExitCode::FAILURE;
        }
    };
    println!(
        "## UDP echo, exact: user-space instructions per datagram ({version}, callgrind)\n\n\
         {} B datagrams, {} client sockets × {} in flight. Each server twice under \
         callgrind, {} s and {} s of load; instructions/datagram = Δinstructions / \
         Δdatagrams answered.\n\n\
         | server | datagrams, short | datagrams, long | instructions/datagram | vs mio | lost |\n\
         | --- | ---: | ---: | ---: | ---: | ---: |",
        config.load.payload,
        config.load.sockets,
        config.load.window,
        EXACT_SHORT.as_secs(),
        EXACT_LONG.as_secs(),
    );
    let mut mio = None;
    let mut ok = true;
    for &kind in &config.servers {
        let result = callgrind_run(kind, config.load, EXACT_SHORT)
            .and_then(|short| Ok((short, callgrind_run(kind, config.load, EXACT_LONG)?)));
        match result {
            Ok((short, long)) if long.answered > short.answered => {
                let per = (long.instructions as f64 - short.instructions as f64)
                    / (long.answered - short.answered) as f64;
                if kind == ServerKind::Mio {
                    mio = Some(per);
                }
                println!(
                    "| {kind} | {} | {} | {per:.1} | {} | {} |",
                    report::thousands(short.answered as f64),
                    report::thousands(long.answered as f64),
                    mio.map_or("–".into(), |m| format!("{:.2}×", per / m)),
                    short.lost + long.lost,
                );
            }
            Ok(_) => {
                println!("| {kind} | failed: the long run answered no more than the short one |");
                ok = false;
            }
            Err(e) => {
                let why = match e {
                    RunError::Corrupt(why) => format!("wrong answer: {why}"),
                    RunError::Failed(why) => why,
                };
                println!("| {kind} | failed: {why} | – | – | – | – |");
                ok = false;
            }
        }
    }
    if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

fn parse(args: &[String]) -> Result<Config, String> {
    let value = |flag: &str| -> Result<Option<&str>, String> {
        match args.iter().position(|a| a == flag) {
            None => Ok(None),
            Some(i) => args
                .get(i + 1)
                .map(|v| Some(v.as_str()))
                .ok_or_else(|| format!("{flag} needs a value")),
        }
    };
    fn number<T: std::str::FromStr>(v: Option<&str>, flag: &str, default: T) -> Result<T, String> {
        v.map_or(Ok(default), |v| {
            v.parse().map_err(|_| format!("{flag}: cannot parse {v:?}"))
        })
    }
    let seconds = |flag: &str, env: &str, default: f64| -> Result<Duration, String> {
        let from_env = std::env::var(env).ok();
        let v = value(flag)?.or(from_env.as_deref());
        let secs: f64 = number(v, flag, default)?;
        Duration::try_from_secs_f64(secs).map_err(|_| format!("{flag}: {secs} is not valid"))
    };
    let quick = !args.iter().any(|a| a == "--bench");
    let (rounds, warmup, secs, syscall_secs) = if quick {
        (1, 0.1, 0.3, 0.0)
    } else {
        (3, 1.0, 3.0, 1.0)
    };
    let servers = match value("--servers")? {
        Some(list) => servers::parse_list(list, true)?,
        None => vec![
            ServerKind::Mio,
            ServerKind::Tokio,
            ServerKind::Tether,
            ServerKind::TetherBatch,
        ],
    };
    let config = Config {
        quick,
        servers,
        load: UdpLoad {
            sockets: number(value("--sockets")?, "--sockets", 8)?,
            window: number(value("--window")?, "--window", 16)?,
            payload: number(value("--size")?, "--size", 64)?,
        },
        rounds: number(value("--rounds")?, "--rounds", rounds)?,
        warmup: seconds("--warmup", "TETHER_BENCH_WARMUP", warmup)?,
        measure: seconds("--secs", "TETHER_BENCH_SECS", secs)?,
        syscall_window: seconds("--syscall-secs", "TETHER_BENCH_SYSCALL_SECS", syscall_secs)?,
    };
    if config.servers.is_empty() || config.rounds == 0 || config.measure.is_zero() {
        return Err("--servers, --rounds and --secs must not be empty or zero".into());
    }
    if config.load.sockets == 0 || config.load.window == 0 {
        return Err("--sockets and --window must be at least 1".into());
    }
    if !(8..=1024).contains(&config.load.payload) {
        return Err("--size must be 8 to 1024 bytes (a sequence number comes first)".into());
    }
    Ok(config)
}

fn bench(config: &Config) -> ExitCode {
    let pinned = match sys::pin_to_cpu(LOAD_CPU) {
        Ok(pinned) => pinned,
        Err(e) => {
            eprintln!("warning: cannot pin the load generator: {e}");
            false
        }
    };
    let use_perf = !config.syscall_window.is_zero()
        && match perf::check() {
            Ok(()) => true,
            Err(e) => {
                eprintln!("warning: no syscall counts: {e}");
                false
            }
        };
    let names: Vec<String> = config.servers.iter().map(ToString::to_string).collect();
    println!(
        "## UDP echo {}: {}\n\n\
         Loopback, one server loop, {}. {} B datagrams, {} client sockets × {} in flight \
         (sendmmsg/recvmmsg on the client side), every answer verified, a datagram \
         unanswered for 200 ms counted lost. Each run: a fresh server process, {} s warmup, \
         {} s measured{}; servers in turn, {}.\n",
        if config.quick {
            "quick check (no --bench)"
        } else {
            "benchmark"
        },
        names.join(" vs "),
        if pinned {
            "server pinned to CPU 1, load generator to CPU 0"
        } else {
            "one CPU: no pinning"
        },
        config.load.payload,
        config.load.sockets,
        config.load.window,
        config.warmup.as_secs_f64(),
        config.measure.as_secs_f64(),
        if use_perf {
            format!(
                ", then {} s counted by perf stat -e raw_syscalls:sys_enter",
                config.syscall_window.as_secs_f64()
            )
        } else {
            String::new()
        },
        match config.rounds {
            1 => "one round".to_owned(),
            n => format!("{n} rounds, medians shown"),
        },
    );
    let warn_if_loaded = || {
        if let Some(warning) = procstat::load_warning() {
            println!("{warning}\n");
        }
    };
    warn_if_loaded();
    let run = |kind| measure(kind, config, use_perf);
    let show = |f: &Figures| {
        format!(
            "{} dgram/s, p99 {:.1} µs, {:.2} CPU µs/dgram{}, lost {}/{}",
            report::thousands(f.dgram_per_sec),
            f.p99_us,
            f.cpu_us_per_dgram,
            f.syscalls_per_dgram
                .map_or(String::new(), |s| format!(", {s:.3} syscalls/dgram")),
            f.lost,
            f.sent
        )
    };
    let label = format!("udp {} B", config.load.payload);
    let Some(runs) = in_turn(&config.servers, config.rounds, &label, run, show) else {
        return ExitCode::FAILURE;
    };
    println!("{}", table(config, &runs));
    warn_if_loaded();
    let failed: usize = runs.iter().map(Runs::failures).sum();
    if failed > 0 {
        eprintln!("udp bench: {failed} runs failed");
        return ExitCode::FAILURE;
    }
    ExitCode::SUCCESS
}

/// Warms up, then measures `kind`; then, with perf, counts its syscalls.
fn measure(kind: ServerKind, config: &Config, use_perf: bool) -> Result<Figures, RunError> {
    let mut server = ServerChild::launch(&Launch::udp(kind, LOOPS))?;
    let mut client = UdpClient::connect(server.addr(), config.load)?;
    client.run(config.warmup)?;

    let cpu_before = server.cpu_time()?;
    server.request_allocations()?;
    let window = client.run(config.measure)?;
    server.request_allocations()?;
    let cpu_after = server.cpu_time()?;
    let allocs_before = server.allocations()?;
    let allocs_after = server.allocations()?;

    let syscalls_per_dgram = if use_perf {
        // Nothing in flight while perf attaches; every answer to what is sent while
        // it counts is received before it stops.
        client.drain()?;
        let counter = SyscallCounter::attach(server.pid()).map_err(RunError::Failed)?;
        let counted = client.run(config.syscall_window)?;
        let drained = client.drain()?;
        let count = counter.finish().map_err(RunError::Failed)?;
        let answered = counted.received + drained.received;
        Some(count.total as f64 / answered.max(1) as f64)
    } else {
        None
    };
    drop(client);
    report_quit(server);

    if window.received == 0 {
        return Err(RunError::Failed(format!(
            "no datagram answered ({} sent, {} lost)",
            window.sent, window.lost
        )));
    }
    let received = window.received as f64;
    let quantile_us = |q| window.latency.value_at_quantile(q) as f64 / 1000.0;
    Ok(Figures {
        dgram_per_sec: received / window.elapsed.as_secs_f64(),
        p50_us: quantile_us(0.5),
        p99_us: quantile_us(0.99),
        cpu_us_per_dgram: (cpu_after - cpu_before).as_secs_f64() * 1e6 / received,
        allocs_per_dgram: (allocs_after - allocs_before) as f64 / received,
        syscalls_per_dgram,
        lost: window.lost,
        late: window.late,
        duplicates: window.duplicates,
        sent: window.sent,
    })
}

fn table(config: &Config, runs: &[Runs<Figures>]) -> String {
    let mut out = format!(
        "### UDP echo, {} B datagrams, {} sockets × {} in flight\n\n\
         | server | datagrams/s | p50 µs | p99 µs | CPU µs/dgram | syscalls/dgram | allocs/dgram \
         | lost / sent | dgram/s vs mio | CPU/dgram vs mio |\n\
         | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |\n",
        config.load.payload, config.load.sockets, config.load.window
    );
    let mio = runs.iter().find(|r| r.kind == ServerKind::Mio);
    let med = |r: &Runs<Figures>, f: fn(&Figures) -> f64| median(r.successes().map(f).collect());
    for server in runs {
        let Some(rate) = med(server, |f| f.dgram_per_sec) else {
            let why = server.failure().unwrap_or("no run");
            let _ = writeln!(
                out,
                "| {} | failed: {why} |{}",
                server.kind,
                " – |".repeat(8)
            );
            continue;
        };
        let vs_mio = |f: fn(&Figures) -> f64| {
            mio.and_then(|m| paired_ratio(server, m, f))
                .map_or("–".to_owned(), |r| format!("{r:.3}×"))
        };
        let syscalls = median(
            server
                .successes()
                .filter_map(|f| f.syscalls_per_dgram)
                .collect(),
        );
        let (lost, sent, late, dups) = server.successes().fold((0, 0, 0, 0), |acc, f| {
            (
                acc.0 + f.lost,
                acc.1 + f.sent,
                acc.2 + f.late,
                acc.3 + f.duplicates,
            )
        });
        let mut lost_cell = format!("{lost} / {}", report::thousands(sent as f64));
        if late + dups > 0 {
            let _ = write!(lost_cell, " ({late} late, {dups} dup)");
        }
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {:.3} | {} | {:.2} | {lost_cell} | {} | {} |",
            server.label(),
            report::thousands(rate),
            report::micros(med(server, |f| f.p50_us).unwrap_or(f64::NAN)),
            report::micros(med(server, |f| f.p99_us).unwrap_or(f64::NAN)),
            med(server, |f| f.cpu_us_per_dgram).unwrap_or(f64::NAN),
            syscalls.map_or("–".to_owned(), |s| format!("{s:.3}")),
            med(server, |f| f.allocs_per_dgram).unwrap_or(f64::NAN),
            vs_mio(|f| f.dgram_per_sec),
            vs_mio(|f| f.cpu_us_per_dgram),
        );
    }
    out.push_str(
        "\nRatios vs mio are medians of per-round ratios (each round's runs are adjacent in \
         time); lost / sent are summed over rounds.\n",
    );
    for variant in runs {
        let Some(base) = variant
            .kind
            .base()
            .and_then(|b| runs.iter().find(|r| r.kind == b))
        else {
            continue;
        };
        let ratio = |f: fn(&Figures) -> f64| {
            paired_ratio(variant, base, f).map_or("–".to_owned(), |r| format!("{r:.3}×"))
        };
        let _ = writeln!(
            out,
            "{} vs {}: datagrams/s {}, CPU µs/dgram {}, p99 {}",
            variant.kind,
            base.kind,
            ratio(|f| f.dgram_per_sec),
            ratio(|f| f.cpu_us_per_dgram),
            ratio(|f| f.p99_us),
        );
    }
    out
}
