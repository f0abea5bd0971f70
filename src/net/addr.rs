//! Parsing of listen and dial addresses: `host:port`, `tcp://`, `tcp4://`,
//! `tcp6://`, `udp://`, `udp4://`, `udp6://`, `unix://`.

use std::fmt;
use std::net::{SocketAddr, ToSocketAddrs};
use std::path::PathBuf;

/// A parsed address to listen on or dial.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ListenAddr {
    /// A TCP socket address.
    Tcp(SocketAddr),
    /// A UDP socket address.
    Udp(SocketAddr),
    /// A Unix domain stream socket at a filesystem path.
    Unix(PathBuf),
}

/// Why an address string was rejected.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum AddrError {
    /// The scheme before `://` is not one tether serves.
    UnknownScheme(String),
    /// There is no `:port` part.
    MissingPort(String),
    /// The port is not a number in 0..=65535.
    BadPort(String),
    /// The host could not be resolved, or resolved to no address of the family the
    /// scheme asks for.
    Unresolved(String),
    /// A `unix://` address without a path.
    EmptyPath(String),
}

impl fmt::Display for AddrError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AddrError::UnknownScheme(s) => write!(f, "unknown address scheme in {s:?}"),
            AddrError::MissingPort(s) => write!(f, "address {s:?} has no port"),
            AddrError::BadPort(s) => write!(f, "address {s:?} has an invalid port"),
            AddrError::Unresolved(s) => write!(f, "address {s:?} does not resolve"),
            AddrError::EmptyPath(s) => write!(f, "address {s:?} has no socket path"),
        }
    }
}

impl std::error::Error for AddrError {}

#[derive(Clone, Copy, PartialEq)]
enum Family {
    Any,
    V4,
    V6,
}

impl ListenAddr {
    /// Parses `host:port` (TCP), `tcp://host:port`, `tcp4://`, `tcp6://[host]:port`,
    /// `udp://host:port`, `udp4://`, `udp6://` or `unix:///path/to/socket`; a host
    /// name is resolved once, here.
    ///
    /// # Examples
    ///
    /// ```
    /// use tether::net::ListenAddr;
    ///
    /// let a = ListenAddr::parse("tcp://127.0.0.1:9000").unwrap();
    /// assert_eq!(a, ListenAddr::parse("127.0.0.1:9000").unwrap());
    /// assert!(ListenAddr::parse("127.0.0.1").is_err());
    /// assert!(matches!(ListenAddr::parse("udp://127.0.0.1:53"), Ok(ListenAddr::Udp(_))));
    /// assert!(matches!(ListenAddr::parse("unix:///tmp/app.sock"), Ok(ListenAddr::Unix(_))));
    /// ```
    pub fn parse(s: &str) -> Result<ListenAddr, AddrError> {
        let (scheme, rest) = s.split_once("://").unwrap_or(("tcp", s));
        let family = match scheme {
            "tcp" | "udp" => Family::Any,
            "tcp4" | "udp4" => Family::V4,
            "tcp6" | "udp6" => Family::V6,
            "unix" if rest.is_empty() => return Err(AddrError::EmptyPath(s.to_string())),
            "unix" => return Ok(ListenAddr::Unix(PathBuf::from(rest))),
            _ => return Err(AddrError::UnknownScheme(s.to_string())),
        };
        let addr = resolve(s, rest, family)?;
        Ok(if scheme.starts_with("udp") {
            ListenAddr::Udp(addr)
        } else {
            ListenAddr::Tcp(addr)
        })
    }
}

fn resolve(original: &str, hostport: &str, family: Family) -> Result<SocketAddr, AddrError> {
    if let Ok(addr) = hostport.parse::<SocketAddr>() {
        return check_family(original, addr, family);
    }
    let (host, port) = hostport
        .rsplit_once(':')
        .ok_or_else(|| AddrError::MissingPort(original.to_string()))?;
    let port: u16 = port
        .parse()
        .map_err(|_| AddrError::BadPort(original.to_string()))?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let host = if host.is_empty() { "0.0.0.0" } else { host };
    (host, port)
        .to_socket_addrs()
        .map_err(|_| AddrError::Unresolved(original.to_string()))?
        .find(|a| match family {
            Family::Any => true,
            Family::V4 => a.is_ipv4(),
            Family::V6 => a.is_ipv6(),
        })
        .ok_or_else(|| AddrError::Unresolved(original.to_string()))
}

fn check_family(original: &str, addr: SocketAddr, family: Family) -> Result<SocketAddr, AddrError> {
    match (family, addr) {
        (Family::V4, SocketAddr::V6(_)) | (Family::V6, SocketAddr::V4(_)) => {
            Err(AddrError::Unresolved(original.to_string()))
        }
        _ => Ok(addr),
    }
}

impl std::str::FromStr for ListenAddr {
    type Err = AddrError;

    /// As [`ListenAddr::parse`].
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        ListenAddr::parse(s)
    }
}

impl From<SocketAddr> for ListenAddr {
    /// A socket address is a TCP address.
    fn from(addr: SocketAddr) -> Self {
        ListenAddr::Tcp(addr)
    }
}

impl fmt::Display for ListenAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ListenAddr::Tcp(a) => write!(f, "tcp://{a}"),
            ListenAddr::Udp(a) => write!(f, "udp://{a}"),
            ListenAddr::Unix(p) => write!(f, "unix://{}", p.display()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forms() {
        let want = ListenAddr::Tcp("127.0.0.1:80".parse().unwrap());
        assert_eq!(ListenAddr::parse("127.0.0.1:80").unwrap(), want);
        assert_eq!(ListenAddr::parse("tcp://127.0.0.1:80").unwrap(), want);
        assert_eq!(ListenAddr::parse("tcp4://127.0.0.1:80").unwrap(), want);
        assert_eq!(
            ListenAddr::parse("tcp6://[::1]:80").unwrap(),
            ListenAddr::Tcp("[::1]:80".parse().unwrap())
        );
        assert!(matches!(
            ListenAddr::parse("localhost:80"),
            Ok(ListenAddr::Tcp(_))
        ));
    }

    #[test]
    fn errors_name_the_problem() {
        assert!(matches!(
            ListenAddr::parse("sctp://1.2.3.4:5"),
            Err(AddrError::UnknownScheme(_))
        ));
        assert!(matches!(
            ListenAddr::parse("127.0.0.1"),
            Err(AddrError::MissingPort(_))
        ));
        assert!(matches!(
            ListenAddr::parse("host:99999"),
            Err(AddrError::BadPort(_))
        ));
        assert!(matches!(
            ListenAddr::parse("tcp6://127.0.0.1:5"),
            Err(AddrError::Unresolved(_))
        ));
    }
}
