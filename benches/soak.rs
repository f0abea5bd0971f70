//! Soak: churns thousands of connections through a tether echo server and
//! checks that nothing accumulates.
//!
//! ```text
//! cargo run --release -p tether-bench --example soak -- --conns 10000 --secs 60 --loops 2
//! ```
//!
//! The server runs in a child process (this program re-executed with
//! `--server`), so that neither side needs more than `--conns` descriptors and
//! each stays under a per-process open-files limit of 20,000; both raise their
//! soft `RLIMIT_NOFILE` to the hard one. The parent keeps `--conns` client
//! connections churning for `--secs` seconds: each opens, sends a frame (a
//! 4-byte big-endian length and 16 to 2048 bytes; every 8th in two writes),
//! checks the echoed frame byte for byte, closes and opens again. The server
//! is a length-prefixed frame echo, so a frame split across reads holds a
//! pooled buffer until it completes. With `--big-every K` every K-th frame carries 4
//! to 32 KiB instead, which makes pooled buffers grow. Every step has a
//! timeout, so the run ends at most 30 s after `--secs`.
//!
//! Every 5 s it prints the server's figures and the clients' progress:
//! `t=20s open=9987 churned=123456 rss=34567KiB fds=10012 buffer_bytes=0`.
//! At the end it prints a verdict, which holds when, once every client has
//! closed, the server's open descriptors and pooled buffer bytes lent to
//! connections are back to what they were before the churn, its RSS moved by
//! less than 5% between the marks at one third of the run and at the end (20 s
//! and 60 s for `--secs 60`), and every echo came back intact. RSS at a mark is
//! the highest sampled (every 250 ms) up to it: a leak raises it, while the
//! buffers of the frames in flight at one instant do not. The first third of
//! the run is warm-up (pools and slabs reach their working size), so runs
//! shorter than about 15 s are not meaningful.
//! Exit status: 0 when the verdict holds, 1 when not, 2 for bad flags.
//!
//! The server answers a `stats` line on stdin with one line,
//! `stats <open> <accepted> <closed> <buffer_bytes> <pool_idle_bytes> <rss_kib> <fds>`,
//! and stops when stdin closes.

use std::io::{BufRead, BufReader, Lines, Write};
use std::net::SocketAddr;
use std::process::{Child, ChildStdin, ChildStdout, Command, ExitCode, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tether::codec::LengthPrefixed;
use tether::{Action, Conn, Engine, EventHandler, Options, decode_frames};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Longest a connect or an exchange may take before it counts as an error.
const OP_TIMEOUT: Duration = Duration::from_secs(10);
/// How long the server gets to notice that every client closed.
const SETTLE: Duration = Duration::from_secs(30);
/// Every this many exchanges one sends its frame in two writes. More would
/// make the number of half frames held at one instant, and with it the
/// memory high-water mark, a large part of what the RSS check sees.
const SPLIT_EVERY: u64 = 8;
/// Tolerated RSS drift between the marks, percent.
const MAX_DRIFT_PCT: f64 = 5.0;

struct Args {
    conns: usize,
    secs: u64,
    loops: usize,
    big_every: u64,
    server: bool,
}

fn parse_args() -> Result<Args, String> {
    let mut a = Args {
        conns: 10_000,
        secs: 60,
        loops: 2,
        big_every: 0,
        server: false,
    };
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let mut number = |what: &str| -> Result<u64, String> {
            args.next()
                .and_then(|v| v.parse().ok())
                .filter(|&n| n > 0)
                .ok_or(format!("{flag} needs a positive {what}"))
        };
        match flag.as_str() {
            "--conns" => a.conns = number("number of connections")? as usize,
            "--secs" => a.secs = number("number of seconds")?,
            "--loops" => a.loops = number("number of loops")? as usize,
            "--big-every" => a.big_every = number("frame interval")?,
            "--server" => a.server = true,
            "-h" | "--help" => {
                println!("usage: soak [--conns N] [--secs S] [--loops L] [--big-every K]");
                std::process::exit(0);
            }
            other => return Err(format!("unknown flag {other}")),
        }
    }
    Ok(a)
}

/// Raises the soft open-files limit to the hard one; returns the new limit.
fn raise_nofile() -> u64 {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit and setrlimit only read and write the struct passed,
    // which lives for the whole call.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) == 0 {
            lim.rlim_cur = lim.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
            libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim);
        }
    }
    lim.rlim_cur
}

// ---- server ----

struct FrameEcho(LengthPrefixed);

impl EventHandler for FrameEcho {
    type State = ();

    fn on_traffic(&mut self, conn: &mut Conn<'_, ()>) -> Action {
        decode_frames(conn, &mut self.0, |conn, f| match conn.write_frame(f) {
            Ok(()) => Action::Continue,
            Err(_) => Action::Close,
        })
    }
}

fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|s| s.split(' ').nth(1)?.parse::<u64>().ok())
        .map_or(0, |pages| pages * 4)
}

fn fd_count() -> u64 {
    std::fs::read_dir("/proc/self/fd").map_or(0, |d| d.count() as u64)
}

fn serve(loops: usize) -> ExitCode {
    raise_nofile();
    let mut options = Options::default();
    options.loops = loops;
    options.reuse_port = true;
    // Every client dials at once at the start.
    options.backlog = 4096;
    let engine = match Engine::builder(|_| FrameEcho(LengthPrefixed::new()))
        .options(options)
        .listen("127.0.0.1:0")
        .start()
    {
        Ok(e) => e,
        Err(e) => {
            eprintln!("soak server: {e}");
            return ExitCode::FAILURE;
        }
    };
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "listening on {}", engine.local_addrs()[0]);
    let _ = out.flush();
    for line in std::io::stdin().lock().lines() {
        let Ok(line) = line else { break };
        if line.trim() == "stats" {
            let t = engine.stats().total;
            let _ = writeln!(
                out,
                "stats {} {} {} {} {} {} {}",
                t.open,
                t.accepted,
                t.closed,
                t.buffer_bytes,
                t.pool_idle_bytes,
                rss_kib(),
                fd_count()
            );
            let _ = out.flush();
        }
    }
    engine.stop();
    ExitCode::SUCCESS
}

// ---- parent: the server's side of the conversation ----

#[derive(Debug, Clone, Copy)]
struct ServerStats {
    open: u64,
    accepted: u64,
    closed: u64,
    buffer_bytes: u64,
    pool_idle_bytes: u64,
    rss_kib: u64,
    fds: u64,
}

struct Server {
    child: Child,
    stdin: Option<ChildStdin>,
    lines: Lines<BufReader<ChildStdout>>,
    addr: SocketAddr,
}

impl Server {
    fn spawn(loops: usize) -> Result<Server, String> {
        let exe = std::env::current_exe().map_err(|e| e.to_string())?;
        let mut child = Command::new(exe)
            .args(["--server", "--loops", &loops.to_string()])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .map_err(|e| format!("cannot start the server: {e}"))?;
        let stdin = child.stdin.take();
        let mut lines = BufReader::new(child.stdout.take().ok_or("no stdout")?).lines();
        let first = lines
            .next()
            .and_then(Result::ok)
            .ok_or("the server exited before listening")?;
        let addr = first
            .strip_prefix("listening on ")
            .and_then(|a| a.parse().ok())
            .ok_or(format!("unexpected server line: {first}"))?;
        Ok(Server {
            child,
            stdin,
            lines,
            addr,
        })
    }

    fn stats(&mut self) -> Result<ServerStats, String> {
        let stdin = self.stdin.as_mut().ok_or("server stdin closed")?;
        writeln!(stdin, "stats")
            .and_then(|()| stdin.flush())
            .map_err(|e| format!("server gone: {e}"))?;
        let line = self
            .lines
            .next()
            .and_then(Result::ok)
            .ok_or("server gone")?;
        let n: Vec<u64> = line
            .strip_prefix("stats ")
            .ok_or(format!("unexpected server line: {line}"))?
            .split(' ')
            .map(|x| x.parse().map_err(|_| format!("bad stats line: {line}")))
            .collect::<Result<_, _>>()?;
        if n.len() != 7 {
            return Err(format!("bad stats line: {line}"));
        }
        Ok(ServerStats {
            open: n[0],
            accepted: n[1],
            closed: n[2],
            buffer_bytes: n[3],
            pool_idle_bytes: n[4],
            rss_kib: n[5],
            fds: n[6],
        })
    }

    fn stop(mut self) -> bool {
        drop(self.stdin.take());
        self.child.wait().is_ok_and(|s| s.success())
    }
}

// ---- parent: the clients ----

#[derive(Default)]
struct Progress {
    churned: AtomicU64,
    errors: AtomicU64,
    corrupt: AtomicU64,
    first_error: std::sync::Mutex<Option<String>>,
}

impl Progress {
    fn error(&self, what: String) {
        self.errors.fetch_add(1, Ordering::Relaxed);
        let mut first = self.first_error.lock().unwrap_or_else(|p| p.into_inner());
        first.get_or_insert(what);
    }
}

/// The frame client `idx` sends in its `cycle`-th connection: a payload of 16
/// to 2048 bytes (4 to 32 KiB every `big_every`-th, if set) naming both, so a
/// byte delivered to the wrong connection shows.
fn message(idx: u64, cycle: u64, big_every: u64) -> Vec<u8> {
    let mix = idx.wrapping_mul(7919) ^ cycle.wrapping_mul(104_729);
    let payload = if big_every > 0 && (idx + cycle) % big_every == 0 {
        4 * 1024 + (mix % (28 * 1024 + 1)) as usize
    } else {
        16 + (mix % 2033) as usize
    };
    let len = 4 + payload;
    let mut msg = Vec::with_capacity(len);
    msg.extend_from_slice(&(payload as u32).to_be_bytes());
    msg.extend_from_slice(&idx.to_le_bytes());
    msg.extend_from_slice(&cycle.to_le_bytes());
    let mut x = idx ^ (cycle << 20) | 1;
    while msg.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        msg.push(x as u8);
    }
    msg
}

/// One connection's life. With `split`, the frame goes out in two writes with
/// a yield between, so the server often holds half a frame.
async fn exchange(
    addr: SocketAddr,
    msg: &[u8],
    split: bool,
    back: &mut Vec<u8>,
) -> std::io::Result<bool> {
    let mut s = tokio::net::TcpStream::connect(addr).await?;
    s.set_nodelay(true)?;
    if split {
        let half = msg.len() / 2;
        s.write_all(&msg[..half]).await?;
        tokio::task::yield_now().await;
        s.write_all(&msg[half..]).await?;
    } else {
        s.write_all(msg).await?;
    }
    back.resize(msg.len(), 0);
    s.read_exact(back).await?;
    Ok(back[..] == msg[..])
}

async fn client(
    addr: SocketAddr,
    idx: u64,
    big_every: u64,
    (start, end): (Instant, Instant),
    p: Arc<Progress>,
) {
    tokio::time::sleep_until(start.into()).await;
    let mut back = Vec::new();
    let mut cycle = 0u64;
    while Instant::now() < end {
        let msg = message(idx, cycle, big_every);
        let split = (idx + cycle) % SPLIT_EVERY == 0;
        match tokio::time::timeout(OP_TIMEOUT, exchange(addr, &msg, split, &mut back)).await {
            Ok(Ok(true)) => {
                p.churned.fetch_add(1, Ordering::Relaxed);
            }
            Ok(Ok(false)) => {
                p.corrupt.fetch_add(1, Ordering::Relaxed);
                p.error(format!("client {idx} cycle {cycle}: echo differs"));
            }
            Ok(Err(e)) => {
                p.error(format!("client {idx} cycle {cycle}: {e}"));
                // Do not spin on a persistent error.
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(_) => p.error(format!("client {idx} cycle {cycle}: timed out")),
        }
        cycle += 1;
    }
}

fn churn(
    addr: SocketAddr,
    conns: usize,
    secs: u64,
    big_every: u64,
    p: Arc<Progress>,
) -> std::io::Result<()> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let begin = Instant::now();
    let end = begin + Duration::from_secs(secs);
    rt.block_on(async {
        let tasks: Vec<_> = (0..conns)
            .map(|i| {
                // Ramp up over the first second rather than in one burst.
                let start = begin + Duration::from_secs(1) * i as u32 / conns as u32;
                tokio::spawn(client(addr, i as u64, big_every, (start, end), p.clone()))
            })
            .collect();
        for t in tasks {
            let _ = t.await;
        }
    });
    Ok(())
}

// ---- parent: the run and its verdict ----

/// A few exchanges before the churn, on blocking sockets.
fn warm_up(addr: SocketAddr) -> Result<(), String> {
    use std::io::Read;
    for i in 0..64 {
        let msg = message(u64::MAX - i, 1, 0);
        let mut s = std::net::TcpStream::connect(addr).map_err(|e| format!("warm-up: {e}"))?;
        s.set_read_timeout(Some(OP_TIMEOUT))
            .and_then(|()| s.write_all(&msg))
            .map_err(|e| format!("warm-up: {e}"))?;
        let mut back = vec![0; msg.len()];
        s.read_exact(&mut back)
            .map_err(|e| format!("warm-up: {e}"))?;
        if back != msg {
            return Err("warm-up: echo differs".into());
        }
    }
    Ok(())
}

/// The server's stats once it has no connection left, or after `SETTLE`.
fn settle(server: &mut Server) -> Result<ServerStats, String> {
    let end = Instant::now() + SETTLE;
    loop {
        let s = server.stats()?;
        if s.open == 0 || Instant::now() >= end {
            return Ok(s);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn run(a: &Args) -> Result<bool, String> {
    let limit = raise_nofile();
    if (a.conns as u64) + 64 > limit {
        return Err(format!(
            "--conns {} needs more descriptors than the limit of {limit}",
            a.conns
        ));
    }
    let mut server = Server::spawn(a.loops)?;
    // The loops finish starting (each opens its reserve descriptor) after the
    // listener is up: a few exchanges make sure every loop runs before the
    // baseline is taken.
    warm_up(server.addr)?;
    let baseline = settle(&mut server)?;
    println!(
        "soak: {} connections for {}s against {} ({} loops{}); server baseline fds={} \
         buffer_bytes={} rss={}KiB",
        a.conns,
        a.secs,
        server.addr,
        a.loops,
        if a.big_every > 0 {
            format!(", 4-32 KiB frames every {}", a.big_every)
        } else {
            String::new()
        },
        baseline.fds,
        baseline.buffer_bytes,
        baseline.rss_kib
    );

    let progress = Arc::new(Progress::default());
    let began = Instant::now();
    let clients = {
        let (addr, conns, secs, big) = (server.addr, a.conns, a.secs, a.big_every);
        let p = progress.clone();
        std::thread::spawn(move || churn(addr, conns, secs, big, p))
    };

    // Sample every 250 ms, report every 5 s, keep the RSS high-water mark at
    // a third of the run and at its end.
    let total = Duration::from_secs(a.secs);
    let first_mark = total / 3;
    let mut times: Vec<Duration> = (1..)
        .map(|k| Duration::from_millis(250 * k))
        .take_while(|t| *t <= total)
        .chain([first_mark, total])
        .collect();
    times.sort();
    times.dedup();
    let (mut rss_high, mut rss_first, mut rss_end) = (0, 0, 0);
    for t in times {
        if let Some(wait) = (began + t).checked_duration_since(Instant::now()) {
            std::thread::sleep(wait);
        }
        let s = server.stats()?;
        rss_high = rss_high.max(s.rss_kib);
        if t == first_mark {
            rss_first = rss_high;
        }
        if t == total {
            rss_end = rss_high;
        }
        if t.as_millis() % 5000 == 0 {
            println!(
                "t={}s open={} churned={} rss={}KiB fds={} buffer_bytes={}",
                t.as_secs(),
                s.open,
                progress.churned.load(Ordering::Relaxed),
                s.rss_kib,
                s.fds,
                s.buffer_bytes
            );
        }
    }
    clients
        .join()
        .map_err(|_| "the client thread panicked")?
        .map_err(|e| format!("client runtime: {e}"))?;

    // Every client has closed; give the server time to see the last FINs.
    let after = settle(&mut server)?;
    let churned = progress.churned.load(Ordering::Relaxed);
    let errors = progress.errors.load(Ordering::Relaxed);
    let corrupt = progress.corrupt.load(Ordering::Relaxed);
    let drift = if rss_first == 0 {
        f64::INFINITY
    } else {
        (rss_end as f64 - rss_first as f64) * 100.0 / rss_first as f64
    };
    let checks = [
        (after.open == 0, format!("open connections {}", after.open)),
        (
            after.fds == baseline.fds,
            format!("fds {} -> {}", baseline.fds, after.fds),
        ),
        (
            after.buffer_bytes == baseline.buffer_bytes,
            format!(
                "buffer_bytes {} -> {}",
                baseline.buffer_bytes, after.buffer_bytes
            ),
        ),
        (
            drift.abs() < MAX_DRIFT_PCT,
            format!(
                "rss drift {drift:+.2}% ({}s {rss_first}KiB -> {}s {rss_end}KiB)",
                first_mark.as_secs_f64().round(),
                total.as_secs()
            ),
        ),
        (
            errors == 0 && corrupt == 0,
            format!("errors {errors} (corrupt echoes {corrupt})"),
        ),
        (churned > 0, format!("churned {churned}")),
    ];
    let ok = checks.iter().all(|(ok, _)| *ok);
    println!(
        "verdict: {} — {}; server accepted={} closed={} pool_idle_bytes={}",
        if ok { "ok" } else { "FAIL" },
        checks
            .iter()
            .map(|(ok, what)| if *ok {
                what.clone()
            } else {
                format!("{what} (FAILED)")
            })
            .collect::<Vec<_>>()
            .join(", "),
        after.accepted,
        after.closed,
        after.pool_idle_bytes
    );
    if let Some(e) = progress
        .first_error
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .as_ref()
    {
        println!("first error: {e}");
    }
    let stopped = server.stop();
    if !stopped {
        println!("the server did not exit cleanly");
    }
    Ok(ok && stopped)
}

fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("soak: {e}");
            return ExitCode::from(2);
        }
    };
    if args.server {
        return serve(args.loops);
    }
    match run(&args) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("soak: {e}");
            ExitCode::FAILURE
        }
    }
}
