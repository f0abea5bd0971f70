#![no_main]

//! PROXY protocol headers: arbitrary input never panics, an accepted header never
//! claims more bytes than given or than the limit, re-encoding a parsed header
//! parses back to the same header, and feeding the input byte by byte agrees
//! with parsing it whole.

use libfuzzer_sys::fuzz_target;
use tether::proxy::{Command, Parsed, ProxyMode, Version, parse};

fuzz_target!(|data: &[u8]| {
    let Some((&flags, rest)) = data.split_first() else {
        return;
    };
    let mode = match flags & 3 {
        0 => ProxyMode::Off,
        1 => ProxyMode::V1,
        2 => ProxyMode::V2,
        _ => ProxyMode::Any,
    };
    let max = usize::from(flags >> 2) * 64 + 16;
    let whole = parse(rest, mode, max);
    if let Ok(Parsed::Header { header, len }) = &whole {
        assert!(*len <= rest.len() && *len <= max);
        // v1 drops TLVs and v1 UNKNOWN keeps nothing: compare what survives.
        if header.version() == Version::V2 || header.command() == Command::Proxy {
            let again = header.encode();
            match parse(&again, ProxyMode::Any, usize::MAX) {
                Ok(Parsed::Header { header: h2, len: l2 }) => {
                    assert_eq!(l2, again.len());
                    assert_eq!(h2.source(), header.source());
                    if header.version() == Version::V2 {
                        assert_eq!(&h2, header);
                    }
                }
                other => panic!("re-encoded header did not parse: {other:?}"),
            }
        }
    }
    // Growing prefixes: Incomplete until the whole input's answer, never a
    // different header.
    for n in 0..rest.len() {
        match parse(&rest[..n], mode, max) {
            Ok(Parsed::Incomplete) => {}
            Ok(Parsed::Header { len, .. }) => {
                assert!(matches!(whole, Ok(Parsed::Header { len: l, .. }) if l == len));
                break;
            }
            Ok(Parsed::Absent) => {
                assert_eq!(whole, Ok(Parsed::Absent));
                break;
            }
            Err(_) => {
                assert!(whole.is_err());
                break;
            }
        }
    }
});
