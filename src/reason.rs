//! The loop's vocabulary: what a callback returns ([`Action`]), why a connection
//! closed ([`CloseReason`]), which inactivity a timeout measured ([`Idle`]).
//!
//! Plain data, importing nothing of the callback layer, so the counters
//! (`stats`), the deadlines (`timeouts`) and the loop can name them without
//! depending on the handler trait.

use std::fmt;
use std::io;

/// What the loop should do after a callback returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[must_use]
pub enum Action {
    /// Keep the connection open.
    #[default]
    Continue,
    /// Close the connection: output written so far is flushed as far as the socket
    /// takes it without blocking, then the socket is closed and `on_close` runs with
    /// [`CloseReason::Local`]. Use [`Conn::close_after_flush`](crate::Conn::close_after_flush) to wait for all of it.
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

/// Why a connection closed. [`EventHandler::on_close`](crate::EventHandler::on_close) receives exactly one.
#[derive(Debug)]
#[non_exhaustive]
pub enum CloseReason {
    /// The application closed it: [`Action::Close`], [`Conn::close`](crate::Conn::close),
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
    /// A topic subscriber's pending output exceeded `Options::max_backpressure`
    /// with `Options::slow_subscriber` set to `SlowSubscriber::Close`.
    SlowSubscriber,
    /// A socket error other than a reset.
    Io(io::Error),
    /// A callback panicked while handling this connection. The panic was logged and
    /// the loop went on serving its other connections.
    Panic,
    /// The engine is stopping.
    Shutdown,
    /// Shed to keep the engine within `Options::memory_budget`: it held the
    /// most buffer memory when the budget ran out.
    MemoryBudget,
    /// The PROXY protocol header was missing, malformed, too long or late.
    Proxy(crate::proxy::ProxyError),
    /// The TLS handshake or session failed, or the handshake timed out.
    #[cfg(feature = "tls")]
    Tls(crate::tls::TlsError),
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
            CloseReason::SlowSubscriber => f.write_str("slow subscriber"),
            CloseReason::Io(e) => write!(f, "i/o error: {e}"),
            CloseReason::Panic => f.write_str("handler panicked"),
            CloseReason::Shutdown => f.write_str("engine shutdown"),
            CloseReason::MemoryBudget => f.write_str("shed: memory budget exceeded"),
            CloseReason::Proxy(e) => write!(f, "{e}"),
            #[cfg(feature = "tls")]
            CloseReason::Tls(e) => write!(f, "{e}"),
        }
    }
}
