//! `--plot`: throughput and latency percentiles over time as an SVG picture,
//! two panels sharing the time axis (latency on a log scale, so a tail spike
//! does not flatten the median).

use std::fmt::Write as _;

use crate::run::Second;

const W: f64 = 900.0;
const LEFT: f64 = 80.0;
const RIGHT: f64 = 150.0;
const TOP: f64 = 50.0;
const PANEL: f64 = 200.0;
const GAP: f64 = 60.0;
const BOTTOM: f64 = 50.0;

/// A "nice" step (1, 2 or 5 × 10^k) giving about `n` ticks up to `max`.
fn step(max: f64, n: f64) -> f64 {
    let raw = (max / n).max(f64::MIN_POSITIVE);
    let mag = 10f64.powf(raw.log10().floor());
    let f = raw / mag;
    mag * if f <= 1.0 {
        1.0
    } else if f <= 2.0 {
        2.0
    } else if f <= 5.0 {
        5.0
    } else {
        10.0
    }
}

fn short(v: f64) -> String {
    if v >= 1e6 {
        format!("{}M", trim(v / 1e6))
    } else if v >= 1e3 {
        format!("{}k", trim(v / 1e3))
    } else {
        trim(v)
    }
}

fn trim(v: f64) -> String {
    let s = format!("{v:.2}");
    s.trim_end_matches('0').trim_end_matches('.').to_string()
}

fn polyline(s: &mut String, points: &[(f64, f64)], color: &str, width: f64) {
    let pts: Vec<String> = points
        .iter()
        .map(|(x, y)| format!("{x:.1},{y:.1}"))
        .collect();
    let _ = writeln!(
        s,
        r#"<polyline fill="none" stroke="{color}" stroke-width="{width}" stroke-linejoin="round" points="{}"/>"#,
        pts.join(" ")
    );
    if points.len() == 1 {
        let (x, y) = points[0];
        let _ = writeln!(
            s,
            r#"<circle cx="{x:.1}" cy="{y:.1}" r="3" fill="{color}"/>"#
        );
    }
}

/// The picture for `series`, titled `title`.
pub fn svg(title: &str, series: &[Second]) -> String {
    let h = TOP + PANEL * 2.0 + GAP + BOTTOM;
    let plot_w = W - LEFT - RIGHT;
    let t_max = series.last().map_or(1.0, |p| f64::from(p.t)).max(1.0);
    let x = |t: f64| LEFT + plot_w * t / t_max;
    let mut s = String::new();
    let _ = writeln!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{h}" viewBox="0 0 {W} {h}" font-family="sans-serif" font-size="12">"#
    );
    let _ = writeln!(s, r#"<rect width="100%" height="100%" fill="white"/>"#);
    // The title in two lines, split after the server's address.
    let (first, second) = title.split_once(": ").unwrap_or((title, ""));
    let _ = writeln!(
        s,
        r#"<text x="{LEFT}" y="20" font-size="15" font-weight="bold">{}</text>"#,
        escape(first)
    );
    let _ = writeln!(
        s,
        r##"<text x="{LEFT}" y="38" font-size="13" fill="#444">{}</text>"##,
        escape(second)
    );

    // Throughput panel.
    let top1 = TOP;
    let rps_max = series.iter().map(|p| p.rps).fold(0.0, f64::max).max(1.0);
    let ystep = step(rps_max, 4.0);
    let ytop = (rps_max / ystep).ceil() * ystep;
    let y1 = |v: f64| top1 + PANEL - PANEL * v / ytop;
    frame(&mut s, top1, "requests / s");
    let mut v = 0.0;
    while v <= ytop + ystep * 0.01 {
        grid(&mut s, y1(v), &short(v));
        v += ystep;
    }
    let pts: Vec<(f64, f64)> = series
        .iter()
        .map(|p| (x(f64::from(p.t)), y1(p.rps)))
        .collect();
    polyline(&mut s, &pts, "#1f77b4", 2.0);
    legend(&mut s, top1 + 20.0, &[("#1f77b4", "requests/s")]);

    // Latency panel, log scale.
    let top2 = TOP + PANEL + GAP;
    let positive = |v: f64| v.max(0.1);
    let lo = series
        .iter()
        .map(|p| positive(p.p50_us))
        .fold(f64::INFINITY, f64::min);
    let hi = series
        .iter()
        .map(|p| positive(p.p999_us))
        .fold(0.0, f64::max);
    let (lo, hi) = if series.is_empty() {
        (1.0, 10.0)
    } else {
        (lo, hi)
    };
    let dec_lo = lo.log10().floor();
    let dec_hi = hi.log10().ceil().max(dec_lo + 1.0);
    let y2 = |v: f64| {
        let f = (positive(v).log10() - dec_lo) / (dec_hi - dec_lo);
        top2 + PANEL - PANEL * f
    };
    frame(&mut s, top2, "latency µs (log)");
    let mut d = dec_lo;
    while d <= dec_hi + 1e-9 {
        let v = 10f64.powf(d);
        grid(&mut s, y2(v), &short(v));
        for m in [2.0, 5.0] {
            if d + 1.0 <= dec_hi + 1e-9 {
                let mv = v * m;
                let _ = writeln!(
                    s,
                    r##"<line x1="{LEFT}" x2="{:.1}" y1="{y:.1}" y2="{y:.1}" stroke="#eee"/>"##,
                    LEFT + plot_w,
                    y = y2(mv)
                );
            }
        }
        d += 1.0;
    }
    let lines = [
        (
            "#2ca02c",
            "p50",
            Box::new(|p: &Second| p.p50_us) as Box<dyn Fn(&Second) -> f64>,
        ),
        ("#ff7f0e", "p99", Box::new(|p: &Second| p.p99_us)),
        ("#d62728", "p99.9", Box::new(|p: &Second| p.p999_us)),
    ];
    for (color, _, f) in &lines {
        let pts: Vec<(f64, f64)> = series
            .iter()
            .map(|p| (x(f64::from(p.t)), y2(f(p))))
            .collect();
        polyline(&mut s, &pts, color, 2.0);
    }
    let names: Vec<(&str, &str)> = lines.iter().map(|(c, n, _)| (*c, *n)).collect();
    legend(&mut s, top2 + 20.0, &names);

    // Shared time axis.
    let tstep = step(t_max, 10.0).max(1.0);
    let mut t = 0.0;
    while t <= t_max + 1e-9 {
        for top in [top1, top2] {
            let _ = writeln!(
                s,
                r##"<line x1="{xv:.1}" x2="{xv:.1}" y1="{top}" y2="{b}" stroke="#f0f0f0"/>"##,
                xv = x(t),
                b = top + PANEL
            );
        }
        let _ = writeln!(
            s,
            r#"<text x="{:.1}" y="{:.1}" text-anchor="middle">{}</text>"#,
            x(t),
            top2 + PANEL + 18.0,
            trim(t)
        );
        t += tstep;
    }
    let _ = writeln!(
        s,
        r#"<text x="{:.1}" y="{:.1}" text-anchor="middle">seconds</text>"#,
        LEFT + plot_w / 2.0,
        top2 + PANEL + 38.0
    );
    s.push_str("</svg>\n");
    s
}

fn frame(s: &mut String, top: f64, label: &str) {
    let plot_w = W - LEFT - RIGHT;
    let _ = writeln!(
        s,
        r##"<rect x="{LEFT}" y="{top}" width="{plot_w}" height="{PANEL}" fill="none" stroke="#999"/>"##
    );
    let _ = writeln!(
        s,
        r#"<text x="20" y="{:.1}" transform="rotate(-90 20 {:.1})" text-anchor="middle">{}</text>"#,
        top + PANEL / 2.0,
        top + PANEL / 2.0,
        escape(label)
    );
}

fn grid(s: &mut String, y: f64, label: &str) {
    let plot_w = W - LEFT - RIGHT;
    let _ = writeln!(
        s,
        r##"<line x1="{LEFT}" x2="{:.1}" y1="{y:.1}" y2="{y:.1}" stroke="#ddd"/>"##,
        LEFT + plot_w
    );
    let _ = writeln!(
        s,
        r#"<text x="{:.1}" y="{:.1}" text-anchor="end">{label}</text>"#,
        LEFT - 6.0,
        y + 4.0
    );
}

fn legend(s: &mut String, y: f64, items: &[(&str, &str)]) {
    let x = W - RIGHT + 15.0;
    for (i, (color, name)) in items.iter().enumerate() {
        let yy = y + 20.0 * i as f64;
        let _ = writeln!(
            s,
            r#"<line x1="{x}" x2="{:.1}" y1="{yy:.1}" y2="{yy:.1}" stroke="{color}" stroke-width="3"/>"#,
            x + 24.0
        );
        let _ = writeln!(
            s,
            r#"<text x="{:.1}" y="{:.1}">{}</text>"#,
            x + 30.0,
            yy + 4.0,
            escape(name)
        );
    }
}

fn escape(t: &str) -> String {
    t.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}
