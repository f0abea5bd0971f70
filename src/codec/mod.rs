//! Framing codecs: split a byte stream into frames and frame outbound
//! payloads.
//!
//! The codecs are sans-IO. Decoding looks at a connection's unread inbound
//! bytes as one contiguous slice and reports where the next frame's payload
//! lies in it ([`Frame`]) and how many bytes it occupies; nothing is copied
//! or allocated per frame. Encoding produces only the bytes that go *around*
//! a payload — a header written into a small stack buffer and a static
//! trailer — so the payload itself is queued for sending as it is.
//!
//! | codec | wire format |
//! |---|---|
//! | [`LengthPrefixed`] | a length field in a header, configured like Netty's `LengthFieldBasedFrameDecoder` |
//! | [`Delimited`] | payloads separated by a delimiter such as `\n` or `\r\n` |
//! | [`FixedLength`] | payloads of one fixed length |
//! | [`Varint`] | an unsigned LEB128 length prefix |
//!
//! # Driving a codec
//!
//! This is the loop a reactor runs over a connection's inbound buffer; the
//! buffer only ever grows by the bytes that actually arrived.
//!
//! ```
//! use tether::codec::{Codec, Decoded, LengthPrefixed};
//!
//! let mut codec = LengthPrefixed::new();
//! let mut wire = Vec::new();
//! codec.encode_to_vec(b"hello", &mut wire).unwrap();
//! codec.encode_to_vec(b"world", &mut wire).unwrap();
//!
//! let mut inbound: Vec<u8> = Vec::new();
//! let mut frames = Vec::new();
//! for chunk in wire.chunks(3) {
//!     inbound.extend_from_slice(chunk);
//!     let mut pos = 0;
//!     loop {
//!         match codec.decode(&inbound[pos..]).unwrap() {
//!             Decoded::Frame(frame) => {
//!                 frames.push(frame.payload(&inbound[pos..]).to_vec());
//!                 pos += frame.consumed();
//!             }
//!             Decoded::Incomplete { needed } => {
//!                 assert!(needed >= 1);
//!                 break;
//!             }
//!         }
//!     }
//!     inbound.drain(..pos);
//! }
//! assert_eq!(frames, [b"hello".to_vec(), b"world".to_vec()]);
//! ```

mod delimited;
mod error;
mod fixed;
mod length_prefixed;
pub mod resp;
mod varint;

use std::fmt;
use std::ops::Range;

pub use delimited::Delimited;
pub use error::{CodecError, ConfigError};
pub use fixed::FixedLength;
pub use length_prefixed::{Endian, LengthPrefixed, LengthPrefixedBuilder};
pub use resp::Resp;
pub use varint::Varint;

/// Capacity of the buffer that [`Codec::encode_header`] writes into.
pub const MAX_HEADER_LEN: usize = 16;

/// The stack buffer a header is encoded into.
pub type HeaderBuf = [u8; MAX_HEADER_LEN];

/// Default maximum payload length of every codec that has one: 8 MiB.
pub const DEFAULT_MAX_FRAME_LEN: usize = 8 * 1024 * 1024;

/// Where one decoded frame lies in the input it was decoded from.
///
/// The payload is `src[self.range()]` of the slice passed to
/// [`Codec::decode`]; after the payload has been handled, the first
/// [`consumed`](Frame::consumed) bytes of that slice are dropped. A frame
/// always satisfies `start <= end <= consumed` and `consumed >= 1`, so a
/// decode loop always makes progress; `consumed <= src.len()` holds for the
/// slice it was decoded from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Frame {
    start: usize,
    end: usize,
    consumed: usize,
}

impl Frame {
    /// Describes a frame whose payload is `src[start..end]` and which
    /// occupies the first `consumed` bytes of the input.
    ///
    /// # Panics
    ///
    /// If not `start <= end <= consumed` and `consumed >= 1`.
    ///
    /// ```
    /// use tether::codec::Frame;
    ///
    /// let frame = Frame::new(2, 5, 6);
    /// assert_eq!(frame.payload(b"..abc;rest"), b"abc");
    /// assert_eq!(frame.consumed(), 6);
    /// ```
    #[inline]
    pub fn new(start: usize, end: usize, consumed: usize) -> Self {
        assert!(
            start <= end && end <= consumed && consumed >= 1,
            "invalid frame: start {start}, end {end}, consumed {consumed}"
        );
        Self {
            start,
            end,
            consumed,
        }
    }

    /// Offset of the payload's first byte.
    #[inline]
    pub fn start(&self) -> usize {
        self.start
    }

    /// Offset just past the payload's last byte.
    #[inline]
    pub fn end(&self) -> usize {
        self.end
    }

    /// Number of bytes the whole frame (header, payload, trailer) occupies
    /// at the front of the input.
    #[inline]
    pub fn consumed(&self) -> usize {
        self.consumed
    }

    /// The payload's range in the input.
    #[inline]
    pub fn range(&self) -> Range<usize> {
        self.start..self.end
    }

    /// The payload's length.
    #[inline]
    pub fn len(&self) -> usize {
        self.end - self.start
    }

    /// Whether the payload is empty.
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.start == self.end
    }

    /// The payload, borrowed from the slice the frame was decoded from.
    ///
    /// # Panics
    ///
    /// If `src` is shorter than [`end`](Frame::end), which cannot happen for
    /// the slice the frame was decoded from.
    #[inline]
    pub fn payload<'a>(&self, src: &'a [u8]) -> &'a [u8] {
        &src[self.start..self.end]
    }
}

/// The result of one successful [`Codec::decode`] call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Decoded {
    /// A complete frame lies at the front of the input.
    Frame(Frame),
    /// The input holds no complete frame yet.
    Incomplete {
        /// A lower bound, always at least 1, on the number of bytes that
        /// must be appended before decoding can make progress.
        ///
        /// It is a hint for sizing the next read, taken from the peer's own
        /// header: it can be as large as the configured maximum frame length
        /// (more with an unbounded maximum), so callers cap it (for example
        /// at their read size) and let buffers grow only as bytes arrive.
        needed: usize,
    },
}

impl Decoded {
    /// The frame, if one was decoded.
    #[inline]
    pub fn frame(self) -> Option<Frame> {
        match self {
            Self::Frame(frame) => Some(frame),
            Self::Incomplete { .. } => None,
        }
    }
}

/// A framing protocol: splits inbound bytes into frames and frames outbound
/// payloads.
///
/// A codec value may carry decoding state for one byte stream (the
/// [`Delimited`] codec remembers how far it has already searched), so each
/// connection decodes with its own clone of a prototype; cloning the codecs
/// here is cheap and does not allocate.
///
/// # The decoding contract
///
/// [`decode`](Codec::decode) is called with all of a stream's unread bytes,
/// and between two calls the input changes only as the previous result says:
/// after [`Decoded::Frame`] its first `consumed` bytes are dropped, after
/// [`Decoded::Incomplete`] it is unchanged; either way bytes may be appended
/// at its end. A codec may rely on this to avoid rescanning bytes it has
/// seen. A caller that breaks it, or that starts a new stream, calls
/// [`reset`](Codec::reset) first; without that the codec may misframe the
/// stream, but it still never panics or returns a frame outside the input.
///
/// After an error the stream is broken and must not be decoded further.
///
/// # Encoding
///
/// A payload goes on the wire as `header ++ payload ++ trailer`: the header
/// comes from [`encode_header`](Codec::encode_header), the trailer from
/// [`encode_trailer`](Codec::encode_trailer), and the payload is sent as it
/// is, never copied by the codec. Encoding checks the payload against the
/// codec's own limits, so a payload that encodes without error decodes at
/// the peer (with the same configuration) without error.
pub trait Codec: Clone + Send + fmt::Debug + 'static {
    /// Decodes one frame from the front of `src`.
    ///
    /// Returns [`Decoded::Frame`] when a complete frame is available,
    /// [`Decoded::Incomplete`] when more bytes are needed, and an error when
    /// the bytes violate the protocol. Errors are reported as soon as they
    /// are certain: a header declaring an oversized frame fails before its
    /// payload arrives.
    ///
    /// # Errors
    ///
    /// A [`CodecError`] naming the violation; the stream cannot be decoded
    /// further.
    fn decode(&mut self, src: &[u8]) -> Result<Decoded, CodecError>;

    /// Writes the header that precedes `payload` into `dst` and returns its
    /// length (possibly 0).
    ///
    /// The payload is passed so the codec can check it (its length, and for
    /// [`Delimited`] that it does not contain the delimiter); it is not
    /// copied.
    ///
    /// # Errors
    ///
    /// A [`CodecError`] if the payload cannot be framed: too long or too
    /// short for the codec's limits, empty when empty frames are rejected,
    /// containing the delimiter, or of the wrong fixed length.
    fn encode_header(&self, payload: &[u8], dst: &mut HeaderBuf) -> Result<usize, CodecError>;

    /// The bytes that follow every payload (a delimiter), empty by default.
    fn encode_trailer(&self) -> &[u8] {
        &[]
    }

    /// Bytes to leave in front of a payload built in place (the frame layer's
    /// `build_frame`) for its header:
    /// the header's length when it is fixed. When the header turns out longer or
    /// shorter, the payload is moved once to fit it. 0 by default.
    fn header_room(&self) -> usize {
        0
    }

    /// Forgets any decoding state, ready for a new stream.
    fn reset(&mut self) {}

    /// True when [`decode`](Codec::decode) keeps no state between calls, so one
    /// instance can decode any number of streams. The framing layer then keeps no
    /// per-connection copy, which matters for idle memory. False by default.
    fn is_stateless(&self) -> bool {
        false
    }

    /// Appends `payload`, framed, to `out`; on error `out` is left unchanged.
    ///
    /// This copies the payload, so it suits tests and simple clients; a
    /// reactor queues the header, payload and trailer separately instead.
    ///
    /// # Errors
    ///
    /// As [`encode_header`](Codec::encode_header).
    ///
    /// ```
    /// use tether::codec::{Codec, Delimited};
    ///
    /// let codec = Delimited::new("\r\n").unwrap();
    /// let mut out = Vec::new();
    /// codec.encode_to_vec(b"PING", &mut out).unwrap();
    /// assert_eq!(out, b"PING\r\n");
    /// assert!(codec.encode_to_vec(b"a\r\nb", &mut out).is_err());
    /// assert_eq!(out, b"PING\r\n");
    /// ```
    fn encode_to_vec(&self, payload: &[u8], out: &mut Vec<u8>) -> Result<(), CodecError> {
        let mut header = [0u8; MAX_HEADER_LEN];
        let header_len = self.encode_header(payload, &mut header)?;
        let trailer = self.encode_trailer();
        out.reserve(
            header_len
                .saturating_add(payload.len())
                .saturating_add(trailer.len()),
        );
        out.extend_from_slice(&header[..header_len]);
        out.extend_from_slice(payload);
        out.extend_from_slice(trailer);
        Ok(())
    }
}
