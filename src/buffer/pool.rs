//! A per-loop pool of connection buffers.

use super::Buf;

/// Lends [`Buf`]s to connections of one loop and takes them back when drained.
///
/// The pool is owned by one event loop and needs no locking. Buffers come back
/// empty. Only buffers of the default size are kept, at most `max_idle` of them:
/// one that grew during a burst is freed rather than lent again for a small need,
/// so the memory a pool holds is bounded by `max_idle × default_capacity` and a
/// large frame's buffer never lingers behind small ones.
///
/// # Examples
///
/// ```
/// use tether::buffer::BufferPool;
///
/// let mut pool = BufferPool::new(4096, 16);
/// let mut buf = pool.take();
/// buf.extend_from_slice(b"partial frame");
/// assert_eq!(pool.stats().lent, 1);
/// buf.clear();
/// pool.give(buf);
/// assert_eq!(pool.stats().lent, 0);
/// assert_eq!(pool.stats().idle, 1);
/// ```
#[derive(Debug)]
pub struct BufferPool {
    // Boxed because connections hold `Option<Box<Buf>>`: 8 bytes in every slab
    // slot instead of 24, and handing one over moves a pointer.
    #[allow(clippy::vec_box)]
    free: Vec<Box<Buf>>,
    default_capacity: usize,
    max_idle: usize,
    lent: usize,
    lent_bytes: usize,
    /// Kept as a running sum: stats are read every loop iteration.
    idle_bytes: usize,
}

/// A snapshot of what a [`BufferPool`] holds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PoolStats {
    /// Buffers currently owned by connections.
    pub lent: usize,
    /// Capacity in bytes of the buffers owned by connections.
    pub lent_bytes: usize,
    /// Buffers waiting in the pool.
    pub idle: usize,
    /// Capacity in bytes of the buffers waiting in the pool.
    pub idle_bytes: usize,
}

impl BufferPool {
    /// A pool handing out buffers of `default_capacity` bytes, keeping at most
    /// `max_idle` of them.
    pub fn new(default_capacity: usize, max_idle: usize) -> Self {
        BufferPool {
            free: Vec::new(),
            default_capacity: default_capacity.max(1),
            max_idle,
            lent: 0,
            lent_bytes: 0,
            idle_bytes: 0,
        }
    }

    /// Takes an empty buffer, reusing a pooled one when available.
    pub fn take(&mut self) -> Box<Buf> {
        let buf = match self.free.pop() {
            Some(buf) => {
                self.idle_bytes -= buf.capacity();
                buf
            }
            None => Box::new(Buf::with_capacity(self.default_capacity)),
        };
        self.lent += 1;
        self.lent_bytes += buf.capacity();
        buf
    }

    /// Appends `data` to a lent buffer whose content is capped at `limit` bytes
    /// (growth stops there), keeping the pool's byte count exact.
    pub fn append(&mut self, buf: &mut Buf, data: &[u8], limit: usize) {
        let before = buf.capacity();
        buf.reserve_within(data.len(), limit);
        buf.extend_from_slice(data);
        self.lent_bytes = self.lent_bytes - before + buf.capacity();
    }

    /// Returns a buffer to the pool. Its contents are discarded.
    pub fn give(&mut self, mut buf: Box<Buf>) {
        self.lent = self.lent.saturating_sub(1);
        self.lent_bytes = self.lent_bytes.saturating_sub(buf.capacity());
        if self.free.len() >= self.max_idle || buf.capacity() != self.default_capacity {
            return;
        }
        buf.clear();
        self.idle_bytes += buf.capacity();
        self.free.push(buf);
    }

    /// What the pool holds now.
    pub fn stats(&self) -> PoolStats {
        PoolStats {
            lent: self.lent,
            lent_bytes: self.lent_bytes,
            idle: self.free.len(),
            idle_bytes: self.idle_bytes,
        }
    }
}
