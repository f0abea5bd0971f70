//! Medians over rounds, ratios against the references, and the markdown tables.

use std::fmt::Write as _;

use super::measure::{Figures, IdleFigures};
use super::servers::ServerKind;

/// One server's results for one case, one per round; a failed run keeps its reason.
pub struct Runs<T> {
    pub kind: ServerKind,
    pub results: Vec<Result<T, String>>,
}

impl<T> Runs<T> {
    pub fn new(kind: ServerKind) -> Runs<T> {
        Runs {
            kind,
            results: Vec::new(),
        }
    }

    pub fn failures(&self) -> usize {
        self.results.iter().filter(|r| r.is_err()).count()
    }

    pub fn successes(&self) -> impl Iterator<Item = &T> {
        self.results.iter().filter_map(|r| r.as_ref().ok())
    }

    /// "tokio", or "tokio (2/3 runs)" when some runs failed.
    pub fn label(&self) -> String {
        let ok = self.successes().count();
        if ok == self.results.len() {
            self.kind.to_string()
        } else {
            format!("{} ({ok}/{} runs)", self.kind, self.results.len())
        }
    }

    /// Why the runs failed, when none succeeded.
    pub fn failure(&self) -> Option<&str> {
        match self.successes().next() {
            Some(_) => None,
            None => self
                .results
                .iter()
                .find_map(|r| r.as_ref().err())
                .map(String::as_str),
        }
    }
}

/// Each figure's median over the successful runs, taken figure by figure.
pub fn median_figures(runs: &Runs<Figures>) -> Option<Figures> {
    let ok: Vec<&Figures> = runs.successes().collect();
    let of = |field: fn(&Figures) -> f64| median(ok.iter().map(|f| field(f)).collect());
    Some(Figures {
        req_per_sec: of(|f| f.req_per_sec)?,
        p50_us: of(|f| f.p50_us)?,
        p99_us: of(|f| f.p99_us)?,
        p999_us: of(|f| f.p999_us)?,
        cpu_us_per_req: of(|f| f.cpu_us_per_req)?,
        allocs_per_req: of(|f| f.allocs_per_req)?,
        peak_rss_bytes: of(|f| f.peak_rss_bytes)?,
    })
}

pub fn median(mut values: Vec<f64>) -> Option<f64> {
    values.sort_by(f64::total_cmp);
    let mid = values.len() / 2;
    match values.len() {
        0 => None,
        n if n % 2 == 1 => Some(values[mid]),
        _ => Some((values[mid - 1] + values[mid]) / 2.0),
    }
}

/// The median over rounds of `field(variant) / field(base)`, each ratio taken
/// between the two runs of one round (adjacent in time, so they share the
/// machine's mood): steadier than the ratio of the two medians.
pub fn paired_ratio<T>(
    variant: &Runs<T>,
    base: &Runs<T>,
    field: impl Fn(&T) -> f64,
) -> Option<f64> {
    let ratios = variant
        .results
        .iter()
        .zip(&base.results)
        .filter_map(|(v, b)| Some(field(v.as_ref().ok()?) / field(b.as_ref().ok()?)))
        .collect();
    median(ratios)
}

/// One line per variant measured with its base (tether-idle with tether), e.g.
/// `tether-idle vs tether, median of per-round ratios: req/s 0.99×, CPU/req 1.01×`.
pub fn variant_lines(runs: &[Runs<Figures>]) -> String {
    let mut out = String::new();
    for variant in runs {
        let Some(base) = variant
            .kind
            .base()
            .and_then(|b| runs.iter().find(|r| r.kind == b))
        else {
            continue;
        };
        let ratio = |field: fn(&Figures) -> f64| {
            paired_ratio(variant, base, field).map_or("–".to_owned(), |r| format!("{r:.3}×"))
        };
        let _ = writeln!(
            out,
            "{} vs {}, median of per-round ratios: req/s {}, CPU µs/req {}, p99 {}, \
             allocs/req {} vs {}",
            variant.kind,
            base.kind,
            ratio(|f| f.req_per_sec),
            ratio(|f| f.cpu_us_per_req),
            ratio(|f| f.p99_us),
            median_figures(variant).map_or("–".into(), |f| format!("{:.2}", f.allocs_per_req)),
            median_figures(base).map_or("–".into(), |f| format!("{:.2}", f.allocs_per_req)),
        );
    }
    out
}

/// The markdown table of one load case: medians, and ratios against raw mio.
pub fn load_table(title: &str, runs: &[Runs<Figures>]) -> String {
    let mio = runs
        .iter()
        .find(|r| r.kind == ServerKind::Mio)
        .and_then(median_figures);
    let mut out = format!("### {title}\n\n");
    out.push_str(
        "| server | req/s | p50 µs | p99 µs | p99.9 µs | CPU µs/req | allocs/req | peak RSS \
         | req/s vs mio | CPU/req vs mio | p99 vs mio |\n\
         | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |\n",
    );
    for server in runs {
        let Some(m) = median_figures(server) else {
            let why = server.failure().unwrap_or("no run");
            let _ = writeln!(
                out,
                "| {} | failed: {why} |{}",
                server.kind,
                " – |".repeat(9)
            );
            continue;
        };
        let ratio = |field: fn(&Figures) -> f64| match &mio {
            Some(base) => format!("{:.2}×", field(&m) / field(base)),
            None => "–".to_owned(),
        };
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {} | {:.2} | {:.2} | {:.1} MiB | {} | {} | {} |",
            server.label(),
            thousands(m.req_per_sec),
            micros(m.p50_us),
            micros(m.p99_us),
            micros(m.p999_us),
            m.cpu_us_per_req,
            m.allocs_per_req,
            m.peak_rss_bytes / (1024.0 * 1024.0),
            ratio(|f| f.req_per_sec),
            ratio(|f| f.cpu_us_per_req),
            ratio(|f| f.p99_us),
        );
    }
    out
}

/// One line per case: the server under test (tether, else tokio) against each
/// other server, e.g. `64B c=100: tether/mio req/s 0.98x cpu 1.02x p99 1.10x; …`.
pub fn summary_line(case: &str, runs: &[Runs<Figures>]) -> String {
    let medians: Vec<(ServerKind, Figures)> = runs
        .iter()
        .filter_map(|r| Some((r.kind, median_figures(r)?)))
        .collect();
    let subject = [ServerKind::Tether, ServerKind::Tokio]
        .into_iter()
        .find_map(|kind| medians.iter().find(|(k, _)| *k == kind));
    let Some(&(subject, s)) = subject else {
        return format!("{case}: nothing to compare");
    };
    if medians.len() < 2 {
        return format!("{case}: only {subject} measured");
    }
    let mut comparisons: Vec<String> = medians
        .iter()
        .filter(|(kind, _)| *kind != subject && kind.base().is_none())
        .map(|(kind, other)| {
            format!(
                "{subject}/{kind} req/s {:.2}x cpu {:.2}x p99 {:.2}x",
                s.req_per_sec / other.req_per_sec,
                s.cpu_us_per_req / other.cpu_us_per_req,
                s.p99_us / other.p99_us,
            )
        })
        .collect();
    // Variants against their base, as paired per-round ratios.
    for variant in runs {
        let Some(base) = variant
            .kind
            .base()
            .and_then(|b| runs.iter().find(|r| r.kind == b))
        else {
            continue;
        };
        let ratio = |field: fn(&Figures) -> f64| {
            paired_ratio(variant, base, field).map_or("–".to_owned(), |r| format!("{r:.3}x"))
        };
        comparisons.push(format!(
            "{}/{} req/s {} cpu {}",
            variant.kind,
            base.kind,
            ratio(|f| f.req_per_sec),
            ratio(|f| f.cpu_us_per_req),
        ));
    }
    format!("{case}: {}", comparisons.join("; "))
}

/// The markdown table of the idle case: server RSS growth per connection, and the
/// server's CPU time and loop wakeups while the connections stay idle.
pub fn idle_table(title: &str, runs: &[Runs<IdleFigures>]) -> String {
    let of = |r: &Runs<IdleFigures>, field: fn(&IdleFigures) -> f64| {
        median(r.successes().map(field).collect())
    };
    let mio = runs
        .iter()
        .find(|r| r.kind == ServerKind::Mio)
        .and_then(|r| of(r, |f| f.rss_per_conn));
    let mut out = format!(
        "### {title}\n\n\
         | server | RSS per connection | vs mio | idle CPU, /proc utime+stime | \
         idle CPU, process clock | loop wakeups/s |\n\
         | --- | ---: | ---: | ---: | ---: | ---: |\n"
    );
    for server in runs {
        let Some(bytes) = of(server, |f| f.rss_per_conn) else {
            let why = server.failure().unwrap_or("no run");
            let _ = writeln!(
                out,
                "| {} | failed: {why} |{}",
                server.kind,
                " – |".repeat(4)
            );
            continue;
        };
        let ratio = mio.map_or("–".to_owned(), |base| format!("{:.1}×", bytes / base));
        let _ = writeln!(
            out,
            "| {} | {} B | {ratio} | {:.0} ms | {:.0} µs | {:.1} |",
            server.label(),
            thousands(bytes),
            of(server, |f| f.cpu_ms).unwrap_or(f64::NAN),
            of(server, |f| f.cpu_us).unwrap_or(f64::NAN),
            of(server, |f| f.wakeups_per_sec).unwrap_or(f64::NAN),
        );
    }
    out
}

/// `64` → "64 B", `4096` → "4 KiB".
pub fn size_label(bytes: usize) -> String {
    if bytes >= 1024 && bytes % 1024 == 0 {
        format!("{} KiB", bytes / 1024)
    } else {
        format!("{bytes} B")
    }
}

/// Whole number with thousands separators: 412318.4 → "412,318".
pub fn thousands(value: f64) -> String {
    let digits = format!("{:.0}", value.abs());
    let mut out = String::new();
    for (i, digit) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(digit);
    }
    if value < -0.5 {
        out.insert(0, '-');
    }
    out
}

/// Three significant figures are all a latency percentile carries here.
pub fn micros(us: f64) -> String {
    if us < 100.0 {
        format!("{us:.1}")
    } else {
        thousands(us)
    }
}
