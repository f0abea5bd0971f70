//! HTTP/1.1 server layer (feature `http`): requests parsed in place with
//! `httparse`, answered straight into the connection's output.
//!
//! The layer is a helper called from your own
//! [`EventHandler::on_traffic`](crate::EventHandler::on_traffic), not a
//! wrapper handler: the application keeps every callback of the trait (timers,
//! ticks, wakes, close) and pays for nothing it does not call. Its
//! per-connection state is an [`HttpConn`] inside the handler's `State`
//! (reached through `BorrowMut<HttpConn>`, so `State = HttpConn` works as it
//! is); its per-loop state, a [`Server`], lives in the handler.
//!
//! # Examples
//!
//! ```no_run
//! use tether::http::{HttpConn, Server};
//! use tether::{Action, Conn, Engine, EventHandler};
//!
//! struct Hello {
//!     http: Server,
//! }
//!
//! impl EventHandler for Hello {
//!     type State = HttpConn;
//!
//!     fn on_traffic(&mut self, conn: &mut Conn<'_, HttpConn>) -> Action {
//!         self.http
//!             .serve(conn, |req, res| match req.path() {
//!                 "/plaintext" => res.header("Content-Type", "text/plain").body(b"Hello, World!"),
//!                 _ => res.status(404).body(b""),
//!             })
//!             .into()
//!     }
//! }
//!
//! let engine = Engine::builder(|_| Hello { http: Server::new().server_name("tether") })
//!     .listen("127.0.0.1:8080")
//!     .start()?;
//! engine.join();
//! # Ok::<(), tether::Error>(())
//! ```
//!
//! # What it does
//!
//! - **Pipelining.** Every complete request in the input is answered, in
//!   order, in one pass; the responses leave in one `write(2)`.
//! - **Keep-alive** by default on HTTP/1.1, `Connection: close`, and HTTP/1.0
//!   (closed unless `Connection: keep-alive`).
//! - **Bodies** by `Content-Length` or chunked, up to [`Server::max_body`]
//!   (413 beyond, as soon as the length is known), handed over complete;
//!   `Expect: 100-continue` is answered when the head is in and the body is not.
//! - **Limits**: the head's size and header count ([`Server::max_head`],
//!   [`Server::max_headers`]) are answered with 431, malformed requests with
//!   400; then the connection closes.
//! - **Date**: the `Date` line is formatted once a second per loop, driven by
//!   the loop clock; no clock is read per request.
//! - **Slowloris**: a request head (or body) that does not complete is input
//!   the connection holds unconsumed, so the engine's frame timeout
//!   ([`Options::frame_timeout`](crate::Options::frame_timeout) or
//!   [`Conn::set_frame_timeout`]) closes it.
//! - **Upgrade**: [`Request::is_upgrade`], [`Response::upgrade`] and
//!   [`Served::Upgraded`] hand the connection, with the bytes after the
//!   request, to another protocol (WebSocket).

mod chunked;
mod date;
mod error;
mod framing;
mod request;
mod response;

use std::borrow::BorrowMut;
use std::mem::MaybeUninit;

pub use chunked::{ChunkedDecoder, ChunkedError};
pub use error::HttpError;
pub use framing::MAX_HEADERS;
pub use request::Request;
pub use response::{Response, reason};

use crate::conn::Conn;
use crate::handler::Action;
use date::DateCache;
use framing::{BodyKind, Limits};

/// Default largest request head: 8 KiB (nginx's `large_client_header_buffers`
/// line, Node's default is 16 KiB).
pub const DEFAULT_MAX_HEAD: usize = 8 * 1024;
/// Default most headers per request: 64.
pub const DEFAULT_MAX_HEADERS: usize = 64;
/// Default largest request body: 1 MiB (nginx's `client_max_body_size`).
pub const DEFAULT_MAX_BODY: u64 = 1024 * 1024;

/// A connection's HTTP state: keep it in the handler's `State`.
#[derive(Debug, Default)]
pub struct HttpConn {
    continue_sent: bool,
    upgraded: bool,
    /// Progress through a chunked body that spans reads (boxed: rare).
    chunked: Option<Box<ChunkScan>>,
}

impl HttpConn {
    /// True once a request was answered with [`Response::upgrade`]: the
    /// connection speaks another protocol now.
    pub fn is_upgraded(&self) -> bool {
        self.upgraded
    }
}

#[derive(Debug)]
struct ChunkScan {
    decoder: ChunkedDecoder,
    /// Body bytes already scanned.
    scanned: usize,
}

/// What [`Server::serve`] did with the input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[must_use]
pub enum Served {
    /// Every complete request was answered; the connection stays open.
    Continue,
    /// A response closed the connection (`Connection: close`, HTTP/1.0); it
    /// closes once its output is sent.
    Close,
    /// A request was refused with an error status; the connection closes once
    /// that answer is sent.
    Rejected(HttpError),
    /// The connection was upgraded: [`Conn::read_buf`] holds the bytes that
    /// followed the request, for the new protocol.
    Upgraded,
}

impl From<Served> for Action {
    /// Every outcome continues: closes were already requested after flushing.
    fn from(_: Served) -> Action {
        Action::Continue
    }
}

/// A loop's HTTP server: its limits, the cached `Date` and `Server` lines and
/// a buffer reused for chunked bodies. Make one per handler (per loop).
#[derive(Debug)]
pub struct Server {
    limits: Limits,
    server: Vec<u8>,
    date: DateCache,
    /// `Server` and `Date` lines.
    fixed: Vec<u8>,
    /// `HTTP/1.1 200 OK\r\n` and `fixed`.
    ok_prefix: Vec<u8>,
    body: Vec<u8>,
}

impl Default for Server {
    fn default() -> Self {
        Self::new()
    }
}

impl Server {
    /// A server with the default limits and no `Server` header.
    pub fn new() -> Self {
        let mut server = Server {
            limits: Limits {
                max_head: DEFAULT_MAX_HEAD,
                max_headers: DEFAULT_MAX_HEADERS,
                max_body: DEFAULT_MAX_BODY,
            },
            server: Vec::new(),
            date: DateCache::new(),
            fixed: Vec::new(),
            ok_prefix: Vec::new(),
            body: Vec::new(),
        };
        server.rebuild();
        server
    }

    /// Sends `Server: name` with every response.
    pub fn server_name(mut self, name: &str) -> Self {
        self.server = if name.bytes().any(|b| b == b'\r' || b == b'\n') {
            Vec::new()
        } else {
            format!("Server: {name}\r\n").into_bytes()
        };
        self.rebuild();
        self
    }

    /// Sets the largest request head (request line and headers), in bytes.
    pub fn max_head(mut self, max: usize) -> Self {
        self.limits.max_head = max;
        self
    }

    /// Sets the most headers a request may have, at most [`MAX_HEADERS`].
    pub fn max_headers(mut self, max: usize) -> Self {
        self.limits.max_headers = max.min(MAX_HEADERS);
        self
    }

    /// Sets the largest request body, in bytes. Keep it below
    /// [`Options::max_inbound`](crate::Options::max_inbound): a body is held
    /// in the connection's input until complete.
    pub fn max_body(mut self, max: u64) -> Self {
        self.limits.max_body = max;
        self
    }

    fn rebuild(&mut self) {
        self.fixed.clear();
        self.fixed.extend_from_slice(&self.server);
        self.fixed.extend_from_slice(self.date.line());
        self.ok_prefix.clear();
        self.ok_prefix.extend_from_slice(b"HTTP/1.1 200 OK\r\n");
        self.ok_prefix.extend_from_slice(&self.fixed);
    }

    /// Answers every complete request in the connection's input with
    /// `handler`, in order, and consumes them; an incomplete request stays
    /// for the next call. Call it from `on_traffic`.
    ///
    /// The handler gets the [`Request`] and a [`Response`] to write; it may
    /// reach the connection (its state, timers, the engine) through
    /// [`Response::conn`].
    pub fn serve<S, F>(&mut self, conn: &mut Conn<'_, S>, mut handler: F) -> Served
    where
        S: BorrowMut<HttpConn>,
        F: FnMut(&Request<'_>, &mut Response<'_, '_, S>),
    {
        if conn.state().borrow().upgraded {
            return Served::Upgraded;
        }
        let input = conn.read_buf();
        if input.is_empty() {
            return Served::Continue;
        }
        if self.date.refresh(conn.now()) {
            self.rebuild();
        }
        let mut headers = [const { MaybeUninit::uninit() }; MAX_HEADERS];
        let mut pos = 0;
        let outcome = loop {
            if pos == input.len() {
                break Served::Continue;
            }
            let src = &input[pos..];
            let head = match framing::parse_head(src, &mut headers, &self.limits) {
                Ok(Some(head)) => head,
                Ok(None) => break Served::Continue,
                Err(e) => break self.reject(conn, e),
            };
            let after_head = &src[head.len..];
            let (body, used): (&[u8], usize) = match head.body {
                BodyKind::Length(n) => {
                    // n <= max_body was checked, but may not fit what arrived.
                    match usize::try_from(n) {
                        Ok(n) if n <= after_head.len() => (&after_head[..n], head.len + n),
                        _ => {
                            continue_if_expected(conn, head.expect_continue);
                            break Served::Continue;
                        }
                    }
                }
                BodyKind::Chunked => {
                    let http = conn.state_mut().borrow_mut();
                    match scan_chunked(http, after_head, self.limits.max_body) {
                        Ok(Some(len)) => {
                            self.body.clear();
                            let mut copy = ChunkedDecoder::new(u64::MAX);
                            let body = &mut self.body;
                            // Validated by the scan: cannot fail.
                            let _ = copy.decode(&after_head[..len], |d| body.extend_from_slice(d));
                            (&self.body[..], head.len + len)
                        }
                        Ok(None) => {
                            continue_if_expected(conn, head.expect_continue);
                            break Served::Continue;
                        }
                        Err(e) => break self.reject(conn, HttpError::BadChunk(e)),
                    }
                }
            };
            conn.state_mut().borrow_mut().continue_sent = false;
            let req = Request { head, body };
            let mut res = Response::new(
                conn,
                &self.fixed,
                &self.ok_prefix,
                head.keep_alive,
                head.minor == 0,
                head.method == "HEAD",
            );
            handler(&req, &mut res);
            let (keep_alive, upgraded) = res.finish();
            pos += used;
            if upgraded {
                conn.state_mut().borrow_mut().upgraded = true;
                break Served::Upgraded;
            }
            if !keep_alive {
                conn.close_after_flush();
                // Requests pipelined after a close are not answered.
                pos = input.len();
                break Served::Close;
            }
        };
        if let Served::Rejected(_) = outcome {
            pos = input.len();
        }
        conn.consume(pos);
        outcome
    }

    /// Answers `error`'s status and closes after the answer.
    fn reject<S>(&self, conn: &mut Conn<'_, S>, error: HttpError) -> Served {
        response::write_status_line(conn, error.status());
        conn.write(&self.fixed);
        conn.write(b"Connection: close\r\nContent-Length: 0\r\n\r\n");
        conn.close_after_flush();
        Served::Rejected(error)
    }
}

/// The length of the first complete request (head and body) at the front of
/// `src`, framed exactly as [`Server::serve`] frames it with the default
/// limits: `Ok(None)` while incomplete.
///
/// # Errors
///
/// The [`HttpError`] the server would answer the request with.
///
/// # Examples
///
/// ```
/// use tether::http::frame_request;
///
/// let two = b"POST / HTTP/1.1\r\nContent-Length: 2\r\n\r\nhiGET / HTTP/1.1\r\n\r\n";
/// assert_eq!(frame_request(two), Ok(Some(40)));
/// assert_eq!(frame_request(&two[..39]), Ok(None));
/// ```
pub fn frame_request(src: &[u8]) -> Result<Option<usize>, HttpError> {
    let limits = Server::new().limits;
    let mut headers = [const { MaybeUninit::uninit() }; MAX_HEADERS];
    let Some(head) = framing::parse_head(src, &mut headers, &limits)? else {
        return Ok(None);
    };
    let body = &src[head.len..];
    match head.body {
        BodyKind::Length(n) => Ok(usize::try_from(n)
            .ok()
            .filter(|&n| n <= body.len())
            .map(|n| head.len + n)),
        BodyKind::Chunked => {
            let mut decoder = ChunkedDecoder::new(limits.max_body);
            let (used, done) = decoder.decode(body, |_| {}).map_err(HttpError::BadChunk)?;
            Ok(done.then_some(head.len + used))
        }
    }
}

/// Sends `100 Continue` once per request when the client waits for it.
fn continue_if_expected<S: BorrowMut<HttpConn>>(conn: &mut Conn<'_, S>, expected: bool) {
    let http = conn.state_mut().borrow_mut();
    if expected && !http.continue_sent {
        http.continue_sent = true;
        conn.write(b"HTTP/1.1 100 Continue\r\n\r\n");
    }
}

/// Finds the end of a chunked body at the front of `body`, resuming where the
/// last call stopped: `Some(len)` once complete.
fn scan_chunked(
    http: &mut HttpConn,
    body: &[u8],
    limit: u64,
) -> Result<Option<usize>, ChunkedError> {
    let result = match http.chunked.as_deref_mut() {
        Some(scan) => {
            let (used, done) = scan.decoder.decode(&body[scan.scanned..], |_| {})?;
            scan.scanned += used;
            done.then_some(scan.scanned)
        }
        None => {
            let mut decoder = ChunkedDecoder::new(limit);
            let (used, done) = decoder.decode(body, |_| {})?;
            if done {
                Some(used)
            } else {
                http.chunked = Some(Box::new(ChunkScan {
                    decoder,
                    scanned: used,
                }));
                None
            }
        }
    };
    if result.is_some() {
        http.chunked = None;
    }
    Ok(result)
}
