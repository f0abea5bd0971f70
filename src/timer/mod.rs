//! Timers for the reactor: a hierarchical timing wheel with millisecond ticks.
//!
//! The reactor keeps one timer per idle connection (idle timeouts, keep-alive
//! pings, reconnect back-off), so the structure is tuned for very many
//! long-lived, frequently re-armed timers that rarely fire:
//!
//! * [`TimerWheel::insert`], [`TimerWheel::cancel`] and [`TimerWheel::reset`]
//!   are O(1) and do not allocate once the wheel has grown to its working
//!   size; an armed timer costs 32 bytes for an 8-byte payload.
//! * [`TimerWheel::next_expiry`] and [`TimerWheel::poll_expired`] find the
//!   next occupied slot with bit operations on one `u64` per level, so a jump
//!   over hours of idle virtual time costs the same as a jump over one tick.
//!
//! The wheel is sans-IO: it never reads a clock. Time is a `u64` count of
//! milliseconds since an origin the caller picks (typically the reactor's
//! start `Instant`), passed in explicitly, which also makes the wheel fully
//! testable with a virtual clock.
//!
//! # Example
//!
//! ```
//! use tether::timer::TimerWheel;
//!
//! // The reactor started 1 000 ms after its clock origin.
//! let mut wheel: TimerWheel<&str> = TimerWheel::new(1_000);
//! let idle = wheel.insert(31_000, "idle timeout");
//! let ping = wheel.insert(6_000, "keep-alive ping");
//!
//! // Traffic arrived: push the idle timeout back without reallocating.
//! assert!(wheel.reset(idle, 36_000));
//!
//! // The poll timeout: never later than the earliest deadline.
//! let next = wheel.next_expiry().expect("two timers are armed");
//! assert!(next <= 6_000);
//!
//! // Each reactor iteration drains whatever is due.
//! let mut fired = Vec::new();
//! while let Some((id, what)) = wheel.poll_expired(6_000) {
//!     assert_eq!(id, ping);
//!     fired.push(what);
//! }
//! assert_eq!(fired, ["keep-alive ping"]);
//!
//! // The connection closed before going idle.
//! assert_eq!(wheel.cancel(idle), Some("idle timeout"));
//! assert_eq!(wheel.cancel(idle), None);
//! assert!(wheel.is_empty());
//! ```

pub(crate) mod deadline;
mod wheel;

pub use wheel::{RANGE_MS, TimerId, TimerWheel};
