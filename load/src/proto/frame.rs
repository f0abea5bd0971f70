//! `frame`: messages with a 4-byte big-endian length prefix, echoed whole by the
//! server (tether's `frame_echo`, tokio-util's `LengthDelimitedCodec`). The
//! payload is an [`echo`](super::echo) message; header and payload are checked
//! byte for byte.

use super::echo::{Echo, EchoConn};
use super::{ProtoError, Protocol, Responses};
use crate::rng::Rng;

/// Length-prefixed frames of `size` payload bytes.
#[derive(Debug, Clone)]
pub struct Frame {
    echo: Echo,
}

impl Frame {
    /// Frames carrying `size` payload bytes (at least 1; at most `u32::MAX`).
    pub fn new(size: usize) -> Frame {
        let size = size.clamp(1, u32::MAX as usize);
        Frame {
            echo: Echo::with_prefix(size, (size as u32).to_be_bytes().to_vec()),
        }
    }
}

impl Protocol for Frame {
    type Conn = EchoConn;

    fn request(&self, conn: &mut EchoConn, index: u32, rng: &mut Rng, out: &mut Vec<u8>) {
        self.echo.request(conn, index, rng, out);
    }

    fn responses(
        &self,
        conn: &mut EchoConn,
        index: u32,
        input: &[u8],
        in_flight: u32,
    ) -> Result<Responses, ProtoError> {
        self.echo.responses(conn, index, input, in_flight)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frame_is_header_then_payload() {
        let f = Frame::new(20);
        let mut out = Vec::new();
        f.request(&mut EchoConn::default(), 0, &mut Rng::new(1), &mut out);
        assert_eq!(out.len(), 24);
        assert_eq!(&out[..4], &[0, 0, 0, 20]);
        let r = f.responses(&mut EchoConn::default(), 0, &out, 1).unwrap();
        assert_eq!(r.completed, 1);
    }
}
