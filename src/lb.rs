//! Load balancing: which loop takes a socket accepted by the shared listener.

use std::net::{IpAddr, SocketAddr};

/// How a shared listener spreads accepted connections over the loops.
///
/// Only used when the engine runs one listener for all loops
/// ([`EngineBuilder::reuse_port(false)`](crate::EngineBuilder::reuse_port)); with
/// `SO_REUSEPORT` the kernel balances instead.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LoadBalancer {
    /// Each loop in turn.
    #[default]
    RoundRobin,
    /// The loop with the fewest open connections (ties go to the lowest index).
    LeastConnections,
    /// A hash of the peer's IP address, so one client host always lands on the
    /// same loop (useful when loops keep per-client caches).
    SourceAddrHash,
}

impl LoadBalancer {
    /// Parses `round-robin`, `least-conn` or `source-hash`.
    pub fn parse(s: &str) -> Option<LoadBalancer> {
        match s {
            "round-robin" | "rr" => Some(LoadBalancer::RoundRobin),
            "least-conn" | "least-connections" => Some(LoadBalancer::LeastConnections),
            "source-hash" | "source-addr-hash" => Some(LoadBalancer::SourceAddrHash),
            _ => None,
        }
    }
}

/// The balancer's state: pure logic, fed with connection counts by the caller.
#[derive(Debug, Clone)]
pub(crate) struct Balancer {
    kind: LoadBalancer,
    next: usize,
}

impl Balancer {
    pub(crate) fn new(kind: LoadBalancer) -> Balancer {
        Balancer { kind, next: 0 }
    }

    /// Picks a loop for a connection from `peer`, given each loop's open count.
    pub(crate) fn pick(&mut self, peer: Option<SocketAddr>, counts: &[usize]) -> usize {
        let n = counts.len().max(1);
        match self.kind {
            LoadBalancer::RoundRobin => {
                let i = self.next % n;
                self.next = (i + 1) % n;
                i
            }
            LoadBalancer::LeastConnections => counts
                .iter()
                .enumerate()
                .min_by_key(|&(i, c)| (*c, i))
                .map_or(0, |(i, _)| i),
            LoadBalancer::SourceAddrHash => match peer {
                Some(addr) => (fnv1a(addr.ip()) % n as u64) as usize,
                None => 0,
            },
        }
    }
}

/// FNV-1a over the address bytes: stable across runs and platforms, unlike
/// `DefaultHasher`, so a client keeps its loop across restarts too.
fn fnv1a(ip: IpAddr) -> u64 {
    let octets: &[u8] = match &ip {
        IpAddr::V4(v4) => &v4.octets(),
        IpAddr::V6(v6) => &v6.octets(),
    };
    octets.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| {
        (h ^ b as u64).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_robin_cycles() {
        let mut b = Balancer::new(LoadBalancer::RoundRobin);
        let picks: Vec<_> = (0..7).map(|_| b.pick(None, &[0, 0, 0])).collect();
        assert_eq!(picks, [0, 1, 2, 0, 1, 2, 0]);
    }

    #[test]
    fn least_connections_prefers_emptiest_then_lowest() {
        let mut b = Balancer::new(LoadBalancer::LeastConnections);
        assert_eq!(b.pick(None, &[3, 1, 2]), 1);
        assert_eq!(b.pick(None, &[2, 2, 2]), 0);
        assert_eq!(b.pick(None, &[5, 4, 0]), 2);
    }

    #[test]
    fn source_hash_is_sticky_per_ip_and_ignores_port() {
        let mut b = Balancer::new(LoadBalancer::SourceAddrHash);
        let a1: SocketAddr = "10.1.2.3:1000".parse().unwrap();
        let a2: SocketAddr = "10.1.2.3:2000".parse().unwrap();
        let first = b.pick(Some(a1), &[0; 4]);
        assert_eq!(b.pick(Some(a2), &[9, 9, 9, 9]), first);
        // Different hosts spread over the loops.
        let mut seen = [false; 4];
        for i in 0..64u8 {
            let a = SocketAddr::from(([127, 0, 0, i], 1));
            seen[b.pick(Some(a), &[0; 4])] = true;
        }
        assert!(seen.iter().all(|s| *s));
    }

    #[test]
    fn parse_names() {
        assert_eq!(
            LoadBalancer::parse("least-conn"),
            Some(LoadBalancer::LeastConnections)
        );
        assert_eq!(LoadBalancer::parse("bogus"), None);
    }
}
