//! `ws`: WebSocket echo. Each connection's first request is the upgrade
//! handshake alone, its response the `101` (run it with
//! [`Shape::handshake`](crate::Shape::handshake) so that nothing else is sent
//! before that answer, as RFC 6455 requires); then it sends masked messages that
//! alternate text (even sequence numbers) and binary (odd); the server
//! echoes each as one unmasked message of the same type, and every byte of
//! it is checked.
//!
//! Message `seq` of connection `index` is `size` bytes of printable ASCII
//! (so that it is valid text): `seq` as 16 hex digits, `index` as 8, then
//! bytes of a template shared by the run.

use tether::ws::{FrameHeader, MAX_HEADER_LEN, OpCode, accept_key, apply_mask, encode_header};

use super::{ProtoError, Protocol, Responses};
use crate::rng::Rng;

/// The key every connection sends (the accept it expects follows from it).
const KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";

/// Sequence and index in hex.
const HEADER: usize = 24;

/// WebSocket echo of `size`-byte messages.
#[derive(Debug, Clone)]
pub struct Ws {
    size: usize,
    template: Box<[u8]>,
    handshake: Vec<u8>,
    accept: [u8; 28],
}

/// One connection: handshake progress and the next sequence numbers.
#[derive(Debug, Default)]
pub struct WsConn {
    sent_handshake: bool,
    upgraded: bool,
    sent_seq: u64,
    recv_seq: u64,
}

impl Ws {
    /// Messages of `size` bytes (at least 1) to `path` at `host`.
    pub fn new(host: &str, path: &str, size: usize) -> Ws {
        let size = size.max(1);
        let mut rng = Rng::new(0x5753_7e57);
        let template = (0..size).map(|_| b'A' + (rng.below(26) as u8)).collect();
        let handshake = format!(
            "GET {path} HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: {KEY}\r\nSec-WebSocket-Version: 13\r\n\r\n"
        )
        .into_bytes();
        Ws {
            size,
            template,
            handshake,
            accept: accept_key(KEY.as_bytes()),
        }
    }

    /// The payload of message `seq` of connection `index`, written into `out`.
    fn payload(&self, index: u32, seq: u64, out: &mut [u8]) {
        let mut head = [0u8; HEADER];
        hex(&mut head[..16], seq);
        hex(&mut head[16..], u64::from(index));
        let n = HEADER.min(self.size);
        out[..n].copy_from_slice(&head[..n]);
        out[n..].copy_from_slice(&self.template[n..self.size]);
    }

    fn opcode(seq: u64) -> OpCode {
        if seq % 2 == 0 {
            OpCode::Text
        } else {
            OpCode::Binary
        }
    }
}

fn hex(out: &mut [u8], mut v: u64) {
    for b in out.iter_mut().rev() {
        *b = b"0123456789abcdef"[(v & 15) as usize];
        v >>= 4;
    }
}

impl Protocol for Ws {
    type Conn = WsConn;

    fn request(&self, conn: &mut WsConn, index: u32, rng: &mut Rng, out: &mut Vec<u8>) {
        if !conn.sent_handshake {
            // The upgrade request goes alone: a client may send frames only
            // once the 101 is in (RFC 6455 §4.1).
            conn.sent_handshake = true;
            out.extend_from_slice(&self.handshake);
            return;
        }
        let seq = conn.sent_seq;
        conn.sent_seq += 1;
        let key = (rng.next_u64() as u32).to_ne_bytes();
        let mut header = [0u8; MAX_HEADER_LEN];
        let n = encode_header(
            &mut header,
            true,
            false,
            Ws::opcode(seq),
            Some(key),
            self.size as u64,
        );
        out.extend_from_slice(&header[..n]);
        let start = out.len();
        out.resize(start + self.size, 0);
        self.payload(index, seq, &mut out[start..]);
        apply_mask(&mut out[start..], key, 0);
    }

    fn responses(
        &self,
        conn: &mut WsConn,
        index: u32,
        input: &[u8],
        in_flight: u32,
    ) -> Result<Responses, ProtoError> {
        let mut r = Responses::default();
        if !conn.upgraded {
            let Some(end) = input.windows(4).position(|w| w == b"\r\n\r\n") else {
                if input.len() > 8192 {
                    return Err(ProtoError::Malformed("handshake answer too long".into()));
                }
                return Ok(r);
            };
            let head = &input[..end + 4];
            let accepted = head.starts_with(b"HTTP/1.1 101")
                && head.windows(self.accept.len()).any(|w| w == self.accept);
            if !accepted {
                return Err(ProtoError::Malformed(format!(
                    "not a websocket upgrade: {:?}",
                    String::from_utf8_lossy(&head[..head.len().min(80)])
                )));
            }
            conn.upgraded = true;
            r.consumed = end + 4;
            r.completed = 1;
        }
        let mut expected = [0u8; 4096];
        while r.completed < in_flight {
            let rest = &input[r.consumed..];
            let h = match FrameHeader::parse(rest) {
                Ok(Some(h)) => h,
                Ok(None) => break,
                Err(e) => return Err(ProtoError::Malformed(e.to_string())),
            };
            let total = h.header_len as u64 + h.payload_len;
            if (rest.len() as u64) < total {
                break;
            }
            let seq = conn.recv_seq;
            if h.opcode != Ws::opcode(seq)
                || !h.fin
                || h.mask.is_some()
                || h.payload_len != self.size as u64
            {
                return Err(ProtoError::Malformed(format!(
                    "message {seq}: {:?} fin {} masked {} of {} bytes, expected {:?} of {}",
                    h.opcode,
                    h.fin,
                    h.mask.is_some(),
                    h.payload_len,
                    Ws::opcode(seq),
                    self.size
                )));
            }
            let got = &rest[h.header_len..total as usize];
            // Compare in pieces against the regenerated payload.
            let mut at = 0;
            let mut want_full = Vec::new();
            let want: &[u8] = if self.size <= expected.len() {
                self.payload(index, seq, &mut expected[..self.size]);
                &expected[..self.size]
            } else {
                want_full.resize(self.size, 0);
                self.payload(index, seq, &mut want_full);
                &want_full
            };
            if got != want {
                while got[at] == want[at] {
                    at += 1;
                }
                return Err(ProtoError::Mismatch {
                    seq,
                    offset: at,
                    got: got[at],
                    want: want[at],
                });
            }
            conn.recv_seq += 1;
            r.consumed += total as usize;
            r.completed += 1;
        }
        if r.completed == in_flight && r.consumed < input.len() && conn.upgraded {
            return Err(ProtoError::Unexpected {
                bytes: input.len() - r.consumed,
            });
        }
        Ok(r)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What an echo server sends back for `requests` (after its 101).
    fn echo_of(ws: &Ws, requests: &[u8]) -> Vec<u8> {
        let end = requests.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
        let mut out = format!(
            "HTTP/1.1 101 Switching Protocols\r\nSec-WebSocket-Accept: {}\r\n\r\n",
            std::str::from_utf8(&ws.accept).unwrap()
        )
        .into_bytes();
        let mut rest = &requests[end..];
        while let Some(h) = FrameHeader::parse(rest).unwrap() {
            let mut payload = rest[h.header_len..h.header_len + h.payload_len as usize].to_vec();
            apply_mask(&mut payload, h.mask.unwrap(), 0);
            tether::ws::encode_frame(&mut out, true, false, h.opcode, None, &payload);
            rest = &rest[h.header_len + payload.len()..];
        }
        out
    }

    #[test]
    fn handshake_then_verified_echoes_in_any_split() {
        for size in [1, 24, 64, 5000] {
            let ws = Ws::new("h", "/", size);
            let mut conn = WsConn::default();
            let mut rng = Rng::new(3);
            let mut out = Vec::new();
            for _ in 0..4 {
                ws.request(&mut conn, 7, &mut rng, &mut out);
            }
            let echo = echo_of(&ws, &out);
            for cut in [0, 10, echo.len() / 2, echo.len()] {
                let mut c = WsConn {
                    sent_handshake: true,
                    sent_seq: 3,
                    ..WsConn::default()
                };
                let a = ws.responses(&mut c, 7, &echo[..cut], 4).unwrap();
                let b = ws
                    .responses(&mut c, 7, &echo[a.consumed..], 4 - a.completed)
                    .unwrap();
                assert_eq!(a.completed + b.completed, 4, "size {size} cut {cut}");
            }
            let mut bad = echo.clone();
            let last = bad.len() - 1;
            bad[last] ^= 1;
            let mut c = WsConn {
                sent_handshake: true,
                sent_seq: 3,
                ..WsConn::default()
            };
            assert!(ws.responses(&mut c, 7, &bad, 4).is_err());
        }
    }
}
