//! HTTP/1.1 plaintext: tether's `http` layer against may_minihttp 0.1.11 (the
//! Rust TechEmpower plaintext leader), one server core, wrk on the other.
//!
//! `cargo bench -p tether-bench --bench http [-- --secs S --rounds N]`. Per round, each
//! server runs in turn in a fresh child pinned to CPU 1 (`taskset`), with one
//! loop (one may worker), and wrk pinned to CPU 0 drives `/plaintext`:
//! `-t1 -c256` with 16 requests per write (TechEmpower's pipelined shape) and
//! `-c64` unpipelined. The tables show medians over the rounds: requests/s,
//! p99 latency, server CPU per request (from /proc), heap allocations per
//! request (tether only: a counting global allocator in the child), and the
//! ratios to may_minihttp. A run with socket errors or non-2xx answers fails.

#[path = "../protocol/mod.rs"]
mod protocol;
#[path = "../../examples/http/routes.rs"]
mod routes;

use std::io;
use std::process::ExitCode;

use protocol::{Run, ServerChild, alloc::CountingAlloc};
use tether::http::{HttpConn, Server};
use tether::{Action, Conn, Engine, EventHandler};

#[global_allocator]
static ALLOC: CountingAlloc = CountingAlloc;

const PIPELINE_LUA: &str = r#"
init = function(args)
  local r = {}
  for i = 1, 16 do r[i] = wrk.format(nil, "/plaintext") end
  req = table.concat(r)
end
request = function() return req end
"#;

struct TetherHttp {
    http: Server,
}

impl EventHandler for TetherHttp {
    type State = HttpConn;

    fn on_traffic(&mut self, conn: &mut Conn<'_, HttpConn>) -> Action {
        self.http.serve(conn, routes::route).into()
    }
}

fn serve_tether() -> ExitCode {
    let engine = Engine::builder(|_| TetherHttp {
        http: Server::new().server_name("tether"),
    })
    .loops(1)
    .listen("127.0.0.1:0")
    .start();
    protocol::child_serve_engine(engine)
}

#[derive(Clone)]
struct MayPlaintext;

impl may_minihttp::HttpService for MayPlaintext {
    fn call(
        &mut self,
        req: may_minihttp::Request<'_, '_, '_>,
        rsp: &mut may_minihttp::Response<'_>,
    ) -> io::Result<()> {
        if req.path() == "/plaintext" {
            rsp.header("Content-Type: text/plain").body("Hello, World!");
        } else {
            rsp.status_code(404, "Not Found");
        }
        Ok(())
    }
}

struct MayFactory;

impl may_minihttp::HttpServiceFactory for MayFactory {
    type Service = MayPlaintext;

    fn new_service(&self, _: usize) -> MayPlaintext {
        MayPlaintext
    }
}

fn serve_may() -> ExitCode {
    use may_minihttp::HttpServiceFactory;
    may::config()
        .set_workers(1)
        .set_pool_capacity(500)
        .set_stack_size(0x1000);
    // may_minihttp takes an address, not a listener: find a free port first.
    let port = match std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()) {
        Ok(addr) => addr.port(),
        Err(e) => {
            eprintln!("may: {e}");
            return ExitCode::FAILURE;
        }
    };
    let addr: std::net::SocketAddr = ([127, 0, 0, 1], port).into();
    match MayFactory.start(addr) {
        Ok(server) => {
            std::mem::forget(server);
            protocol::child_serve(addr)
        }
        Err(e) => {
            eprintln!("may: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Runs wrk and returns (requests, requests/s, p99 µs).
fn wrk(
    addr: std::net::SocketAddr,
    conns: u32,
    secs: u32,
    script: Option<&str>,
) -> Result<(f64, f64, f64), String> {
    let mut args = vec![
        "-t1".to_string(),
        format!("-c{conns}"),
        format!("-d{secs}s"),
        "--latency".to_string(),
    ];
    if let Some(script) = script {
        args.push("-s".to_string());
        args.push(script.to_string());
    }
    args.push(format!("http://{addr}/plaintext"));
    let out = protocol::load("wrk", &args)?;
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    if text.contains("Socket errors") || text.contains("Non-2xx") || !out.status.success() {
        return Err(format!("wrk reported errors:\n{text}"));
    }
    let field = |prefix: &str| -> Option<&str> {
        text.lines()
            .map(str::trim)
            .find_map(|l| l.strip_prefix(prefix))
            .map(str::trim)
    };
    let rps: f64 = field("Requests/sec:")
        .and_then(|v| v.parse().ok())
        .ok_or(format!("no Requests/sec in\n{text}"))?;
    let requests: f64 = text
        .lines()
        .find(|l| l.contains(" requests in "))
        .and_then(|l| l.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .ok_or(format!("no request count in\n{text}"))?;
    let p99 = field("99%").map(parse_latency).unwrap_or(0.0);
    Ok((requests, rps, p99))
}

/// wrk's `1.23ms` / `456.00us` / `1.2s` in µs.
fn parse_latency(v: &str) -> f64 {
    let split = v.find(|c: char| c.is_ascii_alphabetic()).unwrap_or(v.len());
    let (n, unit) = v.split_at(split);
    let n: f64 = n.parse().unwrap_or(0.0);
    match unit {
        "us" => n,
        "ms" => n * 1e3,
        "s" => n * 1e6,
        _ => n,
    }
}

fn bench(secs: u32, rounds: usize) -> ExitCode {
    if !protocol::have("wrk") || !protocol::have("taskset") {
        println!("notice: wrk or taskset is not installed; skipping the http bench");
        return ExitCode::SUCCESS;
    }
    let script = std::env::temp_dir().join(format!("tether-pipeline-{}.lua", std::process::id()));
    if let Err(e) = std::fs::write(&script, PIPELINE_LUA) {
        eprintln!("http bench: {e}");
        return ExitCode::FAILURE;
    }
    let script = script.to_string_lossy().to_string();
    println!(
        "HTTP plaintext, server pinned to CPU {}, wrk to CPU {}, {secs} s per run, {rounds} rounds, load average {}",
        protocol::SERVER_CPU,
        protocol::LOAD_CPU,
        protocol::load_average()
    );
    let cases: [(&str, u32, Option<&str>); 2] = [
        ("pipelined 16, wrk -t1 -c256", 256, Some(&script)),
        ("unpipelined, wrk -t1 -c64", 64, None),
    ];
    let servers = ["may_minihttp", "tether"];
    let mut failed = false;
    for (title, conns, script) in cases {
        let mut rows: Vec<(String, Vec<Run>)> = servers
            .iter()
            .map(|s| (s.to_string(), Vec::new()))
            .collect();
        for _ in 0..rounds {
            for (i, name) in servers.iter().enumerate() {
                let arg = if *name == "tether" { "tether" } else { "may" };
                let result = ServerChild::own(name, &[arg]).and_then(|mut server| {
                    protocol::measure(&mut server, |addr| wrk(addr, conns, secs, script))
                });
                match result {
                    Ok(run) => rows[i].1.push(run),
                    Err(e) => {
                        eprintln!("{name}: {e}");
                        failed = true;
                    }
                }
            }
        }
        protocol::table(title, &rows);
    }
    let _ = std::fs::remove_file(&script);
    protocol::finish(failed)
}

fn main() -> ExitCode {
    let args = protocol::BenchArgs::new(
        "cargo bench -p tether-bench --bench http [-- --secs S --rounds N]",
    );
    match args.server() {
        Some("tether") => return serve_tether(),
        Some("may") => return serve_may(),
        Some(other) => {
            eprintln!("--server tether|may, not {other:?}");
            return ExitCode::from(2);
        }
        None => {}
    }
    let full = args.full();
    bench(
        args.number("--secs", if full { 5 } else { 1 }),
        args.number("--rounds", if full { 3 } else { 1 }),
    )
}
