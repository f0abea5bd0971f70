//! The loop as a callback sees it: its other connections, broadcast, topics,
//! the ticker, the clock.

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;

use crate::conn_ref::ConnRef;
use crate::engine::Engine;
use crate::event_loop::core::{LoopCore, PeerSlots, SlotIo};
use crate::id::ConnId;
use crate::ticker::TickInfo;
use crate::topics::TopicError;
use crate::udp_session::Udp;

/// The loop a callback runs on. `S` is the handler's
/// [`State`](crate::EventHandler::State).
///
/// Loop-level callbacks (`on_boot`, `on_tick`, `on_shutdown`,
/// `on_connect_failed`, `on_reconnecting`) receive one; connection callbacks
/// reach it with [`Conn::ctx`](crate::Conn::ctx). Through it a callback works on
/// any connection of its own loop directly, with no command and no wake:
/// [`LoopCtx::conn`] by id, [`LoopCtx::for_each`] over all of them,
/// [`LoopCtx::broadcast`] to a list, and topics ([`LoopCtx::subscribe`],
/// [`LoopCtx::publish`]). Output written this way is flushed at the end of the
/// loop's pass, one `writev` per connection, in the order written.
///
/// # Examples
///
/// A 60 Hz game loop sending one snapshot to every connection of the loop,
/// stored once however many receive it:
///
/// ```no_run
/// use std::time::Duration;
/// use bytes::Bytes;
/// use tether::{Action, Conn, EventHandler, LoopCtx};
///
/// struct Game;
///
/// impl EventHandler for Game {
///     type State = ();
///     fn on_traffic(&mut self, conn: &mut Conn<'_, ()>) -> Action {
///         let n = conn.read_buf().len();
///         conn.consume(n);
///         Action::Continue
///     }
///     fn on_tick(&mut self, ctx: &mut LoopCtx<'_, ()>) -> Option<Duration> {
///         let snapshot = Bytes::from(vec![0u8; 200]);
///         ctx.for_each(|mut conn| {
///             conn.send(snapshot.clone());
///         });
///         if let Some(tick) = ctx.tick_info() {
///             if tick.skipped > 0 {
///                 eprintln!("late by {:?}, {} ticks skipped", tick.late, tick.skipped);
///             }
///         }
///         Some(Duration::from_nanos(16_666_667))
///     }
/// }
/// ```
pub struct LoopCtx<'a, S> {
    pub(crate) core: &'a mut LoopCore,
    /// The connection whose callback holds this context, if any.
    pub(crate) own: Option<(usize, &'a mut SlotIo, &'a mut S)>,
    pub(crate) peers: &'a mut dyn PeerSlots<S>,
}

impl<S> fmt::Debug for LoopCtx<'_, S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LoopCtx")
            .field("loop_id", &self.core.loop_id)
            .finish_non_exhaustive()
    }
}

impl<S> LoopCtx<'_, S> {
    /// Index of this loop, `0..loops`.
    pub fn loop_id(&self) -> usize {
        self.core.loop_id
    }

    /// The loop's clock, read once per loop iteration.
    pub fn now(&self) -> Instant {
        self.core.now
    }

    /// A handle to the engine, e.g. to keep for use from other threads.
    pub fn engine(&self) -> &Engine {
        &self.core.engine
    }

    /// UDP from this callback: send to sessions and addresses, dial sessions.
    pub fn udp(&mut self) -> Udp<'_> {
        self.core.udp.handle(self.core.loop_id)
    }

    /// In `on_tick`: the deadline this tick stands for, how late it runs and how
    /// many deadlines were skipped since the previous tick. `None` elsewhere.
    pub fn tick_info(&self) -> Option<TickInfo> {
        let fired = self.core.tick?;
        Some(TickInfo {
            deadline: self.core.origin + Duration::from_nanos(fired.deadline),
            late: Duration::from_nanos(fired.late),
            skipped: fired.skipped,
            count: fired.count,
        })
    }

    /// Connection `id` of this loop, if it is still open (the one whose
    /// callback holds this context included). `None` for a stale id or one of
    /// another loop: use [`Engine::send`](crate::Engine::send) for those.
    pub fn conn(&mut self, id: ConnId) -> Option<ConnRef<'_, S>> {
        if id.loop_id() != self.core.loop_id {
            return None;
        }
        let key = id.slot as usize;
        let (io, state) = match &mut self.own {
            Some((k, io, state)) if *k == key => (&mut **io, &mut **state),
            _ => self.peers.peer(key)?,
        };
        if io.generation != id.generation || !io.is_open() {
            return None;
        }
        Some(ConnRef {
            key,
            io,
            state,
            core: &mut *self.core,
        })
    }

    /// Calls `f` for every open connection of this loop, in no particular order.
    pub fn for_each(&mut self, mut f: impl FnMut(ConnRef<'_, S>)) {
        let core = &mut *self.core;
        if let Some((key, io, state)) = &mut self.own {
            f(ConnRef {
                key: *key,
                io,
                state,
                core: &mut *core,
            });
        }
        self.peers.each(&mut |key, io, state| {
            if io.is_open() {
                f(ConnRef {
                    key,
                    io,
                    state,
                    core: &mut *core,
                });
            }
        });
    }

    /// Sends `data` to every connection in `ids`: those of this loop at once
    /// (queued, flushed at the end of the pass), those of other loops with one
    /// command per loop. The bytes are stored once, shared by every recipient.
    /// Stale ids are skipped. Returns how many of this loop's connections got it.
    pub fn broadcast(&mut self, ids: &[ConnId], data: Bytes) -> usize {
        let mut local = 0;
        let mut remote = false;
        for &id in ids {
            if id.loop_id() != self.core.loop_id {
                remote = true;
                continue;
            }
            if let Some(mut c) = self.conn(id) {
                local += c.send(data.clone()) as usize;
            }
        }
        if remote {
            let me = self.core.loop_id;
            let _ = self.core.engine.broadcast_filtered(ids, data, |l| l != me);
        }
        local
    }

    /// Subscribes connection `id` (of this loop) to `topic`; `Ok(false)` if it
    /// already was. Membership ends by itself when the connection closes.
    ///
    /// # Errors
    ///
    /// [`TopicError::BadName`], [`TopicError::TooManyForConnection`],
    /// [`TopicError::TooManyForLoop`] at the limits in
    /// [`Options`](crate::Options), [`TopicError::NoSuchConnection`] for a stale
    /// id or one of another loop.
    pub fn subscribe(&mut self, id: ConnId, topic: &str) -> Result<bool, TopicError> {
        match self.conn(id) {
            Some(mut c) => c.subscribe(topic),
            None => Err(TopicError::NoSuchConnection),
        }
    }

    /// Unsubscribes connection `id` from `topic`; false if it was not subscribed.
    pub fn unsubscribe(&mut self, id: ConnId, topic: &str) -> bool {
        self.conn(id).is_some_and(|mut c| c.unsubscribe(topic))
    }

    /// Publishes `data` to every subscriber of `topic`: this loop's at once
    /// (queued, flushed at the end of the pass), other loops' with one command
    /// per loop. The bytes are stored once and shared by every subscriber.
    /// Subscribers above [`Options::max_backpressure`](crate::Options::max_backpressure)
    /// are handled by [`Options::slow_subscriber`](crate::Options::slow_subscriber).
    /// Returns how many of this loop's subscribers it was queued for.
    pub fn publish(&mut self, topic: &str, data: Bytes) -> usize {
        let n = self.publish_local(topic, &data);
        if self.core.engine.loops() > 1 {
            let me = self.core.loop_id;
            let _ = self
                .core
                .engine
                .publish_filtered(Arc::from(topic), data, |l| l != me);
        }
        n
    }

    /// Delivers to this loop's subscribers of `topic`.
    pub(crate) fn publish_local(&mut self, topic: &str, data: &Bytes) -> usize {
        let mut members = std::mem::take(&mut self.core.members);
        self.core.topics.members_into(topic, &mut members);
        let before = self.core.counts.shared;
        for &(key, generation) in &members {
            let (io, _) = match &mut self.own {
                Some((k, io, state)) if *k == key => (&mut **io, &mut **state),
                _ => match self.peers.peer(key) {
                    Some(p) => p,
                    None => continue,
                },
            };
            if io.generation == generation {
                self.core.deliver_topic(key, io, data);
            }
        }
        members.clear();
        self.core.members = members;
        (self.core.counts.shared - before) as usize
    }
}
