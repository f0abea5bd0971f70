//! permessage-deflate (RFC 7692): negotiation and the per-connection
//! compressor and decompressor.
//!
//! The compressor (miniz_oxide through flate2) always uses a 32 KiB window, so
//! where the peer limits our window below 15 bits we send uncompressed
//! messages, which the extension allows; inflating accepts every window size.

use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress, Status};

use super::error::WsError;
use super::handshake::trim;

/// The agreed parameters of permessage-deflate, as seen by one side.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeflateParams {
    /// The server resets its compressor after every message.
    pub server_no_context_takeover: bool,
    /// The client resets its compressor after every message.
    pub client_no_context_takeover: bool,
    /// The server's LZ77 window, 8–15 bits.
    pub server_max_window_bits: u8,
    /// The client's LZ77 window, 8–15 bits.
    pub client_max_window_bits: u8,
    /// `client_max_window_bits` was in the offer or answer.
    client_bits_named: bool,
    /// `server_max_window_bits` was in the offer or answer.
    server_bits_named: bool,
}

impl Default for DeflateParams {
    fn default() -> Self {
        DeflateParams {
            server_no_context_takeover: false,
            client_no_context_takeover: false,
            server_max_window_bits: 15,
            client_max_window_bits: 15,
            client_bits_named: false,
            server_bits_named: false,
        }
    }
}

impl DeflateParams {
    /// Parses one extension's parameters (`; name[=value]`…); `None` for a
    /// parameter that is unknown, repeated or out of range. `client_max_window_bits`
    /// may come without a value only in an offer.
    fn parse<'a>(params: impl Iterator<Item = &'a [u8]>, offer: bool) -> Option<DeflateParams> {
        let mut p = DeflateParams::default();
        let mut seen = [false; 4];
        for param in params {
            let (name, value) = match param.iter().position(|&b| b == b'=') {
                Some(eq) => (trim(&param[..eq]), Some(unquote(trim(&param[eq + 1..])))),
                None => (trim(param), None),
            };
            let bits = |v: Option<&[u8]>| -> Option<u8> {
                let v = std::str::from_utf8(v?).ok()?;
                if v.is_empty() || v.len() > 2 || !v.bytes().all(|b| b.is_ascii_digit()) {
                    return None;
                }
                let n: u8 = v.parse().ok()?;
                (8..=15).contains(&n).then_some(n)
            };
            let which = match name {
                b"server_no_context_takeover" if value.is_none() => {
                    p.server_no_context_takeover = true;
                    0
                }
                b"client_no_context_takeover" if value.is_none() => {
                    p.client_no_context_takeover = true;
                    1
                }
                b"server_max_window_bits" => {
                    p.server_max_window_bits = bits(value)?;
                    p.server_bits_named = true;
                    2
                }
                b"client_max_window_bits" => {
                    p.client_max_window_bits = match value {
                        None if offer => 15,
                        v => bits(v)?,
                    };
                    p.client_bits_named = true;
                    3
                }
                _ => return None,
            };
            if std::mem::replace(&mut seen[which], true) {
                return None;
            }
        }
        Some(p)
    }

    /// Appends the server's answer for these parameters.
    pub(crate) fn write_answer(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(b"permessage-deflate");
        if self.server_no_context_takeover {
            out.extend_from_slice(b"; server_no_context_takeover");
        }
        if self.client_no_context_takeover {
            out.extend_from_slice(b"; client_no_context_takeover");
        }
        if self.server_bits_named {
            out.extend_from_slice(b"; server_max_window_bits=");
            out.extend_from_slice(self.server_max_window_bits.to_string().as_bytes());
        }
    }

    /// Whether this side may compress (our window may be 15 bits), and whether
    /// it resets its compressor after each message.
    pub(crate) fn sending(&self, server: bool) -> (bool, bool) {
        if server {
            (
                self.server_max_window_bits == 15,
                self.server_no_context_takeover,
            )
        } else {
            (
                self.client_max_window_bits == 15,
                self.client_no_context_takeover,
            )
        }
    }
}

fn unquote(v: &[u8]) -> &[u8] {
    match v {
        [b'"', inner @ .., b'"'] => inner,
        v => v,
    }
}

/// One extension's `;`-separated parameters.
type Params<'a> = std::slice::Split<'a, u8, fn(&u8) -> bool>;

/// Splits extension header values into (name, parameters) per extension.
fn extensions<'a>(
    values: impl Iterator<Item = &'a [u8]>,
) -> impl Iterator<Item = (&'a [u8], Params<'a>)> {
    values.flat_map(|v| v.split(|&b| b == b',')).map(|ext| {
        let semi: fn(&u8) -> bool = |&b| b == b';';
        let mut parts = ext.split(semi);
        let name = trim(parts.next().unwrap_or(&[]));
        (name, parts)
    })
}

/// The server's choice among a client's `Sec-WebSocket-Extensions` offers:
/// the first valid permessage-deflate offer.
pub(crate) fn negotiate_server<'a>(
    values: impl Iterator<Item = &'a [u8]>,
) -> Option<DeflateParams> {
    extensions(values)
        .filter(|(name, _)| name.eq_ignore_ascii_case(b"permessage-deflate"))
        .find_map(|(_, params)| {
            let mut p = DeflateParams::parse(params, true)?;
            // The client limits its own window; inflating takes any size, so
            // the answer does not name it.
            p.client_bits_named = false;
            p.client_max_window_bits = 15;
            Some(p)
        })
}

/// The client's reading of the server's answer; `None` if it is not one
/// acceptable permessage-deflate answer.
pub(crate) fn parse_client_answer<'a>(
    values: impl Iterator<Item = &'a [u8]>,
) -> Option<DeflateParams> {
    let mut exts = extensions(values);
    let (name, params) = exts.next()?;
    if !name.eq_ignore_ascii_case(b"permessage-deflate") || exts.next().is_some() {
        return None;
    }
    DeflateParams::parse(params, false)
}

/// The four bytes a sync flush ends with, removed from each compressed message.
const TAIL: [u8; 4] = [0, 0, 0xff, 0xff];

/// A connection's compressor, built on the first compressed message it sends.
#[derive(Debug)]
pub(crate) struct Deflater {
    compress: Compress,
    reset: bool,
}

impl Deflater {
    pub(crate) fn new(reset_each_message: bool) -> Deflater {
        Deflater {
            compress: Compress::new(Compression::fast(), false),
            reset: reset_each_message,
        }
    }

    /// Compresses one whole message into `out` (cleared first).
    pub(crate) fn compress(&mut self, data: &[u8], out: &mut Vec<u8>) {
        out.clear();
        out.reserve(data.len() / 2 + 64);
        let mut input = data;
        loop {
            let before = self.compress.total_in();
            let r = self.compress.compress_vec(input, out, FlushCompress::Sync);
            let used = (self.compress.total_in() - before) as usize;
            input = &input[used..];
            // Done once all input is in and the flush fit with room to spare.
            if r.is_err() || (input.is_empty() && out.len() < out.capacity()) {
                break;
            }
            out.reserve(out.capacity().max(64));
        }
        if out.ends_with(&TAIL) {
            out.truncate(out.len() - 4);
        }
        if self.reset {
            self.compress.reset();
        }
    }
}

/// A connection's decompressor, built on the first compressed message it
/// receives.
#[derive(Debug)]
pub(crate) struct Inflater {
    decompress: Decompress,
}

impl Default for Inflater {
    fn default() -> Self {
        Inflater {
            decompress: Decompress::new(false),
        }
    }
}

impl Inflater {
    /// Inflates a piece of a compressed message, appending to `out`, which may
    /// not grow beyond `max` bytes.
    pub(crate) fn feed(
        &mut self,
        mut input: &[u8],
        out: &mut Vec<u8>,
        max: usize,
    ) -> Result<(), WsError> {
        loop {
            if out.len() > max {
                return Err(WsError::MessageTooBig { max });
            }
            if out.capacity() - out.len() < 1024 {
                let room = max.saturating_add(1) - out.len();
                out.reserve(out.len().clamp(4096, 1 << 20).min(room).max(1));
            }
            let (in0, out0) = (self.decompress.total_in(), self.decompress.total_out());
            let status = self
                .decompress
                .decompress_vec(input, out, FlushDecompress::Sync)
                .map_err(|_| WsError::BadCompression)?;
            let used = (self.decompress.total_in() - in0) as usize;
            let made = self.decompress.total_out() - out0;
            input = &input[used..];
            if status == Status::StreamEnd {
                // A final block: the next message starts a fresh stream.
                self.decompress.reset(false);
                return if out.len() > max {
                    Err(WsError::MessageTooBig { max })
                } else {
                    Ok(())
                };
            }
            let full = out.len() == out.capacity();
            if input.is_empty() && !full {
                return if out.len() > max {
                    Err(WsError::MessageTooBig { max })
                } else {
                    Ok(())
                };
            }
            if used == 0 && made == 0 && !full {
                return Err(WsError::BadCompression);
            }
        }
    }

    /// Ends a message: inflates the removed sync-flush tail.
    pub(crate) fn finish(
        &mut self,
        out: &mut Vec<u8>,
        max: usize,
        reset: bool,
    ) -> Result<(), WsError> {
        let r = self.feed(&TAIL, out, max);
        if reset {
            self.decompress.reset(false);
        }
        r
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn server(offer: &str) -> Option<DeflateParams> {
        negotiate_server(std::iter::once(offer.as_bytes()))
    }

    #[test]
    fn negotiation() {
        let p = server("permessage-deflate; client_max_window_bits").unwrap();
        assert_eq!(p, DeflateParams::default());
        let p =
            server("permessage-deflate; server_no_context_takeover; client_no_context_takeover")
                .unwrap();
        assert!(p.server_no_context_takeover && p.client_no_context_takeover);
        let p = server("permessage-deflate; server_max_window_bits=10").unwrap();
        assert_eq!(p.sending(true), (false, false));
        let mut out = Vec::new();
        p.write_answer(&mut out);
        assert_eq!(out, b"permessage-deflate; server_max_window_bits=10");
        assert_eq!(
            server("permessage-deflate; server_max_window_bits=16"),
            None
        );
        assert_eq!(server("permessage-deflate; server_max_window_bits"), None);
        assert_eq!(server("permessage-deflate; bogus"), None);
        assert_eq!(
            server("permessage-deflate; server_no_context_takeover; server_no_context_takeover"),
            None
        );
        // A bad first offer falls back to the next.
        let p = server("permessage-deflate; bogus, permessage-deflate; client_no_context_takeover")
            .unwrap();
        assert!(p.client_no_context_takeover);
        assert_eq!(server("x-webkit-deflate-frame"), None);
        assert!(server("permessage-deflate; server_max_window_bits=\"12\"").is_some());
    }

    #[test]
    fn round_trip_with_and_without_context() {
        for reset in [false, true] {
            let mut d = Deflater::new(reset);
            let mut i = Inflater::default();
            let mut wire = Vec::new();
            for msg in [
                &b"hello hello hello"[..],
                b"",
                b"hello again",
                &[7u8; 100_000],
            ] {
                d.compress(msg, &mut wire);
                let mut out = Vec::new();
                i.feed(&wire, &mut out, 1 << 20).unwrap();
                i.finish(&mut out, 1 << 20, false).unwrap();
                assert_eq!(out, msg);
            }
        }
    }

    #[test]
    fn bombs_stop_at_the_limit() {
        let mut d = Deflater::new(false);
        let mut wire = Vec::new();
        d.compress(&vec![0u8; 10 << 20], &mut wire);
        assert!(wire.len() < 64 * 1024);
        let mut out = Vec::new();
        let mut i = Inflater::default();
        assert_eq!(
            i.feed(&wire, &mut out, 1 << 20),
            Err(WsError::MessageTooBig { max: 1 << 20 })
        );
        assert!(out.capacity() <= (2 << 20) + 8192);
        let mut i = Inflater::default();
        assert_eq!(
            i.feed(&[0xff; 10], &mut Vec::new(), 100),
            Err(WsError::BadCompression)
        );
    }
}
