//! The loop's timers: connection deadlines, user timers, the ticker, gauges.

use super::*;

impl<H: EventHandler> EventLoop<H> {
    /// Gauges that cannot be kept as running counts cheaply are published once per
    /// iteration: plain stores.
    pub(super) fn publish_gauges(&self) {
        let counters = self.core.engine.counters(self.core.loop_id);
        let pool = self.core.pool.stats();
        counters
            .buffer_bytes
            .store(pool.lent_bytes, Ordering::Relaxed);
        counters
            .pool_idle_bytes
            .store(pool.idle_bytes, Ordering::Relaxed);
        let timers =
            self.core.conn_wheel.len() + self.core.user_wheel.len() + self.dial_wheel.len();
        counters.timers.store(timers, Ordering::Relaxed);
        let c = &self.core.counts;
        counters.copies.store(c.copies, Ordering::Relaxed);
        counters
            .copied_bytes
            .store(c.copied_bytes, Ordering::Relaxed);
        counters.shared_segments.store(c.shared, Ordering::Relaxed);
        counters.writes.store(c.writes, Ordering::Relaxed);
        counters.topic_drops.store(c.topic_drops, Ordering::Relaxed);
        let topics = &self.core.topics;
        counters
            .topics
            .store(topics.topic_count(), Ordering::Relaxed);
        counters
            .subscriptions
            .store(topics.subscription_count(), Ordering::Relaxed);
    }

    /// Runs everything due on the wheels and the ticker.
    pub(super) fn expire_timers(&mut self) {
        let now = self.core.now_ms;
        if now >= self.core.next_check {
            self.expire_wheels(now);
        }
        if self
            .core
            .ticker
            .next()
            .is_some_and(|t| t <= self.core.now_ns())
        {
            self.tick();
        }
    }

    /// Pops everything due from the three wheels, then works out when to look
    /// again (their next expiries are lower bounds, so never too late).
    fn expire_wheels(&mut self, now: u64) {
        while let Some((_, (slot, generation))) = self.core.conn_wheel.poll_expired(now) {
            self.conn_timer_fired(slot as usize, generation);
        }
        while let Some((_, t)) = self.core.user_wheel.poll_expired(now) {
            let UserTimer {
                slot,
                generation,
                key,
            } = t;
            self.core.user_timers.remove(&(slot, key));
            if slot_generation(&self.conns, slot as usize) == Some(generation)
                && !self.layer_deadline(slot as usize, key)
            {
                self.callback(slot as usize, Callback::Timer(key));
            }
        }
        self.run_due_dials();
        self.core.next_check = [
            self.core.conn_wheel.next_expiry(),
            self.core.user_wheel.next_expiry(),
            self.dial_wheel.next_expiry(),
        ]
        .into_iter()
        .flatten()
        .min()
        .unwrap_or(u64::MAX);
    }

    /// Runs `on_tick` if the ticker is due; the next deadline is this one's plus
    /// the period it returns (deadlines it missed are skipped, not bunched).
    pub(super) fn tick(&mut self) {
        let Some(fired) = self.core.ticker.fire(self.core.now_ns()) else {
            return;
        };
        self.core.tick = Some(fired);
        let mut next = None;
        self.with_ctx(|h, ctx| next = h.on_tick(ctx));
        self.core.tick = None;
        self.core.ticker.schedule(&fired, next);
    }

    /// A connection's single wheel entry came due: report or enforce what has
    /// passed, then re-arm for what is left.
    pub(super) fn conn_timer_fired(&mut self, key: usize, generation: u32) {
        let Some(slot) = self.conns.get_mut(key) else {
            return;
        };
        if slot.io.generation != generation {
            return;
        }
        slot.io.timing.entry = None;
        if slot.io.flags & CONNECTING != 0 {
            let timed_out = io::Error::new(io::ErrorKind::TimedOut, "connect timed out");
            self.connecting_failed(key, timed_out);
            return;
        }
        let cfg = *slot.io.timing.cfg(&self.core.timeouts);
        match slot
            .io
            .timing
            .due(&cfg, slot.io.inbound.is_some(), self.core.now_ms)
        {
            Some(Due::Frame) => {
                self.close(key, CloseReason::FrameTimeout);
                return;
            }
            Some(Due::Idle(kind)) => self.callback(key, Callback::Idle(kind)),
            Some(Due::Heartbeat) => self.callback(key, Callback::Heartbeat),
            None => {}
        }
        if slot_generation(&self.conns, key) == Some(generation) {
            self.rearm(key);
        }
    }

    /// Puts the connection's wheel entry at its earliest deadline, moving it only
    /// when that is earlier than where it is (a later one is handled when the
    /// entry fires early), so traffic never costs a wheel operation.
    pub(super) fn rearm(&mut self, key: usize) {
        let Some(slot) = self.conns.get_mut(key) else {
            return;
        };
        let timing = &mut slot.io.timing;
        let cfg = timing.cfg(&self.core.timeouts);
        if cfg.is_off() && timing.entry.is_none() {
            return;
        }
        let wheel = &mut self.core.conn_wheel;
        let next = timing.next_deadline(cfg, slot.io.inbound.is_some(), self.core.now_ms);
        if let Some(at) = next {
            self.core.next_check = self.core.next_check.min(at);
        }
        match (timing.entry, next) {
            (None, Some(at)) => {
                timing.entry = Some(wheel.insert(at, (key as u32, slot.io.generation)));
            }
            (Some(id), Some(at)) => {
                if wheel.deadline(id).is_none_or(|cur| at < cur) && !wheel.reset(id, at) {
                    timing.entry = Some(wheel.insert(at, (key as u32, slot.io.generation)));
                }
            }
            (Some(id), None) => {
                wheel.cancel(id);
                timing.entry = None;
            }
            (None, None) => {}
        }
    }
}
