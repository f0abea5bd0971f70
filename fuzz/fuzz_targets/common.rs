//! Checks shared by the codec fuzz targets.
//!
//! Every target reads a codec configuration from the front of the input,
//! then uses the rest twice: as raw inbound bytes, and as payloads to encode
//! and decode back. Both streams are fed to the codec in pseudo-random
//! chunks the way a connection receives them, and the result must match
//! decoding the whole stream at once.

#![allow(dead_code)]

use tether::codec::{Codec, CodecError, Decoded, Frame};

/// Reads configuration values off the front of the fuzz input.
pub struct Input<'a> {
    data: &'a [u8],
}

impl<'a> Input<'a> {
    pub fn new(data: &'a [u8]) -> Self {
        Self { data }
    }

    pub fn byte(&mut self) -> u8 {
        match self.data.split_first() {
            Some((&b, rest)) => {
                self.data = rest;
                b
            }
            None => 0,
        }
    }

    pub fn u16(&mut self) -> u16 {
        u16::from_le_bytes([self.byte(), self.byte()])
    }

    pub fn u64(&mut self) -> u64 {
        let mut bytes = [0; 8];
        bytes.iter_mut().for_each(|b| *b = self.byte());
        u64::from_le_bytes(bytes)
    }

    pub fn bytes(&mut self, n: usize) -> &'a [u8] {
        let (taken, rest) = self.data.split_at(n.min(self.data.len()));
        self.data = rest;
        taken
    }

    pub fn rest(self) -> &'a [u8] {
        self.data
    }
}

/// A small deterministic generator for chunk sizes and payload splits.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Self(seed | 1)
    }

    pub fn next(&mut self) -> u64 {
        // xorshift64*
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// Mostly tiny sizes, sometimes large ones, never 0.
    pub fn size(&mut self) -> usize {
        let r = self.next();
        match r % 4 {
            0 => 1,
            1 => 1 + (r >> 8) as usize % 4,
            2 => 1 + (r >> 8) as usize % 32,
            _ => 1 + (r >> 8) as usize % 1024,
        }
    }
}

/// Everything a stream decodes to.
#[derive(Debug, PartialEq, Eq)]
pub struct Outcome {
    pub frames: Vec<Vec<u8>>,
    pub error: Option<CodecError>,
    pub rest: usize,
}

fn check_frame(frame: &Frame, src: &[u8]) {
    assert!(frame.start() <= frame.end(), "{frame:?}");
    assert!(frame.end() <= frame.consumed(), "{frame:?}");
    assert!(frame.consumed() >= 1, "{frame:?}");
    assert!(
        frame.consumed() <= src.len(),
        "{frame:?} from {}",
        src.len()
    );
}

pub fn decode_one_shot<C: Codec>(mut codec: C, src: &[u8]) -> Outcome {
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

/// Feeds `src` in chunks: append, decode everything available, drop what
/// was consumed. Checks that each `needed` hint is a true lower bound.
pub fn decode_chunked<C: Codec>(mut codec: C, src: &[u8], rng: &mut Rng) -> Outcome {
    let mut inbound = Vec::new();
    let mut frames = Vec::new();
    let mut fed = 0;
    let mut progress_at = 0;
    while fed < src.len() {
        let n = rng.size().min(src.len() - fed);
        inbound.extend_from_slice(&src[fed..fed + n]);
        fed += n;
        let mut pos = 0;
        loop {
            let input = &inbound[pos..];
            let result = codec.decode(input);
            if !matches!(result, Ok(Decoded::Incomplete { .. })) {
                assert!(
                    input.len() >= progress_at,
                    "hint overshot: {progress_at} > {}",
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
                    progress_at = input.len().saturating_add(needed);
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

/// Raw bytes: chunked decoding agrees with one-shot decoding, error
/// included.
pub fn check_raw<C: Codec>(codec: &C, src: &[u8], seed: u64) {
    let one_shot = decode_one_shot(codec.clone(), src);
    let chunked = decode_chunked(codec.clone(), src, &mut Rng::new(seed));
    assert_eq!(chunked, one_shot);
}

/// Splits `data` into payloads at pseudo-random points.
pub fn split_payloads(data: &[u8], seed: u64) -> Vec<&[u8]> {
    let mut rng = Rng::new(seed ^ 0x9e37_79b9_7f4a_7c15);
    let mut payloads = Vec::new();
    let mut rest = data;
    while !rest.is_empty() {
        let n = match rng.next() % 8 {
            0 => 0,
            _ => rng.size().min(rest.len()),
        };
        let (payload, tail) = rest.split_at(n);
        payloads.push(payload);
        rest = tail;
        if payloads.len() > 4096 {
            break;
        }
    }
    payloads
}

/// Encodes each payload the codec accepts and checks the stream decodes to
/// `delivered(payload, framed bytes)` for each, in any chunking.
pub fn check_round_trip<C: Codec>(
    codec: &C,
    payloads: &[&[u8]],
    seed: u64,
    delivered: impl Fn(&[u8], &[u8]) -> Vec<u8>,
) {
    let mut wire = Vec::new();
    let mut expected = Vec::new();
    for payload in payloads {
        let start = wire.len();
        let mut header = [0u8; tether::codec::MAX_HEADER_LEN];
        let separate = codec.encode_header(payload, &mut header);
        match codec.encode_to_vec(payload, &mut wire) {
            Ok(()) => {
                let header_len = separate.expect("encode_header and encode_to_vec disagree");
                let framed = &wire[start..];
                assert_eq!(&framed[..header_len], &header[..header_len]);
                assert_eq!(&framed[header_len..header_len + payload.len()], *payload);
                assert_eq!(
                    &framed[header_len + payload.len()..],
                    codec.encode_trailer()
                );
                expected.push(delivered(payload, framed));
            }
            Err(e) => {
                assert_eq!(separate, Err(e));
                assert_eq!(wire.len(), start, "failed encode wrote bytes");
            }
        }
    }
    let one_shot = decode_one_shot(codec.clone(), &wire);
    assert_eq!(one_shot.error, None, "encoded stream failed to decode");
    assert_eq!(one_shot.rest, 0);
    assert_eq!(one_shot.frames, expected);
    let chunked = decode_chunked(codec.clone(), &wire, &mut Rng::new(seed.rotate_left(17)));
    assert_eq!(chunked, one_shot);
}
