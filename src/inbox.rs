//! Commands sent to a loop from other threads, queued and woken in batches.

use std::io;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use crate::net::stream::Stream;
use bytes::Bytes;
use mio::Waker;

use crate::error::SendError;
use crate::id::ConnId;

/// One request for a loop, made by [`Engine`](crate::Engine) or by another loop.
#[derive(Debug)]
pub(crate) enum Command {
    Send(ConnId, Bytes),
    /// One message for several connections of the loop, stored once.
    Broadcast(Vec<ConnId>, Bytes),
    /// One message for the loop's subscribers of a topic.
    Publish(std::sync::Arc<str>, Bytes),
    Close(ConnId),
    Wake(ConnId),
    /// A socket accepted by a shared listener (tagged with its index), handed to
    /// this loop.
    Adopt(Stream, u16),
    /// Dial out from this loop.
    Connect(Box<crate::client::DialRequest>),
    /// Stop accepting, drain, close everything; by `deadline_ms` on the loop clock
    /// measured from when the command is seen.
    Stop {
        drain: std::time::Duration,
    },
}

/// A loop's command queue and the waker that interrupts its `poll`.
///
/// Senders wake the loop only when the queue goes from empty to non-empty: a burst
/// of commands costs one `eventfd` write, and the loop takes the whole batch under
/// one lock.
#[derive(Debug)]
pub(crate) struct Inbox {
    queue: Mutex<Vec<Command>>,
    waker: Waker,
    /// Payload bytes of queued `Send`s, bounded by `Options::max_inbox_bytes`.
    queued_bytes: AtomicUsize,
    /// The loop thread died (panicked outside any callback): nothing queued
    /// here will ever be applied.
    died: AtomicBool,
}

impl Inbox {
    pub(crate) fn new(waker: Waker) -> Inbox {
        Inbox {
            queue: Mutex::new(Vec::new()),
            waker,
            queued_bytes: AtomicUsize::new(0),
            died: AtomicBool::new(false),
        }
    }

    /// Marks the loop dead; what was queued is dropped.
    pub(crate) fn mark_died(&self) {
        self.died.store(true, Ordering::Release);
        self.queue.lock().unwrap_or_else(|p| p.into_inner()).clear();
        self.queued_bytes.store(0, Ordering::Relaxed);
    }

    /// Whether the loop thread died.
    pub(crate) fn died(&self) -> bool {
        self.died.load(Ordering::Acquire)
    }

    pub(crate) fn push(&self, cmd: Command) -> io::Result<()> {
        let was_empty = {
            let mut q = self.queue.lock().unwrap_or_else(|p| p.into_inner());
            let was_empty = q.is_empty();
            q.push(cmd);
            was_empty
        };
        if was_empty {
            self.waker.wake()?;
        }
        Ok(())
    }

    /// Queues `data` for `id` unless that would put more than `max` bytes in the
    /// queue.
    pub(crate) fn push_send(&self, id: ConnId, data: Bytes, max: usize) -> Result<(), SendError> {
        self.push_payload(Command::Send(id, data), max)
    }

    /// Queues a command carrying a payload (`Send`, `Broadcast`, `Publish`),
    /// counted against `max` like `push_send`.
    pub(crate) fn push_payload(&self, cmd: Command, max: usize) -> Result<(), SendError> {
        let len = payload_len(&cmd);
        let queued = self.queued_bytes.fetch_add(len, Ordering::Relaxed);
        if queued.saturating_add(len) > max && len > 0 {
            self.queued_bytes.fetch_sub(len, Ordering::Relaxed);
            return Err(SendError::InboxFull { queued, max });
        }
        self.push(cmd).map_err(|_| {
            self.queued_bytes.fetch_sub(len, Ordering::Relaxed);
            SendError::Stopped
        })
    }

    /// Moves every queued command into `out` (which keeps its capacity across calls).
    pub(crate) fn drain_into(&self, out: &mut Vec<Command>) {
        let mut q = self.queue.lock().unwrap_or_else(|p| p.into_inner());
        std::mem::swap(&mut *q, out);
        drop(q);
        let bytes: usize = out.iter().map(payload_len).sum();
        if bytes > 0 {
            self.queued_bytes.fetch_sub(bytes, Ordering::Relaxed);
        }
    }
}

/// Payload bytes a command holds, as counted against `max_inbox_bytes`.
fn payload_len(cmd: &Command) -> usize {
    match cmd {
        Command::Send(_, data) | Command::Broadcast(_, data) | Command::Publish(_, data) => {
            data.len()
        }
        _ => 0,
    }
}
