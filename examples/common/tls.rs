//! The servers' TLS flags (`--tls-cert PEM --tls-key PEM`) and `tls://`
//! addresses. Without the `tls` feature the flags are refused as usage errors.

use super::Usage;

/// `--tls-cert` and `--tls-key` as given.
#[derive(Debug, Default)]
pub struct TlsFlags {
    cert: Option<String>,
    key: Option<String>,
}

/// The text `--help` shows for the flags.
pub const USAGE: &str = "[--tls-cert PEM --tls-key PEM]";

/// The server configuration the flags name, when built with `tls`.
#[cfg(feature = "tls")]
pub type ServerConfig = std::sync::Arc<rustls::ServerConfig>;
/// Without the `tls` feature there is no configuration to have.
#[cfg(not(feature = "tls"))]
pub type ServerConfig = std::convert::Infallible;

impl TlsFlags {
    /// Takes `flag` if it is one of these; false otherwise.
    pub fn flag(&mut self, cli: &mut super::Cli, flag: &str) -> Result<bool, Usage> {
        match flag {
            "--tls-cert" => self.cert = Some(cli.value(flag)?),
            "--tls-key" => self.key = Some(cli.value(flag)?),
            _ => return Ok(false),
        }
        Ok(true)
    }

    /// True when either flag was given.
    pub fn given(&self) -> bool {
        self.cert.is_some() || self.key.is_some()
    }

    /// The server configuration with `alpn` protocols, or `None` without the
    /// flags.
    pub fn config(&self, alpn: &[&[u8]]) -> Result<Option<ServerConfig>, Usage> {
        let (cert, key) = match (&self.cert, &self.key) {
            (None, None) => return Ok(None),
            (Some(c), Some(k)) => (c, k),
            _ => return Err(Usage("--tls-cert and --tls-key go together".into())),
        };
        #[cfg(feature = "tls")]
        {
            let mut cfg = tether::tls::server_config_from_pem(cert.as_ref(), key.as_ref())
                .map_err(|e| Usage(format!("--tls-cert/--tls-key: {e}")))?;
            cfg.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
            Ok(Some(std::sync::Arc::new(cfg)))
        }
        #[cfg(not(feature = "tls"))]
        {
            let _ = (cert, key, alpn);
            Err(Usage("--tls-cert needs a build with --features tls".into()))
        }
    }
}

/// An `--addr` value that may be `tls://host:port`: the rest is checked as
/// [`super::address`] does; returns the text as given.
pub fn address(
    flag: &str,
    value: String,
    serves: impl Fn(&tether::net::ListenAddr) -> Result<(), &'static str>,
) -> Result<String, Usage> {
    match value.strip_prefix("tls://") {
        Some(rest) => {
            super::address(flag, format!("tcp://{rest}"), |a| match a {
                tether::net::ListenAddr::Tcp(_) => serves(a),
                _ => Err("tls:// needs a TCP address"),
            })?;
            Ok(value)
        }
        None => super::address(flag, value, serves),
    }
}
