//! Errors returned by the engine's public API.

use std::fmt;
use std::io;

use crate::net::AddrError;

/// Why an engine could not start.
#[derive(Debug)]
#[non_exhaustive]
pub enum Error {
    /// An address could not be parsed or resolved.
    Addr(AddrError),
    /// Creating a listener, poller or thread failed.
    Io(io::Error),
    /// An option has a value the engine cannot run with; names the option.
    InvalidOption(&'static str),
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Addr(e) => write!(f, "{e}"),
            Error::Io(e) => write!(f, "i/o error: {e}"),
            Error::InvalidOption(what) => write!(f, "invalid option: {what}"),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Addr(e) => Some(e),
            Error::Io(e) => Some(e),
            Error::InvalidOption(_) => None,
        }
    }
}

impl From<io::Error> for Error {
    fn from(e: io::Error) -> Self {
        Error::Io(e)
    }
}

impl From<AddrError> for Error {
    fn from(e: AddrError) -> Self {
        Error::Addr(e)
    }
}

/// Why a command for a connection could not be queued.
#[derive(Debug, Clone, Copy, PartialEq)]
#[non_exhaustive]
pub enum SendError {
    /// The engine has stopped; nothing is delivered any more.
    Stopped,
    /// The id names a loop this engine does not have.
    NoSuchLoop,
    /// The loop already has this many bytes queued from other threads, the
    /// configured maximum; retry once it has caught up.
    InboxFull {
        /// Bytes queued when the send was refused.
        queued: usize,
        /// `Options::max_inbox_bytes`.
        max: usize,
    },
    /// Only TCP and Unix stream addresses can be dialed.
    UnsupportedAddr,
    /// A reconnect policy with inconsistent settings.
    InvalidPolicy(crate::client::backoff::PolicyError),
    /// The loop's thread died (a panic outside any callback, e.g. in a
    /// connection state's `Drop`); its connections are gone and nothing sent
    /// to it is delivered. The engine's other loops keep serving.
    LoopDied {
        /// The loop that died.
        loop_id: usize,
    },
}

impl fmt::Display for SendError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SendError::Stopped => f.write_str("engine stopped"),
            SendError::NoSuchLoop => f.write_str("connection id names no loop of this engine"),
            SendError::InboxFull { queued, max } => {
                write!(f, "loop inbox full: {queued} bytes queued, at most {max}")
            }
            SendError::UnsupportedAddr => f.write_str("only tcp and unix addresses can be dialed"),
            SendError::InvalidPolicy(e) => write!(f, "invalid reconnect policy: {e}"),
            SendError::LoopDied { loop_id } => write!(f, "event loop {loop_id} died"),
        }
    }
}

impl std::error::Error for SendError {}
