//! Frames of one fixed length.

use super::{Codec, CodecError, ConfigError, Decoded, Frame, HeaderBuf};

/// Fixed-length framing: every frame is exactly `len` bytes, with no header
/// or trailer.
///
/// The length is at least 1, so there are no empty frames. Encoding accepts
/// only payloads of exactly `len` bytes ([`CodecError::WrongLength`]
/// otherwise).
///
/// ```
/// use tether::codec::{Codec, Decoded, FixedLength};
///
/// let mut codec = FixedLength::new(4)?;
/// assert_eq!(codec.decode(b"ab")?, Decoded::Incomplete { needed: 2 });
/// let Decoded::Frame(frame) = codec.decode(b"abcdef")? else { unreachable!() };
/// assert_eq!(frame.payload(b"abcdef"), b"abcd");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FixedLength {
    len: usize,
}

impl FixedLength {
    /// Frames of `len` bytes.
    ///
    /// # Errors
    ///
    /// [`ConfigError::ZeroFrameLength`] if `len` is 0.
    pub fn new(len: usize) -> Result<Self, ConfigError> {
        if len == 0 {
            return Err(ConfigError::ZeroFrameLength);
        }
        Ok(Self { len })
    }

    /// The frame length.
    pub fn frame_len(&self) -> usize {
        self.len
    }
}

impl Codec for FixedLength {
    fn is_stateless(&self) -> bool {
        true
    }

    #[inline]
    fn decode(&mut self, src: &[u8]) -> Result<Decoded, CodecError> {
        if src.len() < self.len {
            return Ok(Decoded::Incomplete {
                needed: self.len - src.len(),
            });
        }
        Ok(Decoded::Frame(Frame {
            start: 0,
            end: self.len,
            consumed: self.len,
        }))
    }

    fn encode_header(&self, payload: &[u8], _dst: &mut HeaderBuf) -> Result<usize, CodecError> {
        if payload.len() != self.len {
            return Err(CodecError::WrongLength {
                len: payload.len(),
                expected: self.len,
            });
        }
        Ok(0)
    }
}
