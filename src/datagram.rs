//! What `on_datagram` sees of one received datagram.

use std::io;
use std::net::SocketAddr;
use std::time::Instant;

use mio::net::UdpSocket;

use crate::engine::Engine;
use crate::net::mmsg::SendBatch;
use crate::stats::{LoopCounters, bump};
use crate::udp_session::Udp;
use crate::udp_session::udp::UdpOut;

/// One datagram received on a UDP listener, and the way to answer it.
///
/// Replies go out at once with `sendto(2)`, or, with `Options::udp_batch` above
/// 1, are queued and sent with one `sendmmsg(2)` after the received batch. UDP
/// gives no delivery guarantee: a reply the socket refuses (its send buffer is
/// full) is dropped and counted in `Counts::datagrams_dropped`.
#[derive(Debug)]
pub struct Datagram<'a> {
    pub(crate) data: &'a [u8],
    pub(crate) peer: SocketAddr,
    pub(crate) listener: usize,
    pub(crate) truncated: bool,
    pub(crate) socket: &'a UdpSocket,
    /// Replies queued for one `sendmmsg`, when batching.
    pub(crate) batch: Option<&'a mut SendBatch>,
    pub(crate) counters: &'a LoopCounters,
    pub(crate) engine: &'a Engine,
    pub(crate) loop_id: usize,
    pub(crate) now: Instant,
    pub(crate) udp: &'a mut UdpOut,
}

impl<'a> Datagram<'a> {
    /// The payload; the slice outlives borrows of the datagram, so it can be
    /// passed straight to [`Datagram::reply`].
    pub fn data(&self) -> &'a [u8] {
        self.data
    }

    /// Who sent it.
    pub fn peer(&self) -> SocketAddr {
        self.peer
    }

    /// The index of the listener it arrived on, in the order given to the builder.
    pub fn listener(&self) -> usize {
        self.listener
    }

    /// True when the datagram was longer than the receive buffer and `data` holds
    /// only its beginning.
    pub fn truncated(&self) -> bool {
        self.truncated
    }

    /// Sends `data` back to the sender.
    ///
    /// # Errors
    ///
    /// The socket's error; `WouldBlock` when its send buffer is full (the datagram
    /// is dropped). Batched replies report their errors in the counters only.
    pub fn reply(&mut self, data: &[u8]) -> io::Result<()> {
        self.send_to(data, self.peer)
    }

    /// Sends `data` to `to` from the socket the datagram arrived on.
    ///
    /// # Errors
    ///
    /// As [`Datagram::reply`].
    pub fn send_to(&mut self, data: &[u8], to: SocketAddr) -> io::Result<()> {
        if let Some(batch) = self.batch.as_deref_mut() {
            batch.push(data, to);
            return Ok(());
        }
        loop {
            match self.socket.send_to(data, to) {
                Ok(_) => {
                    bump(&self.counters.datagrams_out, 1);
                    bump(&self.counters.bytes_out, data.len() as u64);
                    return Ok(());
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    bump(&self.counters.datagrams_dropped, 1);
                    return Err(e);
                }
            }
        }
    }

    /// The index of the loop serving this socket.
    pub fn loop_id(&self) -> usize {
        self.loop_id
    }

    /// The loop's clock, read once per loop iteration.
    pub fn now(&self) -> Instant {
        self.now
    }

    /// The engine.
    pub fn engine(&self) -> &Engine {
        self.engine
    }

    /// UDP for the rest of the loop: sessions, other addresses, dialing.
    pub fn udp(&mut self) -> Udp<'_> {
        self.udp.handle(self.loop_id)
    }
}
