//! UDP sessions on a loop: routing datagrams of session listeners, dialed
//! session sockets, idle expiry, and sending what callbacks queued.

use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::time::{SystemTime, UNIX_EPOCH};

use super::*;
use crate::net::mmsg::{RecvBatch, SendBatch};
use crate::stats::LoopCounters;
use crate::udp_session::outbox::Target;
use crate::udp_session::udp::{DIALED, UdpOut, tag};
use crate::udp_session::{
    Admit, Cookies, NewSource, Session, SessionClose, SessionId, SessionOptions, SessionTable,
};

/// The session callbacks' view of the loop, from disjoint fields of an
/// `EventLoop` so other fields (the read buffer, a socket) may stay borrowed.
macro_rules! session_env {
    ($l:expr) => {
        (
            $crate::event_loop::sessions::Env {
                out: &mut $l.core.udp,
                engine: &$l.core.engine,
                counters: $l.core.engine.counters($l.core.loop_id),
                loop_id: $l.core.loop_id,
                now: $l.core.now,
                now_ms: $l.core.now_ms,
                drain: $l.opts.shutdown_timeout,
            },
            &mut $l.handler,
            &mut $l.sessions,
        )
    };
}

/// Tokens of dialed session sockets start here (connections use their slab key,
/// far below; listeners count down from the top).
pub(super) const DIALED_TOKEN: usize = usize::MAX / 2;
/// Datagrams per `sendmmsg` when flushing the queue.
const SEND_BATCH: usize = 64;
/// Datagrams per `recvmmsg` on a dialed socket.
const RECV_BATCH: usize = 16;

/// The sessions of one UDP listener on this loop.
pub(super) struct ListenerSessions<S> {
    tag: usize,
    table: SessionTable<S>,
    cookies: Cookies,
}

/// A loop's session state: one table per session listener, dialed sessions'
/// states, and the batches used to send and receive.
pub(super) struct Sessions<S> {
    /// Indexed like the loop's listeners.
    by_listener: Vec<Option<ListenerSessions<S>>>,
    dialed: Vec<Option<S>>,
    /// Dialed sockets whose read budget ran out with datagrams left.
    ready_dialed: Vec<u32>,
    send: Option<SendBatch>,
    recv: Option<RecvBatch>,
    /// Wall-clock milliseconds at the loop's origin: cookies are minted and
    /// checked on a clock every loop (and process) shares.
    wall_origin_ms: u64,
}

impl<S> Sessions<S> {
    pub(super) fn new(listeners: &[Listener], opts: &Options, loop_id: usize) -> Self {
        let by_listener = listeners
            .iter()
            .map(|l| {
                let (_, so) = opts.udp_sessions.iter().find(|(t, _)| *t == l.inner.tag)?;
                matches!(l.inner.socket, ListenSocket::Udp(_))
                    .then(|| table(l.inner.tag, so, loop_id))
            })
            .collect();
        let wall_origin_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        Sessions {
            by_listener,
            dialed: Vec::new(),
            ready_dialed: Vec::new(),
            send: None,
            recv: None,
            wall_origin_ms,
        }
    }

    /// The earliest loop time a session may expire.
    pub(super) fn next_expiry(&self) -> Option<u64> {
        self.by_listener
            .iter()
            .flatten()
            .filter_map(|l| l.table.next_expiry())
            .min()
    }

    pub(super) fn has(&self, listener: usize) -> bool {
        self.by_listener.get(listener).is_some_and(Option::is_some)
    }

    /// Routes a datagram that arrived on session listener `listener`.
    pub(super) fn route<H: EventHandler<State = S>>(
        &mut self,
        listener: usize,
        handler: &mut H,
        env: &mut Env<'_>,
        peer: SocketAddr,
        data: &[u8],
        truncated: bool,
    ) {
        let wall = self.wall_origin_ms;
        if let Some(Some(ls)) = self.by_listener.get_mut(listener) {
            route(handler, ls, env, wall, peer, data, truncated);
        }
    }
}

fn table<S>(listener_tag: usize, so: &SessionOptions, loop_id: usize) -> ListenerSessions<S> {
    let idle = so.idle_timeout.map_or(0, crate::event_loop::core::ms_ceil);
    ListenerSessions {
        tag: listener_tag,
        table: SessionTable::new(tag(loop_id, listener_tag as u32), so.max_sessions, idle, 0),
        cookies: Cookies::new(so.cookie_key, super::core::ms_ceil(so.cookie_lifetime)),
    }
}

/// What a session callback needs of the loop besides the session itself.
pub(super) struct Env<'a> {
    pub(super) out: &'a mut UdpOut,
    pub(super) engine: &'a Engine,
    pub(super) counters: &'a LoopCounters,
    pub(super) loop_id: usize,
    pub(super) now: Instant,
    pub(super) now_ms: u64,
    pub(super) drain: Duration,
}

fn session_view<'a, S>(
    id: SessionId,
    peer: SocketAddr,
    state: &'a mut S,
    env: &'a mut Env<'_>,
) -> Session<'a, S> {
    Session {
        id,
        peer,
        state,
        out: env.out,
        loop_id: env.loop_id,
        close: false,
        now: env.now,
        engine: env.engine,
    }
}

/// Runs a session callback under `catch_unwind`; returns whether the session
/// must close (asked for, or the callback panicked).
fn run<S, R>(
    id: SessionId,
    peer: SocketAddr,
    state: &mut S,
    env: &mut Env<'_>,
    f: impl FnOnce(&mut Session<'_, S>) -> R,
    to_action: impl FnOnce(R) -> Action,
) -> bool {
    let (engine, drain, loop_id) = (env.engine, env.drain, env.loop_id);
    let mut s = session_view(id, peer, state, env);
    match panic::catch_unwind(AssertUnwindSafe(|| f(&mut s))) {
        Ok(r) => match to_action(r) {
            Action::Shutdown => {
                engine.signal_stop(drain);
                s.close
            }
            Action::Close => true,
            Action::Continue => s.close,
        },
        Err(_) => {
            log::error!("loop {loop_id}: a session callback panicked; closing {id}");
            true
        }
    }
}

fn closed<H: EventHandler>(
    handler: &mut H,
    id: SessionId,
    peer: SocketAddr,
    mut state: H::State,
    env: &mut Env<'_>,
    reason: SessionClose,
) {
    run(
        id,
        peer,
        &mut state,
        env,
        |s| handler.on_session_close(s, reason),
        |()| Action::Continue,
    );
}

/// Routes one datagram of a session listener: to its session, or through the
/// validation hook to a new one.
fn route<H: EventHandler>(
    handler: &mut H,
    ls: &mut ListenerSessions<H::State>,
    env: &mut Env<'_>,
    wall_origin_ms: u64,
    peer: SocketAddr,
    data: &[u8],
    truncated: bool,
) {
    let id = match ls.table.lookup(peer) {
        Some(id) => {
            ls.table.touch(id, env.now_ms);
            id
        }
        None => {
            if ls.table.is_full() {
                bump(&env.counters.datagrams_dropped, 1);
                return;
            }
            let mut src = NewSource {
                data,
                peer,
                listener: ls.tag,
                cookies: &ls.cookies,
                clock_ms: wall_origin_ms + env.now_ms,
                out: &mut env.out.outbox,
            };
            match panic::catch_unwind(AssertUnwindSafe(|| handler.on_new_source(&mut src))) {
                Ok(Admit::Open) => {}
                Ok(Admit::Drop) => return,
                Err(_) => {
                    log::error!("loop {}: on_new_source panicked", env.loop_id);
                    return;
                }
            }
            let Ok(id) = ls.table.insert(peer, H::State::default(), env.now_ms) else {
                return;
            };
            let state = ls.table.get_mut(id).expect("just inserted");
            if run(id, peer, state, env, |s| handler.on_session_open(s), |a| a) {
                end(handler, ls, id, env, SessionClose::Local);
                return;
            }
            id
        }
    };
    let Some(state) = ls.table.get_mut(id) else {
        return;
    };
    let close = run(
        id,
        peer,
        state,
        env,
        |s| handler.on_session_datagram(s, data, truncated),
        |a| a,
    );
    if close {
        end(handler, ls, id, env, SessionClose::Local);
    }
}

/// Removes a listener session and runs `on_session_close`.
fn end<H: EventHandler>(
    handler: &mut H,
    ls: &mut ListenerSessions<H::State>,
    id: SessionId,
    env: &mut Env<'_>,
    reason: SessionClose,
) {
    if let Some((peer, state)) = ls.table.remove(id) {
        closed(handler, id, peer, state, env, reason);
    }
}

impl<H: EventHandler> EventLoop<H> {
    pub(super) fn session_env(&mut self) -> (Env<'_>, &mut H, &mut Sessions<H::State>) {
        session_env!(self)
    }

    /// Expires idle sessions.
    pub(super) fn expire_sessions(&mut self) {
        let now = self.core.now_ms;
        if self.sessions.next_expiry().is_none_or(|t| t > now) {
            return;
        }
        let (mut env, handler, sessions) = self.session_env();
        for ls in sessions.by_listener.iter_mut().flatten() {
            while let Some(e) = ls.table.poll_expired(now) {
                closed(
                    handler,
                    e.id,
                    e.addr,
                    e.state,
                    &mut env,
                    SessionClose::IdleTimeout,
                );
            }
        }
    }

    /// Reads datagrams from dialed session `slot`.
    pub(super) fn read_dialed(&mut self, slot: u32) {
        let max_len = self.opts.udp_max_datagram;
        let budget = self.opts.udp_budget;
        let (mut env, handler, sessions) = self.session_env();
        let mut recv = sessions
            .recv
            .take()
            .unwrap_or_else(|| RecvBatch::new(RECV_BATCH, max_len));
        if drain_dialed(handler, sessions, &mut env, &mut recv, slot, budget) {
            // Out of budget: come back without waiting for an edge that will not come.
            sessions.ready_dialed.push(slot);
        }
        sessions.recv = Some(recv);
    }

    /// Whether dialed sockets wait to be read again (the poll must not block).
    pub(super) fn sessions_ready(&self) -> bool {
        !self.sessions.ready_dialed.is_empty()
    }

    /// Reads the dialed sockets whose budget ran out.
    pub(super) fn run_ready_dialed(&mut self) {
        if self.sessions.ready_dialed.is_empty() {
            return;
        }
        let ready = std::mem::take(&mut self.sessions.ready_dialed);
        for &slot in &ready {
            self.read_dialed(slot);
        }
    }

    /// Sends everything callbacks queued, opens newly dialed sessions and
    /// applies session closes; repeated while those callbacks queue more.
    pub(super) fn flush_udp(&mut self) {
        for _ in 0..4 {
            let out = &self.core.udp;
            if out.outbox.is_empty() && out.closes.is_empty() && out.dialed_new.is_empty() {
                return;
            }
            self.open_dialed();
            self.send_queued();
            self.apply_session_closes();
        }
        // Callbacks that keep queueing from on_session_close: drop the rest.
        let counters = self.core.engine.counters(self.core.loop_id);
        bump(
            &counters.datagrams_dropped,
            self.core.udp.outbox.len() as u64,
        );
        self.core.udp.outbox.clear();
    }

    fn open_dialed(&mut self) {
        let fresh = std::mem::take(&mut self.core.udp.dialed_new);
        for &slot in &fresh {
            let Some(d) = self.core.udp.dialed.get_mut(slot as usize) else {
                continue;
            };
            let Some(socket) = d.socket.as_mut() else {
                continue;
            };
            let (generation, peer) = (d.generation, d.peer);
            let token = Token(DIALED_TOKEN + slot as usize);
            if let Err(e) = self
                .poll
                .registry()
                .register(socket, token, Interest::READABLE)
            {
                log::warn!(
                    "loop {}: registering a dialed udp socket: {e}",
                    self.core.loop_id
                );
            }
            if let Some(us) = self.opts.busy_poll {
                let _ = socket2::SockRef::from(&*socket).set_busy_poll(us.as_micros() as u32);
            }
            let states = &mut self.sessions.dialed;
            if states.len() <= slot as usize {
                states.resize_with(slot as usize + 1, || None);
            }
            states[slot as usize] = Some(H::State::default());
            let id = SessionId {
                tag: tag(self.core.loop_id, DIALED),
                slot,
                generation,
            };
            let (mut env, handler, sessions) = self.session_env();
            let state = sessions.dialed[slot as usize].as_mut().expect("just set");
            if run(
                id,
                peer,
                state,
                &mut env,
                |s| handler.on_session_open(s),
                |a| a,
            ) {
                close_dialed(handler, sessions, &mut env, id, SessionClose::Local);
            }
        }
        let mut fresh = fresh;
        fresh.clear();
        if self.core.udp.dialed_new.is_empty() {
            self.core.udp.dialed_new = fresh; // keep the capacity
        }
    }

    fn apply_session_closes(&mut self) {
        let closes = std::mem::take(&mut self.core.udp.closes);
        for &id in &closes {
            self.close_session(id, SessionClose::Local);
        }
        let mut closes = closes;
        closes.clear();
        if self.core.udp.closes.is_empty() {
            self.core.udp.closes = closes;
        }
    }

    /// Ends any session by id; a stale id does nothing.
    pub(super) fn close_session(&mut self, id: SessionId, reason: SessionClose) {
        let (mut env, handler, sessions) = self.session_env();
        if (id.tag >> 16) as usize != env.loop_id {
            return;
        }
        if id.tag & 0xFFFF == DIALED {
            close_dialed(handler, sessions, &mut env, id, reason);
            return;
        }
        let listener = (id.tag & 0xFFFF) as usize;
        if let Some(ls) = sessions
            .by_listener
            .iter_mut()
            .flatten()
            .find(|l| l.tag == listener)
        {
            end(handler, ls, id, &mut env, reason);
        }
    }

    /// Ends every session (the engine is stopping), then sends what their
    /// `on_session_close` queued.
    pub(super) fn close_all_sessions(&mut self) {
        let mut ids = Vec::new();
        for ls in self.sessions.by_listener.iter().flatten() {
            ids.extend(ls.table.iter().map(|(id, _, _)| id));
        }
        for (slot, d) in self.core.udp.dialed.iter().enumerate() {
            if d.socket.is_some() {
                ids.push(SessionId {
                    tag: tag(self.core.loop_id, DIALED),
                    slot: slot as u32,
                    generation: d.generation,
                });
            }
        }
        for id in ids {
            self.close_session(id, SessionClose::Shutdown);
        }
        self.flush_udp();
    }

    /// Sends the outbox: `sendmmsg` batches per socket, in queue order.
    fn send_queued(&mut self) {
        if self.core.udp.outbox.is_empty() {
            return;
        }
        let counters = self.core.engine.counters(self.core.loop_id);
        let send = self
            .sessions
            .send
            .get_or_insert_with(|| SendBatch::new(SEND_BATCH));
        let out = &self.core.udp;
        let mut current: Option<std::os::fd::RawFd> = None;
        let (mut sent, mut dropped) = (0u64, 0u64);
        for (to, data) in out.outbox.iter() {
            let (fd, addr) = match resolve(to, &self.listeners, &self.sessions.by_listener, out) {
                Resolved::Listener(fd, addr) => (fd, addr),
                Resolved::Connected(socket) => {
                    match socket.send(data) {
                        Ok(_) => {
                            sent += 1;
                            bump(&counters.bytes_out, data.len() as u64);
                        }
                        Err(_) => dropped += 1,
                    }
                    continue;
                }
                Resolved::Nowhere => {
                    dropped += 1;
                    continue;
                }
            };
            if current.is_some_and(|c| c != fd) || send.len() >= SEND_BATCH {
                let (s, d) = flush(send, current.unwrap_or(fd));
                sent += s;
                dropped += d;
            }
            current = Some(fd);
            send.push(data, addr);
            bump(&counters.bytes_out, data.len() as u64);
        }
        if let Some(fd) = current {
            let (s, d) = flush(send, fd);
            sent += s;
            dropped += d;
        }
        bump(&counters.datagrams_out, sent);
        bump(
            &counters.datagrams_dropped,
            dropped + self.core.udp.outbox.overflowed,
        );
        self.core.udp.outbox.overflowed = 0;
        self.core.udp.outbox.clear();
    }

    /// Sets `SO_BUSY_POLL` on the UDP listeners when busy polling is on; a
    /// kernel that refuses (`EPERM` without `CAP_NET_ADMIN`) is ignored.
    pub(super) fn set_busy_poll(&self) {
        let Some(us) = self.opts.busy_poll else {
            return;
        };
        for l in &self.listeners {
            let r = match &l.inner.socket {
                ListenSocket::Udp(s) => {
                    socket2::SockRef::from(s).set_busy_poll(us.as_micros() as u32)
                }
                ListenSocket::Tcp(s) => {
                    socket2::SockRef::from(s).set_busy_poll(us.as_micros() as u32)
                }
                ListenSocket::Unix(_) => Ok(()),
            };
            if let Err(e) = r {
                log::debug!("loop {}: SO_BUSY_POLL: {e}", self.core.loop_id);
            }
        }
    }
}

enum Resolved<'a> {
    Listener(std::os::fd::RawFd, SocketAddr),
    Connected(&'a mio::net::UdpSocket),
    Nowhere,
}

fn resolve<'a, S>(
    to: Target,
    listeners: &[Listener],
    tables: &[Option<ListenerSessions<S>>],
    out: &'a UdpOut,
) -> Resolved<'a> {
    let (listener, addr) = match to {
        Target::Addr { listener, addr } => (listener, addr),
        Target::Session(id) => {
            if let Some(d) = out.dialed(id) {
                return match d.socket.as_ref() {
                    Some(s) => Resolved::Connected(s),
                    None => Resolved::Nowhere,
                };
            }
            let listener = (id.tag & 0xFFFF) as usize;
            let addr = tables
                .iter()
                .flatten()
                .find(|l| l.tag == listener)
                .and_then(|l| l.table.addr(id));
            match addr {
                Some(addr) => (listener, addr),
                None => return Resolved::Nowhere,
            }
        }
    };
    for l in listeners {
        if let ListenSocket::Udp(s) = &l.inner.socket
            && l.inner.tag == listener
        {
            return Resolved::Listener(s.as_raw_fd(), addr);
        }
    }
    Resolved::Nowhere
}

/// Flushes a send batch; returns (sent, dropped). What the kernel does not take
/// now is dropped, not kept: UDP promises nothing.
fn flush(send: &mut SendBatch, fd: std::os::fd::RawFd) -> (u64, u64) {
    let before = send.refused() + send.overflowed();
    let sent = send.flush(fd).unwrap_or(0) as u64;
    let dropped = send.refused() + send.overflowed() - before + send.len() as u64;
    send.clear();
    (sent, dropped)
}

fn close_dialed<H: EventHandler>(
    handler: &mut H,
    sessions: &mut Sessions<H::State>,
    env: &mut Env<'_>,
    id: SessionId,
    reason: SessionClose,
) {
    let Some(d) = env.out.dialed(id) else {
        return;
    };
    let peer = d.peer;
    let state = sessions
        .dialed
        .get_mut(id.slot as usize)
        .and_then(Option::take);
    // Dropping the socket deregisters it from the poller (the fd closes).
    drop(env.out.release_dialed(id.slot));
    if let Some(state) = state {
        closed(handler, id, peer, state, env, reason);
    }
}

/// Reads dialed session `slot` until drained, closed or out of budget; true
/// when the budget ran out with datagrams possibly left.
fn drain_dialed<H: EventHandler>(
    handler: &mut H,
    sessions: &mut Sessions<H::State>,
    env: &mut Env<'_>,
    recv: &mut RecvBatch,
    slot: u32,
    budget: usize,
) -> bool {
    let mut received = 0;
    while received < budget {
        let Some(d) = env.out.dialed.get(slot as usize) else {
            return false;
        };
        let Some(socket) = d.socket.as_ref() else {
            return false;
        };
        let id = SessionId {
            tag: tag(env.loop_id, DIALED),
            slot,
            generation: d.generation,
        };
        let peer = d.peer;
        let n = match recv.recv(socket.as_raw_fd()) {
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return false,
            Err(e) => {
                log::debug!("loop {}: {id}: {e}", env.loop_id);
                close_dialed(handler, sessions, env, id, SessionClose::Error);
                return false;
            }
        };
        received += n.max(1);
        for d in recv.iter() {
            bump(&env.counters.datagrams_in, 1);
            bump(&env.counters.bytes_in, d.data.len() as u64);
            let Some(state) = sessions
                .dialed
                .get_mut(slot as usize)
                .and_then(Option::as_mut)
            else {
                return false;
            };
            let close = run(
                id,
                peer,
                state,
                env,
                |s| handler.on_session_datagram(s, d.data, d.truncated),
                |a| a,
            );
            if close {
                close_dialed(handler, sessions, env, id, SessionClose::Local);
                return false;
            }
        }
        if n < recv.batch() {
            return false; // a short batch drained the socket
        }
    }
    true
}
