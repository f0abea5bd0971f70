//! The response writer: status, headers and body straight into the
//! connection's output, nothing allocated.

use crate::conn::Conn;

/// The reason phrase of a status code.
pub fn reason(status: u16) -> &'static str {
    match status {
        100 => "Continue",
        101 => "Switching Protocols",
        200 => "OK",
        201 => "Created",
        202 => "Accepted",
        204 => "No Content",
        206 => "Partial Content",
        301 => "Moved Permanently",
        302 => "Found",
        303 => "See Other",
        304 => "Not Modified",
        307 => "Temporary Redirect",
        308 => "Permanent Redirect",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        409 => "Conflict",
        410 => "Gone",
        411 => "Length Required",
        413 => "Content Too Large",
        414 => "URI Too Long",
        415 => "Unsupported Media Type",
        417 => "Expectation Failed",
        422 => "Unprocessable Content",
        426 => "Upgrade Required",
        429 => "Too Many Requests",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        505 => "HTTP Version Not Supported",
        _ => "Unknown",
    }
}

/// Writes `HTTP/1.1 <status> <reason>\r\n`.
pub(crate) fn write_status_line<S>(conn: &mut Conn<'_, S>, status: u16) {
    let status = status.clamp(100, 999);
    let reason = reason(status).as_bytes();
    let mut line = [0u8; 64];
    line[..9].copy_from_slice(b"HTTP/1.1 ");
    line[9] = b'0' + (status / 100) as u8;
    line[10] = b'0' + (status / 10 % 10) as u8;
    line[11] = b'0' + (status % 10) as u8;
    line[12] = b' ';
    let end = 13 + reason.len();
    line[13..end].copy_from_slice(reason);
    line[end..end + 2].copy_from_slice(b"\r\n");
    conn.write(&line[..end + 2]);
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stage {
    /// Nothing written yet; the status may still change.
    Fresh,
    /// The status line and some headers are written.
    Head,
    /// The response is complete.
    Done,
}

/// One response, written into the connection's output as it is built.
///
/// Call [`status`](Response::status) first (200 by default), then
/// [`header`](Response::header) any number of times, then
/// [`body`](Response::body), which adds `Content-Length` (and `Server`,
/// `Date` and `Connection` as needed) and completes the response. A handler
/// that returns without calling `body` sends an empty one.
///
/// Everything goes straight into the connection's output with
/// [`Conn::write`]: nothing is allocated per response, and every response to
/// the requests of one read leaves in one `write(2)`.
#[derive(Debug)]
pub struct Response<'c, 'a, S> {
    conn: &'c mut Conn<'a, S>,
    /// `Server` and `Date` lines, preformatted by the server.
    fixed: &'c [u8],
    /// `HTTP/1.1 200 OK\r\n` followed by `fixed`.
    ok_prefix: &'c [u8],
    status: u16,
    stage: Stage,
    keep_alive: bool,
    http10: bool,
    head_only: bool,
    upgraded: bool,
}

impl<'c, 'a, S> Response<'c, 'a, S> {
    pub(crate) fn new(
        conn: &'c mut Conn<'a, S>,
        fixed: &'c [u8],
        ok_prefix: &'c [u8],
        keep_alive: bool,
        http10: bool,
        head_only: bool,
    ) -> Self {
        Response {
            conn,
            fixed,
            ok_prefix,
            status: 200,
            stage: Stage::Fresh,
            keep_alive,
            http10,
            head_only,
            upgraded: false,
        }
    }

    /// Sets the status code (100–999); ignored once a header was written.
    pub fn status(&mut self, status: u16) -> &mut Self {
        if self.stage == Stage::Fresh {
            self.status = status.clamp(100, 999);
        }
        self
    }

    /// Writes a header. A name or value containing CR or LF is dropped (it
    /// would let a peer's data split the response), as is any header after
    /// the body.
    pub fn header(&mut self, name: &str, value: impl AsRef<[u8]>) -> &mut Self {
        let value = value.as_ref();
        let bad = |b: &u8| matches!(b, b'\r' | b'\n');
        if self.stage == Stage::Done || name.bytes().any(|b| bad(&b)) || value.iter().any(bad) {
            return self;
        }
        self.start();
        let name = name.as_bytes();
        let len = name.len() + value.len() + 4;
        let mut line = [0u8; 256];
        if len <= line.len() {
            line[..name.len()].copy_from_slice(name);
            line[name.len()..name.len() + 2].copy_from_slice(b": ");
            line[name.len() + 2..len - 2].copy_from_slice(value);
            line[len - 2..len].copy_from_slice(b"\r\n");
            self.conn.write(&line[..len]);
        } else {
            self.conn.write(name);
            self.conn.write(b": ");
            self.conn.write(value);
            self.conn.write(b"\r\n");
        }
        self
    }

    /// Asks for the connection to close after this response
    /// (`Connection: close`).
    pub fn close(&mut self) -> &mut Self {
        self.keep_alive = false;
        self
    }

    /// Completes the response with `body` (not sent for `HEAD`, 204 and 304;
    /// its length still is for `HEAD`). Later calls do nothing.
    pub fn body(&mut self, body: &[u8]) {
        if self.stage == Stage::Done {
            return;
        }
        self.start();
        if !self.keep_alive {
            self.conn.write(b"Connection: close\r\n");
        } else if self.http10 {
            self.conn.write(b"Connection: keep-alive\r\n");
        }
        let bodyless = matches!(self.status, 100..=199 | 204 | 304);
        if bodyless {
            self.conn.write(b"\r\n");
        } else {
            let mut line = *b"Content-Length: 00000000000000000000\r\n\r\n";
            let digits = format_len(body.len(), &mut line[16..36]);
            // Shift the digits next to the name, then the blank line after.
            let start = 36 - digits;
            line.copy_within(start..40, 16);
            self.conn.write(&line[..16 + digits + 4]);
            if !self.head_only {
                self.conn.write(body);
            }
        }
        self.stage = Stage::Done;
    }

    /// Answers `101 Switching Protocols` with `headers` (such as `Upgrade`
    /// and `Sec-WebSocket-Accept`) and `Connection: Upgrade`, and hands the
    /// connection over: after the handler returns,
    /// [`Server::serve`](super::Server::serve) returns
    /// [`Served::Upgraded`](super::Served::Upgraded) with [`Conn::read_buf`]
    /// holding the bytes that followed the request, and serves no more HTTP on
    /// this connection.
    ///
    /// Returns false, and does nothing, once anything of the response was
    /// written: the status can no longer be 101.
    pub fn upgrade(&mut self, headers: &[(&str, &[u8])]) -> bool {
        if self.stage != Stage::Fresh {
            return false;
        }
        self.status = 101;
        for (name, value) in headers {
            self.header(name, value);
        }
        self.start();
        self.conn.write(b"Connection: Upgrade\r\n\r\n");
        self.stage = Stage::Done;
        self.upgraded = true;
        true
    }

    /// The connection, for its state and the rest of its API. Writing to it
    /// directly in the middle of a response corrupts the response.
    pub fn conn(&mut self) -> &mut Conn<'a, S> {
        self.conn
    }

    /// True once the response is complete.
    pub fn is_done(&self) -> bool {
        self.stage == Stage::Done
    }

    /// Completes an unfinished response; returns (keep-alive, upgraded).
    pub(crate) fn finish(mut self) -> (bool, bool) {
        self.body(&[]);
        (self.keep_alive && !self.conn.is_closing(), self.upgraded)
    }

    fn start(&mut self) {
        if self.stage != Stage::Fresh {
            return;
        }
        if self.status == 200 {
            self.conn.write(self.ok_prefix);
        } else {
            write_status_line(self.conn, self.status);
            self.conn.write(self.fixed);
        }
        self.stage = Stage::Head;
    }
}

/// Writes `n` right-aligned into `out` (20 bytes); returns the digit count.
fn format_len(n: usize, out: &mut [u8]) -> usize {
    let mut n = n;
    let mut i = out.len();
    loop {
        i -= 1;
        out[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.len() - i
}
