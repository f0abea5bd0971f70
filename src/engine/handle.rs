//! The thread-safe handle to a running engine: commands to loops, counters,
//! stopping.

use std::cell::Cell;
use std::fmt;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use bytes::Bytes;

use crate::client::{ConnectOptions, DialId, DialRequest};
use crate::error::SendError;
use crate::id::ConnId;
use crate::inbox::{Command, Inbox};
use crate::net::ListenAddr;
use crate::stats::{LoopCounters, Stats};

thread_local! {
    /// The engine whose loop runs on this thread (address of its shared state), so
    /// that `stop()` called from a callback does not join its own thread.
    pub(super) static CURRENT_ENGINE: Cell<usize> = const { Cell::new(0) };
}

pub(crate) struct Shared {
    pub(crate) inboxes: Vec<Inbox>,
    pub(crate) counters: Vec<LoopCounters>,
    pub(crate) stopped: AtomicBool,
    pub(crate) threads: Mutex<Vec<JoinHandle<()>>>,
    pub(crate) local_addrs: Vec<SocketAddr>,
    pub(crate) listen_addrs: Vec<ListenAddr>,
    pub(crate) shutdown_timeout: Duration,
    pub(crate) max_inbox_bytes: usize,
    pub(crate) next_dial_loop: std::sync::atomic::AtomicUsize,
}

/// A running engine: a cheap, cloneable, thread-safe handle.
///
/// The loops run until [`Engine::stop`] (or a handler returns
/// [`Action::Shutdown`](crate::Action::Shutdown)); dropping handles does not
/// stop them, since every loop holds one for its callbacks.
///
/// Commands for connections (`send`, `close`, `wake`) are queued to the loop that
/// owns the connection and applied there in order; a command whose [`ConnId`] is
/// stale (the connection closed, maybe its slot was reused) is dropped and counted
/// in [`Counts::stale_commands`](crate::Counts::stale_commands).
#[derive(Clone)]
pub struct Engine {
    pub(super) shared: Arc<Shared>,
}

impl fmt::Debug for Engine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Engine")
            .field("loops", &self.shared.inboxes.len())
            .field("local_addrs", &self.shared.local_addrs)
            .field("stopped", &self.is_stopped())
            .finish()
    }
}

impl Engine {
    /// Queues `data` to be written to connection `id`.
    ///
    /// Returns `Ok` once queued; delivery happens on the connection's loop. Data for
    /// a connection that has closed by then is dropped. Pending output beyond
    /// `Options::max_outbound` closes the connection with
    /// [`CloseReason::WriteOverflow`](crate::CloseReason::WriteOverflow), as for
    /// writes from callbacks.
    ///
    /// The bytes are queued as they are (a `Bytes` is not copied). All sends to
    /// one connection that the loop takes from its inbox in one batch go out in
    /// one `writev`, together with whatever else the pass wrote to it, after the
    /// output queued before them.
    ///
    /// # Errors
    ///
    /// [`SendError::InboxFull`] when more than `Options::max_inbox_bytes` are
    /// already queued for that loop (the loop is not keeping up: back off),
    /// [`SendError::Stopped`] after stop.
    pub fn send(&self, id: ConnId, data: impl Into<Bytes>) -> Result<(), SendError> {
        self.inbox_of(id)?
            .push_send(id, data.into(), self.shared.max_inbox_bytes)
    }

    /// Sends `data` to every connection in `ids`, from any thread: one command
    /// per loop that has some of them, never one per recipient, and the bytes
    /// stored once, shared by every recipient (no copy per connection). Stale ids
    /// are skipped. Within a loop the message is queued behind whatever each
    /// connection already has and flushed with one `writev` per connection at the
    /// end of the loop's pass.
    ///
    /// From a callback, [`LoopCtx::broadcast`](crate::LoopCtx::broadcast) writes
    /// to the same loop's connections directly.
    ///
    /// # Errors
    ///
    /// As [`Engine::send`] (the first loop that refuses).
    pub fn broadcast(&self, ids: &[ConnId], data: impl Into<Bytes>) -> Result<(), SendError> {
        self.broadcast_filtered(ids, data.into(), |_| true)
    }

    /// [`Engine::broadcast`] to the loops `keep` accepts.
    pub(crate) fn broadcast_filtered(
        &self,
        ids: &[ConnId],
        data: Bytes,
        keep: impl Fn(usize) -> bool,
    ) -> Result<(), SendError> {
        if self.is_stopped() {
            return Err(SendError::Stopped);
        }
        let loops = self.loops();
        let mut per_loop: Vec<Vec<ConnId>> = Vec::new();
        for &id in ids {
            let l = id.loop_id();
            if l >= loops || !keep(l) {
                continue;
            }
            if per_loop.len() <= l {
                per_loop.resize_with(l + 1, Vec::new);
            }
            per_loop[l].push(id);
        }
        let mut result = Ok(());
        for (l, ids) in per_loop.into_iter().enumerate() {
            if ids.is_empty() {
                continue;
            }
            let cmd = Command::Broadcast(ids, data.clone());
            if let Err(e) = self.shared.inboxes[l].push_payload(cmd, self.shared.max_inbox_bytes) {
                result = result.and(Err(e));
            }
        }
        result
    }

    /// Publishes `data` to every subscriber of `topic` on every loop, from any
    /// thread: one command per loop, each loop delivering to its own members
    /// from its own table (no lock shared between loops on the delivery path).
    /// The bytes are stored once and shared by every subscriber. Subscribers
    /// whose pending output is above
    /// [`Options::max_backpressure`](crate::Options::max_backpressure) are
    /// handled by [`Options::slow_subscriber`](crate::Options::slow_subscriber).
    ///
    /// ```no_run
    /// # fn f(engine: &tether::Engine) -> Result<(), tether::SendError> {
    /// engine.publish("news", bytes::Bytes::from_static(b"hello\n"))?;
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    ///
    /// As [`Engine::send`] (the first loop that refuses).
    pub fn publish(&self, topic: &str, data: impl Into<Bytes>) -> Result<(), SendError> {
        self.publish_filtered(std::sync::Arc::from(topic), data.into(), |_| true)
    }

    /// [`Engine::publish`] to the loops `keep` accepts.
    pub(crate) fn publish_filtered(
        &self,
        topic: std::sync::Arc<str>,
        data: Bytes,
        keep: impl Fn(usize) -> bool,
    ) -> Result<(), SendError> {
        if self.is_stopped() {
            return Err(SendError::Stopped);
        }
        let mut result = Ok(());
        for (l, inbox) in self.shared.inboxes.iter().enumerate() {
            if !keep(l) {
                continue;
            }
            let cmd = Command::Publish(topic.clone(), data.clone());
            if let Err(e) = inbox.push_payload(cmd, self.shared.max_inbox_bytes) {
                result = result.and(Err(e));
            }
        }
        result
    }

    /// Closes connection `id` (reason [`CloseReason::Local`](crate::CloseReason::Local)).
    pub fn close(&self, id: ConnId) -> Result<(), SendError> {
        self.command(id, Command::Close(id))
    }

    /// Runs [`EventHandler::on_wake`](crate::EventHandler::on_wake) for connection `id` on its loop.
    pub fn wake(&self, id: ConnId) -> Result<(), SendError> {
        self.command(id, Command::Wake(id))
    }

    /// Dials `addr` (a TCP `SocketAddr`, or any [`ListenAddr`]: `Tcp` or `Unix`)
    /// from a loop; the connection then runs through the handler like an
    /// accepted one, starting with `on_open`, with `state` as its state.
    ///
    /// `state` must be the handler's `State` type; a connection with any other is
    /// dropped with an error logged. Returns the link's [`DialId`] at once; the
    /// outcome arrives as `on_open` or `on_connect_failed`.
    pub fn connect<S: Send + 'static>(
        &self,
        addr: impl Into<ListenAddr>,
        state: S,
    ) -> Result<DialId, SendError> {
        self.connect_with(addr, state, ConnectOptions::default())
    }

    /// [`Engine::connect`] with a timeout, a reconnect policy or a chosen loop.
    ///
    /// # Errors
    ///
    /// [`SendError::Stopped`] after stop, [`SendError::NoSuchLoop`] for a bad
    /// `loop_id`, [`SendError::InvalidPolicy`] for an inconsistent reconnect policy,
    /// [`SendError::UnsupportedAddr`] for a UDP address.
    pub fn connect_with<S: Send + 'static>(
        &self,
        addr: impl Into<ListenAddr>,
        state: S,
        options: ConnectOptions,
    ) -> Result<DialId, SendError> {
        if self.is_stopped() {
            return Err(SendError::Stopped);
        }
        let addr = addr.into();
        if let ListenAddr::Udp(_) = addr {
            return Err(SendError::UnsupportedAddr);
        }
        if let Some(policy) = &options.reconnect {
            policy.validate().map_err(SendError::InvalidPolicy)?;
        }
        // Round robin: dials made before any is established would all see the
        // same open counts and pile onto one loop.
        let loop_id = options.loop_id.unwrap_or_else(|| {
            self.shared.next_dial_loop.fetch_add(1, Ordering::Relaxed) % self.loops()
        });
        let dial = DialId::next();
        let request = DialRequest {
            dial,
            addr,
            state: Box::new(state),
            options,
        };
        self.push_to_loop(loop_id, Command::Connect(Box::new(request)))?;
        Ok(dial)
    }

    fn command(&self, id: ConnId, cmd: Command) -> Result<(), SendError> {
        self.inbox_of(id)?.push(cmd).map_err(|_| SendError::Stopped)
    }

    /// The inbox of the loop owning `id`, unless the engine has stopped.
    fn inbox_of(&self, id: ConnId) -> Result<&Inbox, SendError> {
        if self.is_stopped() {
            return Err(SendError::Stopped);
        }
        self.live_inbox(id.loop_id())
    }

    /// The inbox of loop `loop_id`, unless that loop's thread died.
    fn live_inbox(&self, loop_id: usize) -> Result<&Inbox, SendError> {
        let inbox = self
            .shared
            .inboxes
            .get(loop_id)
            .ok_or(SendError::NoSuchLoop)?;
        if inbox.died() {
            return Err(SendError::LoopDied { loop_id });
        }
        Ok(inbox)
    }

    pub(crate) fn push_to_loop(&self, loop_id: usize, cmd: Command) -> Result<(), SendError> {
        self.live_inbox(loop_id)?
            .push(cmd)
            .map_err(|_| SendError::Stopped)
    }

    pub(crate) fn inbox(&self, loop_id: usize) -> &Inbox {
        &self.shared.inboxes[loop_id]
    }

    pub(crate) fn counters(&self, loop_id: usize) -> &LoopCounters {
        &self.shared.counters[loop_id]
    }

    pub(crate) fn loop_open_counts(&self, out: &mut Vec<usize>) {
        out.clear();
        out.extend(
            self.shared
                .counters
                .iter()
                .map(|c| c.open.load(Ordering::Relaxed)),
        );
    }

    /// Number of event loops.
    pub fn loops(&self) -> usize {
        self.shared.inboxes.len()
    }

    /// Connections open now, over all loops.
    pub fn connection_count(&self) -> usize {
        self.shared
            .counters
            .iter()
            .map(|c| c.open.load(Ordering::Relaxed))
            .sum()
    }

    /// The IP addresses (TCP and UDP) the engine listens on, in the order they
    /// were given, with port 0 replaced by the port the system chose. Unix socket
    /// paths are in [`Engine::listen_addrs`].
    pub fn local_addrs(&self) -> &[SocketAddr] {
        &self.shared.local_addrs
    }

    /// Every address the engine listens on, in the order given to the builder
    /// (the index is what [`Conn::listener`](crate::Conn::listener) reports), with
    /// port 0 resolved.
    pub fn listen_addrs(&self) -> &[ListenAddr] {
        &self.shared.listen_addrs
    }

    /// Counters per loop and summed; cheap enough to call often.
    pub fn stats(&self) -> Stats {
        crate::stats::collect(&self.shared.counters)
    }

    /// True once [`Engine::stop`] was called (or a handler returned
    /// [`Action::Shutdown`](crate::Action::Shutdown)).
    pub fn is_stopped(&self) -> bool {
        self.shared.stopped.load(Ordering::Acquire)
    }

    /// Stops gracefully with the configured `Options::shutdown_timeout`.
    ///
    /// Listeners close at once; `on_shutdown` runs on every loop; connections
    /// without pending output close with
    /// [`CloseReason::Shutdown`](crate::CloseReason::Shutdown), the others once
    /// their output is flushed or the timeout passes. Then the loop threads end.
    /// Blocks until they have, unless called from one of them (a callback), which
    /// would wait on itself.
    pub fn stop(&self) {
        self.stop_with_timeout(self.shared.shutdown_timeout);
    }

    /// [`Engine::stop`] with an explicit drain deadline.
    pub fn stop_with_timeout(&self, drain: Duration) {
        self.signal_stop(drain);
        if CURRENT_ENGINE.with(|c| c.get()) != Arc::as_ptr(&self.shared) as usize {
            self.join();
        }
    }

    pub(crate) fn signal_stop(&self, drain: Duration) {
        if self.shared.stopped.swap(true, Ordering::AcqRel) {
            return;
        }
        for inbox in &self.shared.inboxes {
            // A loop that already exited has nothing left to stop.
            let _ = inbox.push(Command::Stop { drain });
        }
    }

    /// Waits until every loop thread has exited.
    pub fn join(&self) {
        // Holding the lock while joining makes concurrent callers wait too.
        let mut threads = self
            .shared
            .threads
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        for t in threads.drain(..) {
            if t.join().is_err() {
                log::error!("an event loop thread panicked");
            }
        }
    }
}
