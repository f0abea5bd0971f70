//! The Autobahn testsuite's case groups, reproduced against tether's
//! WebSocket server and client over loopback: framing (1), pings and pongs
//! (2), reserved bits (3), opcodes (4), fragmentation (5), UTF-8 (6), close
//! handling (7), limits (9) and permessage-deflate (12, 13).
//!
//! Every case runs twice: a raw client against the tether echo server, and
//! the tether echo client against a raw server.
#![cfg(feature = "ws")]

mod ws_common;

use std::time::Duration;
use tether::ws::Config;

use ws_common::{Peer, Side, echo_server_with};

const TEXT: u8 = 1;
const BINARY: u8 = 2;
const CLOSE: u8 = 8;
const PING: u8 = 9;
const PONG: u8 = 10;

/// Runs `case` on both sides with `config`.
fn both(config: Config, case: impl Fn(&Side)) {
    for side in [Side::server(config.clone()), Side::client(config.clone())] {
        case(&side);
        side.stop();
    }
}

fn plain() -> Config {
    Config::default()
}

fn close_normally(p: &mut Peer) {
    p.send(true, 0, CLOSE, &1000u16.to_be_bytes());
    p.expect_close(&[Some(1000)]);
}

#[test]
fn case_1_framing() {
    both(plain(), |side| {
        let mut p = side.peer(None);
        for len in [0usize, 125, 126, 127, 128, 65535, 65536] {
            let text = "*".repeat(len);
            p.send(true, 0, TEXT, text.as_bytes());
            p.expect_echo(TEXT, text.as_bytes());
            let bin = vec![0xfe; len];
            p.send(true, 0, BINARY, &bin);
            p.expect_echo(BINARY, &bin);
        }
        // 1.1.8 / 1.2.8: a 64 KiB message written in 997-byte chops.
        let frame = p.encode(true, 0, BINARY, &[0xab; 65536]);
        for chop in frame.chunks(997) {
            p.send_raw(chop);
        }
        p.expect_echo(BINARY, &[0xab; 65536]);
        close_normally(&mut p);
    });
}

#[test]
fn case_2_pings_and_pongs() {
    both(plain(), |side| {
        let mut p = side.peer(None);
        for payload in [
            &b""[..],
            b"Hello, world!",
            &[0xfe; 125],
            &[0, 0xff, 0xfe, 0xfd, 0xfc],
        ] {
            p.send(true, 0, PING, payload);
            let f = p.frame().unwrap();
            assert_eq!((f.op, &f.payload[..]), (PONG, payload));
        }
        // 2.5.x: unsolicited pongs are ignored.
        p.send(true, 0, PONG, b"unsolicited");
        // 2.6: a ping sent byte by byte.
        for b in p.encode(true, 0, PING, b"chopped") {
            p.send_raw(&[b]);
        }
        assert_eq!(p.frame().unwrap().payload, b"chopped");
        // 2.10: ten pings, ten pongs in order.
        for i in 0..10u8 {
            p.send(true, 0, PING, &[i]);
        }
        for i in 0..10u8 {
            assert_eq!(p.frame().unwrap().payload, [i]);
        }
        close_normally(&mut p);

        // 2.5: a ping of 126 bytes fails the connection.
        let mut p = side.peer(None);
        p.send(true, 0, PING, &[0; 126]);
        p.expect_close(&[Some(1002)]);
    });
}

#[test]
fn case_3_reserved_bits() {
    both(plain(), |side| {
        for rsv in 1..8u8 {
            for op in [TEXT, BINARY, PING, CLOSE] {
                let mut p = side.peer(None);
                // 3.2: a valid message first, then the bad one, then a ping.
                p.send(true, 0, TEXT, b"Hello");
                p.send(true, rsv, op, b"bad");
                p.send(true, 0, PING, b"");
                p.expect_echo(TEXT, b"Hello");
                p.expect_close(&[Some(1002)]);
            }
        }
    });
}

#[test]
fn case_4_opcodes() {
    both(plain(), |side| {
        for op in [3u8, 4, 5, 6, 7, 11, 12, 13, 14, 15] {
            let mut p = side.peer(None);
            p.send(true, 0, TEXT, b"Hello");
            p.send(true, 0, op, b"payload");
            p.send(true, 0, PING, b"");
            p.expect_echo(TEXT, b"Hello");
            p.expect_close(&[Some(1002)]);
        }
    });
}

#[test]
fn case_5_fragmentation() {
    both(plain(), |side| {
        // 5.1, 5.2: fragmented ping and pong.
        for op in [PING, PONG] {
            let mut p = side.peer(None);
            p.send(false, 0, op, b"frag");
            p.send(true, 0, 0, b"ment");
            p.expect_close(&[Some(1002)]);
        }
        // 5.3–5.5: fragments, also chopped into single bytes.
        let mut p = side.peer(None);
        p.send(false, 0, TEXT, b"frag");
        p.send(true, 0, 0, b"ment1");
        p.expect_echo(TEXT, b"fragment1");
        let mut bytes = p.encode(false, 0, TEXT, b"frag");
        bytes.extend(p.encode(true, 0, 0, b"ment2"));
        for b in bytes {
            p.send_raw(&[b]);
        }
        p.expect_echo(TEXT, b"fragment2");
        // 5.6–5.8: a ping between fragments is answered before the message.
        p.send(false, 0, TEXT, b"frag");
        p.send(true, 0, PING, b"between");
        p.send(false, 0, 0, b"me");
        p.send(true, 0, 0, b"nt3");
        let pong = p.frame().unwrap();
        assert_eq!((pong.op, &pong.payload[..]), (PONG, &b"between"[..]));
        p.expect_echo(TEXT, b"fragment3");
        // 5.19, 5.20: many fragments with pings in between.
        for i in 0..10u8 {
            p.send(true, 0, PING, &[i]);
            p.send(i == 9, 0, if i == 0 { BINARY } else { 0 }, &[i]);
        }
        for i in 0..10u8 {
            assert_eq!(p.frame().unwrap().payload, [i]);
        }
        p.expect_echo(BINARY, &(0..10).collect::<Vec<u8>>());
        // Empty fragments.
        p.send(false, 0, TEXT, b"");
        p.send(false, 0, 0, b"");
        p.send(true, 0, 0, b"");
        p.expect_echo(TEXT, b"");
        close_normally(&mut p);

        // 5.9–5.18: continuations with nothing to continue, a new message
        // inside a fragmented one.
        let bad: Vec<Vec<(bool, u8, &[u8])>> = vec![
            vec![(true, 0, b"cont")],
            vec![(false, 0, b"cont"), (true, TEXT, b"x")],
            vec![(false, TEXT, b"frag"), (true, TEXT, b"new")],
            vec![(false, TEXT, b"frag"), (false, BINARY, b"new")],
        ];
        for frames in bad {
            let mut p = side.peer(None);
            for (fin, op, data) in frames {
                p.send(fin, 0, op, data);
            }
            p.expect_close(&[Some(1002)]);
        }
    });
}

/// Valid UTF-8 texts of Autobahn 6.2–6.23 (samples).
const VALID: &[&str] = &[
    "Hello-µ@ßöäüàá-UTF-8!!",
    "κόσμε",
    "\u{0080}\u{0800}\u{10000}",
    "\u{007f}\u{07ff}\u{ffff}\u{10ffff}",
    "\u{d7ff}\u{e000}\u{fffd}",
    "",
];

/// Invalid sequences of Autobahn 6.3–6.21 (samples).
const INVALID: &[&[u8]] = &[
    b"\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5\xed\xa0\x80\x65\x64\x69\x74\x65\x64",
    b"\x80",
    b"\xbf",
    b"\xc0\xaf",
    b"\xe0\x80\xaf",
    b"\xf0\x80\x80\xaf",
    b"\xf8\x88\x80\x80\xaf",
    b"\xed\xa0\x80",
    b"\xed\xbf\xbf",
    b"\xf4\x90\x80\x80",
    b"\xfe",
    b"\xff",
    b"\xc0 ",
    b"\xe0\x80",
];

#[test]
fn case_6_utf8() {
    both(plain(), |side| {
        let mut p = side.peer(None);
        for text in VALID {
            let bytes = text.as_bytes();
            p.send(true, 0, TEXT, bytes);
            p.expect_echo(TEXT, bytes);
            // 6.2.3–6.2.4 and the split code points: every cut into two and
            // into single-byte fragments.
            for cut in 0..=bytes.len() {
                p.send(false, 0, TEXT, &bytes[..cut]);
                p.send(true, 0, 0, &bytes[cut..]);
                p.expect_echo(TEXT, bytes);
            }
            if !bytes.is_empty() {
                for (i, b) in bytes.iter().enumerate() {
                    let op = if i == 0 { TEXT } else { 0 };
                    p.send(i + 1 == bytes.len(), 0, op, &[*b]);
                }
                p.expect_echo(TEXT, bytes);
            }
        }
        close_normally(&mut p);

        for bad in INVALID {
            let mut p = side.peer(None);
            p.send(true, 0, TEXT, bad);
            p.expect_close(&[Some(1007)]);
            // Fragmented, one byte per frame.
            let mut p = side.peer(None);
            for (i, b) in bad.iter().enumerate() {
                p.send(i + 1 == bad.len(), 0, if i == 0 { TEXT } else { 0 }, &[*b]);
            }
            p.expect_close(&[Some(1007)]);
        }

        // 6.4.x: fail fast: the first fragment is already invalid; the rest
        // is never sent and the close comes anyway.
        let mut p = side.peer(None);
        p.send(
            false,
            0,
            TEXT,
            b"\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5\xf4\x90\x80\x80",
        );
        p.expect_close(&[Some(1007)]);
    });
}

#[test]
fn case_7_close_handling() {
    both(plain(), |side| {
        // 7.1.1–7.1.6: a close, and nothing echoed after it.
        let mut p = side.peer(None);
        p.send(true, 0, TEXT, b"Hello");
        p.expect_echo(TEXT, b"Hello");
        p.send(true, 0, CLOSE, &[0x03, 0xe8]);
        p.send(true, 0, TEXT, b"after close");
        p.send(true, 0, PING, b"after close");
        p.expect_close(&[Some(1000)]);

        // 7.3.1: an empty close is answered with an empty close (or 1000).
        let mut p = side.peer(None);
        p.send(true, 0, CLOSE, b"");
        p.expect_close(&[None, Some(1000)]);
        // 7.3.2: one byte.
        let mut p = side.peer(None);
        p.send(true, 0, CLOSE, b"\x03");
        p.expect_close(&[Some(1002)]);
        // 7.3.3–7.3.5: a reason, up to the 123-byte maximum.
        for reason in ["", "Hello World!", &"*".repeat(123)] {
            let mut p = side.peer(None);
            let mut payload = 1000u16.to_be_bytes().to_vec();
            payload.extend_from_slice(reason.as_bytes());
            p.send(true, 0, CLOSE, &payload);
            p.expect_close(&[Some(1000)]);
        }
        // 7.3.6: a close payload of 126 bytes is an oversized control frame.
        let mut p = side.peer(None);
        p.send(true, 0, CLOSE, &[0x03; 126]);
        p.expect_close(&[Some(1002)]);
        // 7.5.1: a reason that is not UTF-8.
        let mut p = side.peer(None);
        p.send(true, 0, CLOSE, b"\x03\xe8\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5\xed\xa0\x80\x65\x64\x69\x74\x65\x64");
        p.expect_close(&[Some(1007)]);
        // 7.7.x: valid codes are echoed; 7.9.x: invalid ones fail with 1002.
        for code in [
            1000u16, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 3000, 3999, 4000, 4999,
        ] {
            let mut p = side.peer(None);
            p.send(true, 0, CLOSE, &code.to_be_bytes());
            p.expect_close(&[Some(code)]);
        }
        for code in [
            0u16, 999, 1004, 1005, 1006, 1015, 1016, 1100, 2000, 2999, 5000, 65535,
        ] {
            let mut p = side.peer(None);
            p.send(true, 0, CLOSE, &code.to_be_bytes());
            p.expect_close(&[Some(1002)]);
        }
    });
}

#[test]
fn case_9_limits() {
    let config = Config {
        max_message: 4 << 20,
        ..Config::default()
    };
    both(config, |side| {
        let mut p = side.peer(None);
        // 9.1/9.2: large messages in one frame; 9.3/9.4: in fragments.
        for len in [64 << 10, 256 << 10, 1 << 20, 4 << 20] {
            let data: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
            p.send(true, 0, BINARY, &data);
            p.expect_echo(BINARY, &data);
            let text = "x".repeat(len);
            for (i, piece) in text.as_bytes().chunks(64 << 10).enumerate() {
                let last = (i + 1) * (64 << 10) >= len;
                p.send(last, 0, if i == 0 { TEXT } else { 0 }, piece);
            }
            p.expect_echo(TEXT, text.as_bytes());
        }
        // 9.5/9.6: many small messages in one write.
        let mut burst = Vec::new();
        for i in 0..1000u32 {
            burst.extend(p.encode(true, 0, BINARY, &i.to_be_bytes()));
        }
        p.send_raw(&burst);
        for i in 0..1000u32 {
            p.expect_echo(BINARY, &i.to_be_bytes());
        }
        close_normally(&mut p);

        // Over the limit: 1009, at the header (one frame) or once the
        // fragments add up.
        let mut p = side.peer(None);
        p.send_raw(&p.encode(true, 0, BINARY, &[])[..1]);
        p.send_raw(&[
            if p.client { 0xff } else { 0x7f },
            0,
            0,
            0,
            0,
            0,
            0x41,
            0,
            0,
        ]);
        if p.client {
            p.send_raw(&[1, 2, 3, 4]);
        }
        p.expect_close(&[Some(1009)]);
        let mut p = side.peer(None);
        for i in 0..5 {
            p.send(false, 0, if i == 0 { BINARY } else { 0 }, &vec![0; 1 << 20]);
        }
        p.expect_close(&[Some(1009)]);
    });
}

fn deflate() -> Config {
    Config {
        deflate: true,
        ..Config::default()
    }
}

/// The answers a server gives to the offers of Autobahn 13.x.
const AGREEMENTS: &[&str] = &[
    "permessage-deflate",
    "permessage-deflate; client_no_context_takeover",
    "permessage-deflate; server_no_context_takeover",
    "permessage-deflate; server_no_context_takeover; client_no_context_takeover",
    "permessage-deflate; server_max_window_bits=9",
    "permessage-deflate; client_max_window_bits=9",
    "permessage-deflate; server_max_window_bits=15; client_max_window_bits=15",
];

#[test]
fn case_12_13_permessage_deflate() {
    both(deflate(), |side| {
        for ext in AGREEMENTS {
            let mut p = side.peer(Some(ext));
            assert!(p.inflate.is_some(), "deflate agreed for {ext}");
            let compressible = "The quick brown fox jumps over the lazy dog. ".repeat(300);
            for len in [16usize, 64, 256, 1024, 4096, 13_000] {
                // 12.x: compressed messages echoed (compressed or not).
                let data = &compressible.as_bytes()[..len];
                p.send_compressed(TEXT, data);
                p.expect_echo(TEXT, data);
                let bin: Vec<u8> = (0..len).map(|i| (i * 7 % 256) as u8).collect();
                p.send_compressed(BINARY, &bin);
                p.expect_echo(BINARY, &bin);
                // Uncompressed messages stay legal.
                p.send(true, 0, BINARY, &bin);
                p.expect_echo(BINARY, &bin);
            }
            // A compressed message in fragments: RSV1 on the first only.
            let z = p.compress(compressible.as_bytes());
            let (a, b) = z.split_at(z.len() / 3);
            p.send(false, 4, TEXT, a);
            p.send(true, 0, 0, b);
            p.expect_echo(TEXT, compressible.as_bytes());
            // RSV1 on a continuation or a control frame is a protocol error.
            p.send(true, 4, PING, b"");
            p.expect_close(&[Some(1002)]);
        }
    });
}

#[test]
fn deflate_only_when_agreed() {
    // A tether server without deflate declines the offer; RSV1 is then a
    // protocol error.
    let side = Side::server(plain());
    let mut p = side.peer(Some("permessage-deflate"));
    assert!(p.inflate.is_none());
    p.send(true, 4, TEXT, b"x");
    p.expect_close(&[Some(1002)]);
    side.stop();
}

#[test]
fn masking_rules() {
    // A server refuses unmasked frames; a client refuses masked ones.
    let side = Side::server(plain());
    let mut p = side.peer(None);
    p.client = false;
    p.send(true, 0, TEXT, b"unmasked");
    p.client = true;
    p.expect_close(&[Some(1002)]);
    side.stop();

    let side = Side::client(plain());
    let mut p = side.peer(None);
    p.client = true;
    p.send(true, 0, TEXT, b"masked");
    p.client = false;
    p.expect_close(&[Some(1002)]);
    side.stop();
}

#[test]
fn heartbeat_pings_and_the_pong_deadline_closes_dead_peers() {
    let config = Config {
        pong_timeout: Duration::from_millis(200),
        ..Config::default()
    };
    let engine = echo_server_with(config, |o| o.heartbeat = Some(Duration::from_millis(50)));
    let addr = engine.local_addrs()[0];

    // A live peer answers every ping and stays connected through several.
    let (mut live, _) = Peer::connect(addr, None);
    for _ in 0..4 {
        let f = live.frame().expect("a ping");
        assert_eq!(f.op, PING);
        live.send(true, 0, PONG, &f.payload);
    }
    live.send(true, 0, TEXT, b"still here");
    let (op, data) = loop {
        let f = live.frame().expect("the echo");
        if f.op != PING {
            break (f.op, f.payload);
        }
        live.send(true, 0, PONG, &f.payload);
    };
    assert_eq!((op, &data[..]), (TEXT, &b"still here"[..]));

    // A dead one gets a ping, never answers, and is dropped after the pong
    // deadline (`frame` panics if the connection outlives its deadline).
    let (mut dead, _) = Peer::connect(addr, None);
    assert_eq!(dead.frame().expect("a ping").op, PING);
    while dead.frame().is_some() {}
    engine.stop();
    engine.join();
}
