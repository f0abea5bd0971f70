//! What can go wrong building a pool or sending through it.

use std::fmt;

use crate::client::backoff::PolicyError;
use crate::codec::CodecError;
use crate::error::{Error, SendError};

/// Why [`Pool::send`](super::Pool::send) refused a frame. Nothing was queued or
/// sent when it returns an error.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum PoolError {
    /// No connection is up and the queue for that case already holds
    /// `capacity` frames.
    QueueFull {
        /// The configured [`queue_capacity`](super::PoolBuilder::queue_capacity).
        capacity: usize,
    },
    /// Connections are up, but every one of them already holds
    /// `per_connection` frames that its socket has not taken yet: the peers or
    /// the network are not keeping up.
    Saturated {
        /// The configured [`max_backlog`](super::PoolBuilder::max_backlog).
        per_connection: usize,
    },
    /// The codec cannot frame this payload (too long, contains the delimiter, …).
    Encode(CodecError),
    /// The reconnect policy of every connection gave up; nothing will come up
    /// again, so nothing is queued.
    GaveUp,
    /// [`Pool::stop`](super::Pool::stop) was called.
    Stopped,
}

impl fmt::Display for PoolError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PoolError::QueueFull { capacity } => write!(
                f,
                "no connection is up and the pool's queue is full ({capacity} frames)"
            ),
            PoolError::Saturated { per_connection } => write!(
                f,
                "every live connection already holds {per_connection} unsent frames"
            ),
            PoolError::Encode(e) => write!(f, "cannot frame the payload: {e}"),
            PoolError::GaveUp => f.write_str("every connection of the pool gave up reconnecting"),
            PoolError::Stopped => f.write_str("pool stopped"),
        }
    }
}

impl std::error::Error for PoolError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            PoolError::Encode(e) => Some(e),
            _ => None,
        }
    }
}

impl From<CodecError> for PoolError {
    fn from(e: CodecError) -> Self {
        PoolError::Encode(e)
    }
}

/// Why [`PoolBuilder::start`](super::PoolBuilder::start) could not start a pool.
#[derive(Debug)]
#[non_exhaustive]
pub enum BuildError {
    /// No endpoint was given.
    NoEndpoints,
    /// A count that must be at least 1 is 0; names the setting.
    Zero(&'static str),
    /// The reconnect policy is inconsistent.
    Policy(PolicyError),
    /// The codec cannot frame the heartbeat ping.
    Ping(CodecError),
    /// The pool's engine did not start.
    Engine(Error),
    /// The engine refused a dial.
    Dial(SendError),
}

impl fmt::Display for BuildError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BuildError::NoEndpoints => f.write_str("a pool needs at least one endpoint"),
            BuildError::Zero(what) => write!(f, "{what} must be at least 1"),
            BuildError::Policy(e) => write!(f, "invalid reconnect policy: {e}"),
            BuildError::Ping(e) => write!(f, "cannot frame the heartbeat ping: {e}"),
            BuildError::Engine(e) => write!(f, "cannot start the pool's engine: {e}"),
            BuildError::Dial(e) => write!(f, "cannot dial: {e}"),
        }
    }
}

impl std::error::Error for BuildError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            BuildError::Policy(e) => Some(e),
            BuildError::Ping(e) => Some(e),
            BuildError::Engine(e) => Some(e),
            BuildError::Dial(e) => Some(e),
            BuildError::NoEndpoints | BuildError::Zero(_) => None,
        }
    }
}
