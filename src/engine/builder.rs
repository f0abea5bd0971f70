//! Configuring and starting an engine: options, the loop threads.

use std::fmt;
use std::marker::PhantomData;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};

use mio::{Poll, Waker};

use super::bind::bind_all;
use super::handle::{CURRENT_ENGINE, Engine, Shared};
use crate::error::Error;
use crate::event_loop::{EventLoop, WAKER};
use crate::handler::EventHandler;
use crate::inbox::Inbox;
use crate::lb::LoadBalancer;
use crate::net::ListenAddr;
use crate::options::Options;
use crate::stats::LoopCounters;

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
        let addr = addr.into();
        match addr.strip_prefix("tls://") {
            Some(rest) => {
                self.options.layers.tls_listeners.push(self.addrs.len());
                self.addrs.push(format!("tcp://{rest}"));
            }
            None => self.addrs.push(addr),
        }
        self
    }

    /// The rustls server configuration of every `tls://` listener (feature
    /// `tls`): certificates (or a `ResolvesServerCert` that picks one by SNI),
    /// ALPN protocols, versions. Handlers of those listeners see plaintext only;
    /// `on_open` runs once the handshake completed.
    #[cfg(feature = "tls")]
    pub fn tls_config(mut self, config: std::sync::Arc<rustls::ServerConfig>) -> Self {
        self.options.layers.tls = Some(config);
        self
    }

    /// How long a TLS client has to complete its handshake before the
    /// connection closes with `CloseReason::Tls(TlsError::HandshakeTimeout)`.
    /// Default: 10 s.
    pub fn tls_handshake_timeout(mut self, timeout: std::time::Duration) -> Self {
        self.options.layers.handshake_timeout = timeout;
        self
    }

    /// Reads a PROXY protocol header on every stream listener before the first
    /// callback ([`crate::proxy`]); [`Conn::peer_addr`](crate::Conn::peer_addr)
    /// then answers the client's address from it. A missing (when required),
    /// malformed, oversized or late header closes the connection with
    /// [`CloseReason::Proxy`](crate::CloseReason::Proxy), unheard by the handler.
    pub fn proxy_protocol(mut self, config: crate::proxy::ProxyConfig) -> Self {
        self.options.layers.proxy = (config.mode != crate::proxy::ProxyMode::Off).then_some(config);
        self
    }

    /// Adds a UDP address (`udp://host:port`) whose datagrams are grouped into
    /// sessions by source: `on_new_source` validates a new source,
    /// `on_session_open` / `on_session_datagram` / `on_session_close` follow
    /// it, and [`Udp::send`](crate::udp_session::Udp::send) reaches it by id
    /// from any callback of its loop. Each loop keeps its own table (with
    /// `SO_REUSEPORT` the kernel keeps a source on one loop).
    pub fn listen_sessions(
        mut self,
        addr: impl Into<String>,
        sessions: crate::udp_session::SessionOptions,
    ) -> Self {
        self.options.udp_sessions.push((self.addrs.len(), sessions));
        self.addrs.push(addr.into());
        self
    }

    /// Replaces all options at once (sessions set by `listen_sessions` stay).
    pub fn options(mut self, options: Options) -> Self {
        let sessions = std::mem::take(&mut self.options.udp_sessions);
        let layers = std::mem::take(&mut self.options.layers);
        self.options = options;
        self.options.udp_sessions = sessions;
        self.options.layers = layers;
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
        let mut opts = self.options;
        validate(&opts)?;
        let addrs = self
            .addrs
            .iter()
            .map(|a| ListenAddr::parse(a))
            .collect::<Result<Vec<_>, _>>()?;
        opts.layers.build(&addrs).map_err(Error::InvalidOption)?;
        if opts
            .udp_sessions
            .iter()
            .any(|(i, _)| !matches!(addrs.get(*i), Some(ListenAddr::Udp(_))))
        {
            return Err(Error::InvalidOption(
                "listen_sessions needs a udp:// address",
            ));
        }

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
                    let _death = DeathNotice {
                        engine: engine_for_loop.clone(),
                        loop_id,
                    };
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

/// Lives on a loop thread's stack: if the thread unwinds (a panic outside any
/// callback), the loop is marked dead so that calls for it fail with
/// [`SendError::LoopDied`](crate::SendError::LoopDied) instead of queueing into
/// the void, and its connections (dropped with it) stop being counted.
struct DeathNotice {
    engine: Engine,
    loop_id: usize,
}

impl Drop for DeathNotice {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            return;
        }
        log::error!(
            "event loop {} died; its connections are closed and calls for them fail",
            self.loop_id
        );
        let shared = &self.engine.shared;
        if let Some(inbox) = shared.inboxes.get(self.loop_id) {
            inbox.mark_died();
        }
        if let Some(c) = shared.counters.get(self.loop_id) {
            c.open.store(0, std::sync::atomic::Ordering::Relaxed);
        }
    }
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
