//! Writing: the callback's fast path, the dirty pass, queued output, interest,
//! watermarks. See `core.rs` for the shape of the write path.

use super::core::{BLOCKED, DIRTY};
use super::*;

/// Rounds of the dirty pass per loop iteration: flushing can run callbacks
/// (`on_writable`, `on_close`) that dirty more connections; what is left after
/// this many rounds waits for the next iteration (polled without waiting).
const DIRTY_ROUNDS: usize = 4;

impl<H: EventHandler> EventLoop<H> {
    /// Sends what the last callback wrote into the loop's scratch buffer: one
    /// `write(2)`, and only what the socket does not take is copied into the
    /// connection's queue. Returns false if the connection closed.
    ///
    /// The scratch buffer is only used while the connection has nothing queued
    /// (`Conn::write`), so this write never overtakes queued output.
    pub(super) fn flush_scratch(&mut self, key: usize) -> bool {
        if self.core.scratch.is_empty() {
            return self.check_watermark(key);
        }
        let scratch = std::mem::take(&mut self.core.scratch);
        self.core.counts.copied_bytes += scratch.len() as u64;
        let alive = self.write_out(key, &scratch, true);
        self.core.scratch = scratch;
        self.core.scratch.clear();
        if self.core.scratch.capacity() > 4 * self.opts.read_buffer_size {
            // One huge write must not pin that much memory for the loop's lifetime.
            self.core.scratch = Vec::with_capacity(self.opts.read_buffer_size);
        }
        alive
    }

    /// Writes `data` now if nothing is queued, keeping what the socket does not
    /// take; appends it to the queue otherwise. `data` goes out as it is (records
    /// a layer already sealed, or plain bytes). False if the connection closed.
    pub(super) fn write_or_queue(&mut self, key: usize, data: &[u8]) -> bool {
        self.write_out(key, data, false)
    }

    /// [`write_or_queue`](Self::write_or_queue); `seal`: `data` is the handler's
    /// plaintext, to be sealed first on a TLS connection.
    fn write_out(&mut self, key: usize, data: &[u8], seal: bool) -> bool {
        let Some(slot) = self.conns.get_mut(key) else {
            return false;
        };
        let io = &mut slot.io;
        if seal && io.seals() {
            return self.write_sealed(key, data);
        }
        let core = &mut self.core;
        if let Some(q) = io.outbound.as_deref_mut() {
            if q.len() + data.len() > self.opts.max_outbound {
                self.close(key, CloseReason::WriteOverflow);
                return false;
            }
            q.push_copy(&mut core.pool, data);
            core.counts.copies += 1;
            if io.flags & BLOCKED == 0 {
                core.mark_dirty(key, io);
            }
            return self.check_watermark(key);
        }
        core.counts.writes += 1;
        let written = match write_nonblocking(&io.stream, data) {
            Ok(n) => n,
            Err(e) => {
                self.close(key, io_reason(e));
                return false;
            }
        };
        bump(
            &core.engine.counters(core.loop_id).bytes_out,
            written as u64,
        );
        if written > 0 {
            io.timing.last_write = crate::timeouts::stamp(core.now_ms);
        }
        if written == data.len() {
            return true;
        }
        if data.len() - written > self.opts.max_outbound {
            self.close(key, CloseReason::WriteOverflow);
            return false;
        }
        // The socket is full: keep the rest (one copy) and wait for WRITABLE.
        let mut q = core.spare_queues.pop().unwrap_or_default();
        q.push_copy(&mut core.pool, &data[written..]);
        core.counts.copies += 1;
        core.counts.copied_bytes += (data.len() - written) as u64;
        io.outbound = Some(q);
        io.flags |= BLOCKED;
        self.update_interest(key);
        self.check_watermark(key)
    }

    /// Seals a TLS connection's plaintext into records and writes those.
    #[cold]
    fn write_sealed(&mut self, key: usize, plain: &[u8]) -> bool {
        let Some(layer) = self
            .conns
            .get_mut(key)
            .and_then(|s| s.io.layer.as_deref_mut())
        else {
            return false;
        };
        let mut sealed = std::mem::take(&mut self.layer_bufs.sealed);
        sealed.clear();
        let alive = match layer.seal(plain, &mut sealed) {
            Ok(true) => self.write_out(key, &sealed, false),
            Ok(false) => self.write_out(key, plain, false),
            Err(reason) => {
                self.close(key, reason);
                false
            }
        };
        sealed.clear();
        self.layer_bufs.sealed = sealed;
        alive
    }

    /// Pauses reading above the high watermark.
    pub(super) fn check_watermark(&mut self, key: usize) -> bool {
        let Some(slot) = self.conns.get_mut(key) else {
            return false;
        };
        let pending = slot.io.queued();
        if pending > self.opts.write_high_watermark && slot.io.flags & PAUSED == 0 {
            slot.io.flags |= PAUSED;
            self.update_interest(key);
        }
        true
    }

    /// The end of the pass: every connection written to since the last one gets
    /// one `writev` of everything queued for it (unless its socket is full: then
    /// its WRITABLE event flushes it), and closes asked for from outside the
    /// connection's callback are applied.
    pub(super) fn flush_dirty(&mut self) {
        for _ in 0..DIRTY_ROUNDS {
            if self.core.dirty.is_empty() {
                return;
            }
            let mut dirty = std::mem::take(&mut self.spare_dirty);
            std::mem::swap(&mut dirty, &mut self.core.dirty);
            for &(key, generation) in &dirty {
                let Some(slot) = self.conns.get_mut(key) else {
                    continue;
                };
                let io = &mut slot.io;
                if io.generation != generation {
                    continue;
                }
                io.flags &= !DIRTY;
                let reason = match std::mem::take(&mut io.close) {
                    PendingClose::None => None,
                    PendingClose::Local => Some(CloseReason::Local),
                    PendingClose::Overflow => Some(CloseReason::WriteOverflow),
                    PendingClose::SlowSubscriber => Some(CloseReason::SlowSubscriber),
                };
                if let Some(reason) = reason {
                    self.close(key, reason);
                } else if io.flags & BLOCKED != 0 {
                    self.check_watermark(key);
                } else {
                    self.flush_queue(key);
                }
            }
            dirty.clear();
            self.spare_dirty = dirty;
        }
    }

    pub(super) fn on_writable_event(&mut self, key: usize) {
        if self.conns.get(key).is_some_and(|s| s.io.outbound.is_some()) {
            self.flush_queue(key);
        }
    }

    /// Writes the connection's queue with `writev` as far as the socket takes it;
    /// then closes it if it was waiting for that, or updates backpressure.
    pub(super) fn flush_queue(&mut self, key: usize) {
        let Some(slot) = self.conns.get_mut(key) else {
            return;
        };
        let io = &mut slot.io;
        let Some(q) = io.outbound.as_mut() else {
            return;
        };
        let core = &mut self.core;
        let written = match q.write_to(&io.stream, &mut core.pool, &mut core.counts.writes) {
            Ok(n) => n,
            Err(e) => {
                self.close(key, io_reason(e));
                return;
            }
        };
        bump(
            &core.engine.counters(core.loop_id).bytes_out,
            written as u64,
        );
        if written > 0 {
            io.timing.last_write = crate::timeouts::stamp(core.now_ms);
        }
        let left = q.len();
        if left == 0 {
            if let Some(q) = io.outbound.take() {
                core.recycle(q);
            }
            io.flags &= !BLOCKED;
            if io.flags & PEER_CLOSED != 0 {
                self.close(key, CloseReason::PeerClosed);
                return;
            }
            if io.flags & CLOSE_AFTER_FLUSH != 0 {
                self.close(key, CloseReason::Local);
                return;
            }
        } else {
            io.flags |= BLOCKED;
        }
        if left > self.opts.write_high_watermark {
            io.flags |= PAUSED;
        }
        let resume = io.flags & PAUSED != 0 && left <= self.opts.write_low_watermark;
        if resume {
            io.flags &= !PAUSED;
        }
        self.update_interest(key);
        if resume {
            let generation = slot_generation(&self.conns, key);
            self.callback(key, Callback::Writable);
            // Bytes that arrived while paused raised no new edge; read them now.
            if let Some(generation) = generation {
                self.ready_reads.push((key, generation));
            }
        }
    }

    /// Registers exactly the interest the connection's state calls for.
    pub(super) fn update_interest(&mut self, key: usize) {
        let Some(slot) = self.conns.get_mut(key) else {
            return;
        };
        let io = &mut slot.io;
        let want_read = io.flags & (PAUSED | PEER_CLOSED | CLOSE_AFTER_FLUSH) == 0;
        let want_write = io.flags & BLOCKED != 0;
        let have = io.flags & (REG_READ | REG_WRITE);
        let want = (want_read as u16 * REG_READ) | (want_write as u16 * REG_WRITE);
        if want == have || want == 0 {
            // mio needs some interest; a connection that neither reads nor writes is
            // about to close, so its registration can stay as it is.
            return;
        }
        let interest = match (want_read, want_write) {
            (true, true) => Interest::READABLE | Interest::WRITABLE,
            (true, false) => Interest::READABLE,
            _ => Interest::WRITABLE,
        };
        match self
            .poll
            .registry()
            .reregister(&mut io.stream, Token(key), interest)
        {
            Ok(()) => io.flags = (io.flags & !(REG_READ | REG_WRITE)) | want,
            Err(e) => self.close(key, CloseReason::Io(e)),
        }
    }
}

/// One `write(2)`, retried on EINTR; `WouldBlock` counts as zero bytes written.
pub(super) fn write_nonblocking(mut stream: &Stream, data: &[u8]) -> io::Result<usize> {
    if data.is_empty() {
        return Ok(0);
    }
    loop {
        match stream.write(data) {
            Ok(n) => return Ok(n),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(0),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
    }
}
