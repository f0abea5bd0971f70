//! A swarm of game clients that plays against `examples/game.rs` and measures it.
//!
//! ```text
//! cargo run --release --example game_bots -- --addr udp://127.0.0.1:7000 --bots 1000 --secs 10
//! ```
//!
//! Flags: `--addr ADDR` (default `udp://127.0.0.1:7000`, or `tcp://host:port`),
//! `--bots N` (default 100), `--secs S` (measured seconds, default 10),
//! `--input-hz N` (inputs per bot per second, default 30), `--loops N` (client
//! loops, default 2). `--help` prints the usage; a usage error exits with
//! status 2; SIGINT/SIGTERM end the run early (the summary is still printed).
//!
//! The bots are tether too: each UDP bot is a session dialed from its own
//! socket (`Udp::connect`), so the server sees one source per bot; TCP bots are
//! dialed connections. Every bot joins (cookie round trip over UDP), then sends
//! sequence-numbered inputs and checks every snapshot: its kind and size, its
//! own player in it, the tick number (a gap is a lost snapshot, a step back an
//! out-of-order one) and the acknowledged input (its age is the input latency).
//! Measuring starts once every bot has joined; the run ends with exactly one
//! line:
//!
//! ```text
//! summary bots=N ticks=T snapshots=S lost=L out_of_order=O interval_p50_ms=… interval_p99_ms=… interval_max_ms=… input_latency_p50_ms=… input_latency_p99_ms=…
//! ```
//!
//! `ticks` is the most server ticks one bot's snapshots spanned in the window,
//! `snapshots` the sum over bots, `lost` the ticks bots never got (a bot that
//! got nothing at all counts `ticks`), `interval` the time between a bot's
//! consecutive snapshots.

mod common;
mod game_proto;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use game_proto as proto;
use proto::{FixedRate, Msg};
use tether::net::ListenAddr;
use tether::udp_session::{Session, SessionId};
use tether::{Action, Conn, ConnId, ConnectOptions, Engine, EventHandler, LoopCtx, Options};

/// What the loops share with the main thread.
struct Shared {
    origin: Instant,
    /// Microseconds since `origin` when measuring starts and ends.
    from_us: AtomicU64,
    until_us: AtomicU64,
    joined: AtomicUsize,
    results: Mutex<Vec<LoopResult>>,
}

impl Shared {
    fn us(&self, t: Instant) -> u64 {
        t.saturating_duration_since(self.origin).as_micros() as u64
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Link {
    Udp(SessionId),
    Tcp(ConnId),
}

/// Inputs remembered for latency: a snapshot acks at most this far back.
const RING: usize = 256;

struct Bot {
    link: Link,
    player: Option<u32>,
    hello_at: u64,
    seq: u32,
    sent_us: Box<[u64; RING]>,
    acked: u32,
    last_tick: Option<u32>,
    first_tick: u32,
    /// Bit i: tick `last_tick - 1 - i` arrived.
    seen: u64,
    last_arrival: u64,
    snapshots: u64,
    lost: u64,
    out_of_order: u64,
    malformed: u64,
}

impl Bot {
    fn new(link: Link) -> Self {
        Bot {
            link,
            player: None,
            hello_at: 0,
            seq: 0,
            sent_us: Box::new([0; RING]),
            acked: 0,
            last_tick: None,
            first_tick: 0,
            seen: 0,
            last_arrival: 0,
            snapshots: 0,
            lost: 0,
            out_of_order: 0,
            malformed: 0,
        }
    }
}

struct BotResult {
    span: u64,
    snapshots: u64,
    lost: u64,
    out_of_order: u64,
    malformed: u64,
}

struct LoopResult {
    bots: Vec<BotResult>,
    interval: Vec<u32>,
    latency: Vec<u32>,
}

struct Swarm {
    server: SocketAddr,
    udp: bool,
    /// UDP bots this loop dials at boot.
    to_dial: usize,
    bots: Vec<Bot>,
    by_session: HashMap<SessionId, usize>,
    input: FixedRate,
    shared: Arc<Shared>,
    /// Samples in microseconds.
    interval: Vec<u32>,
    latency: Vec<u32>,
    frame: Box<[u8; proto::MAX_MESSAGE + 2]>,
    engine: Option<Engine>,
}

impl Swarm {
    fn new(
        server: SocketAddr,
        udp: bool,
        to_dial: usize,
        input_hz: u32,
        shared: Arc<Shared>,
    ) -> Self {
        Swarm {
            server,
            udp,
            to_dial,
            bots: Vec::new(),
            by_session: HashMap::new(),
            input: FixedRate::new(Instant::now(), input_hz),
            shared,
            interval: Vec::new(),
            latency: Vec::new(),
            frame: Box::new([0; proto::MAX_MESSAGE + 2]),
            engine: None,
        }
    }

    /// Whether `now` is before, in or after the measured window.
    fn window(&self, now: u64) -> std::cmp::Ordering {
        if now < self.shared.from_us.load(Ordering::Relaxed) {
            std::cmp::Ordering::Less
        } else if now < self.shared.until_us.load(Ordering::Relaxed) {
            std::cmp::Ordering::Equal
        } else {
            std::cmp::Ordering::Greater
        }
    }

    /// A message for bot `i`; returns what to send back (a HELLO with the
    /// cookie after a challenge).
    fn message(&mut self, i: usize, data: &[u8], now: u64) -> Option<[u8; 9]> {
        let window = self.window(now);
        let counting = window.is_eq();
        let bot = &mut self.bots[i];
        match proto::parse(data) {
            Ok(Msg::Challenge { cookie }) => {
                let mut h = [0u8; 9];
                proto::hello(Some(cookie), &mut h);
                return Some(h);
            }
            Ok(Msg::Welcome { player, .. }) => {
                if bot.player.replace(player).is_none() {
                    self.shared.joined.fetch_add(1, Ordering::Relaxed);
                }
            }
            Ok(Msg::Snapshot(snap)) => {
                let mine = bot.player.is_some_and(|me| {
                    (0..snap.count as usize).any(|k| snap.player(k).is_some_and(|p| p.id == me))
                });
                if window.is_lt() {
                    bot.acked = bot.acked.max(snap.ack);
                    return None;
                }
                if window.is_gt() {
                    return None;
                }
                if !mine {
                    bot.malformed += 1;
                }
                bot.snapshots += 1;
                match bot.last_tick {
                    None => {
                        bot.first_tick = snap.tick;
                        bot.last_tick = Some(snap.tick);
                        bot.seen = 0;
                    }
                    Some(last) if snap.tick > last => {
                        let gap = (snap.tick - last - 1) as u64;
                        bot.lost += gap;
                        bot.seen = if gap >= 63 {
                            0
                        } else {
                            ((bot.seen << 1) | 1) << gap
                        };
                        bot.last_tick = Some(snap.tick);
                        self.interval.push(micros(now - bot.last_arrival));
                    }
                    Some(last) => {
                        // A step back: a late snapshot filling a gap, or a duplicate.
                        bot.out_of_order += 1;
                        let back = (last - snap.tick) as u64;
                        if (1..=64).contains(&back) && bot.seen & (1 << (back - 1)) == 0 {
                            bot.seen |= 1 << (back - 1);
                            bot.lost = bot.lost.saturating_sub(1);
                        }
                    }
                }
                bot.last_arrival = now;
                if snap.ack > bot.acked {
                    if snap.ack <= bot.seq && bot.seq - snap.ack < RING as u32 {
                        let sent = bot.sent_us[snap.ack as usize % RING];
                        self.latency.push(micros(now.saturating_sub(sent)));
                    }
                    bot.acked = snap.ack;
                }
            }
            _ => bot.malformed += u64::from(counting),
        }
        None
    }

    fn send<S>(&mut self, ctx: &mut LoopCtx<'_, S>, link: Link, msg: &[u8]) {
        match link {
            Link::Udp(id) => {
                ctx.udp().send(id, msg);
            }
            Link::Tcp(id) => {
                let n = proto::framed(msg, &mut self.frame);
                let _ = ctx.engine().send(id, self.frame[..n].to_vec());
            }
        }
    }
}

/// Each bot's session or connection carries its index in `Swarm::bots`.
#[derive(Default)]
struct BotIndex(Option<usize>);

impl EventHandler for Swarm {
    type State = BotIndex;

    fn on_boot(&mut self, ctx: &mut LoopCtx<'_, Self::State>) {
        self.engine = Some(ctx.engine().clone());
        if !self.udp {
            return;
        }
        for _ in 0..self.to_dial {
            match ctx.udp().connect(self.server) {
                Ok(id) => {
                    self.by_session.insert(id, self.bots.len());
                    self.bots.push(Bot::new(Link::Udp(id)));
                }
                Err(e) => {
                    eprintln!("game_bots: cannot open a bot socket: {e}");
                    break;
                }
            }
        }
    }

    fn on_tick(&mut self, ctx: &mut LoopCtx<'_, Self::State>) -> Option<Duration> {
        let now_i = Instant::now();
        let now = self.shared.us(now_i);
        let (_, next) = self.input.tick(now_i);
        for i in 0..self.bots.len() {
            let link = self.bots[i].link;
            if self.bots[i].player.is_none() {
                // Not joined yet: (re)send the hello every half second.
                if now >= self.bots[i].hello_at {
                    self.bots[i].hello_at = now + 500_000;
                    self.send(ctx, link, &[proto::HELLO]);
                }
                continue;
            }
            let bot = &mut self.bots[i];
            bot.seq += 1;
            bot.sent_us[bot.seq as usize % RING] = now;
            let msg = proto::input(bot.seq, (bot.seq % 3) as i8 - 1, 1);
            self.send(ctx, link, &msg);
        }
        Some(next)
    }

    fn on_shutdown(&mut self, ctx: &mut LoopCtx<'_, Self::State>) {
        for i in 0..self.bots.len() {
            let link = self.bots[i].link;
            self.send(ctx, link, &[proto::BYE]);
        }
        let bots = self
            .bots
            .iter()
            .map(|b| BotResult {
                span: b.last_tick.map_or(0, |l| (l - b.first_tick) as u64 + 1),
                snapshots: b.snapshots,
                lost: b.lost,
                out_of_order: b.out_of_order,
                malformed: b.malformed,
            })
            .collect();
        let result = LoopResult {
            bots,
            interval: std::mem::take(&mut self.interval),
            latency: std::mem::take(&mut self.latency),
        };
        self.shared
            .results
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(result);
    }

    // ---- UDP bots ----

    fn on_session_open(&mut self, s: &mut Session<'_, BotIndex>) -> Action {
        s.state_mut().0 = self.by_session.get(&s.id()).copied();
        Action::Continue
    }

    fn on_session_datagram(
        &mut self,
        s: &mut Session<'_, BotIndex>,
        data: &[u8],
        _t: bool,
    ) -> Action {
        let Some(i) = s.state().0 else {
            return Action::Continue;
        };
        let now = self.shared.us(Instant::now());
        if let Some(reply) = self.message(i, data, now) {
            let n = if reply[0] == proto::HELLO { 9 } else { 0 };
            s.send(&reply[..n]);
        }
        Action::Continue
    }

    // ---- TCP bots ----

    fn on_open(&mut self, conn: &mut Conn<'_, BotIndex>) -> Action {
        conn.state_mut().0 = Some(self.bots.len());
        self.bots.push(Bot::new(Link::Tcp(conn.id())));
        Action::Continue
    }

    fn on_traffic(&mut self, conn: &mut Conn<'_, BotIndex>) -> Action {
        let Some(i) = conn.state().0 else {
            return Action::Close;
        };
        let now = self.shared.us(Instant::now());
        let data = conn.read_buf();
        match proto::frames(data, |m| {
            let _ = self.message(i, m, now);
        }) {
            Ok(n) => {
                conn.consume(n);
                Action::Continue
            }
            Err(_) => Action::Close,
        }
    }
}

const USAGE: &str = "[--addr udp://HOST:PORT|tcp://HOST:PORT] [--bots N] [--secs S] \
     [--input-hz N] [--loops N]";

struct Args {
    server: SocketAddr,
    udp: bool,
    bots: usize,
    secs: u64,
    input_hz: u32,
    loops: usize,
}

fn parse_args(cli: &mut common::Cli) -> Result<Args, common::Usage> {
    let mut args = Args {
        server: SocketAddr::from(([127, 0, 0, 1], 7000)),
        udp: true,
        bots: 100,
        secs: 10,
        input_hz: 30,
        loops: 2,
    };
    while let Some(flag) = cli.flag() {
        match flag.as_str() {
            "--addr" => {
                let v = cli.value(&flag)?;
                match ListenAddr::parse(&v) {
                    Ok(ListenAddr::Udp(a)) => (args.server, args.udp) = (a, true),
                    Ok(ListenAddr::Tcp(a)) if v.contains("://") => {
                        (args.server, args.udp) = (a, false)
                    }
                    Ok(_) => return Err("--addr takes udp://HOST:PORT or tcp://HOST:PORT".into()),
                    Err(e) => return Err(format!("--addr: {e}").into()),
                }
            }
            "--bots" => args.bots = cli.number(&flag, 1..=100_000)?,
            "--secs" => args.secs = cli.number(&flag, 1..=3600)?,
            "--input-hz" => args.input_hz = cli.number(&flag, 1..=1000)?,
            "--loops" => args.loops = cli.number(&flag, 1..=256)?,
            other => return Err(cli.unknown(other)),
        }
    }
    Ok(args)
}

fn micros(us: u64) -> u32 {
    u32::try_from(us).unwrap_or(u32::MAX)
}

/// The `q` quantile of sorted samples, in milliseconds.
fn quantile_ms(sorted: &[u32], q: f64) -> String {
    let us = match sorted.len() {
        0 => 0,
        n => sorted[((n as f64 * q).ceil() as usize).clamp(1, n) - 1],
    };
    format!("{:.2}", us as f64 / 1000.0)
}

fn main() -> ExitCode {
    let (args, signals) = match common::start("game_bots", USAGE, "warn", parse_args) {
        Ok(started) => started,
        Err(code) => return code,
    };
    let shared = Arc::new(Shared {
        origin: Instant::now(),
        from_us: AtomicU64::new(u64::MAX),
        until_us: AtomicU64::new(u64::MAX),
        joined: AtomicUsize::new(0),
        results: Mutex::new(Vec::new()),
    });
    let mut options = Options::default();
    options.loops = args.loops;
    let (server, udp, input_hz, loops, bots) =
        (args.server, args.udp, args.input_hz, args.loops, args.bots);
    let for_loops = shared.clone();
    let engine = Engine::builder(move |loop_id| {
        let share = bots / loops + usize::from(loop_id < bots % loops);
        Swarm::new(server, udp, share, input_hz, for_loops.clone())
    })
    .options(options)
    .start();
    let engine = match engine {
        Ok(e) => e,
        Err(e) => {
            eprintln!("game_bots: {e}");
            return ExitCode::FAILURE;
        }
    };
    if !udp {
        for _ in 0..bots {
            let opts = ConnectOptions::default().timeout(Duration::from_secs(5));
            if let Err(e) = engine.connect_with(server, BotIndex(None), opts) {
                eprintln!("game_bots: cannot dial {server}: {e}");
                break;
            }
        }
    }
    // Interrupted runs still print their summary.
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    {
        let stop = stop.clone();
        let mut signals = signals;
        std::thread::spawn(move || {
            if signals.forever().next().is_some() {
                stop.store(true, Ordering::Relaxed);
            }
        });
    }
    let wait = |d: Duration| {
        let end = Instant::now() + d;
        while Instant::now() < end && !stop.load(Ordering::Relaxed) {
            std::thread::sleep(Duration::from_millis(10));
        }
    };
    let join_deadline = Instant::now() + Duration::from_secs(20);
    while shared.joined.load(Ordering::Relaxed) < bots
        && Instant::now() < join_deadline
        && !stop.load(Ordering::Relaxed)
    {
        std::thread::sleep(Duration::from_millis(10));
    }
    let joined = shared.joined.load(Ordering::Relaxed);
    if joined < bots {
        eprintln!("game_bots: only {joined} of {bots} bots joined");
    }
    // Let the swarm settle into its rhythm, then measure.
    wait(Duration::from_millis(500));
    let from = shared.us(Instant::now());
    shared
        .until_us
        .store(from + args.secs * 1_000_000, Ordering::Relaxed);
    shared.from_us.store(from, Ordering::Relaxed);
    wait(Duration::from_secs(args.secs));
    wait(Duration::from_millis(50));
    engine.stop();

    let results = std::mem::take(&mut *shared.results.lock().unwrap_or_else(|p| p.into_inner()));
    let all: Vec<&BotResult> = results.iter().flat_map(|r| r.bots.iter()).collect();
    let mut interval: Vec<u32> = results
        .iter()
        .flat_map(|r| r.interval.iter().copied())
        .collect();
    let mut latency: Vec<u32> = results
        .iter()
        .flat_map(|r| r.latency.iter().copied())
        .collect();
    interval.sort_unstable();
    latency.sort_unstable();
    let ticks = all.iter().map(|b| b.span).max().unwrap_or(0);
    let snapshots: u64 = all.iter().map(|b| b.snapshots).sum();
    let silent = bots.saturating_sub(all.iter().filter(|b| b.snapshots > 0).count()) as u64;
    let lost: u64 = all.iter().map(|b| b.lost).sum::<u64>() + silent * ticks;
    let out_of_order: u64 = all.iter().map(|b| b.out_of_order).sum();
    let malformed: u64 = all.iter().map(|b| b.malformed).sum();
    if let (Some(min), Some(max)) = (
        all.iter().map(|b| b.snapshots).min(),
        all.iter().map(|b| b.snapshots).max(),
    ) {
        eprintln!("game_bots: snapshots per bot min={min} max={max}; malformed={malformed}");
    }
    println!(
        "summary bots={bots} ticks={ticks} snapshots={snapshots} lost={lost} out_of_order={out_of_order} \
         interval_p50_ms={} interval_p99_ms={} interval_max_ms={} input_latency_p50_ms={} input_latency_p99_ms={}",
        quantile_ms(&interval, 0.5),
        quantile_ms(&interval, 0.99),
        quantile_ms(&interval, 1.0),
        quantile_ms(&latency, 0.5),
        quantile_ms(&latency, 0.99),
    );
    if malformed > 0 {
        return ExitCode::FAILURE;
    }
    ExitCode::SUCCESS
}
