//! What every example program shares: flag parsing with `--help` and exit
//! status 2 on a usage error, clean shutdown on SIGINT/SIGTERM, the limits a
//! server should not run without, and a rate-limited summary of peer faults.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::process::ExitCode;
use std::str::FromStr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use signal_hook::iterator::Signals;
use tether::net::ListenAddr;
use tether::{CloseReason, Options};

pub mod tls;

/// Installs the SIGINT/SIGTERM handlers. Call it before printing anything a
/// script waits for, so a signal sent right after that line finds them.
pub fn shutdown_signals(program: &str) -> Result<Signals, ExitCode> {
    Signals::new([signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM]).map_err(|e| {
        eprintln!("{program}: cannot install signal handlers: {e}");
        ExitCode::FAILURE
    })
}

/// The start every example shares: logging at `log_level` unless `RUST_LOG`
/// says otherwise, the command line run through `parse` (see [`Cli::parse`]),
/// then the SIGINT/SIGTERM handlers, installed before anything is announced.
pub fn start<T>(
    program: &'static str,
    usage: &'static str,
    log_level: &str,
    parse: impl FnOnce(&mut Cli) -> Result<T, Usage>,
) -> Result<(T, Signals), ExitCode> {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or(log_level)).init();
    let args = Cli::new(program, usage).parse(parse)?;
    Ok((args, shutdown_signals(program)?))
}

/// The command line of one example: flags with values, `-h`/`--help`.
pub struct Cli {
    program: &'static str,
    usage: &'static str,
    args: std::vec::IntoIter<String>,
}

/// A usage error: printed with the usage line, exit status 2.
pub struct Usage(pub String);

impl<S: Into<String>> From<S> for Usage {
    fn from(s: S) -> Usage {
        Usage(s.into())
    }
}

impl Cli {
    /// The process's arguments. `usage` is the whole help text after `usage: `.
    pub fn new(program: &'static str, usage: &'static str) -> Cli {
        Cli {
            program,
            usage,
            args: std::env::args().skip(1).collect::<Vec<_>>().into_iter(),
        }
    }

    /// Runs `parse` over the flags; on a usage error prints it with the usage
    /// line and returns exit status 2. `--help` prints the usage and exits 0.
    pub fn parse<T>(
        mut self,
        parse: impl FnOnce(&mut Cli) -> Result<T, Usage>,
    ) -> Result<T, ExitCode> {
        parse(&mut self).map_err(|Usage(e)| {
            eprintln!("{}: {e}", self.program);
            eprintln!("usage: {} {}", self.program, self.usage);
            ExitCode::from(2)
        })
    }

    /// The next flag, or `None` at the end. `-h`/`--help` anywhere prints the
    /// usage on stdout and exits 0.
    pub fn flag(&mut self) -> Option<String> {
        let flag = self.args.next()?;
        if flag == "-h" || flag == "--help" {
            println!("usage: {} {}", self.program, self.usage);
            std::process::exit(0);
        }
        Some(flag)
    }

    /// The value after `flag`.
    pub fn value(&mut self, flag: &str) -> Result<String, Usage> {
        match self.args.next() {
            Some(v) if v == "-h" || v == "--help" => {
                self.args = vec![v].into_iter();
                self.flag();
                unreachable!("--help exits")
            }
            Some(v) => Ok(v),
            None => Err(format!("{flag} needs a value").into()),
        }
    }

    /// The value after `flag` as a number in `range`.
    pub fn number<T>(&mut self, flag: &str, range: std::ops::RangeInclusive<T>) -> Result<T, Usage>
    where
        T: FromStr + PartialOrd + std::fmt::Display + Copy,
    {
        let v = self.value(flag)?;
        let bad = || {
            Usage(format!(
                "{flag} takes a number in {}..={}",
                range.start(),
                range.end()
            ))
        };
        // Digits only: `+5`, ` 5` and `5 ` are typing mistakes, not numbers.
        if v.is_empty() || v.len() > 20 || !v.bytes().all(|b| b.is_ascii_digit()) {
            return Err(bad());
        }
        let n: T = v.parse().map_err(|_| bad())?;
        if range.contains(&n) {
            Ok(n)
        } else {
            Err(bad())
        }
    }

    /// Milliseconds after `flag`; 0 means off. At most a year.
    pub fn millis(&mut self, flag: &str) -> Result<Option<Duration>, Usage> {
        let ms = self.number(flag, 0..=MAX_MILLIS)?;
        Ok((ms > 0).then(|| Duration::from_millis(ms)))
    }

    /// Milliseconds after `flag`, at least 1. At most a year.
    pub fn positive_millis(&mut self, flag: &str) -> Result<Duration, Usage> {
        Ok(Duration::from_millis(self.number(flag, 1..=MAX_MILLIS)?))
    }

    /// `flag` is not one this program knows.
    pub fn unknown(&self, flag: &str) -> Usage {
        Usage(format!("unknown flag {}", shown(flag)))
    }
}

/// The longest duration a flag takes, in milliseconds: a year.
pub const MAX_MILLIS: u64 = 365 * 24 * 3600 * 1000;

/// Command-line text as it may be echoed in an error: escaped and cut.
pub fn shown(s: &str) -> String {
    let mut out: String = s.chars().take(64).flat_map(char::escape_debug).collect();
    if s.chars().count() > 64 {
        out.push('…');
    }
    out
}

/// Checks an address flag and refuses the kinds `serves` says no to, before
/// anything is bound; returns the text as given (for the builder).
pub fn address(
    flag: &str,
    value: String,
    serves: impl Fn(&ListenAddr) -> Result<(), &'static str>,
) -> Result<String, Usage> {
    let addr = ListenAddr::parse(&value).map_err(|e| Usage(format!("{flag}: {e}")))?;
    serves(&addr).map_err(|why| Usage(format!("{flag} {addr}: {why}")))?;
    Ok(value)
}

/// The first address `engine` listens on as `listening on` shows it: TCP as a
/// bare `host:port` (the form scripts and load generators take), others with
/// their scheme.
pub fn announced(engine: &tether::Engine) -> String {
    match engine.listen_addrs().first() {
        Some(ListenAddr::Tcp(addr)) => addr.to_string(),
        Some(other) => other.to_string(),
        None => "nothing".to_string(),
    }
}

/// The limits every example server sets and the flags that change them:
/// `--frame-timeout-ms`, `--idle-timeout-ms`, `--max-connections`,
/// `--memory-budget-mb`.
pub struct ServerLimits {
    pub frame_timeout: Option<Duration>,
    pub idle_timeout: Option<Duration>,
    pub max_connections: usize,
    pub memory_budget: Option<usize>,
}

impl ServerLimits {
    /// Takes `flag` if it is one of the limit flags; `Ok(false)` if it is not.
    pub fn flag(&mut self, cli: &mut Cli, flag: &str) -> Result<bool, Usage> {
        match flag {
            "--frame-timeout-ms" => self.frame_timeout = cli.millis(flag)?,
            "--idle-timeout-ms" => self.idle_timeout = cli.millis(flag)?,
            "--max-connections" => {
                let n = cli.number(flag, 0..=10_000_000usize)?;
                self.max_connections = if n == 0 { usize::MAX } else { n };
            }
            "--memory-budget-mb" => {
                let mb = cli.number(flag, 0..=1024 * 1024usize)?;
                self.memory_budget = (mb > 0).then_some(mb * 1024 * 1024);
            }
            _ => return Ok(false),
        }
        Ok(true)
    }

    /// Writes the limits into `options`.
    pub fn apply(&self, options: &mut Options) {
        options.frame_timeout = self.frame_timeout;
        options.idle_timeout = self.idle_timeout;
        options.max_connections = self.max_connections;
        options.memory_budget = self.memory_budget;
    }
}

/// How often the peer-fault summary is logged at most.
pub const FAULT_SUMMARY_EVERY: Duration = Duration::from_secs(10);

/// Counts connections closed for what their peer did (bad frames, timeouts,
/// overflows, resets) and logs one summary line at warn per interval, instead
/// of one line per hostile connection. Each close is logged at debug.
#[derive(Clone, Default)]
pub struct PeerFaults {
    counts: Arc<Mutex<BTreeMap<&'static str, u64>>>,
}

impl PeerFaults {
    /// Records a close; returns whether it was a peer fault.
    pub fn record(&self, reason: &CloseReason) -> bool {
        let Some(kind) = peer_fault(reason) else {
            return false;
        };
        let mut counts = self.counts.lock().unwrap_or_else(|p| p.into_inner());
        *counts.entry(kind).or_default() += 1;
        true
    }

    /// Starts the thread that logs the summary every `every` when there was
    /// anything to report.
    pub fn report_every(&self, program: &'static str, every: Duration) {
        let counts = Arc::clone(&self.counts);
        std::thread::spawn(move || {
            let mut since = Instant::now();
            loop {
                std::thread::sleep(every);
                let taken = std::mem::take(&mut *counts.lock().unwrap_or_else(|p| p.into_inner()));
                if !taken.is_empty() {
                    let total: u64 = taken.values().sum();
                    let parts: Vec<String> =
                        taken.iter().map(|(k, n)| format!("{k}: {n}")).collect();
                    log::warn!(
                        "{program}: {total} connections closed for peer faults in the last {}s ({})",
                        since.elapsed().as_secs(),
                        parts.join(", ")
                    );
                }
                since = Instant::now();
            }
        });
    }
}

/// The kind of peer fault a close reason is, if it is one.
fn peer_fault(reason: &CloseReason) -> Option<&'static str> {
    Some(match reason {
        CloseReason::Protocol(_) => "protocol error",
        CloseReason::FrameTimeout => "frame timeout",
        CloseReason::IdleTimeout(_) => "idle timeout",
        CloseReason::InboundOverflow => "inbound overflow",
        CloseReason::WriteOverflow => "write overflow",
        CloseReason::Reset => "reset",
        CloseReason::MemoryBudget => "memory budget",
        _ => return None,
    })
}

/// Announces a started engine (`listening on <addr>`), serves until SIGINT or
/// SIGTERM, then stops it gracefully. A start error is printed and fails.
pub fn serve_until_signal(
    program: &str,
    engine: Result<tether::Engine, tether::Error>,
    mut signals: Signals,
) -> ExitCode {
    use std::io::Write;
    let engine = match engine {
        Ok(e) => e,
        Err(e) => {
            eprintln!("{program}: {e}");
            return ExitCode::FAILURE;
        }
    };
    let mut stdout = std::io::stdout();
    let _ = writeln!(stdout, "listening on {}", announced(&engine));
    let _ = stdout.flush();
    if let Some(sig) = signals.forever().next() {
        log::info!("signal {sig}: stopping");
    }
    engine.stop();
    ExitCode::SUCCESS
}
