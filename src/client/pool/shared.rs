//! State shared by the pool's handles and its loops, and the send path.

use std::cell::Cell;
use std::fmt;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard, OnceLock};

use super::{Pick, PoolError};
use crate::codec::{Codec, CodecError, HeaderBuf, MAX_HEADER_LEN};
use crate::engine::Engine;
use crate::id::ConnId;

thread_local! {
    /// `(pool id, connection index)` while that connection's response callback
    /// runs on this thread. A send to that same connection then skips the wake:
    /// the handler writes it itself when the callback returns, in the same
    /// `write(2)` as everything else the batch of responses produced.
    static CURRENT: Cell<(usize, usize)> = const { Cell::new((0, usize::MAX)) };
    /// Set by a send that relied on [`CURRENT`].
    static DEFERRED: Cell<bool> = const { Cell::new(false) };
}

/// Marks the calling thread as running connection `link`'s response callback
/// until dropped (also on unwind).
pub(super) struct CallbackScope;

impl CallbackScope {
    pub(super) fn enter(pool: usize, link: usize) -> CallbackScope {
        CURRENT.with(|c| c.set((pool, link)));
        CallbackScope
    }
}

impl Drop for CallbackScope {
    fn drop(&mut self) {
        CURRENT.with(|c| c.set((0, usize::MAX)));
    }
}

/// True (once) if a send inside a callback left frames for the handler to write.
pub(super) fn take_deferred() -> bool {
    DEFERRED.with(|d| d.replace(false))
}

/// Adds to a counter that only one loop writes: a plain load and store, no
/// locked instruction on the response path.
#[inline]
pub(super) fn bump(counter: &AtomicU64, n: u64) {
    counter.store(counter.load(Ordering::Relaxed) + n, Ordering::Relaxed);
}

pub(super) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// The codec as the send path needs it, without making every handle generic.
pub(super) trait Encode: Send + Sync + fmt::Debug {
    fn header(&self, payload: &[u8], dst: &mut HeaderBuf) -> Result<usize, CodecError>;
    fn trailer(&self) -> &[u8];
}

impl<C: Codec + Sync> Encode for C {
    fn header(&self, payload: &[u8], dst: &mut HeaderBuf) -> Result<usize, CodecError> {
        self.encode_header(payload, dst)
    }
    fn trailer(&self) -> &[u8] {
        self.encode_trailer()
    }
}

/// One frame as pieces to concatenate. Frames that are already encoded
/// (rerouted or queued ones) are all `header`.
#[derive(Debug, Clone, Copy)]
pub(super) struct Parts<'a> {
    pub(super) header: &'a [u8],
    pub(super) payload: &'a [u8],
    pub(super) trailer: &'a [u8],
}

impl<'a> Parts<'a> {
    pub(super) fn encoded(frame: &'a [u8]) -> Self {
        Parts {
            header: frame,
            payload: &[],
            trailer: &[],
        }
    }
}

/// Encoded frames back to back in one buffer, with where each ends: appending
/// a frame copies it once and allocates only when the buffer grows.
#[derive(Debug, Default)]
pub(super) struct Backlog {
    pub(super) bytes: Vec<u8>,
    pub(super) ends: Vec<usize>,
}

impl Backlog {
    pub(super) fn frames(&self) -> usize {
        self.ends.len()
    }

    pub(super) fn push(&mut self, f: &Parts<'_>) {
        self.bytes.extend_from_slice(f.header);
        self.bytes.extend_from_slice(f.payload);
        self.bytes.extend_from_slice(f.trailer);
        self.ends.push(self.bytes.len());
    }

    pub(super) fn iter(&self) -> impl Iterator<Item = &[u8]> {
        let starts = std::iter::once(0).chain(self.ends.iter().copied());
        starts
            .zip(self.ends.iter().copied())
            .map(|(s, e)| &self.bytes[s..e])
    }

    /// Moves all of `other`'s frames to the end of this backlog.
    pub(super) fn append(&mut self, other: &mut Backlog) {
        if self.ends.is_empty() {
            std::mem::swap(self, other);
            return;
        }
        let base = self.bytes.len();
        self.bytes.extend_from_slice(&other.bytes);
        self.ends.extend(other.ends.iter().map(|e| e + base));
        other.bytes.clear();
        other.ends.clear();
    }

    /// How many whole frames from the front fit in `room` bytes.
    pub(super) fn frames_within(&self, room: usize) -> usize {
        self.ends.partition_point(|&e| e <= room)
    }

    /// Drops the first `k` frames.
    pub(super) fn remove_front(&mut self, k: usize) {
        if k == 0 {
            return;
        }
        let cut = self.ends[k - 1];
        self.bytes.drain(..cut);
        self.ends.drain(..k);
        for e in &mut self.ends {
            *e -= cut;
        }
    }

    pub(super) fn clear(&mut self) {
        self.bytes.clear();
        self.ends.clear();
    }
}

/// What a link's lock protects: the connection it is on, if any, and the
/// frames accepted for it that its loop has not written yet.
#[derive(Debug, Default)]
pub(super) struct LinkSlot {
    pub(super) conn: Option<ConnId>,
    pub(super) backlog: Backlog,
    /// A wake is on its way to the loop (or the handler will write the backlog
    /// itself); further sends need not wake it again.
    pub(super) wake_pending: bool,
}

/// One of the pool's long connections, stable across reconnects.
///
/// Aligned so that the counters of links served by different loops do not share
/// a cache line.
#[derive(Debug)]
#[repr(align(128))]
pub(super) struct Link {
    pub(super) endpoint: usize,
    /// Mirrors `slot.conn.is_some()` so the picker can skip dead links without
    /// locking them.
    pub(super) up: AtomicBool,
    /// Frames accepted for this connection and not answered yet: backlog plus
    /// written (pings included). Raised under the slot lock (so a close can
    /// take it whole), lowered by the loop on each response.
    pub(super) load: AtomicUsize,
    pub(super) slot: Mutex<LinkSlot>,
    // Written only by the loop the link is pinned to.
    pub(super) responses: AtomicU64,
    pub(super) opened: AtomicU64,
    pub(super) closed: AtomicU64,
    pub(super) idle_timeouts: AtomicU64,
    pub(super) failed_dials: AtomicU64,
    pub(super) gave_up: AtomicBool,
}

impl Link {
    pub(super) fn new(endpoint: usize) -> Link {
        Link {
            endpoint,
            up: AtomicBool::new(false),
            load: AtomicUsize::new(0),
            slot: Mutex::new(LinkSlot::default()),
            responses: AtomicU64::new(0),
            opened: AtomicU64::new(0),
            closed: AtomicU64::new(0),
            idle_timeouts: AtomicU64::new(0),
            failed_dials: AtomicU64::new(0),
            gave_up: AtomicBool::new(false),
        }
    }

    /// One frame on this link was answered. Saturating: a peer that sends more
    /// frames than it was asked for must not wrap the count.
    pub(super) fn answered(&self) {
        let _ = self
            .load
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1));
    }
}

/// The outcome of offering a frame to the live connections.
enum Placed {
    Done(Result<(), PoolError>),
    NoLink,
    /// Links are up but each holds `max_backlog` unsent frames.
    Saturated,
}

enum Offer {
    Done(Result<(), PoolError>),
    Down,
    Full,
}

#[derive(Debug)]
pub(super) struct Shared {
    pub(super) links: Box<[Link]>,
    pub(super) endpoints: Box<[SocketAddr]>,
    pub(super) pick: Pick,
    pub(super) encoder: Box<dyn Encode>,
    /// Frames sent while no connection was up.
    pub(super) queue: Mutex<Backlog>,
    pub(super) queue_capacity: usize,
    pub(super) max_backlog: usize,
    /// The engine's high watermark: the handler writes backlog only up to it.
    pub(super) high_watermark: usize,
    /// The heartbeat ping, encoded.
    pub(super) ping: Box<[u8]>,
    pub(super) rr: AtomicUsize,
    pub(super) engine: OnceLock<Engine>,
    pub(super) stopped: AtomicBool,
    /// Links whose reconnect policy gave up.
    pub(super) gave_up: AtomicUsize,
    pub(super) lost: AtomicU64,
    pub(super) pongs: AtomicU64,
    pub(super) dropped: AtomicU64,
}

impl Shared {
    /// Identifies this pool among others on the same thread.
    pub(super) fn id(&self) -> usize {
        self as *const Shared as usize
    }

    pub(super) fn is_stopped(&self) -> bool {
        self.stopped.load(Ordering::Acquire)
    }

    pub(super) fn send(&self, payload: &[u8]) -> Result<(), PoolError> {
        if self.is_stopped() {
            return Err(PoolError::Stopped);
        }
        let mut header = [0u8; MAX_HEADER_LEN];
        let n = self.encoder.header(payload, &mut header)?;
        let parts = Parts {
            header: &header[..n],
            payload,
            trailer: self.encoder.trailer(),
        };
        match self.place(&parts, true) {
            Placed::Done(r) => return r,
            Placed::NoLink | Placed::Saturated => {}
        }
        // Slow path. A connection that opens takes the queue under this lock,
        // so looking again while holding it leaves no window in which a frame
        // could be queued after the queue was taken.
        let mut queue = lock(&self.queue);
        match self.place(&parts, true) {
            Placed::Done(r) => r,
            Placed::Saturated => Err(PoolError::Saturated {
                per_connection: self.max_backlog,
            }),
            Placed::NoLink => {
                if self.is_stopped() {
                    Err(PoolError::Stopped)
                } else if self.gave_up.load(Ordering::Acquire) == self.links.len() {
                    Err(PoolError::GaveUp)
                } else if queue.frames() >= self.queue_capacity {
                    Err(PoolError::QueueFull {
                        capacity: self.queue_capacity,
                    })
                } else {
                    queue.push(&parts);
                    Ok(())
                }
            }
        }
    }

    /// Hands frames of a closed connection to the others, or to the queue. They
    /// were accepted already, so neither the backlog limit nor the queue
    /// capacity turns them away.
    pub(super) fn reroute(&self, frames: &Backlog) {
        for frame in frames.iter() {
            let parts = Parts::encoded(frame);
            if let Placed::Done(_) = self.place(&parts, false) {
                continue;
            }
            let mut queue = lock(&self.queue);
            if let Placed::NoLink | Placed::Saturated = self.place(&parts, false) {
                queue.push(&parts);
            }
        }
    }

    fn place(&self, parts: &Parts<'_>, respect_limit: bool) -> Placed {
        let n = self.links.len();
        let mut saturated = false;
        if self.pick == Pick::LeastInFlight {
            if let Some(i) = self.least_loaded() {
                match self.offer(i, parts, respect_limit) {
                    Offer::Done(r) => return Placed::Done(r),
                    Offer::Full => saturated = true,
                    Offer::Down => {}
                }
            }
        }
        let start = self.rr.fetch_add(1, Ordering::Relaxed);
        for k in 0..n {
            let i = start.wrapping_add(k) % n;
            match self.offer(i, parts, respect_limit) {
                Offer::Done(r) => return Placed::Done(r),
                Offer::Full => saturated = true,
                Offer::Down => {}
            }
        }
        if saturated {
            Placed::Saturated
        } else {
            Placed::NoLink
        }
    }

    /// The live link with the fewest unanswered frames.
    ///
    /// Ties go to the link whose response callback is sending, if any: its
    /// frame is then written with that batch's other output, where another
    /// link would need a wake and a `write(2)` of its own. Other ties go to
    /// the lowest index, which the count raised by each send moves along.
    fn least_loaded(&self) -> Option<usize> {
        let mut best: Option<(usize, usize)> = None;
        let (pool, current) = CURRENT.with(|c| c.get());
        if pool == self.id() {
            if let Some(link) = self.links.get(current) {
                if link.up.load(Ordering::Relaxed) {
                    best = Some((current, link.load.load(Ordering::Relaxed)));
                }
            }
        }
        for (i, link) in self.links.iter().enumerate() {
            if best.is_some_and(|(_, b)| b == 0) {
                break;
            }
            if !link.up.load(Ordering::Relaxed) {
                continue;
            }
            let load = link.load.load(Ordering::Relaxed);
            if best.is_none_or(|(_, b)| load < b) {
                best = Some((i, load));
            }
        }
        best.map(|(i, _)| i)
    }

    fn offer(&self, i: usize, parts: &Parts<'_>, respect_limit: bool) -> Offer {
        let link = &self.links[i];
        if !link.up.load(Ordering::Relaxed) {
            return Offer::Down;
        }
        let mut slot = lock(&link.slot);
        let Some(id) = slot.conn else {
            return Offer::Down;
        };
        if respect_limit && slot.backlog.frames() >= self.max_backlog {
            return Offer::Full;
        }
        slot.backlog.push(parts);
        link.load.fetch_add(1, Ordering::Relaxed);
        let wake = !slot.wake_pending;
        slot.wake_pending = true;
        drop(slot);
        if !wake {
            return Offer::Done(Ok(()));
        }
        if CURRENT.with(|c| c.get()) == (self.id(), i) {
            DEFERRED.with(|d| d.set(true));
            return Offer::Done(Ok(()));
        }
        // A wake for a connection that closes meanwhile is dropped by its loop;
        // the close hands the backlog on, so no frame is lost with it.
        let woken = match self.engine.get() {
            Some(engine) => engine.wake(id).map_err(|_| PoolError::Stopped),
            None => Err(PoolError::Stopped),
        };
        Offer::Done(woken)
    }

    /// Forgets the queue, counting its frames as dropped.
    pub(super) fn drop_queue(&self) {
        let mut queue = lock(&self.queue);
        self.dropped
            .fetch_add(queue.frames() as u64, Ordering::Relaxed);
        queue.clear();
    }
}
