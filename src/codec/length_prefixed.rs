//! Frames carried behind a binary length field, with the semantics of Netty's
//! `LengthFieldBasedFrameDecoder`.

use super::{
    Codec, CodecError, ConfigError, DEFAULT_MAX_FRAME_LEN, Decoded, Frame, HeaderBuf,
    MAX_HEADER_LEN,
};

/// Byte order of a length field.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Endian {
    /// Most significant byte first (network order).
    #[default]
    Big,
    /// Least significant byte first.
    Little,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Width {
    W1,
    W2,
    W3,
    W4,
    W8,
}

impl Width {
    fn from_len(len: usize) -> Option<Self> {
        match len {
            1 => Some(Self::W1),
            2 => Some(Self::W2),
            3 => Some(Self::W3),
            4 => Some(Self::W4),
            8 => Some(Self::W8),
            _ => None,
        }
    }

    fn len(self) -> usize {
        match self {
            Self::W1 => 1,
            Self::W2 => 2,
            Self::W3 => 3,
            Self::W4 => 4,
            Self::W8 => 8,
        }
    }

    fn max_value(self) -> u64 {
        match self {
            Self::W8 => u64::MAX,
            w => (1u64 << (8 * w.len())) - 1,
        }
    }
}

/// Length-prefixed framing: each frame carries its length in a 1, 2, 3, 4 or
/// 8 byte unsigned integer field.
///
/// The configuration follows Netty's `LengthFieldBasedFrameDecoder`; see
/// [`LengthPrefixedBuilder`] for each setting. A frame on the wire is
///
/// ```text
/// | offset bytes | length field | rest of frame ............................ |
/// |<------- header_len ------->|
/// |<- frame_len = header_len + field value + length adjustment ------------->|
/// |<- strip ->|<------------------ payload delivered ----------------------->|
/// ```
///
/// where the header is `length_field_offset + length_field_width` bytes, the
/// adjustment is reduced by the header length when the field counts the
/// header, and `strip` defaults to the whole header.
///
/// [`LengthPrefixed::new`] (also the [`Default`]) is a 4-byte big-endian
/// field holding the payload's length, stripped from the payload, with a
/// maximum payload of [`DEFAULT_MAX_FRAME_LEN`].
///
/// # Limits
///
/// `max_frame_len` bounds the payload delivered (`frame_len - strip`) and is
/// checked as soon as the length field is readable, so an oversized frame
/// fails before its payload arrives and a frame never needs more than
/// `max_frame_len + strip` bytes of buffer. All length arithmetic is
/// checked: a field of `u64::MAX`, a negative adjusted length or a frame
/// shorter than the bytes to strip is a [`CodecError`], never a wrap or a
/// panic.
///
/// # Empty frames
///
/// A frame whose delivered payload is empty is decoded as an empty [`Frame`]
/// unless [`reject_empty`](LengthPrefixedBuilder::reject_empty) is set, in
/// which case it is [`CodecError::EmptyFrame`]. (When fewer bytes than the
/// header are stripped the payload includes header bytes and is never empty.)
///
/// # Encoding
///
/// The header is `length_field_offset` zero bytes followed by the length
/// field, with the value that makes the peer's decoder (same configuration)
/// see a frame of `header_len + payload.len()` bytes; the payload follows
/// it. Protocols that put other data before the length field must write
/// that data themselves. Encoding fails with
/// [`CodecError::HeaderTooLong`] if the header exceeds [`MAX_HEADER_LEN`].
///
/// ```
/// use tether::codec::{Codec, Decoded, LengthPrefixed};
///
/// let mut codec = LengthPrefixed::new();
/// let wire = [0, 0, 0, 3, b'a', b'b', b'c', 0xff];
/// let Decoded::Frame(frame) = codec.decode(&wire)? else { unreachable!() };
/// assert_eq!(frame.payload(&wire), b"abc");
/// assert_eq!(frame.consumed(), 7);
/// # Ok::<(), tether::codec::CodecError>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LengthPrefixed {
    offset: usize,
    width: Width,
    endian: Endian,
    header_len: usize,
    /// Effective adjustment: the header length is already subtracted when
    /// the field counts the header.
    adjustment: i64,
    strip: usize,
    max: usize,
    reject_empty: bool,
}

impl Default for LengthPrefixed {
    fn default() -> Self {
        Self::new()
    }
}

impl LengthPrefixed {
    /// A 4-byte big-endian field holding the payload length, header
    /// stripped, payloads of at most [`DEFAULT_MAX_FRAME_LEN`] bytes.
    pub fn new() -> Self {
        Self {
            offset: 0,
            width: Width::W4,
            endian: Endian::Big,
            header_len: 4,
            adjustment: 0,
            strip: 4,
            max: DEFAULT_MAX_FRAME_LEN,
            reject_empty: false,
        }
    }

    /// A builder starting from the [`new`](LengthPrefixed::new)
    /// configuration.
    pub fn builder() -> LengthPrefixedBuilder {
        LengthPrefixedBuilder::new()
    }

    /// Length of the header: the length field's offset plus its width.
    pub fn header_len(&self) -> usize {
        self.header_len
    }

    /// Maximum payload length delivered.
    pub fn max_frame_len(&self) -> usize {
        self.max
    }

    #[inline]
    fn read_length(&self, src: &[u8]) -> Option<u64> {
        let field = src.get(self.offset..)?;
        Some(match (self.width, self.endian) {
            (Width::W1, _) => u64::from(*field.first()?),
            (Width::W2, Endian::Big) => u64::from(u16::from_be_bytes(*field.first_chunk()?)),
            (Width::W2, Endian::Little) => u64::from(u16::from_le_bytes(*field.first_chunk()?)),
            (Width::W3, Endian::Big) => {
                let [a, b, c] = *field.first_chunk()?;
                u64::from(u32::from_be_bytes([0, a, b, c]))
            }
            (Width::W3, Endian::Little) => {
                let [a, b, c] = *field.first_chunk()?;
                u64::from(u32::from_le_bytes([a, b, c, 0]))
            }
            (Width::W4, Endian::Big) => u64::from(u32::from_be_bytes(*field.first_chunk()?)),
            (Width::W4, Endian::Little) => u64::from(u32::from_le_bytes(*field.first_chunk()?)),
            (Width::W8, Endian::Big) => u64::from_be_bytes(*field.first_chunk()?),
            (Width::W8, Endian::Little) => u64::from_le_bytes(*field.first_chunk()?),
        })
    }

    /// Range of payload lengths that encode to a frame the decoder accepts
    /// (ignoring `reject_empty`), as `(min, max)`; empty when `max < min`.
    fn payload_bounds(&self) -> (i128, i128) {
        let adj = i128::from(self.adjustment);
        let header = self.header_len as i128;
        let strip = self.strip as i128;
        // The field value is `len - adj` and must fit the field; the
        // delivered payload is `header + len - strip` and must lie in 0..=max.
        let min = adj.max(strip - header).max(0);
        let max = (i128::from(self.width.max_value()) + adj).min(self.max as i128 + strip - header);
        (min, max)
    }
}

impl Codec for LengthPrefixed {
    fn is_stateless(&self) -> bool {
        true
    }

    #[inline]
    fn decode(&mut self, src: &[u8]) -> Result<Decoded, CodecError> {
        let Some(value) = self.read_length(src) else {
            return Ok(Decoded::Incomplete {
                needed: self.header_len.saturating_sub(src.len()).max(1),
            });
        };
        // i128 holds header_len + any u64 + any i64 without overflow.
        let body = i128::from(value) + i128::from(self.adjustment);
        if body < 0 {
            return Err(CodecError::NegativeLength {
                value,
                adjustment: self.adjustment,
            });
        }
        let frame_len = self.header_len as i128 + body;
        let payload_len = frame_len - self.strip as i128;
        if payload_len < 0 {
            return Err(CodecError::StripExceedsFrame {
                frame_len: u64::try_from(frame_len).unwrap_or(u64::MAX),
                strip: self.strip,
            });
        }
        if payload_len > self.max as i128 {
            return Err(CodecError::FrameTooLong {
                len: u64::try_from(payload_len).unwrap_or(u64::MAX),
                max: self.max,
            });
        }
        if payload_len == 0 && self.reject_empty {
            return Err(CodecError::EmptyFrame);
        }
        let Ok(frame_len) = usize::try_from(frame_len) else {
            // Only reachable with a maximum near usize::MAX: the frame could
            // never be buffered.
            return Err(CodecError::FrameTooLong {
                len: u64::try_from(payload_len).unwrap_or(u64::MAX),
                max: self.max,
            });
        };
        if src.len() < frame_len {
            return Ok(Decoded::Incomplete {
                needed: frame_len - src.len(),
            });
        }
        Ok(Decoded::Frame(Frame {
            start: self.strip,
            end: frame_len,
            consumed: frame_len,
        }))
    }

    fn encode_header(&self, payload: &[u8], dst: &mut HeaderBuf) -> Result<usize, CodecError> {
        if self.header_len > MAX_HEADER_LEN {
            return Err(CodecError::HeaderTooLong {
                len: self.header_len,
                max: MAX_HEADER_LEN,
            });
        }
        let len = payload.len() as i128;
        if self.reject_empty && self.header_len as i128 + len == self.strip as i128 {
            return Err(CodecError::EmptyFrame);
        }
        let (min, max) = self.payload_bounds();
        if len < min {
            return Err(CodecError::PayloadTooShort {
                len: payload.len(),
                min: u64::try_from(min).unwrap_or(u64::MAX),
            });
        }
        if len > max {
            return Err(CodecError::PayloadTooLong {
                len: payload.len(),
                max: u64::try_from(max.max(0)).unwrap_or(u64::MAX),
            });
        }
        let value = u64::try_from(len - i128::from(self.adjustment)).map_err(|_| {
            CodecError::PayloadTooShort {
                len: payload.len(),
                min: u64::try_from(min).unwrap_or(u64::MAX),
            }
        })?;
        let (zeros, rest) = dst.split_at_mut(self.offset);
        zeros.fill(0);
        let field = &mut rest[..self.width.len()];
        match self.endian {
            Endian::Big => field.copy_from_slice(&value.to_be_bytes()[8 - field.len()..]),
            Endian::Little => field.copy_from_slice(&value.to_le_bytes()[..field.len()]),
        }
        Ok(self.header_len)
    }
}

/// Configures a [`LengthPrefixed`] codec.
///
/// Settings are named after Netty's `LengthFieldBasedFrameDecoder`.
/// [`build`](LengthPrefixedBuilder::build) validates them.
///
/// A 2-byte little-endian length that counts itself, after a 1-byte type tag
/// which the handler wants to see:
///
/// ```
/// use tether::codec::{Codec, Decoded, LengthPrefixed};
///
/// let mut codec = LengthPrefixed::builder()
///     .length_field_offset(1)
///     .length_field_width(2)
///     .little_endian()
///     .length_includes_header(true)
///     .initial_bytes_to_strip(0)
///     .build()?;
/// // tag 7, length 5 (3 header bytes + 2 body bytes), body "hi"
/// let wire = [7, 5, 0, b'h', b'i'];
/// let Decoded::Frame(frame) = codec.decode(&wire)? else { unreachable!() };
/// assert_eq!(frame.payload(&wire), &wire[..]);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LengthPrefixedBuilder {
    offset: usize,
    width: usize,
    endian: Endian,
    adjustment: i64,
    includes_header: bool,
    strip: Option<usize>,
    max: usize,
    reject_empty: bool,
}

impl Default for LengthPrefixedBuilder {
    fn default() -> Self {
        Self::new()
    }
}

impl LengthPrefixedBuilder {
    /// Starts from the [`LengthPrefixed::new`] configuration.
    pub fn new() -> Self {
        Self {
            offset: 0,
            width: 4,
            endian: Endian::Big,
            adjustment: 0,
            includes_header: false,
            strip: None,
            max: DEFAULT_MAX_FRAME_LEN,
            reject_empty: false,
        }
    }

    /// Number of bytes before the length field (Netty's
    /// `lengthFieldOffset`); default 0.
    #[must_use]
    pub fn length_field_offset(mut self, offset: usize) -> Self {
        self.offset = offset;
        self
    }

    /// Width of the length field in bytes: 1, 2, 3, 4 or 8 (Netty's
    /// `lengthFieldLength`); default 4.
    #[must_use]
    pub fn length_field_width(mut self, width: usize) -> Self {
        self.width = width;
        self
    }

    /// Byte order of the length field; default big endian.
    #[must_use]
    pub fn endian(mut self, endian: Endian) -> Self {
        self.endian = endian;
        self
    }

    /// Big-endian length field.
    #[must_use]
    pub fn big_endian(self) -> Self {
        self.endian(Endian::Big)
    }

    /// Little-endian length field.
    #[must_use]
    pub fn little_endian(self) -> Self {
        self.endian(Endian::Little)
    }

    /// Added to the field's value to get the number of frame bytes after the
    /// field (Netty's `lengthAdjustment`); may be negative; default 0.
    ///
    /// For example +2 when a 2-byte field after the length field is not
    /// counted by it.
    #[must_use]
    pub fn length_adjustment(mut self, adjustment: i64) -> Self {
        self.adjustment = adjustment;
        self
    }

    /// Whether the field's value counts the header (offset and field) as
    /// well; default false.
    ///
    /// Equivalent to subtracting the header length from the adjustment,
    /// and applied on top of [`length_adjustment`](Self::length_adjustment).
    #[must_use]
    pub fn length_includes_header(mut self, includes: bool) -> Self {
        self.includes_header = includes;
        self
    }

    /// Number of bytes dropped from the front of each frame before the
    /// payload is delivered (Netty's `initialBytesToStrip`); by default the
    /// whole header. May exceed the header, in which case frames shorter
    /// than it are an error.
    #[must_use]
    pub fn initial_bytes_to_strip(mut self, strip: usize) -> Self {
        self.strip = Some(strip);
        self
    }

    /// Maximum length of a delivered payload; default
    /// [`DEFAULT_MAX_FRAME_LEN`].
    #[must_use]
    pub fn max_frame_len(mut self, max: usize) -> Self {
        self.max = max;
        self
    }

    /// Whether an empty payload is an error ([`CodecError::EmptyFrame`])
    /// rather than an empty frame; default false.
    #[must_use]
    pub fn reject_empty(mut self, reject: bool) -> Self {
        self.reject_empty = reject;
        self
    }

    /// Validates the configuration.
    ///
    /// # Errors
    ///
    /// [`ConfigError::LengthFieldWidth`] if the width is not 1, 2, 3, 4 or
    /// 8; [`ConfigError::HeaderOverflow`] if the header length or the
    /// effective adjustment overflows.
    pub fn build(&self) -> Result<LengthPrefixed, ConfigError> {
        let width = Width::from_len(self.width)
            .ok_or(ConfigError::LengthFieldWidth { width: self.width })?;
        let header_len = self
            .offset
            .checked_add(width.len())
            .ok_or(ConfigError::HeaderOverflow)?;
        let adjustment = if self.includes_header {
            i64::try_from(header_len)
                .ok()
                .and_then(|h| self.adjustment.checked_sub(h))
                .ok_or(ConfigError::HeaderOverflow)?
        } else {
            self.adjustment
        };
        Ok(LengthPrefixed {
            offset: self.offset,
            width,
            endian: self.endian,
            header_len,
            adjustment,
            strip: self.strip.unwrap_or(header_len),
            max: self.max,
            reject_empty: self.reject_empty,
        })
    }
}
