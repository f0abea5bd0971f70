//! Decode throughput of the framing codecs, against tokio-util's codecs.
//!
//! Each case decodes a 64 MiB buffer of frames the way each library is used:
//! tether decodes from a slice and advances by `consumed`; tokio-util splits
//! frames off a `BytesMut` with `Decoder::decode`. Both start from a fresh
//! copy of the same bytes (with spare capacity, like a read buffer), payloads are passed to `black_box` without being
//! read, and codec configurations are hidden from the optimizer as they are
//! in a server that builds them at run time. Reported figures are the median
//! of 5 interleaved runs.
//!
//! Run with `cargo bench -p tether-bench --bench codec`.

use std::hint::black_box;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use tether::codec::{Codec, Decoded, Delimited, LengthPrefixed, Varint};
use tokio_util::codec::{AnyDelimiterCodec, Decoder, LengthDelimitedCodec};

const STREAM_LEN: usize = 64 << 20;
const RUNS: usize = 5;

/// A stream of equal frames, and how many it holds.
struct Stream {
    bytes: BytesMut,
    frames: usize,
}

fn stream<C: Codec>(codec: &C, payload: &[u8]) -> Stream {
    let mut one = Vec::new();
    codec.encode_to_vec(payload, &mut one).unwrap();
    let frames = STREAM_LEN / one.len();
    let mut bytes = BytesMut::with_capacity(frames * one.len());
    for _ in 0..frames {
        bytes.extend_from_slice(&one);
    }
    Stream { bytes, frames }
}

/// A fresh copy of the stream with spare capacity, as a read buffer has:
/// without it tokio-util's per-frame `reserve` reallocates and copies the
/// whole remaining buffer, which would be measured instead of decoding.
fn fresh_copy(stream: &Stream) -> BytesMut {
    let mut buf = BytesMut::with_capacity(stream.bytes.len() + 8 * 1024);
    buf.extend_from_slice(&stream.bytes);
    buf
}

fn tether_decode<C: Codec>(codec: &C, stream: &Stream) -> Duration {
    let buf = fresh_copy(stream);
    let mut codec = black_box(codec.clone());
    let started = Instant::now();
    let mut src: &[u8] = &buf;
    let mut frames = 0;
    loop {
        match codec.decode(src) {
            Ok(Decoded::Frame(frame)) => {
                black_box(frame.payload(src));
                src = &src[frame.consumed()..];
                frames += 1;
            }
            Ok(Decoded::Incomplete { .. }) => break,
            Err(e) => panic!("{e}"),
        }
    }
    let elapsed = started.elapsed();
    assert_eq!(frames, stream.frames);
    elapsed
}

fn tokio_decode<D: Decoder + Clone>(codec: &D, stream: &Stream) -> Duration
where
    D::Error: std::fmt::Debug,
{
    let mut buf = fresh_copy(stream);
    let mut codec = black_box(codec.clone());
    let started = Instant::now();
    let mut frames = 0;
    while let Some(frame) = codec.decode(&mut buf).unwrap() {
        black_box(&frame);
        frames += 1;
    }
    let elapsed = started.elapsed();
    assert_eq!(frames, stream.frames);
    elapsed
}

fn median(mut runs: Vec<Duration>) -> Duration {
    runs.sort();
    runs[runs.len() / 2]
}

/// Runs both decoders `RUNS` times, interleaved, and prints one table row.
fn compare(
    name: &str,
    (ours_stream, theirs_stream): (&Stream, &Stream),
    mut tether: impl FnMut() -> Duration,
    mut tokio: impl FnMut() -> Duration,
) {
    tether();
    tokio();
    let (mut ours, mut theirs) = (Vec::new(), Vec::new());
    for _ in 0..RUNS {
        ours.push(tether());
        theirs.push(tokio());
    }
    let (ours, theirs) = (median(ours), median(theirs));
    let rate = |stream: &Stream, d: Duration| {
        (
            stream.frames as f64 / d.as_secs_f64() / 1e6,
            stream.bytes.len() as f64 / d.as_secs_f64() / 1e9,
        )
    };
    let (our_frames, our_gb) = rate(ours_stream, ours);
    let (their_frames, their_gb) = rate(theirs_stream, theirs);
    println!(
        "| {name:<24} | {:>9} | {our_frames:>11.1} | {our_gb:>7.2} | {their_frames:>11.1} | {their_gb:>7.2} | {:>6.2}x |",
        ours_stream.frames,
        our_frames / their_frames,
    );
}

fn header() {
    println!(
        "| {:<24} | {:>9} | {:>11} | {:>7} | {:>11} | {:>7} | {:>7} |",
        "case", "frames", "tether Mf/s", "GB/s", "tokio Mf/s", "GB/s", "ratio"
    );
    println!(
        "|{:-<26}|{:->11}|{:->13}|{:->9}|{:->13}|{:->9}|{:->9}|",
        "", "", "", "", "", "", ""
    );
}

fn main() {
    println!(
        "decode throughput, {} MiB per run, median of {RUNS}",
        STREAM_LEN >> 20
    );
    header();
    let tether = LengthPrefixed::new();
    let tokio = LengthDelimitedCodec::new();
    for size in [16, 256, 16 * 1024] {
        let payload = vec![0xa5; size];
        let stream = stream(&tether, &payload);
        // Both codecs read the same wire format.
        let mut check = stream.bytes.clone();
        let first = tokio.clone().decode(&mut check).unwrap().unwrap();
        assert_eq!(&first[..], &payload[..]);
        compare(
            &format!("length-prefixed {size} B"),
            (&stream, &stream),
            || tether_decode(&tether, &stream),
            || tokio_decode(&tokio, &stream),
        );
    }
    let lines = Delimited::lines();
    let any_delimiter = AnyDelimiterCodec::new(b"\n".to_vec(), b"\n".to_vec());
    for size in [16, 256] {
        let stream = stream(&lines, &vec![b'x'; size]);
        compare(
            &format!("delimited \\n {size} B"),
            (&stream, &stream),
            || tether_decode(&lines, &stream),
            || tokio_decode(&any_delimiter, &stream),
        );
    }
    // tokio-util has no varint codec; the length-delimited one is the
    // nearest reference.
    let varint = Varint::new();
    let ours = stream(&varint, &[0x5a; 256]);
    let theirs = stream(&tether, &[0x5a; 256]);
    compare(
        "varint 256 B (vs u32 BE)",
        (&ours, &theirs),
        || tether_decode(&varint, &ours),
        || tokio_decode(&tokio, &theirs),
    );
}
