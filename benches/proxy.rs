//! What the PROXY protocol costs per request once the header is read: user-space
//! instructions of the server's loop thread per 64 B echo, counted by callgrind,
//! with and without a PROXY listener.
//!
//! ```text
//! cargo bench -p tether-bench --bench proxy -- [--short 2000] [--long 20000]
//! ```
//!
//! Each case runs this binary under `valgrind --tool=callgrind
//! --separate-threads=yes` twice, once with `--short` and once with `--long`
//! round trips on one connection (one loop, a client thread in the same
//! process); instructions of the loop thread in the long run minus the short
//! one, over the difference in requests, cancel start, connect, header and
//! shutdown. Cases: `plain` (no PROXY listener), `proxy-v1` and `proxy-v2`
//! (the client sends the header first).

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Command, ExitCode};

use tether::proxy::{ProxyConfig, ProxyHeader, ProxyMode, Version};

/// The measured program: an engine, one connection, `n` round trips.
fn run_case(case: &str, n: u64, idle: bool) {
    // An idle timeout, as real servers have (the http example: 60 s): a pending
    // deadline makes the loop read the clock once per iteration, and the header
    // deadline is one; with a timeout in every case that read is in all of them.
    let mut options = tether::Options::default();
    options.idle_timeout = idle.then_some(std::time::Duration::from_secs(60));
    let mut builder = tether::Engine::builder(|_| common::servers::Echo)
        .options(options)
        .loops(1)
        .listen("127.0.0.1:0");
    let header = match case {
        "plain" => None,
        "proxy-v1" => Some(Version::V1),
        "proxy-v2" => Some(Version::V2),
        other => panic!("unknown case {other}"),
    };
    if header.is_some() {
        builder = builder.proxy_protocol(ProxyConfig::new(ProxyMode::Any));
    }
    let engine = builder.start().expect("engine");
    let addr = engine.local_addrs()[0];
    let mut s = TcpStream::connect(addr).expect("connect");
    s.set_nodelay(true).expect("nodelay");
    if let Some(v) = header {
        let h = ProxyHeader::new(v, "192.0.2.1:4000".parse().unwrap(), addr);
        s.write_all(&h.encode()).expect("header");
    }
    let msg = [0x5au8; 64];
    let mut back = [0u8; 64];
    for _ in 0..n {
        s.write_all(&msg).expect("write");
        s.read_exact(&mut back).expect("read");
        assert_eq!(back, msg);
    }
    drop(s);
    engine.stop();
    engine.join();
}

/// Instructions of the loop thread (`tether-loop-0`'s callgrind part).
fn loop_instructions(case: &str, n: u64, idle: bool, dir: &std::path::Path) -> Option<u64> {
    let out = dir.join(format!("cg.{case}.{n}.{idle}"));
    let status = Command::new("valgrind")
        .args(["--tool=callgrind", "--separate-threads=yes"])
        .arg(format!("--callgrind-out-file={}", out.display()))
        .arg(std::env::current_exe().ok()?)
        .args(["--case", case, "--n", &n.to_string()])
        .args((!idle).then_some("--no-timeout"))
        .stderr(std::process::Stdio::null())
        .status()
        .ok()?;
    if !status.success() {
        return None;
    }
    // Thread 1 is main; the loop is the first thread it spawns (thread 2).
    let path = format!("{}-02", out.display());
    let text = std::fs::read_to_string(&path).ok()?;
    text.lines()
        .find_map(|l| {
            l.strip_prefix("summary: ")
                .or_else(|| l.strip_prefix("totals: "))
        })
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
}

fn main() -> ExitCode {
    let argv: Vec<String> = std::env::args().collect();
    let value = |flag: &str| {
        argv.iter()
            .position(|a| a == flag)
            .and_then(|i| argv.get(i + 1))
            .cloned()
    };
    if let (Some(case), Some(n)) = (value("--case"), value("--n")) {
        run_case(
            &case,
            n.parse().expect("--n N"),
            !argv.iter().any(|a| a == "--no-timeout"),
        );
        return ExitCode::SUCCESS;
    }
    let short: u64 = value("--short").map_or(2000, |v| v.parse().expect("--short N"));
    let long: u64 = value("--long").map_or(20_000, |v| v.parse().expect("--long N"));
    if Command::new("valgrind").arg("--version").output().is_err() {
        eprintln!("proxy bench: valgrind is not installed (apt-get install valgrind)");
        return ExitCode::FAILURE;
    }
    let dir = std::env::temp_dir().join(format!("tether-proxy-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    println!(
        "PROXY protocol cost per request after the header: loop-thread instructions \
         per 64 B echo, callgrind, ({long} - {short}) round trips"
    );
    for idle in [true, false] {
        println!(
            "{}",
            if idle {
                "with a 60 s idle timeout (the loop reads the clock each iteration in every case):"
            } else {
                "with no timeout at all (the header's deadline, until it would fire, is the only one):"
            }
        );
        let mut base = None;
        for case in ["plain", "proxy-v1", "proxy-v2"] {
            let (Some(a), Some(b)) = (
                loop_instructions(case, short, idle, &dir),
                loop_instructions(case, long, idle, &dir),
            ) else {
                eprintln!("{case}: callgrind run failed");
                return ExitCode::FAILURE;
            };
            let per = (b.saturating_sub(a)) as f64 / (long - short) as f64;
            let base_per = *base.get_or_insert(per);
            println!(
                "  {case:<9} {per:>9.1} instructions/request  ({:+.2}% vs plain)",
                (per / base_per - 1.0) * 100.0
            );
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
    ExitCode::SUCCESS
}
