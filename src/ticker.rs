//! The loop's fixed-rate ticker (sans-IO): deadlines on a grid of periods.
//!
//! The next deadline is the previous deadline plus the period, in nanoseconds,
//! so a 60 Hz ticker (16.666… ms) holds 60 Hz on average however late each tick
//! runs. A tick that runs more than a period late does not cause a burst of
//! catch-up ticks: the deadlines it missed are skipped and reported
//! ([`TickInfo::skipped`]), and the grid stays where it was.

use std::time::{Duration, Instant};

/// How the current tick of [`EventHandler::on_tick`](crate::EventHandler::on_tick)
/// relates to its schedule; from [`LoopCtx::tick_info`](crate::LoopCtx::tick_info).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TickInfo {
    /// The deadline this tick stands for: the latest one that has passed.
    pub deadline: Instant,
    /// How long after `deadline` the tick runs (less than one period).
    pub late: Duration,
    /// Deadlines that passed without a tick because the loop was late, since the
    /// previous tick (0 when on time).
    pub skipped: u64,
    /// Ticks run so far, this one included.
    pub count: u64,
}

/// One tick as the schedule saw it, in nanoseconds of the loop clock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Fired {
    pub(crate) deadline: u64,
    pub(crate) late: u64,
    pub(crate) skipped: u64,
    pub(crate) count: u64,
}

/// The schedule: when the next tick is due and with which period.
#[derive(Debug, Default)]
pub(crate) struct Ticker {
    next: Option<u64>,
    period: u64,
    count: u64,
}

impl Ticker {
    /// Schedules the first tick at `at`.
    pub(crate) fn start(&mut self, at: u64) {
        self.next = Some(at);
    }

    /// The next deadline, if the ticker runs.
    pub(crate) fn next(&self) -> Option<u64> {
        self.next
    }

    /// If a tick is due at `now`, takes it: returns which deadline it stands for.
    pub(crate) fn fire(&mut self, now: u64) -> Option<Fired> {
        let due = self.next.filter(|&d| d <= now)?;
        self.next = None;
        let behind = now - due;
        let skipped = behind.checked_div(self.period).unwrap_or(0);
        let deadline = due + skipped * self.period;
        self.count += 1;
        Some(Fired {
            deadline,
            late: now - deadline,
            skipped,
            count: self.count,
        })
    }

    /// After the tick for `fired`: the next one is a `period` after its
    /// deadline; `None` stops the ticker.
    pub(crate) fn schedule(&mut self, fired: &Fired, period: Option<Duration>) {
        self.next = period.map(|p| {
            // At least a nanosecond: a zero period would tick in a busy loop.
            self.period = u64::try_from(p.as_nanos()).unwrap_or(u64::MAX).max(1);
            fired.deadline.saturating_add(self.period)
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HZ60: Duration = Duration::from_nanos(16_666_667);

    /// Runs a ticker on a virtual clock for `secs`, each wakeup `late(i)` ns
    /// after the deadline (as a poller rounding up to milliseconds would).
    fn run(secs: u64, period: Duration, late: impl Fn(u64) -> u64) -> Vec<Fired> {
        let mut t = Ticker::default();
        t.start(0);
        let mut out = Vec::new();
        let end = secs * 1_000_000_000;
        while let Some(next) = t.next() {
            let now = next + late(out.len() as u64);
            if now >= end {
                break;
            }
            let fired = t.fire(now).expect("due");
            t.schedule(&fired, Some(period));
            out.push(fired);
        }
        out
    }

    #[test]
    fn sixty_hertz_holds_on_average() {
        // Woken up to 1 ms late (poll timeouts round up to whole milliseconds).
        let ticks = run(10, HZ60, |i| (i * 379_123) % 1_000_000);
        assert!((599..=601).contains(&ticks.len()), "{} ticks", ticks.len());
        assert!(ticks.iter().all(|f| f.skipped == 0 && f.late < 1_000_000));
        // The grid does not drift: tick i stands for deadline i × period.
        for (i, f) in ticks.iter().enumerate() {
            assert_eq!(f.deadline, i as u64 * 16_666_667);
        }
    }

    #[test]
    fn a_late_tick_skips_and_reports_never_bursts() {
        let mut t = Ticker::default();
        t.start(0);
        let f = t.fire(0).expect("first");
        t.schedule(&f, Some(Duration::from_millis(10)));
        assert!(t.fire(9_999_999).is_none(), "never early");
        // The loop was stuck for 35 ms: deadlines 10, 20 and 30 ms passed.
        let f = t.fire(35_000_000).expect("late tick");
        assert_eq!(f.deadline, 30_000_000);
        assert_eq!(f.late, 5_000_000);
        assert_eq!(f.skipped, 2);
        assert_eq!(f.count, 2);
        t.schedule(&f, Some(Duration::from_millis(10)));
        // No catch-up: the next tick is on the grid, after now.
        assert_eq!(t.next(), Some(40_000_000));
        assert!(t.fire(35_000_001).is_none());
    }

    #[test]
    fn none_stops_and_zero_period_does_not_spin() {
        let mut t = Ticker::default();
        t.start(5);
        let f = t.fire(5).expect("due");
        t.schedule(&f, None);
        assert_eq!(t.next(), None);
        let mut t = Ticker::default();
        t.start(0);
        let f = t.fire(0).expect("due");
        t.schedule(&f, Some(Duration::ZERO));
        assert_eq!(t.next(), Some(1));
        let f = t.fire(1_000).expect("due");
        assert_eq!(f.skipped, 999);
    }
}
