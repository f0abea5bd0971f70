//! Loading a server certificate chain and key from PEM files.

use std::fmt;
use std::path::{Path, PathBuf};

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

/// Why [`server_config_from_pem`] failed.
#[derive(Debug)]
#[non_exhaustive]
pub enum PemError {
    /// A file could not be read or holds no valid PEM section of the kind
    /// wanted.
    File {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        error: rustls::pki_types::pem::Error,
    },
    /// The certificate file holds no certificate.
    NoCertificate(PathBuf),
    /// rustls refused the pair (the key does not match the certificate, say).
    Rustls(rustls::Error),
}

impl fmt::Display for PemError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PemError::File { path, error } => write!(f, "{}: {error}", path.display()),
            PemError::NoCertificate(path) => write!(f, "{}: no certificate", path.display()),
            PemError::Rustls(e) => write!(f, "certificate and key refused: {e}"),
        }
    }
}

impl std::error::Error for PemError {}

/// A server configuration (rustls's `ring` provider, its safe default versions,
/// no client authentication) for the certificate chain in `cert` and the
/// private key in `key`, both PEM. Set `alpn_protocols` on the result as
/// needed.
///
/// # Errors
///
/// [`PemError`] when a file cannot be read or parsed, or rustls refuses the
/// pair.
pub fn server_config_from_pem(cert: &Path, key: &Path) -> Result<rustls::ServerConfig, PemError> {
    let file_error = |path: &Path| {
        let path = path.to_path_buf();
        move |error| PemError::File { path, error }
    };
    let chain = CertificateDer::pem_file_iter(cert)
        .map_err(file_error(cert))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(file_error(cert))?;
    if chain.is_empty() {
        return Err(PemError::NoCertificate(cert.to_path_buf()));
    }
    let key = PrivateKeyDer::from_pem_file(key).map_err(file_error(key))?;
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .and_then(|b| b.with_no_client_auth().with_single_cert(chain, key))
        .map_err(PemError::Rustls)
}
