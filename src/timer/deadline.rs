//! Saturating time arithmetic: a duration too large for the clock means
//! "never", never an overflow, a wrap to "now" or a panic.

use std::time::{Duration, Instant};

/// The farthest instant [`instant_after`] returns: about a century ahead,
/// which every platform's `Instant` can hold.
const FAR: Duration = Duration::from_secs(100 * 365 * 24 * 3600);

/// Whole milliseconds in `after`, rounded up so a timer never fires early;
/// `u64::MAX` for anything longer.
pub(crate) fn ms_ceil(after: Duration) -> u64 {
    let ms = after.as_millis();
    let whole = Duration::from_millis(u64::try_from(ms).unwrap_or(u64::MAX));
    let ms = if whole < after { ms + 1 } else { ms };
    u64::try_from(ms).unwrap_or(u64::MAX)
}

/// The loop-clock millisecond `after` from `now_ms`, saturating at `u64::MAX`
/// (which the timer wheels keep as "never").
pub(crate) fn ms_after(now_ms: u64, after: Duration) -> u64 {
    now_ms.saturating_add(ms_ceil(after))
}

/// `now + after`, or about a century from now when that does not fit.
pub(crate) fn instant_after(now: Instant, after: Duration) -> Instant {
    now.checked_add(after)
        .or_else(|| now.checked_add(FAR))
        .unwrap_or(now)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn huge_durations_saturate_instead_of_wrapping() {
        assert_eq!(ms_ceil(Duration::MAX), u64::MAX);
        assert_eq!(ms_ceil(Duration::from_micros(1500)), 2);
        assert_eq!(ms_ceil(Duration::from_millis(7)), 7);
        assert_eq!(ms_ceil(Duration::ZERO), 0);
        assert_eq!(ms_after(5, Duration::MAX), u64::MAX);
        assert_eq!(ms_after(u64::MAX - 1, Duration::from_millis(10)), u64::MAX);
        assert_eq!(ms_after(5, Duration::from_millis(10)), 15);
        let now = Instant::now();
        assert!(instant_after(now, Duration::MAX) >= now + Duration::from_secs(365 * 24 * 3600));
        assert_eq!(
            instant_after(now, Duration::from_secs(1)),
            now + Duration::from_secs(1)
        );
    }
}
