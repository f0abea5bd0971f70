//! `echo`: raw bytes the server sends back unchanged, every byte checked.
//!
//! Request `seq` of connection `index` is `size` bytes: `seq` (8 bytes, little
//! endian), `index` (4 bytes, little endian), then bytes from a pseudo-random
//! template shared by the run (shorter requests carry a prefix of the header).
//! A byte echoed on the wrong connection, out of order, dropped, duplicated or
//! flipped does not match. Responses are checked as they arrive, so a large
//! request is never buffered whole.

use super::{ProtoError, Protocol, Responses};
use crate::rng::Rng;

/// Sequence number and connection index.
const HEADER: usize = 12;

/// The echo protocol, optionally with a fixed prefix per message (the frame
/// protocol's length header).
#[derive(Debug, Clone)]
pub struct Echo {
    size: usize,
    prefix: Vec<u8>,
    template: Box<[u8]>,
}

/// Where a connection's responses are: the next one to complete and how much of
/// it has arrived.
#[derive(Debug, Default)]
pub struct EchoConn {
    recv_seq: u64,
    sent_seq: u64,
    offset: usize,
}

impl Echo {
    /// Requests of `size` bytes (at least 1).
    pub fn new(size: usize) -> Echo {
        Echo::with_prefix(size, Vec::new())
    }

    /// Every message starts with `prefix`, which the server echoes too.
    pub fn with_prefix(size: usize, prefix: Vec<u8>) -> Echo {
        let size = size.max(1);
        let mut rng = Rng::new(0x07e7_e4e7);
        let template = (0..size).map(|_| rng.next_u64() as u8).collect();
        Echo {
            size,
            prefix,
            template,
        }
    }

    /// Bytes of one message on the wire, prefix included.
    pub fn message_len(&self) -> usize {
        self.prefix.len() + self.size
    }

    /// The start of message `seq` of connection `index`: prefix and header.
    fn head(&self, index: u32, seq: u64) -> ([u8; 32], usize) {
        let mut head = [0u8; 32];
        let p = self.prefix.len().min(32 - HEADER);
        head[..p].copy_from_slice(&self.prefix[..p]);
        head[p..p + 8].copy_from_slice(&seq.to_le_bytes());
        head[p + 8..p + HEADER].copy_from_slice(&index.to_le_bytes());
        (head, p + HEADER.min(self.size))
    }

    /// Checks `got` against message `seq` from byte `offset` on.
    fn check(&self, index: u32, seq: u64, offset: usize, got: &[u8]) -> Result<(), ProtoError> {
        let (head, head_len) = self.head(index, seq);
        let prefix = self.prefix.len();
        for (i, &b) in got.iter().enumerate() {
            let at = offset + i;
            let want = if at < head_len {
                head[at]
            } else {
                // The template region: compare the rest in one go.
                let rest = &got[i..];
                let want = &self.template[at - prefix..at - prefix + rest.len()];
                if rest == want {
                    return Ok(());
                }
                let j = rest.iter().zip(want).position(|(a, b)| a != b).unwrap_or(0);
                return Err(ProtoError::Mismatch {
                    seq,
                    offset: at + j,
                    got: rest[j],
                    want: want[j],
                });
            };
            if b != want {
                return Err(ProtoError::Mismatch {
                    seq,
                    offset: at,
                    got: b,
                    want,
                });
            }
        }
        Ok(())
    }
}

impl Protocol for Echo {
    type Conn = EchoConn;

    fn request(&self, conn: &mut EchoConn, index: u32, _rng: &mut Rng, out: &mut Vec<u8>) {
        let (head, head_len) = self.head(index, conn.sent_seq);
        conn.sent_seq += 1;
        out.extend_from_slice(&head[..head_len]);
        let body = head_len - self.prefix.len();
        out.extend_from_slice(&self.template[body..self.size]);
    }

    fn responses(
        &self,
        conn: &mut EchoConn,
        index: u32,
        input: &[u8],
        in_flight: u32,
    ) -> Result<Responses, ProtoError> {
        let len = self.message_len();
        let mut r = Responses::default();
        let mut rest = input;
        while !rest.is_empty() {
            if r.completed == in_flight {
                return Err(ProtoError::Unexpected { bytes: rest.len() });
            }
            let take = (len - conn.offset).min(rest.len());
            self.check(index, conn.recv_seq, conn.offset, &rest[..take])?;
            rest = &rest[take..];
            conn.offset += take;
            if conn.offset == len {
                conn.offset = 0;
                conn.recv_seq += 1;
                r.completed += 1;
            }
        }
        r.consumed = input.len();
        Ok(r)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wire(p: &Echo, index: u32, n: usize) -> Vec<u8> {
        let mut c = EchoConn::default();
        let mut out = Vec::new();
        for _ in 0..n {
            p.request(&mut c, index, &mut Rng::new(1), &mut out);
        }
        out
    }

    #[test]
    fn echoed_bytes_complete_requests_in_any_split() {
        for size in [1, 5, 12, 13, 64, 300] {
            let p = Echo::new(size);
            let bytes = wire(&p, 3, 4);
            assert_eq!(bytes.len(), 4 * size);
            for cut in [1, 7, size, bytes.len()] {
                let mut c = EchoConn::default();
                let mut done = 0;
                for chunk in bytes.chunks(cut) {
                    let r = p.responses(&mut c, 3, chunk, 4 - done).unwrap();
                    assert_eq!(r.consumed, chunk.len());
                    done += r.completed;
                }
                assert_eq!(done, 4);
            }
        }
    }

    #[test]
    fn every_flipped_byte_is_found() {
        let p = Echo::with_prefix(40, vec![0, 0, 0, 40]);
        let bytes = wire(&p, 9, 2);
        for at in 0..bytes.len() {
            let mut bad = bytes.clone();
            bad[at] ^= 0x20;
            let mut c = EchoConn::default();
            let err = p.responses(&mut c, 9, &bad, 2).unwrap_err();
            assert!(
                matches!(err, ProtoError::Mismatch { offset, .. } if offset == at % 44),
                "{at}: {err}"
            );
        }
    }

    #[test]
    fn wrong_connection_and_extra_bytes_are_errors() {
        let p = Echo::new(16);
        let bytes = wire(&p, 1, 1);
        assert!(p.responses(&mut EchoConn::default(), 2, &bytes, 1).is_err());
        let mut two = bytes.clone();
        two.push(0);
        assert_eq!(
            p.responses(&mut EchoConn::default(), 1, &two, 1),
            Err(ProtoError::Unexpected { bytes: 1 })
        );
    }
}
