//! Parsing of listen and dial addresses: `host:port`, `tcp://`, `tcp4://`,
//! `tcp6://`, `udp://`, `udp4://`, `udp6://`, `unix://`.

use std::fmt;
use std::net::{SocketAddr, ToSocketAddrs};
use std::path::PathBuf;

use super::printable::{escaped, printable};

/// The longest `unix://` path a Linux socket address holds (`sun_path` less
/// its terminating NUL).
const MAX_UNIX_PATH: usize = 107;

/// The longest host name DNS allows.
const MAX_HOST: usize = 253;

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
    /// A `unix://` path longer than a socket address holds (107 bytes on
    /// Linux), or with a NUL byte in it.
    BadPath(String),
    /// The host part is malformed: an unclosed `[`, an IPv6 literal outside
    /// brackets, spaces or control characters, or longer than a DNS name.
    Syntax(String),
    /// `:PORT` with no host: say `0.0.0.0:PORT` or `[::]:PORT` to bind every
    /// interface.
    EmptyHost(String),
}

impl fmt::Display for AddrError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The input is whatever a user or a peer typed: escaped and cut.
        let shown = |s: &str| format!("\"{}\"", printable(s));
        match self {
            AddrError::UnknownScheme(s) => write!(f, "unknown address scheme in {}", shown(s)),
            AddrError::MissingPort(s) => write!(f, "address {} has no port", shown(s)),
            AddrError::BadPort(s) => write!(
                f,
                "address {} has an invalid port (want digits, 0..=65535)",
                shown(s)
            ),
            AddrError::Unresolved(s) => write!(f, "address {} does not resolve", shown(s)),
            AddrError::EmptyPath(s) => write!(f, "address {} has no socket path", shown(s)),
            AddrError::BadPath(s) => write!(
                f,
                "address {} is not a usable socket path (at most {} bytes, no NUL)",
                shown(s),
                MAX_UNIX_PATH
            ),
            AddrError::Syntax(s) => write!(f, "address {} is malformed", shown(s)),
            AddrError::EmptyHost(s) => write!(
                f,
                "address {} has no host (say 0.0.0.0:PORT or [::]:PORT for every interface)",
                shown(s)
            ),
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
            "unix" if rest.len() > MAX_UNIX_PATH || rest.contains('\0') => {
                return Err(AddrError::BadPath(s.to_string()));
            }
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
    // The standard parser is strict (digits only, brackets paired) and knows
    // IPv6 scope ids; anything else goes through the checks below.
    if let Ok(addr) = hostport.parse::<SocketAddr>() {
        return check_family(original, addr, family);
    }
    let (host, port) = split_host_port(original, hostport)?;
    if let Ok(ip) = host.parse::<std::net::IpAddr>() {
        return check_family(original, SocketAddr::new(ip, port), family);
    }
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

/// Splits `host:port` or `[v6]:port` strictly: the port is 1 to 5 ASCII digits
/// (no sign, no spaces), brackets pair up and hold an IPv6 literal, and a name
/// is something DNS could hold. Nothing malformed reaches the resolver.
fn split_host_port<'a>(original: &str, hostport: &'a str) -> Result<(&'a str, u16), AddrError> {
    let syntax = || AddrError::Syntax(original.to_string());
    let (host, port) = if let Some(inner) = hostport.strip_prefix('[') {
        let (v6, after) = inner.split_once(']').ok_or_else(syntax)?;
        if v6.parse::<std::net::Ipv6Addr>().is_err() {
            return Err(syntax());
        }
        let port = after.strip_prefix(':').ok_or_else(|| match after {
            "" => AddrError::MissingPort(original.to_string()),
            _ => syntax(),
        })?;
        (v6, port)
    } else {
        let (host, port) = hostport
            .rsplit_once(':')
            .ok_or_else(|| AddrError::MissingPort(original.to_string()))?;
        if host.contains(':') || host.contains(']') {
            // An IPv6 literal must be bracketed, or its last group reads as a port.
            return Err(syntax());
        }
        (host, port)
    };
    if host.is_empty() {
        return Err(AddrError::EmptyHost(original.to_string()));
    }
    if host.len() > MAX_HOST || host.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(syntax());
    }
    let digits = !port.is_empty() && port.len() <= 5 && port.bytes().all(|b| b.is_ascii_digit());
    let port = digits
        .then(|| port.parse::<u16>().ok())
        .flatten()
        .ok_or_else(|| AddrError::BadPort(original.to_string()))?;
    Ok((host, port))
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
            ListenAddr::Unix(p) => write!(f, "unix://{}", escaped(&p.to_string_lossy())),
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

    #[test]
    fn malformed_input_is_refused_before_any_lookup() {
        let bad_port = [
            "127.0.0.1:+0",
            "127.0.0.1:-1",
            "127.0.0.1: 80",
            "127.0.0.1:",
            "[::1]:+1",
        ];
        for s in bad_port {
            assert!(
                matches!(ListenAddr::parse(s), Err(AddrError::BadPort(_))),
                "{s}"
            );
        }
        let syntax = [
            "[::1",
            "[::1:80",
            "::1:80",
            "[1.2.3.4]:80",
            "[::1]x80",
            "a b:80",
            "h\n:1",
        ];
        for s in syntax {
            assert!(
                matches!(ListenAddr::parse(s), Err(AddrError::Syntax(_))),
                "{s}"
            );
        }
        assert!(matches!(
            ListenAddr::parse("[::1]"),
            Err(AddrError::MissingPort(_))
        ));
        for s in [":80", "tcp://:80", "udp://:53", "[]:80"] {
            assert!(
                matches!(
                    ListenAddr::parse(s),
                    Err(AddrError::EmptyHost(_)) | Err(AddrError::Syntax(_))
                ),
                "{s}"
            );
        }
        assert!(matches!(
            ListenAddr::parse(":80"),
            Err(AddrError::EmptyHost(_))
        ));
        let long = format!("{}:80", "a".repeat(300));
        assert!(matches!(
            ListenAddr::parse(&long),
            Err(AddrError::Syntax(_))
        ));
        let path = format!("unix:///{}", "p".repeat(200));
        assert!(matches!(
            ListenAddr::parse(&path),
            Err(AddrError::BadPath(_))
        ));
        assert!(matches!(
            ListenAddr::parse("unix:///a\0b"),
            Err(AddrError::BadPath(_))
        ));
        assert_eq!(
            ListenAddr::parse("0.0.0.0:80").unwrap(),
            ListenAddr::Tcp("0.0.0.0:80".parse().unwrap())
        );
        assert_eq!(
            ListenAddr::parse("udp6://[::]:53").unwrap(),
            ListenAddr::Udp("[::]:53".parse().unwrap())
        );
    }

    #[test]
    fn messages_escape_and_cut_what_they_repeat() {
        let e = ListenAddr::parse(&format!("sctp://{}\u{1b}[2J", "x".repeat(5000))).unwrap_err();
        let m = e.to_string();
        assert!(m.len() < 300, "{}", m.len());
        assert!(!m.contains('\u{1b}'));
        let a = ListenAddr::parse("unix:///tmp/a\nb").unwrap();
        assert_eq!(a.to_string(), "unix:///tmp/a\\nb");
    }
}
