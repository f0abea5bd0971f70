//! The core reactor over real loopback sockets: echo, accept modes, large
//! payloads, half-close, reset, stale ids, commands from other threads, stop,
//! panic isolation.

mod util;

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::Shutdown;
use std::time::Duration;

use tether::{Action, Conn, Engine, EventHandler, LoadBalancer};
use util::*;

/// Echoes `msg` on each of `n` connections and returns how many each loop opened.
fn echo_many(
    engine: &Engine,
    rx: &std::sync::mpsc::Receiver<Ev>,
    n: usize,
) -> HashMap<usize, usize> {
    let addr = engine.local_addrs()[0];
    let mut clients: Vec<_> = (0..n).map(|_| connect(addr)).collect();
    for (i, c) in clients.iter_mut().enumerate() {
        c.write_all(&pattern(100, i as u64)).unwrap();
    }
    for (i, c) in clients.iter_mut().enumerate() {
        assert_eq!(read_n(c, 100), pattern(100, i as u64), "connection {i}");
    }
    let mut per_loop = HashMap::new();
    for _ in 0..n {
        if let Ev::Open(id) = wait_for(rx, "open", |e| matches!(e, Ev::Open(_))) {
            *per_loop.entry(id.loop_id()).or_insert(0) += 1;
        }
    }
    assert_eq!(engine.connection_count(), n);
    drop(clients);
    for _ in 0..n {
        wait_for(
            rx,
            "close",
            |e| matches!(e, Ev::Close(_, r) if r == "PeerClosed"),
        );
    }
    per_loop
}

#[test]
fn echo_1000_connections_two_loops_reuseport() {
    let (factory, rx) = recorder();
    let engine = Engine::builder(factory)
        .loops(2)
        .reuse_port(true)
        .listen("127.0.0.1:0")
        .start()
        .unwrap();
    let per_loop = echo_many(&engine, &rx, 1000);
    assert_eq!(per_loop.values().sum::<usize>(), 1000);
    assert_eq!(
        per_loop.len(),
        2,
        "the kernel spread connections over both loops: {per_loop:?}"
    );
    engine.stop();
}

#[test]
fn echo_1000_connections_two_loops_shared_listener_round_robin() {
    let (factory, rx) = recorder();
    let engine = Engine::builder(factory)
        .loops(2)
        .reuse_port(false)
        .load_balancer(LoadBalancer::RoundRobin)
        .listen("tcp://127.0.0.1:0")
        .start()
        .unwrap();
    let per_loop = echo_many(&engine, &rx, 1000);
    assert_eq!(per_loop, HashMap::from([(0, 500), (1, 500)]));
    engine.stop();
}

#[test]
fn shared_listener_least_connections_balances() {
    let (factory, rx) = recorder();
    let engine = Engine::builder(factory)
        .loops(2)
        .reuse_port(false)
        .load_balancer(LoadBalancer::LeastConnections)
        .listen("127.0.0.1:0")
        .start()
        .unwrap();
    let per_loop = echo_many(&engine, &rx, 200);
    let (a, b) = (per_loop[&0], per_loop[&1]);
    assert!(a.abs_diff(b) <= 2, "least-connections split {a}/{b}");
    engine.stop();
}

#[test]
fn shared_listener_source_hash_keeps_one_host_on_one_loop() {
    let (factory, rx) = recorder();
    let engine = Engine::builder(factory)
        .loops(2)
        .reuse_port(false)
        .load_balancer(LoadBalancer::SourceAddrHash)
        .listen("127.0.0.1:0")
        .start()
        .unwrap();
    let per_loop = echo_many(&engine, &rx, 50);
    assert_eq!(
        per_loop.len(),
        1,
        "all from 127.0.0.1 on one loop: {per_loop:?}"
    );
    engine.stop();
}

#[test]
fn sixteen_mib_through_one_connection() {
    let (factory, _rx) = recorder();
    let engine = one_loop(factory);
    let mut client = connect(engine.local_addrs()[0]);
    let payload = pattern(16 << 20, 7);
    let mut writer = client.try_clone().unwrap();
    let to_send = payload.clone();
    let sender = std::thread::spawn(move || writer.write_all(&to_send).unwrap());
    let echoed = read_n(&mut client, payload.len());
    sender.join().unwrap();
    assert!(echoed == payload, "16 MiB echoed byte for byte");
    // The loop counts a write after it returns, which may be after the client
    // has the bytes.
    let stats =
        util::stats_until(&engine, "16 MiB counted", |s| s.total.bytes_out >= 16 << 20).total;
    assert_eq!(stats.bytes_in, 16 << 20);
    assert_eq!(stats.bytes_out, 16 << 20);
    engine.stop();
}

#[test]
fn half_close_flushes_then_closes_with_peer_closed() {
    let (factory, rx) = recorder();
    let engine = one_loop(factory);
    let mut client = connect(engine.local_addrs()[0]);
    let msg = pattern(300_000, 3);
    client.write_all(&msg).unwrap();
    client.shutdown(Shutdown::Write).unwrap();
    let echoed = read_to_eof(&mut client);
    assert!(echoed == msg, "all output flushed before the close");
    wait_for(
        &rx,
        "PeerClosed",
        |e| matches!(e, Ev::Close(_, r) if r == "PeerClosed"),
    );
    engine.stop();
}

#[test]
fn reset_by_peer_closes_with_reset() {
    let (factory, rx) = recorder();
    let engine = one_loop(factory);
    let mut client = connect(engine.local_addrs()[0]);
    roundtrip(&mut client, b"hi");
    socket2::SockRef::from(&client)
        .set_linger(Some(Duration::ZERO))
        .unwrap();
    drop(client);
    wait_for(
        &rx,
        "Reset",
        |e| matches!(e, Ev::Close(_, r) if r == "Reset"),
    );
    assert_eq!(engine.connection_count(), 0);
    engine.stop();
}

#[test]
fn stale_conn_id_does_not_reach_the_slot_reuser() {
    let (factory, rx) = recorder();
    let engine = one_loop(factory);
    let addr = engine.local_addrs()[0];
    let first = connect(addr);
    let Ev::Open(old) = next_event(&rx, "first open") else {
        panic!()
    };
    drop(first);
    wait_for(&rx, "first close", |e| matches!(e, Ev::Close(..)));
    let mut second = connect(addr);
    let Ev::Open(new) = next_event(&rx, "second open") else {
        panic!()
    };
    assert_ne!(old, new);
    assert_eq!(
        old.as_u64() >> 24,
        new.as_u64() >> 24,
        "the slot was reused"
    );
    engine.send(old, &b"stale"[..]).unwrap();
    engine.send(new, &b"fresh"[..]).unwrap();
    // Commands apply in order, so "fresh" arriving first proves "stale" was dropped.
    assert_eq!(read_n(&mut second, 5), b"fresh");
    assert_eq!(engine.stats().total.stale_commands, 1);
    engine.close(old).unwrap();
    roundtrip(&mut second, b"still open");
    engine.stop();
    assert_eq!(
        engine.send(new, &b"late"[..]),
        Err(tether::SendError::Stopped)
    );
}

#[test]
fn send_wake_close_from_another_thread() {
    let (factory, rx) = recorder();
    let engine = Engine::builder(factory)
        .loops(2)
        .listen("127.0.0.1:0")
        .start()
        .unwrap();
    let mut client = connect(engine.local_addrs()[0]);
    let Ev::Open(id) = next_event(&rx, "open") else {
        panic!()
    };
    let remote = engine.clone();
    std::thread::spawn(move || {
        remote.send(id, &b"hello "[..]).unwrap();
        remote.send(id, vec![b'w'; 3]).unwrap();
        remote.wake(id).unwrap();
        remote.close(id).unwrap();
    })
    .join()
    .unwrap();
    assert_eq!(read_to_eof(&mut client), b"hello wwwwoke");
    assert_eq!(next_event(&rx, "wake"), Ev::Wake(id));
    assert_eq!(next_event(&rx, "close"), Ev::Close(id, "Local".into()));
    engine.stop();
}

/// Writes `n` bytes as soon as a connection opens.
struct Greeter(usize);

impl EventHandler for Greeter {
    type State = ();
    fn on_open(&mut self, conn: &mut Conn<'_, ()>) -> Action {
        conn.write(&pattern(self.0, 11));
        Action::Continue
    }
    fn on_traffic(&mut self, _conn: &mut Conn<'_, ()>) -> Action {
        Action::Continue
    }
}

#[test]
fn stop_flushes_pending_output_and_closes_everything() {
    let size = 1 << 20;
    let engine = Engine::builder(move |_| Greeter(size))
        .loops(2)
        .listen("127.0.0.1:0")
        .start()
        .unwrap();
    let addr = engine.local_addrs()[0];
    let clients: Vec<_> = (0..10).map(|_| connect(addr)).collect();
    // Make sure every connection is open server-side (and its greeting is pending:
    // nobody reads yet, so 1 MiB cannot all fit in the socket buffers).
    let end = std::time::Instant::now() + DEADLINE;
    while engine.connection_count() < 10 {
        assert!(
            std::time::Instant::now() < end,
            "connections not opened in time"
        );
        std::thread::yield_now();
    }
    let readers: Vec<_> = clients
        .into_iter()
        .map(|mut c| std::thread::spawn(move || read_to_eof(&mut c)))
        .collect();
    engine.stop();
    assert_eq!(engine.connection_count(), 0);
    assert!(engine.is_stopped());
    for r in readers {
        assert!(
            r.join().unwrap() == pattern(size, 11),
            "greeting flushed before close"
        );
    }
}

#[test]
fn a_panicking_callback_closes_only_its_connection() {
    let (factory, rx) = recorder();
    let engine = one_loop(factory);
    let addr = engine.local_addrs()[0];
    let mut good = connect(addr);
    let mut bad = connect(addr);
    roundtrip(&mut good, b"before");
    bad.write_all(b"PANIC").unwrap();
    wait_for(
        &rx,
        "Panic close",
        |e| matches!(e, Ev::Close(_, r) if r == "Panic"),
    );
    assert_eq!(read_to_eof(&mut bad), b"");
    roundtrip(&mut good, b"after");
    let mut late = connect(addr);
    roundtrip(&mut late, b"new connections still served");
    engine.stop();
}

#[test]
fn bad_address_is_a_typed_error() {
    let (factory, _rx) = recorder();
    let err = Engine::builder(factory)
        .listen("127.0.0.1")
        .start()
        .unwrap_err();
    assert!(
        matches!(
            err,
            tether::Error::Addr(tether::net::AddrError::MissingPort(_))
        ),
        "{err}"
    );
}

#[test]
fn read_buf_keeps_unconsumed_bytes_across_reads() {
    /// Answers each complete line, keeping partial lines.
    struct Lines;
    impl EventHandler for Lines {
        type State = ();
        fn on_traffic(&mut self, conn: &mut Conn<'_, ()>) -> Action {
            while let Some(pos) = conn.read_buf().iter().position(|&b| b == b'\n') {
                let line = &conn.read_buf()[..=pos];
                conn.write(line);
                conn.consume(pos + 1);
            }
            Action::Continue
        }
    }
    let engine = one_loop(|_| Lines);
    let mut c = connect(engine.local_addrs()[0]);
    c.write_all(b"par").unwrap();
    c.flush().unwrap();
    // A partial line is held, not echoed; the rest completes it.
    std::thread::yield_now();
    c.write_all(b"tial\nsecond\nthi").unwrap();
    assert_eq!(read_n(&mut c, 15), b"partial\nsecond\n");
    c.write_all(b"rd\n").unwrap();
    assert_eq!(read_n(&mut c, 6), b"third\n");
    let mut rest = [0u8; 1];
    c.set_read_timeout(Some(Duration::from_millis(50))).unwrap();
    assert!(c.read(&mut rest).is_err(), "nothing more");
    engine.stop();
}

#[test]
fn a_handler_can_shut_the_engine_down() {
    /// Echoes, and stops the whole engine when told `bye`.
    struct Stopper {
        tx: std::sync::mpsc::Sender<String>,
    }
    impl EventHandler for Stopper {
        type State = ();
        fn on_traffic(&mut self, conn: &mut Conn<'_, ()>) -> Action {
            if conn.read_buf() == b"bye" {
                conn.consume(3);
                return Action::Shutdown;
            }
            let data = conn.read_buf();
            conn.write(data);
            conn.consume(data.len());
            Action::Continue
        }
        fn on_close(&mut self, _conn: &mut Conn<'_, ()>, reason: &tether::CloseReason) {
            let _ = self.tx.send(reason_name(reason));
        }
    }
    let (tx, rx) = std::sync::mpsc::channel();
    let engine = Engine::builder(move |_| Stopper { tx: tx.clone() })
        .loops(2)
        .listen("127.0.0.1:0")
        .start()
        .unwrap();
    let addr = engine.local_addrs()[0];
    let mut other = connect(addr);
    roundtrip(&mut other, b"still here");
    let mut c = connect(addr);
    c.write_all(b"bye").unwrap();
    // Every connection closes with Shutdown, and the loop threads end.
    for _ in 0..2 {
        assert_eq!(rx.recv_timeout(DEADLINE).unwrap(), "Shutdown");
    }
    engine.join();
    assert!(engine.is_stopped());
    assert_eq!(read_to_eof(&mut other), b"");
}

#[test]
fn close_after_flush_delivers_everything_then_closes() {
    /// Greets with 1 MiB, then asks to close once it is all sent.
    struct Farewell {
        tx: std::sync::mpsc::Sender<String>,
    }
    impl EventHandler for Farewell {
        type State = ();
        fn on_open(&mut self, conn: &mut Conn<'_, ()>) -> Action {
            // Socket options set from a callback read back the same.
            conn.set_nodelay(false).unwrap();
            assert!(!conn.socket().tcp_nodelay().unwrap());
            conn.set_keepalive(Some(Duration::from_secs(42))).unwrap();
            assert_eq!(
                conn.socket().tcp_keepalive_time().unwrap(),
                Duration::from_secs(42)
            );
            conn.write(&pattern(1 << 20, 5));
            conn.close_after_flush();
            Action::Continue
        }
        fn on_traffic(&mut self, _conn: &mut Conn<'_, ()>) -> Action {
            Action::Continue
        }
        fn on_close(&mut self, _conn: &mut Conn<'_, ()>, reason: &tether::CloseReason) {
            let _ = self.tx.send(reason_name(reason));
        }
    }
    let (tx, rx) = std::sync::mpsc::channel();
    let engine = one_loop(move |_| Farewell { tx: tx.clone() });
    let mut c = connect(engine.local_addrs()[0]);
    assert!(
        read_to_eof(&mut c) == pattern(1 << 20, 5),
        "all of it, then EOF"
    );
    assert_eq!(rx.recv_timeout(DEADLINE).unwrap(), "Local");
    engine.stop();
}

#[test]
fn on_boot_runs_once_per_loop_on_its_thread() {
    struct Boot {
        tx: std::sync::mpsc::Sender<(usize, String)>,
    }
    impl EventHandler for Boot {
        type State = ();
        fn on_boot(&mut self, ctx: &mut tether::LoopCtx<'_, Self::State>) {
            let thread = std::thread::current()
                .name()
                .unwrap_or_default()
                .to_string();
            let _ = self.tx.send((ctx.loop_id(), thread));
        }
        fn on_traffic(&mut self, _conn: &mut Conn<'_, ()>) -> Action {
            Action::Continue
        }
    }
    let (tx, rx) = std::sync::mpsc::channel();
    let engine = Engine::builder(move |_| Boot { tx: tx.clone() })
        .loops(3)
        .start()
        .unwrap();
    let mut boots: Vec<_> = (0..3).map(|_| rx.recv_timeout(DEADLINE).unwrap()).collect();
    boots.sort();
    let want: Vec<_> = (0..3).map(|i| (i, format!("tether-loop-{i}"))).collect();
    assert_eq!(boots, want);
    engine.stop();
    assert!(rx.try_recv().is_err(), "exactly once each");
}
