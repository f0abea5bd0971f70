//! Datagrams queued by callbacks for the loop to send, in order, after they
//! return (sans-IO: the loop resolves targets and does the sending).

use std::net::SocketAddr;

use super::SessionId;

/// Where a queued datagram goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Target {
    /// To a session by id; resolved when sent, so a session that ended in the
    /// meantime gets nothing (counted as dropped).
    Session(SessionId),
    /// From UDP listener `listener` (its index among the builder's addresses)
    /// to `addr`.
    Addr { listener: usize, addr: SocketAddr },
}

#[derive(Debug, Clone, Copy)]
struct Item {
    to: Target,
    start: usize,
    len: usize,
}

/// The loop's outgoing datagrams: one byte arena and a list of entries, both
/// reused, so queuing allocates nothing once they have grown to a tick's worth.
#[derive(Debug)]
pub(crate) struct Outbox {
    arena: Vec<u8>,
    items: Vec<Item>,
    max_bytes: usize,
    /// Datagrams refused because the queue was at `max_bytes`.
    pub(crate) overflowed: u64,
}

impl Outbox {
    /// An empty outbox holding at most `max_bytes` of payload at once.
    pub(crate) fn new(max_bytes: usize) -> Self {
        Outbox {
            arena: Vec::new(),
            items: Vec::new(),
            max_bytes,
            overflowed: 0,
        }
    }

    /// Queues a copy of `data`; `false` (and counted) when over the byte cap.
    pub(crate) fn push(&mut self, to: Target, data: &[u8]) -> bool {
        if self.arena.len().saturating_add(data.len()) > self.max_bytes {
            self.overflowed += 1;
            return false;
        }
        self.items.push(Item {
            to,
            start: self.arena.len(),
            len: data.len(),
        });
        self.arena.extend_from_slice(data);
        true
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    pub(crate) fn len(&self) -> usize {
        self.items.len()
    }

    /// The queued datagrams in order.
    pub(crate) fn iter(&self) -> impl Iterator<Item = (Target, &[u8])> + '_ {
        self.items
            .iter()
            .map(|i| (i.to, &self.arena[i.start..i.start + i.len]))
    }

    /// Empties the queue, keeping its capacity.
    pub(crate) fn clear(&mut self) {
        self.items.clear();
        self.arena.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_order_and_cap() {
        let mut o = Outbox::new(10);
        let a: SocketAddr = "127.0.0.1:1".parse().unwrap();
        let to = Target::Addr {
            listener: 0,
            addr: a,
        };
        assert!(o.push(to, b"hello"));
        assert!(o.push(to, b"world"));
        assert!(!o.push(to, b"!"));
        assert_eq!(o.overflowed, 1);
        let got: Vec<&[u8]> = o.iter().map(|(_, d)| d).collect();
        assert_eq!(got, [&b"hello"[..], b"world"]);
        o.clear();
        assert!(o.is_empty());
        assert!(o.push(to, b"again"));
    }
}
