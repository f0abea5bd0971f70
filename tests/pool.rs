//! The connection pool against real loopback endpoints: queueing before any
//! connection is up, spreading load, losing and regaining an endpoint,
//! least-in-flight picking, heartbeats, backpressure and errors.

mod util;

use std::collections::HashMap;
use std::net::{SocketAddr, TcpListener};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{Receiver, channel};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tether::client::backoff::{BackoffPolicy, Jitter};
use tether::client::pool::{BuildError, Pick, Pool, PoolBuilder, PoolError};
use tether::codec::LengthPrefixed;
use tether::{Action, Conn, Engine, EventHandler};
use util::*;

/// A byte echo: answers each length-prefixed frame with the same frame.
fn echo_server(addr: &str) -> Engine {
    let (factory, _events) = recorder();
    Engine::builder(factory)
        .loops(1)
        .reuse_port(false)
        .listen(addr)
        .start()
        .unwrap()
}

/// A loopback address with nothing listening on it.
fn free_addr() -> SocketAddr {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
}

fn fast_policy() -> BackoffPolicy {
    BackoffPolicy::default()
        .with_initial(Duration::from_millis(20))
        .with_max_delay(Duration::from_millis(100))
        .with_jitter(Jitter::None)
        .with_reset_after(Duration::from_millis(50))
}

/// A response as the tests record it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Got {
    endpoint: usize,
    connection: usize,
    frame: Vec<u8>,
}

/// A builder whose responses go to the returned channel.
fn recording_pool(endpoints: Vec<SocketAddr>) -> (PoolBuilder<LengthPrefixed>, Receiver<Got>) {
    let (tx, rx) = channel();
    let tx = Mutex::new(tx);
    let builder = Pool::builder(endpoints)
        .reconnect(fast_policy())
        .loops(2)
        .on_response(move |r| {
            let got = Got {
                endpoint: r.endpoint(),
                connection: r.connection(),
                frame: r.frame().to_vec(),
            };
            let _ = tx.lock().unwrap().send(got);
        });
    (builder, rx)
}

fn wait_until(what: &str, mut cond: impl FnMut() -> bool) {
    let end = Instant::now() + DEADLINE;
    while !cond() {
        assert!(Instant::now() < end, "not {what} within {DEADLINE:?}");
        std::thread::sleep(Duration::from_millis(2));
    }
}

fn collect(rx: &Receiver<Got>, n: usize) -> Vec<Got> {
    (0..n)
        .map(|i| {
            rx.recv_timeout(DEADLINE)
                .unwrap_or_else(|_| panic!("response {i} of {n} not within {DEADLINE:?}"))
        })
        .collect()
}

fn request(round: usize, i: usize) -> Vec<u8> {
    format!("round {round} request {i}").into_bytes()
}

/// Sends `n` requests and checks that each is answered exactly once.
fn round_trip(pool: &Pool, rx: &Receiver<Got>, round: usize, n: usize) -> Vec<Got> {
    for i in 0..n {
        pool.send(request(round, i)).unwrap();
    }
    let got = collect(rx, n);
    let mut frames: Vec<Vec<u8>> = got.iter().map(|g| g.frame.clone()).collect();
    frames.sort();
    let mut expected: Vec<Vec<u8>> = (0..n).map(|i| request(round, i)).collect();
    expected.sort();
    assert_eq!(frames, expected, "every request answered exactly once");
    got
}

fn per<K: std::hash::Hash + Eq>(got: &[Got], key: impl Fn(&Got) -> K) -> HashMap<K, usize> {
    let mut counts = HashMap::new();
    for g in got {
        *counts.entry(key(g)).or_default() += 1;
    }
    counts
}

#[test]
fn requests_sent_before_any_connection_are_queued_then_delivered() {
    let addr = free_addr();
    let (builder, rx) = recording_pool(vec![addr]);
    let pool = builder
        .connections_per_endpoint(2)
        .queue_capacity(8)
        .start()
        .unwrap();
    wait_until("dials refused", || {
        pool.stats().endpoints[0].failed_dials >= 2
    });
    for i in 0..8 {
        pool.send(request(0, i)).unwrap();
    }
    assert_eq!(
        pool.send(b"one too many"),
        Err(PoolError::QueueFull { capacity: 8 })
    );
    let stats = pool.stats();
    assert_eq!((stats.queued, stats.live), (8, 0));

    let server = echo_server(&addr.to_string());
    let mut frames: Vec<Vec<u8>> = collect(&rx, 8).into_iter().map(|g| g.frame).collect();
    frames.sort();
    let mut expected: Vec<Vec<u8>> = (0..8).map(|i| request(0, i)).collect();
    expected.sort();
    assert_eq!(frames, expected);
    assert_eq!(pool.stats().queued, 0);
    pool.stop();
    server.stop();
}

#[test]
fn round_robin_spreads_requests_evenly_over_every_connection() {
    let a = echo_server("127.0.0.1:0");
    let b = echo_server("127.0.0.1:0");
    let endpoints = vec![a.local_addrs()[0], b.local_addrs()[0]];
    let (builder, rx) = recording_pool(endpoints);
    let pool = builder
        .connections_per_endpoint(4)
        .pick(Pick::RoundRobin)
        .start()
        .unwrap();
    wait_until("8 connections up", || pool.live_connections() == 8);

    let got = round_trip(&pool, &rx, 0, 400);
    let by_connection = per(&got, |g| g.connection);
    assert_eq!(by_connection.len(), 8, "every connection carried some");
    assert!(
        by_connection.values().all(|&n| n == 50),
        "round robin is even: {by_connection:?}"
    );
    let by_endpoint = per(&got, |g| g.endpoint);
    assert_eq!((by_endpoint[&0], by_endpoint[&1]), (200, 200));

    let stats = pool.stats();
    assert!(stats.connections.iter().all(|c| c.responses == 50));
    assert_eq!((stats.in_flight, stats.lost, stats.queued), (0, 0, 0));
    pool.stop();
    a.stop();
    b.stop();
}

#[test]
fn pool_survives_losing_an_endpoint_and_uses_it_again_once_back() {
    let addr_a = free_addr().to_string();
    let a = echo_server(&addr_a);
    let b = echo_server("127.0.0.1:0");
    let endpoints = vec![addr_a.parse().unwrap(), b.local_addrs()[0]];
    let (builder, rx) = recording_pool(endpoints);
    let pool = builder
        .connections_per_endpoint(2)
        .pick(Pick::RoundRobin)
        .start()
        .unwrap();
    wait_until("4 connections up", || pool.live_connections() == 4);

    let got = round_trip(&pool, &rx, 0, 100);
    assert_eq!(per(&got, |g| g.endpoint).len(), 2, "both endpoints carried");

    a.stop();
    wait_until("endpoint 0 seen down", || {
        pool.stats().endpoints[0].live == 0
    });
    let got = round_trip(&pool, &rx, 1, 100);
    let by_connection = per(&got, |g| g.connection);
    assert!(
        got.iter().all(|g| g.endpoint == 1),
        "only the survivor answers"
    );
    assert_eq!(by_connection.len(), 2, "over both of its connections");
    assert!(
        by_connection.values().all(|&n| n == 50),
        "{by_connection:?}"
    );

    let a = echo_server(&addr_a);
    wait_until("endpoint 0 reconnected", || {
        pool.stats().endpoints[0].live == 2
    });
    let got = round_trip(&pool, &rx, 2, 100);
    let by_endpoint = per(&got, |g| g.endpoint);
    assert_eq!((by_endpoint[&0], by_endpoint[&1]), (50, 50));

    let stats = pool.stats();
    assert_eq!(stats.endpoints[0].opened, 4, "two connections, each twice");
    assert_eq!(stats.lost, 0, "nothing was in flight when it went away");
    pool.stop();
    a.stop();
    b.stop();
}

/// Echoes what it receives `delay` later, from a timer.
struct Delayed {
    delay: Duration,
}

impl EventHandler for Delayed {
    type State = Vec<u8>;

    fn on_traffic(&mut self, conn: &mut Conn<'_, Vec<u8>>) -> Action {
        let data = conn.read_buf();
        conn.state_mut().extend_from_slice(data);
        conn.consume(data.len());
        conn.set_timer(self.delay, 0);
        Action::Continue
    }

    fn on_timer(&mut self, conn: &mut Conn<'_, Vec<u8>>, _key: u64) -> Action {
        let held = std::mem::take(conn.state_mut());
        conn.write(&held);
        Action::Continue
    }
}

#[test]
fn least_in_flight_sends_around_a_slow_endpoint() {
    let slow = one_loop(|_| Delayed {
        delay: Duration::from_millis(150),
    });
    let fast = echo_server("127.0.0.1:0");
    let endpoints = vec![slow.local_addrs()[0], fast.local_addrs()[0]];
    let (builder, rx) = recording_pool(endpoints);
    let pool = builder
        .connections_per_endpoint(1)
        .pick(Pick::LeastInFlight)
        .start()
        .unwrap();
    wait_until("both connections up", || pool.live_connections() == 2);

    // Two requests in flight at all times, 40 in all.
    let total = 40;
    let mut sent = 0;
    for _ in 0..2 {
        pool.send(request(0, sent)).unwrap();
        sent += 1;
    }
    let mut got = Vec::new();
    while got.len() < total {
        got.extend(collect(&rx, 1));
        if sent < total {
            pool.send(request(0, sent)).unwrap();
            sent += 1;
        }
    }
    let by_endpoint = per(&got, |g| g.endpoint);
    let slow_share = by_endpoint.get(&0).copied().unwrap_or(0);
    assert!(
        slow_share <= 2,
        "the slow endpoint got {slow_share} of {total}"
    );
    assert_eq!(slow_share + by_endpoint[&1], total);
    pool.stop();
    slow.stop();
    fast.stop();
}

/// Reads and discards everything: accepts connections but never answers.
struct BlackHole {
    received: Arc<AtomicUsize>,
}

impl EventHandler for BlackHole {
    type State = ();

    fn on_traffic(&mut self, conn: &mut Conn<'_, ()>) -> Action {
        let n = conn.read_buf().len();
        self.received.fetch_add(n, Ordering::Relaxed);
        conn.consume(n);
        Action::Continue
    }
}

#[test]
fn unanswered_heartbeats_close_and_redial_the_connections() {
    let received = Arc::new(AtomicUsize::new(0));
    let hole = {
        let received = received.clone();
        one_loop(move |_| BlackHole {
            received: received.clone(),
        })
    };
    let pool = Pool::builder(hole.local_addrs().to_vec())
        .connections_per_endpoint(2)
        .heartbeat(Duration::from_millis(30))
        .read_idle_timeout(Duration::from_millis(150))
        .reconnect(fast_policy())
        .start()
        .unwrap();
    wait_until("both connections timed out and were redialed", || {
        let e = &pool.stats().endpoints[0];
        e.idle_timeouts >= 2 && e.opened >= 4
    });
    let stats = pool.stats();
    assert!(
        stats.connections.iter().all(|c| c.idle_timeouts >= 1),
        "each connection timed out: {:?}",
        stats.connections
    );
    assert!(stats.lost > 0, "the unanswered pings count as lost");
    assert_eq!(stats.pongs, 0);
    assert!(
        received.load(Ordering::Relaxed) >= 4 * 4,
        "pings (empty frames: 4-byte headers) reached the endpoint"
    );
    pool.stop();
    hole.stop();
}

#[test]
fn answered_heartbeats_keep_connections_and_stay_out_of_the_callback() {
    let server = echo_server("127.0.0.1:0");
    let (builder, rx) = recording_pool(server.local_addrs().to_vec());
    let pool = builder
        .connections_per_endpoint(2)
        .heartbeat(Duration::from_millis(20))
        .read_idle_timeout(Duration::from_millis(100))
        .ping(b"ping".as_slice())
        .start()
        .unwrap();
    // Well past the read-idle timeout, kept alive by pongs alone.
    wait_until("16 pongs", || pool.stats().pongs >= 16);
    let stats = pool.stats();
    assert_eq!(stats.endpoints[0].idle_timeouts, 0);
    assert_eq!(stats.endpoints[0].opened, 2);
    assert!(rx.try_recv().is_err(), "pongs are not responses");
    // Requests still flow alongside the pings.
    round_trip(&pool, &rx, 0, 50);
    pool.stop();
    server.stop();
}

#[test]
fn a_full_backlog_turns_sends_away_with_saturated() {
    let server = echo_server("127.0.0.1:0");
    let (entered_tx, entered_rx) = channel();
    let (release_tx, release_rx) = channel::<()>();
    let (entered_tx, release_rx) = (Mutex::new(entered_tx), Mutex::new(release_rx));
    let (tx, rx) = channel();
    let tx = Mutex::new(tx);
    let pool = Pool::builder(server.local_addrs().to_vec())
        .connections_per_endpoint(1)
        .loops(1)
        .max_backlog(3)
        .on_response(move |r| {
            if r.frame() == b"block" {
                // Holds the pool's only loop, so nothing sent meanwhile is
                // written.
                let _ = entered_tx.lock().unwrap().send(());
                let _ = release_rx.lock().unwrap().recv_timeout(DEADLINE);
            }
            let _ = tx.lock().unwrap().send(r.frame().to_vec());
        })
        .start()
        .unwrap();
    wait_until("connected", || pool.live_connections() == 1);
    pool.send(b"block").unwrap();
    entered_rx.recv_timeout(DEADLINE).unwrap();
    for i in 0..3 {
        pool.send(request(0, i)).unwrap();
    }
    assert_eq!(
        pool.send(b"fourth"),
        Err(PoolError::Saturated { per_connection: 3 })
    );
    release_tx.send(()).unwrap();
    let mut frames: Vec<Vec<u8>> = (0..4).map(|_| rx.recv_timeout(DEADLINE).unwrap()).collect();
    frames.sort();
    let mut expected = vec![b"block".to_vec()];
    expected.extend((0..3).map(|i| request(0, i)));
    expected.sort();
    assert_eq!(frames, expected);
    pool.stop();
    server.stop();
}

#[test]
fn sends_from_many_threads_and_from_the_callback_are_all_answered() {
    let server = echo_server("127.0.0.1:0");
    let followups = Arc::new(AtomicUsize::new(0));
    let (tx, rx) = channel();
    let tx = Mutex::new(tx);
    let pool = {
        let followups = followups.clone();
        Pool::builder(server.local_addrs().to_vec())
            .connections_per_endpoint(3)
            .pick(Pick::LeastInFlight)
            .loops(2)
            .on_response(move |r| {
                let frame = r.frame();
                // Every first-hand request gets one follow-up, sent from here.
                if let Some(rest) = frame.strip_prefix(b"q") {
                    let mut next = b"f".to_vec();
                    next.extend_from_slice(rest);
                    r.pool().send(next).unwrap();
                    followups.fetch_add(1, Ordering::Relaxed);
                }
                let _ = tx.lock().unwrap().send(frame.to_vec());
            })
            .start()
            .unwrap()
    };
    let (threads, per_thread) = (4, 250);
    std::thread::scope(|s| {
        for t in 0..threads {
            let pool = &pool;
            s.spawn(move || {
                for i in 0..per_thread {
                    pool.send(format!("q{t}-{i}")).unwrap();
                }
            });
        }
    });
    let n = threads * per_thread;
    let mut frames: Vec<Vec<u8>> = (0..2 * n)
        .map(|_| rx.recv_timeout(DEADLINE).expect("all answered"))
        .collect();
    frames.sort();
    let mut expected: Vec<Vec<u8>> = (0..threads)
        .flat_map(|t| (0..per_thread).map(move |i| format!("{t}-{i}")))
        .flat_map(|k| [format!("q{k}").into_bytes(), format!("f{k}").into_bytes()])
        .collect();
    expected.sort();
    assert_eq!(frames, expected);
    assert_eq!(followups.load(Ordering::Relaxed), n);
    let stats = pool.stats();
    assert_eq!((stats.in_flight, stats.queued, stats.lost), (0, 0, 0));
    pool.stop();
    server.stop();
}

#[test]
fn typed_errors() {
    assert!(matches!(
        Pool::builder(Vec::new()).start(),
        Err(BuildError::NoEndpoints)
    ));
    let addr = free_addr();
    assert!(matches!(
        Pool::builder([addr]).connections_per_endpoint(0).start(),
        Err(BuildError::Zero(_))
    ));
    let tiny = LengthPrefixed::builder().max_frame_len(4).build().unwrap();
    assert!(matches!(
        Pool::builder([addr])
            .codec(tiny.clone())
            .ping(b"too long".as_slice())
            .start(),
        Err(BuildError::Ping(_))
    ));

    // Every connection gives up at its first refusal.
    let pool = Pool::builder([addr])
        .codec(tiny)
        .connections_per_endpoint(2)
        .reconnect(fast_policy().with_max_attempts(Some(0)))
        .start()
        .unwrap();
    assert!(matches!(pool.send(b"12345"), Err(PoolError::Encode(_))));
    wait_until("both connections gave up", || {
        pool.stats().connections.iter().all(|c| c.gave_up)
    });
    assert_eq!(pool.send(b"1234"), Err(PoolError::GaveUp));
    pool.stop();
    assert_eq!(pool.send(b"1234"), Err(PoolError::Stopped));
    assert!(pool.is_stopped());
}
