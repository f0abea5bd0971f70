//! An elastic FIFO byte buffer that keeps its readable bytes contiguous.

use std::fmt;

/// A FIFO byte buffer whose readable bytes are always one contiguous slice.
///
/// Bytes are appended at the tail and consumed from the head. When the tail
/// reaches the end of the storage the readable bytes are moved back to the front
/// (or the storage grows), so [`Buf::as_slice`] never has to stitch two halves
/// together: a codec can decode straight from it without copying.
///
/// The storage is fully initialised, which lets [`Buf::spare_mut`] hand out a safe
/// `&mut [u8]` for `read(2)` to fill.
///
/// # Examples
///
/// ```
/// use tether::buffer::Buf;
///
/// let mut buf = Buf::with_capacity(8);
/// buf.extend_from_slice(b"hello ");
/// buf.extend_from_slice(b"world");
/// assert_eq!(buf.as_slice(), b"hello world");
/// buf.consume(6);
/// assert_eq!(buf.as_slice(), b"world");
/// ```
#[derive(Clone, Default)]
pub struct Buf {
    data: Box<[u8]>,
    head: usize,
    tail: usize,
}

/// Returned by [`Buf::try_consume`] when asked to drop more bytes than it holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConsumeError {
    /// Bytes the caller asked to consume.
    pub requested: usize,
    /// Bytes that were readable.
    pub available: usize,
}

impl fmt::Display for ConsumeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "cannot consume {} bytes, only {} available",
            self.requested, self.available
        )
    }
}

impl std::error::Error for ConsumeError {}

impl Buf {
    /// An empty buffer with room for `capacity` bytes before it must grow.
    pub fn with_capacity(capacity: usize) -> Buf {
        Buf {
            data: vec![0; capacity].into_boxed_slice(),
            head: 0,
            tail: 0,
        }
    }

    /// Number of readable bytes.
    #[inline]
    pub fn len(&self) -> usize {
        self.tail - self.head
    }

    /// True when there is nothing to read.
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.head == self.tail
    }

    /// Size of the storage in bytes.
    #[inline]
    pub fn capacity(&self) -> usize {
        self.data.len()
    }

    /// The readable bytes, oldest first.
    #[inline]
    pub fn as_slice(&self) -> &[u8] {
        &self.data[self.head..self.tail]
    }

    /// The readable bytes, mutably (for in-place transforms such as decryption).
    #[inline]
    pub fn as_mut_slice(&mut self) -> &mut [u8] {
        &mut self.data[self.head..self.tail]
    }

    /// Drops the first `n` readable bytes.
    ///
    /// # Panics
    ///
    /// Panics if `n > self.len()`; see [`Buf::try_consume`].
    #[inline]
    pub fn consume(&mut self, n: usize) {
        if let Err(e) = self.try_consume(n) {
            panic!("{e}");
        }
    }

    /// Drops the first `n` readable bytes, or fails without changing anything.
    #[inline]
    pub fn try_consume(&mut self, n: usize) -> Result<(), ConsumeError> {
        let available = self.len();
        if n > available {
            return Err(ConsumeError {
                requested: n,
                available,
            });
        }
        self.head += n;
        if self.head == self.tail {
            // Rewinding when empty keeps the common "all consumed" case free of moves.
            self.head = 0;
            self.tail = 0;
        }
        Ok(())
    }

    /// Drops every readable byte.
    #[inline]
    pub fn clear(&mut self) {
        self.head = 0;
        self.tail = 0;
    }

    /// Appends `src` after the readable bytes, growing the storage if needed.
    pub fn extend_from_slice(&mut self, src: &[u8]) {
        let spare = self.spare_mut(src.len());
        spare[..src.len()].copy_from_slice(src);
        self.tail += src.len();
    }

    /// Returns writable space after the readable bytes, at least `min` bytes long.
    ///
    /// Bytes written into it become readable after [`Buf::commit`]. The space may be
    /// longer than `min`; callers reading from a socket should use all of it.
    pub fn spare_mut(&mut self, min: usize) -> &mut [u8] {
        self.reserve(min);
        &mut self.data[self.tail..]
    }

    /// Makes `n` bytes written into [`Buf::spare_mut`] readable.
    ///
    /// # Panics
    ///
    /// Panics if `n` exceeds the spare space.
    #[inline]
    pub fn commit(&mut self, n: usize) {
        assert!(
            n <= self.data.len() - self.tail,
            "commit past the spare space"
        );
        self.tail += n;
    }

    /// Ensures at least `additional` bytes of spare space after the readable bytes.
    pub fn reserve(&mut self, additional: usize) {
        self.reserve_within(additional, usize::MAX);
    }

    /// Like [`Buf::reserve`], but geometric growth stops at `limit` bytes of
    /// capacity (more is allocated only when the bytes held need it), so a buffer
    /// capped at N bytes of content never holds much more than N of memory.
    pub fn reserve_within(&mut self, additional: usize, limit: usize) {
        if self.data.len() - self.tail >= additional {
            return;
        }
        let len = self.len();
        let needed = len
            .checked_add(additional)
            .expect("buffer size overflows usize");
        // Compact in place when that frees enough room and the move is cheap
        // relative to the space it recovers; otherwise grow geometrically.
        if needed <= self.data.len() && len <= self.data.len() / 2 {
            self.data.copy_within(self.head..self.tail, 0);
        } else {
            let doubled = self.data.len().saturating_mul(2).max(64).min(limit);
            let new_cap = needed.max(doubled);
            let mut data = vec![0; new_cap].into_boxed_slice();
            data[..len].copy_from_slice(self.as_slice());
            self.data = data;
        }
        self.head = 0;
        self.tail = len;
    }

    /// Replaces the storage with a smaller one when it is mostly unused.
    ///
    /// Used when a buffer goes back to a pool after a burst made it large.
    pub fn shrink_to(&mut self, capacity: usize) {
        if self.capacity() > capacity && self.len() <= capacity {
            let mut data = vec![0; capacity].into_boxed_slice();
            let len = self.len();
            data[..len].copy_from_slice(self.as_slice());
            self.data = data;
            self.head = 0;
            self.tail = len;
        }
    }
}

impl fmt::Debug for Buf {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Buf")
            .field("len", &self.len())
            .field("capacity", &self.capacity())
            .finish()
    }
}
