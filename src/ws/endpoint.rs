//! WebSocket on the reactor: a per-loop [`Endpoint`] that serves the
//! connections whose state holds a [`WsState`].

use std::borrow::BorrowMut;
use std::time::Duration;

use bytes::Bytes;

use super::close::{CloseCode, close_payload};
use super::deflate::Deflater;
use super::frame::{MAX_CONTROL_PAYLOAD, MAX_HEADER_LEN, OpCode, encode_header};
use super::handshake::{self, Agreed, HandshakeError, Offer};
use super::mask::apply_mask;
use super::receiver::{Message, Read, Receiver, Role};
use crate::conn::Conn;
use crate::reason::{Action, CloseReason, Idle};

/// The timer key [`Endpoint::heartbeat`] arms for the pong deadline; pass
/// timers to [`Endpoint::timer`] and leave this key (and the next one down)
/// to it.
pub const PONG_TIMER: u64 = u64::MAX - 0x5753;
/// The timer key for the close handshake's deadline.
pub const CLOSE_TIMER: u64 = PONG_TIMER - 1;

/// Settings of an [`Endpoint`], the same for every connection of a loop.
#[derive(Debug, Clone)]
pub struct Config {
    /// Largest message (after reassembly and inflating), bytes; bigger ones
    /// fail the connection with 1009. A single frame is held whole before it
    /// is read, so keep this below the engine's
    /// [`Options::max_inbound`](crate::Options::max_inbound). Default: 1 MiB.
    pub max_message: usize,
    /// Largest handshake head, bytes. Default: 8 KiB.
    pub max_head: usize,
    /// Subprotocols, in order of preference (server) or offer (client).
    pub protocols: Vec<String>,
    /// Offer (client) or accept (server) permessage-deflate. Default: off.
    pub deflate: bool,
    /// How long a ping from [`Endpoint::heartbeat`] waits for a pong before
    /// the peer counts as dead and the connection is closed. Default: 10 s.
    pub pong_timeout: Duration,
    /// How long a close frame we sent waits for the peer's before the
    /// connection is dropped. Default: 5 s.
    pub close_timeout: Duration,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            max_message: 1 << 20,
            max_head: 8 * 1024,
            protocols: Vec::new(),
            deflate: false,
            pong_timeout: Duration::from_secs(10),
            close_timeout: Duration::from_secs(5),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
enum Phase {
    /// A standalone server waiting for the upgrade request.
    #[default]
    Request,
    /// A client waiting for the server's 101.
    Response,
    /// Messages flow; `opened` tells whether `Event::Open` was delivered.
    Open { opened: bool },
    /// We sent a close frame and wait for the peer's.
    Closing,
    /// Done: input is discarded.
    Closed,
}

/// One connection's WebSocket state: keep it in the handler's `State`
/// (reached through `BorrowMut<WsState>`). About 80 bytes while idle; buffers
/// exist only while a fragmented or compressed message is in flight.
#[derive(Debug, Default)]
pub struct WsState {
    phase: Phase,
    role: Role,
    awaiting_pong: bool,
    /// Data messages may be sent compressed.
    compress: bool,
    reset_deflate: bool,
    protocol: Option<u8>,
    rx: Receiver,
    deflater: Option<Box<Deflater>>,
    /// The client's `Sec-WebSocket-Key` while the handshake is under way.
    key: Option<Box<[u8; 24]>>,
}

impl WsState {
    /// True once the handshake completed and until a close.
    pub fn is_open(&self) -> bool {
        matches!(self.phase, Phase::Open { .. })
    }

    /// The index in [`Config::protocols`] of the agreed subprotocol.
    pub fn protocol(&self) -> Option<usize> {
        self.protocol.map(usize::from)
    }

    fn agree(&mut self, role: Role, agreed: Agreed) {
        self.role = role;
        self.rx = Receiver::new(role);
        self.protocol = agreed.protocol.and_then(|p| u8::try_from(p).ok());
        if let Some(d) = agreed.deflate {
            let server = role == Role::Server;
            let (compress, reset) = d.sending(server);
            self.compress = compress;
            self.reset_deflate = reset;
            let peer_resets = if server {
                d.client_no_context_takeover
            } else {
                d.server_no_context_takeover
            };
            self.rx.enable_deflate(peer_resets);
        }
        self.phase = Phase::Open { opened: false };
    }
}

/// What the callback given to [`Endpoint::serve`] hears.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event<'a> {
    /// The handshake completed: messages may be sent.
    Open,
    /// A message or control frame arrived.
    Message(Message<'a>),
}

/// A loop's WebSocket endpoint: the settings, a scratch buffer for unmasking
/// and one for masking or compressing, reused by every connection of the
/// loop. Make one per handler.
///
/// # Examples
///
/// A standalone echo server (the first bytes of a connection are the
/// upgrade request):
///
/// ```no_run
/// use tether::ws::{Endpoint, Event, Message, WsState};
/// use tether::{Action, Conn, Engine, EventHandler};
///
/// struct Echo {
///     ws: Endpoint,
/// }
///
/// impl EventHandler for Echo {
///     type State = WsState;
///
///     fn on_traffic(&mut self, conn: &mut Conn<'_, WsState>) -> Action {
///         self.ws.serve(conn, |ws, event| match event {
///             Event::Message(Message::Text(t)) => ws.send_text(t),
///             Event::Message(Message::Binary(b)) => ws.send_binary(b),
///             _ => {}
///         })
///     }
///
///     fn on_heartbeat(&mut self, conn: &mut Conn<'_, WsState>) -> Action {
///         self.ws.heartbeat(conn)
///     }
///
///     fn on_timer(&mut self, conn: &mut Conn<'_, WsState>, key: u64) -> Action {
///         self.ws.timer(conn, key)
///     }
/// }
///
/// let engine = Engine::builder(|_| Echo { ws: Endpoint::default() })
///     .listen("127.0.0.1:9001")
///     .start()?;
/// engine.join();
/// # Ok::<(), tether::Error>(())
/// ```
#[derive(Debug)]
pub struct Endpoint {
    config: Config,
    rx_scratch: Vec<u8>,
    tx_scratch: Vec<u8>,
    rng: u64,
}

impl Default for Endpoint {
    fn default() -> Self {
        Endpoint::new(Config::default())
    }
}

impl Endpoint {
    /// An endpoint with `config`.
    pub fn new(config: Config) -> Endpoint {
        use std::hash::{BuildHasher, RandomState};
        Endpoint {
            config,
            rx_scratch: Vec::new(),
            tx_scratch: Vec::new(),
            rng: RandomState::new().hash_one(0x5753u64) | 1,
        }
    }

    /// The settings.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Accepts an upgrade request already parsed by another HTTP layer:
    /// checks it and negotiates; on success the connection is a server-side
    /// WebSocket, and `write_header` is called with each `Sec-WebSocket-*`
    /// header of the 101 answer (the caller writes the status line and
    /// `Upgrade`/`Connection`).
    ///
    /// # Errors
    ///
    /// The [`HandshakeError`] to answer with 400 (or 426 for
    /// [`HandshakeError::Version`], with `Sec-WebSocket-Version: 13`).
    pub fn accept<'h>(
        &self,
        state: &mut WsState,
        method: &str,
        headers: impl Iterator<Item = (&'h str, &'h [u8])> + Clone,
        mut write_header: impl FnMut(&'static str, &[u8]),
    ) -> Result<(), HandshakeError> {
        let offer = Offer::check(method, headers, &self.config.protocols, self.config.deflate)?;
        offer.for_each_header(&self.config.protocols, &mut write_header);
        state.agree(Role::Server, offer.agreed);
        Ok(())
    }

    /// Starts a client handshake on a dialed connection (call it from
    /// `on_open`): writes the upgrade request for `path` at `host`.
    pub fn connect<S: BorrowMut<WsState>>(
        &mut self,
        conn: &mut Conn<'_, S>,
        host: &str,
        path: &str,
    ) {
        let mut random = [0u8; 16];
        random[..8].copy_from_slice(&self.next_random().to_ne_bytes());
        random[8..].copy_from_slice(&self.next_random().to_ne_bytes());
        let key = handshake::client_key(random);
        self.tx_scratch.clear();
        handshake::write_request(
            &mut self.tx_scratch,
            host,
            path,
            &key,
            &self.config.protocols,
            self.config.deflate,
        );
        conn.write(&self.tx_scratch);
        let ws = conn.state_mut().borrow_mut();
        *ws = WsState {
            phase: Phase::Response,
            role: Role::Client,
            key: Some(Box::new(key)),
            ..WsState::default()
        };
    }

    /// Reads what arrived on `conn`: the handshake while it is under way,
    /// then frames, calling `on_event` with each message. Pings are answered,
    /// a close is answered and the connection closed after it; a protocol
    /// error is answered with a close frame carrying its code.
    pub fn serve<S, F>(&mut self, conn: &mut Conn<'_, S>, mut on_event: F) -> Action
    where
        S: BorrowMut<WsState>,
        F: FnMut(&mut WsConn<'_, '_, S>, Event<'_>),
    {
        let input = conn.read_buf();
        let mut pos = 0;
        match conn.state().borrow().phase {
            Phase::Request => {
                match handshake::read_request(
                    input,
                    self.config.max_head,
                    &self.config.protocols,
                    self.config.deflate,
                ) {
                    Ok(None) => return Action::Continue,
                    Ok(Some((offer, len))) => {
                        self.tx_scratch.clear();
                        offer.write_response(&mut self.tx_scratch, &self.config.protocols);
                        conn.write(&self.tx_scratch);
                        conn.state_mut()
                            .borrow_mut()
                            .agree(Role::Server, offer.agreed);
                        pos = len;
                    }
                    Err(e) => {
                        log::debug!("websocket handshake refused: {e}");
                        conn.write(refusal(e));
                        return self.discard(conn);
                    }
                }
            }
            Phase::Response => {
                let key = conn
                    .state()
                    .borrow()
                    .key
                    .as_deref()
                    .copied()
                    .unwrap_or([0; 24]);
                match handshake::read_response(
                    input,
                    self.config.max_head,
                    &key,
                    &self.config.protocols,
                    self.config.deflate,
                ) {
                    Ok(None) => return Action::Continue,
                    Ok(Some((agreed, len))) => {
                        let ws = conn.state_mut().borrow_mut();
                        ws.key = None;
                        ws.agree(Role::Client, agreed);
                        pos = len;
                    }
                    Err(e) => {
                        log::debug!("websocket handshake failed: {e}");
                        return self.discard(conn);
                    }
                }
            }
            Phase::Closed => return self.discard(conn),
            Phase::Open { .. } | Phase::Closing => {}
        }
        if let Phase::Open { opened: false } = conn.state().borrow().phase {
            conn.state_mut().borrow_mut().phase = Phase::Open { opened: true };
            on_event(&mut self.writer(conn), Event::Open);
        }
        let mut rx = std::mem::take(&mut conn.state_mut().borrow_mut().rx);
        let mut scratch = std::mem::take(&mut self.rx_scratch);
        loop {
            if conn.is_closing() && !matches!(conn.state().borrow().phase, Phase::Closing) {
                break;
            }
            match rx.read(&input[pos..], &mut scratch, self.config.max_message) {
                Ok(Read::Incomplete) => break,
                Ok(Read::Absorbed(n)) => pos += n,
                Ok(Read::Message(n, msg)) => {
                    pos += n;
                    let closing = conn.state().borrow().phase == Phase::Closing;
                    match msg {
                        Message::Ping(p) if !closing => {
                            self.writer(conn).frame(OpCode::Pong, p);
                        }
                        Message::Pong(_) => {
                            let ws = conn.state_mut().borrow_mut();
                            if std::mem::take(&mut ws.awaiting_pong) {
                                conn.cancel_timer(PONG_TIMER);
                            }
                        }
                        Message::Close(frame) => {
                            let mut w = self.writer(conn);
                            on_event(&mut w, Event::Message(msg));
                            // Answer with the same code, unless the callback
                            // already closed (or we had).
                            if w.is_open() {
                                w.close_frame(frame.code, "");
                            }
                            conn.state_mut().borrow_mut().phase = Phase::Closed;
                            conn.cancel_timer(CLOSE_TIMER);
                            conn.close_after_flush();
                            pos = input.len();
                            break;
                        }
                        _ => {}
                    }
                    if !closing && !matches!(msg, Message::Close(_)) {
                        on_event(&mut self.writer(conn), Event::Message(msg));
                    }
                }
                Err(e) => {
                    log::debug!("websocket failed: {e}");
                    let reason = e.to_string();
                    if conn.state().borrow().phase != Phase::Closing {
                        self.writer(conn).close_frame(e.close_code(), &reason);
                    }
                    conn.state_mut().borrow_mut().phase = Phase::Closed;
                    conn.close_after_flush();
                    pos = input.len();
                    break;
                }
            }
        }
        conn.consume(pos);
        conn.state_mut().borrow_mut().rx = rx;
        self.rx_scratch = scratch;
        Action::Continue
    }

    /// Sends a ping and arms the pong deadline ([`Config::pong_timeout`]).
    /// Call it from `on_heartbeat` (with `Options::heartbeat` set).
    pub fn heartbeat<S: BorrowMut<WsState>>(&mut self, conn: &mut Conn<'_, S>) -> Action {
        let ws = conn.state_mut().borrow_mut();
        if ws.is_open() && !ws.awaiting_pong {
            ws.awaiting_pong = true;
            self.writer(conn).frame(OpCode::Ping, b"");
            conn.set_timer(self.config.pong_timeout, PONG_TIMER);
        }
        Action::Continue
    }

    /// Handles this layer's timers ([`PONG_TIMER`], [`CLOSE_TIMER`]): a pong
    /// that did not come closes the connection as read-idle; a close handshake
    /// that did not finish drops it. Other keys are left alone.
    pub fn timer<S: BorrowMut<WsState>>(&mut self, conn: &mut Conn<'_, S>, key: u64) -> Action {
        let ws = conn.state_mut().borrow_mut();
        if key == PONG_TIMER && std::mem::take(&mut ws.awaiting_pong) {
            log::debug!("websocket peer did not answer a ping");
            ws.phase = Phase::Closed;
            conn.close_with(CloseReason::IdleTimeout(Idle::Read));
        } else if key == CLOSE_TIMER {
            ws.phase = Phase::Closed;
            conn.close();
        }
        Action::Continue
    }

    /// A sending view of `conn`, for messages outside [`Endpoint::serve`]'s
    /// callback (from `on_wake`, `on_timer`, a broadcast).
    pub fn writer<'c, 'a, S: BorrowMut<WsState>>(
        &'c mut self,
        conn: &'c mut Conn<'a, S>,
    ) -> WsConn<'c, 'a, S> {
        WsConn {
            conn,
            tx: &mut self.tx_scratch,
            rng: &mut self.rng,
            close_timeout: self.config.close_timeout,
        }
    }

    /// Drops every unread byte and closes once the output is sent.
    fn discard<S: BorrowMut<WsState>>(&mut self, conn: &mut Conn<'_, S>) -> Action {
        conn.state_mut().borrow_mut().phase = Phase::Closed;
        let n = conn.read_buf().len();
        conn.consume(n);
        conn.close_after_flush();
        Action::Continue
    }

    fn next_random(&mut self) -> u64 {
        next_random(&mut self.rng)
    }
}

/// xorshift64*: mask keys need to be unpredictable to the page's script,
/// not cryptographic (RFC 6455 §10.3); the seed comes from `RandomState`.
fn next_random(state: &mut u64) -> u64 {
    let mut x = *state;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    *state = x;
    x.wrapping_mul(0x2545_f491_4f6c_dd1d)
}

fn refusal(e: HandshakeError) -> &'static [u8] {
    match e {
        HandshakeError::Version => b"HTTP/1.1 426 Upgrade Required\r\nSec-WebSocket-Version: 13\r\nConnection: close\r\nContent-Length: 0\r\n\r\n",
        HandshakeError::TooLarge => b"HTTP/1.1 431 Request Header Fields Too Large\r\nConnection: close\r\nContent-Length: 0\r\n\r\n",
        _ => b"HTTP/1.1 400 Bad Request\r\nConnection: close\r\nContent-Length: 0\r\n\r\n",
    }
}

/// A WebSocket connection as a message callback sees it: send text, binary,
/// ping and close; reach the connection underneath with [`WsConn::conn`].
#[derive(Debug)]
pub struct WsConn<'c, 'a, S> {
    conn: &'c mut Conn<'a, S>,
    tx: &'c mut Vec<u8>,
    rng: &'c mut u64,
    close_timeout: Duration,
}

impl<'a, S: BorrowMut<WsState>> WsConn<'_, 'a, S> {
    /// The connection underneath (its id, state, timers, socket).
    pub fn conn(&mut self) -> &mut Conn<'a, S> {
        self.conn
    }

    /// True while messages may be sent (handshake done, no close sent).
    pub fn is_open(&self) -> bool {
        self.conn.state().borrow().is_open()
    }

    /// Sends a text message.
    pub fn send_text(&mut self, text: &str) {
        self.frame(OpCode::Text, text.as_bytes());
    }

    /// Sends a binary message.
    pub fn send_binary(&mut self, data: &[u8]) {
        self.frame(OpCode::Binary, data);
    }

    /// Sends a ping (payload cut to 125 bytes). Its pong arrives as
    /// [`Message::Pong`].
    pub fn ping(&mut self, payload: &[u8]) {
        self.frame(
            OpCode::Ping,
            &payload[..payload.len().min(MAX_CONTROL_PAYLOAD)],
        );
    }

    /// Starts the close handshake: sends a close frame with `code` and
    /// `reason` (cut to fit 125 bytes), then waits up to
    /// [`Config::close_timeout`] for the peer's before dropping the
    /// connection. Nothing more is sent after it.
    pub fn close(&mut self, code: CloseCode, reason: &str) {
        if !self.is_open() {
            return;
        }
        self.close_frame(code, reason);
        self.conn.state_mut().borrow_mut().phase = Phase::Closing;
        self.conn.set_timer(self.close_timeout, CLOSE_TIMER);
    }

    /// Sends a frame already built by [`server_frame`] (a topic message
    /// framed once for every subscriber): server connections without
    /// compression only, which is what it was framed for.
    pub fn send_framed(&mut self, frame: &[u8]) {
        if self.is_open() && self.conn.state().borrow().role == Role::Server {
            self.conn.write(frame);
        }
    }

    fn close_frame(&mut self, code: CloseCode, reason: &str) {
        let mut payload = [0u8; 125];
        let n = close_payload(&mut payload, code, reason);
        self.raw_frame(OpCode::Close, &payload[..n], false);
    }

    fn frame(&mut self, op: OpCode, payload: &[u8]) {
        if !self.is_open() {
            return;
        }
        let ws = self.conn.state_mut().borrow_mut();
        if ws.compress && !op.is_control() {
            let reset = ws.reset_deflate;
            let deflater = ws
                .deflater
                .get_or_insert_with(|| Box::new(Deflater::new(reset)));
            let mut compressed = std::mem::take(self.tx);
            deflater.compress(payload, &mut compressed);
            self.raw_frame(op, &compressed, true);
            *self.tx = compressed;
        } else {
            self.raw_frame(op, payload, false);
        }
    }

    fn raw_frame(&mut self, op: OpCode, payload: &[u8], rsv1: bool) {
        let mut header = [0u8; MAX_HEADER_LEN];
        if self.conn.state().borrow().role == Role::Server {
            let n = encode_header(&mut header, true, rsv1, op, None, payload.len() as u64);
            self.conn.write(&header[..n]);
            self.conn.write(payload);
        } else {
            let key = (next_random(self.rng) as u32).to_ne_bytes();
            let n = encode_header(&mut header, true, rsv1, op, Some(key), payload.len() as u64);
            self.conn.write(&header[..n]);
            // Mask in pieces through a small stack buffer: `tx` may hold the
            // payload itself (compressed).
            let mut chunk = [0u8; 1024];
            for (i, piece) in payload.chunks(chunk.len()).enumerate() {
                let c = &mut chunk[..piece.len()];
                c.copy_from_slice(piece);
                apply_mask(c, key, i * 1024);
                self.conn.write(c);
            }
        }
    }
}

/// Frames `payload` once as an unfragmented, uncompressed server message
/// (header and payload in one buffer), to hand the same [`Bytes`] to many
/// connections: a topic or a broadcast frames a message once, not once per
/// subscriber.
///
/// # Examples
///
/// ```
/// use tether::ws::{server_frame, OpCode};
///
/// let frame = server_frame(OpCode::Text, b"hi");
/// assert_eq!(&frame[..], &[0x81, 2, b'h', b'i']);
/// ```
pub fn server_frame(op: OpCode, payload: &[u8]) -> Bytes {
    let mut out = Vec::with_capacity(payload.len() + 10);
    super::frame::encode_frame(&mut out, true, false, op, None, payload);
    Bytes::from(out)
}
