//! Commands sent to a loop from other threads, queued and woken in batches.

use std::io;
use std::sync::Mutex;

use bytes::Bytes;
use mio::Waker;
use mio::net::TcpStream;

use crate::id::ConnId;

/// One request for a loop, made by [`Engine`](crate::Engine) or by another loop.
#[derive(Debug)]
pub(crate) enum Command {
    Send(ConnId, Bytes),
    Close(ConnId),
    Wake(ConnId),
    /// A socket accepted by the shared listener, handed to this loop.
    Adopt(TcpStream),
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
}

impl Inbox {
    pub(crate) fn new(waker: Waker) -> Inbox {
        Inbox {
            queue: Mutex::new(Vec::new()),
            waker,
        }
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

    /// Moves every queued command into `out` (which keeps its capacity across calls).
    pub(crate) fn drain_into(&self, out: &mut Vec<Command>) {
        let mut q = self.queue.lock().unwrap_or_else(|p| p.into_inner());
        std::mem::swap(&mut *q, out);
    }
}
