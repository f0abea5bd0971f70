//! Errors reported by the framing codecs.

use std::fmt;

/// A framing violation found while decoding, or a payload that cannot be
/// framed while encoding.
///
/// Decoding errors are final: the peer has broken the protocol and the
/// connection is closed with this error as its reason. Encoding errors
/// concern one outbound payload only; nothing has been written when they are
/// returned.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum CodecError {
    /// A frame's declared payload is longer than the configured maximum.
    ///
    /// Reported as soon as the length is readable, before any of the payload
    /// has to arrive.
    FrameTooLong {
        /// The declared payload length (saturated at `u64::MAX`).
        len: u64,
        /// The configured maximum payload length.
        max: usize,
    },
    /// More than `max` bytes arrived without a delimiter.
    LineTooLong {
        /// The configured maximum payload length, delimiter excluded.
        max: usize,
    },
    /// The length field plus the length adjustment is negative, so the frame
    /// would end before its own length field does.
    NegativeLength {
        /// The raw value of the length field.
        value: u64,
        /// The effective adjustment: the configured adjustment, minus the
        /// header length when the length counts the header.
        adjustment: i64,
    },
    /// The frame is shorter than the number of bytes to strip from its front.
    StripExceedsFrame {
        /// The frame's length on the wire, header included.
        frame_len: u64,
        /// The configured number of bytes to strip.
        strip: usize,
    },
    /// An empty frame arrived (or was to be sent) and the codec is
    /// configured to reject empty frames.
    EmptyFrame,
    /// A varint length prefix runs past 10 bytes or its value exceeds
    /// `u64::MAX`.
    VarintOverlong,
    /// A varint length prefix ends in a redundant zero group (for example
    /// `0x80 0x00` for 0), which the canonical encoding never produces.
    VarintNonCanonical,
    /// Encoding: the payload is too long for the length field or for the
    /// configured maximum.
    PayloadTooLong {
        /// The payload's length.
        len: usize,
        /// The longest payload this codec can frame.
        max: u64,
    },
    /// Encoding: the payload is too short for this configuration (a positive
    /// length adjustment, or more bytes to strip than the frame would hold).
    PayloadTooShort {
        /// The payload's length.
        len: usize,
        /// The shortest payload this codec can frame.
        min: u64,
    },
    /// Encoding: the payload contains the delimiter (or ends with bytes that
    /// form the delimiter together with the trailer), so the peer would split
    /// it into several frames.
    DelimiterInPayload {
        /// Offset in the payload where the delimiter starts.
        at: usize,
    },
    /// Encoding: a fixed-length codec was given a payload of another length.
    WrongLength {
        /// The payload's length.
        len: usize,
        /// The codec's frame length.
        expected: usize,
    },
    /// Encoding: the configured header (offset plus length field) does not
    /// fit the header buffer.
    HeaderTooLong {
        /// The configured header length.
        len: usize,
        /// The header buffer's capacity, [`MAX_HEADER_LEN`](super::MAX_HEADER_LEN).
        max: usize,
    },
}

impl fmt::Display for CodecError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::FrameTooLong { len, max } => {
                write!(f, "frame of {len} bytes exceeds the maximum of {max}")
            }
            Self::LineTooLong { max } => {
                write!(
                    f,
                    "no delimiter within the maximum frame length of {max} bytes"
                )
            }
            Self::NegativeLength { value, adjustment } => write!(
                f,
                "length field {value} with adjustment {adjustment} gives a negative length"
            ),
            Self::StripExceedsFrame { frame_len, strip } => write!(
                f,
                "frame of {frame_len} bytes is shorter than the {strip} bytes to strip"
            ),
            Self::EmptyFrame => f.write_str("empty frame rejected"),
            Self::VarintOverlong => {
                f.write_str("varint length prefix longer than 10 bytes or above u64::MAX")
            }
            Self::VarintNonCanonical => {
                f.write_str("varint length prefix has a redundant trailing zero group")
            }
            Self::PayloadTooLong { len, max } => {
                write!(f, "payload of {len} bytes exceeds the maximum of {max}")
            }
            Self::PayloadTooShort { len, min } => {
                write!(f, "payload of {len} bytes is below the minimum of {min}")
            }
            Self::DelimiterInPayload { at } => {
                write!(f, "payload contains the delimiter at offset {at}")
            }
            Self::WrongLength { len, expected } => {
                write!(
                    f,
                    "payload of {len} bytes, fixed frame length is {expected}"
                )
            }
            Self::HeaderTooLong { len, max } => {
                write!(
                    f,
                    "header of {len} bytes exceeds the header buffer of {max}"
                )
            }
        }
    }
}

impl std::error::Error for CodecError {}

/// An invalid codec configuration, reported when the codec is built.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ConfigError {
    /// The length field width is not 1, 2, 3, 4 or 8 bytes.
    LengthFieldWidth {
        /// The requested width.
        width: usize,
    },
    /// The header length (offset plus width) or the effective length
    /// adjustment overflows.
    HeaderOverflow,
    /// The delimiter is empty.
    EmptyDelimiter,
    /// The fixed frame length is zero.
    ZeroFrameLength,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::LengthFieldWidth { width } => {
                write!(f, "length field width {width} is not one of 1, 2, 3, 4, 8")
            }
            Self::HeaderOverflow => f.write_str("header length or length adjustment overflows"),
            Self::EmptyDelimiter => f.write_str("delimiter is empty"),
            Self::ZeroFrameLength => f.write_str("fixed frame length is zero"),
        }
    }
}

impl std::error::Error for ConfigError {}
