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
    /// The per-frame work, worked out once from the fields above.
    fast: Precomputed,
}

/// What [`LengthPrefixed`] works out once from its configuration so that a frame
/// costs one 8-byte load, a shift, one range check and an add (decoding), or one
/// range check and one 8-byte store (encoding). Anything outside the ranges takes
/// the exact, checked path, which names the error.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Precomputed {
    /// Field values that decode to a valid frame: `lo..=hi`, empty when `lo > hi`.
    lo: u64,
    hi: u64,
    /// `frame_len = value + base`, wrapping: `header_len + adjustment`, which may
    /// be negative; in range the sum is exact.
    base: usize,
    /// The field, read as the 8 bytes at its offset: big endian `raw >> shift`,
    /// little endian `raw.swap_bytes() & mask`.
    shift: u32,
    mask: u64,
    big: bool,
    /// Payload lengths encoded by the fast path: `enc_min..=enc_min + enc_span`,
    /// checked with one wrapping subtraction. Empty (`enc_min` = `usize::MAX`, a
    /// length no payload has) when the header does not fit an 8-byte store at
    /// the field.
    enc_min: usize,
    enc_span: usize,
}

impl Precomputed {
    /// Replaced by [`Precomputed::new`] before the codec is handed out.
    fn placeholder() -> Self {
        Precomputed {
            lo: 1,
            hi: 0,
            base: 0,
            shift: 0,
            mask: 0,
            big: true,
            enc_min: usize::MAX,
            enc_span: 0,
        }
    }

    fn new(c: &LengthPrefixed) -> Self {
        let adj = i128::from(c.adjustment);
        let header = c.header_len as i128;
        let strip = c.strip as i128;
        let max = c.max as i128;
        let re = i128::from(c.reject_empty);
        // The exact checks of `decode_checked`, solved for the field's value.
        let lo = 0.max(-adj).max(strip - header - adj + re);
        let hi = i128::from(c.width.max_value())
            .min(max + strip - header - adj)
            .min(usize::MAX as i128 - header - adj);
        let (lo, hi) = match (u64::try_from(lo), u64::try_from(hi)) {
            (Ok(lo), Ok(hi)) => (lo, hi),
            _ => (1, 0),
        };
        let (mut enc_min, enc_max) = c.payload_bounds();
        if c.reject_empty && enc_min == strip - header {
            // The one length whose delivered payload is empty: at the bottom.
            enc_min += 1;
        }
        let clamp = |v: i128| usize::try_from(v.max(0)).unwrap_or(usize::MAX);
        let (enc_min, enc_span) = if enc_max >= enc_min && c.offset + 8 <= MAX_HEADER_LEN {
            (clamp(enc_min), clamp(enc_max) - clamp(enc_min))
        } else {
            (usize::MAX, 0)
        };
        let shift = 64 - 8 * c.width.len() as u32;
        Precomputed {
            lo,
            hi,
            // Truncation is the wrapping add's modulus.
            base: (header + adj) as u64 as usize,
            shift,
            mask: u64::MAX >> shift,
            big: c.endian == Endian::Big,
            enc_min,
            enc_span,
        }
    }
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
        LengthPrefixed::builder()
            .build()
            .expect("the default configuration is valid")
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

impl LengthPrefixed {
    /// The reference decoder: every check spelled out in i128. [`Codec::decode`]
    /// takes it only for a field value outside the precomputed valid range, to
    /// name the error.
    #[cold]
    fn decode_checked(&self, src: &[u8]) -> Result<Decoded, CodecError> {
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
        Ok(self.frame_at(src, frame_len))
    }

    /// The frame of `frame_len` bytes at the front of `src`, once it is valid.
    #[inline]
    fn frame_at(&self, src: &[u8], frame_len: usize) -> Decoded {
        match frame_len.checked_sub(src.len()) {
            Some(needed @ 1..) => Decoded::Incomplete { needed },
            _ => Decoded::Frame(Frame {
                start: self.strip,
                end: frame_len,
                consumed: frame_len,
            }),
        }
    }

    /// The reference encoder, taken for payloads outside the precomputed range.
    #[cold]
    fn encode_checked(&self, payload: &[u8], dst: &mut HeaderBuf) -> Result<usize, CodecError> {
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

impl Codec for LengthPrefixed {
    fn is_stateless(&self) -> bool {
        true
    }

    fn header_room(&self) -> usize {
        self.header_len.min(MAX_HEADER_LEN)
    }

    #[inline]
    fn decode(&mut self, src: &[u8]) -> Result<Decoded, CodecError> {
        let f = &self.fast;
        let value = match src.get(self.offset..).and_then(|b| b.first_chunk::<8>()) {
            Some(bytes) => {
                let raw = u64::from_be_bytes(*bytes);
                if f.big {
                    raw >> f.shift
                } else {
                    raw.swap_bytes() & f.mask
                }
            }
            // Fewer than 8 bytes from the field on: the last frame of a read.
            None => match self.read_length(src) {
                Some(value) => value,
                None => {
                    return Ok(Decoded::Incomplete {
                        needed: self.header_len.saturating_sub(src.len()).max(1),
                    });
                }
            },
        };
        if value < f.lo || value > f.hi {
            return self.decode_checked(src);
        }
        let frame_len = (value as usize).wrapping_add(f.base);
        Ok(self.frame_at(src, frame_len))
    }

    #[inline]
    fn encode_header(&self, payload: &[u8], dst: &mut HeaderBuf) -> Result<usize, CodecError> {
        let f = &self.fast;
        let len = payload.len();
        if len.wrapping_sub(f.enc_min) > f.enc_span {
            return self.encode_checked(payload, dst);
        }
        // In range, `len - adjustment` is the field value and fits the field.
        let value = (len as u64).wrapping_sub(self.adjustment as u64);
        dst[..self.offset].fill(0);
        let field = if f.big {
            (value << f.shift).to_be_bytes()
        } else {
            value.to_le_bytes()
        };
        dst[self.offset..self.offset + 8].copy_from_slice(&field);
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
        let mut codec = LengthPrefixed {
            offset: self.offset,
            width,
            endian: self.endian,
            header_len,
            adjustment,
            strip: self.strip.unwrap_or(header_len),
            max: self.max,
            reject_empty: self.reject_empty,
            fast: Precomputed::placeholder(),
        };
        codec.fast = Precomputed::new(&codec);
        Ok(codec)
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn config() -> impl Strategy<Value = LengthPrefixed> {
        (
            0usize..12,
            prop::sample::select(vec![1usize, 2, 3, 4, 8]),
            any::<bool>(),
            prop_oneof![-20i64..20, any::<i64>()],
            any::<bool>(),
            prop::option::of(0usize..24),
            prop_oneof![0usize..300, Just(usize::MAX), any::<usize>()],
            any::<bool>(),
        )
            .prop_filter_map("valid", |(off, w, le, adj, inc, strip, max, re)| {
                let mut b = LengthPrefixed::builder()
                    .length_field_offset(off)
                    .length_field_width(w)
                    .length_adjustment(adj)
                    .length_includes_header(inc)
                    .max_frame_len(max)
                    .reject_empty(re);
                if le {
                    b = b.little_endian();
                }
                if let Some(strip) = strip {
                    b = b.initial_bytes_to_strip(strip);
                }
                b.build().ok()
            })
    }

    proptest! {
        /// The precomputed path decides exactly as the checked reference does.
        #[test]
        fn fast_decode_matches_checked(
            mut codec in config(),
            value in prop_oneof![0u64..400, any::<u64>()],
            body in prop::collection::vec(any::<u8>(), 0..320),
            cut in any::<prop::sample::Index>(),
        ) {
            let mut wire = vec![0xa5u8; codec.offset];
            match codec.endian {
                Endian::Big => wire.extend_from_slice(&value.to_be_bytes()[8 - codec.width.len()..]),
                Endian::Little => wire.extend_from_slice(&value.to_le_bytes()[..codec.width.len()]),
            }
            wire.extend_from_slice(&body);
            let wire = &wire[..cut.index(wire.len() + 1)];
            prop_assert_eq!(codec.decode(wire), codec.decode_checked(wire));
        }

        /// The precomputed encoder writes what the checked reference writes.
        #[test]
        fn fast_encode_matches_checked(codec in config(), len in 0usize..400) {
            let payload = vec![7u8; len];
            let (mut fast, mut checked) = ([0u8; MAX_HEADER_LEN], [0u8; MAX_HEADER_LEN]);
            let a = codec.encode_header(&payload, &mut fast);
            let b = codec.encode_checked(&payload, &mut checked);
            prop_assert_eq!(&a, &b);
            if let Ok(n) = a {
                prop_assert_eq!(&fast[..n], &checked[..n]);
            }
        }
    }
}
