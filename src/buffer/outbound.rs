//! A connection's outbound queue: copied writes and shared `Bytes`, sent with
//! `writev`.

use std::collections::VecDeque;
use std::io::{self, IoSlice, Write};

use bytes::{Buf as _, Bytes};

use super::{Buf, BufferPool};

/// Most segments handed to one `writev` (Linux allows 1024; 64 covers a full
/// socket buffer of small messages without a large array on the stack).
const MAX_IOV: usize = 64;

/// One run of queued bytes.
#[derive(Debug)]
enum Segment {
    /// Small writes copied into a pooled buffer, appended while it has room.
    Copied(Box<Buf>),
    /// A refcounted handle given to `send`, `broadcast` or `publish`: every
    /// recipient holds a clone of the same allocation.
    Shared(Bytes),
}

impl Segment {
    fn bytes(&self) -> &[u8] {
        match self {
            Segment::Copied(b) => b.as_slice(),
            Segment::Shared(b) => b,
        }
    }
}

/// Pending output of one connection, oldest first.
///
/// A partial write advances inside the first segment (a `Bytes` handle moves
/// its start, a copied buffer consumes its head): nothing is copied again.
#[derive(Debug, Default)]
pub(crate) struct Outbound {
    segments: VecDeque<Segment>,
    len: usize,
}

impl Outbound {
    /// Bytes queued.
    #[inline]
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    #[inline]
    pub(crate) fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Copies `data` to the end of the queue, into the last copied segment when
    /// it has room, else into a new buffer from `pool`.
    pub(crate) fn push_copy(&mut self, pool: &mut BufferPool, data: &[u8]) {
        if data.is_empty() {
            return;
        }
        self.len += data.len();
        if let Some(Segment::Copied(buf)) = self.segments.back_mut() {
            if buf.capacity() - buf.len() >= data.len() {
                pool.append(buf, data, buf.capacity());
                return;
            }
        }
        let mut buf = pool.take();
        let limit = buf.capacity().max(data.len());
        pool.append(&mut buf, data, limit);
        self.segments.push_back(Segment::Copied(buf));
    }

    /// Queues `data` without copying it.
    pub(crate) fn push_shared(&mut self, data: Bytes) {
        if data.is_empty() {
            return;
        }
        self.len += data.len();
        self.segments.push_back(Segment::Shared(data));
    }

    /// Writes as much as `w` takes with vectored writes, stopping at the first
    /// short one. Returns the bytes written; `WouldBlock` counts as none.
    /// `calls` counts the syscalls made.
    pub(crate) fn write_to<W: Write>(
        &mut self,
        mut w: W,
        pool: &mut BufferPool,
        calls: &mut u64,
    ) -> io::Result<usize> {
        let mut total = 0;
        while !self.segments.is_empty() {
            let (n, offered) = {
                let mut iov = [IoSlice::new(&[]); MAX_IOV];
                let mut count = 0;
                let mut offered = 0;
                for seg in self.segments.iter().take(MAX_IOV) {
                    let bytes = seg.bytes();
                    iov[count] = IoSlice::new(bytes);
                    offered += bytes.len();
                    count += 1;
                }
                let n = loop {
                    *calls += 1;
                    let r = if count == 1 {
                        w.write(&iov[0])
                    } else {
                        w.write_vectored(&iov[..count])
                    };
                    match r {
                        Ok(n) => break n,
                        Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => break 0,
                        Err(e) => return Err(e),
                    }
                };
                (n, offered)
            };
            self.advance(n, pool);
            total += n;
            if n < offered || n == 0 {
                break;
            }
        }
        Ok(total)
    }

    /// Drops the first `n` queued bytes, returning emptied buffers to `pool`.
    pub(crate) fn advance(&mut self, mut n: usize, pool: &mut BufferPool) {
        self.len -= n.min(self.len);
        while n > 0 {
            let Some(front) = self.segments.front_mut() else {
                return;
            };
            let here = front.bytes().len();
            if n < here {
                match front {
                    Segment::Copied(b) => b.consume(n),
                    Segment::Shared(b) => b.advance(n),
                }
                return;
            }
            n -= here;
            if let Some(Segment::Copied(buf)) = self.segments.pop_front() {
                pool.give(buf);
            }
        }
    }

    /// Drops everything queued, returning buffers to `pool`.
    pub(crate) fn clear(&mut self, pool: &mut BufferPool) {
        for seg in self.segments.drain(..) {
            if let Segment::Copied(buf) = seg {
                pool.give(buf);
            }
        }
        self.len = 0;
    }

    /// Number of segments (for tests and the segment budget).
    #[cfg(test)]
    pub(crate) fn segments(&self) -> usize {
        self.segments.len()
    }

    /// Everything queued, concatenated (tests).
    #[cfg(test)]
    pub(crate) fn to_vec(&self) -> Vec<u8> {
        self.segments
            .iter()
            .flat_map(|s| s.bytes().to_vec())
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// A socket that takes at most `room` bytes per call, then `WouldBlock`.
    struct Stingy {
        got: Vec<u8>,
        room: usize,
        calls: usize,
    }

    impl Write for &mut Stingy {
        fn write(&mut self, data: &[u8]) -> io::Result<usize> {
            self.write_vectored(&[IoSlice::new(data)])
        }
        fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
            self.calls += 1;
            if self.room == 0 {
                return Err(io::ErrorKind::WouldBlock.into());
            }
            let mut n = 0;
            for b in bufs {
                let take = b.len().min(self.room - n);
                self.got.extend_from_slice(&b[..take]);
                n += take;
                if n == self.room {
                    break;
                }
            }
            Ok(n)
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn small_copies_share_a_buffer_and_bytes_stay_shared() {
        let mut pool = BufferPool::new(64, 4);
        let mut q = Outbound::default();
        q.push_copy(&mut pool, b"ab");
        q.push_copy(&mut pool, b"cd");
        let shared = Bytes::from_static(b"0123456789");
        q.push_shared(shared.clone());
        q.push_copy(&mut pool, b"ef");
        assert_eq!(q.segments(), 3);
        assert_eq!(q.len(), 16);
        assert_eq!(q.to_vec(), b"abcd0123456789ef");
        let mut sock = Stingy {
            got: Vec::new(),
            room: 7,
            calls: 0,
        };
        assert_eq!(q.write_to(&mut sock, &mut pool, &mut 0).expect("write"), 7);
        assert_eq!(q.len(), 9);
        assert_eq!(q.to_vec(), b"3456789ef");
        sock.room = 100;
        assert_eq!(q.write_to(&mut sock, &mut pool, &mut 0).expect("write"), 9);
        assert!(q.is_empty());
        assert_eq!(sock.got, b"abcd0123456789ef");
        assert_eq!(pool.stats().lent, 0, "buffers went back");
    }

    #[test]
    fn more_segments_than_one_writev_takes() {
        let mut pool = BufferPool::new(64, 4);
        let mut q = Outbound::default();
        let one = Bytes::from_static(b"x");
        for _ in 0..(MAX_IOV * 2 + 5) {
            q.push_shared(one.clone());
        }
        let mut sock = Stingy {
            got: Vec::new(),
            room: usize::MAX,
            calls: 0,
        };
        sock.room = 1 << 20;
        assert_eq!(
            q.write_to(&mut sock, &mut pool, &mut 0).expect("write"),
            MAX_IOV * 2 + 5
        );
        assert_eq!(sock.calls, 3);
    }

    #[test]
    fn would_block_writes_nothing() {
        let mut pool = BufferPool::new(64, 4);
        let mut q = Outbound::default();
        q.push_copy(&mut pool, b"hello");
        let mut sock = Stingy {
            got: Vec::new(),
            room: 0,
            calls: 0,
        };
        assert_eq!(q.write_to(&mut sock, &mut pool, &mut 0).expect("write"), 0);
        assert_eq!(q.len(), 5);
        q.clear(&mut pool);
        assert_eq!(pool.stats().lent, 0);
    }

    proptest! {
        /// Whatever the mix of writes and however the socket splits them, the
        /// bytes come out in order and the length stays exact.
        #[test]
        fn order_and_length_hold(
            writes in proptest::collection::vec((any::<bool>(), proptest::collection::vec(any::<u8>(), 0..200)), 0..40),
            rooms in proptest::collection::vec(0usize..300, 1..40),
        ) {
            let mut pool = BufferPool::new(128, 8);
            let mut q = Outbound::default();
            let mut want = Vec::new();
            for (shared, data) in &writes {
                want.extend_from_slice(data);
                if *shared {
                    q.push_shared(Bytes::from(data.clone()));
                } else {
                    q.push_copy(&mut pool, data);
                }
            }
            prop_assert_eq!(q.len(), want.len());
            let mut sock = Stingy { got: Vec::new(), room: 0, calls: 0 };
            for room in rooms.iter().cycle().take(200) {
                sock.room = *room;
                q.write_to(&mut sock, &mut pool, &mut 0).expect("write");
                prop_assert_eq!(q.len() + sock.got.len(), want.len());
                if q.is_empty() {
                    break;
                }
            }
            sock.room = usize::MAX / 2;
            q.write_to(&mut sock, &mut pool, &mut 0).expect("write");
            prop_assert_eq!(&sock.got, &want);
            prop_assert_eq!(pool.stats().lent, 0);
        }
    }
}
