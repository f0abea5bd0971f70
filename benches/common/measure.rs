//! One measurement: a fresh server child, a load, and the figures read off both.

use std::io;
use std::thread;
use std::time::{Duration, Instant};

use super::child::ServerChild;
use super::config::Config;
use super::load::{Client, Load, LoadError};
use super::servers::ServerKind;
use super::udp_load::UdpError;
use super::wire::MIN_PAYLOAD;

/// Event loops (server threads) every server gets: the machines have two cores,
/// one for the server and one for the load generator.
const LOOPS: usize = 1;

/// Time allowed to open and check all connections of one run.
pub const SETUP_DEADLINE: Duration = Duration::from_secs(30);

/// Pause between the last connection's round trip and the idle CPU count, for
/// whatever the server does right after accepting to finish.
const IDLE_SETTLE: Duration = Duration::from_millis(100);

/// One load case: payload size and connection count.
#[derive(Clone, Copy, Debug)]
pub struct Case {
    pub payload: usize,
    pub conns: usize,
}

/// One server's figures from one run.
#[derive(Clone, Copy, Debug)]
pub struct Figures {
    pub req_per_sec: f64,
    pub p50_us: f64,
    pub p99_us: f64,
    pub p999_us: f64,
    pub cpu_us_per_req: f64,
    pub allocs_per_req: f64,
    pub peak_rss_bytes: f64,
}

#[derive(Debug)]
pub enum RunError {
    /// The server echoed wrong bytes (what was wrong): the whole bench stops.
    Corrupt(String),
    /// The run failed (no start, a crash, a stall, a timeout): reported, the bench goes on.
    Failed(String),
}

impl From<LoadError> for RunError {
    fn from(e: LoadError) -> Self {
        if e.is_corruption() {
            RunError::Corrupt(e.to_string())
        } else {
            RunError::Failed(e.to_string())
        }
    }
}

impl From<UdpError> for RunError {
    fn from(e: UdpError) -> Self {
        match e {
            UdpError::Corrupt(why) => RunError::Corrupt(why),
            other => RunError::Failed(other.to_string()),
        }
    }
}

impl From<io::Error> for RunError {
    fn from(e: io::Error) -> Self {
        RunError::Failed(e.to_string())
    }
}

/// Warms up, then measures `kind` under the load of `case`.
pub fn load(kind: ServerKind, case: Case, config: &Config) -> Result<Figures, RunError> {
    let mut server = ServerChild::spawn(kind, config.proto, LOOPS)?;
    let load = Load {
        proto: config.proto,
        payload: case.payload,
        depth: config.depth,
        rate: config.rate,
    };
    let deadline = Instant::now() + SETUP_DEADLINE;
    let mut client = Client::connect(server.addr(), case.conns, load, deadline)?;
    client.run(config.warmup)?;

    // The allocation counts are asked for without waiting, so the load never pauses.
    let cpu_before = server.cpu_time()?;
    server.request_allocations()?;
    let window = client.run(config.measure)?;
    server.request_allocations()?;
    let cpu_after = server.cpu_time()?;
    let allocs_before = server.allocations()?;
    let allocs_after = server.allocations()?;
    let peak_rss = server.peak_rss_bytes()?;
    drop(client);
    report_quit(server);

    if window.requests == 0 {
        return Err(RunError::Failed("no request completed".into()));
    }
    let requests = window.requests as f64;
    let quantile_us = |q| window.latency.value_at_quantile(q) as f64 / 1000.0;
    Ok(Figures {
        req_per_sec: requests / window.elapsed.as_secs_f64(),
        p50_us: quantile_us(0.5),
        p99_us: quantile_us(0.99),
        p999_us: quantile_us(0.999),
        cpu_us_per_req: (cpu_after - cpu_before).as_secs_f64() * 1e6 / requests,
        allocs_per_req: (allocs_after - allocs_before) as f64 / requests,
        peak_rss_bytes: peak_rss as f64,
    })
}

/// What the server costs while `config.idle` connections are held idle.
#[derive(Clone, Copy, Debug)]
pub struct IdleFigures {
    /// Server RSS growth per connection.
    pub rss_per_conn: f64,
    /// Server CPU time (user + system, from `/proc`, in 10 ms ticks) over the hold.
    pub cpu_ms: f64,
    /// The same from the server's own `CLOCK_PROCESS_CPUTIME_ID`: nanosecond
    /// resolution; includes the few microseconds its main thread takes to answer.
    pub cpu_us: f64,
    /// Context switches of the server's loop threads per second of the hold: how
    /// often a loop woke up with nothing to do.
    pub wakeups_per_sec: f64,
}

/// Server RSS growth per connection while holding `config.idle` idle connections,
/// then the server's CPU time and wakeups while they stay idle for `config.idle_hold`.
pub fn idle(kind: ServerKind, config: &Config) -> Result<IdleFigures, RunError> {
    let mut server = ServerChild::spawn(kind, config.proto, LOOPS)?;
    let before = server.rss_bytes()?;
    let load = Load {
        proto: config.proto,
        payload: MIN_PAYLOAD,
        depth: 1,
        rate: None,
    };
    // Each connection has made one verified round trip, so the server has accepted
    // and served every one of them before the second reading.
    let deadline = Instant::now() + SETUP_DEADLINE;
    let client = Client::connect(server.addr(), config.idle, load, deadline)?;
    let after = server.rss_bytes()?;

    thread::sleep(IDLE_SETTLE);
    let (ticks_before, nanos_before) = (server.cpu_time()?, server.cpu_nanos()?);
    let wakeups_before = server.loop_wakeups()?;
    let start = Instant::now();
    thread::sleep(config.idle_hold);
    let wakeups_after = server.loop_wakeups()?;
    let (nanos_after, ticks_after) = (server.cpu_nanos()?, server.cpu_time()?);
    let held = start.elapsed().as_secs_f64();
    drop(client);
    report_quit(server);
    Ok(IdleFigures {
        rss_per_conn: (after as f64 - before as f64) / config.idle as f64,
        cpu_ms: (ticks_after.saturating_sub(ticks_before)).as_secs_f64() * 1e3,
        cpu_us: nanos_after.saturating_sub(nanos_before) as f64 / 1e3,
        wakeups_per_sec: wakeups_after.saturating_sub(wakeups_before) as f64 / held,
    })
}

/// A server that does not stop cleanly is reported; its figures still stand.
pub fn report_quit(server: ServerChild) {
    if let Err(e) = server.quit() {
        eprintln!("warning: {e}");
    }
}
