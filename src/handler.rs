//! The callbacks an application implements, and what they return.

use crate::client::{ConnectFailure, Redial};
use crate::conn::Conn;
use crate::ctx::LoopCtx;
use crate::datagram::Datagram;
pub use crate::reason::{Action, CloseReason, Idle};
use crate::udp_session::{Admit, NewSource, Session, SessionClose};

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
    fn on_boot(&mut self, ctx: &mut LoopCtx<'_, Self::State>) {
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
    /// then at a fixed rate, the returned period after the previous tick's
    /// *deadline* (not after it ran), to the nanosecond: 60 Hz
    /// (`Duration::from_nanos(16_666_667)`) holds 60 ticks a second on average.
    /// `None` stops it. A tick that comes more than a period late skips the
    /// deadlines it missed instead of running them in a burst;
    /// [`LoopCtx::tick_info`] says how late it is and how many were skipped.
    /// Visit the loop's connections with [`LoopCtx::for_each`]; what is written
    /// to them goes out after the tick, one `writev` per connection.
    fn on_tick(&mut self, ctx: &mut LoopCtx<'_, Self::State>) -> Option<std::time::Duration> {
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

    /// A datagram arrived on a session listener
    /// ([`EngineBuilder::listen_sessions`](crate::EngineBuilder::listen_sessions))
    /// from a source without a session: the validation hook. The default admits
    /// every source (bounded only by the session cap); a server facing the
    /// internet should run a cookie round trip here (see [`NewSource`]).
    fn on_new_source(&mut self, src: &mut NewSource<'_>) -> Admit {
        let _ = src;
        Admit::Open
    }

    /// A UDP session opened (admitted by `on_new_source`, or dialed with
    /// [`Udp::connect`](crate::udp_session::Udp::connect)). The state is
    /// `Default`; fill it here. [`Action::Close`] ends it at once.
    fn on_session_open(&mut self, session: &mut Session<'_, Self::State>) -> Action {
        let _ = session;
        Action::Continue
    }

    /// A datagram from a session's peer (`truncated`: it was longer than
    /// `Options::udp_max_datagram`).
    fn on_session_datagram(
        &mut self,
        session: &mut Session<'_, Self::State>,
        data: &[u8],
        truncated: bool,
    ) -> Action {
        let _ = (session, data, truncated);
        Action::Continue
    }

    /// A UDP session ended; runs exactly once per opened session.
    fn on_session_close(&mut self, session: &mut Session<'_, Self::State>, reason: SessionClose) {
        let _ = (session, reason);
    }

    /// A dial attempt failed (refused, unreachable, timed out). `failure.retry_in`
    /// says whether the reconnect policy tries again; if not, `state` is dropped
    /// after this returns.
    fn on_connect_failed(
        &mut self,
        ctx: &mut LoopCtx<'_, Self::State>,
        failure: &ConnectFailure,
        state: &mut Self::State,
    ) {
        let _ = (ctx, failure, state);
    }

    /// A dialed connection was lost (after `on_close`) and its reconnect policy
    /// scheduled another attempt; `state` travels with it to the new connection.
    fn on_reconnecting(
        &mut self,
        ctx: &mut LoopCtx<'_, Self::State>,
        redial: &Redial,
        state: &mut Self::State,
    ) {
        let _ = (ctx, redial, state);
    }

    /// The engine is stopping: the listeners are closed, connections are still open
    /// and their pending output is about to be flushed before they close.
    fn on_shutdown(&mut self, ctx: &mut LoopCtx<'_, Self::State>) {
        let _ = ctx;
    }
}
