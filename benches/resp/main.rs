//! RESP: the `resp` example's server (tether, one loop) against redis-server 7
//! (`--save "" --appendonly no`), one server core, redis-benchmark on the
//! other.
//!
//! `cargo bench -p tether-bench --bench resp [-- --requests N --rounds R]`. Per round, each
//! server runs in turn pinned to CPU 1 (`taskset`) and redis-benchmark pinned
//! to CPU 0 runs SET, GET and PING_MBULK, `-c 50 -P 16` and `-c 50`
//! unpipelined, one test at a time so that the server's CPU time and (for
//! tether, through a counting global allocator) its heap allocations are
//! measured per command. The tables show medians and ratios to redis-server.

#[path = "../../examples/resp/commands.rs"]
mod commands;
#[path = "../../examples/resp/keyspace.rs"]
mod keyspace;
#[path = "../protocol/mod.rs"]
mod protocol;
#[path = "../../examples/resp/pubsub.rs"]
mod pubsub;
#[path = "../../examples/resp/server.rs"]
mod server;

use std::process::ExitCode;
use std::sync::{Arc, Mutex};

use protocol::{Run, ServerChild, alloc::CountingAlloc};
use tether::Engine;

#[global_allocator]
static ALLOC: CountingAlloc = CountingAlloc;

fn serve_tether() -> ExitCode {
    let db = Arc::new(Mutex::new(keyspace::Keyspace::new()));
    let channels = pubsub::Shared::default();
    let engine = Engine::builder(move |_| server::Server::new(db.clone(), channels.clone()))
        .loops(1)
        .listen("127.0.0.1:0")
        .start();
    protocol::child_serve_engine(engine)
}

fn start(name: &str) -> Result<ServerChild, String> {
    if name == "tether" {
        return ServerChild::own(name, &["tether"]);
    }
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map_err(|e| e.to_string())?
        .port();
    let addr = ([127, 0, 0, 1], port).into();
    let port = port.to_string();
    ServerChild::external(
        name,
        "redis-server",
        &[
            "--port",
            &port,
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
        ],
        addr,
    )
}

/// Runs one redis-benchmark test; returns (requests, requests/s, p99 µs).
fn redis_benchmark(
    addr: std::net::SocketAddr,
    test: &str,
    requests: u64,
    pipeline: u32,
) -> Result<(f64, f64, f64), String> {
    let args: Vec<String> = [
        "-h",
        "127.0.0.1",
        "-p",
        &addr.port().to_string(),
        "-c",
        "50",
        "-P",
        &pipeline.to_string(),
        "-n",
        &requests.to_string(),
        "-t",
        test,
        "--csv",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let out = protocol::load("redis-benchmark", &args)?;
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let err = String::from_utf8_lossy(&out.stderr).to_string();
    if !out.status.success() || err.to_lowercase().contains("error") {
        return Err(format!("redis-benchmark failed:\n{text}{err}"));
    }
    // "test","rps","avg_latency_ms","min_latency_ms","p50_latency_ms","p95_latency_ms","p99_latency_ms","max_latency_ms"
    let row = text
        .lines()
        .find(|l| !l.starts_with("\"test\"") && l.starts_with('"'))
        .ok_or(format!("no result row in\n{text}"))?;
    let cols: Vec<f64> = row
        .split(',')
        .skip(1)
        .map(|c| c.trim_matches('"').parse().unwrap_or(0.0))
        .collect();
    let rps = cols.first().copied().unwrap_or(0.0);
    let p99_ms = cols.get(5).copied().unwrap_or(0.0);
    Ok((requests as f64, rps, p99_ms * 1e3))
}

fn bench(requests: u64, rounds: usize) -> ExitCode {
    if !protocol::have("redis-benchmark") || !protocol::have("redis-server") {
        println!(
            "notice: redis-server or redis-benchmark is not installed; skipping the resp bench"
        );
        return ExitCode::SUCCESS;
    }
    println!(
        "RESP, server pinned to CPU {}, redis-benchmark to CPU {}, {rounds} rounds, load average {}",
        protocol::SERVER_CPU,
        protocol::LOAD_CPU,
        protocol::load_average()
    );
    let servers = ["redis-server", "tether"];
    let tests = ["set", "get", "ping_mbulk"];
    let mut failed = false;
    for (label, pipeline, n) in [("-P 16", 16, requests), ("unpipelined", 1, requests / 8)] {
        // rows[test][server]
        let mut rows: Vec<Vec<(String, Vec<Run>)>> = tests
            .iter()
            .map(|_| {
                servers
                    .iter()
                    .map(|s| (s.to_string(), Vec::new()))
                    .collect()
            })
            .collect();
        for _ in 0..rounds {
            for (si, name) in servers.iter().enumerate() {
                let mut server = match start(name) {
                    Ok(s) => s,
                    Err(e) => {
                        eprintln!("{e}");
                        failed = true;
                        continue;
                    }
                };
                for (ti, test) in tests.iter().enumerate() {
                    match protocol::measure(&mut server, |addr| {
                        redis_benchmark(addr, test, n, pipeline)
                    }) {
                        Ok(run) => rows[ti][si].1.push(run),
                        Err(e) => {
                            eprintln!("{name} {test}: {e}");
                            failed = true;
                        }
                    }
                }
            }
        }
        for (ti, test) in tests.iter().enumerate() {
            let title = format!("{} {label}, -c 50, -n {n}", test.to_uppercase());
            protocol::table(&title, &rows[ti]);
        }
    }
    protocol::finish(failed)
}

fn main() -> ExitCode {
    let args = protocol::BenchArgs::new(
        "cargo bench -p tether-bench --bench resp [-- --requests N --rounds R]",
    );
    if args.server().is_some() {
        return serve_tether();
    }
    let full = args.full();
    bench(
        args.number("--requests", if full { 2_000_000 } else { 20_000 }),
        args.number("--rounds", if full { 3 } else { 1 }),
    )
}
