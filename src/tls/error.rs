//! Why a TLS connection failed.

use std::fmt;

/// A TLS failure, carried by [`CloseReason::Tls`](crate::CloseReason::Tls).
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum TlsError {
    /// The handshake did not complete within the listener's or dial's handshake
    /// timeout.
    HandshakeTimeout,
    /// The handshake failed: a bad or unexpected message, no common parameters, a
    /// certificate that did not verify, or an alert from the peer
    /// (`rustls::Error::AlertReceived`).
    Handshake(rustls::Error),
    /// A record after the handshake failed to decrypt or broke the protocol, or
    /// the peer sent a fatal alert.
    Session(rustls::Error),
    /// The session could not be created (a configuration rustls refused).
    Config(rustls::Error),
}

impl fmt::Display for TlsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TlsError::HandshakeTimeout => f.write_str("TLS handshake timed out"),
            TlsError::Handshake(e) => write!(f, "TLS handshake failed: {e}"),
            TlsError::Session(e) => write!(f, "TLS session failed: {e}"),
            TlsError::Config(e) => write!(f, "TLS configuration refused: {e}"),
        }
    }
}

impl std::error::Error for TlsError {}
