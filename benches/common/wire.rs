//! The bytes on the wire: the two protocols and the verifiable request messages.

use std::fmt;

/// What a request looks like on the wire.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Proto {
    /// Bare bytes; the server echoes whatever it reads.
    Raw,
    /// Frames with a 4-byte big-endian length prefix (tokio-util's
    /// `LengthDelimitedCodec` default); the server echoes each whole frame.
    Frame,
}

impl Proto {
    pub fn parse(name: &str) -> Option<Proto> {
        match name {
            "raw" => Some(Proto::Raw),
            "frame" => Some(Proto::Frame),
            _ => None,
        }
    }
}

impl fmt::Display for Proto {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Proto::Raw => "raw",
            Proto::Frame => "frame",
        })
    }
}

/// Length of a frame header.
pub const FRAME_HEADER: usize = 4;

/// Largest frame payload a reference server accepts: tokio-util's default, and
/// tether's, so that all servers fail the same oversized frame at its header.
pub const MAX_FRAME_PAYLOAD: usize = 8 << 20;

/// Every payload starts with the request's sequence number, so it is at least this long.
pub const MIN_PAYLOAD: usize = 8;

/// One connection's request message. Only the sequence number changes from one
/// request to the next, so the load generator verifies an echo with `memcmp`.
///
/// The payload is the sequence number (8 bytes, little endian) followed by
/// pseudo-random bytes seeded by the connection's index: a byte echoed on the wrong
/// connection, out of order, dropped or duplicated does not match.
pub struct Message {
    bytes: Vec<u8>,
    seq_at: usize,
}

impl Message {
    /// # Panics
    /// If `payload` is shorter than [`MIN_PAYLOAD`] or longer than [`MAX_FRAME_PAYLOAD`].
    pub fn new(proto: Proto, payload: usize, conn: usize) -> Message {
        assert!(
            (MIN_PAYLOAD..=MAX_FRAME_PAYLOAD).contains(&payload),
            "payload size {payload} out of range"
        );
        let mut bytes = Vec::with_capacity(FRAME_HEADER + payload);
        if proto == Proto::Frame {
            let len = u32::try_from(payload).expect("payload checked above");
            bytes.extend_from_slice(&len.to_be_bytes());
        }
        let seq_at = bytes.len();
        bytes.extend_from_slice(&0u64.to_le_bytes());
        let mut rng = SplitMix64(conn as u64);
        while bytes.len() < seq_at + payload {
            let word = rng.next().to_le_bytes();
            let take = word.len().min(seq_at + payload - bytes.len());
            bytes.extend_from_slice(&word[..take]);
        }
        Message { bytes, seq_at }
    }

    /// The whole message as sent, header included.
    pub fn bytes(&self) -> &[u8] {
        &self.bytes
    }

    pub fn set_seq(&mut self, seq: u64) {
        self.bytes[self.seq_at..self.seq_at + 8].copy_from_slice(&seq.to_le_bytes());
    }

    /// Appends this message with sequence number `seq` to `out`.
    pub fn append_to(&self, out: &mut Vec<u8>, seq: u64) {
        let at = out.len() + self.seq_at;
        out.extend_from_slice(&self.bytes);
        out[at..at + 8].copy_from_slice(&seq.to_le_bytes());
    }
}

/// Walks length-prefixed frames and returns how many leading bytes of `data` are
/// complete frames, or `Err` with the announced length of a frame too large to accept.
pub fn complete_frames_len(data: &[u8]) -> Result<usize, usize> {
    let mut at = 0;
    while let Some(header) = data.get(at..at + FRAME_HEADER) {
        let len = u32::from_be_bytes(header.try_into().expect("slice of FRAME_HEADER bytes"));
        let len = len as usize;
        if len > MAX_FRAME_PAYLOAD {
            return Err(len);
        }
        if data.len() - at - FRAME_HEADER < len {
            break;
        }
        at += FRAME_HEADER + len;
    }
    Ok(at)
}

/// Vigna's SplitMix64: a few lines, and good enough to make payloads distinct.
struct SplitMix64(u64);

impl SplitMix64 {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
}
