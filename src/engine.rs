//! The engine: starting loops, the thread-safe handle, stopping.

use std::cell::Cell;
use std::fmt;
use std::io;
use std::marker::PhantomData;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use bytes::Bytes;
use mio::{Poll, Waker};

use crate::client::{ConnectOptions, DialId, DialRequest};
use crate::error::{Error, SendError};
use crate::event_loop::{EventLoop, ListenSocket, LoopListener, WAKER};
use crate::handler::EventHandler;
use crate::id::ConnId;
use crate::inbox::{Command, Inbox};
use crate::lb::LoadBalancer;
use crate::net::{ListenAddr, listener};
use crate::options::Options;
use crate::stats::{LoopCounters, Stats};

thread_local! {
    /// The engine whose loop runs on this thread (address of its shared state), so
    /// that `stop()` called from a callback does not join its own thread.
    static CURRENT_ENGINE: Cell<usize> = const { Cell::new(0) };
}

pub(crate) struct Shared {
    pub(crate) inboxes: Vec<Inbox>,
    pub(crate) counters: Vec<LoopCounters>,
    stopped: AtomicBool,
    threads: Mutex<Vec<JoinHandle<()>>>,
    local_addrs: Vec<SocketAddr>,
    listen_addrs: Vec<ListenAddr>,
    shutdown_timeout: Duration,
    max_inbox_bytes: usize,
    next_dial_loop: std::sync::atomic::AtomicUsize,
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
    shared: Arc<Shared>,
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
    /// Starts configuring an engine whose loops each get a handler from `factory`,
    /// called with the loop index on that loop's thread.
    pub fn builder<H, F>(factory: F) -> EngineBuilder<H, F>
    where
        H: EventHandler,
        F: Fn(usize) -> H + Send + Sync + 'static,
    {
        EngineBuilder {
            factory,
            options: Options::default(),
            addrs: Vec::new(),
            _handler: PhantomData,
        }
    }

    /// Queues `data` to be written to connection `id`.
    ///
    /// Returns `Ok` once queued; delivery happens on the connection's loop. Data for
    /// a connection that has closed by then is dropped. Pending output beyond
    /// `Options::max_outbound` closes the connection with
    /// [`CloseReason::WriteOverflow`](crate::CloseReason::WriteOverflow), as for
    /// writes from callbacks.
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

    /// Closes connection `id` (reason [`CloseReason::Local`](crate::CloseReason::Local)).
    pub fn close(&self, id: ConnId) -> Result<(), SendError> {
        self.command(id, Command::Close(id))
    }

    /// Runs [`EventHandler::on_wake`] for connection `id` on its loop.
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
        self.shared
            .inboxes
            .get(id.loop_id())
            .ok_or(SendError::NoSuchLoop)
    }

    pub(crate) fn push_to_loop(&self, loop_id: usize, cmd: Command) -> Result<(), SendError> {
        let inbox = self
            .shared
            .inboxes
            .get(loop_id)
            .ok_or(SendError::NoSuchLoop)?;
        inbox.push(cmd).map_err(|_| SendError::Stopped)
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

/// Configures and starts an [`Engine`]. Made by [`Engine::builder`].
pub struct EngineBuilder<H, F> {
    factory: F,
    options: Options,
    addrs: Vec<String>,
    _handler: PhantomData<fn() -> H>,
}

impl<H, F> fmt::Debug for EngineBuilder<H, F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EngineBuilder")
            .field("options", &self.options)
            .field("addrs", &self.addrs)
            .finish()
    }
}

impl<H, F> EngineBuilder<H, F>
where
    H: EventHandler,
    F: Fn(usize) -> H + Send + Sync + 'static,
{
    /// Adds an address to listen on: `host:port` or `tcp://host:port`.
    /// Parsed by [`start`](EngineBuilder::start), which reports a bad one.
    pub fn listen(mut self, addr: impl Into<String>) -> Self {
        self.addrs.push(addr.into());
        self
    }

    /// Replaces all options at once.
    pub fn options(mut self, options: Options) -> Self {
        self.options = options;
        self
    }

    /// Number of event loops (threads). Default: available cores.
    pub fn loops(mut self, n: usize) -> Self {
        self.options.loops = n;
        self
    }

    /// One `SO_REUSEPORT` listener per loop (true) or one shared listener (false).
    pub fn reuse_port(mut self, on: bool) -> Self {
        self.options.reuse_port = on;
        self
    }

    /// The balancer a shared listener uses.
    pub fn load_balancer(mut self, lb: LoadBalancer) -> Self {
        self.options.load_balancer = lb;
        self
    }

    /// Binds the listeners and starts the loop threads.
    ///
    /// # Errors
    ///
    /// [`Error::Addr`] for an unparsable address, [`Error::Io`] when binding or
    /// creating a poller fails, [`Error::InvalidOption`] for inconsistent options.
    pub fn start(self) -> Result<Engine, Error> {
        let opts = self.options;
        validate(&opts)?;
        let addrs = self
            .addrs
            .iter()
            .map(|a| ListenAddr::parse(a))
            .collect::<Result<Vec<_>, _>>()?;

        let mut polls = Vec::with_capacity(opts.loops);
        let mut inboxes = Vec::with_capacity(opts.loops);
        for _ in 0..opts.loops {
            let poll = Poll::new()?;
            let waker = Waker::new(poll.registry(), WAKER)?;
            inboxes.push(Inbox::new(waker));
            polls.push(poll);
        }

        let (listeners, bound) = bind_all(&addrs, &opts)?;
        let local_addrs = bound
            .iter()
            .filter_map(|a| match a {
                ListenAddr::Tcp(sa) | ListenAddr::Udp(sa) => Some(*sa),
                _ => None,
            })
            .collect();

        let shared = Arc::new(Shared {
            inboxes,
            counters: (0..opts.loops).map(|_| LoopCounters::default()).collect(),
            stopped: AtomicBool::new(false),
            threads: Mutex::new(Vec::new()),
            local_addrs,
            listen_addrs: bound,
            shutdown_timeout: opts.shutdown_timeout,
            max_inbox_bytes: opts.max_inbox_bytes,
            next_dial_loop: Default::default(),
        });
        let engine = Engine {
            shared: shared.clone(),
        };
        let factory = Arc::new(self.factory);
        let mut threads = Vec::with_capacity(opts.loops);
        for (loop_id, (poll, lst)) in polls.into_iter().zip(listeners).enumerate() {
            let factory = factory.clone();
            let engine_for_loop = engine.clone();
            let opts = opts.clone();
            let shared_addr = Arc::as_ptr(&shared) as usize;
            let spawned = std::thread::Builder::new()
                .name(format!("tether-loop-{loop_id}"))
                .spawn(move || {
                    CURRENT_ENGINE.with(|c| c.set(shared_addr));
                    let handler = factory(loop_id);
                    match EventLoop::new(loop_id, poll, handler, lst, engine_for_loop, opts) {
                        Ok(mut event_loop) => event_loop.run(),
                        Err(e) => log::error!("loop {loop_id} failed to start: {e}"),
                    }
                });
            match spawned {
                Ok(t) => threads.push(t),
                Err(e) => {
                    *shared.threads.lock().unwrap_or_else(|p| p.into_inner()) = threads;
                    engine.stop();
                    return Err(Error::Io(e));
                }
            }
        }
        *shared.threads.lock().unwrap_or_else(|p| p.into_inner()) = threads;
        Ok(engine)
    }
}

/// Binds every address: with SO_REUSEPORT each loop gets its own TCP and UDP
/// socket (the first bind fixes port 0 for the rest); otherwise, and for Unix
/// sockets, loop 0 holds the one listener and hands connections out.
fn bind_all(
    addrs: &[ListenAddr],
    opts: &Options,
) -> io::Result<(Vec<Vec<LoopListener>>, Vec<ListenAddr>)> {
    let mut per_loop: Vec<Vec<LoopListener>> = (0..opts.loops).map(|_| Vec::new()).collect();
    let mut bound = Vec::with_capacity(addrs.len());
    let spread = opts.reuse_port && opts.loops > 1;
    for (tag, addr) in addrs.iter().enumerate() {
        let entry = |socket, shared, unix_path| LoopListener {
            socket,
            tag,
            shared,
            unix_path,
        };
        match addr {
            ListenAddr::Tcp(sa) => {
                let first = listener::bind_tcp(*sa, opts.reuse_port, opts.backlog, &opts.socket)?;
                let at = first.local_addr()?;
                bound.push(ListenAddr::Tcp(at));
                per_loop[0].push(entry(
                    ListenSocket::Tcp(first),
                    !spread && opts.loops > 1,
                    None,
                ));
                if spread {
                    for l in per_loop.iter_mut().skip(1) {
                        let s = listener::bind_tcp(at, true, opts.backlog, &opts.socket)?;
                        l.push(entry(ListenSocket::Tcp(s), false, None));
                    }
                }
            }
            ListenAddr::Udp(sa) => {
                let first = listener::bind_udp(*sa, spread, &opts.socket)?;
                let at = first.local_addr()?;
                bound.push(ListenAddr::Udp(at));
                per_loop[0].push(entry(ListenSocket::Udp(first), false, None));
                if spread {
                    for l in per_loop.iter_mut().skip(1) {
                        let s = listener::bind_udp(at, true, &opts.socket)?;
                        l.push(entry(ListenSocket::Udp(s), false, None));
                    }
                }
            }
            ListenAddr::Unix(path) => {
                let (l, file) = listener::bind_unix(path, opts.backlog, &opts.socket)?;
                bound.push(addr.clone());
                per_loop[0].push(entry(ListenSocket::Unix(l), opts.loops > 1, Some(file)));
            }
        }
    }
    Ok((per_loop, bound))
}

fn validate(o: &Options) -> Result<(), Error> {
    let checks: [(bool, &'static str); 7] = [
        (
            o.loops >= 1 && o.loops <= u16::MAX as usize,
            "loops must be in 1..=65535",
        ),
        (o.read_buffer_size > 0, "read_buffer_size must be > 0"),
        (o.read_budget > 0, "read_budget must be > 0"),
        (
            o.write_low_watermark <= o.write_high_watermark,
            "write_low_watermark must not exceed write_high_watermark",
        ),
        (
            o.write_high_watermark <= o.max_outbound,
            "write_high_watermark must not exceed max_outbound",
        ),
        (o.accepts_per_wakeup > 0, "accepts_per_wakeup must be > 0"),
        (o.backlog > 0, "backlog must be > 0"),
    ];
    match checks.iter().find(|(ok, _)| !ok) {
        Some((_, what)) => Err(Error::InvalidOption(what)),
        None => Ok(()),
    }
}
