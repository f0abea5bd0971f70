//! One-connection ping-pong latency, 64 B, TCP and UDP: tether with and without
//! busy polling (`Options::busy_poll`) beside a blocking raw mio loop.
//!
//! ```text
//! cargo bench -p tether-bench --bench pingpong -- [--rounds 3] [--pings 20000] [--busy-poll-us 200] [--spin-client]
//! ```
//!
//! Each server runs in a child process (this binary re-executed with
//! `--server KIND`) pinned to CPU 1; the client is pinned to CPU 0, sends 64
//! bytes, waits for them to come back (checking every byte), and records the
//! round trip. Servers take turns (A B C A B C …) for `--rounds` rounds; the
//! table shows the median over rounds of each server's p50 and p99, and their
//! ratio to the mio loop's. `--spin-client` makes the client poll its socket
//! without blocking instead of sleeping in `recv` (the other half of a
//! low-latency setup). Also prints each server's CPU time per round trip:
//! what busy polling burns.

mod common;

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::process::{Child, Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;

const MSG: usize = 64;

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Kind {
    Mio,
    Tether,
    TetherBusy,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Mio => "mio",
            Kind::Tether => "tether",
            Kind::TetherBusy => "tether-busy",
        }
    }

    fn parse(s: &str) -> Option<Kind> {
        [Kind::Mio, Kind::Tether, Kind::TetherBusy]
            .into_iter()
            .find(|k| k.name() == s)
    }
}

// ---- the servers (child side) ----

/// The blocking raw mio echo loop: `poll(None)`, read, write back.
fn mio_server(udp: bool) -> io::Result<SocketAddr> {
    use mio::net::{TcpListener, UdpSocket as MioUdp};
    use mio::{Events, Interest, Poll, Token};
    let mut poll = Poll::new()?;
    let addr: SocketAddr = "127.0.0.1:0".parse().unwrap();
    if udp {
        let mut sock = MioUdp::bind(addr)?;
        let bound = sock.local_addr()?;
        poll.registry()
            .register(&mut sock, Token(0), Interest::READABLE)?;
        std::thread::spawn(move || {
            let mut events = Events::with_capacity(64);
            let mut buf = [0u8; 2048];
            loop {
                let _ = poll.poll(&mut events, None);
                while let Ok((n, peer)) = sock.recv_from(&mut buf) {
                    let _ = sock.send_to(&buf[..n], peer);
                }
            }
        });
        return Ok(bound);
    }
    let mut listener = TcpListener::bind(addr)?;
    let bound = listener.local_addr()?;
    poll.registry()
        .register(&mut listener, Token(0), Interest::READABLE)?;
    std::thread::spawn(move || {
        let mut events = Events::with_capacity(64);
        let mut buf = vec![0u8; 64 * 1024];
        let mut conns: Vec<Option<mio::net::TcpStream>> = Vec::new();
        loop {
            let _ = poll.poll(&mut events, None);
            for ev in &events {
                if ev.token() == Token(0) {
                    while let Ok((mut s, _)) = listener.accept() {
                        let _ = s.set_nodelay(true);
                        let t = Token(conns.len() + 1);
                        let _ = poll.registry().register(&mut s, t, Interest::READABLE);
                        conns.push(Some(s));
                    }
                    continue;
                }
                let slot = &mut conns[ev.token().0 - 1];
                let Some(s) = slot.as_mut() else { continue };
                loop {
                    match s.read(&mut buf) {
                        Ok(0) => {
                            *slot = None;
                            break;
                        }
                        // A 64 B ping-pong never fills the socket buffer.
                        Ok(n) => drop(s.write_all(&buf[..n])),
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                        Err(_) => {
                            *slot = None;
                            break;
                        }
                    }
                }
            }
        }
    });
    Ok(bound)
}

struct Echo;

impl tether::EventHandler for Echo {
    type State = ();

    fn on_traffic(&mut self, conn: &mut tether::Conn<'_, ()>) -> tether::Action {
        let data = conn.read_buf();
        conn.write(data);
        conn.consume(data.len());
        tether::Action::Continue
    }

    fn on_datagram(&mut self, d: &mut tether::Datagram<'_>) -> tether::Action {
        let _ = d.reply(d.data());
        tether::Action::Continue
    }
}

fn tether_server(udp: bool, busy: Option<Duration>) -> io::Result<SocketAddr> {
    let mut opts = tether::Options::default();
    opts.loops = 1;
    opts.busy_poll = busy;
    let addr = if udp {
        "udp://127.0.0.1:0"
    } else {
        "tcp://127.0.0.1:0"
    };
    let engine = tether::Engine::builder(|_| Echo)
        .options(opts)
        .listen(addr)
        .start()
        .map_err(io::Error::other)?;
    let bound = engine.local_addrs()[0];
    std::mem::forget(engine); // serves until the child exits
    Ok(bound)
}

fn child(kind: Kind, udp: bool, busy: Duration) -> ExitCode {
    let started = match kind {
        Kind::Mio => mio_server(udp),
        Kind::Tether => tether_server(udp, None),
        Kind::TetherBusy => tether_server(udp, Some(busy)),
    };
    match started {
        Ok(addr) => println!("listening on {addr}"),
        Err(e) => {
            eprintln!("{}: {e}", kind.name());
            return ExitCode::FAILURE;
        }
    }
    for line in io::stdin().lock().lines() {
        match line.as_deref() {
            Ok("cpu") => println!("cpu {}", common::sys::process_cpu_nanos()),
            _ => break,
        }
    }
    ExitCode::SUCCESS
}

// ---- the client (parent side) ----

struct Server {
    child: Child,
    lines: std::io::Lines<BufReader<std::process::ChildStdout>>,
    addr: SocketAddr,
}

impl Server {
    fn start(kind: Kind, udp: bool, busy_us: u64) -> Server {
        // `taskset`: a child forked from the pinned parent inherits CPU 0 only, and
        // then cannot tell it may move to CPU 1.
        let mut child = Command::new("taskset")
            .args(["-c", "1"])
            .arg(std::env::current_exe().unwrap())
            .args([
                "--server",
                kind.name(),
                "--busy-poll-us",
                &busy_us.to_string(),
            ])
            .args(if udp { &["--udp"][..] } else { &[] })
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("start a server child");
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let first = lines.next().expect("a line").expect("utf-8");
        let addr = first
            .trim_start_matches("listening on ")
            .parse()
            .expect("an address");
        Server { child, lines, addr }
    }

    fn cpu_nanos(&mut self) -> u64 {
        let _ = writeln!(self.child.stdin.as_mut().unwrap(), "cpu");
        let line = self.lines.next().expect("a line").expect("utf-8");
        line.trim_start_matches("cpu ").parse().expect("a number")
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        drop(self.child.stdin.take());
        let _ = self.child.wait();
    }
}

/// Round trips of `pings` 64 B messages; returns the histogram in nanoseconds.
fn ping(addr: SocketAddr, udp: bool, pings: usize, spin: bool) -> Histogram<u64> {
    let mut hist = Histogram::new_with_bounds(100, 1_000_000_000, 3).unwrap();
    let mut out = [0u8; MSG];
    let mut back = [0u8; MSG];
    let tcp = (!udp).then(|| {
        let s = TcpStream::connect(addr).unwrap();
        s.set_nodelay(true).unwrap();
        s.set_nonblocking(spin).unwrap();
        s
    });
    let dgram = udp.then(|| {
        let s = UdpSocket::bind("127.0.0.1:0").unwrap();
        s.connect(addr).unwrap();
        s.set_nonblocking(spin).unwrap();
        s
    });
    for i in 0..pings + 1000 {
        out[..8].copy_from_slice(&(i as u64).to_le_bytes());
        let t = Instant::now();
        if let Some(s) = &tcp {
            (&*s).write_all(&out).unwrap();
            let mut got = 0;
            while got < MSG {
                match (&*s).read(&mut back[got..]) {
                    Ok(0) => panic!("server closed"),
                    Ok(n) => got += n,
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => std::hint::spin_loop(),
                    Err(e) => panic!("{e}"),
                }
            }
        } else if let Some(s) = &dgram {
            s.send(&out).unwrap();
            loop {
                match s.recv(&mut back) {
                    Ok(n) => {
                        assert_eq!(n, MSG);
                        break;
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => std::hint::spin_loop(),
                    Err(e) => panic!("{e}"),
                }
            }
        }
        let rtt = t.elapsed().as_nanos() as u64;
        assert_eq!(back, out, "the echo differs");
        if i >= 1000 {
            let _ = hist.record(rtt.max(100)); // the first 1000 warm up
        }
    }
    hist
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let value = |flag: &str| {
        args.iter()
            .position(|a| a == flag)
            .and_then(|i| args.get(i + 1))
    };
    let busy_us: u64 = value("--busy-poll-us")
        .and_then(|v| v.parse().ok())
        .unwrap_or(200);
    if let Some(kind) = value("--server").and_then(|k| Kind::parse(k)) {
        return child(
            kind,
            args.iter().any(|a| a == "--udp"),
            Duration::from_micros(busy_us),
        );
    }
    let rounds: usize = value("--rounds").and_then(|v| v.parse().ok()).unwrap_or(3);
    let pings: usize = value("--pings")
        .and_then(|v| v.parse().ok())
        .unwrap_or(20_000);
    let spin = args.iter().any(|a| a == "--spin-client");
    let _ = common::sys::pin_to_cpu(0);
    let kinds = [Kind::Mio, Kind::Tether, Kind::TetherBusy];
    println!(
        "one-connection ping-pong, 64 B, {pings} round trips per run, {rounds} rounds, busy poll {busy_us} µs, {} client",
        if spin { "spinning" } else { "blocking" }
    );
    println!(
        "| proto | server | p50 µs | p99 µs | p50 vs mio | p99 vs mio | server CPU µs per round trip |"
    );
    println!("| --- | --- | ---: | ---: | ---: | ---: | ---: |");
    for udp in [false, true] {
        let mut p50 = vec![Vec::new(); kinds.len()];
        let mut p99 = vec![Vec::new(); kinds.len()];
        let mut cpu = vec![Vec::new(); kinds.len()];
        for _ in 0..rounds {
            for (k, &kind) in kinds.iter().enumerate() {
                let mut server = Server::start(kind, udp, busy_us);
                let before = server.cpu_nanos();
                let h = ping(server.addr, udp, pings, spin);
                let used = server.cpu_nanos() - before;
                p50[k].push(h.value_at_quantile(0.5) as f64 / 1000.0);
                p99[k].push(h.value_at_quantile(0.99) as f64 / 1000.0);
                cpu[k].push(used as f64 / 1000.0 / (pings + 1000) as f64);
            }
        }
        let (m50, m99) = (median(p50[0].clone()), median(p99[0].clone()));
        for (k, kind) in kinds.iter().enumerate() {
            let (a, b) = (median(p50[k].clone()), median(p99[k].clone()));
            println!(
                "| {} | {} | {a:.1} | {b:.1} | {:.2}× | {:.2}× | {:.2} |",
                if udp { "UDP" } else { "TCP" },
                kind.name(),
                a / m50,
                b / m99,
                median(cpu[k].clone())
            );
        }
    }
    ExitCode::SUCCESS
}
