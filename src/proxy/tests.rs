use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use proptest::prelude::*;

use super::*;

fn ok(input: &[u8], mode: ProxyMode) -> (ProxyHeader, usize) {
    match parse(input, mode, DEFAULT_MAX_HEADER) {
        Ok(Parsed::Header { header, len }) => (header, len),
        other => panic!("expected a header, got {other:?}"),
    }
}

fn err(input: &[u8]) -> ProxyError {
    match parse(input, ProxyMode::Any, DEFAULT_MAX_HEADER) {
        Err(e) => e,
        other => panic!("expected an error, got {other:?}"),
    }
}

#[test]
fn v1_tcp4_and_tcp6() {
    let (h, len) = ok(
        b"PROXY TCP4 10.0.0.1 10.0.0.2 1234 80\r\nrest",
        ProxyMode::V1,
    );
    assert_eq!(len, 38);
    assert_eq!(h.source(), Some("10.0.0.1:1234".parse().unwrap()));
    assert_eq!(h.destination(), Some("10.0.0.2:80".parse().unwrap()));
    let (h, _) = ok(b"PROXY TCP6 ::1 2001:db8::2 65535 0\r\n", ProxyMode::Any);
    assert_eq!(h.source(), Some("[::1]:65535".parse().unwrap()));
}

#[test]
fn v1_unknown_uses_no_address() {
    let (h, len) = ok(b"PROXY UNKNOWN\r\n", ProxyMode::V1);
    assert_eq!((h.source(), len), (None, 15));
    let (h, _) = ok(b"PROXY UNKNOWN ffff::1 ffff::2 1 2\r\n", ProxyMode::V1);
    assert_eq!(h.addresses(), &Addresses::Unspec);
}

#[test]
fn v1_malformed_lines_are_typed() {
    use V1Fault::*;
    let cases: &[(&[u8], V1Fault)] = &[
        (b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\n", LineEnding),
        (b"PROXY TCP5 1.2.3.4 5.6.7.8 1 2\r\n", Protocol),
        (b"PROXY TCP4 1.2.3.4 5.6.7.8 1\r\n", Fields),
        (b"PROXY TCP4 1.2.3.4  5.6.7.8 1 2\r\n", Fields),
        (b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2 3\r\n", Fields),
        (b"PROXY TCP4 ::1 5.6.7.8 1 2\r\n", Address),
        (b"PROXY TCP6 1.2.3.4 ::1 1 2\r\n", Address),
        (b"PROXY TCP4 1.2.3.256 5.6.7.8 1 2\r\n", Address),
        (b"PROXY TCP4 1.2.3.4 5.6.7.8 65536 2\r\n", Port),
        (b"PROXY TCP4 1.2.3.4 5.6.7.8 01 2\r\n", Port),
        (b"PROXY TCP4 1.2.3.4 5.6.7.8 +1 2\r\n", Port),
        (b"PROXY TCP4 1.2.3.4\x005.6.7.8", LineEnding),
    ];
    for (input, fault) in cases {
        assert_eq!(err(input), ProxyError::BadV1(*fault), "{input:?}");
    }
}

#[test]
fn v1_line_limit_is_107_bytes() {
    let mut long = b"PROXY UNKNOWN ".to_vec();
    long.resize(105, b'x');
    long.extend_from_slice(b"\r\n");
    assert_eq!(ok(&long, ProxyMode::V1).1, 107);
    let mut longer = long[..105].to_vec();
    longer.extend_from_slice(b"x\r\n");
    assert_eq!(err(&longer), ProxyError::TooLong { limit: 107 });
    // Without a line feed in the first 107 bytes: refused without waiting.
    assert_eq!(
        err(&[b"PROXY ".as_slice(), &[b'a'; 200]].concat()),
        ProxyError::TooLong { limit: 107 }
    );
}

#[test]
fn detection_waits_for_signature_prefixes_only() {
    for mode in [ProxyMode::Any, ProxyMode::V1, ProxyMode::V2] {
        assert_eq!(parse(b"", mode, 4096), Ok(Parsed::Incomplete));
    }
    assert_eq!(parse(b"PRO", ProxyMode::Any, 4096), Ok(Parsed::Incomplete));
    assert_eq!(
        parse(b"\r\n\r\n", ProxyMode::Any, 4096),
        Ok(Parsed::Incomplete)
    );
    assert_eq!(
        parse(b"GET / HTTP/1.1", ProxyMode::Any, 4096),
        Ok(Parsed::Absent)
    );
    assert_eq!(
        parse(b"PROXY TCP4", ProxyMode::V2, 4096),
        Ok(Parsed::Absent)
    );
    assert_eq!(parse(V2_SIGNATURE, ProxyMode::V1, 4096), Ok(Parsed::Absent));
    assert_eq!(parse(b"PROXY", ProxyMode::Off, 4096), Ok(Parsed::Absent));
}

fn v2(ver_cmd: u8, fam: u8, block: &[u8]) -> Vec<u8> {
    let mut out = V2_SIGNATURE.to_vec();
    out.push(ver_cmd);
    out.push(fam);
    out.extend_from_slice(&(block.len() as u16).to_be_bytes());
    out.extend_from_slice(block);
    out
}

#[test]
fn v2_families_commands_and_tlvs() {
    let mut block = vec![127, 0, 0, 1, 10, 0, 0, 1, 0x1f, 0x90, 0, 80];
    Tlv {
        kind: tlv_type::ALPN,
        value: b"h2",
    }
    .encode(&mut block);
    Tlv {
        kind: tlv_type::AUTHORITY,
        value: b"example.com",
    }
    .encode(&mut block);
    Tlv {
        kind: 0xe0,
        value: b"",
    }
    .encode(&mut block);
    let wire = v2(0x21, 0x11, &block);
    let (h, len) = ok(&wire, ProxyMode::V2);
    assert_eq!(len, wire.len());
    assert_eq!(h.source(), Some("127.0.0.1:8080".parse().unwrap()));
    assert_eq!(h.alpn(), Some(&b"h2"[..]));
    assert_eq!(h.authority(), Some("example.com"));
    assert_eq!(h.tlvs().count(), 3);
    assert_eq!(h.tlv(0xe0), Some(&b""[..]));

    // LOCAL: addresses ignored.
    let (h, _) = ok(&v2(0x20, 0x00, &[]), ProxyMode::Any);
    assert_eq!((h.command(), h.source()), (Command::Local, None));

    // UNIX.
    let mut unix = vec![0u8; 216];
    unix[..5].copy_from_slice(b"/a.so");
    let (h, _) = ok(&v2(0x21, 0x31, &unix), ProxyMode::Any);
    assert!(matches!(h.addresses(), Addresses::Unix { source, .. } if &source[..] == b"/a.so"));

    // TCP6 via the encoder.
    let src: SocketAddr = "[2001:db8::1]:5".parse().unwrap();
    let h6 = ProxyHeader::new(Version::V2, src, "[::1]:6".parse().unwrap());
    assert_eq!(ok(&h6.encode(), ProxyMode::V2).0, h6);
}

#[test]
fn v2_malformed_headers_are_typed() {
    assert_eq!(err(&v2(0x11, 0x11, &[0; 12])), ProxyError::BadVersion(1));
    assert_eq!(err(&v2(0x22, 0x11, &[0; 12])), ProxyError::BadCommand(2));
    assert_eq!(err(&v2(0x21, 0x41, &[0; 12])), ProxyError::BadFamily(0x41));
    assert_eq!(err(&v2(0x21, 0x13, &[0; 12])), ProxyError::BadFamily(0x13));
    assert_eq!(
        err(&v2(0x21, 0x21, &[0; 12])),
        ProxyError::ShortAddress {
            needed: 36,
            got: 12
        }
    );
    let mut block = vec![0; 12];
    block.extend_from_slice(&[tlv_type::ALPN, 0, 5, b'h']);
    assert_eq!(
        err(&v2(0x21, 0x11, &block)),
        ProxyError::BadTlv { offset: 0 }
    );
    // Over the limit: refused from the preamble alone.
    let huge = v2(0x21, 0x11, &[0; 5000]);
    assert_eq!(err(&huge[..16]), ProxyError::TooLong { limit: 4096 });
}

fn arb_addr(v4: bool) -> impl Strategy<Value = SocketAddr> {
    if v4 {
        (any::<u32>(), any::<u16>())
            .prop_map(|(ip, port)| SocketAddr::new(IpAddr::V4(Ipv4Addr::from(ip)), port))
            .boxed()
    } else {
        (any::<u128>(), any::<u16>())
            .prop_map(|(ip, port)| SocketAddr::new(IpAddr::V6(Ipv6Addr::from(ip)), port))
            .boxed()
    }
}

fn arb_header() -> impl Strategy<Value = ProxyHeader> {
    let inet = any::<bool>().prop_flat_map(|v4| (arb_addr(v4), arb_addr(v4)));
    let tlvs = proptest::collection::vec(
        (any::<u8>(), proptest::collection::vec(any::<u8>(), 0..40)),
        0..4,
    );
    (any::<bool>(), any::<bool>(), inet, tlvs).prop_map(|(is_v1, local, (s, d), tlvs)| {
        if is_v1 {
            return ProxyHeader::new(Version::V1, s, d);
        }
        let mut block = Vec::new();
        for (kind, value) in &tlvs {
            Tlv { kind: *kind, value }.encode(&mut block);
        }
        let command = if local {
            Command::Local
        } else {
            Command::Proxy
        };
        let addresses = Addresses::Inet {
            source: s,
            destination: d,
        };
        ProxyHeader::with_parts(Version::V2, command, Transport::Stream, addresses, block)
    })
}

proptest! {
    #[test]
    fn encoded_headers_parse_back(h in arb_header(), tail in proptest::collection::vec(any::<u8>(), 0..64)) {
        let mut wire = h.encode();
        let len = wire.len();
        wire.extend_from_slice(&tail);
        let parsed = parse(&wire, ProxyMode::Any, 65_535 + 16).unwrap();
        prop_assert_eq!(parsed, Parsed::Header { header: h, len });
    }

    #[test]
    fn every_prefix_of_a_header_is_incomplete(h in arb_header()) {
        let wire = h.encode();
        for n in 0..wire.len() {
            prop_assert_eq!(parse(&wire[..n], ProxyMode::Any, 65_535 + 16), Ok(Parsed::Incomplete));
        }
    }

    #[test]
    fn arbitrary_bytes_never_panic_nor_overrun(
        prefix in prop_oneof![Just(&b""[..]), Just(&b"PROXY "[..]), Just(&V2_SIGNATURE[..])],
        body in proptest::collection::vec(any::<u8>(), 0..300),
        max in 0usize..600,
    ) {
        let input = [prefix, &body].concat();
        if let Ok(Parsed::Header { len, .. }) = parse(&input, ProxyMode::Any, max) {
            prop_assert!(len <= input.len() && len <= max);
        }
    }
}
