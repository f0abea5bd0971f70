//! `tether-load`: load and verify a server (`tether-load --help`).

use std::io::{IsTerminal, Write};
use std::process::ExitCode;

use tether::net::ListenAddr;
use tether_load::cli::{Args, CliError, ProtoChoice, USAGE};
use tether_load::proto::Protocol;
use tether_load::proto::{echo::Echo, frame::Frame, http::Http, resp::Resp, ws::Ws};
use tether_load::report::{self, Labels};
use tether_load::run::{self, Outcome, Progress, RunPlan};
use tether_load::{Generator, Setup, Shape, plot, sys};

fn main() -> ExitCode {
    let args = match Args::parse(std::env::args().skip(1)) {
        Ok(a) => a,
        Err(CliError::Help) => {
            print!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Err(CliError::Usage(why)) => {
            eprintln!("tether-load: {why}\n\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    let fds = sys::raise_fd_limit();
    if u64::from(args.conns) + 64 > fds {
        eprintln!(
            "tether-load: warning: {} connections but only {fds} descriptors allowed (ulimit -n)",
            args.conns
        );
    }
    let host = match &args.addr {
        ListenAddr::Tcp(a) => a.to_string(),
        _ => "localhost".to_string(),
    };
    let size = args.size;
    let (name, outcome) = match args.proto {
        ProtoChoice::Echo => ("echo".to_string(), go(&args, Echo::new(size.unwrap_or(64)))),
        ProtoChoice::Frame => (
            "frame".to_string(),
            go(&args, Frame::new(size.unwrap_or(64))),
        ),
        ProtoChoice::Ws => (
            format!("ws {}", args.path),
            go(&args, Ws::new(&host, &args.path, size.unwrap_or(64))),
        ),
        ProtoChoice::Http => (
            format!("http GET {}", args.path),
            go(&args, Http::new(&host, &args.path, &args.headers)),
        ),
        ProtoChoice::Resp => {
            let (label, template) = match &args.command {
                Some(c) => (format!("resp {c:?}"), c.clone()),
                None => (
                    format!("resp {}", args.resp_test),
                    args.resp_test.template().to_string(),
                ),
            };
            let proto = Resp::new(&template, size.unwrap_or(3), args.keyspace);
            (label, go(&args, proto))
        }
    };
    let outcome = match outcome {
        Ok(o) => o,
        Err(e) => {
            eprintln!("tether-load: {e}");
            return ExitCode::FAILURE;
        }
    };
    let labels = Labels {
        proto: name,
        addr: args.addr_text.clone(),
        conns: args.conns,
        depth: args.depth,
        rate: args.rate,
        loops: args.loops,
        hold: args.hold,
        batch: args.batch,
    };
    print!("{}", report::table(&labels, &outcome));
    if let Some(path) = &args.json
        && let Err(e) = std::fs::write(path, report::json(&labels, &outcome))
    {
        eprintln!("tether-load: {}: {e}", path.display());
        return ExitCode::FAILURE;
    }
    if let Some(path) = &args.plot {
        let title = report::heading(&labels);
        if let Err(e) = std::fs::write(path, plot::svg(&title, &outcome.series)) {
            eprintln!("tether-load: {}: {e}", path.display());
            return ExitCode::FAILURE;
        }
    }
    ExitCode::from(outcome.verdict.exit_code())
}

fn go<P: Protocol>(args: &Args, proto: P) -> Result<Outcome, tether::Error> {
    let interval_ns = args
        .rate
        .map(|r| ((f64::from(args.conns) * 1e9) / r).max(1.0) as u64);
    let setup = Setup {
        addr: args.addr.clone(),
        loops: args.loops,
        shape: Shape {
            depth: args.depth,
            interval_ns,
            conns: args.conns,
            hold: args.hold,
            heartbeat: args.heartbeat,
            // WebSocket connections upgrade before any message is sent.
            handshake: args.proto == ProtoChoice::Ws,
            batch: args.batch,
        },
        reconnect: args.reconnect,
    };
    let mut generator = Generator::start(&setup, proto)?;
    let plan = RunPlan {
        conns: args.conns,
        connect_rate: args.connect_rate,
        warmup: args.warmup,
        duration: args.duration,
        stall_limit: std::time::Duration::from_secs(5),
    };
    let live = !args.quiet && std::io::stderr().is_terminal();
    let outcome = run::drive(&mut generator, &plan, |p: &Progress| {
        if live {
            show(p);
        }
    });
    if live {
        eprint!("\r\x1b[2K");
    }
    drop(generator);
    Ok(outcome)
}

fn show(p: &Progress) {
    let mut err = std::io::stderr().lock();
    let _ = write!(
        err,
        "\r\x1b[2K{:>4.0}s{}  up {}  {:.0} req/s  p99 {:.1} µs  errors {}",
        p.elapsed.as_secs_f64(),
        if p.warming { " (warm-up)" } else { "" },
        p.up,
        p.rps,
        p.p99_us,
        p.errors
    );
    let _ = err.flush();
}
