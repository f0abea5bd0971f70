//! How a UDP listener keeps sessions: cap, idle timeout, cookie key.

use std::time::Duration;

use super::CookieKey;

/// Session settings of one UDP listener, given to
/// [`EngineBuilder::listen_sessions`](crate::EngineBuilder::listen_sessions).
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use tether::udp_session::SessionOptions;
///
/// let opts = SessionOptions::new()
///     .max_sessions(5_000)
///     .idle_timeout(Some(Duration::from_secs(10)));
/// assert_eq!(opts.get_max_sessions(), 5_000);
/// ```
#[derive(Debug, Clone)]
pub struct SessionOptions {
    pub(crate) max_sessions: usize,
    pub(crate) idle_timeout: Option<Duration>,
    pub(crate) cookie_key: CookieKey,
    pub(crate) cookie_lifetime: Duration,
}

impl Default for SessionOptions {
    fn default() -> Self {
        Self::new()
    }
}

impl SessionOptions {
    /// Defaults: 10,000 sessions per loop, 30 s idle timeout, a random cookie
    /// key, cookies valid 5–10 s.
    pub fn new() -> Self {
        SessionOptions {
            max_sessions: 10_000,
            idle_timeout: Some(Duration::from_secs(30)),
            cookie_key: CookieKey::random(),
            cookie_lifetime: Duration::from_secs(5),
        }
    }

    /// Sessions each loop holds at most; datagrams from new sources beyond it
    /// are dropped (counted in `Counts::datagrams_dropped`).
    pub fn max_sessions(mut self, n: usize) -> Self {
        self.max_sessions = n;
        self
    }

    /// A session without a datagram from its peer for this long closes with
    /// [`SessionClose::IdleTimeout`](super::SessionClose::IdleTimeout); `None`
    /// keeps sessions until closed.
    pub fn idle_timeout(mut self, d: Option<Duration>) -> Self {
        self.idle_timeout = d;
        self
    }

    /// The key cookies are minted under (random by default; set the same key on
    /// every process behind one address).
    pub fn cookie_key(mut self, key: CookieKey) -> Self {
        self.cookie_key = key;
        self
    }

    /// A cookie is valid for one to two of this (at least 1 ms).
    pub fn cookie_lifetime(mut self, d: Duration) -> Self {
        self.cookie_lifetime = d;
        self
    }

    /// The session cap per loop.
    pub fn get_max_sessions(&self) -> usize {
        self.max_sessions
    }

    /// The idle timeout.
    pub fn get_idle_timeout(&self) -> Option<Duration> {
        self.idle_timeout
    }
}
