//! The protocols tether-load speaks: how a request is written and how responses
//! are read and checked. One file per protocol; each implements [`Protocol`].
//!
//! A protocol keeps per-connection state ([`Protocol::Conn`]) and is otherwise
//! shared by every connection of a run. Neither method may allocate in steady
//! state: requests are appended to a reused buffer, responses are read in place.

pub mod echo;
pub mod frame;
pub mod http;
pub mod resp;
pub mod ws;

use std::fmt;

use crate::rng::Rng;

/// How requests are written and responses read.
pub trait Protocol: Send + Sync + 'static {
    /// What one connection remembers between calls (a parse position, the next
    /// sequence number). Reset to its default whenever a connection (re)opens.
    type Conn: Default + Send + 'static;

    /// Appends one request of connection `index` to `out`.
    fn request(&self, conn: &mut Self::Conn, index: u32, rng: &mut Rng, out: &mut Vec<u8>);

    /// Reads and checks responses from the front of `input`, at most `in_flight`
    /// of them (more is [`ProtoError::Unexpected`]).
    ///
    /// # Errors
    ///
    /// A [`ProtoError`] when the bytes are not what the protocol allows or the
    /// request asked for: the connection is then closed and the run fails.
    fn responses(
        &self,
        conn: &mut Self::Conn,
        index: u32,
        input: &[u8],
        in_flight: u32,
    ) -> Result<Responses, ProtoError>;
}

/// What one [`Protocol::responses`] call read.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Responses {
    /// Input bytes used; the rest stays buffered for the next call.
    pub consumed: usize,
    /// Responses completed, in request order.
    pub completed: u32,
    /// How many of those were well-formed refusals: a non-2xx HTTP status, a
    /// Redis error reply. Counted, not fatal.
    pub refused: u32,
    /// The last completed response asked for the connection to close
    /// (`Connection: close`).
    pub close: bool,
}

/// A response that proves the server (or the network) wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProtoError {
    /// A byte differs from the one the request asked for.
    Mismatch {
        /// Request sequence number on its connection.
        seq: u64,
        /// Offset of the byte within the response.
        offset: usize,
        /// The byte received.
        got: u8,
        /// The byte expected.
        want: u8,
    },
    /// Bytes arrived that no request in flight asked for.
    Unexpected {
        /// How many.
        bytes: usize,
    },
    /// The response does not parse.
    Malformed(String),
}

impl fmt::Display for ProtoError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ProtoError::Mismatch {
                seq,
                offset,
                got,
                want,
            } => write!(
                f,
                "response {seq}: byte {offset} is {got:#04x}, expected {want:#04x}"
            ),
            ProtoError::Unexpected { bytes } => {
                write!(f, "{bytes} bytes arrived that no request asked for")
            }
            ProtoError::Malformed(why) => write!(f, "malformed response: {why}"),
        }
    }
}

impl std::error::Error for ProtoError {}
