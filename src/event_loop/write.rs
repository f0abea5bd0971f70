//! Writing: flushing a callback's output, pending output, interest, watermarks.

use super::*;

impl<H: EventHandler> EventLoop<H> {
    /// Sends what the last callback wrote into the loop's scratch buffer. Returns
    /// false if the connection closed on a write error.
    pub(super) fn flush_scratch(&mut self, key: usize) -> bool {
        if self.core.scratch.is_empty() {
            return self.check_watermark(key);
        }
        let scratch = std::mem::take(&mut self.core.scratch);
        let alive = self.write_or_queue(key, &scratch);
        self.core.scratch = scratch;
        self.core.scratch.clear();
        if self.core.scratch.capacity() > 4 * self.opts.read_buffer_size {
            // One huge write must not pin that much memory for the loop's lifetime.
            self.core.scratch = Vec::with_capacity(self.opts.read_buffer_size);
        }
        alive
    }

    /// Writes `data` now if nothing is pending, keeping what the socket does not
    /// take; appends to the pending output otherwise. Returns false if the
    /// connection closed.
    pub(super) fn write_or_queue(&mut self, key: usize, data: &[u8]) -> bool {
        let Some(slot) = self.conns.get_mut(key) else {
            return false;
        };
        if let Some(out) = slot.outbound.as_mut() {
            if out.len() + data.len() > self.opts.max_outbound {
                self.close(key, CloseReason::WriteOverflow);
                return false;
            }
            self.core.pool.append(out, data, self.opts.max_outbound);
            return self.check_watermark(key);
        }
        let written = match write_nonblocking(&slot.stream, data) {
            Ok(n) => n,
            Err(e) => {
                self.close(key, io_reason(e));
                return false;
            }
        };
        bump(
            &self.core.engine.counters(self.core.loop_id).bytes_out,
            written as u64,
        );
        if written > 0 {
            slot.timing.last_write = crate::timeouts::stamp(self.core.now_ms);
        }
        if data.len() - written > self.opts.max_outbound {
            self.close(key, CloseReason::WriteOverflow);
            return false;
        }
        if written < data.len() {
            let mut buf = self.core.pool.take();
            self.core
                .pool
                .append(&mut buf, &data[written..], self.opts.max_outbound);
            slot.outbound = Some(buf);
            self.update_interest(key);
            return self.check_watermark(key);
        }
        true
    }

    /// Pauses reading above the high watermark.
    pub(super) fn check_watermark(&mut self, key: usize) -> bool {
        let Some(slot) = self.conns.get_mut(key) else {
            return false;
        };
        let pending = slot.outbound.as_ref().map_or(0, |b| b.len());
        if pending > self.opts.write_high_watermark && slot.flags & PAUSED == 0 {
            slot.flags |= PAUSED;
            self.update_interest(key);
        }
        true
    }

    pub(super) fn on_writable_event(&mut self, key: usize) {
        let Some(slot) = self.conns.get_mut(key) else {
            return;
        };
        let Some(out) = slot.outbound.as_mut() else {
            return;
        };
        let written = match write_nonblocking(&slot.stream, out.as_slice()) {
            Ok(n) => n,
            Err(e) => {
                self.close(key, io_reason(e));
                return;
            }
        };
        bump(
            &self.core.engine.counters(self.core.loop_id).bytes_out,
            written as u64,
        );
        if written > 0 {
            slot.timing.last_write = crate::timeouts::stamp(self.core.now_ms);
        }
        out.consume(written);
        let left = out.len();
        if left == 0 {
            if let Some(buf) = slot.outbound.take() {
                self.core.pool.give(buf);
            }
            if slot.flags & PEER_CLOSED != 0 {
                self.close(key, CloseReason::PeerClosed);
                return;
            }
            if slot.flags & CLOSE_AFTER_FLUSH != 0 {
                self.close(key, CloseReason::Local);
                return;
            }
        }
        let resume = slot.flags & PAUSED != 0 && left <= self.opts.write_low_watermark;
        if resume {
            slot.flags &= !PAUSED;
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
        let want_read = slot.flags & (PAUSED | PEER_CLOSED | CLOSE_AFTER_FLUSH) == 0;
        let want_write = slot.outbound.is_some();
        let have = slot.flags & (REG_READ | REG_WRITE);
        let want = (want_read as u8 * REG_READ) | (want_write as u8 * REG_WRITE);
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
            .reregister(&mut slot.stream, Token(key), interest)
        {
            Ok(()) => slot.flags = (slot.flags & !(REG_READ | REG_WRITE)) | want,
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
