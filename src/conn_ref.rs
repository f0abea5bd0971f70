//! Another connection of the loop, as a callback reaches it by id.

use std::fmt;

use bytes::Bytes;

use crate::event_loop::core::{LoopCore, PendingClose, SUBSCRIBED, SlotIo};
use crate::id::ConnId;
use crate::topics::TopicError;

/// A connection of the callback's own loop, reached by [`ConnId`] through
/// [`LoopCtx::conn`](crate::LoopCtx::conn) or visited with
/// [`LoopCtx::for_each`](crate::LoopCtx::for_each).
///
/// Writes join the connection's queue directly (no command, no wake) and go
/// out at the end of the loop's pass, one `writev` per connection however many
/// callbacks wrote to it, in the order written. A `ConnRef` lives only as long
/// as the callback's borrow of the loop.
pub struct ConnRef<'b, S> {
    pub(crate) key: usize,
    pub(crate) io: &'b mut SlotIo,
    pub(crate) state: &'b mut S,
    pub(crate) core: &'b mut LoopCore,
}

impl<S> fmt::Debug for ConnRef<'_, S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConnRef")
            .field("id", &self.id())
            .field("outbound_len", &self.outbound_len())
            .finish_non_exhaustive()
    }
}

impl<S> ConnRef<'_, S> {
    /// The connection's id.
    pub fn id(&self) -> ConnId {
        ConnId {
            loop_id: self.core.loop_id as u16,
            slot: self.key as u32,
            generation: self.io.generation,
        }
    }

    /// Its per-connection state.
    pub fn state(&self) -> &S {
        self.state
    }

    /// Its per-connection state, mutably.
    pub fn state_mut(&mut self) -> &mut S {
        self.state
    }

    /// Copies `data` into its output. Beyond
    /// [`Options::max_outbound`](crate::Options::max_outbound) the data is
    /// dropped and the connection closes with `WriteOverflow` after the pass;
    /// returns false then (or if it is already closing).
    pub fn write(&mut self, data: &[u8]) -> bool {
        self.core.queue_copy(self.key, self.io, data)
    }

    /// Queues `data` without copying it (a reference to the same allocation).
    /// Limits as for [`ConnRef::write`].
    pub fn send(&mut self, data: Bytes) -> bool {
        self.core.queue_shared(self.key, self.io, data)
    }

    /// Bytes queued for it and not yet taken by its socket.
    pub fn outbound_len(&self) -> usize {
        self.core.pending(self.key, self.io)
    }

    /// False while its pending output is above the high watermark.
    pub fn is_writable(&self) -> bool {
        self.outbound_len() <= self.core.high_watermark
    }

    /// Topic messages dropped for it by the slow-subscriber policy.
    pub fn dropped(&self) -> u32 {
        self.io.dropped
    }

    /// Closes it at the end of the pass (reason
    /// [`CloseReason::Local`](crate::CloseReason::Local)); output queued so far
    /// is sent as far as the socket takes it without blocking.
    pub fn close(&mut self) {
        self.core
            .request_close(self.key, self.io, PendingClose::Local);
    }

    /// True once a close is pending for it.
    pub fn is_closing(&self) -> bool {
        self.io.close != PendingClose::None
    }

    /// Subscribes it to `topic` on this loop's table; `Ok(false)` if it already
    /// was. See [`LoopCtx::subscribe`](crate::LoopCtx::subscribe).
    ///
    /// # Errors
    ///
    /// [`TopicError`] for a bad name or a reached limit.
    pub fn subscribe(&mut self, topic: &str) -> Result<bool, TopicError> {
        let added = self
            .core
            .topics
            .subscribe((self.key, self.io.generation), topic)?;
        self.io.flags |= SUBSCRIBED;
        Ok(added)
    }

    /// Unsubscribes it from `topic`; false if it was not subscribed.
    pub fn unsubscribe(&mut self, topic: &str) -> bool {
        self.core.topics.unsubscribe(self.key, topic)
    }

    /// Topics it is subscribed to.
    pub fn topic_count(&self) -> usize {
        self.core.topics.topics_of(self.key)
    }
}
