//! End-to-end echo benchmark: tether against a raw mio loop and idiomatic tokio.
//!
//! `cargo bench -p tether-bench --bench echo` (add `-- --help` for the options). Each server runs in
//! its own child process, this binary re-executed with `--server`, pinned to CPU 1;
//! the load generator (tether-load, one load loop) runs here, pinned to CPU 0. Servers are run
//! in turn (A B C A B C …), each run against a fresh child, and the tables show each
//! server's median and its ratios to raw mio, the practical limit: on a shared,
//! noisy machine ratios measured side by side hold where absolute numbers do not
//! (see BENCHMARKING.md).
//!
//! Per server and case: requests/s, p50/p99/p99.9 latency, server CPU time per
//! request (from /proc, stable even when the load generator is the bottleneck), heap
//! allocations per request (a counting global allocator), and peak RSS. The idle case
//! reports server RSS growth per held connection, then the server's CPU time and
//! loop wakeups while every connection stays idle for `--idle-secs` (5 s). Every
//! echoed byte is verified; a wrong byte aborts the bench.
//!
//! `tether-idle` is tether with `Options::idle_timeout` = 60 s (one armed timer-wheel
//! entry per connection, no heartbeat). By default it runs in the idle case and in
//! the 64 B, 100-connection case, next to plain tether, and each table is followed by
//! its ratios to tether, round by round.
//!
//! `-- --exact` (or `benches/exact.sh`) counts user-space instructions per request
//! under callgrind and syscalls per request under `perf stat` instead: see
//! `common/exact.rs`.
//!
//! `cargo test -p tether-bench --bench echo` runs the same binary without `--bench`: then the
//! defaults shrink to a quick check (one short round) that every server starts,
//! echoes correctly and stops, in about ten seconds.

mod common;

use std::process::ExitCode;

use common::alloc::CountingAlloc;
use common::config::{self, Config, Mode};
use common::measure::{self, Case, Figures, IdleFigures};
use common::report::{self, Runs};
use common::rotation::in_turn;
use common::servers;
use common::wire::Proto;
use common::{exact, procstat, sys};

#[global_allocator]
static ALLOC: CountingAlloc = CountingAlloc;

/// The load generator's CPU; server children pin themselves to the other one.
const LOAD_CPU: usize = 0;

/// File descriptors the parent needs beyond its connections (pipes, epoll, std).
const SPARE_FDS: u64 = 64;

fn main() -> ExitCode {
    match config::parse(std::env::args().skip(1)) {
        Ok(Mode::Server(args)) => servers::child_main(&args),
        Ok(Mode::Bench(config)) => bench(&config),
        Ok(Mode::Exact(config)) => {
            if let Err(e) = sys::pin_to_cpu(LOAD_CPU) {
                eprintln!("warning: cannot pin the load generator: {e}");
            }
            exact::run(&config)
        }
        Ok(Mode::Help) => {
            println!("{}", config::USAGE);
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("echo bench: {e}\n\n{}", config::USAGE);
            ExitCode::from(2)
        }
    }
}

fn bench(config: &Config) -> ExitCode {
    let most_conns = config
        .conns
        .iter()
        .copied()
        .max()
        .unwrap_or(0)
        .max(config.idle);
    match sys::raise_open_file_limit() {
        Ok(limit) if (most_conns as u64) + SPARE_FDS > limit => {
            eprintln!(
                "echo bench: {most_conns} connections do not fit the open-file limit of {limit}"
            );
            return ExitCode::FAILURE;
        }
        Ok(_) => {}
        Err(e) => eprintln!("warning: cannot raise the open-file limit: {e}"),
    }
    let pinned = match sys::pin_to_cpu(LOAD_CPU) {
        Ok(pinned) => pinned,
        Err(e) => {
            eprintln!("warning: cannot pin the load generator: {e}");
            false
        }
    };
    print_setup(config, pinned);
    warn_if_loaded();

    let mut summaries = Vec::new();
    let mut failed_runs = 0;
    for &payload in &config.sizes {
        for &conns in &config.conns {
            let case = Case { payload, conns };
            let label = format!("{} {} c={conns}", config.proto, report::size_label(payload));
            let run = |kind| measure::load(kind, case, config);
            let show = |f: &Figures| {
                format!(
                    "{} req/s, p99 {:.1} µs, {:.2} CPU µs/req",
                    report::thousands(f.req_per_sec),
                    f.p99_us,
                    f.cpu_us_per_req
                )
            };
            let servers = config.servers_for_load(payload, conns);
            let Some(runs) = in_turn(&servers, config.rounds, &label, run, show) else {
                return ExitCode::FAILURE;
            };
            failed_runs += runs.iter().map(Runs::failures).sum::<usize>();
            println!("{}", report::load_table(&table_title(config, case), &runs));
            let variants = report::variant_lines(&runs);
            if !variants.is_empty() {
                println!("{variants}");
            }
            summaries.push(report::summary_line(
                &summary_label(config.proto, case),
                &runs,
            ));
        }
    }
    if config.idle > 0 {
        let label = format!("{} idle c={}", config.proto, config.idle);
        let run = |kind| measure::idle(kind, config);
        let show = |f: &IdleFigures| {
            format!(
                "{:.0} B per connection; idle {:.0} ms CPU (/proc), {:.0} µs (clock), {:.1} wakeups/s",
                f.rss_per_conn, f.cpu_ms, f.cpu_us, f.wakeups_per_sec
            )
        };
        let servers = config.servers_for_idle();
        let Some(runs) = in_turn(&servers, config.rounds, &label, run, show) else {
            return ExitCode::FAILURE;
        };
        failed_runs += runs.iter().map(Runs::failures).sum::<usize>();
        let title = format!(
            "{} idle connections ({}): server RSS growth per connection; server CPU while \
             all stay idle for {:.1} s",
            report::thousands(config.idle as f64),
            config.proto,
            config.idle_hold.as_secs_f64(),
        );
        println!("{}", report::idle_table(&title, &runs));
    }

    println!("Summary:\n```\n{}\n```", summaries.join("\n"));
    warn_if_loaded();
    if failed_runs > 0 {
        eprintln!("echo bench: {failed_runs} runs failed");
        return ExitCode::FAILURE;
    }
    ExitCode::SUCCESS
}

/// Says so when other processes compete for the CPUs.
fn warn_if_loaded() {
    if let Some(warning) = procstat::load_warning() {
        println!("{warning}\n");
    }
}

fn print_setup(config: &Config, pinned: bool) {
    let mut names: Vec<String> = config.servers.iter().map(ToString::to_string).collect();
    if !config.servers_given {
        names.push(format!(
            "tether-idle (idle case, {} B c={})",
            config::IDLE_VARIANT_CASE.0,
            config::IDLE_VARIANT_CASE.1
        ));
    }
    let placement = if pinned {
        "server pinned to CPU 1, load generator to CPU 0"
    } else {
        "one CPU: no pinning"
    };
    let kind = if config.quick {
        "quick check (no --bench)"
    } else {
        "benchmark"
    };
    println!(
        "## Echo {kind}: {}\n\n\
         Loopback, one server loop, {placement}. Each run: a fresh server process, {} s \
         warmup, {} s measured; servers run in turn, {}; every echoed byte verified. \
         CPU µs/req is the server's user + system time per request, allocs/req its heap \
         allocations per request, peak RSS its VmHWM.\n",
        names.join(" vs "),
        config.warmup.as_secs_f64(),
        config.measure.as_secs_f64(),
        match config.rounds {
            1 => "one round".to_owned(),
            n => format!("{n} rounds, medians shown"),
        },
    );
}

fn table_title(config: &Config, case: Case) -> String {
    let pacing = match config.rate {
        Some(rate) => format!(
            "open loop at {} req/s, at most {} in flight per connection",
            report::thousands(rate),
            config.depth
        ),
        None => format!("closed loop, {} in flight per connection", config.depth),
    };
    let conns = match case.conns {
        1 => "1 connection".to_owned(),
        n => format!("{} connections", report::thousands(n as f64)),
    };
    format!(
        "{} echo, {} payload, {conns} ({pacing})",
        config.proto,
        report::size_label(case.payload),
    )
}

/// `64B c=100`, `frame 256B c=100`.
fn summary_label(proto: Proto, case: Case) -> String {
    let size = report::size_label(case.payload).replace(' ', "");
    match proto {
        Proto::Raw => format!("{size} c={}", case.conns),
        Proto::Frame => format!("frame {size} c={}", case.conns),
    }
}
