//! The figures of a run, as a table for people and as JSON for tools.

use std::fmt::Write as _;

use crate::run::{Outcome, Verdict};
use crate::stats::Counter;

/// What was run, for the headings.
#[derive(Debug, Clone)]
pub struct Labels {
    /// Protocol and test, e.g. `resp get`.
    pub proto: String,
    /// Server address.
    pub addr: String,
    /// Connections.
    pub conns: u32,
    /// Depth.
    pub depth: u32,
    /// Open-loop rate.
    pub rate: Option<f64>,
    /// Load loops.
    pub loops: usize,
    /// Hold mode.
    pub hold: bool,
    /// Pipelined in batches.
    pub batch: bool,
}

fn verdict_text(v: &Verdict) -> String {
    match v {
        Verdict::Passed => "passed".into(),
        Verdict::Failed(why) => format!("FAILED: {why}"),
        Verdict::Stalled { in_flight } => {
            format!("STALLED: {in_flight} requests in flight, no response for 5 s")
        }
        Verdict::NoConnection => "FAILED: no connection could be opened".into(),
    }
}

fn bytes(n: u64) -> String {
    let n = n as f64;
    if n >= 1e9 {
        format!("{:.2} GB", n / 1e9)
    } else if n >= 1e6 {
        format!("{:.1} MB", n / 1e6)
    } else if n >= 1e3 {
        format!("{:.1} kB", n / 1e3)
    } else {
        format!("{n} B")
    }
}

/// Resident bytes per connection held at the end (hold mode's figure).
pub fn rss_per_conn(o: &Outcome) -> f64 {
    if o.up == 0 {
        return 0.0;
    }
    o.rss_after.saturating_sub(o.rss_before) as f64 / o.up as f64
}

/// Generator CPU microseconds per completed request.
pub fn cpu_us_per_request(o: &Outcome) -> f64 {
    let r = o.window.requests();
    if r == 0 {
        return 0.0;
    }
    o.cpu.as_secs_f64() * 1e6 / r as f64
}

/// What was run, in one line: protocol, server, connections, depth, shape, loops.
pub fn heading(l: &Labels) -> String {
    let shape = match (l.hold, l.rate) {
        (true, _) => "hold".to_string(),
        (false, Some(r)) => format!("open loop {r} req/s"),
        (false, None) if l.batch => "closed loop in batches".to_string(),
        (false, None) => "closed loop".to_string(),
    };
    format!(
        "tether-load {} → {}: {} conns × {} deep, {shape}, {} loop{}",
        l.proto,
        l.addr,
        l.conns,
        l.depth,
        l.loops,
        if l.loops == 1 { "" } else { "s" }
    )
}

/// The final table.
pub fn table(l: &Labels, o: &Outcome) -> String {
    let w = &o.window;
    let c = &w.counters;
    let mut s = String::new();
    let _ = writeln!(s, "{}, {:.1} s", heading(l), w.elapsed.as_secs_f64());
    let _ = writeln!(
        s,
        "  requests     {:>12}   {:>12.0} /s",
        w.requests(),
        w.rps()
    );
    let _ = writeln!(
        s,
        "  latency µs   p50 {:.1}   p90 {:.1}   p99 {:.1}   p99.9 {:.1}   max {:.1}",
        w.latency_us(0.5),
        w.latency_us(0.9),
        w.latency_us(0.99),
        w.latency_us(0.999),
        w.max_us()
    );
    let _ = writeln!(
        s,
        "  errors       {:>12}   refused {}, verify {}, connect {}, closed by server {}",
        c.errors(),
        c.get(Counter::Refused),
        c.get(Counter::VerifyFailures),
        c.get(Counter::ConnectFailures),
        c.get(Counter::Closed)
    );
    let _ = writeln!(
        s,
        "  connections  {:>12}   up at the end (peak {}), {} reconnects, {} requests lost",
        o.up,
        o.peak_up,
        c.get(Counter::Reconnects),
        c.get(Counter::Lost)
    );
    let _ = writeln!(
        s,
        "  bytes        out {}, in {}",
        bytes(c.get(Counter::BytesOut)),
        bytes(c.get(Counter::BytesIn))
    );
    let per_conn = if l.hold {
        format!(" (+{:.0} B per connection held)", rss_per_conn(o))
    } else {
        String::new()
    };
    let _ = writeln!(
        s,
        "  generator    CPU {:.2} s ({:.3} µs/request), RSS {:.1} MiB{per_conn}",
        o.cpu.as_secs_f64(),
        cpu_us_per_request(o),
        o.rss_after as f64 / (1 << 20) as f64,
    );
    let _ = writeln!(s, "  verdict      {}", verdict_text(&o.verdict));
    s
}

fn num(v: f64) -> String {
    if v.is_finite() {
        let r = (v * 1000.0).round() / 1000.0;
        format!("{r}")
    } else {
        "null".into()
    }
}

fn string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for ch in s.chars() {
        match ch {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// The figures as one JSON object.
pub fn json(l: &Labels, o: &Outcome) -> String {
    let w = &o.window;
    let c = &w.counters;
    let mut s = String::from("{\n");
    let mut field = |k: &str, v: String| {
        let _ = writeln!(s, "  {}: {v},", string(k));
    };
    field("proto", string(&l.proto));
    field("addr", string(&l.addr));
    field("conns", l.conns.to_string());
    field("depth", l.depth.to_string());
    field("rate", l.rate.map_or("null".into(), num));
    field("loops", l.loops.to_string());
    field("hold", l.hold.to_string());
    field("batch", l.batch.to_string());
    field("duration_s", num(w.elapsed.as_secs_f64()));
    field("requests", w.requests().to_string());
    field("rps", num(w.rps()));
    field("errors", c.errors().to_string());
    field(
        "errors_by_kind",
        format!(
            "{{\"refused\": {}, \"verify\": {}, \"connect\": {}, \"closed\": {}}}",
            c.get(Counter::Refused),
            c.get(Counter::VerifyFailures),
            c.get(Counter::ConnectFailures),
            c.get(Counter::Closed)
        ),
    );
    field(
        "latency_us",
        format!(
            "{{\"p50\": {}, \"p90\": {}, \"p99\": {}, \"p999\": {}, \"max\": {}, \"mean\": {}}}",
            num(w.latency_us(0.5)),
            num(w.latency_us(0.9)),
            num(w.latency_us(0.99)),
            num(w.latency_us(0.999)),
            num(w.max_us()),
            num(if w.latency.is_empty() {
                0.0
            } else {
                w.latency.mean() / 1000.0
            })
        ),
    );
    for k in [
        Counter::BytesOut,
        Counter::BytesIn,
        Counter::Connects,
        Counter::Reconnects,
        Counter::Lost,
    ] {
        field(k.name(), c.get(k).to_string());
    }
    field("up", o.up.to_string());
    field("peak_up", o.peak_up.to_string());
    field("cpu_s", num(o.cpu.as_secs_f64()));
    field("cpu_us_per_request", num(cpu_us_per_request(o)));
    field("rss_bytes", o.rss_after.to_string());
    field("rss_per_conn_bytes", num(rss_per_conn(o)));
    field("verdict", string(&verdict_text(&o.verdict)));
    let series: Vec<String> = o
        .series
        .iter()
        .map(|p| {
            format!(
                "    {{\"t\": {}, \"rps\": {}, \"p50_us\": {}, \"p99_us\": {}, \"p999_us\": {}, \"errors\": {}, \"up\": {}}}",
                p.t,
                num(p.rps),
                num(p.p50_us),
                num(p.p99_us),
                num(p.p999_us),
                p.errors,
                p.up
            )
        })
        .collect();
    let _ = write!(s, "  \"series\": [\n{}\n  ]\n}}\n", series.join(",\n"));
    s
}
