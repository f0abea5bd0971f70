//! `http`: HTTP/1.1 GET requests on keep-alive connections, pipelined.
//!
//! The status line and headers are parsed (httparse, headers on the stack), then
//! the body by its `Content-Length` or `Transfer-Encoding: chunked`, as it
//! arrives. A status outside 2xx is counted as refused; anything that does not
//! parse fails the run.

use std::mem::MaybeUninit;

use super::{ProtoError, Protocol, Responses};
use crate::rng::Rng;

/// Most response headers read; a response with more is malformed.
const MAX_HEADERS: usize = 64;
/// Longest chunk-size line (with extensions) accepted.
const MAX_CHUNK_LINE: usize = 1024;

/// GET requests for one path with fixed headers.
#[derive(Debug, Clone)]
pub struct Http {
    request: Vec<u8>,
}

/// Where a connection is within the current response.
#[derive(Debug, Default)]
pub struct HttpConn {
    body: Body,
    /// The current response is not 2xx.
    refused: bool,
    /// The current response carries `Connection: close`.
    close: bool,
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
enum Body {
    /// Waiting for a status line and headers.
    #[default]
    Head,
    /// This many body bytes still to come.
    Length(u64),
    /// Chunked: waiting for a chunk-size line.
    ChunkSize,
    /// Chunked: this many chunk bytes, then CRLF.
    ChunkData(u64),
    /// Chunked: the CRLF after a chunk.
    ChunkEnd,
    /// Chunked: trailer lines up to an empty one.
    Trailer,
}

impl Http {
    /// GET `path` from `host`, with `headers` (`Name: value` lines) added.
    pub fn new(host: &str, path: &str, headers: &[String]) -> Http {
        let mut request = format!("GET {path} HTTP/1.1\r\nHost: {host}\r\n");
        for h in headers {
            request.push_str(h);
            request.push_str("\r\n");
        }
        request.push_str("\r\n");
        Http {
            request: request.into_bytes(),
        }
    }

    /// The bytes of one request.
    pub fn request_bytes(&self) -> &[u8] {
        &self.request
    }
}

fn malformed(why: impl Into<String>) -> ProtoError {
    ProtoError::Malformed(why.into())
}

/// Position just past the first CRLF in `input`, if any.
fn line_end(input: &[u8]) -> Option<usize> {
    input.windows(2).position(|w| w == b"\r\n").map(|p| p + 2)
}

fn parse_hex(line: &[u8]) -> Option<u64> {
    let digits = line.split(|&b| b == b';').next()?.trim_ascii();
    if digits.is_empty() || digits.len() > 15 {
        return None;
    }
    let s = std::str::from_utf8(digits).ok()?;
    u64::from_str_radix(s, 16).ok()
}

impl HttpConn {
    /// Reads the status line and headers; returns the bytes used, or `None`
    /// when they are not all here yet.
    fn head(&mut self, input: &[u8]) -> Result<Option<usize>, ProtoError> {
        // Left uninitialised: httparse writes the headers it finds, so a
        // response costs what it carries, not MAX_HEADERS slots.
        let mut headers = [const { MaybeUninit::uninit() }; MAX_HEADERS];
        let mut res = httparse::Response::new(&mut []);
        let parsed = httparse::ParserConfig::default().parse_response_with_uninit_headers(
            &mut res,
            input,
            &mut headers,
        );
        let used = match parsed {
            Ok(httparse::Status::Complete(n)) => n,
            Ok(httparse::Status::Partial) => return Ok(None),
            Err(e) => return Err(malformed(e.to_string())),
        };
        let status = res.code.unwrap_or(0);
        let mut length = None;
        let mut chunked = false;
        self.close = false;
        for h in res.headers.iter() {
            if h.name.eq_ignore_ascii_case("content-length") {
                let v = std::str::from_utf8(h.value)
                    .ok()
                    .and_then(|s| s.trim().parse::<u64>().ok())
                    .ok_or_else(|| malformed("bad Content-Length"))?;
                if length.is_some_and(|l| l != v) {
                    return Err(malformed("conflicting Content-Length"));
                }
                length = Some(v);
            } else if h.name.eq_ignore_ascii_case("transfer-encoding") {
                chunked = h
                    .value
                    .rsplit(|&b| b == b',')
                    .next()
                    .is_some_and(|v| v.trim_ascii().eq_ignore_ascii_case(b"chunked"));
            } else if h.name.eq_ignore_ascii_case("connection") {
                self.close = h
                    .value
                    .split(|&b| b == b',')
                    .any(|v| v.trim_ascii().eq_ignore_ascii_case(b"close"));
            }
        }
        if (100..200).contains(&status) {
            // An interim response (100 Continue): the real one follows.
            return Ok(Some(used));
        }
        self.refused = !(200..300).contains(&status);
        self.body = if status == 204 || status == 304 {
            Body::Length(0)
        } else if chunked {
            Body::ChunkSize
        } else if let Some(l) = length {
            Body::Length(l)
        } else {
            return Err(malformed(
                "no Content-Length or chunked body on a keep-alive response",
            ));
        };
        Ok(Some(used))
    }
}

impl Protocol for Http {
    type Conn = HttpConn;

    fn request(&self, _conn: &mut HttpConn, _index: u32, _rng: &mut Rng, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.request);
    }

    fn responses(
        &self,
        conn: &mut HttpConn,
        _index: u32,
        input: &[u8],
        in_flight: u32,
    ) -> Result<Responses, ProtoError> {
        let mut r = Responses::default();
        let mut pos = 0;
        loop {
            let rest = &input[pos..];
            match conn.body {
                Body::Head => {
                    if rest.is_empty() {
                        break;
                    }
                    if r.completed == in_flight {
                        return Err(ProtoError::Unexpected { bytes: rest.len() });
                    }
                    match conn.head(rest)? {
                        Some(n) => pos += n,
                        None => break,
                    }
                    continue;
                }
                Body::Length(0) => {}
                Body::Length(n) => {
                    let take = n.min(rest.len() as u64);
                    pos += take as usize;
                    conn.body = Body::Length(n - take);
                    if take < n {
                        break;
                    }
                }
                Body::ChunkSize => {
                    let Some(end) = line_end(rest) else {
                        if rest.len() > MAX_CHUNK_LINE {
                            return Err(malformed("chunk-size line too long"));
                        }
                        break;
                    };
                    let size =
                        parse_hex(&rest[..end - 2]).ok_or_else(|| malformed("bad chunk size"))?;
                    pos += end;
                    conn.body = if size == 0 {
                        Body::Trailer
                    } else {
                        Body::ChunkData(size)
                    };
                    continue;
                }
                Body::ChunkData(n) => {
                    let take = n.min(rest.len() as u64);
                    pos += take as usize;
                    conn.body = if take == n {
                        Body::ChunkEnd
                    } else {
                        Body::ChunkData(n - take)
                    };
                    if take < n {
                        break;
                    }
                    continue;
                }
                Body::ChunkEnd => {
                    if rest.len() < 2 {
                        break;
                    }
                    if &rest[..2] != b"\r\n" {
                        return Err(malformed("chunk not followed by CRLF"));
                    }
                    pos += 2;
                    conn.body = Body::ChunkSize;
                    continue;
                }
                Body::Trailer => {
                    let Some(end) = line_end(rest) else {
                        if rest.len() > MAX_CHUNK_LINE {
                            return Err(malformed("trailer line too long"));
                        }
                        break;
                    };
                    pos += end;
                    if end != 2 {
                        continue;
                    }
                }
            }
            // The response is complete.
            conn.body = Body::Head;
            r.completed += 1;
            r.refused += u32::from(conn.refused);
            if conn.close {
                r.close = true;
                if pos < input.len() {
                    return Err(ProtoError::Unexpected {
                        bytes: input.len() - pos,
                    });
                }
                break;
            }
        }
        r.consumed = pos;
        Ok(r)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read_all(input: &[u8], cut: usize, in_flight: u32) -> Result<Responses, ProtoError> {
        let p = Http::new("h", "/", &[]);
        let mut c = HttpConn::default();
        let mut buf = Vec::new();
        let mut total = Responses::default();
        for chunk in input.chunks(cut) {
            buf.extend_from_slice(chunk);
            let r = p.responses(&mut c, 0, &buf, in_flight - total.completed)?;
            buf.drain(..r.consumed);
            total.completed += r.completed;
            total.refused += r.refused;
            total.close |= r.close;
        }
        assert!(buf.is_empty(), "left over: {buf:?}");
        Ok(total)
    }

    #[test]
    fn length_chunked_and_refused_responses_in_any_split() {
        let wire = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello\
HTTP/1.1 500 Internal Server Error\r\ncontent-length: 0\r\n\r\n\
HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3;x=y\r\nabc\r\n10\r\n0123456789abcdef\r\n0\r\nX-T: 1\r\n\r\n\
HTTP/1.1 204 No Content\r\n\r\n";
        for cut in [1, 2, 3, 7, 64, wire.len()] {
            let r = read_all(wire, cut, 4).unwrap();
            assert_eq!(
                (r.completed, r.refused, r.close),
                (4, 1, false),
                "cut {cut}"
            );
        }
    }

    #[test]
    fn garbage_and_extra_responses_are_errors() {
        assert!(read_all(b"HTTP/1.1 abc\r\n\r\n", 100, 1).is_err());
        assert!(read_all(b"HTTP/1.1 200 OK\r\n\r\n", 100, 1).is_err());
        let two = b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n";
        assert!(matches!(
            read_all(two, 100, 1),
            Err(ProtoError::Unexpected { .. })
        ));
        assert!(
            read_all(
                b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
                100,
                1
            )
            .is_err()
        );
    }

    #[test]
    fn connection_close_is_reported() {
        let wire = b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 1\r\n\r\nx";
        let r = read_all(wire, 100, 1).unwrap();
        assert!(r.close);
    }

    #[test]
    fn request_has_host_and_headers() {
        let p = Http::new("127.0.0.1:80", "/a", &["X-A: 1".into()]);
        assert_eq!(
            p.request_bytes(),
            b"GET /a HTTP/1.1\r\nHost: 127.0.0.1:80\r\nX-A: 1\r\n\r\n"
        );
    }
}
