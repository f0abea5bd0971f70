//! Overload closes made visible: a connection closed because its output
//! overflowed `max_outbound`, or shed to keep the engine within its memory
//! budget, is logged at warn, at most once per interval per loop and kind,
//! with how many more there were since.

use std::cell::RefCell;
use std::time::{Duration, Instant};

use crate::ConnId;
use crate::reason::CloseReason;

/// The least time between two warn lines of one kind on one loop.
pub(crate) const EVERY: Duration = Duration::from_secs(10);

/// When a kind was last logged on this thread, and how many since.
#[derive(Default)]
struct Kind {
    last: Option<Instant>,
    since: u64,
}

thread_local! {
    // A loop is one thread: its own limiter, no sharing.
    static KINDS: RefCell<[Kind; 2]> = RefCell::default();
}

/// Logs `reason` for `id` if it is an overload close and its kind was not
/// logged on this loop within [`EVERY`]; otherwise only counts it.
pub(crate) fn overload_close(id: ConnId, reason: &CloseReason, now: Instant) {
    let (kind, what) = match reason {
        CloseReason::WriteOverflow => (0, "its pending output passed max_outbound"),
        CloseReason::MemoryBudget => (1, "the engine's memory budget is spent"),
        _ => return,
    };
    KINDS.with(|kinds| {
        let mut kinds = kinds.borrow_mut();
        let k = &mut kinds[kind];
        if k.last
            .is_some_and(|t| now.saturating_duration_since(t) < EVERY)
        {
            k.since += 1;
            return;
        }
        let more = std::mem::take(&mut k.since);
        k.last = Some(now);
        if more > 0 {
            log::warn!("{id} closed: {what} ({more} more like it since the last report)");
        } else {
            log::warn!("{id} closed: {what}");
        }
    });
}
