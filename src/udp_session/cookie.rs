//! Stateless cookies: proof that a UDP source can receive at the address it
//! claims, checked before any per-source state is kept.
//!
//! A datagram's source address is whatever the sender wrote. A server that
//! created a session for every new source would let anyone fill its table
//! from spoofed addresses. Instead, the first datagram from an unknown source
//! is answered with a cookie: a keyed hash of the source address and the
//! current time bucket. Only a peer that really receives at that address can
//! echo it, and checking the echo needs no state (DTLS `HelloVerifyRequest`,
//! QUIC `Retry`, SYN cookies).
//!
//! The hash is SipHash-2-4, a PRF, under a 128-bit key drawn per engine; a
//! cookie is 8 bytes. It is valid in the bucket it was minted in and the next
//! one, so between one and two bucket lengths.
//!
//! # Examples
//!
//! ```
//! use tether::udp_session::{CookieKey, Cookies};
//!
//! let cookies = Cookies::new(CookieKey::from_bytes([7; 16]), 2_000);
//! let peer = "198.51.100.7:4000".parse().unwrap();
//! let c = cookies.mint(peer, 10_000);
//! assert!(cookies.check(peer, &c, 11_999));
//! assert!(!cookies.check("198.51.100.8:4000".parse().unwrap(), &c, 10_000));
//! assert!(!cookies.check(peer, &c, 14_000)); // expired
//! ```

use std::collections::hash_map::RandomState;
use std::fmt;
use std::hash::BuildHasher;
use std::net::{IpAddr, SocketAddr};

use super::siphash::{Key, siphash24};

/// Bytes in a cookie.
pub const COOKIE_LEN: usize = 8;

/// A minted cookie, sent to the peer and echoed back.
pub type Cookie = [u8; COOKIE_LEN];

/// The secret key cookies are minted under.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct CookieKey(Key);

impl CookieKey {
    /// A fresh random key.
    ///
    /// The randomness comes from `std`'s per-process hash seeds (drawn from the
    /// operating system), so no extra dependency or system call is involved.
    pub fn random() -> Self {
        let a = RandomState::new().hash_one(0x5eed_u64);
        let b = RandomState::new().hash_one(0x0c00_c1e5_u64);
        CookieKey([a, b ^ a.rotate_left(17)])
    }

    /// A key from its 16 bytes, e.g. shared by the processes behind one address.
    pub fn from_bytes(bytes: [u8; 16]) -> Self {
        let mut lo = [0u8; 8];
        let mut hi = [0u8; 8];
        lo.copy_from_slice(&bytes[..8]);
        hi.copy_from_slice(&bytes[8..]);
        CookieKey([u64::from_le_bytes(lo), u64::from_le_bytes(hi)])
    }
}

impl fmt::Debug for CookieKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("CookieKey(..)")
    }
}

/// Mints and checks cookies for one key and bucket length.
#[derive(Debug, Clone, Copy)]
pub struct Cookies {
    key: CookieKey,
    bucket_ms: u64,
}

impl Cookies {
    /// Cookies under `key`, each valid for one to two buckets of `bucket_ms`
    /// milliseconds (at least 1).
    pub fn new(key: CookieKey, bucket_ms: u64) -> Self {
        Cookies {
            key,
            bucket_ms: bucket_ms.max(1),
        }
    }

    /// The cookie for `peer` at time `now_ms` (milliseconds on any clock the
    /// checker shares).
    pub fn mint(&self, peer: SocketAddr, now_ms: u64) -> Cookie {
        self.at(peer, now_ms / self.bucket_ms)
    }

    /// Whether `cookie` was minted for `peer` in this bucket or the previous one.
    /// Runs in the same time whatever the bytes, so it leaks nothing of the key.
    pub fn check(&self, peer: SocketAddr, cookie: &[u8], now_ms: u64) -> bool {
        let Ok(cookie) = <&Cookie>::try_from(cookie) else {
            return false;
        };
        let bucket = now_ms / self.bucket_ms;
        let now = same(&self.at(peer, bucket), cookie);
        let before = bucket > 0 && same(&self.at(peer, bucket - 1), cookie);
        now | before
    }

    fn at(&self, peer: SocketAddr, bucket: u64) -> Cookie {
        // family (1) | address (16) | port (2) | bucket (8)
        let mut input = [0u8; 27];
        match peer.ip() {
            IpAddr::V4(ip) => {
                input[0] = 4;
                input[1..5].copy_from_slice(&ip.octets());
            }
            IpAddr::V6(ip) => {
                input[0] = 6;
                input[1..17].copy_from_slice(&ip.octets());
            }
        }
        input[17..19].copy_from_slice(&peer.port().to_be_bytes());
        input[19..27].copy_from_slice(&bucket.to_le_bytes());
        siphash24(self.key.0, &input).to_le_bytes()
    }
}

/// Constant-time equality of two cookies.
fn same(a: &Cookie, b: &Cookie) -> bool {
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    #[test]
    fn valid_for_one_to_two_buckets() {
        let c = Cookies::new(CookieKey::from_bytes([1; 16]), 1_000);
        let p = addr("10.0.0.1:5000");
        let cookie = c.mint(p, 1_999);
        assert!(c.check(p, &cookie, 1_000));
        assert!(c.check(p, &cookie, 2_999));
        assert!(!c.check(p, &cookie, 3_000));
        assert!(!c.check(p, &cookie, 999));
    }

    #[test]
    fn bound_to_address_port_and_key() {
        let c = Cookies::new(CookieKey::from_bytes([1; 16]), 1_000);
        let p = addr("10.0.0.1:5000");
        let cookie = c.mint(p, 0);
        assert!(!c.check(addr("10.0.0.1:5001"), &cookie, 0));
        assert!(!c.check(addr("10.0.0.2:5000"), &cookie, 0));
        assert!(!c.check(addr("[::ffff:10.0.0.1]:5000"), &cookie, 0));
        let other = Cookies::new(CookieKey::from_bytes([2; 16]), 1_000);
        assert!(!other.check(p, &cookie, 0));
        assert!(!c.check(p, &cookie[..7], 0));
    }

    #[test]
    fn random_keys_differ() {
        assert_ne!(CookieKey::random(), CookieKey::random());
    }
}
