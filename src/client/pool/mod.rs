//! A pool of long connections to one or more endpoints, sending request frames
//! from any thread.
//!
//! A [`Pool`] keeps `N` connections to each endpoint on an engine of its own
//! (client-only: it listens nowhere). [`Pool::send`] frames a payload with the
//! pool's codec and hands it to one live connection, picked by [`Pick`]; the
//! responses arrive in a callback on the loop threads. Connections that drop
//! are redialed through the reconnect [`BackoffPolicy`]; frames accepted for a
//! connection that closes before writing them move to another connection. When
//! no connection is up, frames wait in a bounded queue and go out on the first
//! connection that opens; beyond its capacity `send` fails with
//! [`PoolError::QueueFull`].
//!
//! # The protocol the pool assumes
//!
//! Request and response: the peer answers every frame with exactly one frame,
//! in order, per connection (pipelining, as Redis, memcached or most RPC
//! protocols over one stream do). The pool relies on it to count the frames in
//! flight on each connection, which [`Pick::LeastInFlight`] balances on, and to
//! recognise the answers to its heartbeat pings, which it keeps from the
//! response callback. A plain echo server satisfies it.
//!
//! Frames written to a connection that closes before they are answered are
//! not resent — the pool cannot know whether the peer acted on them — and are
//! counted in [`PoolStats::lost`].
//!
//! # Health
//!
//! With [`PoolBuilder::heartbeat`], a connection that has sent nothing for the
//! interval sends the ping frame (empty by default); with
//! [`PoolBuilder::read_idle_timeout`], one that has received nothing, not even
//! a pong, for that long is closed with
//! [`CloseReason::IdleTimeout`](crate::CloseReason::IdleTimeout) and redialed.
//! Choose the timeout to be a few heartbeat intervals.
//!
//! # Example
//!
//! ```
//! use std::sync::mpsc;
//! use std::time::Duration;
//! use tether::client::pool::{Pick, Pool};
//! use tether::codec::LengthPrefixed;
//! use tether::{Action, Conn, Engine, EventHandler, decode_frames};
//!
//! // A length-prefixed echo server to talk to.
//! struct Echo(LengthPrefixed);
//! impl EventHandler for Echo {
//!     type State = ();
//!     fn on_traffic(&mut self, conn: &mut Conn<'_, ()>) -> Action {
//!         decode_frames(conn, &mut self.0, |conn, f| {
//!             conn.write_frame(f).map_or(Action::Close, |()| Action::Continue)
//!         })
//!     }
//! }
//! let server = Engine::builder(|_| Echo(LengthPrefixed::new()))
//!     .loops(1)
//!     .listen("127.0.0.1:0")
//!     .start()?;
//!
//! let (tx, rx) = mpsc::channel();
//! let tx = std::sync::Mutex::new(tx);
//! let pool = Pool::builder(server.local_addrs().to_vec())
//!     .connections_per_endpoint(2)
//!     .pick(Pick::RoundRobin)
//!     .on_response(move |r| {
//!         let _ = tx.lock().unwrap().send(r.frame().to_vec());
//!     })
//!     .start()?;
//!
//! // Sent at once, or queued until a connection is up.
//! pool.send(b"hello")?;
//! assert_eq!(rx.recv_timeout(Duration::from_secs(10))?, b"hello");
//!
//! pool.stop();
//! server.stop();
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod error;
mod handler;
mod shared;

use std::fmt;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

pub use error::{BuildError, PoolError};

use handler::{Callback, ConnState, PoolHandler};
use shared::{Backlog, Link, Shared, lock};

use crate::client::ConnectOptions;
use crate::client::backoff::BackoffPolicy;
use crate::codec::{Codec, LengthPrefixed};
use crate::engine::Engine;
use crate::id::ConnId;
use crate::options::Options;

/// How [`Pool::send`] chooses among the live connections.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Pick {
    /// Each in turn: exactly even, one atomic increment per send.
    ///
    /// Consecutive frames go to different connections, so each connection's
    /// writes carry fewer frames; in a closed loop driven from the response
    /// callback that costs about half again as much CPU per request as
    /// [`LeastInFlight`](Pick::LeastInFlight).
    RoundRobin,
    /// The one with the fewest frames not yet answered, so a slow connection
    /// or endpoint gets fewer requests while it is slow. Among equals, a send
    /// from the response callback stays on the connection that answered,
    /// whose output is being written anyway. Reads every connection's count:
    /// O(connections) per send.
    #[default]
    LeastInFlight,
}

/// A pool of connections: a cheap, cloneable, thread-safe handle.
///
/// Made by [`Pool::builder`]. The pool runs until [`Pool::stop`]; dropping the
/// handles does not stop it (its loops hold one for the response callback's
/// [`Response::pool`]).
#[derive(Clone)]
pub struct Pool {
    shared: Arc<Shared>,
}

impl fmt::Debug for Pool {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Pool")
            .field("endpoints", &self.shared.endpoints)
            .field("connections", &self.shared.links.len())
            .field("pick", &self.shared.pick)
            .field("stopped", &self.is_stopped())
            .finish()
    }
}

impl Pool {
    /// Starts configuring a pool to `endpoints`, with the default codec: a
    /// 4-byte big-endian length prefix ([`LengthPrefixed::new`]).
    pub fn builder(endpoints: impl IntoIterator<Item = SocketAddr>) -> PoolBuilder<LengthPrefixed> {
        PoolBuilder {
            endpoints: endpoints.into_iter().collect(),
            per_endpoint: 4,
            codec: LengthPrefixed::new(),
            pick: Pick::LeastInFlight,
            reconnect: BackoffPolicy::default(),
            connect_timeout: ConnectOptions::default().timeout,
            heartbeat: None,
            ping: Vec::new(),
            read_idle: None,
            queue_capacity: 1024,
            max_backlog: 4096,
            loops: None,
            on_response: None,
        }
    }

    /// Frames `payload` and sends it on a live connection; with none up,
    /// queues it for the first one that opens.
    ///
    /// Callable from any thread, including the response callback. The usual
    /// cost is one short lock on the chosen connection; the loop is woken only
    /// when that connection had nothing waiting already. A send from the
    /// response callback that lands on the connection being answered is
    /// written by the callback's loop with that batch's other output.
    ///
    /// # Errors
    ///
    /// [`PoolError::QueueFull`] with no connection up and the queue full;
    /// [`PoolError::Saturated`] when every live connection already holds
    /// `max_backlog` unwritten frames; [`PoolError::Encode`] when the codec
    /// cannot frame the payload; [`PoolError::GaveUp`] when every connection's
    /// reconnect policy gave up; [`PoolError::Stopped`] after [`Pool::stop`].
    pub fn send(&self, payload: impl AsRef<[u8]>) -> Result<(), PoolError> {
        self.shared.send(payload.as_ref())
    }

    /// The endpoints, in the order given to the builder.
    pub fn endpoints(&self) -> &[SocketAddr] {
        &self.shared.endpoints
    }

    /// Connections up now.
    pub fn live_connections(&self) -> usize {
        self.shared
            .links
            .iter()
            .filter(|l| l.up.load(Ordering::Relaxed))
            .count()
    }

    /// A snapshot of the pool's counters. Each number is read on its own, so
    /// under traffic they need not add up exactly.
    pub fn stats(&self) -> PoolStats {
        let s = &*self.shared;
        let connections: Vec<ConnectionStats> = s
            .links
            .iter()
            .map(|l| ConnectionStats {
                endpoint: l.endpoint,
                up: l.up.load(Ordering::Relaxed),
                in_flight: l.load.load(Ordering::Relaxed),
                responses: l.responses.load(Ordering::Relaxed),
                opened: l.opened.load(Ordering::Relaxed),
                closed: l.closed.load(Ordering::Relaxed),
                idle_timeouts: l.idle_timeouts.load(Ordering::Relaxed),
                failed_dials: l.failed_dials.load(Ordering::Relaxed),
                gave_up: l.gave_up.load(Ordering::Relaxed),
            })
            .collect();
        let mut endpoints: Vec<EndpointStats> = s
            .endpoints
            .iter()
            .map(|&addr| EndpointStats {
                addr,
                ..EndpointStats::default_for(addr)
            })
            .collect();
        for c in &connections {
            let e = &mut endpoints[c.endpoint];
            e.live += usize::from(c.up);
            e.in_flight += c.in_flight;
            e.responses += c.responses;
            e.opened += c.opened;
            e.closed += c.closed;
            e.idle_timeouts += c.idle_timeouts;
            e.failed_dials += c.failed_dials;
        }
        PoolStats {
            live: endpoints.iter().map(|e| e.live).sum(),
            in_flight: endpoints.iter().map(|e| e.in_flight).sum(),
            queued: lock(&s.queue).frames(),
            lost: s.lost.load(Ordering::Relaxed),
            pongs: s.pongs.load(Ordering::Relaxed),
            dropped: s.dropped.load(Ordering::Relaxed),
            endpoints,
            connections,
        }
    }

    /// True once [`Pool::stop`] was called.
    pub fn is_stopped(&self) -> bool {
        self.shared.is_stopped()
    }

    /// Closes every connection and stops the pool's engine; queued frames are
    /// dropped (counted in [`PoolStats::dropped`]) and later sends fail with
    /// [`PoolError::Stopped`]. Blocks until the loops have exited, unless
    /// called from the response callback.
    pub fn stop(&self) {
        self.shared.stopped.store(true, Ordering::Release);
        if let Some(engine) = self.shared.engine.get() {
            engine.stop();
        }
        self.shared.drop_queue();
    }
}

/// One response, as the callback given to [`PoolBuilder::on_response`] sees it
/// on a loop thread.
#[derive(Debug)]
pub struct Response<'a> {
    pool: &'a Pool,
    endpoint: usize,
    connection: usize,
    conn: ConnId,
    frame: &'a [u8],
}

impl<'a> Response<'a> {
    /// The frame's payload, borrowed from the connection's input.
    pub fn frame(&self) -> &'a [u8] {
        self.frame
    }

    /// Index of the endpoint that answered, in [`Pool::endpoints`].
    pub fn endpoint(&self) -> usize {
        self.endpoint
    }

    /// The endpoint's address.
    pub fn addr(&self) -> SocketAddr {
        self.pool.shared.endpoints[self.endpoint]
    }

    /// Index of the pool connection that carried it, in
    /// [`PoolStats::connections`]; stable across reconnects.
    pub fn connection(&self) -> usize {
        self.connection
    }

    /// The engine's id of the current connection behind it.
    pub fn conn_id(&self) -> ConnId {
        self.conn
    }

    /// The pool, to send a follow-up request from the callback.
    pub fn pool(&self) -> &'a Pool {
        self.pool
    }
}

/// A snapshot of a pool's counters, from [`Pool::stats`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct PoolStats {
    /// Per endpoint, in [`Pool::endpoints`] order.
    pub endpoints: Vec<EndpointStats>,
    /// Per pool connection; connection `i` serves endpoint
    /// `i % endpoints.len()`.
    pub connections: Vec<ConnectionStats>,
    /// Connections up.
    pub live: usize,
    /// Frames waiting for a connection to come up.
    pub queued: usize,
    /// Frames accepted for a live connection and not answered yet.
    pub in_flight: usize,
    /// Frames written to connections that closed before answering them.
    pub lost: u64,
    /// Answers to heartbeat pings.
    pub pongs: u64,
    /// Queued frames dropped by [`Pool::stop`] or because every connection
    /// gave up reconnecting.
    pub dropped: u64,
}

/// One endpoint's share of [`PoolStats`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct EndpointStats {
    /// Its address.
    pub addr: SocketAddr,
    /// Its connections up now.
    pub live: usize,
    /// Frames accepted for it and not answered yet.
    pub in_flight: usize,
    /// Responses received from it (pongs not included).
    pub responses: u64,
    /// Connections to it established since start.
    pub opened: u64,
    /// Connections to it closed since start.
    pub closed: u64,
    /// Of those, closed for receiving nothing for the read-idle timeout.
    pub idle_timeouts: u64,
    /// Dial attempts to it that failed.
    pub failed_dials: u64,
}

impl EndpointStats {
    fn default_for(addr: SocketAddr) -> Self {
        EndpointStats {
            addr,
            live: 0,
            in_flight: 0,
            responses: 0,
            opened: 0,
            closed: 0,
            idle_timeouts: 0,
            failed_dials: 0,
        }
    }
}

/// One pool connection's share of [`PoolStats`], across its reconnects.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ConnectionStats {
    /// Index of its endpoint.
    pub endpoint: usize,
    /// Up now.
    pub up: bool,
    /// Frames accepted for it and not answered yet.
    pub in_flight: usize,
    /// Responses it carried (pongs not included).
    pub responses: u64,
    /// Times it was established.
    pub opened: u64,
    /// Times it closed.
    pub closed: u64,
    /// Closes for receiving nothing for the read-idle timeout.
    pub idle_timeouts: u64,
    /// Dial attempts that failed.
    pub failed_dials: u64,
    /// Its reconnect policy gave up: it will not come back.
    pub gave_up: bool,
}

/// Configures and starts a [`Pool`]. Made by [`Pool::builder`].
pub struct PoolBuilder<C> {
    endpoints: Vec<SocketAddr>,
    per_endpoint: usize,
    codec: C,
    pick: Pick,
    reconnect: BackoffPolicy,
    connect_timeout: Duration,
    heartbeat: Option<Duration>,
    ping: Vec<u8>,
    read_idle: Option<Duration>,
    queue_capacity: usize,
    max_backlog: usize,
    loops: Option<usize>,
    on_response: Option<Callback>,
}

impl<C: fmt::Debug> fmt::Debug for PoolBuilder<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PoolBuilder")
            .field("endpoints", &self.endpoints)
            .field("per_endpoint", &self.per_endpoint)
            .field("codec", &self.codec)
            .field("pick", &self.pick)
            .field("reconnect", &self.reconnect)
            .field("connect_timeout", &self.connect_timeout)
            .field("heartbeat", &self.heartbeat)
            .field("read_idle", &self.read_idle)
            .field("queue_capacity", &self.queue_capacity)
            .field("max_backlog", &self.max_backlog)
            .field("loops", &self.loops)
            .field("on_response", &self.on_response.is_some())
            .finish()
    }
}

impl<C: Codec + Sync> PoolBuilder<C> {
    /// Connections kept to each endpoint. Default: 4.
    pub fn connections_per_endpoint(mut self, n: usize) -> Self {
        self.per_endpoint = n;
        self
    }

    /// Frames requests and splits responses with `codec` (each connection
    /// decodes with its own clone). Default: [`LengthPrefixed::new`].
    pub fn codec<D: Codec + Sync>(self, codec: D) -> PoolBuilder<D> {
        PoolBuilder {
            endpoints: self.endpoints,
            per_endpoint: self.per_endpoint,
            codec,
            pick: self.pick,
            reconnect: self.reconnect,
            connect_timeout: self.connect_timeout,
            heartbeat: self.heartbeat,
            ping: self.ping,
            read_idle: self.read_idle,
            queue_capacity: self.queue_capacity,
            max_backlog: self.max_backlog,
            loops: self.loops,
            on_response: self.on_response,
        }
    }

    /// How sends choose a connection. Default: [`Pick::LeastInFlight`].
    pub fn pick(mut self, pick: Pick) -> Self {
        self.pick = pick;
        self
    }

    /// Delays between redials of a connection that failed or dropped.
    /// Default: [`BackoffPolicy::default`] (1 s doubling to 30 s, jittered,
    /// forever).
    pub fn reconnect(mut self, policy: BackoffPolicy) -> Self {
        self.reconnect = policy;
        self
    }

    /// Gives up a dial attempt after this long (then the policy decides).
    /// Default: 10 s.
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// Sends the ping frame on a connection that has sent nothing for
    /// `interval`. Default: off.
    pub fn heartbeat(mut self, interval: Duration) -> Self {
        self.heartbeat = Some(interval);
        self
    }

    /// The heartbeat's payload, framed with the codec. Default: empty.
    pub fn ping(mut self, payload: impl Into<Vec<u8>>) -> Self {
        self.ping = payload.into();
        self
    }

    /// Closes and redials a connection that has received nothing for
    /// `timeout`. Default: off.
    pub fn read_idle_timeout(mut self, timeout: Duration) -> Self {
        self.read_idle = Some(timeout);
        self
    }

    /// Frames held while no connection is up; more fail with
    /// [`PoolError::QueueFull`]. The first connection to open takes them all.
    /// Frames handed on by a connection that closed before writing them join
    /// the queue even beyond this, having been accepted already. Default: 1024.
    pub fn queue_capacity(mut self, frames: usize) -> Self {
        self.queue_capacity = frames;
        self
    }

    /// Frames a connection may hold that its socket has not taken yet; a send
    /// goes to another connection then, and fails with
    /// [`PoolError::Saturated`] when all are this full. Default: 4096.
    pub fn max_backlog(mut self, frames: usize) -> Self {
        self.max_backlog = frames;
        self
    }

    /// Event loops (threads) of the pool's engine. Default: available cores,
    /// at most one per connection.
    pub fn loops(mut self, n: usize) -> Self {
        self.loops = Some(n);
        self
    }

    /// Calls `f` with each response, on the loop thread of the connection that
    /// carried it. It must not block; it may call [`Pool::send`] (reach the
    /// pool through [`Response::pool`]). A panic in it closes that connection.
    /// Default: responses are only counted.
    pub fn on_response(mut self, f: impl Fn(Response<'_>) + Send + Sync + 'static) -> Self {
        self.on_response = Some(Arc::new(f));
        self
    }

    /// Starts the engine and dials every connection; returns without waiting
    /// for them to connect (sends queue meanwhile).
    ///
    /// # Errors
    ///
    /// [`BuildError::NoEndpoints`], [`BuildError::Zero`] for a zero count,
    /// [`BuildError::Policy`], [`BuildError::Ping`] when the codec cannot frame
    /// the ping, [`BuildError::Engine`] when the engine cannot start.
    pub fn start(self) -> Result<Pool, BuildError> {
        if self.endpoints.is_empty() {
            return Err(BuildError::NoEndpoints);
        }
        if self.per_endpoint == 0 {
            return Err(BuildError::Zero("connections per endpoint"));
        }
        if self.max_backlog == 0 {
            return Err(BuildError::Zero("max_backlog"));
        }
        if self.loops == Some(0) {
            return Err(BuildError::Zero("loops"));
        }
        self.reconnect.validate().map_err(BuildError::Policy)?;
        let mut ping = Vec::new();
        self.codec
            .encode_to_vec(&self.ping, &mut ping)
            .map_err(BuildError::Ping)?;

        let endpoints = self.endpoints.len();
        let total = endpoints.saturating_mul(self.per_endpoint);
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        let loops = self.loops.unwrap_or_else(|| cores.min(total));
        let options = Options {
            loops,
            reuse_port: false,
            heartbeat: self.heartbeat,
            read_idle_timeout: self.read_idle,
            ..Options::default()
        };

        let shared = Arc::new(Shared {
            // Interleaved, so that round robin alternates endpoints and the
            // connections of an endpoint that is down hand their turns to
            // different connections of the others.
            links: (0..total).map(|i| Link::new(i % endpoints)).collect(),
            endpoints: self.endpoints.into(),
            pick: self.pick,
            encoder: Box::new(self.codec.clone()),
            queue: Mutex::new(Backlog::default()),
            queue_capacity: self.queue_capacity,
            max_backlog: self.max_backlog,
            high_watermark: options.write_high_watermark,
            ping: ping.into(),
            rr: AtomicUsize::new(0),
            engine: OnceLock::new(),
            stopped: AtomicBool::new(false),
            gave_up: AtomicUsize::new(0),
            lost: AtomicU64::new(0),
            pongs: AtomicU64::new(0),
            dropped: AtomicU64::new(0),
        });
        let pool = Pool { shared };
        let factory = {
            let pool = pool.clone();
            let codec = self.codec;
            let on_response = self.on_response;
            move |_| PoolHandler::new(pool.clone(), codec.clone(), on_response.clone())
        };
        let engine = Engine::builder(factory)
            .options(options)
            .start()
            .map_err(BuildError::Engine)?;
        let _ = pool.shared.engine.set(engine.clone());
        for i in 0..total {
            let addr = pool.shared.endpoints[i % endpoints];
            // Pinned, spreading the connections over the loops: an unpinned
            // dial goes to the loop with the fewest open connections, which is
            // loop 0 for every dial made before any has connected.
            let options = ConnectOptions::default()
                .timeout(self.connect_timeout)
                .reconnect(self.reconnect)
                .on_loop(i % loops);
            if let Err(e) = engine.connect_with(addr, ConnState::<C>::for_link(i), options) {
                pool.stop();
                return Err(BuildError::Dial(e));
            }
        }
        Ok(pool)
    }
}
