//! Accepting connections and handing them to loops.

use super::*;
use crate::timer::deadline::instant_after;

impl<H: EventHandler> EventLoop<H> {
    pub(super) fn accept(&mut self, i: usize) {
        if self.stopping.is_some() {
            return;
        }
        let mut accepted = 0;
        loop {
            let Some(listener) = self.listeners.get_mut(i) else {
                return;
            };
            if listener.paused_until.is_some() {
                return;
            }
            if accepted == self.opts.accepts_per_wakeup {
                // Edge-triggered: nothing will announce the rest of the backlog.
                self.ready_accepts.push(i);
                return;
            }
            if let ListenSocket::Udp(_) = listener.inner.socket {
                self.read_datagrams(i);
                return;
            }
            let (tag, shared) = (listener.inner.tag as u16, listener.inner.shared);
            match listener.inner.socket.accept() {
                Ok((stream, peer)) => {
                    accepted += 1;
                    listener.backoff = self.opts.accept_backoff_min;
                    if self.core.engine.connection_count() >= self.opts.max_connections {
                        // Accept and close at once: the peer learns now instead of
                        // waiting in the backlog, and established ones are untouched.
                        bump(&self.core.engine.counters(self.core.loop_id).rejected, 1);
                        drop(stream);
                        continue;
                    }
                    self.route(stream, peer, tag, shared);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e)
                    if e.kind() == io::ErrorKind::Interrupted
                        || e.kind() == io::ErrorKind::ConnectionAborted =>
                {
                    continue;
                }
                Err(e) => {
                    // EMFILE, ENFILE, ENOBUFS, ENOMEM: retrying at once would spin
                    // on the same error; pause with a growing delay instead. The
                    // reserve descriptor lets one waiting peer be told (closed)
                    // rather than left hanging in the backlog.
                    if self.reserve_fd.take().is_some() {
                        if let Ok((shed, _)) = listener.inner.socket.accept() {
                            drop(shed);
                            bump(&self.core.engine.counters(self.core.loop_id).shed, 1);
                        }
                        self.reserve_fd = std::fs::File::open("/dev/null").ok();
                    }
                    let pause = listener.backoff;
                    listener.paused_until = Some(instant_after(self.core.now, pause));
                    listener.backoff = pause.saturating_mul(2).min(self.opts.accept_backoff_max);
                    log::warn!(
                        "loop {}: accept failed ({e}); pausing accepts for {pause:?}",
                        self.core.loop_id
                    );
                    return;
                }
            }
        }
    }

    /// Gives an accepted socket to the loop the balancer picks (this one, with
    /// SO_REUSEPORT).
    pub(super) fn route(
        &mut self,
        stream: Stream,
        peer: Option<std::net::SocketAddr>,
        tag: u16,
        shared: bool,
    ) {
        let balancer = match self.balancer.as_mut() {
            Some(b) if shared => b,
            _ => {
                self.open(stream, false, tag);
                return;
            }
        };
        self.core.engine.loop_open_counts(&mut self.open_counts);
        let target = balancer.pick(peer, &self.open_counts);
        if target == self.core.loop_id {
            self.open(stream, false, tag);
            return;
        }
        // Count it now so least-connections sees hand-offs still in flight.
        let counters = self.core.engine.counters(target);
        counters.open.fetch_add(1, Ordering::Relaxed);
        if self
            .core
            .engine
            .push_to_loop(target, Command::Adopt(stream, tag))
            .is_err()
        {
            counters.open.fetch_sub(1, Ordering::Relaxed);
        }
    }

    /// Registers a new connection and runs `on_open`. `counted`: the open counter
    /// was already raised by the loop that accepted it.
    pub(super) fn open(&mut self, mut stream: Stream, counted: bool, listener: u16) {
        let counters = self.core.engine.counters(self.core.loop_id);
        if !counted {
            counters.open.fetch_add(1, Ordering::Relaxed);
        }
        bump(&counters.accepted, 1);
        let sock = socket2::SockRef::from(&stream);
        if let Err(e) = self.opts.socket.apply_to_conn(&sock, !stream.is_unix()) {
            log::debug!("socket options on an accepted connection: {e}");
        }
        let layer = match self.listener_layer(listener) {
            Ok(layer) => layer,
            Err(reason) => {
                log::warn!("loop {}: refused a connection: {reason}", self.core.loop_id);
                counters.open.fetch_sub(1, Ordering::Relaxed);
                return;
            }
        };
        let key = self.conns.vacant_key();
        let registered = key <= MAX_CONN_KEY
            && self
                .poll
                .registry()
                .register(&mut stream, Token(key), Interest::READABLE)
                .is_ok();
        if !registered {
            log::warn!(
                "loop {}: could not register a connection",
                self.core.loop_id
            );
            counters.open.fetch_sub(1, Ordering::Relaxed);
            return;
        }
        let generation = self.next_generation;
        self.next_generation = self.next_generation.wrapping_add(1);
        let layered = if layer.as_ref().is_some_and(|l| l.intercepts()) {
            LAYERED
        } else {
            0
        };
        self.conns.insert(Slot {
            io: SlotIo {
                stream,
                generation,
                flags: REG_READ | layered,
                listener,
                inbound: None,
                outbound: None,
                timing: Timing::new(self.core.now_ms),
                dial: None,
                close: PendingClose::None,
                dropped: 0,
                layer,
            },
            state: H::State::default(),
        });
        self.rearm(key);
        if !self.layer_pending(key) {
            self.callback(key, Callback::Open);
        }
    }
}
