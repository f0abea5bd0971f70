//! Frame-level handlers over real sockets: splitting, bad input, hostile lengths.

mod util;

use std::io::Write;
use std::sync::mpsc::{Sender, channel};

use tether::codec::{Codec, CodecError, Delimited, LengthPrefixed};
use tether::{Action, CloseReason, Conn, Engine, EventHandler, decode_frames};
use util::*;

/// Echoes every frame as a frame, all frames of one read in one write; counts
/// reads and frames; reports close reasons.
struct Echo<C> {
    codec: C,
    tx: Sender<String>,
}

/// Frames and reads seen, and the connection's own codec when it keeps state.
struct Seen<C> {
    frames: u64,
    codec: Option<C>,
}

impl<C> Default for Seen<C> {
    fn default() -> Self {
        Seen {
            frames: 0,
            codec: None,
        }
    }
}

impl<C: Codec> EventHandler for Echo<C> {
    type State = Seen<C>;

    fn on_traffic(&mut self, conn: &mut Conn<'_, Seen<C>>) -> Action {
        let on_frame = |conn: &mut tether::FrameConn<'_, '_, Seen<C>, C>, frame: &[u8]| {
            conn.state_mut().frames += 1;
            conn.write_frame(frame).expect("an echoed frame fits");
            Action::Continue
        };
        if self.codec.is_stateless() {
            decode_frames(conn, &mut self.codec, on_frame)
        } else {
            tether::decode_frames_with_state_codec(conn, |s| &mut s.codec, &self.codec, on_frame)
        }
    }

    fn on_close(&mut self, _conn: &mut Conn<'_, Seen<C>>, reason: &CloseReason) {
        let text = match reason {
            CloseReason::Protocol(e) => format!("Protocol: {e:?}"),
            other => reason_name(other),
        };
        let _ = self.tx.send(text);
    }
}

fn start<C: Codec + Sync>(codec: C) -> (Engine, std::sync::mpsc::Receiver<String>) {
    let (tx, rx) = channel();
    let engine = Engine::builder(move |_| Echo {
        codec: codec.clone(),
        tx: tx.clone(),
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
    let engine = Engine::builder(move |_| Echo {
        codec: codec.clone(),
        tx: tx.clone(),
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

/// Echoes frames and, after the frames of each read, one frame naming how many
/// there were: the end-of-batch hook is the code after `decode_frames`.
struct BatchEcho(LengthPrefixed);

impl EventHandler for BatchEcho {
    type State = ();

    fn on_traffic(&mut self, conn: &mut Conn<'_, ()>) -> Action {
        let mut frames = 0u32;
        let action = decode_frames(conn, &mut self.0, |conn, frame| {
            frames += 1;
            conn.write_frame(frame).expect("an echoed frame fits");
            Action::Continue
        });
        if frames > 0 {
            let codec = self.0.clone();
            tether::write_frame(conn, &codec, format!("end {frames}").as_bytes())
                .expect("a short frame fits");
        }
        action
    }
}

#[test]
fn the_code_after_decode_frames_runs_once_per_read_after_its_frames() {
    let engine = Engine::builder(|_| BatchEcho(LengthPrefixed::new()))
        .loops(1)
        .listen("127.0.0.1:0")
        .start()
        .unwrap();
    let mut c = connect(engine.local_addrs()[0]);
    let payloads: Vec<Vec<u8>> = (0..50).map(|i| pattern(10 + i, i as u64)).collect();
    let wire: Vec<u8> = payloads.iter().flat_map(|p| frame(p)).collect();
    c.write_all(&wire).unwrap();
    // Every payload comes back in order; each batch is followed by its count.
    let mut echoed = 0;
    let mut pending_in_batch = 0;
    while echoed < payloads.len() || pending_in_batch > 0 {
        let len = u32::from_be_bytes(read_n(&mut c, 4).try_into().unwrap()) as usize;
        let body = read_n(&mut c, len);
        match body.strip_prefix(b"end ") {
            Some(n) => {
                let n: usize = std::str::from_utf8(n).unwrap().parse().unwrap();
                assert_eq!(n, pending_in_batch, "a batch count names its frames");
                pending_in_batch = 0;
            }
            None => {
                assert_eq!(body, payloads[echoed]);
                echoed += 1;
                pending_in_batch += 1;
            }
        }
    }
    let totals = engine.stats().total;
    assert_eq!(totals.frames_in, 50);
    assert!(
        totals.frames_out > 50,
        "echoes and batch counts are counted"
    );
    engine.stop();
}

/// Answers each frame with a frame built in place: `<len>:` and the payload
/// reversed, through whichever codec the server runs.
struct Builder<C>(C);

impl<C: Codec> EventHandler for Builder<C> {
    type State = Option<C>;

    fn on_traffic(&mut self, conn: &mut Conn<'_, Option<C>>) -> Action {
        tether::decode_frames_with_state_codec(
            conn,
            |s| s,
            &self.0,
            |conn, frame| {
                let built = conn.build_frame(|out| {
                    out.extend_from_slice(format!("{}:", frame.len()).as_bytes());
                    for &b in frame.iter().rev() {
                        out.push(b);
                    }
                });
                built.map_or(Action::Close, |()| Action::Continue)
            },
        )
    }
}

fn built_reply(payload: &[u8]) -> Vec<u8> {
    let mut out = format!("{}:", payload.len()).into_bytes();
    out.extend(payload.iter().rev());
    out
}

#[test]
fn frames_built_in_place_get_their_header_in_front() {
    let run = |codec: tether::codec::Varint, wire: Vec<u8>, want: Vec<u8>| {
        let engine = Engine::builder(move |_| Builder(codec.clone()))
            .loops(1)
            .listen("127.0.0.1:0")
            .start()
            .unwrap();
        let mut c = connect(engine.local_addrs()[0]);
        c.write_all(&wire).unwrap();
        assert!(read_n(&mut c, want.len()) == want);
        engine.stop();
    };
    // Varint headers of 1, 2 and 3 bytes: the payload moves when the header is
    // not the 2 bytes left for it.
    let codec = tether::codec::Varint::new();
    for len in [5usize, 300, 20_000] {
        let payload = pattern(len, len as u64);
        let (mut wire, mut want) = (Vec::new(), Vec::new());
        codec.encode_to_vec(&payload, &mut wire).unwrap();
        codec
            .encode_to_vec(&built_reply(&payload), &mut want)
            .unwrap();
        run(codec.clone(), wire, want);
    }
}

#[test]
fn frames_built_in_place_with_a_fixed_header_or_a_trailer() {
    let engine = Engine::builder(|_| Builder(LengthPrefixed::new()))
        .loops(1)
        .listen("127.0.0.1:0")
        .start()
        .unwrap();
    let mut c = connect(engine.local_addrs()[0]);
    let payloads: Vec<Vec<u8>> = (0..20).map(|i| pattern(i * 41, i as u64)).collect();
    let wire: Vec<u8> = payloads.iter().flat_map(|p| frame(p)).collect();
    let want: Vec<u8> = payloads
        .iter()
        .flat_map(|p| frame(&built_reply(p)))
        .collect();
    c.write_all(&wire).unwrap();
    assert!(read_n(&mut c, want.len()) == want);
    engine.stop();

    let engine = Engine::builder(|_| Builder(Delimited::lines()))
        .loops(1)
        .listen("127.0.0.1:0")
        .start()
        .unwrap();
    let mut c = connect(engine.local_addrs()[0]);
    roundtrip_to(&mut c, b"abc\nhello\n\n", b"3:cba\n5:olleh\n0:\n");
    engine.stop();
}

fn roundtrip_to(c: &mut std::net::TcpStream, send: &[u8], want: &[u8]) {
    c.write_all(send).unwrap();
    assert_eq!(read_n(c, want.len()), want);
}
