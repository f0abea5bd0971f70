//! Topics: subscribe, publish from callbacks and threads, membership after
//! close, the slow-subscriber policies, and limits on peer-controlled topics.

mod util;

use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::sync::Mutex;
use std::sync::mpsc::{Receiver, Sender, channel};

use bytes::Bytes;
use tether::{Action, Conn, ConnId, Engine, EventHandler, Options, SlowSubscriber};
use util::{DEADLINE, connect, connect_small_rcvbuf, read_n, stats_until};

/// Line protocol: `SUB t`, `UNSUB t`, `PUB t msg` (published from the callback),
/// `ERRS?` (how many subscriptions this connection had refused). Answers
/// `OK`/`ERR <reason>` to SUB and UNSUB only when `verbose`.
struct Pubsub {
    opened: Sender<ConnId>,
    verbose: bool,
}

#[derive(Default)]
struct St {
    refused: u64,
}

impl EventHandler for Pubsub {
    type State = St;

    fn on_open(&mut self, conn: &mut Conn<'_, St>) -> Action {
        let _ = self.opened.send(conn.id());
        Action::Continue
    }

    fn on_traffic(&mut self, conn: &mut Conn<'_, St>) -> Action {
        loop {
            let data = conn.read_buf();
            let Some(end) = data.iter().position(|&b| b == b'\n') else {
                return Action::Continue;
            };
            let line = std::str::from_utf8(&data[..end]).unwrap_or("").to_string();
            conn.consume(end + 1);
            let (cmd, rest) = line.split_once(' ').unwrap_or((&line, ""));
            match cmd {
                "SUB" => match conn.subscribe(rest) {
                    Ok(_) if self.verbose => conn.write(b"OK\n"),
                    Ok(_) => {}
                    Err(e) if self.verbose => conn.write(format!("ERR {e}\n").as_bytes()),
                    Err(_) => conn.state_mut().refused += 1,
                },
                "UNSUB" => {
                    let was = conn.unsubscribe(rest);
                    if self.verbose {
                        conn.write(if was { b"OK\n" } else { b"NO\n" });
                    }
                }
                "PUB" => {
                    let (topic, msg) = rest.split_once(' ').unwrap_or((rest, ""));
                    conn.publish(topic, Bytes::from(format!("{msg}\n")));
                }
                "ERRS?" => {
                    let n = conn.state().refused;
                    conn.write(format!("{n}\n").as_bytes());
                }
                _ => conn.write(b"ERR unknown\n"),
            }
        }
    }
}

fn engine(opts: Options, loops: usize, verbose: bool) -> (Engine, Receiver<ConnId>) {
    let (tx, rx) = channel();
    let tx = Mutex::new(tx);
    let engine = Engine::builder(move |_| Pubsub {
        opened: tx.lock().expect("tx").clone(),
        verbose,
    })
    .options(opts)
    .loops(loops)
    .reuse_port(false)
    .listen("127.0.0.1:0")
    .start()
    .expect("engine");
    (engine, rx)
}

fn line(r: &mut BufReader<TcpStream>) -> String {
    let mut s = String::new();
    r.read_line(&mut s).expect("a line within the deadline");
    s
}

fn client(engine: &Engine, rx: &Receiver<ConnId>) -> (BufReader<TcpStream>, ConnId) {
    let s = connect(engine.local_addrs()[0]);
    let id = rx.recv_timeout(DEADLINE).expect("opened");
    (BufReader::new(s), id)
}

fn send(r: &mut BufReader<TcpStream>, msg: &str) {
    r.get_mut().write_all(msg.as_bytes()).expect("write");
}

#[test]
fn publish_reaches_subscribers_on_every_loop_and_close_leaves_the_topics() {
    let (engine, rx) = engine(Options::default(), 2, true);
    let mut members: Vec<_> = (0..6).map(|_| client(&engine, &rx)).collect();
    assert!(members.iter().any(|(_, id)| id.loop_id() == 1));
    for (r, _) in &mut members {
        send(r, "SUB room\n");
        assert_eq!(line(r), "OK\n");
    }
    let s = stats_until(&engine, "6 subscriptions", |s| s.total.subscriptions == 6);
    assert_eq!(s.total.topics, 2, "one table per loop");
    // From a callback: reaches the members of both loops.
    send(&mut members[0].0, "PUB room hello\n");
    for (r, _) in &mut members {
        assert_eq!(line(r), "hello\n");
    }
    // From another thread.
    engine.publish("room", "from a thread\n").expect("publish");
    for (r, _) in &mut members {
        assert_eq!(line(r), "from a thread\n");
    }
    // Two leave: one unsubscribes, one closes.
    let (mut leaver, _) = members.remove(1);
    send(&mut leaver, "UNSUB room\n");
    assert_eq!(line(&mut leaver), "OK\n");
    drop(members.remove(1));
    stats_until(&engine, "4 subscriptions", |s| s.total.subscriptions == 4);
    engine.publish("room", "after\n").expect("publish");
    for (r, _) in &mut members {
        assert_eq!(line(r), "after\n");
    }
    // Re-subscribing works, and a new connection in a reused slot starts clean.
    send(&mut leaver, "SUB room\n");
    assert_eq!(line(&mut leaver), "OK\n");
    let (mut fresh, _) = client(&engine, &rx);
    engine.publish("room", "again\n").expect("publish");
    assert_eq!(line(&mut leaver), "again\n");
    send(&mut fresh, "UNSUB room\n");
    assert_eq!(line(&mut fresh), "NO\n", "never subscribed");
    // Nobody left: the topic is gone from the tables.
    drop(members);
    drop(leaver);
    stats_until(&engine, "no topics", |s| {
        s.total.subscriptions == 0 && s.total.topics == 0
    });
    engine.stop();
}

/// A subscriber that never reads, a fast one, and a publisher thread.
fn slow_subscriber(policy: SlowSubscriber) -> (Engine, tether::Stats, Vec<u8>) {
    let mut opts = Options::default();
    opts.slow_subscriber = policy;
    opts.max_backpressure = 64 * 1024;
    let (engine, rx) = engine(opts, 1, true);
    let mut slow = connect_small_rcvbuf(engine.local_addrs()[0], 4096);
    rx.recv_timeout(DEADLINE).expect("opened");
    slow.write_all(b"SUB feed\n").expect("sub");
    let mut slow_r = BufReader::new(slow.try_clone().expect("clone"));
    assert_eq!(line(&mut slow_r), "OK\n");
    let (mut fast, _) = client(&engine, &rx);
    send(&mut fast, "SUB feed\n");
    assert_eq!(line(&mut fast), "OK\n");
    // Far more than the slow peer's socket buffers and the backpressure limit.
    let msg = Bytes::from(vec![b'x'; 16 * 1024]);
    const N: usize = 800;
    let received = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let progress = received.clone();
    let reader = std::thread::spawn(move || {
        let mut got = Vec::new();
        for _ in 0..N {
            got.extend(read_n(fast.get_mut(), msg_len()));
            progress.fetch_add(1, std::sync::atomic::Ordering::Release);
        }
        (got, fast)
    });
    for i in 0..N {
        // Paced by the fast subscriber (at most two messages ahead of it, well
        // under the limit), never by the slow one.
        let end = std::time::Instant::now() + DEADLINE;
        while i > received.load(std::sync::atomic::Ordering::Acquire) + 2 {
            assert!(
                std::time::Instant::now() < end,
                "the fast subscriber stalled"
            );
            std::thread::yield_now();
        }
        engine.publish("feed", msg.clone()).expect("publish");
    }
    let (got, fast) = reader.join().expect("fast reader");
    let stats = engine.stats();
    drop(fast);
    (engine, stats, got)
}

fn msg_len() -> usize {
    16 * 1024
}

#[test]
fn a_slow_subscriber_loses_messages_under_drop_and_the_others_get_all() {
    let (engine, stats, got) = slow_subscriber(SlowSubscriber::Drop);
    assert_eq!(
        got.len(),
        800 * msg_len(),
        "the fast subscriber got everything"
    );
    assert!(stats.total.topic_drops > 0, "drops counted: {stats:?}");
    assert_eq!(stats.total.closed_by.slow_subscriber, 0);
    assert_eq!(stats.total.open, 2, "the slow one stays open");
    // Bounded: what is queued for it stays near the limit.
    assert!(stats.total.buffer_bytes < 4 << 20);
    engine.stop();
}

#[test]
fn a_slow_subscriber_is_closed_under_close_and_the_others_get_all() {
    let (engine, _, got) = slow_subscriber(SlowSubscriber::Close);
    assert_eq!(got.len(), 800 * msg_len());
    let stats = stats_until(&engine, "the slow one closed", |s| {
        s.total.closed_by.slow_subscriber == 1
    });
    assert_eq!(stats.total.topic_drops, 0);
    engine.stop();
}

#[test]
fn a_million_subscriptions_cost_bounded_memory() {
    let mut opts = Options::default();
    opts.max_topics_per_conn = 1000;
    let (engine, rx) = engine(opts, 1, false);
    let (mut c, _) = client(&engine, &rx);
    let writer = {
        let mut w = c.get_ref().try_clone().expect("clone");
        std::thread::spawn(move || {
            let mut batch = String::with_capacity(64 * 1024);
            for i in 0..1_000_000u32 {
                batch.push_str("SUB t");
                batch.push_str(&i.to_string());
                batch.push('\n');
                if batch.len() > 60 * 1024 {
                    w.write_all(batch.as_bytes()).expect("write");
                    batch.clear();
                }
            }
            batch.push_str("ERRS?\n");
            w.write_all(batch.as_bytes()).expect("write");
        })
    };
    writer.join().expect("writer");
    assert_eq!(line(&mut c), "999000\n", "all but the first 1000 refused");
    let s = engine.stats().total;
    assert_eq!(s.subscriptions, 1000);
    assert_eq!(s.topics, 1000);
    drop(c);
    stats_until(&engine, "memberships gone", |s| s.total.subscriptions == 0);
    engine.stop();
}

#[test]
fn bad_topic_names_are_typed_errors() {
    let (engine, rx) = engine(Options::default(), 1, true);
    let (mut c, _) = client(&engine, &rx);
    send(&mut c, &format!("SUB {}\n", "x".repeat(300)));
    assert_eq!(
        line(&mut c),
        "ERR topic name of 300 bytes (must be 1..=256)\n"
    );
    send(&mut c, "SUB \n");
    assert!(line(&mut c).starts_with("ERR topic name of 0 bytes"));
    engine.stop();
}
