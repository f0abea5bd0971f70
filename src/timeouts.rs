//! Per-connection deadlines: idle kinds, heartbeat, frame timeout (sans-IO).
//!
//! A connection has at most one entry in the loop's timer wheel, at the earliest
//! of its deadlines. Traffic only stamps `last_read`/`last_write`; when the entry
//! fires early because of traffic since, [`Timing::due`] finds nothing due and the
//! loop re-arms it for the remainder. A busy connection therefore costs no timer
//! operation per message.

use std::time::Duration;

use crate::reason::Idle;
use crate::timer::TimerId;

/// Timeouts in milliseconds; 0 is off. Engine-wide defaults come from
/// [`Options`](crate::Options); a connection may override them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct TimeoutCfg {
    pub(crate) read_idle: u32,
    pub(crate) write_idle: u32,
    pub(crate) all_idle: u32,
    pub(crate) heartbeat: u32,
    pub(crate) frame: u32,
}

impl TimeoutCfg {
    pub(crate) fn is_off(&self) -> bool {
        *self == TimeoutCfg::default()
    }
}

/// Milliseconds of a timeout option, saturating at `u32::MAX` (about 49 days).
pub(crate) fn ms(d: Option<Duration>) -> u32 {
    d.map_or(0, |d| {
        u32::try_from(d.as_millis()).unwrap_or(u32::MAX).max(1)
    })
}

/// What fired when a connection's timer entry came due.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Due {
    Frame,
    Idle(Idle),
    Heartbeat,
}

/// The stamp for an event seen at loop time `now_ms`.
///
/// The loop clock is whole milliseconds rounded down; an event stamped with that
/// could be up to a millisecond older than it really is, and its timeout would
/// fire up to a millisecond early. Stamps round up instead, and deadlines are
/// checked against the rounded-down clock, so a timeout never fires early (and
/// at most two milliseconds late).
pub(crate) fn stamp(now_ms: u64) -> u32 {
    now_ms.wrapping_add(1) as u32
}

/// The loop time a stamp stands for. Stamps keep the low 32 bits of the clock
/// and are read relative to `now`, so they are exact within ±24 days of it.
fn absolute(now: u64, stamp: u32) -> u64 {
    let ago = (now as u32).wrapping_sub(stamp) as i32;
    now.saturating_add_signed(-i64::from(ago))
}

/// A connection's timing state, inline in its slab slot (24 bytes).
#[derive(Debug, Default)]
pub(crate) struct Timing {
    pub(crate) last_read: u32,
    pub(crate) last_write: u32,
    /// When the oldest unconsumed inbound byte arrived (valid while some are held).
    pub(crate) partial_since: u32,
    /// The connection's entry in the loop's wheel, if armed.
    pub(crate) entry: Option<TimerId>,
    /// Per-connection overrides; boxed because few connections have them.
    pub(crate) overrides: Option<Box<TimeoutCfg>>,
    /// Some user timer may be armed: close must look them up.
    pub(crate) has_user_timers: bool,
}

impl Timing {
    pub(crate) fn new(now: u64) -> Timing {
        let now = stamp(now);
        Timing {
            last_read: now,
            last_write: now,
            partial_since: now,
            entry: None,
            overrides: None,
            has_user_timers: false,
        }
    }

    pub(crate) fn cfg<'a>(&'a self, defaults: &'a TimeoutCfg) -> &'a TimeoutCfg {
        self.overrides.as_deref().unwrap_or(defaults)
    }

    /// The earliest deadline, in loop milliseconds, or `None` when nothing is
    /// configured.
    pub(crate) fn next_deadline(
        &self,
        cfg: &TimeoutCfg,
        has_partial: bool,
        now: u64,
    ) -> Option<u64> {
        let mut best: Option<u64> = None;
        let mut consider = |stamp: u32, timeout: u32| {
            if timeout > 0 {
                let at = absolute(now, stamp) + u64::from(timeout);
                best = Some(best.map_or(at, |b| b.min(at)));
            }
        };
        consider(self.last_read, cfg.read_idle);
        consider(self.last_write, cfg.write_idle);
        consider(self.last_write, cfg.heartbeat);
        consider(self.last_active(now), cfg.all_idle);
        if has_partial {
            consider(self.partial_since, cfg.frame);
        }
        best
    }

    /// The most recent of the two activity stamps.
    fn last_active(&self, now: u64) -> u32 {
        if absolute(now, self.last_read) > absolute(now, self.last_write) {
            self.last_read
        } else {
            self.last_write
        }
    }

    /// The first deadline that has passed, if any, in the order a handler should
    /// hear about them: a stuck frame closes before idleness is considered.
    /// Marks what it returns as handled by restarting that kind's clock, so an
    /// `on_idle` that keeps the connection hears again after another full timeout.
    pub(crate) fn due(&mut self, cfg: &TimeoutCfg, has_partial: bool, now: u64) -> Option<Due> {
        let now32 = stamp(now);
        let passed =
            |at: u32, timeout: u32| timeout > 0 && now >= absolute(now, at) + u64::from(timeout);
        if has_partial && passed(self.partial_since, cfg.frame) {
            return Some(Due::Frame);
        }
        if passed(self.last_read, cfg.read_idle) {
            self.last_read = now32;
            return Some(Due::Idle(Idle::Read));
        }
        if passed(self.last_write, cfg.write_idle) {
            self.last_write = now32;
            return Some(Due::Idle(Idle::Write));
        }
        if passed(self.last_active(now), cfg.all_idle) {
            self.last_read = now32;
            self.last_write = now32;
            return Some(Due::Idle(Idle::All));
        }
        if passed(self.last_write, cfg.heartbeat) {
            self.last_write = now32;
            return Some(Due::Heartbeat);
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(
        read_idle: u32,
        write_idle: u32,
        all_idle: u32,
        heartbeat: u32,
        frame: u32,
    ) -> TimeoutCfg {
        TimeoutCfg {
            read_idle,
            write_idle,
            all_idle,
            heartbeat,
            frame,
        }
    }

    #[test]
    fn nothing_configured_means_no_deadline() {
        let t = Timing::new(5);
        assert_eq!(t.next_deadline(&TimeoutCfg::default(), true, 5), None);
    }

    #[test]
    fn traffic_moves_the_deadline_without_rearming() {
        let c = cfg(1000, 0, 0, 0, 0);
        let mut t = Timing::new(0);
        // Stamps round up (an event at 0.x ms counts as 1 ms), so the deadline is
        // never early.
        assert_eq!(t.next_deadline(&c, false, 0), Some(1001));
        // Traffic stamped 600: the entry at 1001 fires early, finds nothing due...
        t.last_read = 600;
        assert_eq!(t.due(&c, false, 1001), None);
        // ...and is re-armed for the remainder.
        assert_eq!(t.next_deadline(&c, false, 1001), Some(1600));
        assert_eq!(t.due(&c, false, 1599), None);
        assert_eq!(t.due(&c, false, 1600), Some(Due::Idle(Idle::Read)));
        // Continuing restarts the clock: next report after another full timeout.
        assert_eq!(t.next_deadline(&c, false, 1600), Some(2601));
    }

    #[test]
    fn frame_timeout_only_while_a_partial_frame_is_held() {
        let c = cfg(0, 0, 0, 0, 300);
        let mut t = Timing::new(0);
        assert_eq!(t.next_deadline(&c, false, 0), None);
        t.partial_since = 100;
        assert_eq!(t.next_deadline(&c, true, 150), Some(400));
        // Trickling bytes refresh last_read but not partial_since.
        t.last_read = 390;
        assert_eq!(t.due(&c, true, 400), Some(Due::Frame));
    }

    #[test]
    fn all_idle_uses_the_most_recent_activity() {
        let c = cfg(0, 0, 500, 0, 0);
        let mut t = Timing::new(0);
        t.last_write = 300;
        assert_eq!(t.next_deadline(&c, false, 400), Some(800));
        assert_eq!(t.due(&c, false, 799), None);
        assert_eq!(t.due(&c, false, 800), Some(Due::Idle(Idle::All)));
    }

    #[test]
    fn heartbeat_after_write_idleness_only() {
        let c = cfg(0, 0, 0, 200, 0);
        let mut t = Timing::new(0);
        t.last_write = 150;
        assert_eq!(t.due(&c, false, 200), None);
        assert_eq!(t.next_deadline(&c, false, 200), Some(350));
        assert_eq!(t.due(&c, false, 350), Some(Due::Heartbeat));
        assert_eq!(t.next_deadline(&c, false, 350), Some(551));
    }

    #[test]
    fn stamps_wrap_around_the_32_bit_clock() {
        let c = cfg(1000, 0, 0, 0, 0);
        let start = u64::from(u32::MAX) - 100;
        let t = Timing::new(start);
        assert_eq!(t.next_deadline(&c, false, start + 500), Some(start + 1001));
    }

    #[test]
    fn a_stamp_ahead_of_the_clock_is_not_read_as_ancient() {
        // Stamped at now + 1 (rounded up): zero elapsed, not 2^32 - 1 ms.
        let c = cfg(100, 0, 0, 0, 0);
        let t = Timing::new(7_000);
        assert_eq!(t.next_deadline(&c, false, 7_000), Some(7_101));
    }

    #[test]
    fn ms_saturates_and_keeps_tiny_timeouts_on() {
        assert_eq!(ms(None), 0);
        assert_eq!(ms(Some(Duration::from_micros(10))), 1);
        assert_eq!(ms(Some(Duration::from_secs(u64::MAX / 4))), u32::MAX);
    }
}
