//! Version 2: a 16-byte binary preamble, an address block and TLVs.

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};

use super::header::{Addresses, Command, ProxyHeader, Transport, Version};
use super::{Parsed, ProxyError, V2_SIGNATURE};

/// Registered TLV types (the specification's `PP2_TYPE_*`).
pub mod tlv_type {
    /// The ALPN protocol the client negotiated.
    pub const ALPN: u8 = 0x01;
    /// The host name the client asked for (SNI or Host).
    pub const AUTHORITY: u8 = 0x02;
    /// A CRC-32c of the whole header.
    pub const CRC32C: u8 = 0x03;
    /// Padding, to be ignored.
    pub const NOOP: u8 = 0x04;
    /// An opaque connection id.
    pub const UNIQUE_ID: u8 = 0x05;
    /// TLS details of the client's connection to the balancer.
    pub const SSL: u8 = 0x20;
    /// The network namespace.
    pub const NETNS: u8 = 0x30;
}

const PREAMBLE: usize = 16;
const INET_LEN: usize = 12;
const INET6_LEN: usize = 36;
const UNIX_LEN: usize = 216;

/// Parses a v2 header; `input` starts like the signature.
pub(super) fn parse(input: &[u8], limit: usize) -> Result<Parsed, ProxyError> {
    if input.len() < PREAMBLE {
        return Ok(Parsed::Incomplete);
    }
    debug_assert_eq!(&input[..12], V2_SIGNATURE);
    let version = input[12] >> 4;
    if version != 2 {
        return Err(ProxyError::BadVersion(version));
    }
    let command = match input[12] & 0x0f {
        0 => Command::Local,
        1 => Command::Proxy,
        c => return Err(ProxyError::BadCommand(c)),
    };
    let family_byte = input[13];
    let transport = match family_byte & 0x0f {
        0 => Transport::Unspec,
        1 => Transport::Stream,
        2 => Transport::Datagram,
        _ => return Err(ProxyError::BadFamily(family_byte)),
    };
    let len = usize::from(u16::from_be_bytes([input[14], input[15]]));
    let total = PREAMBLE + len;
    if total > limit {
        return Err(ProxyError::TooLong { limit });
    }
    let needed = match family_byte >> 4 {
        0 => 0,
        1 => INET_LEN,
        2 => INET6_LEN,
        3 => UNIX_LEN,
        _ => return Err(ProxyError::BadFamily(family_byte)),
    };
    if len < needed {
        return Err(ProxyError::ShortAddress { needed, got: len });
    }
    if input.len() < total {
        return Ok(Parsed::Incomplete);
    }
    let block = &input[PREAMBLE..total];
    let (addr, tlvs) = block.split_at(needed);
    let addresses = match family_byte >> 4 {
        1 => {
            let ip = |b: &[u8]| Ipv4Addr::new(b[0], b[1], b[2], b[3]);
            Addresses::Inet {
                source: SocketAddr::new(ip(&addr[0..4]).into(), be16(&addr[8..10])),
                destination: SocketAddr::new(ip(&addr[4..8]).into(), be16(&addr[10..12])),
            }
        }
        2 => {
            let ip = |b: &[u8]| {
                let mut o = [0u8; 16];
                o.copy_from_slice(b);
                Ipv6Addr::from(o)
            };
            Addresses::Inet {
                source: SocketAddr::new(ip(&addr[0..16]).into(), be16(&addr[32..34])),
                destination: SocketAddr::new(ip(&addr[16..32]).into(), be16(&addr[34..36])),
            }
        }
        3 => Addresses::Unix {
            source: until_nul(&addr[..108]).into(),
            destination: until_nul(&addr[108..]).into(),
        },
        _ => Addresses::Unspec,
    };
    check_tlvs(tlvs)?;
    Ok(Parsed::Header {
        header: ProxyHeader {
            version: Version::V2,
            command,
            transport,
            addresses,
            tlvs: tlvs.into(),
        },
        len: total,
    })
}

fn be16(b: &[u8]) -> u16 {
    u16::from_be_bytes([b[0], b[1]])
}

fn until_nul(b: &[u8]) -> &[u8] {
    let end = b.iter().position(|&c| c == 0).unwrap_or(b.len());
    &b[..end]
}

/// Every TLV must fit exactly in the block.
fn check_tlvs(mut rest: &[u8]) -> Result<(), ProxyError> {
    let full = rest.len();
    while !rest.is_empty() {
        let offset = full - rest.len();
        let (_, _, next) = split_tlv(rest).ok_or(ProxyError::BadTlv { offset })?;
        rest = next;
    }
    Ok(())
}

/// The first TLV of `b`: `(type, value, rest)`, or `None` if it does not fit.
pub(super) fn split_tlv(b: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    if b.len() < 3 {
        return None;
    }
    let len = usize::from(be16(&b[1..3]));
    let value = b.get(3..3 + len)?;
    Some((b[0], value, &b[3 + len..]))
}
