//! Reconnect pacing: exponential backoff with jitter, as a sans-IO state machine.
//!
//! [`BackoffPolicy`] is the configuration; [`Backoff`] is the per-connection
//! state that turns "the dial failed" and "the connection dropped" events into
//! delays before the next attempt. Nothing here reads a clock or an entropy
//! source: instants are passed in as `u64` milliseconds since an origin of the
//! caller's choosing (the reactor's timer wheel uses the same unit), and jitter
//! comes from a small PRNG seeded by the caller, so a given seed and event
//! sequence always produce the same delays.
//!
//! The un-jittered delay before retry `n` (1-based) is
//! `min(max_delay, initial × multiplier^(n-1))`, saturating rather than
//! overflowing for any `n`. Jitter then picks a value at or below it (see
//! [`Jitter`]), so no delay ever exceeds `max_delay`.
//!
//! A connection that stays up for at least [`BackoffPolicy::reset_after`]
//! counts as healthy: when it drops, the sequence starts over from `initial`.
//! One that drops sooner keeps climbing, so a server that accepts and then
//! immediately closes is not hammered at the initial rate.
//!
//! # Example
//!
//! ```
//! use std::time::Duration;
//! use tether::client::backoff::{Backoff, BackoffPolicy, Jitter};
//!
//! let policy = BackoffPolicy::default()
//!     .with_jitter(Jitter::None)
//!     .with_max_attempts(Some(5));
//! policy.validate().expect("sane policy");
//!
//! let mut backoff = Backoff::new(policy, 0x5eed);
//! let secs = |d: Option<Duration>| d.map(|d| d.as_secs());
//!
//! // Dials keep failing: 1 s, 2 s, 4 s, ...
//! assert_eq!(secs(backoff.next_delay(0)), Some(1));
//! assert_eq!(secs(backoff.next_delay(1_000)), Some(2));
//! assert_eq!(secs(backoff.next_delay(3_000)), Some(4));
//! assert_eq!(backoff.attempt(), 3);
//!
//! // Connected at t = 7 s; it stays up a minute, longer than `reset_after`
//! // (10 s by default), so the drop starts the sequence over.
//! backoff.on_connected(7_000);
//! assert_eq!(secs(backoff.next_delay(67_000)), Some(1));
//! assert_eq!(backoff.attempt(), 1);
//!
//! // Four more failures use up the five attempts; then give up.
//! for _ in 0..4 {
//!     assert!(backoff.next_delay(70_000).is_some());
//! }
//! assert_eq!(backoff.next_delay(99_000), None);
//! ```

use std::error::Error;
use std::fmt;
use std::time::Duration;

const NANOS_PER_SEC: u128 = 1_000_000_000;

/// How a computed delay is randomised before use.
///
/// Semantics follow the AWS Architecture Blog's "Exponential Backoff And
/// Jitter". With `d` the un-jittered delay for the attempt:
///
/// | variant | delay |
/// | --- | --- |
/// | [`Jitter::None`] | exactly `d` |
/// | [`Jitter::Full`] | uniform in `[0, d]` |
/// | [`Jitter::Equal`] | `d - d/2` plus uniform in `[0, d/2]`, i.e. within `[d/2, d]` |
///
/// Every variant stays at or below `d`, hence at or below the policy's
/// `max_delay`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Jitter {
    /// Use the computed delay as is. Predictable, but clients that lost the
    /// same server at the same moment will all redial in lockstep.
    None,
    /// Uniform in `[0, d]`: spreads retries the most, at the cost of an
    /// occasional near-immediate retry.
    Full,
    /// Uniform in `[d/2, d]`: keeps at least half of the backoff while still
    /// spreading clients apart.
    Equal,
}

/// Why a [`BackoffPolicy`] was rejected by [`BackoffPolicy::validate`].
#[derive(Clone, Copy, Debug, PartialEq)]
#[non_exhaustive]
pub enum PolicyError {
    /// `max_delay` is zero, which would turn reconnecting into a busy loop.
    ZeroMaxDelay,
    /// `initial` is zero; every delay would be zero, whatever the multiplier.
    ZeroInitial,
    /// `initial` is larger than `max_delay`.
    InitialExceedsMax {
        /// The configured initial delay.
        initial: Duration,
        /// The configured cap.
        max_delay: Duration,
    },
    /// The multiplier is NaN, infinite, or below 1 (delays would shrink).
    InvalidMultiplier(f64),
}

impl fmt::Display for PolicyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::ZeroMaxDelay => f.write_str("backoff max_delay must be greater than zero"),
            Self::ZeroInitial => f.write_str("backoff initial delay must be greater than zero"),
            Self::InitialExceedsMax { initial, max_delay } => write!(
                f,
                "backoff initial delay {initial:?} exceeds max_delay {max_delay:?}"
            ),
            Self::InvalidMultiplier(m) => write!(
                f,
                "backoff multiplier must be finite and at least 1, got {m}"
            ),
        }
    }
}

impl Error for PolicyError {}

/// Configuration of the reconnect schedule.
///
/// Built from [`Default`] and adjusted with the `with_*` setters; the plain
/// accessors of the same names read the values back. Setters do not check
/// anything: call [`validate`](Self::validate) once when the configuration is
/// assembled. An unvalidated policy never makes [`Backoff`] panic, but its
/// delays are then only guaranteed to lie in `[0, max_delay]`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct BackoffPolicy {
    initial: Duration,
    multiplier: f64,
    max_delay: Duration,
    jitter: Jitter,
    max_attempts: Option<u32>,
    reset_after: Duration,
}

impl Default for BackoffPolicy {
    /// `initial` 1 s, `multiplier` 2, `max_delay` 30 s, [`Jitter::Full`],
    /// retry forever, `reset_after` 10 s.
    ///
    /// Full jitter is the default because the usual reason many clients
    /// reconnect at once is that a shared server went away; un-jittered they
    /// would come back in synchronised waves. Use
    /// [`with_jitter(Jitter::None)`](Self::with_jitter) for the plain
    /// 1 s, 2 s, 4 s, … sequence.
    fn default() -> Self {
        Self {
            initial: Duration::from_secs(1),
            multiplier: 2.0,
            max_delay: Duration::from_secs(30),
            jitter: Jitter::Full,
            max_attempts: None,
            reset_after: Duration::from_secs(10),
        }
    }
}

impl BackoffPolicy {
    /// Sets the un-jittered delay before the first retry.
    #[must_use]
    pub fn with_initial(mut self, initial: Duration) -> Self {
        self.initial = initial;
        self
    }

    /// Sets the factor applied to the delay after each further failure.
    /// `1.0` gives a constant delay.
    #[must_use]
    pub fn with_multiplier(mut self, multiplier: f64) -> Self {
        self.multiplier = multiplier;
        self
    }

    /// Sets the cap on any delay, jittered or not.
    #[must_use]
    pub fn with_max_delay(mut self, max_delay: Duration) -> Self {
        self.max_delay = max_delay;
        self
    }

    /// Sets how delays are randomised.
    #[must_use]
    pub fn with_jitter(mut self, jitter: Jitter) -> Self {
        self.jitter = jitter;
        self
    }

    /// Sets how many consecutive retries are allowed before giving up;
    /// `None` retries forever. `Some(0)` gives up on the first failure.
    #[must_use]
    pub fn with_max_attempts(mut self, max_attempts: Option<u32>) -> Self {
        self.max_attempts = max_attempts;
        self
    }

    /// Sets how long a connection must stay up for its drop to restart the
    /// sequence from `initial`. Zero restarts it after any successful
    /// connection.
    #[must_use]
    pub fn with_reset_after(mut self, reset_after: Duration) -> Self {
        self.reset_after = reset_after;
        self
    }

    /// The un-jittered delay before the first retry.
    pub fn initial(&self) -> Duration {
        self.initial
    }

    /// The growth factor between consecutive un-jittered delays.
    pub fn multiplier(&self) -> f64 {
        self.multiplier
    }

    /// The cap on any delay.
    pub fn max_delay(&self) -> Duration {
        self.max_delay
    }

    /// How delays are randomised.
    pub fn jitter(&self) -> Jitter {
        self.jitter
    }

    /// Consecutive retries allowed before giving up; `None` is unlimited.
    pub fn max_attempts(&self) -> Option<u32> {
        self.max_attempts
    }

    /// Uptime after which a dropped connection restarts the sequence.
    pub fn reset_after(&self) -> Duration {
        self.reset_after
    }

    /// Checks that the numbers describe a usable schedule.
    ///
    /// # Errors
    ///
    /// The first problem found, checked in the order of the
    /// [`PolicyError`] variants.
    pub fn validate(&self) -> Result<(), PolicyError> {
        if self.max_delay.is_zero() {
            return Err(PolicyError::ZeroMaxDelay);
        }
        if self.initial.is_zero() {
            return Err(PolicyError::ZeroInitial);
        }
        if self.initial > self.max_delay {
            return Err(PolicyError::InitialExceedsMax {
                initial: self.initial,
                max_delay: self.max_delay,
            });
        }
        if !self.multiplier.is_finite() || self.multiplier < 1.0 {
            return Err(PolicyError::InvalidMultiplier(self.multiplier));
        }
        Ok(())
    }

    /// The un-jittered delay before retry number `attempt` (1-based):
    /// `min(max_delay, initial × multiplier^(attempt-1))`.
    ///
    /// Saturates at `max_delay` for any `attempt`, including `u32::MAX`.
    /// `attempt` 0 is treated as 1.
    pub fn base_delay(&self, attempt: u32) -> Duration {
        from_nanos(self.base_nanos(attempt))
    }

    /// The delay before retry number `attempt` after applying the policy's
    /// [`Jitter`], with `random` as the source of randomness (any value, all
    /// 2⁶⁴ equally likely for a uniform draw).
    ///
    /// [`Backoff`] feeds this from its own PRNG; it is public so that callers
    /// with their own randomness, and tests, can use the schedule directly.
    pub fn jittered_delay(&self, attempt: u32, random: u64) -> Duration {
        let d = self.base_nanos(attempt);
        let jittered = match self.jitter {
            Jitter::None => d,
            Jitter::Full => scale(d, random),
            Jitter::Equal => {
                let half = d / 2;
                d - half + scale(half, random)
            }
        };
        from_nanos(jittered)
    }

    fn base_nanos(&self, attempt: u32) -> u128 {
        let max = self.max_delay.as_nanos();
        let initial = self.initial.as_nanos().min(max);
        let exponent = attempt.saturating_sub(1);
        // Exact integer answers where floating point is not needed, so the
        // common sequences (first retry, constant delay) are bit-exact.
        if exponent == 0 || self.multiplier == 1.0 {
            return initial;
        }
        // Any exponent past i32::MAX already saturates for a multiplier > 1
        // and stays 1 for a multiplier of 1, so clamping changes nothing.
        let exponent = i32::try_from(exponent).unwrap_or(i32::MAX);
        let raw = initial as f64 * self.multiplier.powi(exponent);
        // NaN is only reachable with an invalid multiplier; the cap is the
        // conservative answer, where a cast would have given zero.
        if raw.is_nan() || raw >= max as f64 {
            return max;
        }
        // `as` saturates negatives to zero; `min` guards against `max as f64`
        // having rounded up.
        (raw as u128).min(max)
    }
}

/// Maps a uniform 64-bit word onto `[0, d]` by multiply-and-shift, i.e.
/// `floor((d + 1) × random / 2⁶⁴)`. Division-free and never above `d`; the
/// bias is negligible for any delay under 2⁶⁴ ns (~584 years).
fn scale(d: u128, random: u64) -> u128 {
    // `Duration::MAX` is under 2^94 ns, so `d + 1` cannot overflow, `hi` is
    // under 2^30 and `hi * random` under 2^94; splitting keeps `lo * random`
    // within 128 bits.
    let n = d + 1;
    let hi = n >> 64;
    let lo = n & u128::from(u64::MAX);
    let random = u128::from(random);
    hi * random + ((lo * random) >> 64)
}

fn from_nanos(nanos: u128) -> Duration {
    // Callers only pass values bounded by some `Duration::as_nanos`, so the
    // seconds fit in a u64.
    let secs = u64::try_from(nanos / NANOS_PER_SEC).unwrap_or(u64::MAX);
    // The remainder is below 10^9, which always fits and never carries.
    let subsec = (nanos % NANOS_PER_SEC) as u32;
    Duration::new(secs, subsec)
}

/// Reconnect state for one logical connection.
///
/// Report each failure (a dial that did not complete, or an established
/// connection that dropped) with [`next_delay`](Self::next_delay) and each
/// successful connect with [`on_connected`](Self::on_connected). Instants
/// are `u64` milliseconds since an origin the caller picks and keeps fixed.
#[derive(Clone, Debug)]
pub struct Backoff {
    policy: BackoffPolicy,
    attempt: u32,
    rng: SplitMix64,
    connected_at: Option<u64>,
}

impl Backoff {
    /// Starts a fresh schedule. `seed` fully determines the jitter; give
    /// each connection a different seed so their retries spread out.
    ///
    /// The policy is not validated here; see [`BackoffPolicy::validate`].
    pub fn new(policy: BackoffPolicy, seed: u64) -> Self {
        Self {
            policy,
            attempt: 0,
            rng: SplitMix64(seed),
            connected_at: None,
        }
    }

    /// Reports a failure at `now_ms` and returns how long to wait before the
    /// next attempt, or `None` once `max_attempts` consecutive retries have
    /// been used up (give up; later calls keep returning `None` until a
    /// reset).
    ///
    /// If a connection was established (see
    /// [`on_connected`](Self::on_connected)) and stayed up for at least
    /// `reset_after` before this failure, the count starts over first and
    /// the returned delay is the first one of the sequence. A `now_ms`
    /// earlier than the connect time counts as zero uptime.
    pub fn next_delay(&mut self, now_ms: u64) -> Option<Duration> {
        if let Some(since) = self.connected_at.take() {
            let uptime = Duration::from_millis(now_ms.saturating_sub(since));
            if uptime >= self.policy.reset_after {
                self.attempt = 0;
            }
        }
        if self
            .policy
            .max_attempts
            .is_some_and(|max| self.attempt >= max)
        {
            return None;
        }
        self.attempt = self.attempt.saturating_add(1);
        let random = match self.policy.jitter {
            // No draw: keeps the PRNG stream aligned with the jittered
            // delays actually handed out.
            Jitter::None => 0,
            Jitter::Full | Jitter::Equal => self.rng.next(),
        };
        Some(self.policy.jittered_delay(self.attempt, random))
    }

    /// Reports that a connection was established at `now_ms`. The attempt
    /// count is kept until the connection proves healthy by outliving
    /// `reset_after`; a second call before the next failure replaces the
    /// recorded instant.
    pub fn on_connected(&mut self, now_ms: u64) {
        self.connected_at = Some(now_ms);
    }

    /// The 1-based number of the retry that the delay last returned by
    /// [`next_delay`](Self::next_delay) precedes, i.e. the count of
    /// consecutive failures since the last reset; 0 before any failure.
    /// After giving up it stays at `max_attempts`.
    pub fn attempt(&self) -> u32 {
        self.attempt
    }

    /// Forgets the failure count and any recorded connection, as if freshly
    /// created. The jitter stream continues rather than repeating.
    pub fn reset(&mut self) {
        self.attempt = 0;
        self.connected_at = None;
    }

    /// The policy this schedule follows.
    pub fn policy(&self) -> &BackoffPolicy {
        &self.policy
    }
}

/// SplitMix64 (Steele, Lea, Flood 2014): tiny, and unlike plain xorshift it
/// has no bad seeds, so callers may pass any `u64`, zero included.
#[derive(Clone, Debug)]
struct SplitMix64(u64);

impl SplitMix64 {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
}
