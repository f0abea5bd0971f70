//! Frames separated by a delimiter.

use bytes::Bytes;

use super::{Codec, CodecError, ConfigError, DEFAULT_MAX_FRAME_LEN, Decoded, Frame, HeaderBuf};

/// Delimiter-separated framing: `\n`-terminated lines, `\r\n`, or any
/// non-empty byte string.
///
/// A frame is everything up to the first occurrence of the delimiter; the
/// delimiter is stripped from the payload unless
/// [`keep_delimiter`](Delimited::keep_delimiter) is set, and is consumed
/// either way. [`Delimited::lines`] does not treat `\r` specially: with it,
/// `"a\r\n"` is the payload `"a\r"`; use [`Delimited::crlf`] for
/// CRLF-terminated protocols.
///
/// # Limits
///
/// `max_frame_len` bounds the payload, delimiter excluded. The codec fails
/// with [`CodecError::LineTooLong`] as soon as the buffered bytes rule out a
/// delimiter within that bound: after `max_frame_len + 1` bytes with no
/// delimiter started among them.
///
/// The codec remembers how far it has searched, so bytes trickling in one
/// at a time are each examined a bounded number of times and decoding a
/// frame costs time linear in its length (times the delimiter length, in
/// the worst case for delimiters with repeated bytes).
///
/// # Empty frames
///
/// A delimiter with nothing before it is an empty frame (an empty line),
/// delivered as such unless [`reject_empty`](Delimited::reject_empty) is set,
/// in which case it is [`CodecError::EmptyFrame`].
///
/// # Encoding
///
/// Nothing precedes the payload and the delimiter follows it. A payload
/// that contains the delimiter — or whose end forms the delimiter together
/// with the start of the trailer — would be split by the peer, so it is
/// refused with [`CodecError::DelimiterInPayload`].
///
/// ```
/// use tether::codec::{Codec, Decoded, Delimited};
///
/// let mut codec = Delimited::crlf();
/// let wire = b"GET / HTTP/1.1\r\nHost";
/// let Decoded::Frame(frame) = codec.decode(wire)? else { unreachable!() };
/// assert_eq!(frame.payload(wire), b"GET / HTTP/1.1");
/// assert_eq!(frame.consumed(), 16);
/// assert!(matches!(codec.decode(&wire[16..])?, Decoded::Incomplete { .. }));
/// # Ok::<(), tether::codec::CodecError>(())
/// ```
#[derive(Debug, Clone)]
pub struct Delimited {
    delimiter: Bytes,
    max: usize,
    keep: bool,
    reject_empty: bool,
    /// Offset in the current input from which a delimiter may still start:
    /// every earlier start has been ruled out by previous calls.
    scan: usize,
}

impl Delimited {
    /// Frames separated by `delimiter`, which is stripped from payloads of
    /// at most [`DEFAULT_MAX_FRAME_LEN`] bytes.
    ///
    /// The delimiter is anything that converts into [`Bytes`]: a
    /// `&'static str` or `&'static [u8]` is not copied, so neither creating
    /// nor cloning the codec allocates; a `Vec<u8>` is moved in once.
    ///
    /// ```
    /// use tether::codec::{Codec, Decoded, Delimited};
    ///
    /// let mut codec = Delimited::new("\0\0")?.keep_delimiter(true);
    /// let Decoded::Frame(frame) = codec.decode(b"ab\0\0c")? else { unreachable!() };
    /// assert_eq!(frame.payload(b"ab\0\0c"), b"ab\0\0");
    /// let binary = Delimited::new(vec![0xff, 0x00])?;
    /// assert_eq!(binary.delimiter(), [0xff, 0x00]);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// # Errors
    ///
    /// [`ConfigError::EmptyDelimiter`] if the delimiter is empty.
    pub fn new(delimiter: impl Into<Bytes>) -> Result<Self, ConfigError> {
        let delimiter = delimiter.into();
        if delimiter.is_empty() {
            return Err(ConfigError::EmptyDelimiter);
        }
        Ok(Self {
            delimiter,
            max: DEFAULT_MAX_FRAME_LEN,
            keep: false,
            reject_empty: false,
            scan: 0,
        })
    }

    /// Lines terminated by `\n`.
    pub fn lines() -> Self {
        Self::from_static(b"\n")
    }

    /// Lines terminated by `\r\n`.
    pub fn crlf() -> Self {
        Self::from_static(b"\r\n")
    }

    fn from_static(delimiter: &'static [u8]) -> Self {
        Self {
            delimiter: Bytes::from_static(delimiter),
            max: DEFAULT_MAX_FRAME_LEN,
            keep: false,
            reject_empty: false,
            scan: 0,
        }
    }

    /// Sets the maximum payload length, delimiter excluded; default
    /// [`DEFAULT_MAX_FRAME_LEN`].
    #[must_use]
    pub fn max_frame_len(mut self, max: usize) -> Self {
        self.max = max;
        self
    }

    /// Whether payloads include their delimiter; default false.
    #[must_use]
    pub fn keep_delimiter(mut self, keep: bool) -> Self {
        self.keep = keep;
        self
    }

    /// Whether an empty payload (delimiter excluded) is an error rather than
    /// an empty frame; default false.
    #[must_use]
    pub fn reject_empty(mut self, reject: bool) -> Self {
        self.reject_empty = reject;
        self
    }

    /// The delimiter.
    pub fn delimiter(&self) -> &[u8] {
        &self.delimiter
    }
}

impl Codec for Delimited {
    #[inline]
    fn decode(&mut self, src: &[u8]) -> Result<Decoded, CodecError> {
        let delim: &[u8] = &self.delimiter;
        let m = delim.len();
        // A resume point beyond the input means the caller did not keep the
        // decoding contract; searching from scratch is then the only safe
        // choice.
        let from = if self.scan <= src.len() { self.scan } else { 0 };
        // A delimiter starting after `max` means the frame is too long, so
        // the search never needs to look beyond `max + m` bytes.
        let window = src.len().min(self.max.saturating_add(m));
        if let Some(at) = src.get(from..window).and_then(|w| find(w, delim)) {
            let at = from + at;
            self.scan = 0;
            debug_assert!(at <= self.max, "the window ends at max + m");
            if at == 0 && self.reject_empty {
                return Err(CodecError::EmptyFrame);
            }
            let consumed = at + m;
            let end = if self.keep { consumed } else { at };
            return Ok(Decoded::Frame(Frame {
                start: 0,
                end,
                consumed,
            }));
        }
        if src.len() > self.max && !partial_match_possible(src, delim, self.max) {
            self.scan = 0;
            return Err(CodecError::LineTooLong { max: self.max });
        }
        // Starts up to `len - m` were checked in full; later ones are
        // prefixes of the delimiter that more bytes may complete.
        self.scan = from.max((src.len() + 1).saturating_sub(m));
        Ok(Decoded::Incomplete { needed: 1 })
    }

    fn encode_header(&self, payload: &[u8], _dst: &mut HeaderBuf) -> Result<usize, CodecError> {
        if payload.len() > self.max {
            return Err(CodecError::PayloadTooLong {
                len: payload.len(),
                max: self.max as u64,
            });
        }
        if payload.is_empty() && self.reject_empty {
            return Err(CodecError::EmptyFrame);
        }
        if let Some(at) = find_before_trailer(payload, &self.delimiter) {
            return Err(CodecError::DelimiterInPayload { at });
        }
        Ok(0)
    }

    fn encode_trailer(&self) -> &[u8] {
        &self.delimiter
    }

    fn reset(&mut self) {
        self.scan = 0;
    }
}

/// Whether a delimiter starting at or before `max` may still be completed
/// by more input. Called with no complete delimiter in `src[..]` starting at
/// or before `max`, and `src.len() > max`.
fn partial_match_possible(src: &[u8], delim: &[u8], max: usize) -> bool {
    let first = (src.len() + 1).saturating_sub(delim.len());
    (first..=max).any(|p| src.get(p..).is_some_and(|tail| delim.starts_with(tail)))
}

/// First position in `payload` where the delimiter would be found once the
/// delimiter itself is appended, if that is not at `payload.len()`.
fn find_before_trailer(payload: &[u8], delim: &[u8]) -> Option<usize> {
    if let Some(at) = find(payload, delim) {
        return Some(at);
    }
    let first = (payload.len() + 1).saturating_sub(delim.len());
    (first..payload.len()).find(|&p| {
        let tail = &payload[p..];
        let rest = delim.len() - tail.len();
        delim.starts_with(tail) && delim[..rest] == delim[tail.len()..]
    })
}

/// First occurrence of a non-empty `needle` in `haystack`.
#[inline]
fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    let (&first, rest) = needle.split_first()?;
    if rest.is_empty() {
        return find_byte(first, haystack);
    }
    let mut from = 0;
    while let Some(candidates) = haystack.get(from..) {
        let at = from + find_byte(first, candidates)?;
        let after = at + 1;
        if haystack.get(after..after + rest.len())? == rest {
            return Some(at);
        }
        from = after;
    }
    None
}

/// First occurrence of `byte`, eight bytes at a time.
#[inline]
fn find_byte(byte: u8, haystack: &[u8]) -> Option<usize> {
    const LO: u64 = 0x0101_0101_0101_0101;
    const HI: u64 = 0x8080_8080_8080_8080;
    let pattern = LO * u64::from(byte);
    let mut chunks = haystack.chunks_exact(8);
    let mut offset = 0;
    for chunk in &mut chunks {
        if let Ok(bytes) = <[u8; 8]>::try_from(chunk) {
            let x = u64::from_le_bytes(bytes) ^ pattern;
            // Nonzero iff some byte of x is zero; the lowest flagged byte is
            // the first zero one (borrows only propagate upwards).
            let found = x.wrapping_sub(LO) & !x & HI;
            if found != 0 {
                return Some(offset + (found.trailing_zeros() / 8) as usize);
            }
        }
        offset += 8;
    }
    chunks
        .remainder()
        .iter()
        .position(|&b| b == byte)
        .map(|p| offset + p)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn find_byte_matches_naive_search() {
        let hay: Vec<u8> = (0..300u32).map(|i| (i * 7 % 251) as u8).collect();
        for byte in 0..=255u8 {
            for start in 0..20 {
                let h = &hay[start..];
                assert_eq!(
                    find_byte(byte, h),
                    h.iter().position(|&b| b == byte),
                    "byte {byte} start {start}"
                );
            }
        }
        assert_eq!(find_byte(0x80, &[0x7f, 0x00, 0x80]), Some(2));
        assert_eq!(find_byte(0x00, &[0x01, 0x01, 0x00]), Some(2));
    }

    #[test]
    fn find_handles_partial_candidates() {
        assert_eq!(find(b"aab", b"ab"), Some(1));
        assert_eq!(find(b"aaa", b"ab"), None);
        assert_eq!(find(b"xa", b"ab"), None);
        assert_eq!(find(b"", b"ab"), None);
        assert_eq!(find(b"ababc", b"abc"), Some(2));
    }

    #[test]
    fn delimiter_overlapping_trailer_is_found() {
        assert_eq!(find_before_trailer(b"ab", b"aba"), Some(0));
        assert_eq!(find_before_trailer(b"xa", b"aab"), None);
        assert_eq!(find_before_trailer(b"abc\r", b"\r\n"), None);
        assert_eq!(find_before_trailer(b"a\nb", b"\n"), Some(1));
    }
}
