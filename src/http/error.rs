//! Why a request was refused, and the status it was answered with.

use std::fmt;

use super::chunked::ChunkedError;

/// A request the server refused. The connection is answered with
/// [`HttpError::status`] and closed after the answer is sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum HttpError {
    /// The request line or a header is malformed (400).
    Malformed(&'static str),
    /// The request head exceeds the configured size (431).
    HeadTooLarge {
        /// The configured maximum, in bytes.
        max: usize,
    },
    /// More headers than the configured count (431).
    TooManyHeaders {
        /// The configured maximum.
        max: usize,
    },
    /// `Content-Length` is not a number, or several disagree (400).
    BadContentLength,
    /// Both `Content-Length` and `Transfer-Encoding`, or `Transfer-Encoding`
    /// on HTTP/1.0 (400): a request smuggling vector.
    AmbiguousLength,
    /// A transfer coding other than `chunked` (501).
    UnsupportedTransferEncoding,
    /// The body exceeds the configured limit (413).
    BodyTooLarge {
        /// The configured limit, in bytes.
        max: u64,
    },
    /// A malformed chunked body (400).
    BadChunk(ChunkedError),
    /// An `Expect` other than `100-continue` (417).
    ExpectationFailed,
}

impl HttpError {
    /// The response status this error is answered with.
    pub fn status(&self) -> u16 {
        match self {
            Self::Malformed(_)
            | Self::BadContentLength
            | Self::AmbiguousLength
            | Self::BadChunk(ChunkedError::BadSize | ChunkedError::BadLineEnding)
            | Self::BadChunk(ChunkedError::LineTooLong) => 400,
            Self::HeadTooLarge { .. } | Self::TooManyHeaders { .. } => 431,
            Self::UnsupportedTransferEncoding => 501,
            Self::BodyTooLarge { .. } | Self::BadChunk(ChunkedError::TooLarge { .. }) => 413,
            Self::ExpectationFailed => 417,
        }
    }
}

impl fmt::Display for HttpError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Malformed(what) => write!(f, "malformed request: {what}"),
            Self::HeadTooLarge { max } => write!(f, "request head exceeds {max} bytes"),
            Self::TooManyHeaders { max } => write!(f, "more than {max} request headers"),
            Self::BadContentLength => f.write_str("invalid Content-Length"),
            Self::AmbiguousLength => f.write_str("ambiguous body length (Transfer-Encoding)"),
            Self::UnsupportedTransferEncoding => f.write_str("unsupported Transfer-Encoding"),
            Self::BodyTooLarge { max } => write!(f, "request body exceeds {max} bytes"),
            Self::BadChunk(e) => write!(f, "bad chunked body: {e}"),
            Self::ExpectationFailed => f.write_str("unsupported Expect"),
        }
    }
}

impl std::error::Error for HttpError {}
