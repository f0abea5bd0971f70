//! Zero heap allocations per request in steady state, for the generator (and
//! the in-process tether server it drives): a counting global allocator sees
//! the whole process while thousands of requests complete.

mod util;

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tether::codec::Resp as RespDecoder;
use tether::codec::resp::Decoded;
use tether::net::ListenAddr;
use tether::{Action, Conn, EventHandler};
use tether_load::proto::Protocol;
use tether_load::proto::{echo::Echo, frame::Frame, http::Http, resp::Resp};
use tether_load::{Counter, Generator, Setup, Shape};
use util::{HttpStatus, frame_echo, serve};

struct Counting;

static ALLOCS: AtomicU64 = AtomicU64::new(0);
/// The count is process-wide: one test at a time.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

// SAFETY: defers every call to the system allocator unchanged; only counts.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: same contract as our caller's.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as our caller's.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: same contract as our caller's.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// Answers every RESP command with `+OK`.
struct RespOk;

impl EventHandler for RespOk {
    type State = ();
    fn on_traffic(&mut self, conn: &mut Conn<'_, ()>) -> Action {
        let input = conn.read_buf();
        let mut used = 0;
        while let Ok(Decoded::Frame(_, n)) = RespDecoder::new().decode(&input[used..]) {
            used += n;
            conn.write(b"+OK\r\n");
        }
        conn.consume(used);
        Action::Continue
    }
}

/// Allocations per request over a steady window of `proto` against `addr`.
fn allocs_per_request<P: Protocol>(addr: std::net::SocketAddr, proto: P, rate: Option<f64>) -> f64 {
    let conns = 16;
    let setup = Setup {
        addr: ListenAddr::Tcp(addr),
        loops: 1,
        shape: Shape {
            depth: 8,
            interval_ns: rate.map(|r| (f64::from(conns) * 1e9 / r) as u64),
            conns,
            hold: false,
            heartbeat: None,
            handshake: false,
            batch: false,
        },
        reconnect: false,
    };
    let mut generator = Generator::start(&setup, proto).expect("generator starts");
    generator.dial(conns).expect("dials");
    let deadline = Instant::now() + Duration::from_secs(10);
    // Warm up: every connection up, buffers and histograms at their size.
    let (_, ok) = generator.wait_for(deadline, |q| {
        q.up == u64::from(conns) && q.counters.get(Counter::Requests) > 5000
    });
    assert!(ok, "warm-up did not complete");
    std::thread::sleep(Duration::from_millis(200));
    let before = generator.quick().counters.get(Counter::Requests);
    let allocs_before = ALLOCS.load(Ordering::Relaxed);
    std::thread::sleep(Duration::from_millis(500));
    let allocs = ALLOCS.load(Ordering::Relaxed) - allocs_before;
    let q = generator.quick();
    let requests = q.counters.get(Counter::Requests) - before;
    assert!(generator.control().failure().is_none());
    drop(generator);
    println!("{allocs} allocations over {requests} requests");
    assert!(requests > 1000, "only {requests} requests");
    allocs as f64 / requests as f64
}

#[test]
fn steady_state_allocates_nothing_per_request() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|p| p.into_inner());
    let echo = serve(|_| util::Echo::default());
    let frames = frame_echo();
    let http = serve(|_| HttpStatus::new("200 OK"));
    let resp = serve(|_| RespOk);
    let cases: Vec<(&str, f64)> = vec![
        ("echo", allocs_per_request(echo.addr, Echo::new(64), None)),
        (
            "frame",
            allocs_per_request(frames.addr, Frame::new(256), None),
        ),
        (
            "http",
            allocs_per_request(http.addr, Http::new("h", "/", &[]), None),
        ),
        (
            "resp",
            allocs_per_request(
                resp.addr,
                Resp::new("SET key:__rand_int__ __data__", 16, Some(1000)),
                None,
            ),
        ),
    ];
    for (name, per_request) in cases {
        // A stray allocation now and then (a queue growing once) is not per
        // request; one per thousand requests would be.
        assert!(
            per_request < 0.001,
            "{name}: {per_request} allocations per request"
        );
    }
}

#[test]
fn open_loop_allocates_only_in_tethers_timer_map() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|p| p.into_inner());
    let echo = serve(|_| util::Echo::default());
    let per_request = allocs_per_request(echo.addr, Echo::new(64), Some(20_000.0));
    // Open loop arms a user timer per connection between sends; tether keeps
    // armed user timers in a BTreeMap, whose nodes split and merge as keys
    // come and go: about one allocation per hundred requests, none of them
    // tether-load's own.
    assert!(
        per_request < 0.05,
        "open loop: {per_request} allocations per request"
    );
}
