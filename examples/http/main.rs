//! An HTTP/1.1 server with TechEmpower's plaintext and JSON endpoints.
//!
//! ```text
//! cargo run --release --features http --example http -- --addr 127.0.0.1:8080
//! curl -i http://127.0.0.1:8080/plaintext
//! ```
//!
//! `GET /plaintext` answers `Hello, World!` as `text/plain`, `GET /json`
//! `{"message":"Hello, World!"}` (serialized per request) as
//! `application/json`, both with `Server` and `Date`; `GET /whoami` the
//! client's `ip:port` as tether sees it (from the PROXY header behind a
//! balancer); anything else is 404.
//!
//! Flags: `--addr HOST:PORT` (default `127.0.0.1:8080`), `--loops N` (default:
//! cores), `--frame-timeout-ms MS` (a request head or body not complete after
//! that long closes the connection: slowloris; default 10000, 0 = off),
//! `--idle-timeout-ms MS` (default 60000, 0 = off), `--max-connections N`
//! (default 100000, 0 = unlimited), `--tls-cert PEM --tls-key PEM` (serve
//! https; needs `--features tls`), `--proxy-protocol off|v1|v2|any` (a
//! required PROXY header from a balancer such as HAProxy; default off). Prints `listening on <addr>`; stops
//! gracefully on SIGINT or SIGTERM.

#[path = "../common/mod.rs"]
mod common;
mod routes;

use std::process::ExitCode;
use std::time::Duration;

use tether::http::{HttpConn, Server};
use tether::net::ListenAddr;
use tether::proxy::{ProxyConfig, ProxyMode};
use tether::{Action, CloseReason, Conn, Engine, EventHandler, Options};

const USAGE: &str = "[--addr HOST:PORT] [--loops N] [--frame-timeout-ms MS] \
                     [--idle-timeout-ms MS] [--max-connections N] \
                     [--tls-cert PEM --tls-key PEM] [--proxy-protocol off|v1|v2|any]";

struct Http {
    http: Server,
    faults: common::PeerFaults,
}

impl EventHandler for Http {
    type State = HttpConn;

    fn on_traffic(&mut self, conn: &mut Conn<'_, HttpConn>) -> Action {
        self.http.serve(conn, routes::route).into()
    }

    fn on_close(&mut self, conn: &mut Conn<'_, HttpConn>, reason: &CloseReason) {
        self.faults.record(reason);
        log::debug!("{} closed: {reason}", conn.id());
    }
}

struct Args {
    addr: String,
    options: Options,
    tls: Option<common::tls::ServerConfig>,
    proxy: ProxyMode,
}

fn parse_args(cli: &mut common::Cli) -> Result<Args, common::Usage> {
    let mut addr = "127.0.0.1:8080".to_string();
    let mut tls = common::tls::TlsFlags::default();
    let mut proxy = ProxyMode::Off;
    let mut options = Options::default();
    let mut limits = common::ServerLimits {
        frame_timeout: Some(Duration::from_secs(10)),
        idle_timeout: Some(Duration::from_secs(60)),
        max_connections: 100_000,
        memory_budget: None,
    };
    while let Some(flag) = cli.flag() {
        match flag.as_str() {
            "--addr" => {
                addr = common::address(&flag, cli.value(&flag)?, |a| match a {
                    ListenAddr::Udp(_) => Err("HTTP needs a stream; use host:port"),
                    _ => Ok(()),
                })?
            }
            "--loops" => options.loops = cli.number(&flag, 1..=1024)?,
            "--proxy-protocol" => proxy = cli.value(&flag)?.parse::<ProxyMode>()?,
            other => {
                if !limits.flag(cli, other)? && !tls.flag(cli, other)? {
                    return Err(cli.unknown(other));
                }
            }
        }
    }
    limits.apply(&mut options);
    let tls = tls.config(&[b"http/1.1"])?;
    Ok(Args {
        addr,
        options,
        tls,
        proxy,
    })
}

fn main() -> ExitCode {
    let (args, signals) = match common::start("http", USAGE, "info", parse_args) {
        Ok(started) => started,
        Err(code) => return code,
    };
    let faults = common::PeerFaults::default();
    faults.report_every("http", common::FAULT_SUMMARY_EVERY);
    let mut builder = Engine::builder(move |_| Http {
        http: Server::new().server_name("tether"),
        faults: faults.clone(),
    })
    .options(args.options)
    .proxy_protocol(ProxyConfig::new(args.proxy));
    #[cfg(feature = "tls")]
    if let Some(cfg) = args.tls {
        builder = builder
            .tls_config(cfg)
            .listen(format!("tls://{}", args.addr));
    } else {
        builder = builder.listen(args.addr);
    }
    #[cfg(not(feature = "tls"))]
    {
        let _ = args.tls;
        builder = builder.listen(args.addr);
    }
    let engine = builder.start();
    common::serve_until_signal("http", engine, signals)
}
