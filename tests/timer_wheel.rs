//! Behavioural tests of the timing wheel, driven by a virtual clock.

use std::collections::BTreeMap;

use proptest::prelude::*;
use tether::timer::{RANGE_MS, TimerId, TimerWheel};

/// Deterministic generator so failures reproduce without a seed file.
struct SplitMix(u64);

impl SplitMix {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// Offsets on both sides of every level boundary, 64^1 … 64^6, plus the
/// smallest ones.
fn boundary_offsets() -> Vec<u64> {
    let mut offsets = vec![0, 1, 2];
    for level in 1..=6 {
        let span = 1u64 << (6 * level);
        offsets.extend([span - 1, span, span + 1]);
    }
    offsets
}

/// Starting clocks: zero, unaligned, and just short of several alignments so
/// that small offsets straddle high-level boundaries.
const STARTS: [u64; 6] = [
    0,
    1,
    987_654_321,
    (1 << 24) - 3,
    RANGE_MS - 2,
    7 * RANGE_MS + 4095,
];

fn drain(wheel: &mut TimerWheel<u64>, now: u64) -> Vec<(TimerId, u64)> {
    std::iter::from_fn(|| wheel.poll_expired(now)).collect()
}

#[test]
fn single_timer_fires_exactly_at_each_level_boundary() {
    for start in STARTS {
        for offset in boundary_offsets() {
            let deadline = start + offset;
            let mut wheel = TimerWheel::new(start);
            let id = wheel.insert(deadline, offset);
            assert_eq!(wheel.deadline(id), Some(deadline));
            if offset > 0 {
                assert!(wheel.poll_expired(deadline - 1).is_none());
                assert_eq!(wheel.now(), deadline - 1);
            }
            assert_eq!(
                wheel.next_expiry(),
                Some(deadline),
                "start {start} +{offset}"
            );
            assert_eq!(wheel.poll_expired(deadline), Some((id, offset)));
            assert!(wheel.poll_expired(deadline).is_none());
            assert!(wheel.is_empty());
            assert_eq!(wheel.next_expiry(), None);
        }
    }
}

#[test]
fn following_next_expiry_reaches_each_deadline_in_few_wakeups() {
    for start in STARTS {
        for offset in boundary_offsets() {
            let deadline = start + offset;
            let mut wheel = TimerWheel::new(start);
            let id = wheel.insert(deadline, 0);
            let mut wakeups = 0;
            loop {
                let at = wheel.next_expiry().expect("timer still armed");
                assert!(at <= deadline, "bound {at} past deadline {deadline}");
                wakeups += 1;
                if let Some((fired, _)) = wheel.poll_expired(at) {
                    assert_eq!((fired, at), (id, deadline));
                    break;
                }
            }
            // One wake-up per level crossed plus the firing one.
            assert!(wakeups <= 7, "start {start} +{offset}: {wakeups} wake-ups");
        }
    }
}

#[test]
fn all_boundaries_in_one_wheel_fire_in_order() {
    for start in STARTS {
        let mut wheel = TimerWheel::new(start);
        let offsets = boundary_offsets();
        // Insert in reverse so list order cannot accidentally match.
        for &offset in offsets.iter().rev() {
            wheel.insert(start + offset, offset);
        }
        for &offset in &offsets {
            let deadline = start + offset;
            if offset > 0 {
                assert!(wheel.poll_expired(deadline - 1).is_none());
            }
            let fired: Vec<u64> = drain(&mut wheel, deadline)
                .into_iter()
                .map(|(_, p)| p)
                .collect();
            assert_eq!(fired, [offset], "start {start}");
        }
        assert!(wheel.is_empty());
    }
}

#[test]
fn cancel_at_every_level_leaves_nothing_behind() {
    for start in STARTS {
        let mut wheel = TimerWheel::new(start);
        let ids: Vec<_> = boundary_offsets()
            .into_iter()
            .map(|offset| (wheel.insert(start + offset, offset), offset))
            .collect();
        assert_eq!(wheel.len(), ids.len());
        for &(id, offset) in &ids {
            assert_eq!(wheel.cancel(id), Some(offset));
            assert_eq!(wheel.cancel(id), None);
            assert_eq!(wheel.deadline(id), None);
        }
        assert!(wheel.is_empty());
        assert_eq!(wheel.next_expiry(), None);
        assert!(wheel.poll_expired(start + 10 * RANGE_MS).is_none());
        assert_eq!(wheel.now(), start + 10 * RANGE_MS);
    }
}

#[test]
fn cancel_after_cascade() {
    let start = 1_000_003;
    let mut wheel = TimerWheel::new(start);
    let deadline = start + 300_000; // level 3 at insertion
    let far = wheel.insert(deadline, 1);
    let near = wheel.insert(deadline + 1, 2);
    // Walk the clock down the levels so the timers get re-filed a few times.
    for lead in [200_000, 5_000, 70, 10, 1] {
        assert!(wheel.poll_expired(deadline - lead).is_none());
        assert_eq!(wheel.deadline(far), Some(deadline));
    }
    assert_eq!(wheel.next_expiry(), Some(deadline));
    assert_eq!(wheel.cancel(far), Some(1));
    assert_eq!(wheel.next_expiry(), Some(deadline + 1));
    assert!(wheel.poll_expired(deadline).is_none());
    assert_eq!(drain(&mut wheel, deadline + 1), [(near, 2)]);
}

#[test]
fn cancel_due_timer_before_it_is_popped() {
    let mut wheel = TimerWheel::new(0);
    let a = wheel.insert(10, 1);
    let b = wheel.insert(10, 2);
    let c = wheel.insert(10, 3);
    let (first, _) = wheel.poll_expired(10).expect("three are due");
    // Cancel one of the others while they sit on the due list.
    let other = if first == b { c } else { b };
    assert!(wheel.cancel(other).is_some());
    let rest: Vec<_> = drain(&mut wheel, 10)
        .into_iter()
        .map(|(id, _)| id)
        .collect();
    assert_eq!(rest.len(), 1);
    let mut seen = vec![first, other, rest[0]];
    seen.sort_by_key(|id| id.index());
    let mut all = vec![a, b, c];
    all.sort_by_key(|id| id.index());
    assert_eq!(seen, all);
}

#[test]
fn reset_moves_timers_both_ways() {
    let start = 50_000;
    let mut wheel = TimerWheel::new(start);
    let id = wheel.insert(start + 100_000, 7);

    // Earlier: across levels.
    assert!(wheel.reset(id, start + 100));
    assert_eq!(wheel.deadline(id), Some(start + 100));
    assert!(wheel.next_expiry().is_some_and(|at| at <= start + 100));

    // Later, then within the same slot.
    assert!(wheel.reset(id, start + 10_000));
    assert!(wheel.reset(id, start + 10_001));
    assert!(wheel.poll_expired(start + 10_000).is_none());
    assert_eq!(wheel.poll_expired(start + 10_001), Some((id, 7)));
    assert!(
        !wheel.reset(id, start + 20_000),
        "fired timers cannot be reset"
    );

    // Into the past: due on the next poll, without moving the clock.
    let now = wheel.now();
    let id = wheel.insert(now + 5_000, 8);
    assert!(wheel.reset(id, now - 1_000));
    assert_eq!(wheel.next_expiry(), Some(now - 1_000));
    assert_eq!(wheel.poll_expired(now), Some((id, 8)));

    // Out of the due list again before being popped.
    let id = wheel.insert(now, 9);
    assert!(wheel.reset(id, now + 64));
    assert!(wheel.poll_expired(now + 63).is_none());
    assert_eq!(wheel.poll_expired(now + 64), Some((id, 9)));
}

#[test]
fn stale_handles_do_nothing() {
    let mut wheel = TimerWheel::new(0);
    let old = wheel.insert(5, 1);
    assert_eq!(wheel.poll_expired(5), Some((old, 1)));
    // The slab slot is reused; the old handle must not reach the new timer.
    let new = wheel.insert(20, 2);
    assert_eq!(new.index(), old.index());
    assert_ne!(new, old);
    assert_eq!(wheel.cancel(old), None);
    assert!(!wheel.reset(old, 100));
    assert_eq!(wheel.deadline(old), None);
    assert_eq!(wheel.deadline(new), Some(20));
    assert_eq!(wheel.len(), 1);

    let gone = wheel.insert(30, 3);
    assert_eq!(wheel.cancel(gone), Some(3));
    assert_eq!(wheel.cancel(gone), None);

    // Handles from another, larger wheel are simply out of range.
    let mut big = TimerWheel::new(0);
    let foreign = (0..10)
        .map(|i| big.insert(i, i))
        .last()
        .expect("ten inserted");
    assert_eq!(wheel.cancel(foreign), None);
    assert_eq!(drain(&mut wheel, 1_000), [(new, 2)]);
}

#[test]
fn deadline_in_the_past_fires_on_next_poll() {
    let mut wheel = TimerWheel::new(1_000_000);
    let later = wheel.insert(1_000_001, 1);
    let past = wheel.insert(3, 2);
    let now = wheel.insert(1_000_000, 3);
    assert_eq!(wheel.next_expiry(), Some(3));
    let due: Vec<_> = drain(&mut wheel, 1_000_000);
    assert_eq!(due.len(), 2);
    assert!(due.contains(&(past, 2)) && due.contains(&(now, 3)));
    assert_eq!(wheel.next_expiry(), Some(1_000_001));
    assert_eq!(drain(&mut wheel, 2_000_000), [(later, 1)]);
}

#[test]
fn clock_never_goes_backwards() {
    let mut wheel = TimerWheel::new(500);
    let id = wheel.insert(600, 1);
    assert!(wheel.poll_expired(100).is_none());
    assert_eq!(wheel.now(), 500);
    assert_eq!(wheel.poll_expired(600), Some((id, 1)));
}

#[test]
fn huge_advance_is_cheap_and_ordered() {
    const HOUR: u64 = 3_600_000;
    let start = 42;
    let mut wheel = TimerWheel::new(start);
    let deadlines = [
        start + HOUR,
        start + 24 * HOUR,
        start + 30 * 24 * HOUR,
        start + RANGE_MS - 1,
        start + RANGE_MS + 5,
        start + 10 * RANGE_MS + 77, // ~22 years: beyond the wheel's range
        u64::MAX - 1,
    ];
    for (i, &d) in deadlines.iter().enumerate().rev() {
        wheel.insert(d, i as u64);
    }
    let clamped = wheel.insert(u64::MAX, 99);
    assert_eq!(wheel.deadline(clamped), Some(u64::MAX - 1));

    // A single jump over decades; ticking ms by ms would never finish.
    let fired: Vec<u64> = drain(&mut wheel, start + 20 * RANGE_MS)
        .into_iter()
        .map(|(_, p)| p)
        .collect();
    assert_eq!(fired, [0, 1, 2, 3, 4, 5]);
    assert_eq!(wheel.now(), start + 20 * RANGE_MS);

    // Precise firing of the far timers still holds after the jump.
    assert!(wheel.poll_expired(u64::MAX - 2).is_none());
    let mut last: Vec<u64> = drain(&mut wheel, u64::MAX)
        .into_iter()
        .map(|(_, p)| p)
        .collect();
    last.sort_unstable();
    assert_eq!(last, [6, 99]);
    assert!(wheel.is_empty());
    assert!(wheel.poll_expired(u64::MAX).is_none());
}

#[test]
fn far_timers_fire_exactly_after_many_idle_jumps() {
    let mut rng = SplitMix(7);
    let start = 123_456_789;
    let mut wheel = TimerWheel::new(start);
    let mut expected = BTreeMap::new();
    for i in 0..200 {
        let d = start + rng.below(3 * RANGE_MS);
        expected.insert((d, i), wheel.insert(d, i));
    }
    let mut polls = 0;
    while let Some(at) = wheel.next_expiry() {
        polls += 1;
        while let Some((id, i)) = wheel.poll_expired(at) {
            let (&(d, j), &want) = expected.iter().next().expect("model has it");
            assert_eq!((d, j, want), (at, i, id));
            expected.remove(&(d, j));
        }
    }
    assert!(expected.is_empty());
    // Each of the 200 timers needs at most one wake-up per level.
    assert!(polls <= 200 * 7, "{polls} polls");
}

#[test]
fn million_timers_half_cancelled_fire_once_on_time() {
    const N: usize = 1_000_000;
    const SPREAD: u64 = 100_000;
    let start = 987_654_321;
    let mut rng = SplitMix(1);
    let mut wheel = TimerWheel::with_capacity(start, N);
    let mut deadlines = Vec::with_capacity(N);
    let mut ids = Vec::with_capacity(N);
    for i in 0..N {
        let d = start + 1 + rng.below(SPREAD);
        deadlines.push(d);
        ids.push(wheel.insert(d, i as u64));
    }
    assert_eq!(wheel.len(), N);
    assert!(wheel.capacity() >= N);

    let mut cancelled = vec![false; N];
    for i in (0..N).filter(|i| i % 2 == 1) {
        assert_eq!(wheel.cancel(ids[i]), Some(i as u64));
        cancelled[i] = true;
    }
    assert_eq!(wheel.len(), N / 2);

    let mut fired_at = vec![0u64; N];
    let mut fired = 0;
    let mut now = start;
    while !wheel.is_empty() {
        now += 1;
        while let Some((id, i)) = wheel.poll_expired(now) {
            let i = i as usize;
            assert_eq!(id, ids[i]);
            assert!(!cancelled[i], "cancelled timer {i} fired");
            assert_eq!(fired_at[i], 0, "timer {i} fired twice");
            assert!(deadlines[i] <= now && now <= deadlines[i] + 1);
            fired_at[i] = now;
            fired += 1;
        }
    }
    assert_eq!(fired, N / 2);
    assert!(now <= start + SPREAD);
}

#[test]
fn idle_timeouts_with_many_resets_fire_on_time() {
    const CONNS: usize = 20_000;
    const TIMEOUT: u64 = 700;
    let mut rng = SplitMix(11);
    let start = 5_000_000_017;
    let mut wheel = TimerWheel::new(start);
    let mut deadline = vec![start + TIMEOUT; CONNS];
    let mut ids: Vec<TimerId> = (0..CONNS)
        .map(|c| wheel.insert(start + TIMEOUT, c as u64))
        .collect();
    let mut fired = 0;
    for now in start + 1..start + 3_000 {
        for _ in 0..40 {
            let c = rng.below(CONNS as u64) as usize;
            match rng.below(8) {
                // Connection closed and a new one took its place.
                0 => {
                    assert_eq!(wheel.cancel(ids[c]), Some(c as u64));
                    deadline[c] = now + rng.below(3 * TIMEOUT);
                    ids[c] = wheel.insert(deadline[c], c as u64);
                }
                _ => {
                    deadline[c] = now + TIMEOUT + rng.below(100);
                    assert!(wheel.reset(ids[c], deadline[c]));
                }
            }
        }
        while let Some((id, c)) = wheel.poll_expired(now) {
            let c = c as usize;
            assert_eq!(id, ids[c]);
            assert_eq!(deadline[c], now, "connection {c}");
            fired += 1;
            deadline[c] = now + TIMEOUT;
            ids[c] = wheel.insert(deadline[c], c as u64);
        }
        assert_eq!(wheel.len(), CONNS);
    }
    assert!(fired > CONNS / 2, "only {fired} expiries");
}

#[test]
fn pops_are_in_deadline_order() {
    let mut rng = SplitMix(3);
    // Coarse steps: each drain is ordered and leaves nothing due behind.
    let mut wheel = TimerWheel::new(77);
    for _ in 0..20_000 {
        let d = 77 + rng.below(1 << 22);
        wheel.insert(d, d);
    }
    let mut now = 77;
    let mut last = 0;
    while !wheel.is_empty() {
        now += 1 + rng.below(5_000);
        for (_, d) in drain(&mut wheel, now) {
            assert!(last <= d && d <= now);
            last = d;
        }
        assert!(wheel.next_expiry().is_none_or(|next| next > now));
    }
    // One jump over everything: still ordered.
    for _ in 0..20_000 {
        let d = now + rng.below(1 << 30);
        wheel.insert(d, d);
    }
    let popped: Vec<u64> = drain(&mut wheel, u64::MAX)
        .into_iter()
        .map(|(_, d)| d)
        .collect();
    assert_eq!(popped.len(), 20_000);
    assert!(popped.windows(2).all(|w| w[0] <= w[1]));
}

// ---------------------------------------------------------------------------
// Model-based property test.

#[derive(Clone, Debug)]
enum Op {
    Insert(i64),
    Cancel(usize),
    Reset(usize, i64),
    /// Advance the clock by the step and drain everything due.
    Advance(u64),
    /// Advance the clock by the step and pop at most one timer.
    PollOne(u64),
}

/// Deadline offsets hitting every level, its boundaries, the past, and the
/// beyond-range region.
fn offset() -> impl Strategy<Value = i64> {
    let boundary = (1u32..=6, -2i64..=2).prop_map(|(level, d)| (1i64 << (6 * level)) + d);
    prop_oneof![
        -300i64..=0,
        0i64..130,
        boundary,
        0i64..1 << 20,
        0i64..1 << 38,
    ]
}

fn step() -> impl Strategy<Value = u64> {
    prop_oneof![
        0u64..3,
        0u64..130,
        0u64..10_000,
        0u64..1 << 22,
        0u64..1 << 37
    ]
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => offset().prop_map(Op::Insert),
        2 => any::<usize>().prop_map(Op::Cancel),
        2 => (any::<usize>(), offset()).prop_map(|(i, o)| Op::Reset(i, o)),
        2 => step().prop_map(Op::Advance),
        1 => step().prop_map(Op::PollOne),
    ]
}

fn start() -> impl Strategy<Value = u64> {
    prop_oneof![
        Just(0u64),
        0u64..1 << 40,
        (RANGE_MS - 200)..(RANGE_MS + 200),
        (1u64 << 24) - 100..(1u64 << 24),
    ]
}

#[derive(Clone, Copy, Debug)]
struct Live {
    deadline: u64,
    /// `max(deadline, wheel.now())` when armed: the order the wheel promises.
    effective: u64,
    payload: u64,
}

/// Reference: armed timers keyed by handle, in insertion order.
#[derive(Default)]
struct Model {
    now: u64,
    live: BTreeMap<(u32, u32), Live>,
    issued: Vec<TimerId>,
}

fn key(id: TimerId) -> (u32, u32) {
    (id.index(), id.generation())
}

fn shifted(base: u64, offset: i64) -> u64 {
    base.saturating_add_signed(offset)
}

impl Model {
    fn min_effective(&self) -> Option<u64> {
        self.live.values().map(|l| l.effective).min()
    }

    fn check_pop(&mut self, popped: Option<(TimerId, u64)>) -> Result<bool, TestCaseError> {
        let Some((id, payload)) = popped else {
            let due = self
                .live
                .values()
                .filter(|l| l.deadline <= self.now)
                .count();
            prop_assert_eq!(due, 0, "timers due at {} were not returned", self.now);
            return Ok(false);
        };
        let min = self.min_effective();
        let live = self.live.remove(&key(id));
        prop_assert!(live.is_some(), "popped {:?} which is not armed", id);
        let Some(live) = live else { return Ok(false) };
        prop_assert_eq!(live.payload, payload);
        prop_assert!(live.deadline <= self.now, "fired early");
        prop_assert_eq!(Some(live.effective), min, "fired out of order");
        Ok(true)
    }

    fn check_state(&self, wheel: &TimerWheel<u64>) -> Result<(), TestCaseError> {
        prop_assert_eq!(wheel.len(), self.live.len());
        let next = wheel.next_expiry();
        let earliest = self.live.values().map(|l| l.deadline).min();
        prop_assert_eq!(next.is_some(), earliest.is_some());
        if let (Some(next), Some(earliest)) = (next, earliest) {
            prop_assert!(
                next <= earliest,
                "next_expiry {} > earliest {}",
                next,
                earliest
            );
            // A bound at or before now() means "poll now"; it must not
            // claim that unless something really is due.
            prop_assert_eq!(next <= wheel.now(), earliest <= wheel.now());
        }
        Ok(())
    }
}

fn run(start: u64, ops: Vec<Op>) -> Result<(), TestCaseError> {
    let mut wheel = TimerWheel::new(start);
    let mut model = Model {
        now: start,
        ..Model::default()
    };
    let mut payload = 0u64;
    for op in ops {
        match op {
            Op::Insert(offset) => {
                payload += 1;
                let deadline = shifted(model.now, offset);
                let effective = deadline.max(wheel.now());
                let id = wheel.insert(deadline, payload);
                let live = Live {
                    deadline,
                    effective,
                    payload,
                };
                prop_assert!(
                    model.live.insert(key(id), live).is_none(),
                    "handle reused while armed"
                );
                model.issued.push(id);
            }
            Op::Cancel(pick) if !model.issued.is_empty() => {
                let id = model.issued[pick % model.issued.len()];
                let expected = model.live.remove(&key(id)).map(|l| l.payload);
                prop_assert_eq!(wheel.cancel(id), expected);
                prop_assert_eq!(wheel.deadline(id), None);
            }
            Op::Reset(pick, offset) if !model.issued.is_empty() => {
                let id = model.issued[pick % model.issued.len()];
                let deadline = shifted(model.now, offset);
                let effective = deadline.max(wheel.now());
                let armed = model.live.get_mut(&key(id));
                let expected = armed.is_some();
                if let Some(live) = armed {
                    live.deadline = deadline;
                    live.effective = effective;
                }
                prop_assert_eq!(wheel.reset(id, deadline), expected);
                prop_assert_eq!(wheel.deadline(id), expected.then_some(deadline));
            }
            Op::Cancel(_) | Op::Reset(..) => {}
            Op::Advance(step) => {
                model.now += step;
                while model.check_pop(wheel.poll_expired(model.now))? {}
                prop_assert_eq!(wheel.now(), model.now);
            }
            Op::PollOne(step) => {
                model.now += step;
                model.check_pop(wheel.poll_expired(model.now))?;
                prop_assert!(wheel.now() <= model.now);
            }
        }
        model.check_state(&wheel)?;
    }
    // Whatever is left fires, in order, once its time comes.
    model.now = u64::MAX;
    while model.check_pop(wheel.poll_expired(u64::MAX))? {}
    prop_assert!(wheel.is_empty());
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 1024, ..ProptestConfig::default() })]

    #[test]
    fn matches_reference_model(start in start(), ops in prop::collection::vec(op(), 1..150)) {
        run(start, ops)?;
    }
}
