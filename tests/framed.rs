//! Frame-level handlers over real sockets: splitting, bad input, hostile lengths.

mod util;

use std::io::Write;
use std::sync::mpsc::{Sender, channel};

use tether::codec::{Codec, CodecError, Delimited, LengthPrefixed};
use tether::{Action, CloseReason, Engine, FrameConn, FrameHandler, Framed};
use util::*;

/// Echoes every frame as a frame; reports close reasons.
struct Echo<C> {
    tx: Sender<String>,
    _codec: std::marker::PhantomData<C>,
}

impl<C: Codec> FrameHandler for Echo<C> {
    type State = u64;
    type Codec = C;

    fn on_frame(&mut self, conn: &mut FrameConn<'_, '_, u64, C>, frame: &[u8]) -> Action {
        *conn.state_mut() += 1;
        conn.write_frame(frame).expect("an echoed frame fits");
        Action::Continue
    }

    fn on_close(&mut self, _conn: &mut FrameConn<'_, '_, u64, C>, reason: &CloseReason) {
        let text = match reason {
            CloseReason::Protocol(e) => format!("Protocol: {e:?}"),
            other => reason_name(other),
        };
        let _ = self.tx.send(text);
    }
}

fn start<C: Codec + Sync>(codec: C) -> (Engine, std::sync::mpsc::Receiver<String>) {
    let (tx, rx) = channel();
    let engine = Engine::builder(move |_| {
        Framed::new(
            codec.clone(),
            Echo {
                tx: tx.clone(),
                _codec: Default::default(),
            },
        )
    })
    .loops(1)
    .listen("127.0.0.1:0")
    .start()
    .unwrap();
    (engine, rx)
}

fn frame(payload: &[u8]) -> Vec<u8> {
    let mut out = (payload.len() as u32).to_be_bytes().to_vec();
    out.extend_from_slice(payload);
    out
}

#[test]
fn frames_echo_whole_however_the_stream_is_split() {
    let (engine, _rx) = start(LengthPrefixed::new());
    let mut c = connect(engine.local_addrs()[0]);
    let payloads: Vec<Vec<u8>> = (0..200).map(|i| pattern(i * 37 % 3000, i as u64)).collect();
    let wire: Vec<u8> = payloads.iter().flat_map(|p| frame(p)).collect();
    // All at once, then in odd-sized pieces, then one byte at a time for a few.
    c.write_all(&wire).unwrap();
    assert!(read_n(&mut c, wire.len()) == wire);
    for piece in wire.chunks(7) {
        c.write_all(piece).unwrap();
    }
    assert!(read_n(&mut c, wire.len()) == wire);
    let small: Vec<u8> = payloads[..5].iter().flat_map(|p| frame(p)).collect();
    for b in &small {
        c.write_all(std::slice::from_ref(b)).unwrap();
    }
    assert!(read_n(&mut c, small.len()) == small);
    engine.stop();
}

#[test]
fn zero_length_frames_are_delivered_as_empty_frames() {
    let (engine, _rx) = start(LengthPrefixed::new());
    let mut c = connect(engine.local_addrs()[0]);
    let wire = [frame(b""), frame(b"x"), frame(b"")].concat();
    roundtrip(&mut c, &wire);
    engine.stop();
}

#[test]
fn oversized_length_closes_with_a_typed_error_and_spares_the_others() {
    let codec = LengthPrefixed::builder()
        .max_frame_len(1024)
        .build()
        .unwrap();
    let (engine, rx) = start(codec);
    let addr = engine.local_addrs()[0];
    let mut good = connect(addr);
    let mut bad = connect(addr);
    roundtrip(&mut good, &frame(b"before"));
    // The header alone is enough to refuse: no payload needs to arrive.
    bad.write_all(&1025u32.to_be_bytes()).unwrap();
    let reason = rx.recv_timeout(DEADLINE).expect("a close");
    let want = format!(
        "Protocol: {:?}",
        CodecError::FrameTooLong {
            len: 1025,
            max: 1024
        }
    );
    assert_eq!(reason, want);
    assert_eq!(read_to_eof(&mut bad), b"");
    roundtrip(&mut good, &frame(&[7; 1024]));
    engine.stop();
}

#[test]
fn line_too_long_is_a_protocol_error() {
    let codec = Delimited::lines().max_frame_len(16);
    let (engine, rx) = start(codec);
    let mut c = connect(engine.local_addrs()[0]);
    roundtrip(&mut c, b"short line\n");
    c.write_all(&[b'a'; 40]).unwrap();
    let reason = rx.recv_timeout(DEADLINE).expect("a close");
    assert!(reason.starts_with("Protocol: LineTooLong"), "{reason}");
    engine.stop();
}

fn rss_bytes() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap();
    let pages: u64 = statm.split(' ').nth(1).unwrap().parse().unwrap();
    pages * 4096
}

#[test]
fn a_four_gib_length_claim_costs_only_the_bytes_received() {
    // A codec that allows huge frames, and room to buffer them: memory must still
    // follow the bytes that arrive, not the length the peer claims.
    let codec = LengthPrefixed::builder()
        .max_frame_len(u32::MAX as usize)
        .build()
        .unwrap();
    let (tx, rx) = channel();
    let mut opts = tether::Options::default();
    opts.max_inbound = usize::MAX / 2;
    let engine = Engine::builder(move |_| {
        Framed::new(
            codec.clone(),
            Echo {
                tx: tx.clone(),
                _codec: Default::default(),
            },
        )
    })
    .options(opts)
    .loops(1)
    .listen("127.0.0.1:0")
    .start()
    .unwrap();
    let mut c = connect(engine.local_addrs()[0]);
    let before = rss_bytes();
    c.write_all(&u32::MAX.to_be_bytes()).unwrap();
    let chunk = vec![0u8; 1 << 20];
    for _ in 0..4 {
        c.write_all(&chunk).unwrap();
    }
    // Bytes sent are received once the engine has counted them.
    let end = std::time::Instant::now() + DEADLINE;
    while engine.stats().total.bytes_in < 4 + (4 << 20) {
        assert!(
            std::time::Instant::now() < end,
            "server did not read the bytes"
        );
        std::thread::yield_now();
    }
    let grown = rss_bytes().saturating_sub(before);
    assert!(grown < 64 << 20, "4 MiB received, RSS grew {grown} bytes");
    assert!(rx.try_recv().is_err(), "still open, waiting for the rest");
    engine.stop();
}

#[test]
fn a_stateful_codec_keeps_separate_state_per_connection() {
    let (engine, _rx) = start(Delimited::lines());
    let addr = engine.local_addrs()[0];
    let mut a = connect(addr);
    let mut b = connect(addr);
    // Interleaved partial lines: each connection's delimiter search resumes
    // where that connection's left off, never where the other's did.
    for (pa, pb) in [(&b"alpha-"[..], &b"beta-"[..]), (b"one", b"two-three")] {
        a.write_all(pa).unwrap();
        b.write_all(pb).unwrap();
        std::thread::yield_now();
    }
    a.write_all(b"\n").unwrap();
    b.write_all(b"\n").unwrap();
    assert_eq!(read_n(&mut a, 10), b"alpha-one\n");
    assert_eq!(read_n(&mut b, 15), b"beta-two-three\n");
    engine.stop();
}
