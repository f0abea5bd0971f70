//! An authoritative game server: players join rooms, send inputs, and get a
//! snapshot of their room every tick.
//!
//! ```text
//! cargo run --release --example game -- --addr udp://127.0.0.1:7000 --loops 2
//! ```
//!
//! Flags: `--addr ADDR` (default `udp://127.0.0.1:7000`; `tcp://host:port` for
//! TCP players), `--loops N` (default 2), `--tick-hz N` (default 60),
//! `--room-size N` (default 10, at most 10), `--busy-poll-us N` (low-latency
//! mode, default 0 = off). Prints `listening on <addr>`; stops on SIGINT or
//! SIGTERM. `--help` prints the usage; a usage error exits with status 2.
//!
//! The protocol is in `examples/game_proto`. Over UDP every player is a
//! session of the listener: a new source is answered with a cookie and admitted
//! only when it sends the cookie back, so spoofed sources create nothing. Each
//! loop owns its rooms; every tick it advances the world (each player moves by
//! its last input), builds each room's ~200 B snapshot once, and sends it to
//! every player of the room with that player's last applied input sequence
//! patched in: no allocation per snapshot, and one `sendmmsg` per 64 players.

mod common;
mod game_proto;

use std::alloc::{GlobalAlloc, Layout, System};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use game_proto as proto;
use proto::{FixedRate, Msg, PlayerView, SNAPSHOT_LEN};
use tether::net::ListenAddr;
use tether::udp_session::{Admit, NewSource, Session, SessionClose, SessionId, SessionOptions};
use tether::{Action, CloseReason, Conn, ConnId, Engine, EventHandler, LoopCtx, Options};

/// Counts heap allocations per thread, so the log can show that a loop's
/// steady state allocates nothing per snapshot.
struct CountingAlloc;

thread_local! {
    /// Allocations made by this thread (no destructor, so usable until exit).
    static ALLOCATIONS: std::cell::Cell<u64> = const { std::cell::Cell::new(0) };
}

fn count_allocation() {
    ALLOCATIONS.with(|n| n.set(n.get() + 1));
}

// SAFETY: forwards to the system allocator unchanged; only counts.
unsafe impl GlobalAlloc for CountingAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        count_allocation();
        // SAFETY: the caller's contract for `alloc` is passed on as is.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` came from `System.alloc` with this layout.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        count_allocation();
        // SAFETY: as for `realloc` on the system allocator.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: CountingAlloc = CountingAlloc;

/// How a player is reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Link {
    Udp(SessionId),
    Tcp(ConnId),
}

#[derive(Debug)]
struct Player {
    link: Link,
    view: PlayerView,
    /// The newest input received, applied at the next tick.
    input: (i8, i8),
    input_seq: u32,
    /// The sequence of the input applied last (the snapshot's `ack`).
    applied: u32,
}

#[derive(Debug, Default)]
struct Room {
    players: Vec<Option<Player>>,
}

/// Per connection or session: where its player sits, once joined.
#[derive(Debug, Default)]
struct Seat {
    at: Option<(u32, u32)>,
}

struct Game {
    loop_id: usize,
    room_size: usize,
    tick_hz: u32,
    rooms: Vec<Room>,
    next_player: u32,
    ticker: Option<FixedRate>,
    /// Scratch for one room's snapshot, reused every tick.
    snapshot: Box<[u8; SNAPSHOT_LEN]>,
    views: Vec<PlayerView>,
    tcp_frame: Box<[u8; proto::MAX_MESSAGE + 2]>,
    last_log: Instant,
    /// Snapshots sent and the process's allocation count at the last log line.
    snapshots: u64,
    logged: (u64, u64),
    /// World steps taken.
    steps: u64,
}

impl Game {
    fn new(loop_id: usize, room_size: usize, tick_hz: u32) -> Self {
        Game {
            loop_id,
            room_size,
            tick_hz,
            rooms: Vec::new(),
            next_player: 0,
            ticker: None,
            snapshot: Box::new([0; SNAPSHOT_LEN]),
            views: Vec::with_capacity(proto::MAX_ROOM),
            tcp_frame: Box::new([0; proto::MAX_MESSAGE + 2]),
            last_log: Instant::now(),
            snapshots: 0,
            logged: (0, 0),
            steps: 0,
        }
    }

    /// Seats a new player in the first room with room; returns the welcome.
    fn join(&mut self, link: Link, seat: &mut Seat) -> [u8; 11] {
        if let Some((r, s)) = seat.at {
            let id = self.rooms[r as usize].players[s as usize]
                .as_ref()
                .map_or(0, |p| p.view.id);
            return proto::welcome(id, r, self.tick_hz as u16);
        }
        let r = match self
            .rooms
            .iter()
            .position(|room| room.players.iter().any(Option::is_none))
        {
            Some(r) => r,
            None => {
                self.rooms.push(Room {
                    players: (0..self.room_size).map(|_| None).collect(),
                });
                self.rooms.len() - 1
            }
        };
        let room = &mut self.rooms[r];
        let s = room
            .players
            .iter()
            .position(Option::is_none)
            .expect("a free seat");
        self.next_player += 1;
        let id = ((self.loop_id as u32) << 24) | (self.next_player & 0xFF_FFFF);
        room.players[s] = Some(Player {
            link,
            view: PlayerView {
                id,
                hp: 100,
                ..PlayerView::default()
            },
            input: (0, 0),
            input_seq: 0,
            applied: 0,
        });
        seat.at = Some((r as u32, s as u32));
        proto::welcome(id, r as u32, self.tick_hz as u16)
    }

    fn leave(&mut self, seat: &Seat) {
        if let Some((r, s)) = seat.at
            && let Some(room) = self.rooms.get_mut(r as usize)
        {
            room.players[s as usize] = None;
        }
    }

    fn input(&mut self, seat: &Seat, seq: u32, dx: i8, dy: i8) {
        let Some((r, s)) = seat.at else {
            return;
        };
        if let Some(Some(p)) = self
            .rooms
            .get_mut(r as usize)
            .map(|room| &mut room.players[s as usize])
            && seq > p.input_seq
        {
            // Older inputs that arrive late (UDP reorders) are ignored.
            p.input = (dx, dy);
            p.input_seq = seq;
        }
    }

    /// Handles one message of a player; returns the welcome to send back.
    fn message(&mut self, link: Link, seat: &mut Seat, msg: Msg<'_>) -> Option<[u8; 11]> {
        match msg {
            Msg::Hello { .. } => Some(self.join(link, seat)),
            Msg::Input { seq, dx, dy } => {
                self.input(seat, seq, dx, dy);
                None
            }
            _ => None,
        }
    }

    /// One world step and a snapshot to every player.
    fn step<S>(&mut self, ctx: &mut LoopCtx<'_, S>, tick: u32) {
        for room in &mut self.rooms {
            self.views.clear();
            for p in room.players.iter_mut().flatten() {
                let (dx, dy) = p.input;
                p.view.vx = dx as i16;
                p.view.vy = dy as i16;
                p.view.x = p.view.x.wrapping_add(dx as i32);
                p.view.y = p.view.y.wrapping_add(dy as i32);
                p.applied = p.input_seq;
                self.views.push(p.view);
            }
            if self.views.is_empty() {
                continue;
            }
            proto::write_snapshot(&mut self.snapshot, tick, &self.views);
            for p in room.players.iter().flatten() {
                self.snapshots += 1;
                proto::set_ack(&mut self.snapshot, p.applied);
                match p.link {
                    Link::Udp(id) => {
                        ctx.udp().send(id, &self.snapshot[..]);
                    }
                    Link::Tcp(id) => {
                        let n = proto::framed(&self.snapshot[..], &mut self.tcp_frame);
                        // The player's connection is on this loop: written
                        // straight into its output queue, no command, no copy
                        // but this one into its pooled buffer.
                        if let Some(mut conn) = ctx.conn(id) {
                            conn.write(&self.tcp_frame[..n]);
                        }
                    }
                }
            }
        }
    }
}

impl EventHandler for Game {
    type State = Seat;

    fn on_tick(&mut self, ctx: &mut LoopCtx<'_, Self::State>) -> Option<Duration> {
        let now = ctx.now();
        let ticker = self
            .ticker
            .get_or_insert_with(|| FixedRate::new(Instant::now(), self.tick_hz));
        let (_, next) = ticker.tick(now.max(Instant::now()));
        let skipped = ticker.skipped;
        // Snapshots number the world's steps: a deadline the loop missed is a
        // step not taken (counted in `skipped`), not a gap in the numbers.
        self.steps += 1;
        let tick = self.steps;
        self.step(ctx, tick as u32);
        if now.saturating_duration_since(self.last_log) >= Duration::from_secs(2) {
            self.last_log = now;
            let players: usize = self
                .rooms
                .iter()
                .map(|r| r.players.iter().flatten().count())
                .sum();
            let allocs = ALLOCATIONS.with(|n| n.get());
            let (snaps, alloc_before) = self.logged;
            let stats = ctx.engine().stats();
            let c = &stats.loops[self.loop_id];
            log::info!(
                "loop {}: tick {tick}, {players} players, {skipped} ticks skipped (late), \
                 {} snapshots and {} allocations on this loop since the last line, \
                 datagrams in {} out {} dropped {}",
                self.loop_id,
                self.snapshots - snaps,
                allocs - alloc_before,
                c.datagrams_in,
                c.datagrams_out,
                c.datagrams_dropped
            );
            // Counted from here, so the log line's own allocations are not.
            self.logged = (self.snapshots, ALLOCATIONS.with(|n| n.get()));
        }
        Some(next)
    }

    // ---- UDP players: sessions ----

    fn on_new_source(&mut self, src: &mut NewSource<'_>) -> Admit {
        match proto::parse(src.data()) {
            Ok(Msg::Hello { cookie: Some(c) }) if src.check_cookie(c) => Admit::Open,
            Ok(Msg::Hello { .. }) => {
                let c = proto::challenge(&src.cookie());
                let _ = src.reply(&c);
                Admit::Drop
            }
            _ => Admit::Drop,
        }
    }

    fn on_session_datagram(&mut self, s: &mut Session<'_, Seat>, data: &[u8], _t: bool) -> Action {
        let Ok(msg) = proto::parse(data) else {
            return Action::Continue; // a stray or malformed datagram: ignored
        };
        if msg == Msg::Bye {
            return Action::Close;
        }
        let link = Link::Udp(s.id());
        if let Some(w) = self.message(link, s.state_mut(), msg) {
            s.send(&w);
        }
        Action::Continue
    }

    fn on_session_close(&mut self, s: &mut Session<'_, Seat>, reason: SessionClose) {
        log::debug!("{} left: {reason}", s.id());
        self.leave(s.state());
    }

    // ---- TCP players ----

    fn on_traffic(&mut self, conn: &mut Conn<'_, Seat>) -> Action {
        let data = conn.read_buf();
        let id = conn.id();
        let mut welcome = None;
        let mut bad = false;
        let used = proto::frames(data, |m| match proto::parse(m) {
            Ok(Msg::Bye) => bad = true,
            Ok(msg) => {
                welcome = self
                    .message(Link::Tcp(id), conn.state_mut(), msg)
                    .or(welcome)
            }
            Err(_) => bad = true,
        });
        if let Some(w) = welcome {
            let n = proto::framed(&w, &mut self.tcp_frame);
            conn.write(&self.tcp_frame[..n]);
        }
        match used {
            Ok(n) if !bad => {
                conn.consume(n);
                Action::Continue
            }
            _ => Action::Close,
        }
    }

    fn on_close(&mut self, conn: &mut Conn<'_, Seat>, reason: &CloseReason) {
        log::debug!("{} left: {reason}", conn.id());
        self.leave(conn.state());
    }
}

const USAGE: &str = "[--addr udp://HOST:PORT|tcp://HOST:PORT] [--loops N] [--tick-hz N] \
     [--room-size N] [--busy-poll-us N]";

struct Args {
    addr: String,
    udp: bool,
    loops: usize,
    tick_hz: u32,
    room_size: usize,
    busy_poll: Option<Duration>,
}

fn parse_args(cli: &mut common::Cli) -> Result<Args, common::Usage> {
    let mut args = Args {
        addr: "udp://127.0.0.1:7000".into(),
        udp: true,
        loops: 2,
        tick_hz: 60,
        room_size: 10,
        busy_poll: None,
    };
    while let Some(flag) = cli.flag() {
        match flag.as_str() {
            "--addr" => {
                args.addr = common::address(&flag, cli.value(&flag)?, |a| match a {
                    ListenAddr::Udp(_) | ListenAddr::Tcp(_) => Ok(()),
                    _ => Err("the game serves udp:// and tcp:// only"),
                })?;
                args.udp = matches!(ListenAddr::parse(&args.addr), Ok(ListenAddr::Udp(_)));
            }
            "--loops" => args.loops = cli.number(&flag, 1..=256)?,
            "--tick-hz" => args.tick_hz = cli.number(&flag, 1..=1000)?,
            "--room-size" => args.room_size = cli.number(&flag, 1..=proto::MAX_ROOM)?,
            "--busy-poll-us" => {
                let us = cli.number(&flag, 0..=1_000_000u64)?;
                args.busy_poll = (us > 0).then(|| Duration::from_micros(us));
            }
            other => return Err(cli.unknown(other)),
        }
    }
    Ok(args)
}

fn main() -> ExitCode {
    let (args, signals) = match common::start("game", USAGE, "info", parse_args) {
        Ok(started) => started,
        Err(code) => return code,
    };
    let mut options = Options::default();
    options.loops = args.loops;
    options.busy_poll = args.busy_poll;
    options.udp_batch = 64;
    options.max_connections = 100_000;
    // A tick's inputs arrive in a burst: room for them in the kernel.
    options.socket.recv_buffer_size = Some(4 << 20);
    options.socket.send_buffer_size = Some(4 << 20);
    let (room_size, tick_hz) = (args.room_size, args.tick_hz);
    let builder =
        Engine::builder(move |loop_id| Game::new(loop_id, room_size, tick_hz)).options(options);
    let builder = if args.udp {
        let sessions = SessionOptions::new()
            .max_sessions(100_000)
            .idle_timeout(Some(Duration::from_secs(10)));
        builder.listen_sessions(args.addr, sessions)
    } else {
        builder.listen(args.addr)
    };
    common::serve_until_signal("game", builder.start(), signals)
}
