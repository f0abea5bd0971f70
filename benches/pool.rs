//! A pool of 8 connections against 8 hand-managed connections, closed loop.
//!
//! `cargo bench -p tether-bench --bench pool` (plain `main`, no harness). A tether frame echo
//! server (4-byte length prefix, one loop) runs in this process; each client
//! keeps 64 requests of 64 bytes in flight, 8 per connection, on a client
//! engine of one loop. Every response is verified (a request's payload is
//! derived from its id, and the id comes back in it); a wrong one aborts.
//!
//! Clients, run in turn (A B C … A B C …, 3 rounds, medians reported), in two
//! groups, each against its own hand-managed baseline:
//!
//! Driven from the response callback, on the loop thread:
//! * `manual` — the best case: a framed `EventHandler` that writes the next request on
//!   the connection that just answered, inside the callback.
//! * `pool lif` / `pool rr` — a [`Pool`] (least in flight, the default / round
//!   robin): the first 64 requests from the main thread, then one `pool.send`
//!   per response from the response callback.
//!
//! Driven from a client thread, which the callback hands a credit per response:
//! * `manual, thread` — the requests of each grant framed into one buffer per
//!   connection (the 8 in turn), one `Engine::send` per connection.
//! * `pool, thread` — `pool.send` of each request.
//!
//! Besides requests/s, each run reports the CPU time of the whole process
//! (server and client) per request, which other load on the machine moves far
//! less than the rate. `POOL_BENCH_SECS` sets the measured seconds per run
//! (default 2), `POOL_BENCH_ROUNDS` the rounds (default 3).
//!
//! Run without `--bench` (as `cargo test -p tether-bench --benches` does), it makes one short
//! round: a check that every client runs and is answered correctly.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use tether::client::pool::{Pick, Pool};
use tether::codec::Codec;
use tether::codec::LengthPrefixed;
use tether::{
    Action, Conn, ConnId, ConnectOptions, Engine, EventHandler, decode_frames, write_frame,
};

const CONNS: usize = 8;
const PER_CONN: usize = 8;
const WINDOW: u64 = (CONNS * PER_CONN) as u64;
const FRAME: usize = 64;
const ROUNDS: usize = 3;
const WARMUP: Duration = Duration::from_millis(300);

/// Request `id`: the id, then bytes that depend on it.
fn payload(id: u64) -> [u8; FRAME] {
    let mut p = [0u8; FRAME];
    p[..8].copy_from_slice(&id.to_le_bytes());
    for (k, b) in p[8..].iter_mut().enumerate() {
        *b = (id.wrapping_mul(31).wrapping_add(k as u64)) as u8;
    }
    p
}

/// The id of a correct response; aborts on a wrong one.
fn verify(frame: &[u8]) -> u64 {
    let ok = frame.len() == FRAME;
    let id = if ok {
        u64::from_le_bytes(frame[..8].try_into().unwrap_or_default())
    } else {
        0
    };
    if !ok || frame != payload(id) {
        eprintln!("pool bench: wrong response ({} bytes)", frame.len());
        std::process::abort();
    }
    id
}

/// Responses counted by every client.
#[derive(Default)]
struct Progress {
    done: AtomicU64,
    stop: AtomicBool,
}

struct FrameEcho(LengthPrefixed);

impl EventHandler for FrameEcho {
    type State = ();

    fn on_traffic(&mut self, conn: &mut Conn<'_, ()>) -> Action {
        decode_frames(conn, &mut self.0, |conn, f| {
            conn.write_frame(f)
                .map_or(Action::Close, |()| Action::Continue)
        })
    }
}

/// The ids of the open connections, and the credits of the sending thread.
type ThreadMode = (Arc<Mutex<Vec<ConnId>>>, Arc<Credits>);

/// The hand-managed client. In the callback mode each connection answers a
/// response with the next request, written in the callback itself; in the
/// thread mode it only verifies, publishes its id and hands back credits.
struct Manual {
    codec: LengthPrefixed,
    progress: Arc<Progress>,
    /// Numbers the connections as they open, for their first ids.
    opened: u64,
    /// Thread mode: where the ids go and where the credits come back.
    thread: Option<ThreadMode>,
}

impl EventHandler for Manual {
    /// The connection's index.
    type State = u64;

    fn on_open(&mut self, conn: &mut Conn<'_, u64>) -> Action {
        let index = self.opened;
        self.opened += 1;
        *conn.state_mut() = index;
        match &self.thread {
            Some((ids, _)) => ids
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .push(conn.id()),
            None => {
                for k in 0..PER_CONN as u64 {
                    let _ = write_frame(conn, &self.codec, &payload(index * PER_CONN as u64 + k));
                }
            }
        }
        Action::Continue
    }

    fn on_traffic(&mut self, conn: &mut Conn<'_, u64>) -> Action {
        let (progress, thread) = (&self.progress, &self.thread);
        decode_frames(conn, &mut self.codec, |conn, f| {
            let id = verify(f);
            progress.done.fetch_add(1, Ordering::Relaxed);
            match thread {
                Some((_, credits)) => credits.give(),
                None => {
                    if !progress.stop.load(Ordering::Relaxed) {
                        let _ = conn.write_frame(&payload(id + WINDOW));
                    }
                }
            }
            Action::Continue
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Client {
    Manual,
    Pool(Pick),
    ManualThread,
    PoolThread,
}

impl Client {
    fn name(self) -> &'static str {
        match self {
            Client::Manual => "manual",
            Client::Pool(Pick::LeastInFlight) => "pool lif",
            Client::Pool(Pick::RoundRobin) => "pool rr",
            Client::ManualThread => "manual, thread",
            Client::PoolThread => "pool, thread",
        }
    }

    /// The hand-managed client this one is compared with.
    fn baseline(self) -> Client {
        match self {
            Client::Manual | Client::Pool(_) => Client::Manual,
            Client::ManualThread | Client::PoolThread => Client::ManualThread,
        }
    }
}

/// Waits until `done` stops moving, so that a run's stragglers do not count
/// towards the next.
fn settle(progress: &Progress) {
    let mut last = progress.done.load(Ordering::Relaxed);
    loop {
        std::thread::sleep(Duration::from_millis(20));
        let now = progress.done.load(Ordering::Relaxed);
        if now == last {
            return;
        }
        last = now;
    }
}

/// One run's figures.
#[derive(Debug, Clone, Copy)]
struct Figures {
    /// Responses per second.
    rate: f64,
    /// CPU time of the whole process (server and client) per response, in
    /// microseconds: unlike the rate, barely moved by other load on the machine.
    cpu_us: f64,
}

/// User plus system CPU time of this process, from `/proc/self/stat`.
fn process_cpu() -> Option<Duration> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the parenthesised command name; utime and stime are the
    // 12th and 13th of them, in clock ticks (100 per second on Linux).
    let rest = stat.rsplit_once(')')?.1;
    let mut fields = rest.split_whitespace().skip(11);
    let utime: u64 = fields.next()?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some(Duration::from_millis((utime + stime) * 10))
}

/// Samples the counters after the warmup and again `secs` later.
fn measure(progress: &Progress, secs: Duration) -> Figures {
    std::thread::sleep(WARMUP);
    let (t0, n0, c0) = (
        Instant::now(),
        progress.done.load(Ordering::Relaxed),
        process_cpu(),
    );
    std::thread::sleep(secs);
    let (t1, n1, c1) = (
        Instant::now(),
        progress.done.load(Ordering::Relaxed),
        process_cpu(),
    );
    let n = (n1 - n0).max(1) as f64;
    let cpu_us = match (c0, c1) {
        (Some(a), Some(b)) => (b - a).as_secs_f64() * 1e6 / n,
        _ => f64::NAN,
    };
    Figures {
        rate: n / (t1 - t0).as_secs_f64(),
        cpu_us,
    }
}

fn run(client: Client, server: SocketAddr, secs: Duration) -> Figures {
    let progress = Arc::new(Progress::default());
    match client {
        Client::Manual | Client::ManualThread => {
            let thread = (client == Client::ManualThread).then(|| {
                (
                    Arc::new(Mutex::new(Vec::new())),
                    Arc::new(Credits::default()),
                )
            });
            let p = progress.clone();
            let t = thread.clone();
            let engine = Engine::builder(move |_| Manual {
                codec: LengthPrefixed::new(),
                progress: p.clone(),
                opened: 0,
                thread: t.clone(),
            })
            .loops(1)
            .start()
            .expect("client engine");
            for _ in 0..CONNS {
                engine
                    .connect_with(server, 0u64, ConnectOptions::default())
                    .expect("dial");
            }
            let sender = thread.map(|(ids, credits)| {
                let end = Instant::now() + Duration::from_secs(10);
                while ids.lock().unwrap_or_else(|p| p.into_inner()).len() < CONNS {
                    assert!(Instant::now() < end, "connections did not come up");
                    std::thread::sleep(Duration::from_millis(2));
                }
                let ids = ids.lock().unwrap_or_else(|p| p.into_inner()).clone();
                let (engine, progress, c) = (engine.clone(), progress.clone(), credits.clone());
                let codec = LengthPrefixed::new();
                let handle = std::thread::spawn(move || {
                    // Hand-batched, the best a client thread can do with the
                    // engine: one send per connection per grant, its frames
                    // back to back.
                    let mut batches = vec![Vec::new(); CONNS];
                    drive(&progress, &c, |first, count| {
                        for id in first..first + count {
                            let batch = &mut batches[id as usize % CONNS];
                            codec.encode_to_vec(&payload(id), batch).expect("frame");
                        }
                        for (conn, batch) in ids.iter().zip(&mut batches) {
                            if !batch.is_empty() {
                                engine.send(*conn, std::mem::take(batch)).expect("send");
                            }
                        }
                    })
                });
                (handle, credits)
            });
            let figures = measure(&progress, secs);
            progress.stop.store(true, Ordering::Relaxed);
            if let Some((handle, credits)) = sender {
                credits.give();
                let _ = handle.join();
            }
            settle(&progress);
            engine.stop();
            figures
        }
        Client::Pool(pick) => {
            let p = progress.clone();
            let pool = Pool::builder([server])
                .connections_per_endpoint(CONNS)
                .pick(pick)
                .loops(1)
                .on_response(move |r| {
                    let id = verify(r.frame());
                    p.done.fetch_add(1, Ordering::Relaxed);
                    if !p.stop.load(Ordering::Relaxed) {
                        r.pool().send(payload(id + WINDOW)).expect("send");
                    }
                })
                .start()
                .expect("pool");
            wait_live(&pool);
            for id in 0..WINDOW {
                pool.send(payload(id)).expect("send");
            }
            let figures = measure(&progress, secs);
            progress.stop.store(true, Ordering::Relaxed);
            settle(&progress);
            pool.stop();
            figures
        }
        Client::PoolThread => {
            let credits = Arc::new(Credits::default());
            let (p, c) = (progress.clone(), credits.clone());
            let pool = Pool::builder([server])
                .connections_per_endpoint(CONNS)
                .loops(1)
                .on_response(move |r| {
                    verify(r.frame());
                    p.done.fetch_add(1, Ordering::Relaxed);
                    c.give();
                })
                .start()
                .expect("pool");
            wait_live(&pool);
            let sender = {
                let (pool, progress, c) = (pool.clone(), progress.clone(), credits.clone());
                std::thread::spawn(move || {
                    drive(&progress, &c, |first, count| {
                        for id in first..first + count {
                            pool.send(payload(id)).expect("send");
                        }
                    })
                })
            };
            let figures = measure(&progress, secs);
            progress.stop.store(true, Ordering::Relaxed);
            credits.give();
            let _ = sender.join();
            settle(&progress);
            pool.stop();
            figures
        }
    }
}

/// The client thread's closed loop: the first window at once, then as many
/// requests as responses came back; `send(first_id, count)` sends a batch.
fn drive(progress: &Progress, credits: &Credits, mut send: impl FnMut(u64, u64)) {
    let mut next = 0u64;
    let mut grant = WINDOW;
    while !progress.stop.load(Ordering::Relaxed) {
        if grant > 0 {
            send(next, grant);
            next += grant;
        }
        grant = credits.take();
    }
}

/// Response credits for the client-thread variants: the callback only wakes
/// the sender when it is asleep.
#[derive(Default)]
struct Credits {
    count: AtomicU64,
    asleep: AtomicBool,
    lock: Mutex<()>,
    cv: Condvar,
}

impl Credits {
    fn give(&self) {
        self.count.fetch_add(1, Ordering::AcqRel);
        if self.asleep.load(Ordering::Acquire) {
            let _guard = self.lock.lock().unwrap_or_else(|p| p.into_inner());
            self.cv.notify_one();
        }
    }

    /// All credits given so far, waiting for at least one (or a short timeout,
    /// so that a stop is noticed).
    fn take(&self) -> u64 {
        let n = self.count.swap(0, Ordering::AcqRel);
        if n > 0 {
            return n;
        }
        let guard = self.lock.lock().unwrap_or_else(|p| p.into_inner());
        self.asleep.store(true, Ordering::Release);
        let n = self.count.swap(0, Ordering::AcqRel);
        if n > 0 {
            self.asleep.store(false, Ordering::Release);
            return n;
        }
        let _guard = self
            .cv
            .wait_timeout(guard, Duration::from_millis(5))
            .unwrap_or_else(|p| p.into_inner());
        self.asleep.store(false, Ordering::Release);
        self.count.swap(0, Ordering::AcqRel)
    }
}

fn wait_live(pool: &Pool) {
    let end = Instant::now() + Duration::from_secs(10);
    while pool.live_connections() < CONNS {
        assert!(Instant::now() < end, "pool connections did not come up");
        std::thread::sleep(Duration::from_millis(2));
    }
}

fn median(xs: impl Iterator<Item = f64>) -> f64 {
    let mut v: Vec<f64> = xs.collect();
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

fn main() {
    let bench = std::env::args().any(|a| a == "--bench");
    let secs = std::env::var("POOL_BENCH_SECS")
        .ok()
        .and_then(|s| s.parse::<f64>().ok())
        .map(Duration::from_secs_f64)
        .unwrap_or(if bench {
            Duration::from_secs(2)
        } else {
            Duration::from_millis(200)
        });
    let rounds = std::env::var("POOL_BENCH_ROUNDS")
        .ok()
        .and_then(|s| s.parse::<usize>().ok())
        .unwrap_or(if bench { ROUNDS } else { 1 })
        .max(1);
    let server = Engine::builder(|_| FrameEcho(LengthPrefixed::new()))
        .loops(1)
        .listen("127.0.0.1:0")
        .start()
        .expect("server");
    let addr = server.local_addrs()[0];
    let clients = [
        Client::Manual,
        Client::Pool(Pick::LeastInFlight),
        Client::Pool(Pick::RoundRobin),
        Client::ManualThread,
        Client::PoolThread,
    ];
    let mut runs: Vec<Vec<Figures>> = vec![Vec::new(); clients.len()];
    for _ in 0..rounds {
        for (i, &c) in clients.iter().enumerate() {
            runs[i].push(run(c, addr, secs));
        }
    }
    server.stop();

    println!(
        "{CONNS} connections, {WINDOW} in flight, {FRAME}-byte frames, 1 client loop, \
         1 server loop; {rounds} rounds of {secs:?}, alternated; medians"
    );
    println!(
        "{:<15} {:>24} {:>9} {:>10} {:>11} {:>9}",
        "client", "requests/s per round", "median", "vs manual", "CPU us/req", "vs manual"
    );
    let medians: Vec<(f64, f64)> = runs
        .iter()
        .map(|r| {
            (
                median(r.iter().map(|f| f.rate)),
                median(r.iter().map(|f| f.cpu_us)),
            )
        })
        .collect();
    for (i, (c, r)) in clients.iter().zip(&runs).enumerate() {
        let base = clients.iter().position(|&b| b == c.baseline()).unwrap_or(0);
        let cells: Vec<String> = r.iter().map(|f| format!("{:.0}k", f.rate / 1e3)).collect();
        let (rate, cpu) = medians[i];
        println!(
            "{:<15} {:>24} {:>8.0}k {:>9.2}x {:>11.2} {:>8.2}x",
            c.name(),
            cells.join(" "),
            rate / 1e3,
            rate / medians[base].0,
            cpu,
            cpu / medians[base].1
        );
    }
}
