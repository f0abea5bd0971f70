//! tether-load: a load generator built on tether's client engine.
//!
//! One tool for the jobs people use wrk, wrk2, tcpkali and redis-benchmark for:
//! many connections, each with requests pipelined `--depth` deep (closed loop)
//! or sent on a fixed schedule (`--rate`, open loop, timed from the scheduled
//! send so a slow server cannot hide its queueing), over raw echo, length-prefixed
//! frames, HTTP/1.1 or Redis, with every response checked. Run `tether-load
//! --help` for the flags; the README's "tether-load" section shows the output.
//!
//! The library is what the binary and tether's benches share:
//!
//! - [`proto`]: the [`Protocol`](proto::Protocol) trait and one file per protocol.
//! - [`handler`]: the event handler each load loop runs.
//! - [`generator`]: starts the loops and dials; [`Generator::snapshot`] reads the
//!   figures at any time.
//! - [`run`]: one timed run (warm-up, per-second series, stall and failure
//!   detection) and its [`Outcome`](run::Outcome).
//! - [`report`] and [`plot`]: the table, JSON and SVG of an outcome.
//!
//! ```no_run
//! use std::time::{Duration, Instant};
//! use tether_load::{Generator, Setup, Shape, proto::echo::Echo};
//!
//! let setup = Setup {
//!     addr: tether::net::ListenAddr::parse("127.0.0.1:9000").unwrap(),
//!     loops: 1,
//!     shape: Shape { depth: 4, interval_ns: None, conns: 100, hold: false, heartbeat: None, handshake: false, batch: false },
//!     reconnect: false,
//! };
//! let mut generator = Generator::start(&setup, Echo::new(64)).unwrap();
//! generator.dial(100).unwrap();
//! let before = generator.snapshot();
//! std::thread::sleep(Duration::from_secs(1));
//! let window = generator.snapshot().since(&before);
//! println!("{:.0} req/s, p99 {:.1} µs", window.rps(), window.latency_us(0.99));
//! # let _ = Instant::now();
//! ```
#![deny(missing_docs)]

pub mod cli;
pub mod control;
pub mod generator;
pub mod handler;
pub mod plot;
pub mod proto;
pub mod report;
pub mod rng;
pub mod run;
pub mod stats;
pub mod sys;

pub use generator::{Generator, Quick, Setup};
pub use handler::Shape;
pub use stats::{Counter, Snapshot, Window};
