//! What the protocol benches (`http`, `resp`) share: server children pinned to
//! their own CPU, their CPU time and heap allocations, the load generators run
//! on the other CPU, and medians.
//!
//! A tether server child is the bench binary re-executed with `--server`; it
//! counts its allocations with the counting global allocator and answers an
//! `allocs` line on stdin with `allocs N`. Reference servers (may_minihttp in
//! the same binary, redis-server outside it) are pinned the same way.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, ChildStdin, Command, Output, Stdio};
use std::sync::mpsc::{Receiver, channel};
use std::time::{Duration, Instant};

#[path = "../common/alloc.rs"]
pub mod alloc;
#[path = "../common/procstat.rs"]
pub mod procstat;

/// The server's CPU; the load generator runs on the other one.
pub const SERVER_CPU: &str = "1";
pub const LOAD_CPU: &str = "0";

const DEADLINE: Duration = Duration::from_secs(10);

/// A server process pinned to [`SERVER_CPU`], killed on drop.
pub struct ServerChild {
    pub name: String,
    child: Child,
    stdin: Option<ChildStdin>,
    lines: Option<Receiver<String>>,
    pub addr: SocketAddr,
}

impl ServerChild {
    /// This bench binary as a server: `args` after `--server`; waits for its
    /// `listening on ADDR` line.
    pub fn own(name: &str, args: &[&str]) -> Result<ServerChild, String> {
        let exe = std::env::current_exe().map_err(|e| e.to_string())?;
        let mut child = Command::new("taskset")
            .args(["-c", SERVER_CPU])
            .arg(exe)
            .arg("--server")
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .map_err(|e| format!("spawn {name}: {e}"))?;
        let stdin = child.stdin.take();
        let out = BufReader::new(child.stdout.take().expect("piped"));
        let (tx, rx) = channel();
        std::thread::spawn(move || {
            for line in out.lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let line = rx
            .recv_timeout(DEADLINE)
            .map_err(|_| format!("{name} did not start"))?;
        let addr = line
            .strip_prefix("listening on ")
            .and_then(|a| a.parse().ok())
            .ok_or(format!("{name}: unexpected first line {line:?}"))?;
        Ok(ServerChild {
            name: name.to_string(),
            child,
            stdin,
            lines: Some(rx),
            addr,
        })
    }

    /// An outside server (`program args…`) that listens on `addr`; waits until
    /// it accepts.
    pub fn external(
        name: &str,
        program: &str,
        args: &[&str],
        addr: SocketAddr,
    ) -> Result<ServerChild, String> {
        let child = Command::new("taskset")
            .args(["-c", SERVER_CPU, program])
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("spawn {program}: {e}"))?;
        let end = Instant::now() + DEADLINE;
        while TcpStream::connect(addr).is_err() {
            if Instant::now() > end {
                return Err(format!("{name} does not accept on {addr}"));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(ServerChild {
            name: name.to_string(),
            child,
            stdin: None,
            lines: None,
            addr,
        })
    }

    /// User + system CPU time of the server so far.
    pub fn cpu(&self) -> Duration {
        procstat::cpu_time(self.child.id()).unwrap_or_default()
    }

    /// Heap allocations the server made so far (tether children only).
    pub fn allocations(&mut self) -> Option<u64> {
        let stdin = self.stdin.as_mut()?;
        stdin.write_all(b"allocs\n").ok()?;
        stdin.flush().ok()?;
        let line = self.lines.as_ref()?.recv_timeout(DEADLINE).ok()?;
        line.strip_prefix("allocs ")?.parse().ok()
    }
}

impl Drop for ServerChild {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// In a server child: announces `addr`, then answers `allocs` lines until
/// stdin closes, and exits.
pub fn child_serve(addr: SocketAddr) -> ! {
    println!("listening on {addr}");
    let _ = std::io::stdout().flush();
    let stdin = std::io::stdin();
    for line in stdin.lock().lines().map_while(Result::ok) {
        if line.trim() == "allocs" {
            println!("allocs {}", alloc::allocations());
            let _ = std::io::stdout().flush();
        }
    }
    std::process::exit(0)
}

/// [`child_serve`] for a tether engine that started, or the failure.
pub fn child_serve_engine(engine: Result<tether::Engine, tether::Error>) -> std::process::ExitCode {
    match engine {
        // Kept running until the process exits.
        Ok(engine) => child_serve(engine.local_addrs()[0]),
        Err(e) => {
            eprintln!("tether: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// Runs a load generator pinned to [`LOAD_CPU`].
pub fn load(program: &str, args: &[String]) -> Result<Output, String> {
    Command::new("taskset")
        .args(["-c", LOAD_CPU, program])
        .args(args)
        .output()
        .map_err(|e| format!("run {program}: {e}"))
}

/// The median of `values` (0 when empty).
pub fn median(mut values: Vec<f64>) -> f64 {
    if values.is_empty() {
        return 0.0;
    }
    values.sort_by(f64::total_cmp);
    let mid = values.len() / 2;
    if values.len() % 2 == 1 {
        values[mid]
    } else {
        (values[mid - 1] + values[mid]) / 2.0
    }
}

/// `1,234,567`
pub fn thousands(value: f64) -> String {
    let digits = format!("{:.0}", value.max(0.0));
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// The one-minute load average, for the report.
pub fn load_average() -> String {
    procstat::load_average().map_or("unknown".to_string(), |l| format!("{l:.2}"))
}

/// Whether a program is installed.
pub fn have(program: &str) -> bool {
    Command::new(program)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok()
}

/// One measured run: requests, requests/s, p99 latency in µs, server CPU per
/// request in µs, allocations per request (if counted).
#[derive(Debug, Clone, Copy, Default)]
pub struct Run {
    pub requests: f64,
    pub rps: f64,
    pub p99_us: f64,
    pub cpu_us: f64,
    pub allocs: Option<f64>,
}

/// Measures `server` around `drive`, which runs the load and returns
/// (requests, requests/s, p99 µs).
pub fn measure(
    server: &mut ServerChild,
    drive: impl FnOnce(SocketAddr) -> Result<(f64, f64, f64), String>,
) -> Result<Run, String> {
    let cpu0 = server.cpu();
    let allocs0 = server.allocations();
    let (requests, rps, p99_us) = drive(server.addr)?;
    let allocs1 = server.allocations();
    let cpu = server.cpu().saturating_sub(cpu0);
    let per = requests.max(1.0);
    Ok(Run {
        requests,
        rps,
        p99_us,
        cpu_us: cpu.as_secs_f64() * 1e6 / per,
        allocs: match (allocs0, allocs1) {
            // The second query's own line buffer adds a couple of
            // allocations: nothing over a run of millions of requests.
            (Some(a), Some(b)) => Some(b.saturating_sub(a) as f64 / per),
            _ => None,
        },
    })
}

/// Prints one table: per server the medians, and ratios to the first server.
pub fn table(title: &str, rows: &[(String, Vec<Run>)]) {
    println!("\n{title}");
    println!(
        "| server | req/s | p99 µs | CPU µs/req | allocs/req | req/s vs {} | CPU/req vs {} |",
        rows.first().map_or("", |r| r.0.as_str()),
        rows.first().map_or("", |r| r.0.as_str())
    );
    println!("| --- | ---: | ---: | ---: | ---: | ---: | ---: |");
    let med = |runs: &Vec<Run>, f: fn(&Run) -> f64| median(runs.iter().map(f).collect());
    let base = rows
        .first()
        .map(|(_, runs)| (med(runs, |r| r.rps), med(runs, |r| r.cpu_us)));
    for (name, runs) in rows {
        let rps = med(runs, |r| r.rps);
        let cpu = med(runs, |r| r.cpu_us);
        let allocs = if runs.iter().all(|r| r.allocs.is_some()) {
            format!("{:.3}", med(runs, |r| r.allocs.unwrap_or(0.0)))
        } else {
            "–".to_string()
        };
        let (brps, bcpu) = base.unwrap_or((rps, cpu));
        println!(
            "| {name} | {} | {:.0} | {:.2} | {allocs} | {:.2}× | {:.2}× |",
            thousands(rps),
            med(runs, |r| r.p99_us),
            cpu,
            rps / brps.max(1e-9),
            cpu / bcpu.max(1e-9),
        );
    }
}

/// The bench's command line: `--bench` (set by `cargo bench`; without it, as
/// under `cargo test`, a short check runs), `--help`, and numeric flags.
pub struct BenchArgs {
    args: Vec<String>,
}

impl BenchArgs {
    /// The process's arguments; prints `usage` and exits on `--help`.
    pub fn new(usage: &str) -> BenchArgs {
        let args: Vec<String> = std::env::args().skip(1).collect();
        if args.iter().any(|a| a == "--help" || a == "-h") {
            println!("{usage}");
            std::process::exit(0);
        }
        BenchArgs { args }
    }

    /// True under `cargo bench`; false for the short check of `cargo test`.
    pub fn full(&self) -> bool {
        self.args.iter().any(|a| a == "--bench")
    }

    /// The value after `--server`, if the binary runs as a server child.
    pub fn server(&self) -> Option<&str> {
        self.value("--server")
            .or_else(|| self.args.iter().any(|a| a == "--server").then_some(""))
    }

    /// The number after `flag`, or `default`.
    pub fn number<T: std::str::FromStr>(&self, flag: &str, default: T) -> T {
        self.value(flag)
            .and_then(|v| v.parse().ok())
            .unwrap_or(default)
    }

    fn value(&self, flag: &str) -> Option<&str> {
        let i = self.args.iter().position(|a| a == flag)?;
        self.args.get(i + 1).map(String::as_str)
    }
}

/// Prints the load average after the runs; fails if any run failed.
pub fn finish(failed: bool) -> std::process::ExitCode {
    println!("\nload average after: {}", load_average());
    if failed {
        std::process::ExitCode::FAILURE
    } else {
        std::process::ExitCode::SUCCESS
    }
}
