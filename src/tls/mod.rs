//! TLS through rustls (feature `tls`), driven sans-IO by the event loop.
//!
//! [`TlsSession`] is the driver: ciphertext in, plaintext out, ciphertext
//! queued, over rustls's unbuffered API so that the caller owns every buffer. The
//! event loop runs one per TLS connection, and handlers see only plaintext.

mod error;
mod pem;
mod session;

pub use error::TlsError;
pub use pem::{PemError, server_config_from_pem};
pub use session::TlsSession;

use std::sync::Arc;

use rustls::pki_types::{InvalidDnsNameError, ServerName};

/// TLS for a dialed connection: the client configuration and the name the
/// server's certificate must carry (also sent as SNI).
#[derive(Debug, Clone)]
pub struct ClientTls {
    /// The rustls client configuration (roots, ALPN, versions).
    pub config: Arc<rustls::ClientConfig>,
    /// The server's name.
    pub server_name: ServerName<'static>,
}

impl ClientTls {
    /// TLS to the server named `name` (a DNS name or an IP address).
    ///
    /// # Errors
    ///
    /// When `name` is neither.
    pub fn new(
        config: Arc<rustls::ClientConfig>,
        name: &str,
    ) -> Result<ClientTls, InvalidDnsNameError> {
        let server_name = ServerName::try_from(name.to_string())?;
        Ok(ClientTls {
            config,
            server_name,
        })
    }
}

#[cfg(test)]
mod tests;
