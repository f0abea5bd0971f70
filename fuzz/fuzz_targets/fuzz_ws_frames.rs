#![no_main]

// The WebSocket receiver on arbitrary input: any role, with or without
// permessage-deflate, fed in pseudo-random chunks, must give the same
// messages (or the same error) as the whole input at once, never panic,
// and never lend a message over the limit.

use libfuzzer_sys::fuzz_target;
use tether::ws::{FrameHeader, Message, Read, Receiver, Role, WsError};

fn run(data: &[u8], role: Role, deflate: bool, max: usize, mut seed: u64) -> (Vec<(u8, Vec<u8>)>, Option<WsError>) {
    let mut rx = Receiver::new(role);
    if deflate {
        rx.enable_deflate(seed & 1 == 0);
    }
    let mut scratch = Vec::new();
    let mut out = Vec::new();
    let (mut pos, mut avail) = (0, 0);
    while pos < data.len() {
        if seed == 0 {
            avail = data.len();
        } else {
            seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            avail = (avail + 1 + (seed >> 58) as usize).min(data.len());
        }
        loop {
            match rx.read(&data[pos..avail], &mut scratch, max) {
                Ok(Read::Incomplete) => break,
                Ok(Read::Absorbed(n)) => pos += n,
                Ok(Read::Message(n, m)) => {
                    pos += n;
                    let (op, bytes) = match m {
                        Message::Text(t) => (1, t.as_bytes()),
                        Message::Binary(b) => (2, b),
                        Message::Ping(b) => (9, b),
                        Message::Pong(b) => (10, b),
                        Message::Close(c) => (8, c.reason.as_bytes()),
                    };
                    assert!(bytes.len() <= max.max(125));
                    out.push((op, bytes.to_vec()));
                }
                Err(e) => return (out, Some(e)),
            }
        }
        if avail == data.len() {
            break;
        }
    }
    (out, None)
}

fuzz_target!(|data: &[u8]| {
    let Some((&flags, rest)) = data.split_first() else {
        return;
    };
    let role = if flags & 1 == 0 { Role::Server } else { Role::Client };
    let deflate = flags & 2 != 0;
    let max = 1usize << (flags >> 4).min(20);
    let _ = FrameHeader::parse(rest);
    let whole = run(rest, role, deflate, max, 0);
    let chunked = run(rest, role, deflate, max, u64::from(flags) | 1 << 40);
    assert_eq!(whole, chunked);
});
