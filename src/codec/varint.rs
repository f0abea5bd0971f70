//! Frames behind an unsigned LEB128 (protobuf-style varint) length prefix.

use super::{Codec, CodecError, DEFAULT_MAX_FRAME_LEN, Decoded, Frame, HeaderBuf};

/// Longest LEB128 encoding of a `u64`.
const MAX_VARINT_LEN: usize = 10;

/// Varint framing: each payload is preceded by its length as an unsigned
/// LEB128 integer (7 bits per byte, least significant group first, high bit
/// set on every byte but the last), as in protobuf's delimited messages.
///
/// # Strictness
///
/// Only the canonical (shortest) encoding of a `u64` is accepted:
/// - a prefix longer than 10 bytes, or a 10th byte above 1 (a value beyond
///   `u64::MAX`), is [`CodecError::VarintOverlong`], reported as soon as
///   that byte arrives;
/// - a multi-byte prefix whose last byte is 0 (a redundant zero group, such
///   as `0x80 0x00` for 0) is [`CodecError::VarintNonCanonical`].
///
/// A length above `max_frame_len` is [`CodecError::FrameTooLong`], reported
/// as soon as the prefix is complete, before the payload arrives.
///
/// # Empty frames
///
/// A length of 0 is an empty frame, delivered as such unless
/// [`reject_empty`](Varint::reject_empty) is set, in which case it is
/// [`CodecError::EmptyFrame`].
///
/// ```
/// use tether::codec::{Codec, Decoded, Varint};
///
/// let mut codec = Varint::new();
/// let mut wire = Vec::new();
/// codec.encode_to_vec(&[7; 300], &mut wire)?;
/// assert_eq!(&wire[..2], &[0xac, 0x02]); // 300
/// let Decoded::Frame(frame) = codec.decode(&wire)? else { unreachable!() };
/// assert_eq!(frame.range(), 2..302);
/// # Ok::<(), tether::codec::CodecError>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Varint {
    max: usize,
    reject_empty: bool,
}

impl Default for Varint {
    fn default() -> Self {
        Self::new()
    }
}

impl Varint {
    /// Payloads of at most [`DEFAULT_MAX_FRAME_LEN`] bytes, empty ones
    /// allowed.
    pub fn new() -> Self {
        Self {
            max: DEFAULT_MAX_FRAME_LEN,
            reject_empty: false,
        }
    }

    /// Sets the maximum payload length; default [`DEFAULT_MAX_FRAME_LEN`].
    #[must_use]
    pub fn max_frame_len(mut self, max: usize) -> Self {
        self.max = max;
        self
    }

    /// Whether an empty payload is an error rather than an empty frame;
    /// default false.
    #[must_use]
    pub fn reject_empty(mut self, reject: bool) -> Self {
        self.reject_empty = reject;
        self
    }
}

/// Reads a canonical LEB128 `u64` from the front of `src`: `Ok(Some((value,
/// prefix length)))`, or `Ok(None)` if it is still incomplete.
#[inline]
fn read_varint(src: &[u8]) -> Result<Option<(u64, usize)>, CodecError> {
    // Most frames are shorter than 128 bytes or than 16 KiB: keep those
    // out of the loop.
    match *src {
        [] => return Ok(None),
        [b0, ..] if b0 < 0x80 => return Ok(Some((u64::from(b0), 1))),
        [b0, b1, ..] if b1 < 0x80 && b1 != 0 => {
            return Ok(Some((u64::from(b0 & 0x7f) | u64::from(b1) << 7, 2)));
        }
        _ => {}
    }
    let mut value = 0u64;
    for (i, &byte) in src.iter().take(MAX_VARINT_LEN - 1).enumerate() {
        value |= u64::from(byte & 0x7f) << (7 * i);
        if byte < 0x80 {
            if byte == 0 && i > 0 {
                return Err(CodecError::VarintNonCanonical);
            }
            return Ok(Some((value, i + 1)));
        }
    }
    // Nine continuation bytes: the tenth holds bit 63 alone.
    match src.get(MAX_VARINT_LEN - 1) {
        None => Ok(None),
        Some(0) => Err(CodecError::VarintNonCanonical),
        Some(1) => Ok(Some((value | 1 << 63, MAX_VARINT_LEN))),
        Some(_) => Err(CodecError::VarintOverlong),
    }
}

impl Codec for Varint {
    fn is_stateless(&self) -> bool {
        true
    }

    /// Two bytes: payloads of 128 B to 16 KiB need no move.
    fn header_room(&self) -> usize {
        2
    }

    #[inline]
    fn decode(&mut self, src: &[u8]) -> Result<Decoded, CodecError> {
        let Some((len, header)) = read_varint(src)? else {
            return Ok(Decoded::Incomplete { needed: 1 });
        };
        let payload_len = match usize::try_from(len) {
            Ok(n) if n <= self.max => n,
            _ => return Err(CodecError::FrameTooLong { len, max: self.max }),
        };
        if payload_len == 0 && self.reject_empty {
            return Err(CodecError::EmptyFrame);
        }
        let Some(frame_len) = header.checked_add(payload_len) else {
            return Err(CodecError::FrameTooLong { len, max: self.max });
        };
        if src.len() < frame_len {
            return Ok(Decoded::Incomplete {
                needed: frame_len - src.len(),
            });
        }
        Ok(Decoded::Frame(Frame {
            start: header,
            end: frame_len,
            consumed: frame_len,
        }))
    }

    fn encode_header(&self, payload: &[u8], dst: &mut HeaderBuf) -> Result<usize, CodecError> {
        if payload.len() > self.max {
            return Err(CodecError::PayloadTooLong {
                len: payload.len(),
                max: self.max as u64,
            });
        }
        if payload.is_empty() && self.reject_empty {
            return Err(CodecError::EmptyFrame);
        }
        let mut value = payload.len() as u64;
        let mut n = 0;
        while value >= 0x80 {
            dst[n] = (value as u8) | 0x80;
            value >>= 7;
            n += 1;
        }
        dst[n] = value as u8;
        Ok(n + 1)
    }
}
