//! Per-connection deadlines: idle kinds, heartbeat, frame timeout (sans-IO).
//!
//! A connection has at most one entry in the loop's timer wheel, at the earliest
//! of its deadlines. Traffic only stamps `last_read`/`last_write`; when the entry
//! fires early because of traffic since, [`Timing::due`] finds nothing due and the
//! loop re-arms it for the remainder. A busy connection therefore costs no timer
//! operation per message.

use std::time::Duration;

use crate::handler::Idle;
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

/// A connection's timing state, inline in its slab slot (24 bytes).
///
/// Stamps are the low 32 bits of the loop clock in milliseconds, compared with
/// wrapping arithmetic: exact for intervals under ~49 days.
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
        let now = now as u32;
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
                let elapsed = (now as u32).wrapping_sub(stamp);
                let at = now + u64::from(timeout.saturating_sub(elapsed));
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
        let now = now as u32;
        if now.wrapping_sub(self.last_read) < now.wrapping_sub(self.last_write) {
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
        let now32 = now as u32;
        let passed = |stamp: u32, timeout: u32| timeout > 0 && now32.wrapping_sub(stamp) >= timeout;
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
        assert_eq!(t.next_deadline(&c, false, 0), Some(1000));
        // Traffic at 600: the entry at 1000 fires early, finds nothing due...
        t.last_read = 600;
        assert_eq!(t.due(&c, false, 1000), None);
        // ...and is re-armed for the remainder.
        assert_eq!(t.next_deadline(&c, false, 1000), Some(1600));
        assert_eq!(t.due(&c, false, 1600), Some(Due::Idle(Idle::Read)));
        // Continuing restarts the clock: next report after another full timeout.
        assert_eq!(t.next_deadline(&c, false, 1600), Some(2600));
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
        assert_eq!(t.next_deadline(&c, false, 350), Some(550));
    }

    #[test]
    fn stamps_wrap_around_the_32_bit_clock() {
        let c = cfg(1000, 0, 0, 0, 0);
        let start = u64::from(u32::MAX) - 100;
        let t = Timing::new(start);
        assert_eq!(t.next_deadline(&c, false, start + 500), Some(start + 1000));
    }

    #[test]
    fn ms_saturates_and_keeps_tiny_timeouts_on() {
        assert_eq!(ms(None), 0);
        assert_eq!(ms(Some(Duration::from_micros(10))), 1);
        assert_eq!(ms(Some(Duration::from_secs(u64::MAX / 4))), u32::MAX);
    }
}
