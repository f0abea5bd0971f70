//! The command line of `tether-load`: flags, their defaults and checks.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use tether::net::ListenAddr;

use crate::proto::resp::RespTest;

/// The usage text (`--help`).
pub const USAGE: &str = "\
usage: tether-load [--addr HOST:PORT] [--proto echo|frame|http|resp|ws] [flags]

Load and verify a server over many connections, on tether's client engine.

target and protocol:
  --addr ADDR          server address, HOST:PORT or unix:///path  [127.0.0.1:9000]
  --proto P            echo (bytes echoed, every byte checked), frame (4-byte
                       big-endian length prefix, echoed), http (HTTP/1.1 GET),
                       resp (Redis), ws (WebSocket echo of text and binary
                       messages in turn, checked)  [echo]
  --size N             request payload bytes (echo, frame, ws; data of resp set/lpush)
                       [64; resp 3]
  --path PATH          http: the path to GET; ws: the path to upgrade  [/]
  --header 'K: V'      http: a request header (repeatable)
  --resp-test T        resp: ping|set|get|incr|lpush, as redis-benchmark  [ping]
  --command 'CMD ...'  resp: a command template instead; __rand_int__ becomes a
                       12-digit key below --keyspace, __data__ the --size payload
  --keyspace N         resp: random keys in 0..N  [none: fixed keys]

load shape:
  --conns N            connections  [50]
  --depth N            requests in flight per connection (pipelined)  [1]
  --batch              pipeline in batches: write --depth requests at once, the
                       next batch when all are answered (as wrk's pipeline
                       script and redis-benchmark -P do)  [top up per answer]
  --rate R             open loop: R requests/s in total, each timed from its
                       scheduled send (no coordinated omission); --depth caps
                       requests in flight per connection  [closed loop]
  --connect-rate R     open R connections per second  [all at once]
  --duration D         measured time, e.g. 10s, 500ms, 2m  [10s]
  --warmup D           load before measuring  [0s]
  --loops N            load loops (threads)  [all cores]
  --hold N             open N connections and keep them, sending nothing (or a
                       request every --heartbeat-ms); reports how many are up
  --heartbeat-ms MS    with --hold: one request per connection after MS quiet
  --no-reconnect       do not redial connections the server closes

output:
  --json FILE          write the figures as JSON
  --plot FILE.svg      draw throughput and latency over time
  --quiet              no live progress line (it shows only on a terminal)

exit status: 0 all responses checked out; 1 a response failed its check;
2 usage error; 3 stall (requests in flight, no response for 5 s);
4 no connection could be opened.
";

/// Which protocol, with its settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProtoChoice {
    /// Raw echo.
    Echo,
    /// Length-prefixed frames.
    Frame,
    /// HTTP/1.1 GET.
    Http,
    /// Redis.
    Resp,
    /// WebSocket echo.
    Ws,
}

/// Everything the command line says.
#[derive(Debug, Clone)]
pub struct Args {
    /// `--addr`.
    pub addr: ListenAddr,
    /// `--addr` as given (the HTTP `Host`).
    pub addr_text: String,
    /// `--proto`.
    pub proto: ProtoChoice,
    /// `--size` (None: the protocol's default).
    pub size: Option<usize>,
    /// `--path`.
    pub path: String,
    /// `--header`, repeated.
    pub headers: Vec<String>,
    /// `--resp-test`.
    pub resp_test: RespTest,
    /// `--command`.
    pub command: Option<String>,
    /// `--keyspace`.
    pub keyspace: Option<u64>,
    /// `--conns` (or `--hold`).
    pub conns: u32,
    /// `--depth`.
    pub depth: u32,
    /// `--batch`.
    pub batch: bool,
    /// `--rate`.
    pub rate: Option<f64>,
    /// `--connect-rate`.
    pub connect_rate: Option<f64>,
    /// `--duration`.
    pub duration: Duration,
    /// `--warmup`.
    pub warmup: Duration,
    /// `--loops`.
    pub loops: usize,
    /// `--hold` given.
    pub hold: bool,
    /// `--heartbeat-ms`.
    pub heartbeat: Option<Duration>,
    /// Not `--no-reconnect`.
    pub reconnect: bool,
    /// `--json`.
    pub json: Option<PathBuf>,
    /// `--plot`.
    pub plot: Option<PathBuf>,
    /// `--quiet`.
    pub quiet: bool,
}

/// Why the command line was refused, or that help was asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CliError {
    /// `--help`: print the usage, exit 0.
    Help,
    /// A bad flag or value: print it and the usage, exit 2.
    Usage(String),
}

impl fmt::Display for CliError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CliError::Help => f.write_str("help requested"),
            CliError::Usage(why) => f.write_str(why),
        }
    }
}

impl std::error::Error for CliError {}

fn usage(why: impl Into<String>) -> CliError {
    CliError::Usage(why.into())
}

/// Parses `10s`, `500ms`, `2m`, `1.5` (seconds).
pub fn parse_duration(text: &str) -> Option<Duration> {
    let (num, scale) = if let Some(n) = text.strip_suffix("ms") {
        (n, 1e-3)
    } else if let Some(n) = text.strip_suffix('s') {
        (n, 1.0)
    } else if let Some(n) = text.strip_suffix('m') {
        (n, 60.0)
    } else {
        (text, 1.0)
    };
    let v: f64 = num.parse().ok()?;
    (v.is_finite() && v >= 0.0 && v * scale < 1e9).then(|| Duration::from_secs_f64(v * scale))
}

impl Args {
    /// Parses the arguments after the program name.
    ///
    /// # Errors
    ///
    /// [`CliError::Help`] for `--help`, [`CliError::Usage`] for anything wrong.
    pub fn parse(argv: impl IntoIterator<Item = String>) -> Result<Args, CliError> {
        let default_addr = "127.0.0.1:9000";
        let mut a = Args {
            addr: ListenAddr::parse(default_addr).map_err(|e| usage(e.to_string()))?,
            addr_text: default_addr.into(),
            proto: ProtoChoice::Echo,
            size: None,
            path: "/".into(),
            headers: Vec::new(),
            resp_test: RespTest::Ping,
            command: None,
            keyspace: None,
            conns: 50,
            depth: 1,
            batch: false,
            rate: None,
            connect_rate: None,
            duration: Duration::from_secs(10),
            warmup: Duration::ZERO,
            loops: std::thread::available_parallelism().map_or(1, |n| n.get()),
            hold: false,
            heartbeat: None,
            reconnect: true,
            json: None,
            plot: None,
            quiet: false,
        };
        let mut it = argv.into_iter();
        while let Some(flag) = it.next() {
            let flag_name = flag.clone();
            let mut value = || {
                it.next()
                    .ok_or_else(|| usage(format!("{flag_name} needs a value")))
            };
            let bad = |v: &str, what: &str| usage(format!("{flag_name} {v:?}: {what}"));
            match flag.as_str() {
                "-h" | "--help" => return Err(CliError::Help),
                "--addr" => {
                    let v = value()?;
                    a.addr = match ListenAddr::parse(&v) {
                        Ok(ListenAddr::Udp(_)) => return Err(bad(&v, "UDP is not served")),
                        Ok(addr) => addr,
                        Err(e) => return Err(bad(&v, &e.to_string())),
                    };
                    a.addr_text = v;
                }
                "--proto" => {
                    let v = value()?;
                    a.proto = match v.as_str() {
                        "echo" => ProtoChoice::Echo,
                        "frame" => ProtoChoice::Frame,
                        "http" => ProtoChoice::Http,
                        "resp" => ProtoChoice::Resp,
                        "ws" => ProtoChoice::Ws,
                        _ => return Err(bad(&v, "one of echo, frame, http, resp")),
                    };
                }
                "--size" => a.size = Some(number(&flag, value()?, 0, 64 << 20)? as usize),
                "--path" => {
                    let v = value()?;
                    if !v.starts_with('/') || v.bytes().any(|b| b <= b' ' || b == 0x7f) {
                        return Err(bad(&v, "a path starts with / and has no spaces"));
                    }
                    a.path = v;
                }
                "--header" => {
                    let v = value()?;
                    let ok = v.split_once(':').is_some_and(|(k, _)| {
                        !k.is_empty() && k.bytes().all(|b| b.is_ascii_graphic())
                    }) && !v.contains(['\r', '\n']);
                    if !ok {
                        return Err(bad(&v, "a header is 'Name: value'"));
                    }
                    a.headers.push(v);
                }
                "--resp-test" => {
                    let v = value()?;
                    a.resp_test = RespTest::parse(&v)
                        .ok_or_else(|| bad(&v, "one of ping, set, get, incr, lpush"))?;
                }
                "--command" => {
                    let v = value()?;
                    if v.split_ascii_whitespace().next().is_none() {
                        return Err(bad(&v, "an empty command"));
                    }
                    a.command = Some(v);
                }
                "--keyspace" => a.keyspace = Some(number(&flag, value()?, 1, 999_999_999_999)?),
                "--conns" => a.conns = number(&flag, value()?, 1, 1_000_000)? as u32,
                "--depth" => a.depth = number(&flag, value()?, 1, 65_536)? as u32,
                "--batch" => a.batch = true,
                "--rate" => a.rate = Some(rate(&flag, value()?)?),
                "--connect-rate" => a.connect_rate = Some(rate(&flag, value()?)?),
                "--duration" => a.duration = duration(&flag, value()?)?,
                "--warmup" => a.warmup = duration(&flag, value()?)?,
                "--loops" => a.loops = number(&flag, value()?, 1, 1024)? as usize,
                "--hold" => {
                    a.hold = true;
                    a.conns = number(&flag, value()?, 1, 1_000_000)? as u32;
                }
                "--heartbeat-ms" => {
                    a.heartbeat = Some(Duration::from_millis(number(
                        &flag,
                        value()?,
                        1,
                        86_400_000,
                    )?))
                }
                "--no-reconnect" => a.reconnect = false,
                "--json" => a.json = Some(PathBuf::from(value()?)),
                "--plot" => a.plot = Some(PathBuf::from(value()?)),
                "--quiet" => a.quiet = true,
                other => return Err(usage(format!("unknown flag {other:?}"))),
            }
        }
        if a.heartbeat.is_some() && !a.hold {
            return Err(usage("--heartbeat-ms goes with --hold"));
        }
        if a.duration.is_zero() {
            return Err(usage("--duration must be above zero"));
        }
        Ok(a)
    }
}

fn number(flag: &str, v: String, min: u64, max: u64) -> Result<u64, CliError> {
    match v.parse::<u64>() {
        Ok(n) if (min..=max).contains(&n) => Ok(n),
        _ => Err(usage(format!(
            "{flag} {v:?}: a whole number from {min} to {max}"
        ))),
    }
}

fn rate(flag: &str, v: String) -> Result<f64, CliError> {
    match v.parse::<f64>() {
        Ok(r) if r.is_finite() && r > 0.0 && r <= 1e9 => Ok(r),
        _ => Err(usage(format!("{flag} {v:?}: a rate per second above 0"))),
    }
}

fn duration(flag: &str, v: String) -> Result<Duration, CliError> {
    parse_duration(&v).ok_or_else(|| usage(format!("{flag} {v:?}: a duration like 10s, 500ms, 2m")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Args, CliError> {
        Args::parse(args.iter().map(|s| s.to_string()))
    }

    #[test]
    fn flags_and_errors() {
        let a = parse(&[
            "--proto",
            "resp",
            "--depth",
            "16",
            "--duration",
            "500ms",
            "--rate",
            "1000",
        ])
        .unwrap();
        assert_eq!(a.proto, ProtoChoice::Resp);
        assert_eq!(a.depth, 16);
        assert_eq!(a.duration, Duration::from_millis(500));
        assert_eq!(a.rate, Some(1000.0));
        assert_eq!(parse(&["--help"]).unwrap_err(), CliError::Help);
        for bad in [
            &["--conns", "0"][..],
            &["--proto", "gopher"],
            &["--duration", "soon"],
            &["--depth"],
            &["--bogus"],
            &["--header", "no colon"],
            &["--heartbeat-ms", "10"],
            &["--addr", "udp://127.0.0.1:1"],
        ] {
            assert!(matches!(parse(bad), Err(CliError::Usage(_))), "{bad:?}");
        }
        assert_eq!(parse_duration("2m"), Some(Duration::from_secs(120)));
        assert_eq!(parse_duration("-1"), None);
    }
}
