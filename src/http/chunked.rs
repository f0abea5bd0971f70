//! The chunked transfer coding of request bodies (RFC 9112 §7.1), sans-IO.

use std::fmt;

/// Longest chunk extension accepted (`;name=value` after a size).
const MAX_EXTENSION: usize = 1024;
/// Most trailer bytes accepted after the last chunk.
const MAX_TRAILERS: usize = 8 * 1024;

/// A malformed or oversized chunked body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ChunkedError {
    /// A chunk size is missing, not hexadecimal, or overflows 64 bits.
    BadSize,
    /// A line does not end in CRLF, or a chunk's data is not followed by CRLF.
    BadLineEnding,
    /// A chunk extension or the trailer section is longer than accepted.
    LineTooLong,
    /// The chunks add up to more than the body limit.
    TooLarge {
        /// The body limit in bytes.
        limit: u64,
    },
}

impl fmt::Display for ChunkedError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::BadSize => f.write_str("invalid chunk size"),
            Self::BadLineEnding => f.write_str("chunk line does not end in CRLF"),
            Self::LineTooLong => f.write_str("chunk extension or trailers too long"),
            Self::TooLarge { limit } => write!(f, "chunked body exceeds {limit} bytes"),
        }
    }
}

impl std::error::Error for ChunkedError {}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Size { value: u64, digits: u8 },
    Extension { len: usize, value: u64 },
    SizeLf { value: u64 },
    Data { left: u64 },
    DataCr,
    DataLf,
    TrailerStart,
    TrailerLine,
    TrailerLf,
    EndLf,
    Done,
}

/// Decodes a chunked body incrementally: feed it bytes as they arrive, get
/// the data slices out, learn where the body ends.
///
/// Line endings must be CRLF (a bare LF is rejected: peers that disagree on
/// it can be made to frame a stream differently). Extensions are skipped,
/// trailers read and dropped; both are bounded.
///
/// # Examples
///
/// ```
/// use tether::http::ChunkedDecoder;
///
/// let mut decoder = ChunkedDecoder::new(1024);
/// let mut body = Vec::new();
/// let wire = b"5\r\nhello\r\n6;ext=1\r\n world\r\n0\r\n\r\nGET /next";
/// let (used, done) = decoder.decode(wire, |data| body.extend_from_slice(data)).unwrap();
/// assert!(done);
/// assert_eq!(&wire[used..], b"GET /next");
/// assert_eq!(body, b"hello world");
/// ```
#[derive(Debug, Clone)]
pub struct ChunkedDecoder {
    state: State,
    limit: u64,
    total: u64,
    trailers: usize,
}

impl ChunkedDecoder {
    /// A decoder that fails once the data exceeds `limit` bytes.
    pub fn new(limit: u64) -> Self {
        ChunkedDecoder {
            state: State::Size {
                value: 0,
                digits: 0,
            },
            limit,
            total: 0,
            trailers: 0,
        }
    }

    /// Data bytes decoded so far.
    pub fn data_len(&self) -> u64 {
        self.total
    }

    /// True once the last chunk and the trailers have been read.
    pub fn is_done(&self) -> bool {
        self.state == State::Done
    }

    /// Decodes from `input`, passing each run of body data to `data`. Returns
    /// the bytes of `input` used and whether the body ended; after the end,
    /// nothing more is used.
    ///
    /// # Errors
    ///
    /// A [`ChunkedError`]; the stream cannot be decoded further.
    pub fn decode(
        &mut self,
        input: &[u8],
        mut data: impl FnMut(&[u8]),
    ) -> Result<(usize, bool), ChunkedError> {
        let mut pos = 0;
        while pos < input.len() {
            let b = input[pos];
            self.state = match self.state {
                State::Done => break,
                State::Size { value, digits } => match hex(b) {
                    Some(d) => {
                        if digits >= 16 {
                            return Err(ChunkedError::BadSize);
                        }
                        State::Size {
                            value: value << 4 | u64::from(d),
                            digits: digits + 1,
                        }
                    }
                    None if digits == 0 => return Err(ChunkedError::BadSize),
                    None => match b {
                        b'\r' => State::SizeLf { value },
                        b'\n' => return Err(ChunkedError::BadLineEnding),
                        b';' | b' ' | b'\t' => State::Extension { len: 0, value },
                        _ => return Err(ChunkedError::BadSize),
                    },
                },
                State::Extension { len, value } => match b {
                    b'\r' => State::SizeLf { value },
                    b'\n' => return Err(ChunkedError::BadLineEnding),
                    _ if len >= MAX_EXTENSION => return Err(ChunkedError::LineTooLong),
                    _ => State::Extension {
                        len: len + 1,
                        value,
                    },
                },
                State::SizeLf { value } => {
                    if b != b'\n' {
                        return Err(ChunkedError::BadLineEnding);
                    }
                    if value == 0 {
                        State::TrailerStart
                    } else {
                        match self.total.checked_add(value) {
                            Some(total) if total <= self.limit => {
                                self.total = total;
                                State::Data { left: value }
                            }
                            _ => return Err(ChunkedError::TooLarge { limit: self.limit }),
                        }
                    }
                }
                State::Data { left } => {
                    let n = (input.len() - pos).min(usize::try_from(left).unwrap_or(usize::MAX));
                    data(&input[pos..pos + n]);
                    pos += n;
                    let left = left - n as u64;
                    self.state = if left == 0 {
                        State::DataCr
                    } else {
                        State::Data { left }
                    };
                    continue;
                }
                State::DataCr if b == b'\r' => State::DataLf,
                State::DataLf if b == b'\n' => State::Size {
                    value: 0,
                    digits: 0,
                },
                State::DataCr | State::DataLf => return Err(ChunkedError::BadLineEnding),
                State::TrailerStart => match b {
                    b'\r' => State::EndLf,
                    b'\n' => return Err(ChunkedError::BadLineEnding),
                    _ => self.trailer_byte()?,
                },
                State::TrailerLine => match b {
                    b'\r' => State::TrailerLf,
                    b'\n' => return Err(ChunkedError::BadLineEnding),
                    _ => self.trailer_byte()?,
                },
                State::TrailerLf if b == b'\n' => State::TrailerStart,
                State::TrailerLf => return Err(ChunkedError::BadLineEnding),
                State::EndLf if b == b'\n' => {
                    self.state = State::Done;
                    return Ok((pos + 1, true));
                }
                State::EndLf => return Err(ChunkedError::BadLineEnding),
            };
            pos += 1;
        }
        Ok((pos, self.state == State::Done))
    }

    fn trailer_byte(&mut self) -> Result<State, ChunkedError> {
        self.trailers += 1;
        if self.trailers > MAX_TRAILERS {
            return Err(ChunkedError::LineTooLong);
        }
        Ok(State::TrailerLine)
    }
}

fn hex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// `body` in chunks of the given sizes, with an extension on some and a
    /// trailer, then `rest`.
    fn encode(body: &[u8], sizes: &[usize], ext: bool, trailer: bool) -> Vec<u8> {
        let mut wire = Vec::new();
        let mut pos = 0;
        let mut sizes = sizes.iter().cycle();
        while pos < body.len() {
            let n = (*sizes.next().unwrap_or(&1)).clamp(1, body.len() - pos);
            wire.extend_from_slice(format!("{n:X}").as_bytes());
            if ext {
                wire.extend_from_slice(b";name=\"v\"");
            }
            wire.extend_from_slice(b"\r\n");
            wire.extend_from_slice(&body[pos..pos + n]);
            wire.extend_from_slice(b"\r\n");
            pos += n;
        }
        wire.extend_from_slice(b"0\r\n");
        if trailer {
            wire.extend_from_slice(b"X-Checksum: 1\r\n");
        }
        wire.extend_from_slice(b"\r\n");
        wire
    }

    proptest! {
        #[test]
        fn any_chunking_of_any_split_decodes_the_body(
            body in proptest::collection::vec(any::<u8>(), 0..300),
            sizes in proptest::collection::vec(1usize..64, 1..6),
            splits in proptest::collection::vec(1usize..17, 1..6),
            ext in any::<bool>(),
            trailer in any::<bool>(),
        ) {
            let mut wire = encode(&body, &sizes, ext, trailer);
            let end = wire.len();
            wire.extend_from_slice(b"NEXT");
            let mut decoder = ChunkedDecoder::new(body.len() as u64);
            let mut out = Vec::new();
            let mut fed = 0;
            let mut splits = splits.iter().cycle();
            let mut done = false;
            while !done {
                let n = (*splits.next().unwrap()).min(wire.len() - fed);
                let (used, d) = decoder.decode(&wire[fed..fed + n], |d| out.extend_from_slice(d)).unwrap();
                done = d;
                prop_assert!(used == n || done);
                fed += used;
            }
            prop_assert_eq!(fed, end);
            prop_assert_eq!(out, body);
        }

        #[test]
        fn a_byte_less_than_the_limit_fails(
            body in proptest::collection::vec(any::<u8>(), 1..200),
            sizes in proptest::collection::vec(1usize..64, 1..4),
        ) {
            let wire = encode(&body, &sizes, false, false);
            let limit = body.len() as u64 - 1;
            let r = ChunkedDecoder::new(limit).decode(&wire, |_| {});
            prop_assert_eq!(r, Err(ChunkedError::TooLarge { limit }));
        }

        #[test]
        fn arbitrary_bytes_never_panic(input in proptest::collection::vec(any::<u8>(), 0..200)) {
            let mut total = 0;
            if let Ok((used, _)) = ChunkedDecoder::new(100).decode(&input, |d| total += d.len()) {
                prop_assert!(used <= input.len());
                prop_assert!(total <= 100);
            }
        }
    }

    #[test]
    fn malformed_chunks_are_typed_errors() {
        let bad = |wire: &[u8]| ChunkedDecoder::new(1 << 20).decode(wire, |_| {});
        assert_eq!(bad(b"x\r\n"), Err(ChunkedError::BadSize));
        assert_eq!(bad(b"\r\n"), Err(ChunkedError::BadSize));
        assert_eq!(bad(b"-1\r\n"), Err(ChunkedError::BadSize));
        assert_eq!(bad(b"fffffffffffffffff\r\n"), Err(ChunkedError::BadSize));
        assert_eq!(bad(b"5\nhello"), Err(ChunkedError::BadLineEnding));
        assert_eq!(bad(b"5\r\nhelloX"), Err(ChunkedError::BadLineEnding));
        assert_eq!(
            bad(b"ffffffffffffffff\r\n"),
            Err(ChunkedError::TooLarge { limit: 1 << 20 })
        );
        let long_ext = [b"1;".as_slice(), &[b'a'; 2000]].concat();
        assert_eq!(bad(&long_ext), Err(ChunkedError::LineTooLong));
        assert_eq!(bad(b"0\r\n\n"), Err(ChunkedError::BadLineEnding));
    }
}
