//! The opening handshake (RFC 6455 §4): the accept key, checking a client's
//! request and a server's answer, and negotiating a subprotocol.

use std::fmt;

use base64::Engine as _;
use sha1::{Digest, Sha1};

use super::deflate::{DeflateParams, negotiate_server, parse_client_answer};

const GUID: &[u8] = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

/// Most headers read from a handshake.
const MAX_HEADERS: usize = 32;

/// Why a handshake was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum HandshakeError {
    /// The head is not HTTP/1.1 (or is malformed).
    Malformed,
    /// The head is longer than the limit.
    TooLarge,
    /// A request that is not `GET`.
    Method,
    /// `Upgrade: websocket` or `Connection: upgrade` is missing.
    NotUpgrade,
    /// `Sec-WebSocket-Version` is not 13 (the server answers 426 with the
    /// version it speaks).
    Version,
    /// `Sec-WebSocket-Key` is missing or not 16 bytes in base64.
    Key,
    /// The server did not answer `101`.
    Status(u16),
    /// `Sec-WebSocket-Accept` does not match the key sent.
    Accept,
    /// The server chose a subprotocol or extension that was not offered.
    Negotiation,
}

impl fmt::Display for HandshakeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HandshakeError::Malformed => f.write_str("malformed handshake"),
            HandshakeError::TooLarge => f.write_str("handshake head too large"),
            HandshakeError::Method => f.write_str("handshake method is not GET"),
            HandshakeError::NotUpgrade => f.write_str("not a websocket upgrade"),
            HandshakeError::Version => f.write_str("unsupported Sec-WebSocket-Version"),
            HandshakeError::Key => f.write_str("missing or invalid Sec-WebSocket-Key"),
            HandshakeError::Status(s) => write!(f, "server answered {s}, not 101"),
            HandshakeError::Accept => f.write_str("Sec-WebSocket-Accept does not match"),
            HandshakeError::Negotiation => {
                f.write_str("server chose a subprotocol or extension that was not offered")
            }
        }
    }
}

impl std::error::Error for HandshakeError {}

/// `Sec-WebSocket-Accept` for a `Sec-WebSocket-Key`.
///
/// # Examples
///
/// ```
/// // RFC 6455 §1.3.
/// let accept = tether::ws::accept_key(b"dGhlIHNhbXBsZSBub25jZQ==");
/// assert_eq!(&accept, b"s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
/// ```
pub fn accept_key(key: &[u8]) -> [u8; 28] {
    let mut sha = Sha1::new();
    sha.update(key);
    sha.update(GUID);
    let digest = sha.finalize();
    let mut out = [0u8; 28];
    let n = base64::engine::general_purpose::STANDARD
        .encode_slice(digest, &mut out)
        .unwrap_or(0);
    debug_assert_eq!(n, 28);
    out
}

/// A new random `Sec-WebSocket-Key` from 16 bytes.
pub(crate) fn client_key(random: [u8; 16]) -> [u8; 24] {
    let mut out = [0u8; 24];
    let _ = base64::engine::general_purpose::STANDARD.encode_slice(random, &mut out);
    out
}

/// What the server agreed to in an accepted handshake.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Agreed {
    /// Index of the chosen subprotocol in the server's list.
    pub protocol: Option<usize>,
    /// permessage-deflate, when both sides agreed to it.
    pub deflate: Option<DeflateParams>,
}

/// A client's upgrade request, checked.
#[derive(Debug, Clone, Copy)]
pub struct Offer {
    accept: [u8; 28],
    /// The server's answer to the offer.
    pub agreed: Agreed,
}

impl Offer {
    /// Checks an upgrade request given as its method and headers, and
    /// negotiates against the server's `protocols` (in order of preference)
    /// and deflate willingness.
    ///
    /// # Errors
    ///
    /// A [`HandshakeError`] naming the first thing wrong.
    pub fn check<'h>(
        method: &str,
        headers: impl Iterator<Item = (&'h str, &'h [u8])> + Clone,
        protocols: &[impl AsRef<str>],
        deflate: bool,
    ) -> Result<Offer, HandshakeError> {
        if method != "GET" {
            return Err(HandshakeError::Method);
        }
        let values = |name: &'static str| {
            headers
                .clone()
                .filter(move |(n, _)| n.eq_ignore_ascii_case(name))
                .flat_map(|(_, v)| v.split(|&b| b == b','))
                .map(trim)
        };
        if !values("upgrade").any(|v| v.eq_ignore_ascii_case(b"websocket"))
            || !values("connection").any(|v| v.eq_ignore_ascii_case(b"upgrade"))
        {
            return Err(HandshakeError::NotUpgrade);
        }
        if !values("sec-websocket-version").any(|v| v == b"13") {
            return Err(HandshakeError::Version);
        }
        let mut keys = values("sec-websocket-key");
        let key = keys.next().ok_or(HandshakeError::Key)?;
        let mut raw = [0u8; 18];
        let decoded = base64::engine::general_purpose::STANDARD
            .decode_slice(key, &mut raw)
            .map_err(|_| HandshakeError::Key)?;
        if decoded != 16 || keys.next().is_some() {
            return Err(HandshakeError::Key);
        }
        let protocol = protocols
            .iter()
            .position(|p| values("sec-websocket-protocol").any(|v| v == p.as_ref().as_bytes()));
        let deflate = if deflate {
            let offers = headers
                .clone()
                .filter(|(n, _)| n.eq_ignore_ascii_case("sec-websocket-extensions"))
                .map(|(_, v)| v);
            negotiate_server(offers)
        } else {
            None
        };
        Ok(Offer {
            accept: accept_key(key),
            agreed: Agreed { protocol, deflate },
        })
    }

    /// The `Sec-WebSocket-Accept` value.
    pub fn accept(&self) -> &[u8] {
        &self.accept
    }

    /// Appends the `101 Switching Protocols` response for a standalone server.
    pub fn write_response(&self, out: &mut Vec<u8>, protocols: &[impl AsRef<str>]) {
        out.extend_from_slice(
            b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n",
        );
        self.for_each_header(protocols, |name, value| {
            out.extend_from_slice(name.as_bytes());
            out.extend_from_slice(b": ");
            out.extend_from_slice(value);
            out.extend_from_slice(b"\r\n");
        });
        out.extend_from_slice(b"\r\n");
    }

    /// Calls `f` with each `Sec-WebSocket-*` header of the answer (accept,
    /// protocol, extensions), for writing through another HTTP layer.
    pub fn for_each_header(
        &self,
        protocols: &[impl AsRef<str>],
        mut f: impl FnMut(&'static str, &[u8]),
    ) {
        f("Sec-WebSocket-Accept", &self.accept);
        if let Some(p) = self.agreed.protocol.and_then(|i| protocols.get(i)) {
            f("Sec-WebSocket-Protocol", p.as_ref().as_bytes());
        }
        if let Some(d) = self.agreed.deflate {
            let mut ext = Vec::with_capacity(96);
            d.write_answer(&mut ext);
            f("Sec-WebSocket-Extensions", &ext);
        }
    }
}

/// A standalone server's reading of a handshake request at the front of
/// `buf`: `Ok(None)` while incomplete, else the offer and the head's length.
///
/// # Errors
///
/// [`HandshakeError::TooLarge`] past `max_head` bytes without a complete head;
/// otherwise as [`Offer::check`].
pub fn read_request(
    buf: &[u8],
    max_head: usize,
    protocols: &[impl AsRef<str>],
    deflate: bool,
) -> Result<Option<(Offer, usize)>, HandshakeError> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut headers);
    match req.parse(buf) {
        Ok(httparse::Status::Complete(len)) => {
            if req.version != Some(1) {
                return Err(HandshakeError::Malformed);
            }
            let method = req.method.unwrap_or("");
            let list = req.headers.iter().map(|h| (h.name, h.value));
            Offer::check(method, list, protocols, deflate).map(|o| Some((o, len)))
        }
        Ok(httparse::Status::Partial) if buf.len() > max_head => Err(HandshakeError::TooLarge),
        Ok(httparse::Status::Partial) => Ok(None),
        Err(_) => Err(HandshakeError::Malformed),
    }
}

/// Appends a client's upgrade request.
pub(crate) fn write_request(
    out: &mut Vec<u8>,
    host: &str,
    path: &str,
    key: &[u8; 24],
    protocols: &[impl AsRef<str>],
    deflate: bool,
) {
    let clean = |s: &str| s.bytes().all(|b| b != b'\r' && b != b'\n');
    let path = if clean(path) && path.starts_with('/') {
        path
    } else {
        "/"
    };
    out.extend_from_slice(b"GET ");
    out.extend_from_slice(path.as_bytes());
    out.extend_from_slice(b" HTTP/1.1\r\nHost: ");
    if clean(host) {
        out.extend_from_slice(host.as_bytes());
    }
    out.extend_from_slice(b"\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: ");
    out.extend_from_slice(key);
    out.extend_from_slice(b"\r\n");
    let protocols: Vec<&str> = protocols
        .iter()
        .map(|p| p.as_ref())
        .filter(|p| clean(p))
        .collect();
    if !protocols.is_empty() {
        out.extend_from_slice(b"Sec-WebSocket-Protocol: ");
        out.extend_from_slice(protocols.join(", ").as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    if deflate {
        out.extend_from_slice(
            b"Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n",
        );
    }
    out.extend_from_slice(b"\r\n");
}

/// A client's reading of the server's answer at the front of `buf`:
/// `Ok(None)` while incomplete, else what was agreed and the head's length.
pub(crate) fn read_response(
    buf: &[u8],
    max_head: usize,
    key: &[u8; 24],
    protocols: &[impl AsRef<str>],
    deflate: bool,
) -> Result<Option<(Agreed, usize)>, HandshakeError> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut res = httparse::Response::new(&mut headers);
    let len = match res.parse(buf) {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) if buf.len() > max_head => {
            return Err(HandshakeError::TooLarge);
        }
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(_) => return Err(HandshakeError::Malformed),
    };
    let code = res.code.unwrap_or(0);
    if code != 101 {
        return Err(HandshakeError::Status(code));
    }
    let header = |name: &'static str| {
        res.headers
            .iter()
            .filter(move |h| h.name.eq_ignore_ascii_case(name))
            .map(|h| trim(h.value))
    };
    if !header("upgrade").any(|v| v.eq_ignore_ascii_case(b"websocket")) {
        return Err(HandshakeError::NotUpgrade);
    }
    if header("sec-websocket-accept").next() != Some(&accept_key(key)[..]) {
        return Err(HandshakeError::Accept);
    }
    let protocol = match header("sec-websocket-protocol").next() {
        None => None,
        Some(p) => Some(
            protocols
                .iter()
                .position(|o| o.as_ref().as_bytes() == p)
                .ok_or(HandshakeError::Negotiation)?,
        ),
    };
    let mut extensions = header("sec-websocket-extensions").peekable();
    let deflate = match extensions.peek() {
        None => None,
        Some(_) if !deflate => return Err(HandshakeError::Negotiation),
        Some(_) => Some(parse_client_answer(extensions).ok_or(HandshakeError::Negotiation)?),
    };
    Ok(Some((Agreed { protocol, deflate }, len)))
}

/// `value` without surrounding spaces and tabs.
pub(crate) fn trim(value: &[u8]) -> &[u8] {
    let start = value
        .iter()
        .position(|b| !b.is_ascii_whitespace())
        .unwrap_or(value.len());
    let end = value
        .iter()
        .rposition(|b| !b.is_ascii_whitespace())
        .map_or(start, |e| e + 1);
    &value[start..end]
}

#[cfg(test)]
mod tests {
    use super::*;

    const REQ: &[u8] = b"GET /chat HTTP/1.1\r\nHost: server.example.com\r\nUpgrade: websocket\r\nConnection: keep-alive, Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Protocol: chat, superchat\r\nSec-WebSocket-Version: 13\r\n\r\nxx";

    #[test]
    fn rfc_example() {
        let (offer, len) = read_request(REQ, 8192, &["superchat", "chat"], false)
            .unwrap()
            .unwrap();
        assert_eq!(len, REQ.len() - 2);
        assert_eq!(offer.accept(), b"s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
        assert_eq!(offer.agreed.protocol, Some(0));
        let mut out = Vec::new();
        offer.write_response(&mut out, &["superchat", "chat"]);
        let text = String::from_utf8(out).unwrap();
        assert!(
            text.contains("Sec-WebSocket-Protocol: superchat\r\n"),
            "{text}"
        );
        for cut in 0..len {
            assert!(
                read_request(&REQ[..cut], 8192, &[] as &[&str], false)
                    .unwrap()
                    .is_none()
            );
        }
    }

    #[test]
    fn refusals() {
        let swap =
            |from: &str, to: &str| String::from_utf8_lossy(REQ).replace(from, to).into_bytes();
        let check = |req: Vec<u8>| read_request(&req, 8192, &[] as &[&str], false).map(|_| ());
        assert_eq!(check(swap("GET", "POST")), Err(HandshakeError::Method));
        assert_eq!(
            check(swap("Version: 13", "Version: 8")),
            Err(HandshakeError::Version)
        );
        assert_eq!(
            check(swap("Upgrade: websocket", "Upgrade: h2c")),
            Err(HandshakeError::NotUpgrade)
        );
        assert_eq!(
            check(swap("dGhlIHNhbXBsZSBub25jZQ==", "c2hvcnQ=")),
            Err(HandshakeError::Key)
        );
        assert_eq!(
            check(swap("HTTP/1.1", "HTTP/1.0")),
            Err(HandshakeError::Malformed)
        );
        let big = vec![b'a'; 9000];
        assert_eq!(check(big), Err(HandshakeError::TooLarge));
    }

    #[test]
    fn client_round_trip() {
        let key = client_key([7; 16]);
        let mut req = Vec::new();
        write_request(&mut req, "h", "/p", &key, &["a", "b"], true);
        let (offer, _) = read_request(&req, 8192, &["b"], true).unwrap().unwrap();
        let mut res = Vec::new();
        offer.write_response(&mut res, &["b"]);
        let (agreed, len) = read_response(&res, 8192, &key, &["a", "b"], true)
            .unwrap()
            .unwrap();
        assert_eq!(len, res.len());
        assert_eq!(agreed.protocol, Some(1));
        assert!(agreed.deflate.is_some());
        let other = client_key([8; 16]);
        assert_eq!(
            read_response(&res, 8192, &other, &["a", "b"], true),
            Err(HandshakeError::Accept)
        );
    }
}
