//! tether: an event-driven reactor for long-lived connections.
//!
//! A few event loops (one OS thread each, one per core by default) over mio,
//! each owning a slab of connections, a hierarchical timer wheel and a pool of
//! buffers. You implement [`EventHandler`]; tether does the readiness work,
//! buffering, timeouts, framing, reconnecting and bookkeeping, with no async
//! runtime and no lock on the data path.
//!
//! # Quick start
//!
//! ```no_run
//! use tether::{Action, Conn, Engine, EventHandler};
//!
//! struct Echo;
//!
//! impl EventHandler for Echo {
//!     type State = ();
//!
//!     fn on_traffic(&mut self, conn: &mut Conn<'_, ()>) -> Action {
//!         let data = conn.read_buf();
//!         conn.write(data);
//!         conn.consume(data.len());
//!         Action::Continue
//!     }
//! }
//!
//! let engine = Engine::builder(|_loop_id| Echo)
//!     .listen("tcp://127.0.0.1:9000")
//!     .start()?;
//! engine.join();
//! # Ok::<(), tether::Error>(())
//! ```
//!
//! # The model
//!
//! - **One handler per loop.** [`Engine::builder`] takes a factory called once per
//!   loop on that loop's thread; callbacks get `&mut self`, so a handler needs no
//!   locks. State shared across loops is the application's choice.
//! - **Typed per-connection state**, [`EventHandler::State`], inline in the slab,
//!   reached through [`Conn::state_mut`].
//! - **Input** is shown in place ([`Conn::read_buf`]) and kept only if left
//!   unconsumed; **output** written in a callback goes out in one `write(2)`
//!   after it returns ([`Conn::write`]).
//! - **Other threads** act through the [`Engine`] handle: [`Engine::send`],
//!   [`Engine::close`], [`Engine::wake`], [`Engine::connect`]; commands carry a
//!   [`ConnId`], and a stale id is dropped, never applied to a reused slot.
//! - **Every close** runs [`EventHandler::on_close`] exactly once with a typed
//!   [`CloseReason`].
//!
//! # Where things are
//!
//! - [`Options`]: loops, accept mode, buffers, watermarks, caps, timeouts,
//!   [`net::SocketOptions`].
//! - Timers: idle timeouts, heartbeats and the frame timeout in [`Options`] and on
//!   [`Conn`]; user timers with [`Conn::set_timer`]; the wheel itself in
//!   [`timer`].
//! - Framing: [`codec`], split inside `on_traffic` with [`decode_frames`].
//! - Clients: [`Engine::connect_with`], [`client::backoff`], [`client::pool`].
//! - UDP: [`EventHandler::on_datagram`] and [`Datagram`]; Unix sockets through
//!   `unix://` addresses ([`net::ListenAddr`]).
//! - Counters: [`Engine::stats`].
//!
//! # Guarantees
//!
//! Callbacks of one loop never run concurrently, and a connection stays on its
//! loop. Bytes reach the socket in the order written. A panic in a callback
//! closes that connection ([`CloseReason::Panic`]) and the loop serves on. Input
//! from peers is bounded everywhere: oversized frames, unconsumed input beyond
//! `max_inbound` and output beyond `max_outbound` close the one connection with
//! a typed reason, never an unbounded allocation.
#![deny(missing_docs, missing_debug_implementations, rust_2018_idioms)]
#![deny(unsafe_code)]

pub mod buffer;
pub mod client;
pub mod codec;
mod conn;
mod conn_ref;
mod ctx;
mod datagram;
mod engine;
mod error;
mod event_loop;
mod framed;
mod handler;
#[cfg(feature = "http")]
pub mod http;
mod id;
mod inbox;
mod layer;
mod lb;
pub mod memory;
pub mod net;
mod options;
pub mod proxy;
mod reason;
mod slots;
mod stats;
mod ticker;
mod timeouts;
pub mod timer;
#[cfg(feature = "tls")]
pub mod tls;
mod topics;
pub mod udp_session;
#[cfg(feature = "ws")]
pub mod ws;

pub use client::{ConnectFailure, ConnectOptions, DialId, Redial};
pub use conn::Conn;
pub use conn_ref::ConnRef;
pub use ctx::LoopCtx;
pub use datagram::Datagram;
pub use engine::{Engine, EngineBuilder};
pub use error::{Error, SendError};
pub use framed::{
    FrameConn, FrameWriter, build_frame, decode_frames, decode_frames_with_state_codec, write_frame,
};
pub use handler::EventHandler;
pub use id::ConnId;
pub use lb::LoadBalancer;
pub use options::{Options, SlowSubscriber};
pub use reason::{Action, CloseReason, Idle};
pub use stats::{ClosedBy, Counts, Stats};
pub use ticker::TickInfo;
pub use topics::TopicError;

/// The README's code blocks, compiled as doctests so they stay true.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
