//! The game server and its bot swarm: the protocol and the fixed-rate schedule
//! (sans-IO, virtual clock), then `examples/game` played by `examples/game_bots`
//! over loopback, UDP and TCP.

#[path = "../examples/game_proto/mod.rs"]
mod game_proto;
mod util;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{Receiver, channel};
use std::time::{Duration, Instant};

use game_proto::{FixedRate, Msg, PlayerView};
use proptest::prelude::*;
use util::DEADLINE;

// ---- the schedule, on a virtual clock ----

/// Drives a schedule the way the loop does: the tick runs when its delay has
/// passed, rounded up to whole milliseconds (the wheel's granularity), plus
/// whatever `late` says the loop was busy.
fn run_ticks(hz: u32, secs: u64, late: impl Fn(u64) -> Duration) -> (u64, FixedRate) {
    let start = Instant::now();
    let mut sched = FixedRate::new(start, hz);
    let mut now = start;
    let mut ran = 0;
    while now < start + Duration::from_secs(secs) {
        let (_, delay) = sched.tick(now);
        ran += 1;
        let ms = delay.as_micros().div_ceil(1000) as u64;
        now += Duration::from_millis(ms) + late(ran);
    }
    (ran, sched)
}

#[test]
fn fixed_rate_does_not_drift_with_millisecond_timers() {
    // 60 Hz is 16.67 ms: rounding every delay up to 17 ms would make 58.8 Hz;
    // deadlines from the start keep 600 ticks in 10 s.
    for hz in [30, 60, 64, 128] {
        let (ran, sched) = run_ticks(hz, 10, |_| Duration::ZERO);
        assert!(
            (ran as i64 - 10 * hz as i64).abs() <= 1,
            "{hz} Hz: {ran} ticks"
        );
        assert_eq!(sched.skipped, 0);
    }
}

#[test]
fn fixed_rate_catches_up_after_small_delays_and_skips_after_stalls() {
    // Up to 10 ms late on every tick: the next comes sooner, nothing is lost.
    let (ran, sched) = run_ticks(60, 10, |i| Duration::from_millis(i % 11));
    assert!((599..=601).contains(&ran), "{ran}");
    assert_eq!(sched.skipped, 0);
    // A 100 ms stall: six deadlines pass; they are skipped, not run in a burst.
    let (ran, sched) = run_ticks(60, 10, |i| {
        if i == 100 {
            Duration::from_millis(100)
        } else {
            Duration::ZERO
        }
    });
    assert_eq!(sched.skipped, 6);
    assert!((593..=595).contains(&ran), "{ran}");
}

// ---- the protocol ----

#[test]
fn snapshots_round_trip_and_are_200_bytes() {
    let players: Vec<PlayerView> = (0..10)
        .map(|i| PlayerView {
            id: 100 + i,
            x: -5 * i as i32,
            y: 7 * i as i32,
            vx: -1,
            vy: 1,
            hp: 90,
            flags: i as u8,
        })
        .collect();
    let mut buf = [0xAAu8; game_proto::SNAPSHOT_LEN];
    game_proto::write_snapshot(&mut buf, 1234, &players);
    game_proto::set_ack(&mut buf, 77);
    let Ok(Msg::Snapshot(s)) = game_proto::parse(&buf) else {
        panic!("not a snapshot");
    };
    assert_eq!((s.tick, s.ack, s.count), (1234, 77, 10));
    for (i, p) in players.iter().enumerate() {
        assert_eq!(s.player(i), Some(*p));
    }
    assert_eq!(s.player(10), None);
    assert!(game_proto::parse(&buf[..199]).is_err());
}

proptest! {
    /// Any bytes: a typed error or a message, never a panic; TCP framing never
    /// claims more than it was given.
    #[test]
    fn any_bytes_parse_without_panicking(data in proptest::collection::vec(any::<u8>(), 0..300)) {
        let _ = game_proto::parse(&data);
        if let Ok(used) = game_proto::frames(&data, |m| { let _ = game_proto::parse(m); }) {
            prop_assert!(used <= data.len());
        }
    }
}

// ---- the examples over loopback ----

fn example(name: &str) -> PathBuf {
    let mut dir = std::env::current_exe().unwrap();
    dir.pop();
    if dir.ends_with("deps") {
        dir.pop();
    }
    dir.join("examples").join(name)
}

fn spawn(name: &str, args: &[&str]) -> (Child, Receiver<String>) {
    let mut child = Command::new(example(name))
        .args(args)
        .env_remove("RUST_LOG")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("run example {name}: {e}"));
    let lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let (tx, rx) = channel();
    std::thread::spawn(move || {
        for line in lines.map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    (child, rx)
}

fn line(rx: &Receiver<String>, prefix: &str, within: Duration) -> String {
    let end = Instant::now() + within;
    loop {
        match rx.recv_timeout(end.saturating_duration_since(Instant::now())) {
            Ok(l) if l.starts_with(prefix) => return l,
            Ok(_) => {}
            Err(_) => panic!("no line '{prefix}…' within {within:?}"),
        }
    }
}

/// The `key=value` fields of the summary line.
fn fields(summary: &str) -> BTreeMap<String, f64> {
    summary
        .split_whitespace()
        .skip(1)
        .filter_map(|kv| {
            let (k, v) = kv.split_once('=')?;
            Some((k.to_string(), v.parse().ok()?))
        })
        .collect()
}

fn play(scheme: &str, bots: &str) -> BTreeMap<String, f64> {
    let (mut server, out) = spawn(
        "game",
        &["--addr", &format!("{scheme}://127.0.0.1:0"), "--loops", "2"],
    );
    let listening = line(&out, "listening on ", DEADLINE);
    let addr = listening.trim_start_matches("listening on ");
    let addr = if addr.contains("://") {
        addr.to_string()
    } else {
        format!("{scheme}://{addr}")
    };
    let (mut swarm, out) = spawn(
        "game_bots",
        &["--addr", &addr, "--bots", bots, "--secs", "2"],
    );
    let summary = line(&out, "summary ", DEADLINE * 4);
    let status = swarm.wait().unwrap();
    let _ = server.kill();
    let _ = server.wait();
    assert!(status.success(), "game_bots failed: {summary}");
    let names = [
        "bots",
        "ticks",
        "snapshots",
        "lost",
        "out_of_order",
        "interval_p50_ms",
        "interval_p99_ms",
        "interval_max_ms",
        "input_latency_p50_ms",
        "input_latency_p99_ms",
    ];
    let f = fields(&summary);
    let keys: Vec<&str> = summary
        .split_whitespace()
        .skip(1)
        .map(|kv| kv.split('=').next().unwrap())
        .collect();
    assert_eq!(
        keys, names,
        "the summary line's fields, in order: {summary}"
    );
    f
}

fn check_play(f: &BTreeMap<String, f64>, bots: f64) {
    assert_eq!(f["bots"], bots);
    assert_eq!(f["lost"], 0.0, "{f:?}");
    assert_eq!(f["out_of_order"], 0.0, "{f:?}");
    // 2 s at 60 Hz is 120 ticks; a loaded machine may skip some, never add.
    assert!((20.0..=125.0).contains(&f["ticks"]), "{f:?}");
    assert!(
        f["snapshots"] > 0.0 && f["snapshots"] <= bots * (f["ticks"] + 1.0),
        "{f:?}"
    );
    assert!(
        f["interval_p50_ms"] > 0.0 && f["input_latency_p50_ms"] > 0.0,
        "{f:?}"
    );
}

#[test]
fn bots_play_the_game_over_udp() {
    let f = play("udp", "50");
    check_play(&f, 50.0);
}

#[test]
fn bots_play_the_game_over_tcp() {
    let f = play("tcp", "20");
    check_play(&f, 20.0);
}

#[test]
fn examples_take_help_and_refuse_bad_flags() {
    for name in ["game", "game_bots"] {
        let ok = Command::new(example(name)).arg("--help").output().unwrap();
        assert_eq!(ok.status.code(), Some(0), "{name} --help");
        assert!(String::from_utf8_lossy(&ok.stdout).starts_with("usage: "));
        for bad in [
            &["--bots", "x"][..],
            &["--nope"],
            &["--addr", "unix:///tmp/x"],
        ] {
            let out = Command::new(example(name)).args(bad).output().unwrap();
            assert_eq!(out.status.code(), Some(2), "{name} {bad:?}");
        }
    }
}

/// Busy polling changes when the loop sleeps, not what it does: an echo with
/// it on answers TCP and UDP as without, and the loop still sleeps when idle
/// (it stops when asked, within the deadline).
#[test]
fn busy_polling_loops_serve_and_stop() {
    use std::io::{Read, Write};
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
    let opts = tether::Options::default().busy_poll(Duration::from_micros(500));
    let engine = tether::Engine::builder(|_| Echo)
        .options(opts)
        .loops(1)
        .listen("tcp://127.0.0.1:0")
        .listen("udp://127.0.0.1:0")
        .start()
        .unwrap();
    let (tcp, udp) = (engine.local_addrs()[0], engine.local_addrs()[1]);
    let mut s = std::net::TcpStream::connect(tcp).unwrap();
    s.set_read_timeout(Some(DEADLINE)).unwrap();
    let u = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    u.set_read_timeout(Some(DEADLINE)).unwrap();
    let mut buf = [0u8; 64];
    for i in 0..200u8 {
        s.write_all(&[i; 64]).unwrap();
        s.read_exact(&mut buf).unwrap();
        assert_eq!(buf, [i; 64]);
        u.send_to(&[i; 16], udp).unwrap();
        let n = u.recv(&mut buf).unwrap();
        assert_eq!(&buf[..n], &[i; 16]);
    }
    let stopped = Instant::now();
    engine.stop();
    assert!(stopped.elapsed() < DEADLINE);
}
