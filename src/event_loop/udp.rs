//! UDP listeners: reading datagrams, one per syscall or in `recvmmsg` batches.

use std::io;
use std::os::fd::AsRawFd;
use std::panic::{self, AssertUnwindSafe};
use std::time::Duration;

use mio::net::UdpSocket;

use super::{EventLoop, ListenSocket, Listener, LoopListener};
use crate::datagram::Datagram;
use crate::engine::Engine;
use crate::handler::{Action, EventHandler};
use crate::net::mmsg::{RecvBatch, SendBatch};
use crate::net::reflection::is_reflection;
use crate::stats::{LoopCounters, bump};

/// A loop's `recvmmsg`/`sendmmsg` buffers, made on first use.
pub(super) struct UdpBatches {
    recv: RecvBatch,
    send: SendBatch,
}

/// The UDP socket of listener `i` and its tag, if `i` is one.
fn udp_listener(listeners: &[Listener], i: usize) -> Option<(&UdpSocket, usize)> {
    match listeners.get(i) {
        Some(Listener {
            inner:
                LoopListener {
                    socket: ListenSocket::Udp(socket),
                    tag,
                    ..
                },
            ..
        }) => Some((socket, *tag)),
        _ => None,
    }
}

/// Runs `on_datagram`, unless the datagram is a reflection (dropped and
/// counted); a panic is logged and the loop goes on.
fn deliver<H: EventHandler>(handler: &mut H, dgram: &mut Datagram<'_>, drain: Duration) {
    match panic::catch_unwind(AssertUnwindSafe(|| handler.on_datagram(dgram))) {
        Ok(Action::Shutdown) => dgram.engine.signal_stop(drain),
        Ok(_) => {}
        Err(_) => log::error!("loop {}: on_datagram panicked", dgram.loop_id),
    }
}

/// True for a datagram whose source is one of the engine's own addresses or
/// port 0 (a reflection loop), unless `allow` says to let them through: it is
/// counted and dropped before any session or handler sees it. The first few of
/// a loop are logged at debug, no more.
fn reflected(
    allow: bool,
    engine: &Engine,
    counters: &LoopCounters,
    peer: std::net::SocketAddr,
    loop_id: usize,
) -> bool {
    if allow || !is_reflection(peer, engine.listen_addrs()) {
        return false;
    }
    let n = counters
        .datagrams_reflected
        .load(std::sync::atomic::Ordering::Relaxed);
    if n < 8 {
        log::debug!("loop {loop_id}: dropped a datagram from {peer}: our own address or port 0");
    }
    bump(&counters.datagrams_reflected, 1);
    true
}

impl<H: EventHandler> EventLoop<H> {
    /// Reads datagrams from UDP listener `i` until drained or out of budget.
    pub(super) fn read_datagrams(&mut self, i: usize) {
        if self.opts.udp_batch > 1 {
            return self.read_datagram_batches(i);
        }
        let counters = self.core.engine.counters(self.core.loop_id);
        for _ in 0..self.opts.udp_budget {
            let Some((socket, tag)) = udp_listener(&self.listeners, i) else {
                return;
            };
            let (n, peer) = match socket.recv_from(&mut self.rbuf) {
                Ok(got) => got,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    // ICMP errors for earlier sends surface here; the socket is fine.
                    log::debug!("loop {}: udp receive: {e}", self.core.loop_id);
                    continue;
                }
            };
            bump(&counters.datagrams_in, 1);
            bump(&counters.bytes_in, n as u64);
            let (allow, loop_id) = (self.opts.udp_allow_own_source, self.core.loop_id);
            if reflected(allow, &self.core.engine, counters, peer, loop_id) {
                continue;
            }
            if self.sessions.has(i) {
                let (mut env, handler, sessions) = session_env!(self);
                sessions.route(i, handler, &mut env, peer, &self.rbuf[..n], false);
                continue;
            }
            let mut dgram = Datagram {
                data: &self.rbuf[..n],
                peer,
                listener: tag,
                truncated: false,
                socket,
                batch: None,
                counters,
                engine: &self.core.engine,
                loop_id: self.core.loop_id,
                now: self.core.now,
                udp: &mut self.core.udp,
            };
            deliver(&mut self.handler, &mut dgram, self.opts.shutdown_timeout);
        }
        // Out of budget with datagrams left: edge triggering will not say so again.
        self.ready_accepts.push(i);
    }

    /// The batched variant: one `recvmmsg` per batch, replies in one `sendmmsg`.
    fn read_datagram_batches(&mut self, i: usize) {
        let counters = self.core.engine.counters(self.core.loop_id);
        let (batch, max_len) = (self.opts.udp_batch, self.opts.udp_max_datagram);
        let udp = self.udp.get_or_insert_with(|| {
            Box::new(UdpBatches {
                recv: RecvBatch::new(batch, max_len),
                send: SendBatch::new(batch),
            })
        });
        let mut received = 0;
        while received < self.opts.udp_budget {
            let Some((socket, tag)) = udp_listener(&self.listeners, i) else {
                return;
            };
            let fd = socket.as_raw_fd();
            let n = match udp.recv.recv(fd) {
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) => {
                    log::debug!("loop {}: udp receive: {e}", self.core.loop_id);
                    return;
                }
            };
            received += n.max(1);
            let UdpBatches { recv, send } = &mut **udp;
            let with_sessions = self.sessions.has(i);
            for d in recv.iter() {
                bump(&counters.datagrams_in, 1);
                bump(&counters.bytes_in, d.data.len() as u64);
                let (allow, loop_id) = (self.opts.udp_allow_own_source, self.core.loop_id);
                if reflected(allow, &self.core.engine, counters, d.peer, loop_id) {
                    continue;
                }
                if with_sessions {
                    let (mut env, handler, sessions) = session_env!(self);
                    sessions.route(i, handler, &mut env, d.peer, d.data, d.truncated);
                    continue;
                }
                let mut dgram = Datagram {
                    data: d.data,
                    peer: d.peer,
                    listener: tag,
                    truncated: d.truncated,
                    socket,
                    batch: Some(send),
                    counters,
                    engine: &self.core.engine,
                    loop_id: self.core.loop_id,
                    now: self.core.now,
                    udp: &mut self.core.udp,
                };
                deliver(&mut self.handler, &mut dgram, self.opts.shutdown_timeout);
            }
            let before = send.refused() + send.overflowed();
            match send.flush(fd) {
                Ok(sent) => bump(&counters.datagrams_out, sent as u64),
                Err(e) => log::debug!("loop {}: udp send: {e}", self.core.loop_id),
            }
            // Replies the kernel would not take now are dropped rather than kept:
            // UDP promises nothing, and a queue would only grow under overload.
            let lost = send.refused() + send.overflowed() - before + send.len() as u64;
            send.clear();
            bump(&counters.datagrams_dropped, lost);
        }
        self.ready_accepts.push(i);
    }
}
