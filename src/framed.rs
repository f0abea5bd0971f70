//! Frame-level handlers: a codec splits the stream, the handler sees frames.

use std::ops::{Deref, DerefMut};
use std::time::Duration;

use crate::client::{ConnectFailure, Redial};
use crate::codec::{Codec, CodecError, Decoded, MAX_HEADER_LEN};
use crate::conn::Conn;
use crate::ctx::LoopCtx;
use crate::handler::{Action, CloseReason, EventHandler, Idle};

/// A handler that works in whole frames instead of bytes.
///
/// Wrap it in [`Framed`] with a [`Codec`] to get an [`EventHandler`]. Each
/// connection decodes with its own clone of the codec; every complete frame is
/// passed to [`on_frame`](FrameHandler::on_frame) as a slice borrowed from the
/// inbound bytes (no copy), and consumed when it returns. A protocol violation
/// (oversized length, malformed varint, line too long, …) closes the connection
/// with [`CloseReason::Protocol`] naming the error.
///
/// # Examples
///
/// A length-prefixed echo:
///
/// ```no_run
/// use tether::codec::LengthPrefixed;
/// use tether::{Action, Engine, FrameConn, FrameHandler, Framed};
///
/// struct FrameEcho;
///
/// impl FrameHandler for FrameEcho {
///     type State = ();
///     type Codec = LengthPrefixed;
///
///     fn on_frame(&mut self, conn: &mut FrameConn<'_, '_, (), LengthPrefixed>, frame: &[u8]) -> Action {
///         match conn.write_frame(frame) {
///             Ok(()) => Action::Continue,
///             Err(_) => Action::Close,
///         }
///     }
/// }
///
/// let engine = Engine::builder(|_| Framed::new(LengthPrefixed::new(), FrameEcho))
///     .listen("127.0.0.1:9001")
///     .start()?;
/// # Ok::<(), tether::Error>(())
/// ```
pub trait FrameHandler: Send + 'static {
    /// Per-connection state, created with `Default` when a connection opens.
    type State: Default + Send + 'static;
    /// The framing protocol.
    type Codec: Codec;

    /// See [`EventHandler::on_boot`].
    fn on_boot(&mut self, ctx: &mut LoopCtx<'_>) {
        let _ = ctx;
    }
    /// See [`EventHandler::on_open`].
    fn on_open(&mut self, conn: &mut FrameConn<'_, '_, Self::State, Self::Codec>) -> Action {
        let _ = conn;
        Action::Continue
    }
    /// A complete frame arrived; `frame` is its payload.
    fn on_frame(
        &mut self,
        conn: &mut FrameConn<'_, '_, Self::State, Self::Codec>,
        frame: &[u8],
    ) -> Action;
    /// See [`EventHandler::on_close`].
    fn on_close(
        &mut self,
        conn: &mut FrameConn<'_, '_, Self::State, Self::Codec>,
        reason: &CloseReason,
    ) {
        let _ = (conn, reason);
    }
    /// See [`EventHandler::on_wake`].
    fn on_wake(&mut self, conn: &mut FrameConn<'_, '_, Self::State, Self::Codec>) -> Action {
        let _ = conn;
        Action::Continue
    }
    /// See [`EventHandler::on_writable`].
    fn on_writable(&mut self, conn: &mut FrameConn<'_, '_, Self::State, Self::Codec>) -> Action {
        let _ = conn;
        Action::Continue
    }
    /// See [`EventHandler::on_idle`].
    fn on_idle(
        &mut self,
        conn: &mut FrameConn<'_, '_, Self::State, Self::Codec>,
        kind: Idle,
    ) -> Action {
        let _ = (conn, kind);
        Action::Close
    }
    /// See [`EventHandler::on_heartbeat`]; send a ping frame here.
    fn on_heartbeat(&mut self, conn: &mut FrameConn<'_, '_, Self::State, Self::Codec>) -> Action {
        let _ = conn;
        Action::Continue
    }
    /// See [`EventHandler::on_timer`].
    fn on_timer(
        &mut self,
        conn: &mut FrameConn<'_, '_, Self::State, Self::Codec>,
        key: u64,
    ) -> Action {
        let _ = (conn, key);
        Action::Continue
    }
    /// See [`EventHandler::on_tick`].
    fn on_tick(&mut self, ctx: &mut LoopCtx<'_>) -> Option<Duration> {
        let _ = ctx;
        None
    }
    /// See [`EventHandler::on_connect_failed`].
    fn on_connect_failed(
        &mut self,
        ctx: &mut LoopCtx<'_>,
        failure: &ConnectFailure,
        state: &mut Self::State,
    ) {
        let _ = (ctx, failure, state);
    }
    /// See [`EventHandler::on_reconnecting`].
    fn on_reconnecting(&mut self, ctx: &mut LoopCtx<'_>, redial: &Redial, state: &mut Self::State) {
        let _ = (ctx, redial, state);
    }
    /// See [`EventHandler::on_shutdown`].
    fn on_shutdown(&mut self, ctx: &mut LoopCtx<'_>) {
        let _ = ctx;
    }
}

/// A connection as a [`FrameHandler`] sees it: a [`Conn`] plus
/// [`write_frame`](FrameConn::write_frame).
#[derive(Debug)]
pub struct FrameConn<'c, 'a, S, C> {
    conn: &'c mut Conn<'a, S>,
    codec: &'c C,
}

impl<S, C: Codec> FrameConn<'_, '_, S, C> {
    /// Queues `payload` as one frame: the codec's header, the payload, its trailer.
    /// The payload is not copied anywhere but into the outbound queue.
    ///
    /// # Errors
    ///
    /// The codec's error when the payload cannot be framed (too long for the length
    /// field or `max_frame_len`, contains the delimiter, …); nothing is written then.
    pub fn write_frame(&mut self, payload: &[u8]) -> Result<(), CodecError> {
        let mut header = [0u8; MAX_HEADER_LEN];
        let n = self.codec.encode_header(payload, &mut header)?;
        self.conn.write(&header[..n]);
        self.conn.write(payload);
        self.conn.write(self.codec.encode_trailer());
        self.conn.count_frame_out();
        Ok(())
    }
}

impl<'a, S, C> Deref for FrameConn<'_, 'a, S, C> {
    type Target = Conn<'a, S>;
    fn deref(&self) -> &Conn<'a, S> {
        self.conn
    }
}

impl<'a, S, C> DerefMut for FrameConn<'_, 'a, S, C> {
    fn deref_mut(&mut self) -> &mut Conn<'a, S> {
        self.conn
    }
}

/// Per-connection state of a [`Framed`] handler: the application's state, and
/// the connection's own codec when the codec keeps decoding state (boxed, made
/// on first use; stateless codecs are shared by the loop).
#[derive(Debug)]
pub struct FramedState<S, C> {
    codec: Option<Box<C>>,
    user: S,
}

impl<S, C> FramedState<S, C> {
    /// The state a dialed connection starts with
    /// ([`Engine::connect`](crate::Engine::connect) takes the handler's `State`,
    /// which for a [`Framed`] handler is this).
    pub fn new(user: S) -> Self {
        FramedState { codec: None, user }
    }
}

impl<S: Default, C> Default for FramedState<S, C> {
    fn default() -> Self {
        FramedState {
            codec: None,
            user: S::default(),
        }
    }
}

/// The application's state and the codec to decode this connection with: its
/// own for a stateful codec, the loop's shared one otherwise.
fn split_state<'s, S, C: Codec>(
    st: &'s mut FramedState<S, C>,
    shared: &'s mut C,
) -> (&'s mut S, &'s mut C) {
    if shared.is_stateless() {
        (&mut st.user, shared)
    } else {
        let own = st.codec.get_or_insert_with(|| Box::new(shared.clone()));
        (&mut st.user, own)
    }
}

/// Adapts a [`FrameHandler`] and a [`Codec`] into an [`EventHandler`].
#[derive(Debug, Clone)]
pub struct Framed<H: FrameHandler> {
    codec: H::Codec,
    handler: H,
}

impl<H: FrameHandler> Framed<H> {
    /// Frames with `codec` (each connection gets a clone) and calls `handler`.
    pub fn new(codec: H::Codec, handler: H) -> Self {
        Framed { codec, handler }
    }

    /// Runs `f` with the application's view of the connection.
    fn with<R>(
        &mut self,
        conn: &mut Conn<'_, FramedState<H::State, H::Codec>>,
        f: impl FnOnce(&mut H, &mut FrameConn<'_, '_, H::State, H::Codec>) -> R,
    ) -> R {
        let shared = &mut self.codec;
        let handler = &mut self.handler;
        conn.project(
            move |st| split_state(st, shared),
            |conn, codec| f(handler, &mut FrameConn { conn, codec }),
        )
    }
}

impl<H: FrameHandler> EventHandler for Framed<H> {
    type State = FramedState<H::State, H::Codec>;

    fn on_boot(&mut self, ctx: &mut LoopCtx<'_>) {
        self.handler.on_boot(ctx);
    }

    fn on_open(&mut self, conn: &mut Conn<'_, Self::State>) -> Action {
        // A fresh codec per stream: a redialed link keeps its state, not the old
        // stream's decoding position.
        conn.state_mut().codec = None;
        self.with(conn, |h, c| h.on_open(c))
    }

    fn on_traffic(&mut self, conn: &mut Conn<'_, Self::State>) -> Action {
        let handler = &mut self.handler;
        let shared = &mut self.codec;
        conn.project(
            move |st| split_state(st, shared),
            |conn, codec| loop {
                let input = conn.read_buf();
                match codec.decode(input) {
                    Ok(Decoded::Frame(frame)) => {
                        let payload = frame.payload(input);
                        conn.count_frame_in();
                        let start = conn.consumed;
                        let action = handler.on_frame(&mut FrameConn { conn, codec }, payload);
                        // The frame is consumed here whatever the handler did with
                        // `consume`: framing owns the input position.
                        conn.consumed = start + frame.consumed();
                        if action != Action::Continue || conn.is_closing() {
                            return action;
                        }
                    }
                    Ok(Decoded::Incomplete { .. }) => return Action::Continue,
                    Err(e) => {
                        conn.close_with(CloseReason::Protocol(e));
                        return Action::Continue;
                    }
                }
            },
        )
    }

    fn on_close(&mut self, conn: &mut Conn<'_, Self::State>, reason: &CloseReason) {
        self.with(conn, |h, c| h.on_close(c, reason));
    }

    fn on_wake(&mut self, conn: &mut Conn<'_, Self::State>) -> Action {
        self.with(conn, |h, c| h.on_wake(c))
    }

    fn on_writable(&mut self, conn: &mut Conn<'_, Self::State>) -> Action {
        self.with(conn, |h, c| h.on_writable(c))
    }

    fn on_idle(&mut self, conn: &mut Conn<'_, Self::State>, kind: Idle) -> Action {
        self.with(conn, |h, c| h.on_idle(c, kind))
    }

    fn on_heartbeat(&mut self, conn: &mut Conn<'_, Self::State>) -> Action {
        self.with(conn, |h, c| h.on_heartbeat(c))
    }

    fn on_timer(&mut self, conn: &mut Conn<'_, Self::State>, key: u64) -> Action {
        self.with(conn, |h, c| h.on_timer(c, key))
    }

    fn on_tick(&mut self, ctx: &mut LoopCtx<'_>) -> Option<Duration> {
        self.handler.on_tick(ctx)
    }

    fn on_connect_failed(
        &mut self,
        ctx: &mut LoopCtx<'_>,
        failure: &ConnectFailure,
        state: &mut Self::State,
    ) {
        self.handler
            .on_connect_failed(ctx, failure, &mut state.user);
    }

    fn on_reconnecting(&mut self, ctx: &mut LoopCtx<'_>, redial: &Redial, state: &mut Self::State) {
        self.handler.on_reconnecting(ctx, redial, &mut state.user);
    }

    fn on_shutdown(&mut self, ctx: &mut LoopCtx<'_>) {
        self.handler.on_shutdown(ctx);
    }
}
