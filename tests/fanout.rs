//! Fan-out: writing to other connections of the loop, broadcast, `Bytes`
//! segments, coalescing, and the order bytes reach a socket in.

mod util;

use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::sync::mpsc::{Receiver, Sender, channel};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use tether::{Action, Conn, ConnId, Engine, EventHandler, Options};
use util::{DEADLINE, connect, connect_small_rcvbuf, pattern, read_n, stats_until};

#[derive(Default, Clone, Copy, PartialEq, Eq, Debug)]
enum Role {
    #[default]
    New,
    /// Receives everything; each byte it sends makes it write two lines to itself.
    Sink,
    /// Each byte it sends makes it write two lines to the sink.
    Source,
    /// Reads and ignores.
    Quiet,
}

/// `S` makes a connection the sink, `X` a source, `Q` quiet, `W` blocks the loop
/// until the test opens the gate.
struct Hub {
    seq: u64,
    sink: Option<ConnId>,
    ids: Sender<ConnId>,
    blocked: Sender<()>,
    gate: Arc<Mutex<Receiver<()>>>,
}

fn line(seq: u64) -> String {
    format!("L{seq}\n")
}

impl EventHandler for Hub {
    type State = Role;

    fn on_traffic(&mut self, conn: &mut Conn<'_, Role>) -> Action {
        let data = conn.read_buf();
        conn.consume(data.len());
        for &b in data {
            match (*conn.state(), b) {
                (Role::New, b'S') => {
                    *conn.state_mut() = Role::Sink;
                    self.sink = Some(conn.id());
                    let _ = self.ids.send(conn.id());
                }
                (Role::New, b'X') => *conn.state_mut() = Role::Source,
                (Role::New, b'Q') => {
                    *conn.state_mut() = Role::Quiet;
                    let _ = self.ids.send(conn.id());
                }
                (Role::New, b'W') => {
                    let _ = self.blocked.send(());
                    let gate = self.gate.lock().expect("gate");
                    gate.recv_timeout(DEADLINE)
                        .expect("the test opens the gate");
                }
                (Role::Sink, _) => {
                    // Own connection: a copied write, then a zero-copy send.
                    conn.write(line(self.seq).as_bytes());
                    conn.send(Bytes::from(line(self.seq + 1)));
                    self.seq += 2;
                }
                (Role::Source, _) => {
                    let Some(sink) = self.sink else { continue };
                    let mut ctx = conn.ctx();
                    let written = ctx
                        .conn(sink)
                        .map(|mut s| s.write(line(self.seq).as_bytes()));
                    assert_eq!(written, Some(true), "the sink is on this loop");
                    let n = ctx.broadcast(&[sink], Bytes::from(line(self.seq + 1)));
                    assert_eq!(n, 1);
                    self.seq += 2;
                }
                _ => {}
            }
        }
        Action::Continue
    }
}

struct Setup {
    engine: Engine,
    ids: Receiver<ConnId>,
    blocked: Receiver<()>,
    gate: Sender<()>,
}

fn hub(opts: Options) -> Setup {
    let (ids_tx, ids) = channel();
    let (blocked_tx, blocked) = channel();
    let (gate, gate_rx) = channel();
    let gate_rx = Arc::new(Mutex::new(gate_rx));
    let ids_tx = Mutex::new(ids_tx);
    let blocked_tx = Mutex::new(blocked_tx);
    let engine = Engine::builder(move |_| Hub {
        seq: 0,
        sink: None,
        ids: ids_tx.lock().expect("ids").clone(),
        blocked: blocked_tx.lock().expect("blocked").clone(),
        gate: gate_rx.clone(),
    })
    .options(opts)
    .loops(1)
    .listen("127.0.0.1:0")
    .start()
    .expect("engine");
    Setup {
        engine,
        ids,
        blocked,
        gate,
    }
}

fn join(engine: &Engine, role: u8, ids: &Receiver<ConnId>) -> (TcpStream, ConnId) {
    let mut s = connect(engine.local_addrs()[0]);
    s.write_all(&[role]).expect("write role");
    let id = ids.recv_timeout(DEADLINE).expect("registered");
    (s, id)
}

/// Parses `<tag><n>\n` lines.
fn read_lines(s: &TcpStream, count: usize) -> Vec<(u8, u64)> {
    let mut r = BufReader::new(s.try_clone().expect("clone"));
    let mut out = Vec::with_capacity(count);
    let mut buf = String::new();
    while out.len() < count {
        buf.clear();
        r.read_line(&mut buf).expect("a line within the deadline");
        let tag = buf.as_bytes()[0];
        let n: u64 = buf[1..].trim_end().parse().expect("number");
        out.push((tag, n));
    }
    out
}

fn assert_in_order(lines: &[(u8, u64)], tag: u8, expected: u64) {
    let got: Vec<u64> = lines
        .iter()
        .filter(|(t, _)| *t == tag)
        .map(|(_, n)| *n)
        .collect();
    let want: Vec<u64> = (0..expected).collect();
    assert_eq!(got, want, "lines {} in the order written", tag as char);
}

#[test]
fn bytes_reach_a_socket_in_the_order_written_from_every_source() {
    let setup = hub(Options::default());
    let engine = setup.engine.clone();
    let (mut sink, sink_id) = join(&engine, b'S', &setup.ids);
    let mut sources: Vec<TcpStream> = (0..2)
        .map(|_| {
            let mut s = connect(engine.local_addrs()[0]);
            s.write_all(b"X").expect("role");
            s
        })
        .collect();
    const PER_SOURCE: u64 = 200;
    const FROM_SINK: u64 = 200;
    const FROM_THREAD: u64 = 300;
    let sender = {
        let engine = engine.clone();
        std::thread::spawn(move || {
            for k in 0..FROM_THREAD {
                engine.send(sink_id, format!("E{k}\n")).expect("send");
                engine
                    .broadcast(&[sink_id], Bytes::from(format!("F{k}\n")))
                    .expect("broadcast");
            }
        })
    };
    // Everybody writes at once, in small pieces, so the loop's passes mix
    // writes from callbacks of several connections and commands.
    for chunk in 0..10 {
        for s in &mut sources {
            s.write_all(&[b'.'; (PER_SOURCE / 10) as usize])
                .expect("source");
        }
        if chunk % 2 == 0 {
            sink.write_all(&[b'.'; (FROM_SINK / 5) as usize])
                .expect("sink");
        }
    }
    let total = (2 * PER_SOURCE * 2 + FROM_SINK * 2 + FROM_THREAD * 2) as usize;
    let lines = read_lines(&sink, total);
    sender.join().expect("sender");
    // Every loop-side write takes the next number when it is made, so the
    // numbers arrive in order exactly when the bytes do.
    assert_in_order(&lines, b'L', 2 * PER_SOURCE * 2 + FROM_SINK * 2);
    assert_in_order(&lines, b'E', FROM_THREAD);
    assert_in_order(&lines, b'F', FROM_THREAD);
    engine.stop();
}

#[test]
fn sends_to_one_connection_in_one_inbox_drain_share_one_writev() {
    let setup = hub(Options::default());
    let engine = setup.engine.clone();
    let (mut a, a_id) = join(&engine, b'Q', &setup.ids);
    let (mut b, b_id) = join(&engine, b'Q', &setup.ids);
    let before = engine.stats().total;
    // Block the loop inside a callback, queue interleaved sends, release it:
    // the loop takes all of them in one drain.
    let mut w = connect(engine.local_addrs()[0]);
    w.write_all(b"W").expect("w");
    setup.blocked.recv_timeout(DEADLINE).expect("loop blocked");
    const N: usize = 50;
    for i in 0..N {
        engine.send(a_id, format!("a{i:02}")).expect("send a");
        engine.send(b_id, format!("b{i:02}")).expect("send b");
    }
    setup.gate.send(()).expect("open gate");
    let want_a: String = (0..N).map(|i| format!("a{i:02}")).collect();
    let want_b: String = (0..N).map(|i| format!("b{i:02}")).collect();
    assert_eq!(read_n(&mut a, want_a.len()), want_a.as_bytes());
    assert_eq!(read_n(&mut b, want_b.len()), want_b.as_bytes());
    let after = stats_until(&engine, "the writes counted", |s| {
        s.total.writes >= before.writes + 2
    })
    .total;
    assert_eq!(
        after.writes - before.writes,
        2,
        "one writev per connection for {N} interleaved sends each"
    );
    assert_eq!(after.shared_segments - before.shared_segments, 2 * N as u64);
    assert_eq!(after.copies, before.copies, "sends are not copied");
    engine.stop();
}

#[test]
fn a_large_bytes_is_never_copied_even_when_the_socket_takes_it_in_pieces() {
    let mut opts = Options::default();
    opts.max_outbound = 64 << 20;
    opts.write_high_watermark = 64 << 20;
    let setup = hub(opts);
    let engine = setup.engine.clone();
    let mut slow = connect_small_rcvbuf(engine.local_addrs()[0], 4096);
    slow.write_all(b"Q").expect("role");
    let id = setup.ids.recv_timeout(DEADLINE).expect("registered");
    let before = engine.stats().total;
    let payload = Bytes::from(pattern(16 << 20, 3));
    engine.send(id, payload.clone()).expect("send");
    // Read slowly at first so the server sees many short writes.
    let first = read_n(&mut slow, 1000);
    std::thread::sleep(Duration::from_millis(20));
    let rest = read_n(&mut slow, payload.len() - 1000);
    assert_eq!(first, payload[..1000]);
    assert!(rest == payload[1000..], "bytes intact");
    let after = stats_until(&engine, "the bytes counted", |s| {
        s.total.bytes_out >= before.bytes_out + payload.len() as u64
    })
    .total;
    assert_eq!(after.copies, before.copies, "no copy of the payload");
    assert!(after.writes - before.writes > 1, "written in pieces");
    engine.stop();
}

#[test]
fn engine_broadcast_reaches_every_loop_with_one_stored_copy() {
    let (ids_tx, ids) = channel::<ConnId>();
    let ids_tx = Mutex::new(ids_tx);
    struct Quiet(Sender<ConnId>);
    impl EventHandler for Quiet {
        type State = ();
        fn on_open(&mut self, conn: &mut Conn<'_, ()>) -> Action {
            let _ = self.0.send(conn.id());
            Action::Continue
        }
        fn on_traffic(&mut self, conn: &mut Conn<'_, ()>) -> Action {
            let n = conn.read_buf().len();
            conn.consume(n);
            Action::Continue
        }
    }
    let engine = Engine::builder(move |_| Quiet(ids_tx.lock().expect("tx").clone()))
        .loops(2)
        .reuse_port(false)
        .listen("127.0.0.1:0")
        .start()
        .expect("engine");
    let mut clients: Vec<TcpStream> = (0..10).map(|_| connect(engine.local_addrs()[0])).collect();
    let all: Vec<ConnId> = (0..10)
        .map(|_| ids.recv_timeout(DEADLINE).expect("opened"))
        .collect();
    assert!(all.iter().any(|i| i.loop_id() == 0) && all.iter().any(|i| i.loop_id() == 1));
    let before = engine.stats().total;
    let msg = Bytes::from_static(b"hello, everyone\n");
    engine.broadcast(&all, msg.clone()).expect("broadcast");
    for c in &mut clients {
        assert_eq!(read_n(c, msg.len()), msg);
    }
    let after = stats_until(&engine, "deliveries counted", |s| {
        s.total.shared_segments >= before.shared_segments + 10
    })
    .total;
    assert_eq!(after.shared_segments - before.shared_segments, 10);
    assert_eq!(after.copies, before.copies);
    engine.stop();
}
