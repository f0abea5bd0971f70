//! Version 1: `PROXY TCP4 src dst sport dport\r\n`, at most 107 bytes.

use std::net::{IpAddr, SocketAddr};

use super::header::{Addresses, Command, ProxyHeader, Transport, Version};
use super::{Parsed, ProxyError, V1_SIGNATURE, V1Fault};

/// Parses a v1 line; `input` starts like the signature. `limit` caps the line,
/// CRLF included.
pub(super) fn parse(input: &[u8], limit: usize) -> Result<Parsed, ProxyError> {
    let window = &input[..input.len().min(limit)];
    let Some(lf) = window.iter().position(|&b| b == b'\n') else {
        if window.len() >= limit {
            return Err(ProxyError::TooLong { limit });
        }
        // Control bytes other than CR can never become a valid line: fail now
        // instead of waiting for the deadline.
        if window.iter().any(|&b| b < 0x20 && b != b'\r') {
            return Err(ProxyError::BadV1(V1Fault::LineEnding));
        }
        return Ok(Parsed::Incomplete);
    };
    if lf < V1_SIGNATURE.len() || window[lf - 1] != b'\r' {
        return Err(ProxyError::BadV1(V1Fault::LineEnding));
    }
    let line = &window[V1_SIGNATURE.len()..lf - 1];
    let header = parse_line(line)?;
    Ok(Parsed::Header {
        header,
        len: lf + 1,
    })
}

fn parse_line(line: &[u8]) -> Result<ProxyHeader, ProxyError> {
    let fault = |f| ProxyError::BadV1(f);
    if line.iter().any(|&b| b < 0x20 || b == 0x7f) {
        return Err(fault(V1Fault::LineEnding));
    }
    // Printable ASCII only, so this cannot fail; the check keeps it typed.
    let line = std::str::from_utf8(line).map_err(|_| fault(V1Fault::LineEnding))?;
    if line == "UNKNOWN" || line.starts_with("UNKNOWN ") {
        return Ok(ProxyHeader {
            version: Version::V1,
            command: Command::Proxy,
            transport: Transport::Stream,
            addresses: Addresses::Unspec,
            tlvs: Box::default(),
        });
    }
    let (proto, rest) = line.split_once(' ').ok_or(fault(V1Fault::Protocol))?;
    let v4 = match proto {
        "TCP4" => true,
        "TCP6" => false,
        _ => return Err(fault(V1Fault::Protocol)),
    };
    let mut fields = rest.split(' ');
    let (Some(src), Some(dst), Some(sport), Some(dport), None) = (
        fields.next(),
        fields.next(),
        fields.next(),
        fields.next(),
        fields.next(),
    ) else {
        return Err(fault(V1Fault::Fields));
    };
    let ip = |s: &str| -> Result<IpAddr, ProxyError> {
        let ip: IpAddr = s.parse().map_err(|_| fault(V1Fault::Address))?;
        if ip.is_ipv4() != v4 {
            return Err(fault(V1Fault::Address));
        }
        Ok(ip)
    };
    let source = SocketAddr::new(ip(src)?, port(sport)?);
    let destination = SocketAddr::new(ip(dst)?, port(dport)?);
    Ok(ProxyHeader::new(Version::V1, source, destination))
}

/// A decimal port: digits only, no leading zero (but "0" itself), at most 65535.
fn port(s: &str) -> Result<u16, ProxyError> {
    let bad = ProxyError::BadV1(V1Fault::Port);
    if s.is_empty() || s.len() > 5 || !s.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad);
    }
    if s.len() > 1 && s.starts_with('0') {
        return Err(bad);
    }
    s.parse().map_err(|_| bad)
}
