//! The wire protocol of `examples/game.rs` and `examples/game_bots.rs`, and the
//! fixed-rate tick schedule both use (sans-IO: bytes and times in, values out).
//!
//! Every message starts with a kind byte; integers are little-endian. Over UDP a
//! datagram carries one message; over TCP each message is preceded by its
//! length as a 2-byte big-endian integer.
//!
//! ```text
//! HELLO      1  [cookie: 8]?          client → server; UDP: first without a cookie
//! CHALLENGE  2  cookie: 8             server → client (UDP): send HELLO with it
//! WELCOME    3  player: u32  room: u32  tick_hz: u16
//! INPUT      4  seq: u32  dx: i8  dy: i8
//! BYE        6                        client → server: leaving
//! SNAPSHOT   5  tick: u32  ack: u32  count: u8  count × PLAYER, zero padding to 200 B
//! PLAYER        id: u32  x: i32  y: i32  vx: i16  vy: i16  hp: u8  flags: u8  (18 B)
//! ```
//!
//! `ack` is the sequence number of the last input the server applied for the
//! receiving player: the only per-recipient field, so a room's snapshot is
//! built once per tick and patched per player.
#![allow(dead_code)]

use std::time::{Duration, Instant};

pub const HELLO: u8 = 1;
pub const CHALLENGE: u8 = 2;
pub const WELCOME: u8 = 3;
pub const INPUT: u8 = 4;
pub const SNAPSHOT: u8 = 5;
pub const BYE: u8 = 6;

/// Bytes of a snapshot, whatever the room's occupancy.
pub const SNAPSHOT_LEN: usize = 200;
/// Bytes of one player in a snapshot.
pub const PLAYER_LEN: usize = 18;
/// Where the players start in a snapshot.
const PLAYERS_AT: usize = 10;
/// The most players a snapshot holds.
pub const MAX_ROOM: usize = (SNAPSHOT_LEN - PLAYERS_AT) / PLAYER_LEN;
/// Offset of the per-recipient `ack` field.
pub const ACK_AT: usize = 5;
/// Longest message either side sends.
pub const MAX_MESSAGE: usize = SNAPSHOT_LEN;

/// A message, parsed without copying.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Msg<'a> {
    Hello {
        cookie: Option<&'a [u8]>,
    },
    Challenge {
        cookie: &'a [u8],
    },
    Welcome {
        player: u32,
        room: u32,
        tick_hz: u16,
    },
    Input {
        seq: u32,
        dx: i8,
        dy: i8,
    },
    Snapshot(Snapshot<'a>),
    Bye,
}

/// A snapshot's header; `players` are read on demand.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Snapshot<'a> {
    pub tick: u32,
    pub ack: u32,
    pub count: u8,
    raw: &'a [u8],
}

/// One player as a snapshot carries it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PlayerView {
    pub id: u32,
    pub x: i32,
    pub y: i32,
    pub vx: i16,
    pub vy: i16,
    pub hp: u8,
    pub flags: u8,
}

/// Why bytes are not a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProtoError {
    Empty,
    UnknownKind(u8),
    BadLength { kind: u8, len: usize },
    TooManyPlayers(u8),
}

impl std::fmt::Display for ProtoError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ProtoError::Empty => f.write_str("empty message"),
            ProtoError::UnknownKind(k) => write!(f, "unknown message kind {k}"),
            ProtoError::BadLength { kind, len } => {
                write!(f, "message kind {kind} with {len} bytes")
            }
            ProtoError::TooManyPlayers(n) => write!(f, "snapshot with {n} players"),
        }
    }
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

fn i16_at(b: &[u8], at: usize) -> i16 {
    i16::from_le_bytes([b[at], b[at + 1]])
}

/// Parses one message (one datagram, or one TCP frame without its length).
pub fn parse(b: &[u8]) -> Result<Msg<'_>, ProtoError> {
    let (&kind, rest) = b.split_first().ok_or(ProtoError::Empty)?;
    let bad = || ProtoError::BadLength { kind, len: b.len() };
    match kind {
        HELLO => match rest.len() {
            0 => Ok(Msg::Hello { cookie: None }),
            8 => Ok(Msg::Hello { cookie: Some(rest) }),
            _ => Err(bad()),
        },
        BYE if rest.is_empty() => Ok(Msg::Bye),
        CHALLENGE if rest.len() == 8 => Ok(Msg::Challenge { cookie: rest }),
        WELCOME if b.len() == 11 => Ok(Msg::Welcome {
            player: u32_at(b, 1),
            room: u32_at(b, 5),
            tick_hz: u16::from_le_bytes([b[9], b[10]]),
        }),
        INPUT if b.len() == 7 => Ok(Msg::Input {
            seq: u32_at(b, 1),
            dx: b[5] as i8,
            dy: b[6] as i8,
        }),
        SNAPSHOT if b.len() == SNAPSHOT_LEN => {
            let count = b[9];
            if count as usize > MAX_ROOM {
                return Err(ProtoError::TooManyPlayers(count));
            }
            Ok(Msg::Snapshot(Snapshot {
                tick: u32_at(b, 1),
                ack: u32_at(b, ACK_AT),
                count,
                raw: b,
            }))
        }
        CHALLENGE | WELCOME | INPUT | SNAPSHOT | BYE => Err(bad()),
        other => Err(ProtoError::UnknownKind(other)),
    }
}

impl Snapshot<'_> {
    /// Player `i` of the snapshot (`i < count`).
    pub fn player(&self, i: usize) -> Option<PlayerView> {
        if i >= self.count as usize {
            return None;
        }
        let at = PLAYERS_AT + i * PLAYER_LEN;
        let b = self.raw;
        Some(PlayerView {
            id: u32_at(b, at),
            x: u32_at(b, at + 4) as i32,
            y: u32_at(b, at + 8) as i32,
            vx: i16_at(b, at + 12),
            vy: i16_at(b, at + 14),
            hp: b[at + 16],
            flags: b[at + 17],
        })
    }
}

pub fn hello(cookie: Option<&[u8]>, out: &mut [u8; 9]) -> usize {
    out[0] = HELLO;
    match cookie {
        Some(c) if c.len() == 8 => {
            out[1..9].copy_from_slice(c);
            9
        }
        _ => 1,
    }
}

pub fn challenge(cookie: &[u8; 8]) -> [u8; 9] {
    let mut out = [CHALLENGE; 9];
    out[1..].copy_from_slice(cookie);
    out
}

pub fn welcome(player: u32, room: u32, tick_hz: u16) -> [u8; 11] {
    let mut out = [0u8; 11];
    out[0] = WELCOME;
    out[1..5].copy_from_slice(&player.to_le_bytes());
    out[5..9].copy_from_slice(&room.to_le_bytes());
    out[9..11].copy_from_slice(&tick_hz.to_le_bytes());
    out
}

pub fn input(seq: u32, dx: i8, dy: i8) -> [u8; 7] {
    let mut out = [0u8; 7];
    out[0] = INPUT;
    out[1..5].copy_from_slice(&seq.to_le_bytes());
    out[5] = dx as u8;
    out[6] = dy as u8;
    out
}

/// Writes a room's snapshot into `out` (every byte: stale content never
/// leaks); `ack` is set per recipient with [`set_ack`].
pub fn write_snapshot(out: &mut [u8; SNAPSHOT_LEN], tick: u32, players: &[PlayerView]) {
    let n = players.len().min(MAX_ROOM);
    out.fill(0);
    out[0] = SNAPSHOT;
    out[1..5].copy_from_slice(&tick.to_le_bytes());
    out[9] = n as u8;
    for (i, p) in players[..n].iter().enumerate() {
        let at = PLAYERS_AT + i * PLAYER_LEN;
        out[at..at + 4].copy_from_slice(&p.id.to_le_bytes());
        out[at + 4..at + 8].copy_from_slice(&p.x.to_le_bytes());
        out[at + 8..at + 12].copy_from_slice(&p.y.to_le_bytes());
        out[at + 12..at + 14].copy_from_slice(&p.vx.to_le_bytes());
        out[at + 14..at + 16].copy_from_slice(&p.vy.to_le_bytes());
        out[at + 16] = p.hp;
        out[at + 17] = p.flags;
    }
}

/// Sets the recipient's `ack` in a snapshot built by [`write_snapshot`].
pub fn set_ack(out: &mut [u8; SNAPSHOT_LEN], ack: u32) {
    out[ACK_AT..ACK_AT + 4].copy_from_slice(&ack.to_le_bytes());
}

/// Splits TCP input into frames: each 2-byte big-endian length then the message.
/// Returns the messages' slices and how many bytes they used.
pub fn frames(buf: &[u8], mut each: impl FnMut(&[u8])) -> Result<usize, ProtoError> {
    let mut at = 0;
    while buf.len() - at >= 2 {
        let len = u16::from_be_bytes([buf[at], buf[at + 1]]) as usize;
        if len == 0 || len > MAX_MESSAGE {
            return Err(ProtoError::BadLength { kind: 0, len });
        }
        if buf.len() - at - 2 < len {
            break;
        }
        each(&buf[at + 2..at + 2 + len]);
        at += 2 + len;
    }
    Ok(at)
}

/// A message with its TCP length prefix, in `out`; returns the bytes used.
pub fn framed(msg: &[u8], out: &mut [u8; MAX_MESSAGE + 2]) -> usize {
    out[..2].copy_from_slice(&(msg.len() as u16).to_be_bytes());
    out[2..2 + msg.len()].copy_from_slice(msg);
    msg.len() + 2
}

/// A fixed-rate schedule: tick `k` is due at `start + k × period`, whatever
/// time the previous ticks took. A tick that runs late makes the next one come
/// sooner, so the rate does not drift; when the loop falls more than a period
/// behind, the missed ticks are skipped (and counted) instead of bunched.
#[derive(Debug, Clone)]
pub struct FixedRate {
    start: Instant,
    period: Duration,
    next: u64,
    /// Ticks skipped because the loop was more than a period late.
    pub skipped: u64,
}

impl FixedRate {
    pub fn new(start: Instant, hz: u32) -> Self {
        FixedRate {
            start,
            period: Duration::from_secs(1) / hz.max(1),
            next: 0,
            skipped: 0,
        }
    }

    pub fn period(&self) -> Duration {
        self.period
    }

    /// Called when a tick runs at `now`: returns the tick's number and the
    /// delay until the next one is due.
    pub fn tick(&mut self, now: Instant) -> (u64, Duration) {
        let elapsed = now.saturating_duration_since(self.start);
        let due = (elapsed.as_nanos() / self.period.as_nanos()) as u64;
        if due > self.next {
            self.skipped += due - self.next;
            self.next = due;
        }
        let this = self.next;
        self.next += 1;
        let at = self.start + self.period * self.next as u32;
        (this, at.saturating_duration_since(now))
    }
}
