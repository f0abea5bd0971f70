//! Drives a [`Generator`] through one run: dials (at once or at a connect rate),
//! warms up, measures, samples one point per second, and watches for a failed
//! check or a stall.

use std::time::{Duration, Instant};

use crate::generator::Generator;
use crate::stats::{Counter, Window};
use crate::sys;

/// How long a run lasts and how it starts.
#[derive(Debug, Clone)]
pub struct RunPlan {
    /// Connections to open.
    pub conns: u32,
    /// Connections opened per second; `None` opens them all at once.
    pub connect_rate: Option<f64>,
    /// Load before the figures count.
    pub warmup: Duration,
    /// The measured span.
    pub duration: Duration,
    /// No response for this long while requests are in flight fails the run.
    pub stall_limit: Duration,
}

/// One second of the measured span.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Second {
    /// Seconds since the measured span began (1 for the first).
    pub t: u32,
    /// Requests completed in that second.
    pub rps: f64,
    /// Median latency in that second, µs.
    pub p50_us: f64,
    /// 99th percentile latency in that second, µs.
    pub p99_us: f64,
    /// 99.9th percentile latency in that second, µs.
    pub p999_us: f64,
    /// Errors in that second.
    pub errors: u64,
    /// Connections up at its end.
    pub up: u64,
}

/// How a run ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Every response checked out.
    Passed,
    /// A response failed its check (the first failure).
    Failed(String),
    /// Requests were in flight and none was answered for the stall limit.
    Stalled {
        /// Requests in flight then.
        in_flight: u64,
    },
    /// No connection could be opened.
    NoConnection,
}

impl Verdict {
    /// The process exit status for this verdict: 0 passed, 1 failed check,
    /// 3 stall, 4 no connection (2 is for usage errors).
    pub fn exit_code(&self) -> u8 {
        match self {
            Verdict::Passed => 0,
            Verdict::Failed(_) => 1,
            Verdict::Stalled { .. } => 3,
            Verdict::NoConnection => 4,
        }
    }
}

/// What a run measured.
#[derive(Debug, Clone)]
pub struct Outcome {
    /// The measured span (after warm-up).
    pub window: Window,
    /// One entry per second of it.
    pub series: Vec<Second>,
    /// Connections up at the end.
    pub up: u64,
    /// Most connections up at once.
    pub peak_up: u64,
    /// The generator's own CPU time over the measured span.
    pub cpu: Duration,
    /// The generator's RSS before dialing and at the end, bytes.
    pub rss_before: u64,
    /// See `rss_before`.
    pub rss_after: u64,
    /// How it ended.
    pub verdict: Verdict,
}

/// What the live display shows, once a second.
#[derive(Debug, Clone, Copy)]
pub struct Progress {
    /// Time since the run began.
    pub elapsed: Duration,
    /// True during warm-up.
    pub warming: bool,
    /// Connections up.
    pub up: u64,
    /// Requests per second over the last second.
    pub rps: f64,
    /// p99 latency so far in the measured span (or warm-up), µs.
    pub p99_us: f64,
    /// Errors so far.
    pub errors: u64,
}

const POLL: Duration = Duration::from_millis(20);

/// Runs `plan` on `generator`; `progress` is called once a second.
pub fn drive(
    generator: &mut Generator,
    plan: &RunPlan,
    mut progress: impl FnMut(&Progress),
) -> Outcome {
    let rss_before = sys::rss_bytes();
    let start = Instant::now();
    let measure_at = start + plan.warmup;
    let end_at = measure_at + plan.duration;
    let mut base = generator.snapshot();
    let mut base_cpu = sys::cpu_time();
    let mut measuring = plan.warmup.is_zero();
    let mut last_second = base.clone();
    let mut next_second = start + Duration::from_secs(1);
    let mut series = Vec::new();
    let mut peak_up = 0;
    let mut last_requests = 0;
    let mut last_answer = start;
    let mut verdict = Verdict::Passed;
    loop {
        let now = Instant::now();
        let wanted = match plan.connect_rate {
            Some(rate) => ((now - start).as_secs_f64() * rate).ceil() as u64 + 1,
            None => u64::from(plan.conns),
        }
        .min(u64::from(plan.conns)) as u32;
        if wanted > generator.dialed() && generator.dial(wanted - generator.dialed()).is_err() {
            break;
        }
        if let Some(why) = generator.control().failure() {
            verdict = Verdict::Failed(why);
            break;
        }
        let q = generator.quick();
        peak_up = peak_up.max(q.up);
        let requests = q.counters.get(Counter::Requests);
        if requests != last_requests || q.in_flight == 0 {
            last_requests = requests;
            last_answer = now;
        } else if now - last_answer >= plan.stall_limit {
            verdict = Verdict::Stalled {
                in_flight: q.in_flight,
            };
            break;
        }
        if !measuring && now >= measure_at {
            measuring = true;
            base = generator.snapshot();
            base_cpu = sys::cpu_time();
            last_second = base.clone();
            next_second = base.at + Duration::from_secs(1);
        }
        if now >= next_second || now >= end_at {
            let snap = generator.snapshot();
            let second = snap.since(&last_second);
            let so_far = snap.since(&base);
            if measuring && second.elapsed >= Duration::from_millis(500) {
                series.push(Second {
                    t: series.len() as u32 + 1,
                    rps: second.rps(),
                    p50_us: second.latency_us(0.5),
                    p99_us: second.latency_us(0.99),
                    p999_us: second.latency_us(0.999),
                    errors: second.counters.errors(),
                    up: snap.up,
                });
            }
            progress(&Progress {
                elapsed: now - start,
                warming: !measuring,
                up: snap.up,
                rps: second.rps(),
                p99_us: so_far.latency_us(0.99),
                errors: so_far.counters.errors(),
            });
            last_second = snap;
            next_second += Duration::from_secs(1);
        }
        if now >= end_at {
            break;
        }
        std::thread::sleep(POLL);
    }
    let mut end = generator.snapshot();
    generator.control().stop();
    // The loops publish latencies every tick: wait for the last ones.
    std::thread::sleep(crate::handler::PUBLISH_EVERY + crate::handler::TICK * 2);
    end.latency = generator.snapshot().latency;
    let cpu = sys::cpu_time().saturating_sub(base_cpu);
    let window = end.since(&base);
    if verdict == Verdict::Passed && peak_up == 0 && end.up == 0 && plan.conns > 0 {
        verdict = Verdict::NoConnection;
    }
    Outcome {
        window,
        series,
        up: end.up,
        peak_up: peak_up.max(end.up),
        cpu,
        rss_before,
        rss_after: sys::rss_bytes(),
        verdict,
    }
}
