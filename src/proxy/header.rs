//! A parsed PROXY protocol header: addresses and TLVs, and its encodings.

use std::net::{IpAddr, SocketAddr};

use super::{V1_SIGNATURE, V2_SIGNATURE, v2::tlv_type};

/// The header's version.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Version {
    /// Text, one line.
    V1,
    /// Binary.
    V2,
}

/// What the balancer says the connection is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Command {
    /// Relayed on behalf of a client: the addresses are the client's.
    Proxy,
    /// Made by the balancer itself (a health check): the addresses are to be
    /// ignored and the socket's own used.
    Local,
}

/// The relayed transport (v2; v1 is always a stream).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    /// Unspecified.
    Unspec,
    /// A stream (TCP, stream Unix sockets).
    Stream,
    /// Datagrams.
    Datagram,
}

/// The addresses a header carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Addresses {
    /// None (v1 `UNKNOWN`, v2 `AF_UNSPEC`, or a LOCAL command).
    Unspec,
    /// IPv4 or IPv6 source and destination.
    Inet {
        /// The client.
        source: SocketAddr,
        /// The address the client connected to.
        destination: SocketAddr,
    },
    /// Unix socket paths (the bytes before the first NUL of each 108-byte field).
    Unix {
        /// The client's path.
        source: Box<[u8]>,
        /// The path the client connected to.
        destination: Box<[u8]>,
    },
}

/// A complete PROXY protocol header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProxyHeader {
    pub(crate) version: Version,
    pub(crate) command: Command,
    pub(crate) transport: Transport,
    pub(crate) addresses: Addresses,
    /// The v2 TLV block as received (validated: every TLV fits).
    pub(crate) tlvs: Box<[u8]>,
}

impl ProxyHeader {
    /// A PROXY-command header relaying a stream from `source` to `destination`,
    /// with no TLVs (what a balancer sends; useful for clients and tests).
    pub fn new(version: Version, source: SocketAddr, destination: SocketAddr) -> ProxyHeader {
        ProxyHeader {
            version,
            command: Command::Proxy,
            transport: Transport::Stream,
            addresses: Addresses::Inet {
                source,
                destination,
            },
            tlvs: Box::default(),
        }
    }

    /// A header with every part given. `tlvs` is kept as given for v2; use
    /// [`Tlv::encode`] to build it.
    pub fn with_parts(
        version: Version,
        command: Command,
        transport: Transport,
        addresses: Addresses,
        tlvs: Vec<u8>,
    ) -> ProxyHeader {
        ProxyHeader {
            version,
            command,
            transport,
            addresses,
            tlvs: tlvs.into_boxed_slice(),
        }
    }

    /// The header's version.
    pub fn version(&self) -> Version {
        self.version
    }

    /// PROXY or LOCAL.
    pub fn command(&self) -> Command {
        self.command
    }

    /// The relayed transport.
    pub fn transport(&self) -> Transport {
        self.transport
    }

    /// The addresses as carried.
    pub fn addresses(&self) -> &Addresses {
        &self.addresses
    }

    /// The client's address, for a PROXY command with IP addresses.
    pub fn source(&self) -> Option<SocketAddr> {
        match (&self.addresses, self.command) {
            (Addresses::Inet { source, .. }, Command::Proxy) => Some(*source),
            _ => None,
        }
    }

    /// The address the client connected to, for a PROXY command with IP addresses.
    pub fn destination(&self) -> Option<SocketAddr> {
        match (&self.addresses, self.command) {
            (Addresses::Inet { destination, .. }, Command::Proxy) => Some(*destination),
            _ => None,
        }
    }

    /// The TLVs (v2), in order.
    pub fn tlvs(&self) -> Tlvs<'_> {
        Tlvs { rest: &self.tlvs }
    }

    /// The value of the first TLV of type `kind`.
    pub fn tlv(&self, kind: u8) -> Option<&[u8]> {
        self.tlvs().find(|t| t.kind == kind).map(|t| t.value)
    }

    /// The ALPN protocol the client negotiated with the balancer (`PP2_TYPE_ALPN`).
    pub fn alpn(&self) -> Option<&[u8]> {
        self.tlv(tlv_type::ALPN)
    }

    /// The host name the client asked for (`PP2_TYPE_AUTHORITY`, SNI), if UTF-8.
    pub fn authority(&self) -> Option<&str> {
        self.tlv(tlv_type::AUTHORITY)
            .and_then(|v| std::str::from_utf8(v).ok())
    }

    /// Encodes the header for the wire in its version. A v1 header of a LOCAL
    /// command or without IP addresses is `PROXY UNKNOWN`; v1 carries no TLVs.
    pub fn encode(&self) -> Vec<u8> {
        match self.version {
            Version::V1 => self.encode_v1(),
            Version::V2 => self.encode_v2(),
        }
    }

    fn encode_v1(&self) -> Vec<u8> {
        let mut out = V1_SIGNATURE.to_vec();
        match (self.command, &self.addresses) {
            (
                Command::Proxy,
                Addresses::Inet {
                    source,
                    destination,
                },
            ) if source.is_ipv4() == destination.is_ipv4() => {
                let proto = if source.is_ipv4() { "TCP4" } else { "TCP6" };
                out.extend_from_slice(
                    format!(
                        "{proto} {} {} {} {}\r\n",
                        source.ip(),
                        destination.ip(),
                        source.port(),
                        destination.port()
                    )
                    .as_bytes(),
                );
            }
            _ => out.extend_from_slice(b"UNKNOWN\r\n"),
        }
        out
    }

    fn encode_v2(&self) -> Vec<u8> {
        let mut out = V2_SIGNATURE.to_vec();
        let command = match self.command {
            Command::Local => 0x20,
            Command::Proxy => 0x21,
        };
        let transport = match self.transport {
            Transport::Unspec => 0,
            Transport::Stream => 1,
            Transport::Datagram => 2,
        };
        let mut block = Vec::new();
        let family = match &self.addresses {
            Addresses::Unspec => 0,
            Addresses::Inet {
                source,
                destination,
            } => match (source.ip(), destination.ip()) {
                (IpAddr::V4(s), IpAddr::V4(d)) => {
                    block.extend_from_slice(&s.octets());
                    block.extend_from_slice(&d.octets());
                    block.extend_from_slice(&source.port().to_be_bytes());
                    block.extend_from_slice(&destination.port().to_be_bytes());
                    1
                }
                (s, d) => {
                    block.extend_from_slice(&v6(s).octets());
                    block.extend_from_slice(&v6(d).octets());
                    block.extend_from_slice(&source.port().to_be_bytes());
                    block.extend_from_slice(&destination.port().to_be_bytes());
                    2
                }
            },
            Addresses::Unix {
                source,
                destination,
            } => {
                for path in [source, destination] {
                    let mut field = [0u8; 108];
                    let n = path.len().min(108);
                    field[..n].copy_from_slice(&path[..n]);
                    block.extend_from_slice(&field);
                }
                3
            }
        };
        block.extend_from_slice(&self.tlvs);
        out.push(command);
        out.push(family << 4 | transport);
        let len = u16::try_from(block.len()).unwrap_or(u16::MAX);
        out.extend_from_slice(&len.to_be_bytes());
        out.extend_from_slice(&block[..usize::from(len)]);
        out
    }
}

fn v6(ip: IpAddr) -> std::net::Ipv6Addr {
    match ip {
        IpAddr::V4(v4) => v4.to_ipv6_mapped(),
        IpAddr::V6(v6) => v6,
    }
}

/// One type-length-value record of a v2 header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tlv<'a> {
    /// The type byte ([`tlv_type`] names the registered ones).
    pub kind: u8,
    /// The value.
    pub value: &'a [u8],
}

impl Tlv<'_> {
    /// Appends this TLV's wire form to `out`. Values longer than 65535 bytes are
    /// cut to that.
    pub fn encode(&self, out: &mut Vec<u8>) {
        let len = u16::try_from(self.value.len()).unwrap_or(u16::MAX);
        out.push(self.kind);
        out.extend_from_slice(&len.to_be_bytes());
        out.extend_from_slice(&self.value[..usize::from(len)]);
    }
}

/// Iterator over a header's TLVs.
#[derive(Debug, Clone)]
pub struct Tlvs<'a> {
    rest: &'a [u8],
}

impl<'a> Iterator for Tlvs<'a> {
    type Item = Tlv<'a>;

    fn next(&mut self) -> Option<Tlv<'a>> {
        let (kind, value, rest) = super::v2::split_tlv(self.rest)?;
        self.rest = rest;
        Some(Tlv { kind, value })
    }
}
