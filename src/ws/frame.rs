//! Frame headers (RFC 6455 §5.2): parsing in place and encoding.

use super::error::WsError;

/// A frame's opcode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum OpCode {
    /// Continues a fragmented message.
    Continuation,
    /// The first frame of a text message.
    Text,
    /// The first frame of a binary message.
    Binary,
    /// Starts the close handshake.
    Close,
    /// Asks for a pong.
    Ping,
    /// Answers a ping (or is a unidirectional heartbeat).
    Pong,
}

impl OpCode {
    /// The opcode for the low four bits of a frame's first byte; `None` for the
    /// reserved values 3–7 and 11–15.
    pub fn from_bits(bits: u8) -> Option<OpCode> {
        Some(match bits {
            0 => OpCode::Continuation,
            1 => OpCode::Text,
            2 => OpCode::Binary,
            8 => OpCode::Close,
            9 => OpCode::Ping,
            10 => OpCode::Pong,
            _ => return None,
        })
    }

    /// The four bits on the wire.
    pub fn bits(self) -> u8 {
        match self {
            OpCode::Continuation => 0,
            OpCode::Text => 1,
            OpCode::Binary => 2,
            OpCode::Close => 8,
            OpCode::Ping => 9,
            OpCode::Pong => 10,
        }
    }

    /// Close, ping and pong: at most 125 bytes of payload, never fragmented.
    pub fn is_control(self) -> bool {
        matches!(self, OpCode::Close | OpCode::Ping | OpCode::Pong)
    }
}

/// The largest payload of a control frame.
pub const MAX_CONTROL_PAYLOAD: usize = 125;

/// The longest frame header: 2 bytes, an 8-byte length and a 4-byte mask.
pub const MAX_HEADER_LEN: usize = 14;

/// A parsed frame header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameHeader {
    /// The final frame of its message.
    pub fin: bool,
    /// RSV1: the message is compressed (permessage-deflate).
    pub rsv1: bool,
    /// The opcode.
    pub opcode: OpCode,
    /// The masking key, present on every frame a client sends.
    pub mask: Option<[u8; 4]>,
    /// The payload's length in bytes.
    pub payload_len: u64,
    /// The header's own length in bytes (2–14).
    pub header_len: usize,
}

impl FrameHeader {
    /// Parses the header at the front of `buf`: `Ok(None)` while it is
    /// incomplete.
    ///
    /// Rejected with [`WsError::Protocol`] (close code 1002): RSV2 or RSV3 set,
    /// a reserved opcode, a fragmented or longer than 125 bytes control frame, a
    /// 64-bit length with its top bit set. RSV1 is returned for the caller to
    /// judge: it is valid only with permessage-deflate on the first frame of a
    /// data message.
    ///
    /// # Examples
    ///
    /// ```
    /// use tether::ws::{FrameHeader, OpCode};
    ///
    /// let h = FrameHeader::parse(&[0x81, 0x05, b'H']).unwrap().unwrap();
    /// assert_eq!((h.fin, h.opcode, h.payload_len, h.header_len), (true, OpCode::Text, 5, 2));
    /// assert!(FrameHeader::parse(&[0x81]).unwrap().is_none());
    /// assert!(FrameHeader::parse(&[0xa1, 0x00]).is_err()); // RSV2
    /// ```
    pub fn parse(buf: &[u8]) -> Result<Option<FrameHeader>, WsError> {
        let [b0, b1, ..] = *buf else {
            return Ok(None);
        };
        if b0 & 0x30 != 0 {
            return Err(WsError::Protocol("reserved bit set"));
        }
        let opcode = OpCode::from_bits(b0 & 0x0f).ok_or(WsError::Protocol("reserved opcode"))?;
        let fin = b0 & 0x80 != 0;
        let masked = b1 & 0x80 != 0;
        let len7 = b1 & 0x7f;
        if opcode.is_control() {
            if !fin {
                return Err(WsError::Protocol("fragmented control frame"));
            }
            if usize::from(len7) > MAX_CONTROL_PAYLOAD {
                return Err(WsError::Protocol("control frame longer than 125 bytes"));
            }
        }
        let ext = match len7 {
            126 => 2,
            127 => 8,
            _ => 0,
        };
        let header_len = 2 + ext + if masked { 4 } else { 0 };
        if buf.len() < header_len {
            return Ok(None);
        }
        let payload_len = match ext {
            2 => u64::from(u16::from_be_bytes([buf[2], buf[3]])),
            8 => {
                let mut n = [0u8; 8];
                n.copy_from_slice(&buf[2..10]);
                let n = u64::from_be_bytes(n);
                if n >> 63 != 0 {
                    return Err(WsError::Protocol("64-bit length with the top bit set"));
                }
                n
            }
            _ => u64::from(len7),
        };
        let mask = masked.then(|| {
            let at = 2 + ext;
            [buf[at], buf[at + 1], buf[at + 2], buf[at + 3]]
        });
        Ok(Some(FrameHeader {
            fin,
            rsv1: b0 & 0x40 != 0,
            opcode,
            mask,
            payload_len,
            header_len,
        }))
    }
}

/// Writes a frame header into `out` and returns its length: the smallest
/// length encoding, the mask key when given.
///
/// # Examples
///
/// ```
/// use tether::ws::{encode_header, OpCode};
///
/// let mut h = [0u8; 14];
/// let n = encode_header(&mut h, true, false, OpCode::Binary, None, 300);
/// assert_eq!(&h[..n], &[0x82, 126, 0x01, 0x2c]);
/// ```
pub fn encode_header(
    out: &mut [u8; MAX_HEADER_LEN],
    fin: bool,
    rsv1: bool,
    opcode: OpCode,
    mask: Option<[u8; 4]>,
    payload_len: u64,
) -> usize {
    out[0] = (u8::from(fin) << 7) | (u8::from(rsv1) << 6) | opcode.bits();
    let mask_bit = if mask.is_some() { 0x80 } else { 0 };
    let mut n = if payload_len < 126 {
        out[1] = mask_bit | payload_len as u8;
        2
    } else if let Ok(len) = u16::try_from(payload_len) {
        out[1] = mask_bit | 126;
        out[2..4].copy_from_slice(&len.to_be_bytes());
        4
    } else {
        out[1] = mask_bit | 127;
        out[2..10].copy_from_slice(&payload_len.to_be_bytes());
        10
    };
    if let Some(key) = mask {
        out[n..n + 4].copy_from_slice(&key);
        n += 4;
    }
    n
}

/// Appends a whole frame (header, then `payload` masked with `mask` if given)
/// to `out`.
pub fn encode_frame(
    out: &mut Vec<u8>,
    fin: bool,
    rsv1: bool,
    opcode: OpCode,
    mask: Option<[u8; 4]>,
    payload: &[u8],
) {
    let mut h = [0u8; MAX_HEADER_LEN];
    let n = encode_header(&mut h, fin, rsv1, opcode, mask, payload.len() as u64);
    out.extend_from_slice(&h[..n]);
    match mask {
        Some(key) => super::mask::mask_into(out, payload, key),
        None => out.extend_from_slice(payload),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn any_opcode() -> impl Strategy<Value = OpCode> {
        prop_oneof![
            Just(OpCode::Continuation),
            Just(OpCode::Text),
            Just(OpCode::Binary),
            Just(OpCode::Close),
            Just(OpCode::Ping),
            Just(OpCode::Pong),
        ]
    }

    #[test]
    fn rejects_reserved_opcodes_and_bits() {
        for op in [3u8, 4, 5, 6, 7, 11, 12, 13, 14, 15] {
            assert!(FrameHeader::parse(&[0x80 | op, 0]).is_err());
        }
        assert!(FrameHeader::parse(&[0x91, 0]).is_err());
        assert!(FrameHeader::parse(&[0xa1, 0]).is_err());
        assert!(FrameHeader::parse(&[0x09, 0]).is_err(), "fragmented ping");
        assert!(
            FrameHeader::parse(&[0x89, 126, 0, 126]).is_err(),
            "long ping"
        );
        let huge = [0x82, 127, 0x80, 0, 0, 0, 0, 0, 0, 0];
        assert!(FrameHeader::parse(&huge).is_err());
    }

    proptest! {
        #[test]
        fn round_trip(fin: bool, rsv1: bool, op in any_opcode(), mask: Option<[u8; 4]>, len in prop_oneof![0u64..200, 60_000u64..70_000, Just(u64::MAX >> 1)]) {
            prop_assume!(!op.is_control() || (fin && len <= 125));
            let mut out = [0u8; MAX_HEADER_LEN];
            let n = encode_header(&mut out, fin, rsv1, op, mask, len);
            for cut in 0..n {
                prop_assert_eq!(FrameHeader::parse(&out[..cut]).unwrap(), None);
            }
            let h = FrameHeader::parse(&out[..n]).unwrap().unwrap();
            prop_assert_eq!(h, FrameHeader { fin, rsv1, opcode: op, mask, payload_len: len, header_len: n });
        }

        #[test]
        fn never_panics(data in proptest::collection::vec(any::<u8>(), 0..20)) {
            let _ = FrameHeader::parse(&data);
        }
    }
}
