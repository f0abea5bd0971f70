//! TLS through rustls (feature `tls`), driven sans-IO by the event loop.
//!
//! [`TlsSession`] is the driver: ciphertext in, plaintext out, ciphertext
//! queued, over rustls's unbuffered API so that the caller owns every buffer. The
//! event loop runs one per TLS connection, and handlers see only plaintext.

mod error;
mod session;

pub use error::TlsError;
pub use session::TlsSession;

#[cfg(test)]
mod tests;
