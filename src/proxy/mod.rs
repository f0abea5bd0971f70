//! The PROXY protocol (HAProxy's, versions 1 and 2): the header an L4 balancer
//! puts in front of a connection so the real client address survives it.
//!
//! The parser is sans-IO: [`parse`] takes the bytes received so far and answers
//! with a complete [`ProxyHeader`] and its length, "need more", "no header here",
//! or a typed [`ProxyError`]. It never allocates before a header is complete and
//! never reads past [`ProxyConfig::max_header`] bytes.
//!
//! A listener configured with a [`ProxyConfig`] reads and strips the header
//! before the first callback, within [`ProxyConfig::timeout`].
//!
//! # Examples
//!
//! ```
//! use tether::proxy::{parse, Parsed, ProxyMode};
//!
//! let input = b"PROXY TCP4 192.0.2.1 192.0.2.2 40000 443\r\nGET / HTTP/1.1\r\n";
//! let Ok(Parsed::Header { header, len }) = parse(input, ProxyMode::Any, 4096) else {
//!     panic!("a valid v1 header");
//! };
//! assert_eq!(header.source().unwrap().to_string(), "192.0.2.1:40000");
//! assert_eq!(&input[len..], b"GET / HTTP/1.1\r\n");
//! ```

use std::fmt;
use std::time::Duration;

mod header;
mod v1;
mod v2;

pub use header::{Addresses, Command, ProxyHeader, Tlv, Tlvs, Transport, Version};
pub use v2::tlv_type;

/// The v1 signature.
pub const V1_SIGNATURE: &[u8; 6] = b"PROXY ";
/// The v2 signature (12 bytes).
pub const V2_SIGNATURE: &[u8; 12] = b"\r\n\r\n\0\r\nQUIT\n";
/// Longest v1 header, CRLF included (the specification's limit).
pub const V1_MAX_LEN: usize = 107;
/// Default limit on a whole header (v2 with TLVs).
pub const DEFAULT_MAX_HEADER: usize = 4096;
/// Default time a client has to deliver its header.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(3);

/// Which header versions a listener accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ProxyMode {
    /// No PROXY protocol: the first bytes are application data.
    #[default]
    Off,
    /// Version 1 (text) only.
    V1,
    /// Version 2 (binary) only.
    V2,
    /// Either version.
    Any,
}

impl ProxyMode {
    fn accepts_v1(self) -> bool {
        matches!(self, ProxyMode::V1 | ProxyMode::Any)
    }

    fn accepts_v2(self) -> bool {
        matches!(self, ProxyMode::V2 | ProxyMode::Any)
    }
}

impl std::str::FromStr for ProxyMode {
    type Err = String;

    /// Parses `off`, `v1`, `v2` or `any`.
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "off" => Ok(ProxyMode::Off),
            "v1" => Ok(ProxyMode::V1),
            "v2" => Ok(ProxyMode::V2),
            "any" => Ok(ProxyMode::Any),
            _ => Err(format!(
                "unknown PROXY protocol mode {s:?} (off, v1, v2, any)"
            )),
        }
    }
}

/// How a listener treats the PROXY protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProxyConfig {
    /// Accepted versions.
    pub mode: ProxyMode,
    /// Without a header the connection is closed with [`ProxyError::Missing`]
    /// (true, the default); when false, a connection whose first bytes are no
    /// header is served as it is, with its socket's peer address.
    pub required: bool,
    /// Longest header accepted, bytes. Default: [`DEFAULT_MAX_HEADER`]. A v1
    /// header is never longer than [`V1_MAX_LEN`] whatever this says.
    pub max_header: usize,
    /// How long a connection may take to deliver its header. Default:
    /// [`DEFAULT_TIMEOUT`].
    pub timeout: Duration,
}

impl ProxyConfig {
    /// A required header of the versions `mode` names, with the default limits.
    pub fn new(mode: ProxyMode) -> ProxyConfig {
        ProxyConfig {
            mode,
            required: true,
            max_header: DEFAULT_MAX_HEADER,
            timeout: DEFAULT_TIMEOUT,
        }
    }

    /// Sets whether a header must be present.
    pub fn required(mut self, required: bool) -> ProxyConfig {
        self.required = required;
        self
    }

    /// Sets the longest header accepted.
    pub fn max_header(mut self, max: usize) -> ProxyConfig {
        self.max_header = max;
        self
    }

    /// Sets the deadline for the header.
    pub fn timeout(mut self, timeout: Duration) -> ProxyConfig {
        self.timeout = timeout;
        self
    }
}

/// What [`parse`] found at the start of its input.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Parsed {
    /// A complete header of `len` bytes; application data follows it.
    Header {
        /// The header.
        header: ProxyHeader,
        /// Its length on the wire.
        len: usize,
    },
    /// The input is a prefix of a header (or of a signature): more bytes needed.
    Incomplete,
    /// The input does not start with a signature of an accepted version.
    Absent,
}

/// Why a PROXY protocol header was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ProxyError {
    /// A header was required and the connection started with something else.
    Missing,
    /// The header did not arrive within the configured timeout.
    Timeout,
    /// The connection closed before the header was complete.
    Truncated,
    /// The header is longer than the limit.
    TooLong {
        /// The limit in force.
        limit: usize,
    },
    /// A v1 line that does not follow the grammar; names the part at fault.
    BadV1(V1Fault),
    /// A v2 header whose version nibble is not 2.
    BadVersion(u8),
    /// A v2 command other than LOCAL (0) and PROXY (1).
    BadCommand(u8),
    /// A v2 address family or transport this parser does not know.
    BadFamily(u8),
    /// A v2 address block shorter than its family requires.
    ShortAddress {
        /// Bytes the family needs.
        needed: usize,
        /// Bytes the header's length left for it.
        got: usize,
    },
    /// A TLV runs past the end of the header.
    BadTlv {
        /// Offset of the TLV within the TLV block.
        offset: usize,
    },
}

/// The part of a v1 line that is malformed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum V1Fault {
    /// A line feed not preceded by a carriage return, or a stray control byte.
    LineEnding,
    /// The protocol is not `TCP4`, `TCP6` or `UNKNOWN`.
    Protocol,
    /// Not exactly four single-space separated fields after the protocol.
    Fields,
    /// An address that does not parse, or is of the other family.
    Address,
    /// A port that is not a decimal number in 0..=65535 without leading zeros.
    Port,
}

impl fmt::Display for V1Fault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            V1Fault::LineEnding => "bad line ending",
            V1Fault::Protocol => "unknown protocol",
            V1Fault::Fields => "wrong number of fields",
            V1Fault::Address => "bad address",
            V1Fault::Port => "bad port",
        })
    }
}

impl fmt::Display for ProxyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ProxyError::Missing => f.write_str("PROXY protocol header missing"),
            ProxyError::Timeout => f.write_str("PROXY protocol header timed out"),
            ProxyError::Truncated => f.write_str("connection closed inside the PROXY header"),
            ProxyError::TooLong { limit } => {
                write!(f, "PROXY protocol header longer than {limit} bytes")
            }
            ProxyError::BadV1(fault) => write!(f, "malformed PROXY v1 header: {fault}"),
            ProxyError::BadVersion(v) => write!(f, "PROXY v2 header with version {v}"),
            ProxyError::BadCommand(c) => write!(f, "PROXY v2 header with command {c}"),
            ProxyError::BadFamily(b) => write!(f, "PROXY v2 header with family byte {b:#04x}"),
            ProxyError::ShortAddress { needed, got } => write!(
                f,
                "PROXY v2 address block of {got} bytes, the family needs {needed}"
            ),
            ProxyError::BadTlv { offset } => {
                write!(f, "PROXY v2 TLV at offset {offset} overruns the header")
            }
        }
    }
}

impl std::error::Error for ProxyError {}

/// Parses a PROXY protocol header at the start of `input`, accepting the versions
/// `mode` names and no header longer than `max_header` bytes.
///
/// # Errors
///
/// A typed [`ProxyError`] for a header that is malformed or too long. An input
/// that is simply not a header is [`Parsed::Absent`], not an error; whether that
/// is acceptable is the caller's policy ([`ProxyConfig::required`]).
pub fn parse(input: &[u8], mode: ProxyMode, max_header: usize) -> Result<Parsed, ProxyError> {
    if mode.accepts_v1() && starts_like(input, V1_SIGNATURE) {
        return v1::parse(input, max_header.min(V1_MAX_LEN));
    }
    if mode.accepts_v2() && starts_like(input, V2_SIGNATURE) {
        return v2::parse(input, max_header);
    }
    Ok(Parsed::Absent)
}

/// True when `input` and `signature` agree on their common prefix (so the input
/// is, or may become, a header with that signature). Empty input may.
fn starts_like(input: &[u8], signature: &[u8]) -> bool {
    let n = input.len().min(signature.len());
    input[..n] == signature[..n]
}

#[cfg(test)]
mod tests;
