//! Timing wheel vs a lazy-cancel `BinaryHeap` timer queue.
//!
//! `cargo bench -p tether-bench --bench timer` (plain `main`, no harness). Every figure is the
//! median of 5 runs on a virtual clock; random inputs are generated outside
//! the timed regions from a fixed seed, so both queues see the same work.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::hint::black_box;
use std::time::{Duration, Instant};

use tether::timer::{TimerId, TimerWheel};

const RUNS: usize = 5;
/// Timers in scenarios (a) and (b).
const N: usize = 1_000_000;
/// Deadlines are spread over 1 ms ..= 60 s.
const MAX_DEADLINE_MS: u64 = 60_000;
/// Scenario (c): connections, idle timeout, virtual run time, traffic rate.
const CONNS: usize = 100_000;
const IDLE_TIMEOUT_MS: u64 = 10_000;
const IDLE_RUN_MS: u64 = 30_000;
const RESETS_PER_MS: usize = 100;

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

    fn shuffle<T>(&mut self, items: &mut [T]) {
        for i in (1..items.len()).rev() {
            let j = self.below(i as u64 + 1) as usize;
            items.swap(i, j);
        }
    }
}

/// The usual alternative: a min-heap of `(deadline, seq)` where cancelling
/// only marks `seq` in a `Vec<bool>` and stale entries are skipped when they
/// reach the top.
struct HeapTimers {
    heap: BinaryHeap<Reverse<(u64, u64)>>,
    cancelled: Vec<bool>,
}

impl HeapTimers {
    fn with_capacity(cap: usize) -> Self {
        HeapTimers {
            heap: BinaryHeap::with_capacity(cap),
            cancelled: Vec::with_capacity(cap),
        }
    }

    fn insert(&mut self, deadline: u64) -> u64 {
        let seq = self.cancelled.len() as u64;
        self.cancelled.push(false);
        self.heap.push(Reverse((deadline, seq)));
        seq
    }

    fn cancel(&mut self, seq: u64) {
        self.cancelled[seq as usize] = true;
    }

    fn poll_expired(&mut self, now: u64) -> Option<u64> {
        while let Some(&Reverse((deadline, seq))) = self.heap.peek() {
            if deadline > now {
                return None;
            }
            self.heap.pop();
            if !self.cancelled[seq as usize] {
                self.cancelled[seq as usize] = true;
                return Some(seq);
            }
        }
        None
    }
}

fn median(mut samples: Vec<Duration>) -> Duration {
    samples.sort_unstable();
    samples[samples.len() / 2]
}

/// Runs the two sides alternately so that noise from other processes hits
/// both alike, and returns each side's median.
fn measure_pair(
    mut wheel: impl FnMut() -> Duration,
    mut heap: impl FnMut() -> Duration,
) -> (Duration, Duration) {
    let (mut w, mut h) = (Vec::new(), Vec::new());
    for _ in 0..RUNS {
        w.push(wheel());
        h.push(heap());
    }
    (median(w), median(h))
}

fn deadlines(seed: u64) -> Vec<u64> {
    let mut rng = SplitMix(seed);
    (0..N).map(|_| 1 + rng.below(MAX_DEADLINE_MS)).collect()
}

/// (a) insert N timers, then cancel all of them in `order`.
fn insert_cancel(deadlines: &[u64], order: &[usize]) -> (Duration, Duration) {
    let wheel = || {
        let mut wheel = TimerWheel::with_capacity(0, N);
        let mut ids: Vec<TimerId> = Vec::with_capacity(N);
        let start = Instant::now();
        for (i, &d) in deadlines.iter().enumerate() {
            ids.push(wheel.insert(d, i as u64));
        }
        for &i in order {
            black_box(wheel.cancel(ids[i]));
        }
        let elapsed = start.elapsed();
        assert!(wheel.is_empty());
        elapsed
    };
    let heap = || {
        let mut heap = HeapTimers::with_capacity(N);
        let mut ids: Vec<u64> = Vec::with_capacity(N);
        let start = Instant::now();
        for &d in deadlines {
            ids.push(heap.insert(d));
        }
        for &i in order {
            heap.cancel(ids[i]);
        }
        let elapsed = start.elapsed();
        black_box(&heap);
        elapsed
    };
    measure_pair(wheel, heap)
}

/// What lazy cancellation defers: popping the N cancelled entries later.
fn heap_purge(deadlines: &[u64]) -> Duration {
    let mut runs = Vec::new();
    for _ in 0..RUNS {
        let mut heap = HeapTimers::with_capacity(N);
        for &d in deadlines {
            let seq = heap.insert(d);
            heap.cancel(seq);
        }
        let start = Instant::now();
        assert!(heap.poll_expired(u64::MAX).is_none());
        runs.push(start.elapsed());
    }
    median(runs)
}

/// (b) insert N timers, then step the clock 1 ms at a time to the last
/// deadline, draining each tick. Returns (insert, expire) times.
fn expire_all(deadlines: &[u64]) -> [(Duration, Duration); 2] {
    let mut wheel_insert = Vec::new();
    let mut heap_insert = Vec::new();
    let wheel = || {
        let mut wheel = TimerWheel::with_capacity(0, N);
        let start = Instant::now();
        for (i, &d) in deadlines.iter().enumerate() {
            wheel.insert(d, i as u64);
        }
        wheel_insert.push(start.elapsed());
        let start = Instant::now();
        let mut fired = 0usize;
        for now in 1..=MAX_DEADLINE_MS {
            while let Some((_, payload)) = wheel.poll_expired(now) {
                black_box(payload);
                fired += 1;
            }
        }
        let elapsed = start.elapsed();
        assert_eq!(fired, N);
        elapsed
    };
    let heap = || {
        let mut heap = HeapTimers::with_capacity(N);
        let start = Instant::now();
        for &d in deadlines {
            heap.insert(d);
        }
        heap_insert.push(start.elapsed());
        let start = Instant::now();
        let mut fired = 0usize;
        for now in 1..=MAX_DEADLINE_MS {
            while let Some(seq) = heap.poll_expired(now) {
                black_box(seq);
                fired += 1;
            }
        }
        let elapsed = start.elapsed();
        assert_eq!(fired, N);
        elapsed
    };
    let (wheel_expire, heap_expire) = measure_pair(wheel, heap);
    [
        (median(wheel_insert), wheel_expire),
        (median(heap_insert), heap_expire),
    ]
}

/// (c) idle timeouts: CONNS connections each armed IDLE_TIMEOUT_MS ahead;
/// every virtual ms RESETS_PER_MS random ones see traffic and re-arm, and
/// the due ones are drained (and re-armed, as a reconnect would).
/// Returns (wheel, heap, number of re-arms, number of expiries).
fn idle_timeouts() -> (Duration, Duration, usize, usize) {
    let mut rng = SplitMix(3);
    let traffic: Vec<u32> = (0..IDLE_RUN_MS as usize * RESETS_PER_MS)
        .map(|_| rng.below(CONNS as u64) as u32)
        .collect();
    let mut fired_wheel = 0;
    let mut fired_heap = 0;
    let wheel = || {
        let mut wheel = TimerWheel::with_capacity(0, CONNS);
        let mut ids: Vec<TimerId> = (0..CONNS)
            .map(|c| wheel.insert(IDLE_TIMEOUT_MS, c as u32))
            .collect();
        let mut fired = 0;
        let start = Instant::now();
        for (tick, batch) in traffic.chunks(RESETS_PER_MS).enumerate() {
            let now = tick as u64 + 1;
            for &c in batch {
                black_box(wheel.reset(ids[c as usize], now + IDLE_TIMEOUT_MS));
            }
            while let Some((_, c)) = wheel.poll_expired(now) {
                ids[c as usize] = wheel.insert(now + IDLE_TIMEOUT_MS, c);
                fired += 1;
            }
        }
        let elapsed = start.elapsed();
        fired_wheel = fired;
        elapsed
    };
    let heap = || {
        let mut heap = HeapTimers::with_capacity(CONNS);
        let mut seqs: Vec<u64> = (0..CONNS).map(|_| heap.insert(IDLE_TIMEOUT_MS)).collect();
        let mut owner: Vec<u32> = (0..CONNS as u32).collect();
        let mut fired = 0;
        let start = Instant::now();
        for (tick, batch) in traffic.chunks(RESETS_PER_MS).enumerate() {
            let now = tick as u64 + 1;
            for &c in batch {
                heap.cancel(seqs[c as usize]);
                let seq = heap.insert(now + IDLE_TIMEOUT_MS);
                seqs[c as usize] = seq;
                owner.push(c);
            }
            while let Some(seq) = heap.poll_expired(now) {
                let c = owner[seq as usize];
                let seq = heap.insert(now + IDLE_TIMEOUT_MS);
                seqs[c as usize] = seq;
                owner.push(c);
                fired += 1;
            }
        }
        let elapsed = start.elapsed();
        fired_heap = fired;
        elapsed
    };
    let (wheel, heap) = measure_pair(wheel, heap);
    assert_eq!(
        fired_wheel, fired_heap,
        "both queues must see the same expiries"
    );
    (wheel, heap, traffic.len(), fired_wheel)
}

fn ns_per(d: Duration, ops: usize) -> f64 {
    d.as_nanos() as f64 / ops as f64
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn row(name: &str, unit: &str, wheel: f64, heap: f64) {
    println!(
        "{name:<44} {wheel:>10.1} {heap:>10.1}  {unit:<12} {:>6.1}x",
        heap / wheel
    );
}

fn main() {
    println!("tether timer wheel vs BinaryHeap<Reverse<(deadline, seq)>> with lazy cancellation");
    println!("(cancelled seqs marked in a Vec<bool>); median of {RUNS} runs, N = {N},");
    println!("deadlines uniform in 1..={MAX_DEADLINE_MS} ms\n");
    println!(
        "{:<44} {:>10} {:>10}  {:<12} {:>7}",
        "scenario", "wheel", "heap", "unit", "heap/wheel"
    );

    let deadlines = deadlines(1);
    let fifo: Vec<usize> = (0..N).collect();
    let mut shuffled = fifo.clone();
    SplitMix(2).shuffle(&mut shuffled);

    let (w, h) = insert_cancel(&deadlines, &fifo);
    row(
        "(a) insert + cancel, cancel in insert order",
        "ns/timer",
        ns_per(w, N),
        ns_per(h, N),
    );
    let (w, h) = insert_cancel(&deadlines, &shuffled);
    row(
        "(a) insert + cancel, cancel in random order",
        "ns/timer",
        ns_per(w, N),
        ns_per(h, N),
    );
    let purge = heap_purge(&deadlines);
    row(
        "(a) same, random order, heap incl. dead purge",
        "ns/timer",
        ns_per(w, N),
        ns_per(h + purge, N),
    );

    let [(wi, we), (hi, he)] = expire_all(&deadlines);
    row("(b) insert 1M", "ms", ms(wi), ms(hi));
    row("(b) expire 1M, 1 ms steps to 60 s", "ms", ms(we), ms(he));
    row(
        "(b) expire 1M, per timer",
        "ns/timer",
        ns_per(we, N),
        ns_per(he, N),
    );

    let (w, h, resets, fired) = idle_timeouts();
    row(
        "(c) idle timeouts: re-arm + drain, per re-arm",
        "ns/re-arm",
        ns_per(w, resets),
        ns_per(h, resets),
    );
    row("(c) idle timeouts: whole run", "ms", ms(w), ms(h));

    println!();
    println!(
        "(a) counts one insert plus one cancel per timer. The heap's cancel only marks a flag;"
    );
    println!(
        "    popping its {N} dead entries later costs another {:.1} ns/timer (third row).",
        ns_per(purge, N)
    );
    println!(
        "(c) {CONNS} connections, {IDLE_TIMEOUT_MS} ms idle timeout, {RESETS_PER_MS} re-arms per ms over \
         {IDLE_RUN_MS} ms = {resets} re-arms, {fired} expiries (re-armed on expiry)."
    );
}
