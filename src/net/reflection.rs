//! Recognising a datagram that would start a reflection loop: one whose source
//! is one of the engine's own UDP addresses (so every reply comes back as a new
//! request, for ever), or port 0 (which no real sender has, and which only a
//! forged packet carries).
// getifaddrs(3) is the one libc call here: the host's addresses for listeners
// bound to a wildcard address.
#![allow(unsafe_code)]

use std::net::{IpAddr, SocketAddr};
use std::sync::OnceLock;

use super::ListenAddr;

/// Whether a datagram from `peer` is the engine talking to itself: its source
/// port is 0, or it is one of the `own` UDP addresses. A listener bound to a
/// wildcard address (`0.0.0.0`, `::`) owns its port on every local address:
/// loopback and each interface's address, as the host had them when first asked.
pub(crate) fn is_reflection(peer: SocketAddr, own: &[ListenAddr]) -> bool {
    if peer.port() == 0 {
        return true;
    }
    let ip = peer.ip().to_canonical();
    own.iter().any(|a| match a {
        ListenAddr::Udp(a) if a.port() == peer.port() => {
            let mine = a.ip().to_canonical();
            mine == ip || (mine.is_unspecified() && is_local(ip))
        }
        _ => false,
    })
}

/// Whether `ip` is an address of this host.
fn is_local(ip: IpAddr) -> bool {
    ip.is_loopback() || host_addrs().contains(&ip)
}

/// The host's interface addresses, read once.
fn host_addrs() -> &'static [IpAddr] {
    static ADDRS: OnceLock<Vec<IpAddr>> = OnceLock::new();
    ADDRS.get_or_init(read_host_addrs)
}

#[cfg(any(target_os = "linux", target_os = "android", target_os = "macos"))]
fn read_host_addrs() -> Vec<IpAddr> {
    let mut out = Vec::new();
    let mut head: *mut libc::ifaddrs = std::ptr::null_mut();
    // SAFETY: getifaddrs(3) writes a list head into `head`; on success we own the
    // list until freeifaddrs.
    if unsafe { libc::getifaddrs(&mut head) } != 0 {
        return out;
    }
    let mut cur = head;
    while !cur.is_null() {
        // SAFETY: `cur` is a node of the list getifaddrs returned, not yet freed.
        let ifa = unsafe { &*cur };
        if !ifa.ifa_addr.is_null() {
            // SAFETY: a non-null ifa_addr points to a sockaddr whose sa_family
            // says which larger struct it is; we read only the matching one.
            unsafe {
                match i32::from((*ifa.ifa_addr).sa_family) {
                    libc::AF_INET => {
                        let sin = &*(ifa.ifa_addr as *const libc::sockaddr_in);
                        out.push(IpAddr::from(
                            u32::from_be(sin.sin_addr.s_addr).to_be_bytes(),
                        ));
                    }
                    libc::AF_INET6 => {
                        let sin6 = &*(ifa.ifa_addr as *const libc::sockaddr_in6);
                        out.push(IpAddr::from(sin6.sin6_addr.s6_addr));
                    }
                    _ => {}
                }
            }
        }
        cur = ifa.ifa_next;
    }
    // SAFETY: `head` came from a successful getifaddrs and is freed once.
    unsafe { libc::freeifaddrs(head) };
    out
}

#[cfg(not(any(target_os = "linux", target_os = "android", target_os = "macos")))]
fn read_host_addrs() -> Vec<IpAddr> {
    Vec::new()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn udp(s: &str) -> ListenAddr {
        ListenAddr::Udp(s.parse().unwrap())
    }

    #[test]
    fn own_addresses_and_port_zero_are_reflections() {
        let own = [
            udp("127.0.0.1:5000"),
            ListenAddr::Tcp("127.0.0.1:6000".parse().unwrap()),
        ];
        assert!(is_reflection("127.0.0.1:5000".parse().unwrap(), &own));
        assert!(is_reflection(
            "[::ffff:127.0.0.1]:5000".parse().unwrap(),
            &own
        ));
        assert!(is_reflection("10.1.2.3:0".parse().unwrap(), &own));
        assert!(!is_reflection("127.0.0.1:5001".parse().unwrap(), &own));
        assert!(!is_reflection("127.0.0.2:5000".parse().unwrap(), &own));
        // A TCP port of the same number is not a UDP source.
        assert!(!is_reflection("127.0.0.1:6000".parse().unwrap(), &own));
    }

    #[test]
    fn a_wildcard_listener_owns_its_port_on_every_local_address() {
        let own = [udp("0.0.0.0:5000"), udp("[::]:5001")];
        assert!(is_reflection("127.0.0.1:5000".parse().unwrap(), &own));
        assert!(is_reflection("127.9.9.9:5000".parse().unwrap(), &own));
        assert!(is_reflection("[::1]:5001".parse().unwrap(), &own));
        for ip in host_addrs() {
            assert!(is_reflection(SocketAddr::new(*ip, 5000), &own), "{ip}");
        }
        // TEST-NET-3: never an address of this host.
        assert!(!is_reflection("203.0.113.7:5000".parse().unwrap(), &own));
    }
}
