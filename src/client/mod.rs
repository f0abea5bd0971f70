//! Client side: reconnect policy with exponential backoff.

pub mod backoff;
