//! tether: an event-driven reactor for long-lived connections.
#![deny(missing_docs, missing_debug_implementations, rust_2018_idioms)]
#![deny(unsafe_code)]

pub mod buffer;
pub mod client;
pub mod codec;
mod conn;
mod ctx;
mod datagram;
mod engine;
mod error;
mod event_loop;
mod framed;
mod handler;
mod id;
mod inbox;
mod lb;
pub mod net;
mod options;
mod stats;
mod timeouts;
pub mod timer;

pub use client::{ConnectFailure, ConnectOptions, DialId, Redial};
pub use conn::Conn;
pub use ctx::LoopCtx;
pub use datagram::Datagram;
pub use engine::{Engine, EngineBuilder};
pub use error::{Error, SendError};
pub use framed::{FrameConn, FrameHandler, Framed, FramedState};
pub use handler::{Action, CloseReason, EventHandler, Idle};
pub use id::ConnId;
pub use lb::LoadBalancer;
pub use options::Options;
pub use stats::{ClosedBy, Counts, Stats};

/// The README's code blocks, compiled as doctests so they stay true.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
