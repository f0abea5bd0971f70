//! Dialing from the engine: options, the stable identity of a dialed link, and
//! what the handler hears when an attempt fails or a redial is scheduled.

use std::any::Any;
use std::fmt;
use std::io;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use super::backoff::BackoffPolicy;
use crate::net::ListenAddr;

/// The logical identity of a dialed connection. It stays the same across
/// reconnects (each of which gets a new [`ConnId`](crate::ConnId)), so
/// application state keyed by it survives a redial.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct DialId(pub(crate) u64);

impl DialId {
    pub(crate) fn next() -> DialId {
        static NEXT: AtomicU64 = AtomicU64::new(1);
        DialId(NEXT.fetch_add(1, Ordering::Relaxed))
    }

    /// The id as a number, unique within the process.
    pub fn as_u64(self) -> u64 {
        self.0
    }
}

impl fmt::Display for DialId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "dial#{}", self.0)
    }
}

/// How [`Engine::connect_with`](crate::Engine::connect_with) dials.
#[derive(Debug, Clone)]
pub struct ConnectOptions {
    /// Give up an attempt that has not connected after this long. Default: 10 s.
    /// A duration too long for the clock (`Duration::MAX`) means never.
    pub timeout: Duration,
    /// Redial after a failed attempt or a lost connection, with these delays.
    /// `None` (the default) dials once.
    pub reconnect: Option<BackoffPolicy>,
    /// The loop to run the connection on; `None` takes the loops in turn.
    pub loop_id: Option<usize>,
    /// TLS over the connection (feature `tls`): `on_open` runs once the
    /// handshake completed, and the handler reads and writes plaintext.
    #[cfg(feature = "tls")]
    pub tls: Option<crate::tls::ClientTls>,
}

impl Default for ConnectOptions {
    fn default() -> Self {
        ConnectOptions {
            timeout: Duration::from_secs(10),
            reconnect: None,
            loop_id: None,
            #[cfg(feature = "tls")]
            tls: None,
        }
    }
}

impl ConnectOptions {
    /// Sets the connect timeout.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Redials with `policy` after failures and disconnects.
    pub fn reconnect(mut self, policy: BackoffPolicy) -> Self {
        self.reconnect = Some(policy);
        self
    }

    /// Pins the connection to one loop.
    pub fn on_loop(mut self, loop_id: usize) -> Self {
        self.loop_id = Some(loop_id);
        self
    }

    /// Runs TLS over the connection (feature `tls`).
    #[cfg(feature = "tls")]
    pub fn tls(mut self, tls: crate::tls::ClientTls) -> Self {
        self.tls = Some(tls);
        self
    }
}

/// A dial attempt that failed; passed to
/// [`EventHandler::on_connect_failed`](crate::EventHandler::on_connect_failed).
#[derive(Debug)]
pub struct ConnectFailure {
    /// The dialed link.
    pub dial: DialId,
    /// Where it dialed.
    pub addr: ListenAddr,
    /// Why the attempt failed; `TimedOut` for the connect timeout.
    pub error: io::Error,
    /// When the reconnect policy retries, after how long; `None` when it gave up
    /// or there is no policy (the link is then dropped with its state).
    pub retry_in: Option<Duration>,
    /// Consecutive failures so far, this one included.
    pub attempt: u32,
}

/// A redial scheduled after an established connection was lost; passed to
/// [`EventHandler::on_reconnecting`](crate::EventHandler::on_reconnecting).
#[derive(Debug, Clone)]
pub struct Redial {
    /// The dialed link.
    pub dial: DialId,
    /// Where it will dial.
    pub addr: ListenAddr,
    /// After how long.
    pub delay: Duration,
    /// The number of the attempt to come (1 for the first retry).
    pub attempt: u32,
}

/// A request to dial, as queued to a loop.
pub(crate) struct DialRequest {
    pub(crate) dial: DialId,
    pub(crate) addr: ListenAddr,
    pub(crate) state: Box<dyn Any + Send>,
    pub(crate) options: ConnectOptions,
}

impl fmt::Debug for DialRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DialRequest")
            .field("dial", &self.dial)
            .field("addr", &self.addr)
            .field("options", &self.options)
            .finish_non_exhaustive()
    }
}
