//! Reconnect policy, driven by a virtual clock only.

use std::time::Duration;

use proptest::prelude::*;
use tether::client::backoff::{Backoff, BackoffPolicy, Jitter, PolicyError};

const SEC: u64 = 1_000;

fn plain() -> BackoffPolicy {
    BackoffPolicy::default().with_jitter(Jitter::None)
}

fn secs(d: Option<Duration>) -> Option<u64> {
    d.map(|d| d.as_secs())
}

fn ms(d: Option<Duration>) -> Option<u128> {
    d.map(|d| d.as_millis())
}

#[test]
fn default_values() {
    let p = BackoffPolicy::default();
    assert_eq!(p.initial(), Duration::from_secs(1));
    assert_eq!(p.multiplier(), 2.0);
    assert_eq!(p.max_delay(), Duration::from_secs(30));
    assert_eq!(p.jitter(), Jitter::Full);
    assert_eq!(p.max_attempts(), None);
    assert_eq!(p.reset_after(), Duration::from_secs(10));
    assert_eq!(p.validate(), Ok(()));
}

#[test]
fn exact_sequence_without_jitter() {
    let mut b = Backoff::new(plain(), 1);
    assert_eq!(b.attempt(), 0);
    let got: Vec<_> = (0..9).map(|i| secs(b.next_delay(i * SEC))).collect();
    let want = [1, 2, 4, 8, 16, 30, 30, 30, 30].map(Some);
    assert_eq!(got, want);
    assert_eq!(b.attempt(), 9);
}

#[test]
fn cap_applies_mid_step() {
    let p = plain()
        .with_initial(Duration::from_millis(100))
        .with_multiplier(3.0)
        .with_max_delay(Duration::from_secs(1));
    let mut b = Backoff::new(p, 1);
    let got: Vec<_> = (0..6).map(|_| ms(b.next_delay(0))).collect();
    assert_eq!(got, [100, 300, 900, 1000, 1000, 1000].map(Some));
}

#[test]
fn initial_equal_to_max_is_constant() {
    let p = plain().with_max_delay(Duration::from_secs(1));
    let mut b = Backoff::new(p, 1);
    for _ in 0..100 {
        assert_eq!(secs(b.next_delay(0)), Some(1));
    }
}

#[test]
fn fractional_and_unit_multipliers() {
    let p = plain().with_multiplier(1.5);
    let got: Vec<_> = (1..=5).map(|n| p.base_delay(n).as_millis()).collect();
    assert_eq!(got, [1000, 1500, 2250, 3375, 5062]);

    assert_eq!(plain().base_delay(64), Duration::from_secs(30));

    let p = plain().with_multiplier(1.0);
    for n in [0, 1, 2, 1000, u32::MAX] {
        assert_eq!(p.base_delay(n), Duration::from_secs(1));
    }
}

#[test]
fn attempt_zero_is_treated_as_first() {
    let p = plain();
    assert_eq!(p.base_delay(0), p.base_delay(1));
}

#[test]
fn gives_up_after_max_attempts() {
    let mut b = Backoff::new(plain().with_max_attempts(Some(3)), 1);
    assert_eq!(secs(b.next_delay(0)), Some(1));
    assert_eq!(secs(b.next_delay(SEC)), Some(2));
    assert_eq!(secs(b.next_delay(3 * SEC)), Some(4));
    assert_eq!(b.next_delay(7 * SEC), None);
    assert_eq!(b.next_delay(8 * SEC), None);
    assert_eq!(b.attempt(), 3);

    b.reset();
    assert_eq!(b.attempt(), 0);
    assert_eq!(secs(b.next_delay(9 * SEC)), Some(1));
}

#[test]
fn zero_max_attempts_never_retries() {
    let mut b = Backoff::new(plain().with_max_attempts(Some(0)), 1);
    assert_eq!(b.next_delay(0), None);
    assert_eq!(b.attempt(), 0);
}

#[test]
fn long_enough_connection_resets_sequence() {
    let mut b = Backoff::new(plain(), 1);
    for _ in 0..4 {
        b.next_delay(0);
    }
    assert_eq!(b.attempt(), 4);
    b.on_connected(100 * SEC);
    // Exactly `reset_after` of uptime counts as healthy.
    assert_eq!(secs(b.next_delay(110 * SEC)), Some(1));
    assert_eq!(b.attempt(), 1);
    assert_eq!(secs(b.next_delay(111 * SEC)), Some(2));
}

#[test]
fn short_lived_connection_keeps_climbing() {
    let mut b = Backoff::new(plain(), 1);
    for _ in 0..4 {
        b.next_delay(0);
    }
    b.on_connected(100 * SEC);
    assert_eq!(secs(b.next_delay(110 * SEC - 1)), Some(16));
    assert_eq!(b.attempt(), 5);
}

#[test]
fn connection_counts_once() {
    let mut b = Backoff::new(plain(), 1);
    b.next_delay(0);
    b.next_delay(0);
    b.on_connected(0);
    assert_eq!(secs(b.next_delay(60 * SEC)), Some(1));
    // Later dial failures are not measured against the old connect time.
    assert_eq!(secs(b.next_delay(120 * SEC)), Some(2));
    assert_eq!(secs(b.next_delay(180 * SEC)), Some(4));
}

#[test]
fn long_connection_revives_exhausted_schedule() {
    let mut b = Backoff::new(plain().with_max_attempts(Some(1)), 1);
    assert_eq!(secs(b.next_delay(0)), Some(1));
    assert_eq!(b.next_delay(0), None);
    b.on_connected(SEC);
    assert_eq!(secs(b.next_delay(11 * SEC)), Some(1));
}

#[test]
fn zero_reset_after_resets_on_any_connection() {
    let mut b = Backoff::new(plain().with_reset_after(Duration::ZERO), 1);
    b.next_delay(0);
    b.next_delay(0);
    b.on_connected(5);
    assert_eq!(secs(b.next_delay(5)), Some(1));
}

#[test]
fn clock_going_backwards_is_zero_uptime() {
    let mut b = Backoff::new(plain(), 1);
    b.next_delay(0);
    b.next_delay(0);
    b.on_connected(u64::MAX);
    assert_eq!(secs(b.next_delay(0)), Some(4));
}

#[test]
fn reset_forgets_connection() {
    let mut b = Backoff::new(plain(), 1);
    b.next_delay(0);
    b.on_connected(0);
    b.reset();
    b.next_delay(0);
    b.next_delay(0);
    // The forgotten connect at t = 0 must not reset this count.
    assert_eq!(secs(b.next_delay(60 * SEC)), Some(4));
}

#[test]
fn huge_attempt_counts_saturate() {
    let policies = [
        plain(),
        plain().with_multiplier(1.000_000_1),
        plain().with_multiplier(f64::MAX),
        plain()
            .with_initial(Duration::MAX)
            .with_max_delay(Duration::MAX)
            .with_multiplier(10.0),
        plain()
            .with_initial(Duration::from_nanos(1))
            .with_max_delay(Duration::MAX),
    ];
    for p in policies {
        for n in [i32::MAX as u32, i32::MAX as u32 + 1, u32::MAX] {
            assert_eq!(p.base_delay(n), p.max_delay(), "{p:?} attempt {n}");
            for jitter in [Jitter::Full, Jitter::Equal] {
                let d = p.with_jitter(jitter).jittered_delay(n, u64::MAX);
                assert!(d <= p.max_delay());
            }
        }
    }
}

#[test]
fn many_failures_stay_capped() {
    let mut b = Backoff::new(BackoffPolicy::default(), 7);
    for i in 0..100_000 {
        let d = b.next_delay(i).unwrap();
        assert!(d <= Duration::from_secs(30));
    }
    assert_eq!(b.attempt(), 100_000);
}

#[test]
fn invalid_policies_never_panic() {
    let policies = [
        plain().with_multiplier(f64::NAN),
        plain().with_multiplier(f64::INFINITY),
        plain().with_multiplier(-3.0),
        plain().with_multiplier(0.5),
        plain().with_initial(Duration::ZERO),
        plain().with_max_delay(Duration::ZERO),
        plain().with_initial(Duration::MAX),
    ];
    for p in policies {
        assert!(p.validate().is_err(), "{p:?}");
        for jitter in [Jitter::None, Jitter::Full, Jitter::Equal] {
            let mut b = Backoff::new(p.with_jitter(jitter), 3);
            for _ in 0..70 {
                assert!(b.next_delay(0).unwrap() <= p.max_delay());
            }
        }
    }
}

#[test]
fn validation_errors() {
    assert_eq!(
        plain().with_max_delay(Duration::ZERO).validate(),
        Err(PolicyError::ZeroMaxDelay)
    );
    assert_eq!(
        plain().with_initial(Duration::ZERO).validate(),
        Err(PolicyError::ZeroInitial)
    );
    assert_eq!(
        plain().with_initial(Duration::from_secs(31)).validate(),
        Err(PolicyError::InitialExceedsMax {
            initial: Duration::from_secs(31),
            max_delay: Duration::from_secs(30),
        })
    );
    for m in [0.0, 0.999, -1.0, f64::INFINITY, f64::NEG_INFINITY] {
        assert_eq!(
            plain().with_multiplier(m).validate(),
            Err(PolicyError::InvalidMultiplier(m))
        );
    }
    assert!(matches!(
        plain().with_multiplier(f64::NAN).validate(),
        Err(PolicyError::InvalidMultiplier(m)) if m.is_nan()
    ));
    // Zero max is reported before the initial-vs-max comparison it implies.
    assert_eq!(
        BackoffPolicy::default()
            .with_max_delay(Duration::ZERO)
            .with_initial(Duration::ZERO)
            .validate(),
        Err(PolicyError::ZeroMaxDelay)
    );
    assert_eq!(plain().with_multiplier(1.0).validate(), Ok(()));
    assert_eq!(
        plain().with_max_delay(Duration::from_secs(1)).validate(),
        Ok(())
    );

    let err: Box<dyn std::error::Error> = Box::new(PolicyError::InvalidMultiplier(0.5));
    assert!(err.to_string().contains("0.5"));
}

#[test]
fn full_jitter_spreads_over_whole_range() {
    let p = BackoffPolicy::default().with_max_delay(Duration::from_secs(1));
    let mut b = Backoff::new(p, 42);
    let draws: Vec<f64> = (0..10_000)
        .map(|_| b.next_delay(0).unwrap().as_secs_f64())
        .collect();
    let mean = draws.iter().sum::<f64>() / draws.len() as f64;
    let lo = draws.iter().copied().fold(f64::INFINITY, f64::min);
    let hi = draws.iter().copied().fold(0.0, f64::max);
    assert!((0.45..0.55).contains(&mean), "mean {mean}");
    assert!(lo < 0.01 && hi > 0.99, "range {lo}..{hi}");
}

#[test]
fn equal_jitter_spreads_over_upper_half() {
    let p = BackoffPolicy::default()
        .with_jitter(Jitter::Equal)
        .with_max_delay(Duration::from_secs(1));
    let mut b = Backoff::new(p, 42);
    let draws: Vec<f64> = (0..10_000)
        .map(|_| b.next_delay(0).unwrap().as_secs_f64())
        .collect();
    let mean = draws.iter().sum::<f64>() / draws.len() as f64;
    let lo = draws.iter().copied().fold(f64::INFINITY, f64::min);
    let hi = draws.iter().copied().fold(0.0, f64::max);
    assert!((0.72..0.78).contains(&mean), "mean {mean}");
    assert!((0.5..0.51).contains(&lo) && hi > 0.99, "range {lo}..{hi}");
}

#[test]
fn jitter_extremes_of_random_word() {
    let d = Duration::from_secs(8);
    let full = plain().with_jitter(Jitter::Full);
    assert_eq!(full.jittered_delay(4, 0), Duration::ZERO);
    assert_eq!(full.jittered_delay(4, u64::MAX), d);
    let equal = plain().with_jitter(Jitter::Equal);
    assert_eq!(equal.jittered_delay(4, 0), d / 2);
    assert_eq!(equal.jittered_delay(4, u64::MAX), d);
    assert_eq!(plain().jittered_delay(4, 12345), d);
}

#[test]
fn seeds_differ() {
    let run = |seed| {
        let mut b = Backoff::new(BackoffPolicy::default(), seed);
        (0..8).map(|_| b.next_delay(0)).collect::<Vec<_>>()
    };
    assert_ne!(run(0), run(1));
}

fn any_policy() -> impl Strategy<Value = BackoffPolicy> {
    (
        1u64..=3_600_000_000_000,
        1.0f64..64.0,
        0u64..=u64::MAX / 2,
        prop_oneof![Just(Jitter::None), Just(Jitter::Full), Just(Jitter::Equal)],
        proptest::option::of(0u32..20),
        0u64..60_000,
    )
        .prop_map(
            |(initial, multiplier, extra, jitter, max_attempts, reset)| {
                BackoffPolicy::default()
                    .with_initial(Duration::from_nanos(initial))
                    .with_multiplier(multiplier)
                    .with_max_delay(Duration::from_nanos(initial.saturating_add(extra)))
                    .with_jitter(jitter)
                    .with_max_attempts(max_attempts)
                    .with_reset_after(Duration::from_millis(reset))
            },
        )
}

#[derive(Clone, Debug)]
enum Event {
    Fail(u64),
    Connect(u64),
    Reset,
}

fn any_events() -> impl Strategy<Value = Vec<Event>> {
    proptest::collection::vec(
        prop_oneof![
            4 => (0u64..20_000).prop_map(Event::Fail),
            2 => (0u64..20_000).prop_map(Event::Connect),
            1 => Just(Event::Reset),
        ],
        0..64,
    )
}

fn assert_within(p: &BackoffPolicy, attempt: u32, d: Duration) -> Result<(), TestCaseError> {
    let base = p.base_delay(attempt);
    prop_assert!(base <= p.max_delay());
    prop_assert!(d <= base, "{d:?} above {base:?}");
    match p.jitter() {
        Jitter::None => prop_assert_eq!(d, base),
        Jitter::Full => {}
        Jitter::Equal => prop_assert!(d >= base / 2, "{d:?} below half of {base:?}"),
    }
    Ok(())
}

proptest! {
    #[test]
    fn any_attempt_within_bounds(p in any_policy(), attempt: u32, random: u64) {
        prop_assert_eq!(p.validate(), Ok(()));
        let d = p.jittered_delay(attempt, random);
        assert_within(&p, attempt, d)?;
        prop_assert!(p.base_delay(attempt) >= p.initial());
    }

    #[test]
    fn schedule_within_bounds_and_deterministic(
        p in any_policy(),
        seed: u64,
        events in any_events(),
    ) {
        let run = || -> Result<Vec<(u32, Option<Duration>)>, TestCaseError> {
            let mut b = Backoff::new(p, seed);
            let mut clock = 0u64;
            let mut out = Vec::new();
            for e in &events {
                match *e {
                    Event::Fail(dt) => {
                        clock += dt;
                        let d = b.next_delay(clock);
                        if let Some(d) = d {
                            prop_assert!(b.attempt() >= 1);
                            assert_within(&p, b.attempt(), d)?;
                        } else {
                            prop_assert_eq!(Some(b.attempt()), p.max_attempts());
                        }
                        if let Some(max) = p.max_attempts() {
                            prop_assert!(b.attempt() <= max);
                        }
                        out.push((b.attempt(), d));
                    }
                    Event::Connect(dt) => {
                        clock += dt;
                        b.on_connected(clock);
                    }
                    Event::Reset => {
                        b.reset();
                        prop_assert_eq!(b.attempt(), 0);
                    }
                }
            }
            Ok(out)
        };
        prop_assert_eq!(run()?, run()?);
    }
}
