//! `--exact`: figures that do not move with the machine's noise (BENCHMARKING.md,
//! "Exact figures on a noisy machine").
//!
//! - User-space instructions per request: each server runs under
//!   `valgrind --tool=callgrind` twice, once for a short and once for a long
//!   closed-loop load of 64 B echo requests; (instructions of the long run −
//!   instructions of the short one) / (requests of the long − of the short). Start,
//!   connection setup and shutdown cost the same in both runs and cancel out.
//! - Syscalls per request: each server runs natively under a fixed number of
//!   requests while `perf stat -e raw_syscalls:sys_enter -p PID` counts.

use std::fmt::Write as _;
use std::fs;
use std::io;
use std::path::Path;
use std::process::{Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use super::child::{Launch, ServerChild};
use super::config::ExactConfig;
use super::load::{Client, Load};
use super::measure::{RunError, SETUP_DEADLINE, report_quit};
use super::perf::{self, SyscallCount, SyscallCounter, TRACKED};
use super::procstat;
use super::report::{self, Runs};
use super::rotation::in_turn;
use super::servers::ServerKind;

/// A counted load must finish within this (valgrind runs the server 20–100× slower).
const LOAD_LIMIT: Duration = Duration::from_secs(900);
/// Under callgrind, connecting takes longer too.
const SLOW_SETUP: Duration = Duration::from_secs(300);
/// Load before the counted window of a perf run, so the server is warm.
const WARMUP: Duration = Duration::from_millis(500);

pub fn run(config: &ExactConfig) -> ExitCode {
    let load = Load {
        proto: config.proto,
        payload: config.payload,
        depth: config.depth,
        rate: None,
    };
    let names: Vec<String> = config.servers.iter().map(ToString::to_string).collect();
    println!(
        "## Exact figures: {}\n\n\
         Loopback, one server loop pinned to CPU 1, load generator on CPU 0; closed loop, \
         {} B {} echo requests, {} connections, {} in flight each; every echoed byte \
         verified.\n",
        names.join(" vs "),
        config.payload,
        config.proto,
        config.conns,
        config.depth,
    );
    let mut ok = true;
    if let Some(warning) = procstat::load_warning() {
        println!("{warning}\n");
    }
    if config.callgrind {
        match check_valgrind() {
            Ok(version) => ok &= instructions(config, load, &version),
            Err(e) => {
                eprintln!("echo bench --exact: {e}");
                ok = false;
            }
        }
    }
    if config.perf {
        match perf::check() {
            Ok(()) => ok &= syscalls(config, load),
            Err(e) => {
                eprintln!("echo bench --exact: {e}");
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

/// Checks that valgrind runs; its version, or a message that says what to do.
pub fn check_valgrind() -> Result<String, String> {
    let output = Command::new("valgrind")
        .arg("--version")
        .stdin(Stdio::null())
        .output()
        .map_err(|e| match e.kind() {
            io::ErrorKind::NotFound => {
                "valgrind not found: install it (Debian: apt-get install valgrind), \
                 or pass --no-callgrind"
                    .to_owned()
            }
            _ => format!("cannot run valgrind: {e}"),
        })?;
    if !output.status.success() {
        return Err(format!("valgrind --version exited with {}", output.status));
    }
    Ok(String::from_utf8_lossy(&output.stdout).trim().to_owned())
}

/// One callgrind run: user-space instructions of the whole server process, and
/// the requests it answered (the connections' first round trips included).
struct Counted {
    instructions: u64,
    requests: u64,
}

fn callgrind_run(
    kind: ServerKind,
    load: Load,
    conns: usize,
    requests: u64,
) -> Result<Counted, RunError> {
    let out = callgrind_out(&format!("{kind}-{requests}"));
    let mut launch = Launch::tcp(kind, load.proto, 1);
    launch.wrapper = callgrind_wrapper(&out);
    let server = ServerChild::launch(&launch)?;
    let mut client = Client::connect(server.addr(), conns, load, Instant::now() + SLOW_SETUP)?;
    let window = client.run_requests(requests, LOAD_LIMIT)?;
    drop(client);
    server.quit()?;
    let instructions = callgrind_total(&out);
    discard_callgrind_out(&out);
    Ok(Counted {
        instructions: instructions?,
        requests: window.requests + conns as u64,
    })
}

/// The command a server child runs under to count its instructions into `out`.
pub fn callgrind_wrapper(out: &Path) -> Vec<String> {
    vec![
        "valgrind".into(),
        "--tool=callgrind".into(),
        "--quiet".into(),
        format!("--callgrind-out-file={}", out.display()),
    ]
}

/// A fresh path for a callgrind output file.
pub fn callgrind_out(label: &str) -> std::path::PathBuf {
    let out = std::env::temp_dir().join(format!(
        "tether-bench-callgrind-{label}-{}.out",
        std::process::id()
    ));
    let _ = fs::remove_file(&out);
    out
}

/// Removes a callgrind output file once read, unless `TETHER_BENCH_KEEP_CALLGRIND`
/// is set: then it is kept for `callgrind_annotate` and its path printed.
pub fn discard_callgrind_out(out: &Path) {
    if std::env::var_os("TETHER_BENCH_KEEP_CALLGRIND").is_some() {
        eprintln!("kept {}", out.display());
    } else {
        let _ = fs::remove_file(out);
    }
}

/// The total of the `summary:` (or `totals:`) line of a callgrind output file.
pub fn callgrind_total(path: &Path) -> Result<u64, RunError> {
    let text = fs::read_to_string(path)
        .map_err(|e| RunError::Failed(format!("no callgrind output {}: {e}", path.display())))?;
    text.lines()
        .find_map(|l| {
            l.strip_prefix("summary:")
                .or_else(|| l.strip_prefix("totals:"))
        })
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .ok_or_else(|| RunError::Failed(format!("no summary line in {}", path.display())))
}

fn instructions(config: &ExactConfig, load: Load, version: &str) -> bool {
    println!(
        "### User-space instructions per request ({version}, callgrind)\n\n\
         Each server twice under callgrind: {} and {} requests; instructions/request = \
         Δinstructions / Δrequests. Fixed = instructions outside the per-request cost \
         (start, {} connects, shutdown).\n",
        report::thousands(config.short as f64),
        report::thousands(config.long as f64),
        config.conns,
    );
    let mut rows = Vec::new();
    let mut ok = true;
    for &kind in &config.servers {
        let result = (|| {
            let short = callgrind_run(kind, load, config.conns, config.short)?;
            let long = callgrind_run(kind, load, config.conns, config.long)?;
            Ok::<_, RunError>((short, long))
        })();
        match result {
            Ok((short, long)) => {
                let per_request = (long.instructions as f64 - short.instructions as f64)
                    / (long.requests as f64 - short.requests as f64);
                let fixed = short.instructions as f64 - per_request * short.requests as f64;
                eprintln!(
                    "[exact] {kind}: {} instructions / {} requests, {} / {}: {per_request:.1} per request",
                    short.instructions, short.requests, long.instructions, long.requests
                );
                rows.push((kind, Ok((short, long, per_request, fixed))));
            }
            Err(e) => {
                let why = match e {
                    RunError::Corrupt(e) => format!("echoed wrong bytes: {e}"),
                    RunError::Failed(why) => why,
                };
                eprintln!("[exact] {kind}: callgrind run failed: {why}");
                rows.push((kind, Err(why)));
                ok = false;
            }
        }
    }
    let mio = rows.iter().find_map(|(k, r)| match r {
        Ok((_, _, per, _)) if *k == ServerKind::Mio => Some(*per),
        _ => None,
    });
    let mut out = String::from(
        "| server | instructions, short | instructions, long | instructions/request | vs mio | fixed |\n\
         | --- | ---: | ---: | ---: | ---: | ---: |\n",
    );
    for (kind, row) in &rows {
        match row {
            Ok((short, long, per, fixed)) => {
                let _ = writeln!(
                    out,
                    "| {kind} | {} | {} | {per:.1} | {} | {} |",
                    report::thousands(short.instructions as f64),
                    report::thousands(long.instructions as f64),
                    mio.map_or("–".into(), |m| format!("{:.2}×", per / m)),
                    report::thousands(*fixed),
                );
            }
            Err(why) => {
                let _ = writeln!(out, "| {kind} | failed: {why} | – | – | – | – |");
            }
        }
    }
    println!("{out}");
    ok
}

/// One perf run's figures.
#[derive(Clone, Debug)]
struct SyscallFigures {
    per_request: f64,
    tracked_per_request: Vec<f64>,
    req_per_sec: f64,
    p99_us: f64,
}

fn perf_run(
    kind: ServerKind,
    load: Load,
    config: &ExactConfig,
) -> Result<SyscallFigures, RunError> {
    let server = ServerChild::spawn(kind, load.proto, 1)?;
    let mut client = Client::connect(
        server.addr(),
        config.conns,
        load,
        Instant::now() + SETUP_DEADLINE,
    )?;
    client.run(WARMUP)?;
    // Nothing in flight while perf attaches: the server is idle in epoll_wait.
    client.run_requests(0, LOAD_LIMIT)?;
    let counter = SyscallCounter::attach(server.pid()).map_err(RunError::Failed)?;
    let window = client.run_requests(config.syscall_requests, LOAD_LIMIT)?;
    let count: SyscallCount = counter.finish().map_err(RunError::Failed)?;
    drop(client);
    report_quit(server);
    let requests = window.requests as f64;
    Ok(SyscallFigures {
        per_request: count.total as f64 / requests,
        tracked_per_request: count.tracked.iter().map(|&n| n as f64 / requests).collect(),
        req_per_sec: requests / window.elapsed.as_secs_f64(),
        p99_us: window.latency.value_at_quantile(0.99) as f64 / 1000.0,
    })
}

fn syscalls(config: &ExactConfig, load: Load) -> bool {
    let label = "exact syscalls";
    let run = |kind| perf_run(kind, load, config);
    let show = |f: &SyscallFigures| {
        format!(
            "{:.3} syscalls/req, {} req/s, p99 {:.1} µs",
            f.per_request,
            report::thousands(f.req_per_sec),
            f.p99_us
        )
    };
    let Some(runs) = in_turn(&config.servers, config.rounds, label, run, show) else {
        return false;
    };
    println!(
        "### Syscalls per request (perf stat -e raw_syscalls:sys_enter -p PID)\n\n\
         Each server natively, {} requests counted after {} ms of warmup; {} rounds in \
         turn, medians shown. req/s and p99 are those of the counted window, perf \
         attached; compare at equal latency (a server that delays work batches more).\n",
        report::thousands(config.syscall_requests as f64),
        WARMUP.as_millis(),
        config.rounds,
    );
    println!("{}", syscall_table(&runs));
    runs.iter().all(|r| r.failures() == 0)
}

fn syscall_table(runs: &[Runs<SyscallFigures>]) -> String {
    let med = |r: &Runs<SyscallFigures>, f: &dyn Fn(&SyscallFigures) -> f64| {
        report::median(r.successes().map(f).collect())
    };
    // Only the syscalls some server makes.
    let shown: Vec<usize> = (0..TRACKED.len())
        .filter(|&i| {
            runs.iter()
                .any(|r| med(r, &|f| f.tracked_per_request[i]).is_some_and(|v| v >= 0.0005))
        })
        .collect();
    let mio = runs
        .iter()
        .find(|r| r.kind == ServerKind::Mio)
        .and_then(|r| med(r, &|f| f.per_request));
    let mut out = String::from("| server | syscalls/req | vs mio |");
    for &i in &shown {
        let _ = write!(out, " {} |", TRACKED[i].0);
    }
    out.push_str(" req/s | p99 µs |\n| --- | ---: | ---: |");
    out.push_str(&" ---: |".repeat(shown.len() + 2));
    out.push('\n');
    for server in runs {
        let Some(total) = med(server, &|f| f.per_request) else {
            let why = server.failure().unwrap_or("no run");
            let _ = writeln!(
                out,
                "| {} | failed: {why} |{}",
                server.kind,
                " – |".repeat(shown.len() + 3)
            );
            continue;
        };
        let _ = write!(
            out,
            "| {} | {total:.3} | {} |",
            server.label(),
            mio.map_or("–".into(), |m| format!("{:.2}×", total / m))
        );
        for &i in &shown {
            let v = med(server, &|f| f.tracked_per_request[i]).unwrap_or(f64::NAN);
            let _ = write!(out, " {v:.3} |");
        }
        let _ = writeln!(
            out,
            " {} | {} |",
            report::thousands(med(server, &|f| f.req_per_sec).unwrap_or(f64::NAN)),
            report::micros(med(server, &|f| f.p99_us).unwrap_or(f64::NAN)),
        );
    }
    out
}
