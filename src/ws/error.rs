//! What can go wrong on an open WebSocket, each with the close code it earns.

use std::fmt;

use super::close::CloseCode;

/// A peer broke the WebSocket protocol; the connection is failed with
/// [`WsError::close_code`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum WsError {
    /// A framing rule was broken (reserved bits or opcodes, a fragmented or
    /// oversized control frame, a stray continuation, a missing or unexpected
    /// mask): 1002.
    Protocol(&'static str),
    /// A close frame carried a status code that may not be sent: 1002.
    InvalidCloseCode(u16),
    /// A text message or a close reason was not valid UTF-8: 1007.
    InvalidUtf8,
    /// A compressed message did not inflate: 1007.
    BadCompression,
    /// A message (after inflating) exceeded the maximum size: 1009.
    MessageTooBig {
        /// The configured maximum, bytes.
        max: usize,
    },
}

impl WsError {
    /// The status code to close with.
    pub fn close_code(&self) -> CloseCode {
        match self {
            WsError::Protocol(_) | WsError::InvalidCloseCode(_) => CloseCode::PROTOCOL,
            WsError::InvalidUtf8 | WsError::BadCompression => CloseCode::INVALID_DATA,
            WsError::MessageTooBig { .. } => CloseCode::TOO_BIG,
        }
    }
}

impl fmt::Display for WsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            WsError::Protocol(what) => write!(f, "websocket protocol error: {what}"),
            WsError::InvalidCloseCode(code) => write!(f, "invalid close code {code}"),
            WsError::InvalidUtf8 => f.write_str("invalid UTF-8 in a text message or close reason"),
            WsError::BadCompression => f.write_str("a compressed message did not inflate"),
            WsError::MessageTooBig { max } => write!(f, "message larger than {max} bytes"),
        }
    }
}

impl std::error::Error for WsError {}
