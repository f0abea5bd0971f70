//! The pool's side of each loop: decodes responses, writes what senders left
//! in a connection's backlog, pings, and hands a closed connection's frames on.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use super::shared::{CallbackScope, Shared, bump, lock, take_deferred};
use super::{Pool, Response};
use crate::client::ConnectFailure;
use crate::codec::{Codec, Decoded};
use crate::conn::Conn;
use crate::ctx::LoopCtx;
use crate::handler::{Action, CloseReason, EventHandler};

/// A response callback as stored by the pool.
pub(super) type Callback = Arc<dyn Fn(Response<'_>) + Send + Sync + 'static>;

/// Above this the buffer that carries backlog to the socket is not kept for
/// reuse: one burst must not pin that much memory per loop.
const MAX_SPARE: usize = 1 << 20;

/// Per connection: which link it serves, its codec, and the bookkeeping that
/// tells pongs from responses.
///
/// It travels with the link across reconnects; `on_open` resets what belongs
/// to one connection.
#[derive(Debug)]
pub(super) struct ConnState<C> {
    pub(super) link: usize,
    codec: Option<C>,
    /// Frames written on this connection so far (requests and pings).
    written: u64,
    /// Frames received on it so far.
    received: u64,
    /// Positions of the pings among the written frames, oldest first.
    pings: VecDeque<u64>,
}

impl<C> ConnState<C> {
    pub(super) fn for_link(link: usize) -> Self {
        ConnState {
            link,
            codec: None,
            written: 0,
            received: 0,
            pings: VecDeque::new(),
        }
    }
}

impl<C> Default for ConnState<C> {
    fn default() -> Self {
        ConnState::for_link(usize::MAX)
    }
}

pub(super) struct PoolHandler<C> {
    pool: Pool,
    codec: C,
    on_response: Option<Callback>,
    /// Carries a backlog to `Conn::write` outside the link's lock; swapped with
    /// the link's buffer so capacity circulates instead of being reallocated.
    spare: Vec<u8>,
}

impl<C: Codec> PoolHandler<C> {
    pub(super) fn new(pool: Pool, codec: C, on_response: Option<Callback>) -> Self {
        PoolHandler {
            pool,
            codec,
            on_response,
            spare: Vec::new(),
        }
    }

    fn shared(&self) -> &Shared {
        &self.pool.shared
    }

    /// Writes the link's backlog to the connection, up to the high watermark.
    ///
    /// `at_event_start`: called first thing in `on_wake` or `on_writable`, when
    /// output above the high watermark can only be pending output, so the loop
    /// has paused the connection and will call `on_writable` once it drains.
    /// Elsewhere (the callback's own output may be what is high) nothing else
    /// is sure to come back, so frames left behind get a wake of their own.
    fn drain(&mut self, conn: &mut Conn<'_, ConnState<C>>, at_event_start: bool) {
        let idx = conn.state().link;
        let shared = &*self.pool.shared;
        let Some(link) = shared.links.get(idx) else {
            return;
        };
        if at_event_start && !conn.is_writable() {
            return;
        }
        let room = shared.high_watermark.saturating_sub(conn.outbound_len());
        let mut slot = lock(&link.slot);
        let frames = slot.backlog.frames();
        if frames == 0 {
            slot.wake_pending = false;
            return;
        }
        if slot.backlog.bytes.len() <= room {
            std::mem::swap(&mut slot.backlog.bytes, &mut self.spare);
            slot.backlog.ends.clear();
            slot.wake_pending = false;
            drop(slot);
            conn.write(&self.spare);
            self.spare.clear();
            if self.spare.capacity() > MAX_SPARE {
                self.spare = Vec::new();
            }
            conn.state_mut().written += frames as u64;
        } else {
            // At least one frame, or a frame larger than the watermark would
            // never go out.
            let k = slot.backlog.frames_within(room).max(1);
            conn.write(&slot.backlog.bytes[..slot.backlog.ends[k - 1]]);
            slot.backlog.remove_front(k);
            drop(slot);
            conn.state_mut().written += k as u64;
            // `wake_pending` stays set: this wake is the pending one.
            let _ = conn.engine().wake(conn.id());
        }
    }
}

impl<C: Codec> EventHandler for PoolHandler<C> {
    type State = ConnState<C>;

    fn on_open(&mut self, conn: &mut Conn<'_, ConnState<C>>) -> Action {
        let id = conn.id();
        let st = conn.state_mut();
        // A fresh codec: decoding state of the previous connection (a partial
        // frame it was scanning) means nothing on this one.
        st.codec = Some(self.codec.clone());
        st.written = 0;
        st.received = 0;
        st.pings.clear();
        let idx = st.link;
        let shared = &*self.pool.shared;
        let Some(link) = shared.links.get(idx) else {
            return Action::Close;
        };
        {
            // Queue, then link: the order `Shared::send` takes them in.
            let mut queue = lock(&shared.queue);
            let mut slot = lock(&link.slot);
            slot.conn = Some(id);
            link.up.store(true, Ordering::Release);
            let queued = queue.frames();
            if queued > 0 {
                slot.backlog.append(&mut queue);
                link.load.fetch_add(queued, Ordering::Relaxed);
            }
            slot.wake_pending = true;
        }
        bump(&link.opened, 1);
        self.drain(conn, false);
        Action::Continue
    }

    fn on_traffic(&mut self, conn: &mut Conn<'_, ConnState<C>>) -> Action {
        let idx = conn.state().link;
        let pool_id = self.pool.shared.id();
        let Some(link) = self.pool.shared.links.get(idx) else {
            return Action::Close;
        };
        let endpoint = link.endpoint;
        loop {
            let input = conn.read_buf();
            let st = conn.state_mut();
            let codec = st.codec.get_or_insert_with(|| self.codec.clone());
            let frame = match codec.decode(input) {
                Ok(Decoded::Frame(frame)) => frame,
                Ok(Decoded::Incomplete { .. }) => break,
                Err(e) => {
                    conn.close_with(CloseReason::Protocol(e));
                    break;
                }
            };
            let position = st.received;
            st.received += 1;
            let pong = st.pings.front() == Some(&position);
            if pong {
                st.pings.pop_front();
            }
            link.answered();
            if pong {
                self.pool.shared.pongs.fetch_add(1, Ordering::Relaxed);
            } else {
                bump(&link.responses, 1);
                if let Some(callback) = &self.on_response {
                    let _scope = CallbackScope::enter(pool_id, idx);
                    callback(Response {
                        pool: &self.pool,
                        endpoint,
                        connection: idx,
                        conn: conn.id(),
                        frame: frame.payload(input),
                    });
                }
            }
            conn.consume(frame.consumed());
            if conn.is_closing() {
                break;
            }
        }
        if take_deferred() && !conn.is_closing() {
            self.drain(conn, false);
        }
        Action::Continue
    }

    fn on_wake(&mut self, conn: &mut Conn<'_, ConnState<C>>) -> Action {
        self.drain(conn, true);
        Action::Continue
    }

    fn on_writable(&mut self, conn: &mut Conn<'_, ConnState<C>>) -> Action {
        self.drain(conn, true);
        Action::Continue
    }

    fn on_heartbeat(&mut self, conn: &mut Conn<'_, ConnState<C>>) -> Action {
        let Some(link) = self.pool.shared.links.get(conn.state().link) else {
            return Action::Continue;
        };
        let st = conn.state_mut();
        st.pings.push_back(st.written);
        st.written += 1;
        link.load.fetch_add(1, Ordering::Relaxed);
        conn.write(&self.pool.shared.ping);
        Action::Continue
    }

    fn on_close(&mut self, conn: &mut Conn<'_, ConnState<C>>, reason: &CloseReason) {
        let shared = self.shared();
        let Some(link) = shared.links.get(conn.state().link) else {
            return;
        };
        let orphans = {
            let mut slot = lock(&link.slot);
            slot.conn = None;
            link.up.store(false, Ordering::Release);
            slot.wake_pending = false;
            let orphans = std::mem::take(&mut slot.backlog);
            let load = link.load.swap(0, Ordering::Relaxed);
            let unanswered = load.saturating_sub(orphans.frames());
            shared.lost.fetch_add(unanswered as u64, Ordering::Relaxed);
            orphans
        };
        bump(&link.closed, 1);
        if matches!(reason, CloseReason::IdleTimeout(_)) {
            bump(&link.idle_timeouts, 1);
        }
        if orphans.frames() == 0 {
            return;
        }
        if shared.is_stopped() {
            shared
                .dropped
                .fetch_add(orphans.frames() as u64, Ordering::Relaxed);
        } else {
            shared.reroute(&orphans);
        }
    }

    fn on_connect_failed(
        &mut self,
        _ctx: &mut LoopCtx<'_, Self::State>,
        failure: &ConnectFailure,
        state: &mut ConnState<C>,
    ) {
        let shared = self.shared();
        let Some(link) = shared.links.get(state.link) else {
            return;
        };
        bump(&link.failed_dials, 1);
        if failure.retry_in.is_none() && !link.gave_up.swap(true, Ordering::Relaxed) {
            let gave_up = shared.gave_up.fetch_add(1, Ordering::AcqRel) + 1;
            if gave_up == shared.links.len() {
                // Nothing will ever take these.
                shared.drop_queue();
            }
        }
    }
}
