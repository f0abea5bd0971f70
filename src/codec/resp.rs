//! RESP, the Redis serialization protocol: RESP2 and RESP3 frames and inline
//! commands, decoded in place and encoded straight into an output.
//!
//! [`Resp::decode`] reads one frame from the front of a connection's unread
//! bytes and returns it as a [`Frame`] that borrows those bytes: a bulk string is
//! a slice of the input, and an aggregate (array, map, set, push, attribute) is
//! the slice holding its elements, validated once and walked again by
//! [`Aggregate::iter`] without allocating. A server reads commands with
//! [`Frame::args`], which also accepts inline commands (`PING\r\n`, what telnet
//! and `redis-benchmark`'s `PING_INLINE` send).
//!
//! Limits are checked as soon as the header that declares a length is readable:
//! a `$4294967296` bulk or a `*100000000` array fails at once, before any of its
//! bytes arrive, with a typed [`RespError`]; so does nesting deeper than
//! [`Resp::max_depth`].
//!
//! [`RespWrite`] encodes replies and commands into any output that takes byte
//! slices: a `Vec<u8>`, or a [`Conn`] so that a reply goes straight into the
//! connection's output.
//!
//! # Examples
//!
//! ```
//! use tether::codec::resp::{Decoded, Frame, Resp, RespWrite};
//!
//! let resp = Resp::new();
//! let wire = b"*2\r\n$4\r\nECHO\r\n$2\r\nhi\r\nPING\r\n";
//!
//! let Decoded::Frame(frame, used) = resp.decode(wire).unwrap() else { panic!() };
//! let args: Vec<&[u8]> = frame.args().unwrap().collect();
//! assert_eq!(args, [&b"ECHO"[..], b"hi"]);
//!
//! // The next frame is an inline command.
//! let Decoded::Frame(frame, _) = resp.decode(&wire[used..]).unwrap() else { panic!() };
//! assert_eq!(frame.args().unwrap().next(), Some(&b"PING"[..]));
//!
//! let mut out = Vec::new();
//! out.put_bulk(b"hi");
//! out.put_simple(b"PONG");
//! assert_eq!(out, b"$2\r\nhi\r\n+PONG\r\n");
//! ```

use std::fmt;

use crate::conn::Conn;

/// Default longest bulk string: 512 MiB, Redis's `proto-max-bulk-len`.
pub const DEFAULT_MAX_BULK: usize = 512 * 1024 * 1024;
/// Default largest aggregate: 1M elements.
pub const DEFAULT_MAX_ARRAY: usize = 1024 * 1024;
/// Default deepest nesting of aggregates: 32 levels.
pub const DEFAULT_MAX_DEPTH: usize = 32;
/// Default longest inline command or simple line: 64 KiB, Redis's inline limit.
pub const DEFAULT_MAX_LINE: usize = 64 * 1024;

/// The longest length or count header (`$`, `*`, …) accepted before its CRLF.
const MAX_HEADER_DIGITS: usize = 24;

/// A protocol violation found while decoding. The stream cannot be decoded
/// further; a server answers `-ERR Protocol error: …` and closes.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum RespError {
    /// A bulk string declares more bytes than [`Resp::max_bulk`].
    BulkTooLong {
        /// The declared length.
        len: u64,
        /// The configured maximum.
        max: usize,
    },
    /// An aggregate declares more elements than [`Resp::max_array`].
    ArrayTooLong {
        /// The declared element count (pairs count twice in a map).
        len: u64,
        /// The configured maximum.
        max: usize,
    },
    /// Aggregates nest deeper than [`Resp::max_depth`].
    TooDeep {
        /// The configured maximum.
        max: usize,
    },
    /// A line (inline command, simple string, error, number) runs past
    /// [`Resp::max_line`] without a line ending.
    LineTooLong {
        /// The configured maximum.
        max: usize,
    },
    /// A length or count header is not a number (or a negative other than -1).
    BadLength,
    /// An integer, double or boolean frame is malformed.
    BadNumber,
    /// A line or bulk string does not end with CRLF.
    MissingCrlf,
    /// An inline command where only RESP types are accepted (client mode), or
    /// an unknown type byte.
    BadType(u8),
    /// A streamed RESP3 aggregate or string (`*?`, `$?`), which this codec does
    /// not accept.
    Streamed,
    /// A command frame is not an array of bulk strings.
    NotACommand,
}

impl fmt::Display for RespError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::BulkTooLong { len, max } => {
                write!(f, "invalid bulk length {len} (maximum {max})")
            }
            Self::ArrayTooLong { len, max } => {
                write!(f, "invalid multibulk length {len} (maximum {max})")
            }
            Self::TooDeep { max } => write!(f, "aggregates nested deeper than {max}"),
            Self::LineTooLong { max } => write!(f, "line longer than {max} bytes"),
            Self::BadLength => f.write_str("invalid length"),
            Self::BadNumber => f.write_str("invalid number"),
            Self::MissingCrlf => f.write_str("expected CRLF"),
            Self::BadType(b) => write!(f, "unexpected type byte 0x{b:02x}"),
            Self::Streamed => f.write_str("streamed types are not supported"),
            Self::NotACommand => f.write_str("expected an array of bulk strings"),
        }
    }
}

impl std::error::Error for RespError {}

/// One decoded RESP frame, borrowing the input it was decoded from.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Frame<'a> {
    /// `+OK`: a simple string.
    Simple(&'a [u8]),
    /// `-ERR …`: an error line.
    Error(&'a [u8]),
    /// `:42`: a signed 64-bit integer.
    Integer(i64),
    /// `$3\r\nfoo`: a binary-safe string.
    Bulk(&'a [u8]),
    /// A null: RESP2's `$-1` and `*-1`, RESP3's `_`.
    Null,
    /// `*N`: an array.
    Array(Aggregate<'a>),
    /// RESP3 `#t` / `#f`.
    Boolean(bool),
    /// RESP3 `,3.14` (also `inf`, `-inf`, `nan`).
    Double(f64),
    /// RESP3 `(` big number, as its decimal digits.
    BigNumber(&'a [u8]),
    /// RESP3 `!`: a bulk error.
    BulkError(&'a [u8]),
    /// RESP3 `=`: verbatim text with its three-byte format (`txt`, `mkd`).
    Verbatim {
        /// The format, e.g. `txt`.
        format: &'a [u8],
        /// The text after `format:`.
        text: &'a [u8],
    },
    /// RESP3 `%N`: a map of N pairs; its elements alternate key, value.
    Map(Aggregate<'a>),
    /// RESP3 `~N`: a set.
    Set(Aggregate<'a>),
    /// RESP3 `|N`: attributes (pairs) that precede a reply.
    Attribute(Aggregate<'a>),
    /// RESP3 `>N`: an out-of-band push (pub/sub messages).
    Push(Aggregate<'a>),
    /// An inline command line, line ending stripped (server mode only).
    Inline(&'a [u8]),
}

/// The elements of a decoded aggregate, validated and borrowed in place.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Aggregate<'a> {
    len: usize,
    body: &'a [u8],
}

impl<'a> Aggregate<'a> {
    /// Number of elements (twice the pair count for maps and attributes).
    pub fn len(&self) -> usize {
        self.len
    }

    /// True when there are no elements.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The elements in order, decoded again from the validated bytes (no
    /// allocation).
    pub fn iter(&self) -> Elements<'a> {
        Elements {
            left: self.len,
            rest: self.body,
        }
    }
}

/// Iterator over an [`Aggregate`]'s elements.
#[derive(Debug, Clone)]
pub struct Elements<'a> {
    left: usize,
    rest: &'a [u8],
}

impl<'a> Iterator for Elements<'a> {
    type Item = Frame<'a>;

    fn next(&mut self) -> Option<Frame<'a>> {
        if self.left == 0 {
            return None;
        }
        // The bytes were validated when the aggregate was decoded; the
        // unlimited decoder cannot fail on them.
        match UNLIMITED.value(self.rest, 0) {
            Ok(Step::Done(frame, used)) => {
                self.left -= 1;
                self.rest = &self.rest[used..];
                Some(frame)
            }
            _ => {
                self.left = 0;
                None
            }
        }
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (self.left, Some(self.left))
    }
}

/// The arguments of a command: the bulk strings of an array, or the words of
/// an inline command.
#[derive(Debug, Clone)]
pub enum Args<'a> {
    /// From an array of bulk strings.
    Array(Elements<'a>),
    /// From an inline command, split on spaces and tabs.
    Inline(&'a [u8]),
}

impl<'a> Iterator for Args<'a> {
    type Item = &'a [u8];

    fn next(&mut self) -> Option<&'a [u8]> {
        match self {
            Args::Array(elements) => match elements.next()? {
                Frame::Bulk(b) | Frame::Simple(b) => Some(b),
                _ => None,
            },
            Args::Inline(rest) => {
                let start = rest.iter().position(|b| !matches!(b, b' ' | b'\t'))?;
                let word = &rest[start..];
                let end = word
                    .iter()
                    .position(|b| matches!(b, b' ' | b'\t'))
                    .unwrap_or(word.len());
                *rest = &word[end..];
                Some(&word[..end])
            }
        }
    }
}

impl<'a> Frame<'a> {
    /// The frame as a command's arguments: an array of bulk strings, or an
    /// inline command. An empty inline line gives no arguments (servers skip
    /// it, as Redis does).
    ///
    /// # Errors
    ///
    /// [`RespError::NotACommand`] for any other frame, or an array holding
    /// something other than bulk strings.
    pub fn args(&self) -> Result<Args<'a>, RespError> {
        match *self {
            Frame::Array(agg) => {
                if agg.iter().all(|f| matches!(f, Frame::Bulk(_))) {
                    Ok(Args::Array(agg.iter()))
                } else {
                    Err(RespError::NotACommand)
                }
            }
            Frame::Inline(line) => Ok(Args::Inline(line)),
            _ => Err(RespError::NotACommand),
        }
    }
}

/// The result of one successful [`Resp::decode`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Decoded<'a> {
    /// A frame, and the number of input bytes it occupied.
    Frame(Frame<'a>, usize),
    /// No complete frame yet.
    Incomplete {
        /// A lower bound (at least 1) on the bytes still to arrive. A caller
        /// may skip decoding until that many more are buffered: a large bulk
        /// string is then not rescanned on every read.
        needed: usize,
    },
}

enum Step<'a> {
    Done(Frame<'a>, usize),
    Need(usize),
}

/// The RESP decoder's configuration; decoding keeps no state between calls, so
/// one value serves every connection of a loop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Resp {
    max_bulk: usize,
    max_array: usize,
    max_depth: usize,
    max_line: usize,
    inline: bool,
}

const UNLIMITED: Resp = Resp {
    max_bulk: usize::MAX,
    max_array: usize::MAX,
    max_depth: usize::MAX,
    max_line: usize::MAX,
    inline: true,
};

impl Default for Resp {
    fn default() -> Self {
        Self::new()
    }
}

impl Resp {
    /// A decoder with the default limits that accepts inline commands (a
    /// server's decoder).
    pub const fn new() -> Self {
        Resp {
            max_bulk: DEFAULT_MAX_BULK,
            max_array: DEFAULT_MAX_ARRAY,
            max_depth: DEFAULT_MAX_DEPTH,
            max_line: DEFAULT_MAX_LINE,
            inline: true,
        }
    }

    /// A decoder for a client reading replies: inline commands are not
    /// accepted, so a stray byte is an error rather than a line.
    pub const fn client() -> Self {
        Resp {
            inline: false,
            ..Self::new()
        }
    }

    /// Sets the longest bulk string accepted.
    pub const fn max_bulk(mut self, max: usize) -> Self {
        self.max_bulk = max;
        self
    }

    /// Sets the largest aggregate (element count) accepted.
    pub const fn max_array(mut self, max: usize) -> Self {
        self.max_array = max;
        self
    }

    /// Sets the deepest nesting accepted: 1 allows an array of scalars.
    pub const fn max_depth(mut self, max: usize) -> Self {
        self.max_depth = max;
        self
    }

    /// Sets the longest line (inline command, simple string, error) accepted.
    pub const fn max_line(mut self, max: usize) -> Self {
        self.max_line = max;
        self
    }

    /// Decodes one frame from the front of `src`.
    ///
    /// # Errors
    ///
    /// A [`RespError`] as soon as the bytes are certain to violate the protocol
    /// or a limit.
    pub fn decode<'a>(&self, src: &'a [u8]) -> Result<Decoded<'a>, RespError> {
        if src.is_empty() {
            return Ok(Decoded::Incomplete { needed: 1 });
        }
        match self.value(src, 0)? {
            Step::Done(frame, used) => Ok(Decoded::Frame(frame, used)),
            Step::Need(needed) => Ok(Decoded::Incomplete {
                needed: needed.max(1),
            }),
        }
    }

    fn value<'a>(&self, src: &'a [u8], depth: usize) -> Result<Step<'a>, RespError> {
        let Some(&kind) = src.first() else {
            return Ok(Step::Need(1));
        };
        match kind {
            b'+' | b'-' | b':' | b',' | b'(' | b'#' | b'_' => {
                let Some((line, used)) = self.line(src, 1, self.max_line)? else {
                    return Ok(Step::Need(1));
                };
                let frame = match kind {
                    b'+' => Frame::Simple(line),
                    b'-' => Frame::Error(line),
                    b':' => Frame::Integer(parse_i64(line).ok_or(RespError::BadNumber)?),
                    b',' => Frame::Double(parse_double(line).ok_or(RespError::BadNumber)?),
                    b'(' => {
                        let digits = line.strip_prefix(b"-").unwrap_or(line);
                        let digits = digits.strip_prefix(b"+").unwrap_or(digits);
                        if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
                            return Err(RespError::BadNumber);
                        }
                        Frame::BigNumber(line)
                    }
                    b'#' => match line {
                        b"t" => Frame::Boolean(true),
                        b"f" => Frame::Boolean(false),
                        _ => return Err(RespError::BadNumber),
                    },
                    _ => {
                        if !line.is_empty() {
                            return Err(RespError::BadType(b'_'));
                        }
                        Frame::Null
                    }
                };
                Ok(Step::Done(frame, used))
            }
            b'$' | b'!' | b'=' => {
                let Some((len, start)) = self.header(src)? else {
                    return Ok(Step::Need(1));
                };
                let Some(len) = len else {
                    // `$-1`: RESP2's null bulk string.
                    return if kind == b'$' {
                        Ok(Step::Done(Frame::Null, start))
                    } else {
                        Err(RespError::BadLength)
                    };
                };
                if len > self.max_bulk as u64 {
                    return Err(RespError::BulkTooLong {
                        len,
                        max: self.max_bulk,
                    });
                }
                let len = len as usize;
                let end = start + len;
                if src.len() < end + 2 {
                    return Ok(Step::Need(end + 2 - src.len()));
                }
                if &src[end..end + 2] != b"\r\n" {
                    return Err(RespError::MissingCrlf);
                }
                let data = &src[start..end];
                let frame = match kind {
                    b'$' => Frame::Bulk(data),
                    b'!' => Frame::BulkError(data),
                    _ => {
                        if data.len() < 4 || data[3] != b':' {
                            return Err(RespError::BadLength);
                        }
                        Frame::Verbatim {
                            format: &data[..3],
                            text: &data[4..],
                        }
                    }
                };
                Ok(Step::Done(frame, end + 2))
            }
            b'*' | b'%' | b'~' | b'|' | b'>' => {
                let Some((count, start)) = self.header(src)? else {
                    return Ok(Step::Need(1));
                };
                let Some(count) = count else {
                    return if kind == b'*' {
                        Ok(Step::Done(Frame::Null, start))
                    } else {
                        Err(RespError::BadLength)
                    };
                };
                let pairs = matches!(kind, b'%' | b'|');
                let len = if pairs {
                    count.saturating_mul(2)
                } else {
                    count
                };
                if len > self.max_array as u64 {
                    return Err(RespError::ArrayTooLong {
                        len,
                        max: self.max_array,
                    });
                }
                if depth >= self.max_depth {
                    return Err(RespError::TooDeep {
                        max: self.max_depth,
                    });
                }
                let len = len as usize;
                let mut pos = start;
                for _ in 0..len {
                    match self.value(&src[pos..], depth + 1)? {
                        Step::Done(_, used) => pos += used,
                        Step::Need(n) => return Ok(Step::Need(n)),
                    }
                }
                let agg = Aggregate {
                    len,
                    body: &src[start..pos],
                };
                let frame = match kind {
                    b'*' => Frame::Array(agg),
                    b'%' => Frame::Map(agg),
                    b'~' => Frame::Set(agg),
                    b'|' => Frame::Attribute(agg),
                    _ => Frame::Push(agg),
                };
                Ok(Step::Done(frame, pos))
            }
            _ if self.inline && depth == 0 => {
                let Some((line, used)) = self.line(src, 0, self.max_line)? else {
                    return Ok(Step::Need(1));
                };
                let line = line.strip_suffix(b"\r").unwrap_or(line);
                Ok(Step::Done(Frame::Inline(line), used))
            }
            other => Err(RespError::BadType(other)),
        }
    }

    /// The line starting at `from`, without its ending, and the offset past
    /// it. RESP lines end in CRLF; inline lines (`from == 0`) may end in LF
    /// alone.
    fn line<'a>(
        &self,
        src: &'a [u8],
        from: usize,
        max: usize,
    ) -> Result<Option<(&'a [u8], usize)>, RespError> {
        let body = &src[from..];
        match body.iter().position(|&b| b == b'\n') {
            Some(lf) => {
                if lf > max.saturating_add(1) {
                    return Err(RespError::LineTooLong { max });
                }
                if from == 0 {
                    return Ok(Some((&body[..lf], from + lf + 1)));
                }
                if lf == 0 || body[lf - 1] != b'\r' {
                    return Err(RespError::MissingCrlf);
                }
                Ok(Some((&body[..lf - 1], from + lf + 1)))
            }
            None if body.len() > max.saturating_add(1) => Err(RespError::LineTooLong { max }),
            None => Ok(None),
        }
    }

    /// A length or count header: `Some(len)`, `None` for -1, and the offset
    /// of what follows.
    fn header(&self, src: &[u8]) -> Result<Option<(Option<u64>, usize)>, RespError> {
        let body = &src[1..];
        let Some(lf) = body
            .iter()
            .take(MAX_HEADER_DIGITS)
            .position(|&b| b == b'\n')
        else {
            return if body.len() >= MAX_HEADER_DIGITS {
                Err(RespError::BadLength)
            } else {
                Ok(None)
            };
        };
        if lf == 0 || body[lf - 1] != b'\r' {
            return Err(RespError::MissingCrlf);
        }
        let digits = &body[..lf - 1];
        if digits == b"?" {
            return Err(RespError::Streamed);
        }
        if digits == b"-1" {
            return Ok(Some((None, lf + 2)));
        }
        let len = parse_u64(digits).ok_or(RespError::BadLength)?;
        Ok(Some((Some(len), lf + 2)))
    }
}

fn parse_u64(digits: &[u8]) -> Option<u64> {
    if digits.is_empty() || digits.len() > 20 {
        return None;
    }
    let mut n: u64 = 0;
    for &d in digits {
        if !d.is_ascii_digit() {
            return None;
        }
        n = n.checked_mul(10)?.checked_add(u64::from(d - b'0'))?;
    }
    Some(n)
}

/// Parses a decimal `i64` the way Redis does: optional `-`, digits, no
/// overflow, no leading `+` or spaces.
pub fn parse_i64(text: &[u8]) -> Option<i64> {
    let (neg, digits) = match text.split_first() {
        Some((b'-', rest)) => (true, rest),
        _ => (false, text),
    };
    if digits.is_empty() || digits.len() > 19 {
        return None;
    }
    let mut n: i64 = 0;
    for &d in digits {
        if !d.is_ascii_digit() {
            return None;
        }
        let d = i64::from(d - b'0');
        n = n.checked_mul(10)?;
        n = if neg {
            n.checked_sub(d)?
        } else {
            n.checked_add(d)?
        };
    }
    Some(n)
}

fn parse_double(text: &[u8]) -> Option<f64> {
    match text {
        b"inf" => Some(f64::INFINITY),
        b"-inf" => Some(f64::NEG_INFINITY),
        b"nan" => Some(f64::NAN),
        _ => {
            // Only the characters of a decimal float: `f64::from_str` would
            // also accept words such as "infinity".
            if !text
                .iter()
                .all(|b| b.is_ascii_digit() || matches!(b, b'-' | b'+' | b'.' | b'e' | b'E'))
            {
                return None;
            }
            std::str::from_utf8(text).ok()?.parse().ok()
        }
    }
}

/// Formats `n` in decimal into `buf`, returning the digits.
fn format_i64(n: i64, buf: &mut [u8; 20]) -> &[u8] {
    let mut pos = buf.len();
    let mut v = n.unsigned_abs();
    loop {
        pos -= 1;
        buf[pos] = b'0' + (v % 10) as u8;
        v /= 10;
        if v == 0 {
            break;
        }
    }
    if n < 0 {
        pos -= 1;
        buf[pos] = b'-';
    }
    &buf[pos..]
}

/// Encodes RESP frames into an output that takes byte slices.
///
/// Only [`put`](RespWrite::put) is required; every other method is built on
/// it and allocates nothing (numbers are formatted on the stack). Implemented
/// for `Vec<u8>` and for [`Conn`], so a reply goes straight into the
/// connection's output.
pub trait RespWrite {
    /// Appends raw bytes.
    fn put(&mut self, bytes: &[u8]);

    /// `+text\r\n`. The text must not contain CR or LF.
    fn put_simple(&mut self, text: &[u8]) {
        self.put(b"+");
        self.put(text);
        self.put(b"\r\n");
    }

    /// `-text\r\n` (e.g. `ERR unknown command`). No CR or LF in the text.
    fn put_error(&mut self, text: &[u8]) {
        self.put(b"-");
        self.put(text);
        self.put(b"\r\n");
    }

    /// `kind`, the decimal `n`, CRLF (a length or count header).
    fn put_line(&mut self, kind: u8, n: i64) {
        let mut line = [0u8; 24];
        self.put(prefixed(kind, n, &mut line));
    }

    /// `:n\r\n`.
    fn put_integer(&mut self, n: i64) {
        self.put_line(b':', n);
    }

    /// `$len\r\ndata\r\n`.
    fn put_bulk(&mut self, data: &[u8]) {
        self.put_line(b'$', data.len() as i64);
        self.put(data);
        self.put(b"\r\n");
    }

    /// RESP2's null bulk string, `$-1\r\n`.
    fn put_null_bulk(&mut self) {
        self.put(b"$-1\r\n");
    }

    /// RESP2's null array, `*-1\r\n`.
    fn put_null_array(&mut self) {
        self.put(b"*-1\r\n");
    }

    /// RESP3's null, `_\r\n`.
    fn put_null(&mut self) {
        self.put(b"_\r\n");
    }

    /// An array header: `len` elements follow.
    fn put_array(&mut self, len: usize) {
        self.put_line(b'*', len as i64);
    }

    /// A RESP3 map header: `pairs` key/value pairs follow.
    fn put_map(&mut self, pairs: usize) {
        self.put_line(b'%', pairs as i64);
    }

    /// A RESP3 set header.
    fn put_set(&mut self, len: usize) {
        self.put_line(b'~', len as i64);
    }

    /// A RESP3 push header.
    fn put_push(&mut self, len: usize) {
        self.put_line(b'>', len as i64);
    }

    /// RESP3 `#t` / `#f`.
    fn put_boolean(&mut self, value: bool) {
        self.put(if value { b"#t\r\n" } else { b"#f\r\n" });
    }

    /// RESP3 double.
    fn put_double(&mut self, value: f64) {
        if value.is_nan() {
            self.put(b",nan\r\n");
        } else if value.is_infinite() {
            self.put(if value > 0.0 {
                b",inf\r\n"
            } else {
                b",-inf\r\n"
            });
        } else {
            // `{:?}` prints the shortest text that parses back to the same
            // value; it allocates nothing through a stack buffer.
            let mut buf = [0u8; 40];
            let mut cursor = std::io::Cursor::new(&mut buf[..]);
            let _ = std::io::Write::write_fmt(&mut cursor, format_args!("{value:?}"));
            let len = cursor.position() as usize;
            self.put(b",");
            self.put(&buf[..len]);
            self.put(b"\r\n");
        }
    }

    /// A command: an array of bulk strings.
    fn put_command(&mut self, args: &[&[u8]]) {
        self.put_array(args.len());
        for arg in args {
            self.put_bulk(arg);
        }
    }

    /// Re-encodes a decoded frame (proxies, tests).
    fn put_frame(&mut self, frame: &Frame<'_>) {
        let aggregate = |me: &mut Self, kind: u8, agg: &Aggregate<'_>, pairs: bool| {
            let n = if pairs { agg.len() / 2 } else { agg.len() };
            me.put_line(kind, n as i64);
            for element in agg.iter() {
                me.put_frame(&element);
            }
        };
        match frame {
            Frame::Simple(s) => self.put_simple(s),
            Frame::Error(s) => self.put_error(s),
            Frame::Integer(n) => self.put_integer(*n),
            Frame::Bulk(b) => self.put_bulk(b),
            Frame::Null => self.put_null(),
            Frame::Array(a) => aggregate(self, b'*', a, false),
            Frame::Boolean(b) => self.put_boolean(*b),
            Frame::Double(d) => self.put_double(*d),
            Frame::BigNumber(n) => {
                self.put(b"(");
                self.put(n);
                self.put(b"\r\n");
            }
            Frame::BulkError(b) => {
                self.put_line(b'!', b.len() as i64);
                self.put(b);
                self.put(b"\r\n");
            }
            Frame::Verbatim { format, text } => {
                self.put_line(b'=', (text.len() + 4) as i64);
                self.put(format);
                self.put(b":");
                self.put(text);
                self.put(b"\r\n");
            }
            Frame::Map(a) => aggregate(self, b'%', a, true),
            Frame::Set(a) => aggregate(self, b'~', a, false),
            Frame::Attribute(a) => aggregate(self, b'|', a, true),
            Frame::Push(a) => aggregate(self, b'>', a, false),
            Frame::Inline(line) => {
                self.put(line);
                self.put(b"\r\n");
            }
        }
    }
}

/// `kind` followed by `n` and CRLF, formatted into `line`.
fn prefixed(kind: u8, n: i64, line: &mut [u8; 24]) -> &[u8] {
    let mut digits = [0u8; 20];
    let digits = format_i64(n, &mut digits);
    line[0] = kind;
    line[1..=digits.len()].copy_from_slice(digits);
    line[digits.len() + 1..digits.len() + 3].copy_from_slice(b"\r\n");
    &line[..digits.len() + 3]
}

impl RespWrite for Vec<u8> {
    fn put(&mut self, bytes: &[u8]) {
        self.extend_from_slice(bytes);
    }
}

impl<S> RespWrite for Conn<'_, S> {
    fn put(&mut self, bytes: &[u8]) {
        self.write(bytes);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// An owned model of a frame, to compare decoded frames with.
    #[derive(Debug, Clone, PartialEq)]
    enum Value {
        Simple(Vec<u8>),
        Error(Vec<u8>),
        Integer(i64),
        Bulk(Vec<u8>),
        Null,
        Array(Vec<Value>),
        Boolean(bool),
        Double(u64),
        BigNumber(Vec<u8>),
        BulkError(Vec<u8>),
        Verbatim(Vec<u8>, Vec<u8>),
        Map(Vec<Value>),
        Set(Vec<Value>),
        Push(Vec<Value>),
    }

    fn model(frame: &Frame<'_>) -> Value {
        let all = |a: &Aggregate<'_>| a.iter().map(|f| model(&f)).collect();
        match frame {
            Frame::Simple(s) => Value::Simple(s.to_vec()),
            Frame::Error(s) => Value::Error(s.to_vec()),
            Frame::Integer(n) => Value::Integer(*n),
            Frame::Bulk(b) => Value::Bulk(b.to_vec()),
            Frame::Null => Value::Null,
            Frame::Array(a) => Value::Array(all(a)),
            Frame::Boolean(b) => Value::Boolean(*b),
            Frame::Double(d) => Value::Double(d.to_bits()),
            Frame::BigNumber(n) => Value::BigNumber(n.to_vec()),
            Frame::BulkError(b) => Value::BulkError(b.to_vec()),
            Frame::Verbatim { format, text } => Value::Verbatim(format.to_vec(), text.to_vec()),
            Frame::Map(a) => Value::Map(all(a)),
            Frame::Set(a) => Value::Set(all(a)),
            Frame::Push(a) => Value::Push(all(a)),
            Frame::Attribute(_) => unreachable!("attributes are not generated"),
            Frame::Inline(_) => unreachable!("inline lines are not generated"),
        }
    }

    fn encode(v: &Value, out: &mut Vec<u8>) {
        match v {
            Value::Simple(s) => out.put_simple(s),
            Value::Error(s) => out.put_error(s),
            Value::Integer(n) => out.put_integer(*n),
            Value::Bulk(b) => out.put_bulk(b),
            Value::Null => out.put_null(),
            Value::Array(items) => {
                out.put_array(items.len());
                items.iter().for_each(|i| encode(i, out));
            }
            Value::Boolean(b) => out.put_boolean(*b),
            Value::Double(bits) => out.put_double(f64::from_bits(*bits)),
            Value::BigNumber(n) => out.put_frame(&Frame::BigNumber(n)),
            Value::BulkError(b) => out.put_frame(&Frame::BulkError(b)),
            Value::Verbatim(f, t) => out.put_frame(&Frame::Verbatim { format: f, text: t }),
            Value::Map(items) => {
                out.put_map(items.len() / 2);
                items.iter().for_each(|i| encode(i, out));
            }
            Value::Set(items) => {
                out.put_set(items.len());
                items.iter().for_each(|i| encode(i, out));
            }
            Value::Push(items) => {
                out.put_push(items.len());
                items.iter().for_each(|i| encode(i, out));
            }
        }
    }

    fn line() -> impl Strategy<Value = Vec<u8>> {
        proptest::collection::vec(
            any::<u8>().prop_filter("no CR/LF", |b| *b != b'\r' && *b != b'\n'),
            0..12,
        )
    }

    fn value() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            line().prop_map(Value::Simple),
            line().prop_map(Value::Error),
            any::<i64>().prop_map(Value::Integer),
            proptest::collection::vec(any::<u8>(), 0..40).prop_map(Value::Bulk),
            Just(Value::Null),
            any::<bool>().prop_map(Value::Boolean),
            any::<f64>()
                .prop_filter("nan has many encodings", |d| !d.is_nan())
                .prop_map(|d| Value::Double(d.to_bits())),
            (any::<bool>(), proptest::collection::vec(b'0'..=b'9', 1..30)).prop_map(
                |(neg, mut d)| {
                    if neg {
                        d.insert(0, b'-');
                    }
                    Value::BigNumber(d)
                }
            ),
            proptest::collection::vec(any::<u8>(), 0..20).prop_map(Value::BulkError),
            proptest::collection::vec(any::<u8>(), 0..20)
                .prop_map(|t| Value::Verbatim(b"txt".to_vec(), t)),
        ];
        leaf.prop_recursive(4, 64, 6, |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
                proptest::collection::vec(inner.clone(), 0..3).prop_map(|v| {
                    let mut pairs = v.clone();
                    pairs.extend(v);
                    Value::Map(pairs)
                }),
                proptest::collection::vec(inner.clone(), 0..6).prop_map(Value::Set),
                proptest::collection::vec(inner, 0..6).prop_map(Value::Push),
            ]
        })
    }

    /// Decodes `wire` fed in chunks of the given sizes, the way a connection
    /// receives it, and returns the frames' models.
    fn decode_chunked(resp: &Resp, wire: &[u8], chunks: &[usize]) -> Result<Vec<Value>, RespError> {
        let mut inbound = Vec::new();
        let mut out = Vec::new();
        let mut fed = 0;
        let mut sizes = chunks.iter().cycle();
        while fed < wire.len() {
            let n = (*sizes.next().unwrap_or(&1)).clamp(1, wire.len() - fed);
            inbound.extend_from_slice(&wire[fed..fed + n]);
            fed += n;
            let mut pos = 0;
            while let Decoded::Frame(frame, used) = resp.decode(&inbound[pos..])? {
                out.push(model(&frame));
                pos += used;
            }
            inbound.drain(..pos);
        }
        assert!(inbound.is_empty(), "bytes left over");
        Ok(out)
    }

    proptest! {
        #[test]
        fn encode_decode_round_trip_any_chunking(
            values in proptest::collection::vec(value(), 1..6),
            chunks in proptest::collection::vec(1usize..20, 1..8),
        ) {
            let mut wire = Vec::new();
            values.iter().for_each(|v| encode(v, &mut wire));
            let resp = Resp::client();
            prop_assert_eq!(decode_chunked(&resp, &wire, &[wire.len()]).unwrap(), values.clone());
            prop_assert_eq!(decode_chunked(&resp, &wire, &chunks).unwrap(), values);
        }

        #[test]
        fn arbitrary_bytes_never_panic_and_frames_stay_in_bounds(
            data in proptest::collection::vec(any::<u8>(), 0..200),
        ) {
            let resp = Resp::new().max_depth(4).max_array(16).max_bulk(64);
            if let Ok(Decoded::Frame(frame, used)) = resp.decode(&data) {
                prop_assert!(used >= 1 && used <= data.len());
                let mut again = Vec::new();
                again.put_frame(&frame);
            }
        }

        #[test]
        fn inline_args_split_on_whitespace(words in proptest::collection::vec("[a-z0-9]{1,8}", 0..6)) {
            let line = format!("{}\r\n", words.join("  \t"));
            let Decoded::Frame(frame, used) = Resp::new().decode(line.as_bytes()).unwrap() else {
                panic!("incomplete");
            };
            prop_assert_eq!(used, line.len());
            let args: Vec<Vec<u8>> = frame.args().unwrap().map(<[u8]>::to_vec).collect();
            let expected: Vec<Vec<u8>> = words.iter().map(|w| w.as_bytes().to_vec()).collect();
            prop_assert_eq!(args, expected);
        }
    }

    #[test]
    fn limits_fail_at_the_header() {
        let resp = Resp::new().max_bulk(1024).max_array(8).max_depth(2);
        assert_eq!(
            resp.decode(b"$4294967296\r\n"),
            Err(RespError::BulkTooLong {
                len: 4294967296,
                max: 1024
            })
        );
        assert_eq!(
            resp.decode(b"*9\r\n"),
            Err(RespError::ArrayTooLong { len: 9, max: 8 })
        );
        assert_eq!(
            resp.decode(b"%5\r\n"),
            Err(RespError::ArrayTooLong { len: 10, max: 8 })
        );
        assert_eq!(
            resp.decode(b"*1\r\n*1\r\n*1\r\n"),
            Err(RespError::TooDeep { max: 2 })
        );
        assert_eq!(resp.decode(b"*1\r\n*1\r\n:1\r\n").map(|_| ()), Ok(()));
        assert_eq!(
            resp.decode(b"$99999999999999999999999999"),
            Err(RespError::BadLength)
        );
        assert_eq!(resp.decode(b"*-2\r\n"), Err(RespError::BadLength));
        assert_eq!(resp.decode(b"$?\r\n"), Err(RespError::Streamed));
        let short = Resp::new().max_line(8);
        assert_eq!(
            short.decode(b"PING PING PING"),
            Err(RespError::LineTooLong { max: 8 })
        );
        assert_eq!(
            short.decode(b"+0123456789\r\n"),
            Err(RespError::LineTooLong { max: 8 })
        );
    }

    #[test]
    fn incomplete_reports_what_a_bulk_still_needs() {
        let resp = Resp::new();
        assert_eq!(
            resp.decode(b"$10\r\nab"),
            Ok(Decoded::Incomplete { needed: 10 })
        );
        assert_eq!(
            resp.decode(b"*2\r\n$1\r\na\r\n"),
            Ok(Decoded::Incomplete { needed: 1 })
        );
        assert_eq!(resp.decode(b""), Ok(Decoded::Incomplete { needed: 1 }));
    }

    #[test]
    fn malformed_frames_are_typed_errors() {
        let resp = Resp::client();
        assert_eq!(resp.decode(b"PING\r\n"), Err(RespError::BadType(b'P')));
        assert_eq!(resp.decode(b":12a\r\n"), Err(RespError::BadNumber));
        assert_eq!(
            resp.decode(b":99999999999999999999\r\n"),
            Err(RespError::BadNumber)
        );
        assert_eq!(resp.decode(b"$3\r\nabcd\r\n"), Err(RespError::MissingCrlf));
        assert_eq!(resp.decode(b"+OK\n"), Err(RespError::MissingCrlf));
        assert_eq!(resp.decode(b"#x\r\n"), Err(RespError::BadNumber));
        assert_eq!(resp.decode(b",infinity\r\n"), Err(RespError::BadNumber));
        assert_eq!(
            Resp::new()
                .decode(b"*1\r\n:1\r\n")
                .unwrap_or(Decoded::Incomplete { needed: 1 }),
            Decoded::Frame(
                Frame::Array(Aggregate {
                    len: 1,
                    body: b":1\r\n"
                }),
                8
            )
        );
        let Ok(Decoded::Frame(frame, _)) = Resp::new().decode(b"*1\r\n:1\r\n") else {
            panic!()
        };
        assert_eq!(frame.args().err(), Some(RespError::NotACommand));
    }

    #[test]
    fn nulls_and_integers() {
        let resp = Resp::client();
        assert_eq!(resp.decode(b"$-1\r\n"), Ok(Decoded::Frame(Frame::Null, 5)));
        assert_eq!(resp.decode(b"*-1\r\n"), Ok(Decoded::Frame(Frame::Null, 5)));
        assert_eq!(resp.decode(b"_\r\n"), Ok(Decoded::Frame(Frame::Null, 3)));
        assert_eq!(
            resp.decode(b":-9223372036854775808\r\n"),
            Ok(Decoded::Frame(Frame::Integer(i64::MIN), 23))
        );
        let mut out = Vec::new();
        out.put_integer(i64::MIN);
        out.put_integer(0);
        assert_eq!(out, b":-9223372036854775808\r\n:0\r\n");
    }
}
