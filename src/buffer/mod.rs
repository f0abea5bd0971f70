//! Connection buffers: an elastic byte buffer and the per-loop pool that lends them.
//!
//! A connection only owns a buffer while it has bytes in flight: unconsumed input
//! or output the socket has not taken yet. Everything else is read into and written
//! from the loop's shared scratch space, so an idle connection costs no buffer.

mod buf;
pub(crate) mod outbound;
mod pool;

pub use buf::{Buf, ConsumeError};
pub use pool::{BufferPool, PoolStats};
