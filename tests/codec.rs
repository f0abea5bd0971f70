//! Framing codec behaviour: incremental decoding, limits, configurations and
//! encode/decode round trips.

use std::time::{Duration, Instant};

use proptest::prelude::*;
use tether::codec::{
    Codec, CodecError, ConfigError, DEFAULT_MAX_FRAME_LEN, Decoded, Delimited, Endian, FixedLength,
    Frame, LengthPrefixed, MAX_HEADER_LEN, Varint,
};

/// Everything a byte stream decodes to.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Outcome {
    frames: Vec<Vec<u8>>,
    error: Option<CodecError>,
    /// Bytes left undecoded at the end.
    rest: usize,
}

fn check_frame(frame: &Frame, src: &[u8]) {
    assert!(frame.start() <= frame.end(), "{frame:?}");
    assert!(frame.end() <= frame.consumed(), "{frame:?}");
    assert!(frame.consumed() >= 1, "{frame:?}");
    assert!(
        frame.consumed() <= src.len(),
        "{frame:?} from {} bytes",
        src.len()
    );
}

/// Decodes `src` as if it had arrived all at once.
fn decode_one_shot<C: Codec>(mut codec: C, src: &[u8]) -> Outcome {
    let mut frames = Vec::new();
    let mut pos = 0;
    loop {
        let input = &src[pos..];
        match codec.decode(input) {
            Ok(Decoded::Frame(frame)) => {
                check_frame(&frame, input);
                frames.push(frame.payload(input).to_vec());
                pos += frame.consumed();
            }
            Ok(Decoded::Incomplete { needed }) => {
                assert!(needed >= 1);
                return Outcome {
                    frames,
                    error: None,
                    rest: src.len() - pos,
                };
            }
            Err(error) => {
                return Outcome {
                    frames,
                    error: Some(error),
                    rest: src.len() - pos,
                };
            }
        }
    }
}

/// Decodes `src` as a connection would see it arrive in chunks of the given
/// sizes (cycled): append a chunk to the inbound buffer, decode every frame
/// available, drop what they consumed. Also checks that the `needed` hint is
/// a true lower bound.
fn decode_chunked<C: Codec>(mut codec: C, src: &[u8], sizes: &[usize]) -> Outcome {
    let mut inbound: Vec<u8> = Vec::new();
    let mut frames = Vec::new();
    let mut fed = 0;
    let mut sizes = sizes.iter().copied().filter(|&n| n > 0).cycle();
    // Buffer length that must be reached before decoding can progress.
    let mut progress_at = 0;
    while fed < src.len() {
        let n = sizes.next().unwrap_or(src.len()).min(src.len() - fed);
        inbound.extend_from_slice(&src[fed..fed + n]);
        fed += n;
        let mut pos = 0;
        loop {
            let input = &inbound[pos..];
            let result = codec.decode(input);
            if !matches!(result, Ok(Decoded::Incomplete { .. })) {
                assert!(
                    input.len() >= progress_at,
                    "hint promised no progress before {progress_at} bytes, got it at {}",
                    input.len()
                );
            }
            match result {
                Ok(Decoded::Frame(frame)) => {
                    check_frame(&frame, input);
                    frames.push(frame.payload(input).to_vec());
                    pos += frame.consumed();
                    progress_at = 0;
                }
                Ok(Decoded::Incomplete { needed }) => {
                    assert!(needed >= 1);
                    progress_at = input.len() + needed;
                    break;
                }
                Err(error) => {
                    return Outcome {
                        frames,
                        error: Some(error),
                        rest: inbound.len() - pos + (src.len() - fed),
                    };
                }
            }
        }
        inbound.drain(..pos);
    }
    Outcome {
        frames,
        error: None,
        rest: inbound.len(),
    }
}

fn encode_all<C: Codec>(codec: &C, payloads: &[&[u8]]) -> Vec<u8> {
    let mut wire = Vec::new();
    for payload in payloads {
        codec.encode_to_vec(payload, &mut wire).unwrap();
    }
    wire
}

/// Feeds every split of `wire` in two parts and compares with one-shot
/// decoding.
fn assert_all_splits_agree<C: Codec>(codec: &C, wire: &[u8]) -> Outcome {
    let expected = decode_one_shot(codec.clone(), wire);
    for split in 0..=wire.len() {
        let got = decode_chunked(codec.clone(), wire, &[split.max(1), wire.len()]);
        assert_eq!(got, expected, "split at {split}");
    }
    // The same codec value, reused after a reset, decodes identically.
    let mut reused = codec.clone();
    let _ = reused.decode(&wire[..wire.len() / 2]);
    reused.reset();
    assert_eq!(decode_one_shot(reused, wire), expected);
    expected
}

fn frame_of(decoded: Result<Decoded, CodecError>) -> Frame {
    match decoded {
        Ok(Decoded::Frame(frame)) => frame,
        other => panic!("expected a frame, got {other:?}"),
    }
}

fn owned(payloads: &[&[u8]]) -> Vec<Vec<u8>> {
    payloads.iter().map(|p| p.to_vec()).collect()
}

// ---------------------------------------------------------------- length-prefixed

#[test]
fn length_prefixed_default_wire_format() {
    let codec = LengthPrefixed::new();
    assert_eq!(codec, LengthPrefixed::default());
    assert_eq!(codec.header_len(), 4);
    assert_eq!(codec.max_frame_len(), DEFAULT_MAX_FRAME_LEN);
    let wire = encode_all(&codec, &[b"abc", b""]);
    assert_eq!(wire, [0, 0, 0, 3, b'a', b'b', b'c', 0, 0, 0, 0]);
    let mut codec = codec;
    let frame = frame_of(codec.decode(&wire));
    assert_eq!((frame.range(), frame.consumed()), (4..7, 7));
    let frame = frame_of(codec.decode(&wire[7..]));
    assert!(frame.is_empty());
    assert_eq!(frame.consumed(), 4);
}

#[test]
fn length_prefixed_every_split_point() {
    let codec = LengthPrefixed::new();
    let payloads: &[&[u8]] = &[b"hello", b"", b"x", &[0xff; 40], b"tail"];
    let wire = encode_all(&codec, payloads);
    let out = assert_all_splits_agree(&codec, &wire);
    assert_eq!(out.frames, owned(payloads));
    assert_eq!((out.error, out.rest), (None, 0));
}

#[test]
fn length_prefixed_many_frames_in_one_buffer() {
    let codec = LengthPrefixed::builder()
        .length_field_width(2)
        .build()
        .unwrap();
    let payloads: Vec<Vec<u8>> = (0..5000u32)
        .map(|i| vec![i as u8; (i % 300) as usize])
        .collect();
    let refs: Vec<&[u8]> = payloads.iter().map(|p| p.as_slice()).collect();
    let wire = encode_all(&codec, &refs);
    let out = decode_one_shot(codec.clone(), &wire);
    assert_eq!(out.frames, payloads);
    assert_eq!(decode_chunked(codec, &wire, &[1, 7, 1000, 3]), out);
}

#[test]
fn length_prefixed_max_boundaries() {
    let max = 100;
    let codec = LengthPrefixed::builder()
        .max_frame_len(max)
        .build()
        .unwrap();
    for len in [max - 1, max] {
        let wire = encode_all(&codec, &[&vec![1; len]]);
        let out = decode_one_shot(codec.clone(), &wire);
        assert_eq!(out.frames, vec![vec![1; len]]);
    }
    // Fails on the header alone, before any payload.
    let mut decoder = codec.clone();
    assert_eq!(
        decoder.decode(&[0, 0, 0, 101]),
        Err(CodecError::FrameTooLong { len: 101, max })
    );
    let mut out = Vec::new();
    assert_eq!(
        codec.encode_to_vec(&[0; 101], &mut out),
        Err(CodecError::PayloadTooLong { len: 101, max: 100 })
    );
    assert!(out.is_empty());
}

#[test]
fn length_prefixed_max_counts_delivered_payload() {
    // Strip nothing: the delivered payload includes the 4 header bytes.
    let codec = LengthPrefixed::builder()
        .initial_bytes_to_strip(0)
        .max_frame_len(10)
        .build()
        .unwrap();
    let mut decoder = codec.clone();
    assert!(decoder.decode(&[0, 0, 0, 6, 1, 2, 3, 4, 5, 6]).is_ok());
    assert_eq!(
        decoder.decode(&[0, 0, 0, 7]),
        Err(CodecError::FrameTooLong { len: 11, max: 10 })
    );
    let mut out = Vec::new();
    assert!(codec.encode_to_vec(&[0; 6], &mut out).is_ok());
    assert_eq!(
        codec.encode_to_vec(&[0; 7], &mut out),
        Err(CodecError::PayloadTooLong { len: 7, max: 6 })
    );
}

#[test]
fn length_prefixed_zero_length_frames() {
    let codec = LengthPrefixed::new();
    let wire = encode_all(&codec, &[b"", b"", b"a", b""]);
    let out = assert_all_splits_agree(&codec, &wire);
    assert_eq!(out.frames, owned(&[b"", b"", b"a", b""]));

    let strict = LengthPrefixed::builder()
        .reject_empty(true)
        .build()
        .unwrap();
    let mut decoder = strict.clone();
    assert_eq!(decoder.decode(&[0, 0, 0, 0]), Err(CodecError::EmptyFrame));
    assert_eq!(
        strict.encode_to_vec(b"", &mut Vec::new()),
        Err(CodecError::EmptyFrame)
    );
    let wire = encode_all(&strict, &[b"a"]);
    assert_eq!(decode_one_shot(strict, &wire).frames, owned(&[b"a"]));
}

#[test]
fn length_prefixed_header_claiming_4_gib_fails_at_once() {
    let mut codec = LengthPrefixed::new();
    assert_eq!(
        codec.decode(&[0xff, 0xff, 0xff, 0xff]),
        Err(CodecError::FrameTooLong {
            len: u64::from(u32::MAX),
            max: DEFAULT_MAX_FRAME_LEN
        })
    );
    let mut wide = LengthPrefixed::builder()
        .length_field_width(8)
        .build()
        .unwrap();
    assert_eq!(
        wide.decode(&[0, 0, 0, 1, 0, 0, 0, 0]),
        Err(CodecError::FrameTooLong {
            len: 1 << 32,
            max: DEFAULT_MAX_FRAME_LEN
        })
    );
    // Without a limit the claim only produces a hint, which the caller caps;
    // the codec itself never allocates.
    let mut unbounded = LengthPrefixed::builder()
        .length_field_width(8)
        .max_frame_len(usize::MAX)
        .build()
        .unwrap();
    let Ok(Decoded::Incomplete { needed }) = unbounded.decode(&[0, 0, 0, 1, 0, 0, 0, 0, 9]) else {
        panic!("expected incomplete");
    };
    assert_eq!(needed, (1 << 32) - 1);
    let read_size = needed.min(64 * 1024);
    assert_eq!(read_size, 64 * 1024);
}

#[test]
fn length_prefixed_extreme_values_are_errors_not_panics() {
    let max_field = [0xff; 8];
    for adjustment in [i64::MIN, -1, 0, 1, i64::MAX] {
        let mut codec = LengthPrefixed::builder()
            .length_field_width(8)
            .length_adjustment(adjustment)
            .max_frame_len(usize::MAX)
            .build()
            .unwrap();
        let result = codec.decode(&max_field);
        assert!(
            matches!(
                result,
                Err(CodecError::FrameTooLong { .. }) | Ok(Decoded::Incomplete { .. })
            ),
            "adjustment {adjustment}: {result:?}"
        );
    }
    let mut codec = LengthPrefixed::builder()
        .length_field_width(8)
        .build()
        .unwrap();
    assert_eq!(
        codec.decode(&max_field),
        Err(CodecError::FrameTooLong {
            len: u64::MAX,
            max: DEFAULT_MAX_FRAME_LEN
        })
    );
    // u64::MAX + header + i64::MAX does not fit u64: saturated in the error.
    let mut codec = LengthPrefixed::builder()
        .length_field_width(8)
        .length_adjustment(i64::MAX)
        .build()
        .unwrap();
    assert_eq!(
        codec.decode(&max_field),
        Err(CodecError::FrameTooLong {
            len: u64::MAX,
            max: DEFAULT_MAX_FRAME_LEN
        })
    );
}

#[test]
fn length_prefixed_negative_length_and_strip_errors() {
    let mut codec = LengthPrefixed::builder()
        .length_field_width(2)
        .length_includes_header(true)
        .build()
        .unwrap();
    assert_eq!(
        codec.decode(&[0, 1]),
        Err(CodecError::NegativeLength {
            value: 1,
            adjustment: -2
        })
    );
    let frame = frame_of(codec.decode(&[0, 2]));
    assert_eq!((frame.range(), frame.consumed()), (2..2, 2));

    let mut codec = LengthPrefixed::builder()
        .length_field_width(1)
        .length_adjustment(-10)
        .build()
        .unwrap();
    assert_eq!(
        codec.decode(&[9]),
        Err(CodecError::NegativeLength {
            value: 9,
            adjustment: -10
        })
    );

    let mut codec = LengthPrefixed::builder()
        .length_field_width(1)
        .initial_bytes_to_strip(4)
        .build()
        .unwrap();
    assert_eq!(
        codec.decode(&[2, 0, 0]),
        Err(CodecError::StripExceedsFrame {
            frame_len: 3,
            strip: 4
        })
    );
    let frame = frame_of(codec.decode(&[3, 1, 2, 3]));
    assert_eq!((frame.range(), frame.consumed()), (4..4, 4));
}

/// The configurations documented for Netty's LengthFieldBasedFrameDecoder.
#[test]
fn length_prefixed_netty_examples() {
    let content = b"HELLO, WORLD";
    let cases: Vec<(LengthPrefixed, Vec<u8>, std::ops::Range<usize>)> = vec![
        // offset 0, length 2, adjustment 0, strip 0
        (
            LengthPrefixed::builder()
                .length_field_width(2)
                .initial_bytes_to_strip(0)
                .build()
                .unwrap(),
            [&[0x00, 0x0c][..], content].concat(),
            0..14,
        ),
        // offset 0, length 2, adjustment 0, strip 2
        (
            LengthPrefixed::builder()
                .length_field_width(2)
                .initial_bytes_to_strip(2)
                .build()
                .unwrap(),
            [&[0x00, 0x0c][..], content].concat(),
            2..14,
        ),
        // offset 0, length 2, adjustment -2 (length counts itself), strip 0
        (
            LengthPrefixed::builder()
                .length_field_width(2)
                .length_adjustment(-2)
                .initial_bytes_to_strip(0)
                .build()
                .unwrap(),
            [&[0x00, 0x0e][..], content].concat(),
            0..14,
        ),
        // offset 2, length 3, adjustment 0, strip 0
        (
            LengthPrefixed::builder()
                .length_field_offset(2)
                .length_field_width(3)
                .initial_bytes_to_strip(0)
                .build()
                .unwrap(),
            [&[0xca, 0xfe, 0x00, 0x00, 0x0c][..], content].concat(),
            0..17,
        ),
        // offset 0, length 3, adjustment 2 (a 2-byte header follows), strip 0
        (
            LengthPrefixed::builder()
                .length_field_width(3)
                .length_adjustment(2)
                .initial_bytes_to_strip(0)
                .build()
                .unwrap(),
            [&[0x00, 0x00, 0x0c, 0xca, 0xfe][..], content].concat(),
            0..17,
        ),
        // offset 1, length 2, adjustment 1, strip 3
        (
            LengthPrefixed::builder()
                .length_field_offset(1)
                .length_field_width(2)
                .length_adjustment(1)
                .initial_bytes_to_strip(3)
                .build()
                .unwrap(),
            [&[0xca, 0x00, 0x0c, 0xfe][..], content].concat(),
            3..16,
        ),
        // offset 1, length 2, adjustment -3 (length counts the whole frame), strip 3
        (
            LengthPrefixed::builder()
                .length_field_offset(1)
                .length_field_width(2)
                .length_adjustment(-3)
                .initial_bytes_to_strip(3)
                .build()
                .unwrap(),
            [&[0xca, 0x00, 0x10, 0xfe][..], content].concat(),
            3..16,
        ),
    ];
    for (i, (codec, wire, range)) in cases.into_iter().enumerate() {
        let mut stream = wire.clone();
        stream.extend_from_slice(&wire);
        let out = assert_all_splits_agree(&codec, &stream);
        assert_eq!(
            out.frames,
            vec![wire[range.clone()].to_vec(); 2],
            "case {i}"
        );
        assert_eq!(out.error, None, "case {i}");
        // A payload that is everything after the header encodes back to the
        // same bytes, offset bytes aside (they are written as zeros).
        let header_len = codec.header_len();
        let offset = header_len - [2, 2, 2, 3, 3, 2, 2][i];
        let mut encoded = Vec::new();
        codec
            .encode_to_vec(&wire[header_len..], &mut encoded)
            .unwrap();
        assert_eq!(&encoded[..offset], &vec![0; offset][..], "case {i}");
        assert_eq!(&encoded[offset..], &wire[offset..], "case {i}");
    }
}

#[test]
fn length_prefixed_all_widths_endians_offsets() {
    let payloads: &[&[u8]] = &[b"", b"a", b"0123456789", &[0x5a; 255]];
    for width in [1, 2, 3, 4, 8] {
        for endian in [Endian::Big, Endian::Little] {
            for offset in [0, 1, 3] {
                for (adjustment, includes) in [(0, false), (0, true), (-1, true), (2, false)] {
                    for strip in [None, Some(0), Some(offset)] {
                        let mut builder = LengthPrefixed::builder()
                            .length_field_offset(offset)
                            .length_field_width(width)
                            .endian(endian)
                            .length_adjustment(adjustment)
                            .length_includes_header(includes);
                        if let Some(strip) = strip {
                            builder = builder.initial_bytes_to_strip(strip);
                        }
                        let codec = builder.build().unwrap();
                        let header_len = offset + width;
                        let delivered = strip.unwrap_or(header_len);
                        let mut wire = Vec::new();
                        let mut expected = Vec::new();
                        for payload in payloads {
                            let start = wire.len();
                            match codec.encode_to_vec(payload, &mut wire) {
                                Ok(()) => expected.push(wire[start + delivered..].to_vec()),
                                Err(e) => {
                                    assert_eq!(wire.len(), start);
                                    assert!(
                                        matches!(
                                            e,
                                            CodecError::PayloadTooLong { .. }
                                                | CodecError::PayloadTooShort { .. }
                                        ),
                                        "{e:?}"
                                    );
                                }
                            }
                        }
                        let config = format!(
                            "width {width} {endian:?} offset {offset} adj {adjustment} \
                             includes {includes} strip {strip:?}"
                        );
                        assert!(expected.len() >= 2, "{config}");
                        let out = decode_chunked(codec.clone(), &wire, &[1, 2, 5]);
                        assert_eq!(out.frames, expected, "{config}");
                        assert_eq!((out.error, out.rest), (None, 0), "{config}");
                    }
                }
            }
        }
    }
}

#[test]
fn length_prefixed_field_byte_order() {
    let cases: &[(usize, Endian, &[u8])] = &[
        (1, Endian::Big, &[3]),
        (2, Endian::Big, &[0, 3]),
        (2, Endian::Little, &[3, 0]),
        (3, Endian::Big, &[0, 0, 3]),
        (3, Endian::Little, &[3, 0, 0]),
        (4, Endian::Big, &[0, 0, 0, 3]),
        (4, Endian::Little, &[3, 0, 0, 0]),
        (8, Endian::Big, &[0, 0, 0, 0, 0, 0, 0, 3]),
        (8, Endian::Little, &[3, 0, 0, 0, 0, 0, 0, 0]),
    ];
    for &(width, endian, header) in cases {
        let codec = LengthPrefixed::builder()
            .length_field_width(width)
            .endian(endian)
            .build()
            .unwrap();
        let mut wire = Vec::new();
        codec.encode_to_vec(b"abc", &mut wire).unwrap();
        assert_eq!(&wire[..width], header, "width {width} {endian:?}");
        let mut decoder = codec.clone();
        let frame = frame_of(decoder.decode(&wire));
        assert_eq!(frame.payload(&wire), b"abc");
    }
    // A 3-byte field distinguishes every byte position.
    let mut be = LengthPrefixed::builder()
        .length_field_width(3)
        .max_frame_len(usize::MAX)
        .build()
        .unwrap();
    let mut le = LengthPrefixed::builder()
        .length_field_width(3)
        .little_endian()
        .max_frame_len(usize::MAX)
        .build()
        .unwrap();
    assert_eq!(
        be.decode(&[1, 2, 3]),
        Ok(Decoded::Incomplete { needed: 0x010203 })
    );
    assert_eq!(
        le.decode(&[1, 2, 3]),
        Ok(Decoded::Incomplete { needed: 0x030201 })
    );
}

#[test]
fn length_prefixed_hint_counts_missing_bytes() {
    let mut codec = LengthPrefixed::builder()
        .length_field_offset(2)
        .build()
        .unwrap();
    assert_eq!(codec.decode(&[]), Ok(Decoded::Incomplete { needed: 6 }));
    assert_eq!(
        codec.decode(&[9, 9, 0]),
        Ok(Decoded::Incomplete { needed: 3 })
    );
    assert_eq!(
        codec.decode(&[9, 9, 0, 0, 0, 10, 1]),
        Ok(Decoded::Incomplete { needed: 9 })
    );
}

#[test]
fn length_prefixed_encode_limits() {
    let one_byte = LengthPrefixed::builder()
        .length_field_width(1)
        .build()
        .unwrap();
    let mut out = Vec::new();
    one_byte.encode_to_vec(&[0; 255], &mut out).unwrap();
    assert_eq!(out[0], 255);
    assert_eq!(
        one_byte.encode_to_vec(&[0; 256], &mut out),
        Err(CodecError::PayloadTooLong { len: 256, max: 255 })
    );
    // The field counts the header, so 2 bytes of the field's range are used up.
    let counts_header = LengthPrefixed::builder()
        .length_field_width(1)
        .length_includes_header(true)
        .build()
        .unwrap();
    assert_eq!(
        counts_header.encode_to_vec(&[0; 255], &mut out),
        Err(CodecError::PayloadTooLong { len: 255, max: 254 })
    );
    // A positive adjustment means the frame always has that many more bytes.
    let adjusted = LengthPrefixed::builder()
        .length_adjustment(2)
        .build()
        .unwrap();
    assert_eq!(
        adjusted.encode_to_vec(b"a", &mut out),
        Err(CodecError::PayloadTooShort { len: 1, min: 2 })
    );
    let too_long = LengthPrefixed::builder()
        .length_field_offset(MAX_HEADER_LEN - 3)
        .build()
        .unwrap();
    assert_eq!(
        too_long.encode_to_vec(b"a", &mut out),
        Err(CodecError::HeaderTooLong {
            len: MAX_HEADER_LEN + 1,
            max: MAX_HEADER_LEN
        })
    );
    // Decoding still works with a header that encoding cannot produce.
    let mut decoder = too_long.clone();
    let wire = [&[0u8; 13][..], &[0, 0, 0, 1], b"z"].concat();
    assert_eq!(frame_of(decoder.decode(&wire)).payload(&wire), b"z");
    // Offset bytes are written as zeros.
    let offset = LengthPrefixed::builder()
        .length_field_offset(3)
        .length_field_width(2)
        .build()
        .unwrap();
    out.clear();
    offset.encode_to_vec(b"hi", &mut out).unwrap();
    assert_eq!(out, [0, 0, 0, 0, 2, b'h', b'i']);
}

#[test]
fn length_prefixed_builder_validation() {
    for width in [0, 5, 6, 7, 9, 16] {
        assert_eq!(
            LengthPrefixed::builder().length_field_width(width).build(),
            Err(ConfigError::LengthFieldWidth { width })
        );
    }
    assert_eq!(
        LengthPrefixed::builder()
            .length_field_offset(usize::MAX)
            .build(),
        Err(ConfigError::HeaderOverflow)
    );
    assert_eq!(
        LengthPrefixed::builder()
            .length_adjustment(i64::MIN)
            .length_includes_header(true)
            .build(),
        Err(ConfigError::HeaderOverflow)
    );
    assert!(ConfigError::HeaderOverflow.to_string().contains("overflow"));
}

// ---------------------------------------------------------------- delimited

#[test]
fn delimited_lines_and_crlf() {
    let out = decode_one_shot(Delimited::lines(), b"a\nbc\n\nd\r\nrest");
    assert_eq!(out.frames, owned(&[b"a", b"bc", b"", b"d\r"]));
    assert_eq!(out.rest, 4);
    let out = decode_one_shot(Delimited::crlf(), b"a\r\nb\nc\r\r\n\r\n");
    assert_eq!(out.frames, owned(&[b"a", b"b\nc\r", b""]));
    assert_eq!(out.rest, 0);
    assert_eq!(Delimited::crlf().delimiter(), b"\r\n");
}

#[test]
fn delimited_every_split_point() {
    for delimiter in [&b"\n"[..], b"\r\n", b"--END--", b"aab", b"\0\0"] {
        let codec = Delimited::new(delimiter).unwrap();
        let payloads: &[&[u8]] = &[b"first", b"", b"a", b"ab", b"second line", b"\r", b"x"];
        let mut wire = Vec::new();
        let mut expected = Vec::new();
        for payload in payloads {
            if codec.encode_to_vec(payload, &mut wire).is_ok() {
                expected.push(payload.to_vec());
            }
        }
        wire.extend_from_slice(b"unterminated");
        let out = assert_all_splits_agree(&codec, &wire);
        assert_eq!(out.frames, expected, "{delimiter:?}");
        assert_eq!((out.error, out.rest), (None, 12));
    }
}

#[test]
fn delimited_delimiter_split_across_chunks() {
    let mut codec = Delimited::crlf();
    assert_eq!(
        codec.decode(b"PING\r"),
        Ok(Decoded::Incomplete { needed: 1 })
    );
    let frame = frame_of(codec.decode(b"PING\r\n"));
    assert_eq!((frame.range(), frame.consumed()), (0..4, 6));

    let wire = b"one--END--two--END--";
    let codec = Delimited::new("--END--").unwrap();
    for size in 1..wire.len() {
        let out = decode_chunked(codec.clone(), wire, &[size]);
        assert_eq!(out.frames, owned(&[b"one", b"two"]), "chunks of {size}");
    }
}

#[test]
fn delimited_keep_delimiter() {
    let codec = Delimited::crlf().keep_delimiter(true);
    let out = decode_one_shot(codec.clone(), b"a\r\n\r\n");
    assert_eq!(out.frames, owned(&[b"a\r\n", b"\r\n"]));
    // The maximum still excludes the delimiter.
    let codec = codec.max_frame_len(2);
    let out = decode_one_shot(codec.clone(), b"ab\r\nabc\r\n");
    assert_eq!(out.frames, owned(&[b"ab\r\n"]));
    assert_eq!(out.error, Some(CodecError::LineTooLong { max: 2 }));
}

#[test]
fn delimited_max_boundaries() {
    let max = 8;
    let codec = Delimited::crlf().max_frame_len(max);
    for len in [max - 1, max] {
        let mut wire = vec![b'x'; len];
        wire.extend_from_slice(b"\r\n");
        let out = decode_chunked(codec.clone(), &wire, &[1]);
        assert_eq!(out.frames, vec![vec![b'x'; len]]);
    }
    // max + 1 bytes, no delimiter among them: fails without waiting for more.
    let mut decoder = codec.clone();
    assert_eq!(
        decoder.decode(&[b'x'; 9]),
        Err(CodecError::LineTooLong { max })
    );
    // max bytes and half a delimiter may still become a valid frame.
    let mut decoder = codec.clone();
    assert_eq!(
        decoder.decode(b"xxxxxxxx\r"),
        Ok(Decoded::Incomplete { needed: 1 })
    );
    assert_eq!(
        decoder.decode(b"xxxxxxxx\rx"),
        Err(CodecError::LineTooLong { max })
    );
    // A delimiter found beyond the maximum in one read is still too long.
    let mut decoder = codec.clone();
    assert_eq!(
        decoder.decode(b"xxxxxxxxx\r\n"),
        Err(CodecError::LineTooLong { max })
    );
    let mut out = Vec::new();
    assert_eq!(
        codec.encode_to_vec(&[b'x'; 9], &mut out),
        Err(CodecError::PayloadTooLong { len: 9, max: 8 })
    );
    // Byte-at-a-time arrival errors at exactly max + 1 bytes.
    let out = decode_chunked(Delimited::lines().max_frame_len(4), b"abcdefgh\n", &[1]);
    assert_eq!(out.error, Some(CodecError::LineTooLong { max: 4 }));
    assert_eq!(out.rest, 9);
}

#[test]
fn delimited_empty_frames() {
    let out = decode_one_shot(Delimited::lines(), b"\n\na\n");
    assert_eq!(out.frames, owned(&[b"", b"", b"a"]));
    let strict = Delimited::lines().reject_empty(true);
    let out = decode_one_shot(strict.clone(), b"a\n\n");
    assert_eq!(out.frames, owned(&[b"a"]));
    assert_eq!(out.error, Some(CodecError::EmptyFrame));
    assert_eq!(
        strict.encode_to_vec(b"", &mut Vec::new()),
        Err(CodecError::EmptyFrame)
    );
}

#[test]
fn delimited_trickle_is_linear() {
    // One byte per read, 512 KiB without a delimiter: rescanning the buffer
    // on every call would take minutes.
    let len = 512 * 1024;
    let mut codec = Delimited::new("\r\n").unwrap();
    let mut inbound = Vec::with_capacity(len + 2);
    let started = Instant::now();
    for i in 0..len {
        inbound.push(if i % 2 == 0 { b'\r' } else { b'x' });
        assert_eq!(
            codec.decode(&inbound),
            Ok(Decoded::Incomplete { needed: 1 })
        );
    }
    inbound.extend_from_slice(b"\r\n");
    let frame = frame_of(codec.decode(&inbound));
    assert_eq!(frame.len(), len);
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
}

#[test]
fn delimited_survives_contract_violations() {
    let mut codec = Delimited::lines();
    assert!(matches!(
        codec.decode(b"aaaaaaaa"),
        Ok(Decoded::Incomplete { .. })
    ));
    // A shorter, unrelated input: the stale resume point is discarded.
    let frame = frame_of(codec.decode(b"a\n"));
    assert_eq!(frame.range(), 0..1);
}

#[test]
fn delimited_encode_refuses_embedded_delimiters() {
    let codec = Delimited::crlf();
    let mut out = Vec::new();
    assert_eq!(
        codec.encode_to_vec(b"a\r\nb", &mut out),
        Err(CodecError::DelimiterInPayload { at: 1 })
    );
    // "\r" at the end is harmless: the peer sees "x\r" then "\r\n".
    codec.encode_to_vec(b"x\r", &mut out).unwrap();
    assert_eq!(out, b"x\r\r\n");
    // "ab" + "aba" = "ababa" would be split at 0 by the peer.
    let codec = Delimited::new("aba").unwrap();
    assert_eq!(
        codec.encode_to_vec(b"ab", &mut out),
        Err(CodecError::DelimiterInPayload { at: 0 })
    );
    assert_eq!(
        Delimited::new(Vec::new()).err(),
        Some(ConfigError::EmptyDelimiter)
    );
}

// ---------------------------------------------------------------- fixed length

#[test]
fn fixed_length_frames() {
    let codec = FixedLength::new(3).unwrap();
    assert_eq!(codec.frame_len(), 3);
    let out = assert_all_splits_agree(&codec, b"abcdefgh");
    assert_eq!(out.frames, owned(&[b"abc", b"def"]));
    assert_eq!(out.rest, 2);
    let mut decoder = codec.clone();
    assert_eq!(decoder.decode(b"a"), Ok(Decoded::Incomplete { needed: 2 }));
    let mut out = Vec::new();
    codec.encode_to_vec(b"xyz", &mut out).unwrap();
    assert_eq!(out, b"xyz");
    assert_eq!(
        codec.encode_to_vec(b"xy", &mut out),
        Err(CodecError::WrongLength {
            len: 2,
            expected: 3
        })
    );
    assert_eq!(FixedLength::new(0), Err(ConfigError::ZeroFrameLength));
}

// ---------------------------------------------------------------- varint

#[test]
fn varint_canonical_encodings() {
    let codec = Varint::new().max_frame_len(usize::MAX);
    let cases: &[(u64, &[u8])] = &[
        (0, &[0x00]),
        (1, &[0x01]),
        (127, &[0x7f]),
        (128, &[0x80, 0x01]),
        (300, &[0xac, 0x02]),
        (16383, &[0xff, 0x7f]),
        (16384, &[0x80, 0x80, 0x01]),
        (u64::from(u32::MAX), &[0xff, 0xff, 0xff, 0xff, 0x0f]),
        (
            u64::MAX >> 1,
            &[0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f],
        ),
    ];
    for &(value, bytes) in cases {
        let mut decoder = codec.clone();
        let expected = match value {
            0 => Decoded::Frame(Frame::new(1, 1, 1)),
            v => Decoded::Incomplete { needed: v as usize },
        };
        assert_eq!(decoder.decode(bytes), Ok(expected), "{value}");
        // Every proper prefix is incomplete.
        for cut in 0..bytes.len() {
            assert_eq!(
                decoder.decode(&bytes[..cut]),
                Ok(Decoded::Incomplete { needed: 1 })
            );
        }
    }
    let mut out = Vec::new();
    codec.encode_to_vec(&[0; 300], &mut out).unwrap();
    assert_eq!(&out[..2], &[0xac, 0x02]);
    assert_eq!(out.len(), 302);
}

#[test]
fn varint_rejects_non_canonical_and_overlong() {
    let mut codec = Varint::new().max_frame_len(usize::MAX);
    assert_eq!(
        codec.decode(&[0x80, 0x00]),
        Err(CodecError::VarintNonCanonical)
    );
    assert_eq!(
        codec.decode(&[0x81, 0x80, 0x00, 0x55]),
        Err(CodecError::VarintNonCanonical)
    );
    // u64::MAX is the largest value: 9 full groups and a final 1.
    let mut max = vec![0xff; 9];
    max.push(0x01);
    assert_eq!(
        codec.decode(&max),
        Err(CodecError::FrameTooLong {
            len: u64::MAX,
            max: usize::MAX
        })
    );
    max[9] = 0x02;
    assert_eq!(codec.decode(&max), Err(CodecError::VarintOverlong));
    // An 11th byte is never needed to know: the 10th already fails.
    let mut overlong = vec![0x80; 9];
    assert_eq!(
        codec.decode(&overlong),
        Ok(Decoded::Incomplete { needed: 1 })
    );
    overlong.push(0x80);
    assert_eq!(codec.decode(&overlong), Err(CodecError::VarintOverlong));
    overlong.push(0x01);
    assert_eq!(codec.decode(&overlong), Err(CodecError::VarintOverlong));
    let out = decode_chunked(Varint::new(), &[0xff; 20], &[1]);
    assert_eq!(out.error, Some(CodecError::VarintOverlong));
    assert_eq!(out.rest, 20);
}

#[test]
fn varint_max_boundaries_and_4_gib_claim() {
    let max = 200;
    let codec = Varint::new().max_frame_len(max);
    for len in [max - 1, max] {
        let payload = vec![3; len];
        let wire = encode_all(&codec, &[&payload, b"z"]);
        let out = decode_chunked(codec.clone(), &wire, &[1, 100]);
        assert_eq!(out.frames, vec![payload, b"z".to_vec()]);
    }
    let mut decoder = codec.clone();
    assert_eq!(
        decoder.decode(&[0xc9, 0x01]),
        Err(CodecError::FrameTooLong { len: 201, max })
    );
    assert_eq!(
        codec.encode_to_vec(&[0; 201], &mut Vec::new()),
        Err(CodecError::PayloadTooLong { len: 201, max: 200 })
    );
    let mut decoder = Varint::new();
    assert_eq!(
        decoder.decode(&[0x80, 0x80, 0x80, 0x80, 0x10]),
        Err(CodecError::FrameTooLong {
            len: 1 << 32,
            max: DEFAULT_MAX_FRAME_LEN
        })
    );
}

#[test]
fn varint_empty_frames_and_splits() {
    let codec = Varint::new();
    let payloads: &[&[u8]] = &[b"", &[1; 200], b"", b"abc"];
    let wire = encode_all(&codec, payloads);
    let out = assert_all_splits_agree(&codec, &wire);
    assert_eq!(out.frames, owned(payloads));
    let strict = Varint::new().reject_empty(true);
    let out = decode_one_shot(strict.clone(), &wire);
    assert_eq!(out.error, Some(CodecError::EmptyFrame));
    assert_eq!(
        strict.encode_to_vec(b"", &mut Vec::new()),
        Err(CodecError::EmptyFrame)
    );
}

// ---------------------------------------------------------------- common

#[test]
fn errors_display_their_figures() {
    let e = CodecError::FrameTooLong {
        len: 4096,
        max: 100,
    };
    assert_eq!(
        e.to_string(),
        "frame of 4096 bytes exceeds the maximum of 100"
    );
    let boxed: Box<dyn std::error::Error + Send + Sync> = Box::new(e.clone());
    assert!(boxed.to_string().contains("4096"));
    for e in [
        CodecError::LineTooLong { max: 7 },
        CodecError::NegativeLength {
            value: 1,
            adjustment: -7,
        },
        CodecError::StripExceedsFrame {
            frame_len: 1,
            strip: 7,
        },
        CodecError::PayloadTooLong { len: 8, max: 7 },
        CodecError::PayloadTooShort { len: 1, min: 7 },
        CodecError::DelimiterInPayload { at: 7 },
        CodecError::WrongLength {
            len: 1,
            expected: 7,
        },
        CodecError::HeaderTooLong { len: 17, max: 16 },
    ] {
        assert!(e.to_string().contains('7'), "{e}");
    }
    for e in [
        CodecError::EmptyFrame,
        CodecError::VarintOverlong,
        CodecError::VarintNonCanonical,
    ] {
        assert!(!e.to_string().is_empty());
    }
}

#[test]
fn frame_accessors() {
    let frame = Frame::new(1, 3, 4);
    assert_eq!(frame.start(), 1);
    assert_eq!(frame.end(), 3);
    assert_eq!(frame.len(), 2);
    assert!(!frame.is_empty());
    assert_eq!(frame.payload(b"abcd"), b"bc");
    assert_eq!(Decoded::Frame(frame).frame(), Some(frame));
    assert_eq!(Decoded::Incomplete { needed: 1 }.frame(), None);
}

#[test]
#[should_panic(expected = "invalid frame")]
fn frame_rejects_zero_progress() {
    let _ = Frame::new(0, 0, 0);
}

#[test]
#[should_panic(expected = "invalid frame")]
fn frame_rejects_payload_past_consumed() {
    let _ = Frame::new(0, 5, 4);
}

// ---------------------------------------------------------------- properties

fn payloads_strategy(max_len: usize) -> impl Strategy<Value = Vec<Vec<u8>>> {
    prop::collection::vec(prop::collection::vec(any::<u8>(), 0..=max_len), 0..12)
}

fn chunks_strategy() -> impl Strategy<Value = Vec<usize>> {
    prop::collection::vec(1usize..64, 1..8)
}

fn length_prefixed_strategy() -> impl Strategy<Value = LengthPrefixed> {
    (
        prop::sample::select(vec![1usize, 2, 3, 4, 8]),
        any::<bool>(),
        0usize..4,
        -4i64..4,
        any::<bool>(),
        prop::option::of(0usize..14),
        prop::option::of(0usize..300),
        any::<bool>(),
    )
        .prop_map(
            |(width, little, offset, adjustment, includes, strip, max, reject_empty)| {
                let mut builder = LengthPrefixed::builder()
                    .length_field_width(width)
                    .endian(if little { Endian::Little } else { Endian::Big })
                    .length_field_offset(offset)
                    .length_adjustment(adjustment)
                    .length_includes_header(includes)
                    .reject_empty(reject_empty);
                if let Some(strip) = strip {
                    builder = builder.initial_bytes_to_strip(strip);
                }
                if let Some(max) = max {
                    builder = builder.max_frame_len(max);
                }
                builder.build().unwrap()
            },
        )
}

fn delimited_strategy() -> impl Strategy<Value = Delimited> {
    (
        prop::collection::vec(prop::sample::select(vec![b'a', b'b', b'\r', b'\n']), 1..4),
        prop::option::of(0usize..40),
        any::<bool>(),
        any::<bool>(),
    )
        .prop_map(|(delimiter, max, keep, reject_empty)| {
            let mut codec = Delimited::new(delimiter)
                .unwrap()
                .keep_delimiter(keep)
                .reject_empty(reject_empty);
            if let Some(max) = max {
                codec = codec.max_frame_len(max);
            }
            codec
        })
}

fn varint_strategy() -> impl Strategy<Value = Varint> {
    (prop::option::of(0usize..300), any::<bool>()).prop_map(|(max, reject_empty)| {
        let codec = Varint::new().reject_empty(reject_empty);
        match max {
            Some(max) => codec.max_frame_len(max),
            None => codec,
        }
    })
}

/// Encodes the payloads the codec accepts; returns the wire bytes and what
/// decoding must deliver for each.
fn encode_accepted<C: Codec>(
    codec: &C,
    payloads: &[Vec<u8>],
    delivered: impl Fn(&[u8], &[u8]) -> Vec<u8>,
) -> (Vec<u8>, Vec<Vec<u8>>) {
    let mut wire = Vec::new();
    let mut expected = Vec::new();
    for payload in payloads {
        let start = wire.len();
        if codec.encode_to_vec(payload, &mut wire).is_ok() {
            expected.push(delivered(payload, &wire[start..]));
        } else {
            assert_eq!(wire.len(), start);
        }
    }
    (wire, expected)
}

proptest! {
    #[test]
    fn prop_length_prefixed_chunking_matches_one_shot(
        codec in length_prefixed_strategy(),
        raw in prop::collection::vec(any::<u8>(), 0..200),
        payloads in payloads_strategy(40),
        sizes in chunks_strategy(),
    ) {
        // Arbitrary bytes: incremental decoding agrees, error included.
        let one_shot = decode_one_shot(codec.clone(), &raw);
        prop_assert_eq!(decode_chunked(codec.clone(), &raw, &sizes), one_shot);
        // Encoded payloads come back as the bytes after the stripped prefix.
        let (wire, expected) = encode_accepted(&codec, &payloads, |_, framed| framed.to_vec());
        let out = decode_chunked(codec.clone(), &wire, &sizes);
        prop_assert_eq!(out.error.clone(), None);
        prop_assert_eq!(out.rest, 0);
        prop_assert_eq!(&out, &decode_one_shot(codec.clone(), &wire));
        // Each delivered payload is a suffix of its framed bytes, after the
        // configured strip.
        prop_assert_eq!(out.frames.len(), expected.len());
        for (frame, framed) in out.frames.iter().zip(&expected) {
            prop_assert!(framed.ends_with(frame));
        }
    }

    #[test]
    fn prop_default_length_prefixed_round_trip(
        payloads in payloads_strategy(300),
        sizes in chunks_strategy(),
    ) {
        let codec = LengthPrefixed::new();
        let (wire, expected) = encode_accepted(&codec, &payloads, |p, _| p.to_vec());
        prop_assert_eq!(&expected, &payloads);
        let out = decode_chunked(codec, &wire, &sizes);
        prop_assert_eq!(out.frames, payloads);
    }

    #[test]
    fn prop_delimited_chunking_matches_one_shot(
        codec in delimited_strategy(),
        raw in prop::collection::vec(prop::sample::select(vec![b'a', b'b', b'\r', b'\n', b'x']), 0..200),
        payloads in prop::collection::vec(
            prop::collection::vec(prop::sample::select(vec![b'a', b'b', b'\r', b'\n', b'x']), 0..30),
            0..12,
        ),
        sizes in chunks_strategy(),
    ) {
        let one_shot = decode_one_shot(codec.clone(), &raw);
        prop_assert_eq!(decode_chunked(codec.clone(), &raw, &sizes), one_shot);
        let (wire, expected) = encode_accepted(&codec, &payloads, |p, framed| {
            assert_eq!(framed, [p, codec.delimiter()].concat());
            p.to_vec()
        });
        let out = decode_chunked(codec.clone(), &wire, &sizes);
        prop_assert_eq!(out.error.clone(), None);
        prop_assert_eq!(out.rest, 0);
        let delivered: Vec<Vec<u8>> = out
            .frames
            .iter()
            .map(|f| f.strip_suffix(codec.delimiter()).unwrap_or(f).to_vec())
            .collect();
        prop_assert_eq!(delivered, expected);
    }

    #[test]
    fn prop_fixed_chunking_matches_one_shot(
        len in 1usize..20,
        raw in prop::collection::vec(any::<u8>(), 0..200),
        sizes in chunks_strategy(),
    ) {
        let codec = FixedLength::new(len).unwrap();
        let one_shot = decode_one_shot(codec.clone(), &raw);
        prop_assert_eq!(one_shot.frames.len(), raw.len() / len);
        prop_assert_eq!(one_shot.frames.concat(), &raw[..raw.len() - raw.len() % len]);
        prop_assert_eq!(decode_chunked(codec, &raw, &sizes), one_shot);
    }

    #[test]
    fn prop_varint_chunking_matches_one_shot(
        codec in varint_strategy(),
        raw in prop::collection::vec(any::<u8>(), 0..200),
        payloads in payloads_strategy(300),
        sizes in chunks_strategy(),
    ) {
        let one_shot = decode_one_shot(codec.clone(), &raw);
        prop_assert_eq!(decode_chunked(codec.clone(), &raw, &sizes), one_shot);
        let (wire, expected) = encode_accepted(&codec, &payloads, |p, _| p.to_vec());
        let out = decode_chunked(codec.clone(), &wire, &sizes);
        prop_assert_eq!(out.error.clone(), None);
        prop_assert_eq!(out.frames, expected);
    }

    #[test]
    fn prop_varint_round_trips_every_length(value in any::<u64>()) {
        // Decoding the header alone reports exactly the missing payload.
        let mut codec = Varint::new().max_frame_len(usize::MAX);
        let mut header = Vec::new();
        let mut v = value;
        while v >= 0x80 {
            header.push(v as u8 | 0x80);
            v >>= 7;
        }
        header.push(v as u8);
        let decoded = codec.decode(&header);
        let fits = usize::try_from(value)
            .ok()
            .and_then(|v| v.checked_add(header.len()))
            .is_some();
        let expected = match value {
            0 => Ok(Decoded::Frame(Frame::new(1, 1, 1))),
            _ if fits => Ok(Decoded::Incomplete { needed: value as usize }),
            _ => Err(CodecError::FrameTooLong { len: value, max: usize::MAX }),
        };
        prop_assert_eq!(decoded, expected);
    }
}
