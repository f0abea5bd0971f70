//! Dialing from the engine: connect, connect failures, timeouts, reconnecting
//! with backoff across server restarts. Loopback only.

mod util;

use std::net::{SocketAddr, TcpListener};
use std::sync::mpsc::{Receiver, Sender, channel};
use std::time::{Duration, Instant};

use tether::client::backoff::{BackoffPolicy, Jitter};
use tether::{
    Action, CloseReason, Conn, ConnectFailure, ConnectOptions, DialId, Engine, EventHandler,
    LoopCtx, Redial,
};
use util::*;

#[derive(Debug, Clone, PartialEq)]
enum C {
    /// The link, and how many times its state has seen an open.
    Open(DialId, u32),
    Data(Vec<u8>),
    Closed(String),
    Failed {
        attempt: u32,
        retry_in: Option<Duration>,
        kind: std::io::ErrorKind,
    },
    Reconnecting {
        attempt: u32,
        delay: Duration,
    },
}

struct Client {
    tx: Sender<(Instant, C)>,
}

impl EventHandler for Client {
    /// Opens seen by this link: survives redials.
    type State = u32;

    fn on_open(&mut self, conn: &mut Conn<'_, u32>) -> Action {
        *conn.state_mut() += 1;
        let _ = self.tx.send((
            Instant::now(),
            C::Open(conn.dial_id().unwrap(), *conn.state()),
        ));
        conn.write(b"hello");
        Action::Continue
    }

    fn on_traffic(&mut self, conn: &mut Conn<'_, u32>) -> Action {
        let data = conn.read_buf();
        let _ = self.tx.send((Instant::now(), C::Data(data.to_vec())));
        conn.consume(data.len());
        Action::Continue
    }

    fn on_close(&mut self, _conn: &mut Conn<'_, u32>, reason: &CloseReason) {
        let _ = self
            .tx
            .send((Instant::now(), C::Closed(reason_name(reason))));
    }

    fn on_connect_failed(
        &mut self,
        _ctx: &mut LoopCtx<'_, Self::State>,
        f: &ConnectFailure,
        _state: &mut u32,
    ) {
        let event = C::Failed {
            attempt: f.attempt,
            retry_in: f.retry_in,
            kind: f.error.kind(),
        };
        let _ = self.tx.send((Instant::now(), event));
    }

    fn on_reconnecting(
        &mut self,
        _ctx: &mut LoopCtx<'_, Self::State>,
        r: &Redial,
        _state: &mut u32,
    ) {
        let event = C::Reconnecting {
            attempt: r.attempt,
            delay: r.delay,
        };
        let _ = self.tx.send((Instant::now(), event));
    }
}

fn client_engine() -> (Engine, Receiver<(Instant, C)>) {
    let (tx, rx) = channel();
    let engine = Engine::builder(move |_| Client { tx: tx.clone() })
        .loops(2)
        .start()
        .unwrap();
    assert!(
        engine.local_addrs().is_empty(),
        "a client-only engine listens nowhere"
    );
    (engine, rx)
}

fn echo_server(addr: &str) -> Engine {
    let (factory, _rx) = recorder();
    Engine::builder(factory)
        .loops(1)
        .reuse_port(false)
        .listen(addr)
        .start()
        .unwrap()
}

fn next(rx: &Receiver<(Instant, C)>, what: &str) -> (Instant, C) {
    rx.recv_timeout(DEADLINE)
        .unwrap_or_else(|_| panic!("no {what} within {DEADLINE:?}"))
}

/// A loopback port with nothing listening on it.
fn free_port() -> SocketAddr {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
}

fn policy(initial_ms: u64, max_ms: u64) -> BackoffPolicy {
    BackoffPolicy::default()
        .with_initial(Duration::from_millis(initial_ms))
        .with_max_delay(Duration::from_millis(max_ms))
        .with_multiplier(2.0)
        .with_jitter(Jitter::None)
        .with_reset_after(Duration::from_millis(300))
}

#[test]
fn dialed_connection_runs_through_the_same_handler() {
    let server = echo_server("127.0.0.1:0");
    let (client, rx) = client_engine();
    let dial = client.connect(server.local_addrs()[0], 0u32).unwrap();
    assert_eq!(next(&rx, "open").1, C::Open(dial, 1));
    let mut echoed = Vec::new();
    while echoed.len() < 5 {
        match next(&rx, "echo").1 {
            C::Data(d) => echoed.extend(d),
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(echoed, b"hello");
    assert_eq!(client.connection_count(), 1);
    client.stop();
    server.stop();
}

#[test]
fn refused_dial_without_policy_reports_once() {
    let (client, rx) = client_engine();
    client.connect(free_port(), 0u32).unwrap();
    match next(&rx, "failure").1 {
        C::Failed {
            attempt: 1,
            retry_in: None,
            kind,
        } => {
            assert_eq!(kind, std::io::ErrorKind::ConnectionRefused)
        }
        other => panic!("unexpected {other:?}"),
    }
    assert!(
        rx.recv_timeout(Duration::from_millis(200)).is_err(),
        "no retry without a policy"
    );
    client.stop();
}

#[test]
fn a_client_started_before_its_server_connects_once_it_appears() {
    let addr = free_port();
    let (client, rx) = client_engine();
    let opts = ConnectOptions::default().reconnect(policy(20, 200));
    let dial = client.connect_with(addr, 0u32, opts).unwrap();
    // Two refusals with growing delays, then the server appears.
    let mut delays = Vec::new();
    while delays.len() < 2 {
        if let (
            _,
            C::Failed {
                retry_in: Some(d), ..
            },
        ) = next(&rx, "refusal")
        {
            delays.push(d);
        }
    }
    assert_eq!(
        delays,
        [Duration::from_millis(20), Duration::from_millis(40)]
    );
    let server = echo_server(&addr.to_string());
    loop {
        match next(&rx, "open").1 {
            C::Open(d, 1) => {
                assert_eq!(d, dial);
                break;
            }
            C::Failed { .. } => {}
            other => panic!("unexpected {other:?}"),
        }
    }
    client.stop();
    server.stop();
}

#[test]
fn server_restart_is_reconnected_with_growing_then_reset_delays() {
    let addr = free_port().to_string();
    let server = echo_server(&addr);
    let (client, rx) = client_engine();
    let opts = ConnectOptions::default().reconnect(policy(30, 1000));
    let dial = client
        .connect_with(addr.parse::<SocketAddr>().unwrap(), 0u32, opts)
        .unwrap();
    assert_eq!(next(&rx, "open").1, C::Open(dial, 1));
    // Stay up past reset_after, then lose the server.
    std::thread::sleep(Duration::from_millis(350));
    server.stop();
    let mut attempts = Vec::new();
    let lost = loop {
        match next(&rx, "reconnect").1 {
            C::Reconnecting { attempt, delay } => {
                attempts.push((attempt, delay));
                break Instant::now();
            }
            C::Closed(_) | C::Data(_) => {}
            other => panic!("unexpected {other:?}"),
        }
    };
    assert_eq!(
        attempts,
        [(1, Duration::from_millis(30))],
        "first retry after the initial delay"
    );
    // While the server is down, delays grow: 60, 120, 240 ms.
    let mut grown = Vec::new();
    while grown.len() < 3 {
        if let (
            _,
            C::Failed {
                retry_in: Some(d), ..
            },
        ) = next(&rx, "refusal")
        {
            grown.push(d.as_millis());
        }
    }
    assert_eq!(grown, [60, 120, 240]);
    let restarted_at = Instant::now();
    let server = echo_server(&addr);
    let reopened = loop {
        match next(&rx, "reopen") {
            (at, C::Open(d, n)) => {
                assert_eq!((d, n), (dial, 2), "same link, same state, second open");
                break at;
            }
            (_, C::Failed { .. }) => {}
            other => panic!("unexpected {other:?}"),
        }
    };
    // Within one backoff interval (the longest pending delay is 480 ms) of the
    // server listening again.
    assert!(reopened - restarted_at <= Duration::from_millis(480 + 200));
    assert!(reopened > lost);
    // Up past reset_after again, then lost again: the sequence starts over.
    std::thread::sleep(Duration::from_millis(350));
    server.stop();
    loop {
        match next(&rx, "second reconnect").1 {
            C::Reconnecting { attempt, delay } => {
                assert_eq!((attempt, delay), (1, Duration::from_millis(30)));
                break;
            }
            C::Closed(_) | C::Data(_) => {}
            other => panic!("unexpected {other:?}"),
        }
    }
    client.stop();
}

#[test]
fn connect_timeout_to_a_full_backlog_is_reported() {
    // A listener that never accepts, its backlog filled: further SYNs are dropped,
    // so a connect neither succeeds nor fails until the timeout.
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    socket
        .bind(&"127.0.0.1:0".parse::<SocketAddr>().unwrap().into())
        .unwrap();
    socket.listen(0).unwrap();
    let addr = socket.local_addr().unwrap().as_socket().unwrap();
    let mut fillers = Vec::new();
    for _ in 0..8 {
        let s = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
        s.set_nonblocking(true).unwrap();
        let _ = s.connect(&addr.into());
        fillers.push(s);
    }
    let (client, rx) = client_engine();
    let opts = ConnectOptions::default().timeout(Duration::from_millis(300));
    let started = Instant::now();
    client.connect_with(addr, 0u32, opts).unwrap();
    match next(&rx, "timeout") {
        (
            at,
            C::Failed {
                kind,
                retry_in: None,
                ..
            },
        ) => {
            assert_eq!(kind, std::io::ErrorKind::TimedOut);
            assert!(at - started >= Duration::from_millis(300));
        }
        other => panic!("unexpected {other:?}"),
    }
    client.stop();
    drop(socket);
}
