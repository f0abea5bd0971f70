//! Client side: dialing from the loops, reconnect policy with exponential
//! backoff.

pub mod backoff;
mod dial;
pub mod pool;

pub(crate) use dial::DialRequest;
pub use dial::{ConnectFailure, ConnectOptions, DialId, Redial};
