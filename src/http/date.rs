//! The `Date` header line, formatted once a second.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// `Date: Sun, 06 Nov 1994 08:49:37 GMT\r\n`
pub(crate) const DATE_LINE_LEN: usize = 37;

/// A loop's cached `Date` line. [`DateCache::refresh`] is called with the
/// loop clock before each batch of requests; it reads the wall clock only when
/// a new second has begun, so requests cost no clock read at all.
#[derive(Debug, Clone)]
pub(crate) struct DateCache {
    line: [u8; DATE_LINE_LEN],
    next: Option<Instant>,
}

impl DateCache {
    pub(crate) fn new() -> Self {
        let mut cache = DateCache {
            line: [0; DATE_LINE_LEN],
            next: None,
        };
        cache.line = format_line(0);
        cache
    }

    /// Brings the line up to date for loop time `now`; true when it changed.
    #[inline]
    pub(crate) fn refresh(&mut self, now: Instant) -> bool {
        if self.next.is_some_and(|next| now < next) {
            return false;
        }
        let wall = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or(Duration::ZERO);
        self.line = format_line(wall.as_secs());
        // The next wall-clock second, measured on the loop clock.
        let left = Duration::from_secs(1) - Duration::from_nanos(u64::from(wall.subsec_nanos()));
        self.next = Some(now + left);
        true
    }

    pub(crate) fn line(&self) -> &[u8] {
        &self.line
    }
}

/// The IMF-fixdate line (RFC 9110 §5.6.7) for `secs` since the Unix epoch.
pub(crate) fn format_line(secs: u64) -> [u8; DATE_LINE_LEN] {
    const DAYS: [&[u8; 3]; 7] = [b"Thu", b"Fri", b"Sat", b"Sun", b"Mon", b"Tue", b"Wed"];
    const MONTHS: [&[u8; 3]; 12] = [
        b"Jan", b"Feb", b"Mar", b"Apr", b"May", b"Jun", b"Jul", b"Aug", b"Sep", b"Oct", b"Nov",
        b"Dec",
    ];
    let days = secs / 86_400;
    let rem = secs % 86_400;
    let (hour, min, sec) = (rem / 3600, rem / 60 % 60, rem % 60);
    let weekday = DAYS[(days % 7) as usize];
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    let mut line = *b"Date: Thu, 01 Jan 1970 00:00:00 GMT\r\n";
    line[6..9].copy_from_slice(weekday);
    let two = |n: u64| [b'0' + (n / 10 % 10) as u8, b'0' + (n % 10) as u8];
    line[11..13].copy_from_slice(&two(day as u64));
    line[14..17].copy_from_slice(MONTHS[(month - 1) as usize]);
    let year = year.clamp(0, 9999) as u64;
    line[18..20].copy_from_slice(&two(year / 100));
    line[20..22].copy_from_slice(&two(year));
    line[23..25].copy_from_slice(&two(hour));
    line[26..28].copy_from_slice(&two(min));
    line[29..31].copy_from_slice(&two(sec));
    line
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_imf_fixdate() {
        assert_eq!(&format_line(0), b"Date: Thu, 01 Jan 1970 00:00:00 GMT\r\n");
        assert_eq!(
            &format_line(784_111_777),
            b"Date: Sun, 06 Nov 1994 08:49:37 GMT\r\n"
        );
        assert_eq!(
            &format_line(951_782_400),
            b"Date: Tue, 29 Feb 2000 00:00:00 GMT\r\n"
        );
        assert_eq!(
            &format_line(4_102_444_799),
            b"Date: Thu, 31 Dec 2099 23:59:59 GMT\r\n"
        );
    }

    #[test]
    fn refreshes_only_when_a_second_has_passed() {
        let mut cache = DateCache::new();
        let t0 = Instant::now();
        assert!(cache.refresh(t0));
        let next = cache.next.expect("armed");
        assert!(next > t0 && next <= t0 + Duration::from_secs(1));
        assert!(!cache.refresh(t0 + (next - t0) / 2));
        assert!(cache.refresh(next));
    }
}
