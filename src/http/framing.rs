//! Request framing, sans-IO: where a request's head ends, how its body is
//! delimited, and whether the connection stays open after it.

use std::mem::MaybeUninit;

use super::error::HttpError;

/// The most headers a request may carry, whatever the configuration says
/// (the parser's array lives on the stack).
pub const MAX_HEADERS: usize = 128;

/// Limits applied while framing a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Limits {
    pub(crate) max_head: usize,
    pub(crate) max_headers: usize,
    pub(crate) max_body: u64,
}

/// How the body of a request is delimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum BodyKind {
    /// `Content-Length` bytes follow the head (0 without a body).
    Length(u64),
    /// The chunked transfer coding follows the head.
    Chunked,
}

/// A parsed request head.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Head<'r> {
    pub(crate) method: &'r str,
    pub(crate) path: &'r str,
    pub(crate) minor: u8,
    pub(crate) headers: &'r [httparse::Header<'r>],
    /// Bytes of the head, final CRLF included.
    pub(crate) len: usize,
    pub(crate) body: BodyKind,
    pub(crate) keep_alive: bool,
    pub(crate) expect_continue: bool,
    pub(crate) upgrade: bool,
}

/// Parses the request head at the front of `src`: `Ok(None)` while it is
/// incomplete (and still within the size limit).
pub(crate) fn parse_head<'h, 'b: 'h>(
    src: &'b [u8],
    headers: &'h mut [MaybeUninit<httparse::Header<'b>>],
    limits: &Limits,
) -> Result<Option<Head<'h>>, HttpError> {
    let max_headers = limits.max_headers.min(headers.len());
    let mut req = httparse::Request::new(&mut []);
    let status = req
        .parse_with_uninit_headers(src, &mut headers[..max_headers])
        .map_err(|e| match e {
            httparse::Error::TooManyHeaders => HttpError::TooManyHeaders { max: max_headers },
            other => HttpError::Malformed(match other {
                httparse::Error::HeaderName => "invalid header name",
                httparse::Error::HeaderValue => "invalid header value",
                httparse::Error::NewLine => "invalid line ending",
                httparse::Error::Version => "invalid HTTP version",
                _ => "invalid request line",
            }),
        })?;
    let len = match status {
        httparse::Status::Complete(len) => len,
        httparse::Status::Partial if src.len() > limits.max_head => {
            return Err(HttpError::HeadTooLarge {
                max: limits.max_head,
            });
        }
        httparse::Status::Partial => return Ok(None),
    };
    if len > limits.max_head {
        return Err(HttpError::HeadTooLarge {
            max: limits.max_head,
        });
    }
    let (Some(method), Some(path), Some(minor)) = (req.method, req.path, req.version) else {
        return Err(HttpError::Malformed("invalid request line"));
    };
    let headers: &'h [httparse::Header<'b>] = req.headers;

    let mut length: Option<u64> = None;
    let mut chunked = false;
    let mut transfer_encoding = false;
    let mut close = false;
    let mut keep_alive_token = false;
    let mut upgrade_token = false;
    let mut upgrade_header = false;
    let mut expect_continue = false;
    for h in headers {
        let name = h.name.as_bytes();
        if name.eq_ignore_ascii_case(b"content-length") {
            let n = parse_length(h.value).ok_or(HttpError::BadContentLength)?;
            if length.is_some_and(|l| l != n) {
                return Err(HttpError::BadContentLength);
            }
            length = Some(n);
        } else if name.eq_ignore_ascii_case(b"transfer-encoding") {
            transfer_encoding = true;
            // Only `chunked`, alone: any other coding we could not undo.
            chunked = false;
            for coding in tokens(h.value) {
                if chunked || !coding.eq_ignore_ascii_case(b"chunked") {
                    return Err(HttpError::UnsupportedTransferEncoding);
                }
                chunked = true;
            }
            if !chunked {
                return Err(HttpError::UnsupportedTransferEncoding);
            }
        } else if name.eq_ignore_ascii_case(b"connection") {
            for token in tokens(h.value) {
                close |= token.eq_ignore_ascii_case(b"close");
                keep_alive_token |= token.eq_ignore_ascii_case(b"keep-alive");
                upgrade_token |= token.eq_ignore_ascii_case(b"upgrade");
            }
        } else if name.eq_ignore_ascii_case(b"expect") {
            if !trim(h.value).eq_ignore_ascii_case(b"100-continue") {
                return Err(HttpError::ExpectationFailed);
            }
            expect_continue = minor >= 1;
        } else if name.eq_ignore_ascii_case(b"upgrade") {
            upgrade_header = true;
        }
    }
    if transfer_encoding && (length.is_some() || minor == 0) {
        return Err(HttpError::AmbiguousLength);
    }
    let body = if chunked {
        BodyKind::Chunked
    } else {
        let n = length.unwrap_or(0);
        if n > limits.max_body {
            return Err(HttpError::BodyTooLarge {
                max: limits.max_body,
            });
        }
        BodyKind::Length(n)
    };
    let keep_alive = !close && (minor >= 1 || keep_alive_token);
    Ok(Some(Head {
        method,
        path,
        minor,
        headers,
        len,
        body,
        keep_alive,
        expect_continue,
        upgrade: upgrade_header && upgrade_token,
    }))
}

/// A `Content-Length` value: digits only, at most 19 of them.
fn parse_length(value: &[u8]) -> Option<u64> {
    let value = trim(value);
    if value.is_empty() || value.len() > 19 || !value.iter().all(u8::is_ascii_digit) {
        return None;
    }
    Some(value.iter().fold(0, |n, d| n * 10 + u64::from(d - b'0')))
}

/// The comma-separated, trimmed, non-empty tokens of a header value.
pub(crate) fn tokens(value: &[u8]) -> impl Iterator<Item = &[u8]> {
    value
        .split(|&b| b == b',')
        .map(trim)
        .filter(|t| !t.is_empty())
}

fn trim(value: &[u8]) -> &[u8] {
    let start = value
        .iter()
        .position(|b| !matches!(b, b' ' | b'\t'))
        .unwrap_or(value.len());
    let end = value
        .iter()
        .rposition(|b| !matches!(b, b' ' | b'\t'))
        .map_or(start, |e| e + 1);
    &value[start..end.max(start)]
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const LIMITS: Limits = Limits {
        max_head: 8192,
        max_headers: 32,
        max_body: 1 << 20,
    };

    /// (head length, body, keep-alive, expect-continue, upgrade)
    type Summary = (usize, BodyKind, bool, bool, bool);

    fn parse(src: &[u8]) -> Result<Option<Summary>, HttpError> {
        let mut headers = [const { MaybeUninit::uninit() }; MAX_HEADERS];
        parse_head(src, &mut headers, &LIMITS)
            .map(|h| h.map(|h| (h.len, h.body, h.keep_alive, h.expect_continue, h.upgrade)))
    }

    #[test]
    fn keep_alive_follows_version_and_connection() {
        let ka = |src: &[u8]| parse(src).unwrap().unwrap().2;
        assert!(ka(b"GET / HTTP/1.1\r\n\r\n"));
        assert!(!ka(b"GET / HTTP/1.1\r\nConnection: close\r\n\r\n"));
        assert!(!ka(b"GET / HTTP/1.0\r\n\r\n"));
        assert!(ka(b"GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n"));
        assert!(!ka(b"GET / HTTP/1.1\r\nConnection: foo, close\r\n\r\n"));
    }

    #[test]
    fn body_framing() {
        let body = |src: &[u8]| parse(src).map(|h| h.map(|h| h.1));
        assert_eq!(
            body(b"POST / HTTP/1.1\r\nContent-Length: 5\r\n\r\n"),
            Ok(Some(BodyKind::Length(5)))
        );
        assert_eq!(
            body(b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"),
            Ok(Some(BodyKind::Chunked))
        );
        assert_eq!(
            body(b"POST / HTTP/1.1\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n"),
            Err(HttpError::BadContentLength)
        );
        assert_eq!(
            body(b"POST / HTTP/1.1\r\nContent-Length: +5\r\n\r\n"),
            Err(HttpError::BadContentLength)
        );
        assert_eq!(
            body(b"POST / HTTP/1.1\r\nContent-Length: 99999999999999999999\r\n\r\n"),
            Err(HttpError::BadContentLength)
        );
        assert_eq!(
            body(b"POST / HTTP/1.1\r\nContent-Length: 2000000\r\n\r\n"),
            Err(HttpError::BodyTooLarge { max: 1 << 20 })
        );
        assert_eq!(
            body(b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n"),
            Err(HttpError::AmbiguousLength)
        );
        assert_eq!(
            body(b"POST / HTTP/1.1\r\nTransfer-Encoding: gzip, chunked\r\n\r\n"),
            Err(HttpError::UnsupportedTransferEncoding)
        );
        assert_eq!(
            body(b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked, chunked\r\n\r\n"),
            Err(HttpError::UnsupportedTransferEncoding)
        );
        assert_eq!(
            body(b"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n"),
            Err(HttpError::AmbiguousLength)
        );
    }

    #[test]
    fn expect_and_upgrade() {
        let h = parse(b"PUT / HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 1\r\n\r\n");
        assert!(h.unwrap().unwrap().3);
        assert_eq!(
            parse(b"PUT / HTTP/1.1\r\nExpect: teapot\r\n\r\n"),
            Err(HttpError::ExpectationFailed)
        );
        let up = parse(b"GET / HTTP/1.1\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n");
        assert!(up.unwrap().unwrap().4);
        let not = parse(b"GET / HTTP/1.1\r\nUpgrade: websocket\r\n\r\n");
        assert!(!not.unwrap().unwrap().4);
    }

    #[test]
    fn limits_answer_431() {
        let mut many = b"GET / HTTP/1.1\r\n".to_vec();
        for i in 0..40 {
            many.extend_from_slice(format!("X-{i}: v\r\n").as_bytes());
        }
        many.extend_from_slice(b"\r\n");
        assert_eq!(parse(&many), Err(HttpError::TooManyHeaders { max: 32 }));
        let mut big = b"GET / HTTP/1.1\r\nX-Big: ".to_vec();
        big.resize(9000, b'a');
        assert_eq!(parse(&big), Err(HttpError::HeadTooLarge { max: 8192 }));
        assert_eq!(parse(&big[..8000]), Ok(None));
    }

    proptest! {
        /// A head split anywhere is incomplete before its end and the same
        /// head at it.
        #[test]
        fn any_prefix_is_incomplete_and_the_whole_head_parses(
            path in "/[a-z0-9/]{0,20}",
            names in proptest::collection::vec("[A-Za-z][A-Za-z0-9-]{0,10}", 0..8),
            body_len in 0u64..1000,
        ) {
            let mut src = format!("POST {path} HTTP/1.1\r\nHost: x\r\n");
            for n in &names {
                if !n.eq_ignore_ascii_case("content-length")
                    && !n.eq_ignore_ascii_case("transfer-encoding")
                    && !n.eq_ignore_ascii_case("expect")
                {
                    src.push_str(&format!("{n}: v\r\n"));
                }
            }
            src.push_str(&format!("Content-Length: {body_len}\r\n\r\n"));
            let src = src.into_bytes();
            for cut in 0..src.len() {
                prop_assert_eq!(parse(&src[..cut]), Ok(None));
            }
            let full = parse(&src).unwrap().unwrap();
            prop_assert_eq!(full.0, src.len());
            prop_assert_eq!(full.1, BodyKind::Length(body_len));
        }

        #[test]
        fn arbitrary_bytes_never_panic(src in proptest::collection::vec(any::<u8>(), 0..300)) {
            if let Ok(Some(h)) = parse(&src) {
                prop_assert!(h.0 <= src.len());
            }
        }
    }
}
