//! The callbacks an application implements, and what they return.

use std::fmt;
use std::io;

use crate::client::{ConnectFailure, Redial};
use crate::conn::Conn;
use crate::ctx::LoopCtx;
use crate::datagram::Datagram;

/// What the loop should do after a callback returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[must_use]
pub enum Action {
    /// Keep the connection open.
    #[default]
    Continue,
    /// Close the connection: output written so far is flushed as far as the socket
    /// takes it without blocking, then the socket is closed and `on_close` runs with
    /// [`CloseReason::Local`]. Use [`Conn::close_after_flush`] to wait for all of it.
    Close,
    /// Stop the whole engine gracefully, as [`Engine::stop`](crate::Engine::stop).
    Shutdown,
}

/// Which kind of inactivity an idle timeout measures (Netty's `IdleState`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Idle {
    /// Nothing was received for the read-idle timeout.
    Read,
    /// Nothing was sent for the write-idle timeout.
    Write,
    /// Nothing was received or sent for the all-idle timeout.
    All,
}

/// Why a connection closed. [`EventHandler::on_close`] receives exactly one.
#[derive(Debug)]
#[non_exhaustive]
pub enum CloseReason {
    /// The application closed it: [`Action::Close`], [`Conn::close`],
    /// [`Engine::close`](crate::Engine::close).
    Local,
    /// The peer sent FIN; output pending at that moment was flushed first.
    PeerClosed,
    /// The peer reset the connection (`ECONNRESET`, `EPIPE`).
    Reset,
    /// An idle timeout expired and `on_idle` chose to close.
    IdleTimeout(Idle),
    /// A partial frame or request was held longer than the frame timeout.
    FrameTimeout,
    /// The peer broke the framing protocol; names the codec's error.
    Protocol(crate::codec::CodecError),
    /// Outbound data exceeded the hard cap (`Options::max_outbound`).
    WriteOverflow,
    /// Unconsumed inbound data exceeded `Options::max_inbound`.
    InboundOverflow,
    /// A socket error other than a reset.
    Io(io::Error),
    /// A callback panicked while handling this connection. The panic was logged and
    /// the loop went on serving its other connections.
    Panic,
    /// The engine is stopping.
    Shutdown,
}

impl CloseReason {
    /// True for closes the application asked for (`Local`, `Shutdown`).
    pub fn is_local(&self) -> bool {
        matches!(self, CloseReason::Local | CloseReason::Shutdown)
    }
}

impl fmt::Display for CloseReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CloseReason::Local => f.write_str("closed locally"),
            CloseReason::PeerClosed => f.write_str("closed by peer"),
            CloseReason::Reset => f.write_str("reset by peer"),
            CloseReason::IdleTimeout(Idle::Read) => f.write_str("read idle timeout"),
            CloseReason::IdleTimeout(Idle::Write) => f.write_str("write idle timeout"),
            CloseReason::IdleTimeout(Idle::All) => f.write_str("idle timeout"),
            CloseReason::FrameTimeout => f.write_str("frame timeout"),
            CloseReason::Protocol(e) => write!(f, "protocol error: {e}"),
            CloseReason::WriteOverflow => f.write_str("outbound buffer overflow"),
            CloseReason::InboundOverflow => f.write_str("inbound buffer overflow"),
            CloseReason::Io(e) => write!(f, "i/o error: {e}"),
            CloseReason::Panic => f.write_str("handler panicked"),
            CloseReason::Shutdown => f.write_str("engine shutdown"),
        }
    }
}

/// The application: one instance per event loop, called on that loop's thread.
///
/// The engine builds one handler per loop with the factory given to
/// [`Engine::builder`](crate::Engine::builder), so callbacks take `&mut self`
/// without any lock. Per-connection data lives in [`EventHandler::State`], stored
/// inline in the loop's connection slab and reached through [`Conn::state_mut`].
///
/// Callbacks must not block: a loop serves thousands of connections and a slow
/// callback delays all of them. A panic in a callback closes that one connection
/// with [`CloseReason::Panic`].
///
/// # Examples
///
/// An echo server:
///
/// ```no_run
/// use tether::{Action, Conn, Engine, EventHandler};
///
/// struct Echo;
///
/// impl EventHandler for Echo {
///     type State = ();
///
///     fn on_traffic(&mut self, conn: &mut Conn<'_, ()>) -> Action {
///         let data = conn.read_buf();
///         conn.write(data);
///         conn.consume(data.len());
///         Action::Continue
///     }
/// }
///
/// let engine = Engine::builder(|_loop| Echo).listen("127.0.0.1:9000").start()?;
/// engine.join();
/// # Ok::<(), tether::Error>(())
/// ```
pub trait EventHandler: Send + 'static {
    /// Per-connection state, created with `Default` when a connection opens.
    type State: Default + Send + 'static;

    /// The loop thread started, before any connection is served.
    fn on_boot(&mut self, ctx: &mut LoopCtx<'_>) {
        let _ = ctx;
    }

    /// A connection opened. The state is `Default`; fill it here. Writes are allowed
    /// (a greeting); returning [`Action::Close`] rejects the connection.
    fn on_open(&mut self, conn: &mut Conn<'_, Self::State>) -> Action {
        let _ = conn;
        Action::Continue
    }

    /// Bytes arrived. [`Conn::read_buf`] holds everything not yet consumed;
    /// consume what was handled with [`Conn::consume`]. Bytes left unconsumed stay
    /// and are shown again, with more, on the next call.
    fn on_traffic(&mut self, conn: &mut Conn<'_, Self::State>) -> Action;

    /// The connection closed; runs exactly once per opened connection. Output
    /// written here is discarded.
    fn on_close(&mut self, conn: &mut Conn<'_, Self::State>, reason: &CloseReason) {
        let _ = (conn, reason);
    }

    /// Another thread called [`Engine::wake`](crate::Engine::wake) for this
    /// connection.
    fn on_wake(&mut self, conn: &mut Conn<'_, Self::State>) -> Action {
        let _ = conn;
        Action::Continue
    }

    /// Output fell back below the low watermark after having exceeded the high
    /// one: the connection is writable again.
    fn on_writable(&mut self, conn: &mut Conn<'_, Self::State>) -> Action {
        let _ = conn;
        Action::Continue
    }

    /// An idle timeout expired (see [`Options`](crate::Options) and
    /// [`Conn::set_idle_timeout`]). Returning [`Action::Close`] (the default) closes
    /// with [`CloseReason::IdleTimeout`]; [`Action::Continue`] keeps the connection
    /// and reports again after another full timeout of the same idleness.
    fn on_idle(&mut self, conn: &mut Conn<'_, Self::State>, kind: Idle) -> Action {
        let _ = (conn, kind);
        Action::Close
    }

    /// Nothing was sent for the heartbeat interval: send a ping here. Runs only
    /// while the connection is otherwise quiet.
    fn on_heartbeat(&mut self, conn: &mut Conn<'_, Self::State>) -> Action {
        let _ = conn;
        Action::Continue
    }

    /// A timer set with [`Conn::set_timer`] expired.
    fn on_timer(&mut self, conn: &mut Conn<'_, Self::State>, key: u64) -> Action {
        let _ = (conn, key);
        Action::Continue
    }

    /// The loop's ticker, on the loop's own thread: called once after `on_boot`,
    /// then again after each returned delay; `None` stops it. For game ticks and
    /// periodic work over the loop's connections.
    fn on_tick(&mut self, ctx: &mut LoopCtx<'_>) -> Option<std::time::Duration> {
        let _ = ctx;
        None
    }

    /// A datagram arrived on a UDP listener. Answer with [`Datagram::reply`].
    /// [`Action::Shutdown`] stops the engine; other actions do nothing (there is
    /// no connection to close).
    fn on_datagram(&mut self, dgram: &mut Datagram<'_>) -> Action {
        let _ = dgram;
        Action::Continue
    }

    /// A dial attempt failed (refused, unreachable, timed out). `failure.retry_in`
    /// says whether the reconnect policy tries again; if not, `state` is dropped
    /// after this returns.
    fn on_connect_failed(
        &mut self,
        ctx: &mut LoopCtx<'_>,
        failure: &ConnectFailure,
        state: &mut Self::State,
    ) {
        let _ = (ctx, failure, state);
    }

    /// A dialed connection was lost (after `on_close`) and its reconnect policy
    /// scheduled another attempt; `state` travels with it to the new connection.
    fn on_reconnecting(&mut self, ctx: &mut LoopCtx<'_>, redial: &Redial, state: &mut Self::State) {
        let _ = (ctx, redial, state);
    }

    /// The engine is stopping: the listeners are closed, connections are still open
    /// and their pending output is about to be flushed before they close.
    fn on_shutdown(&mut self, ctx: &mut LoopCtx<'_>) {
        let _ = ctx;
    }
}
