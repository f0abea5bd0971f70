//! A frame echo server: 4-byte big-endian length prefixed frames, each echoed
//! back as a frame.
//!
//! ```text
//! cargo run --release --example frame_echo -- --addr 127.0.0.1:9001 --max-frame 1048576
//! ```
//!
//! Flags: `--addr ADDR` (default `127.0.0.1:9001`), `--loops N` (default: cores),
//! `--max-frame BYTES` (largest payload accepted, default 8 MiB; a header claiming
//! more closes the connection at once). Prints `listening on <addr>`; stops
//! gracefully on SIGINT or SIGTERM.

mod common;

use std::io::Write;
use std::process::ExitCode;

use tether::codec::LengthPrefixed;
use tether::{Action, CloseReason, Engine, FrameConn, FrameHandler, Framed, Options};

struct FrameEcho;

impl FrameHandler for FrameEcho {
    type State = ();
    type Codec = LengthPrefixed;

    fn on_frame(
        &mut self,
        conn: &mut FrameConn<'_, '_, (), LengthPrefixed>,
        frame: &[u8],
    ) -> Action {
        match conn.write_frame(frame) {
            Ok(()) => Action::Continue,
            Err(_) => Action::Close,
        }
    }

    fn on_close(&mut self, conn: &mut FrameConn<'_, '_, (), LengthPrefixed>, reason: &CloseReason) {
        if let CloseReason::Protocol(e) = reason {
            log::info!("{} closed: {e}", conn.id());
        } else {
            log::debug!("{} closed: {reason}", conn.id());
        }
    }
}

fn main() -> ExitCode {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();
    let mut addr = "127.0.0.1:9001".to_string();
    let mut options = Options::default();
    let mut max_frame = 8 * 1024 * 1024;
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let value = args.next();
        let parsed = match (flag.as_str(), value) {
            ("--addr", Some(v)) => {
                addr = v;
                Ok(())
            }
            ("--loops", Some(v)) => v
                .parse()
                .map(|n| options.loops = n)
                .map_err(|_| "--loops needs a number"),
            ("--max-frame", Some(v)) => v
                .parse()
                .map(|n| max_frame = n)
                .map_err(|_| "--max-frame needs a number of bytes"),
            _ => Err("usage: frame_echo [--addr ADDR] [--loops N] [--max-frame BYTES]"),
        };
        if let Err(e) = parsed {
            eprintln!("frame_echo: {e}");
            return ExitCode::from(2);
        }
    }
    let codec = match LengthPrefixed::builder().max_frame_len(max_frame).build() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("frame_echo: {e}");
            return ExitCode::from(2);
        }
    };
    // Room for one maximal frame plus a read, whatever --max-frame says.
    options.max_inbound = options.max_inbound.max(max_frame.saturating_add(64 * 1024));
    // Before anything is announced: a signal right after the first output line
    // must find its handler installed.
    let mut signals = match common::shutdown_signals("frame_echo") {
        Ok(s) => s,
        Err(code) => return code,
    };
    let engine = match Engine::builder(move |_| Framed::new(codec.clone(), FrameEcho))
        .options(options)
        .listen(addr)
        .start()
    {
        Ok(e) => e,
        Err(e) => {
            eprintln!("frame_echo: {e}");
            return ExitCode::FAILURE;
        }
    };
    let mut stdout = std::io::stdout();
    let _ = writeln!(stdout, "listening on {}", engine.local_addrs()[0]);
    let _ = stdout.flush();
    if let Some(sig) = signals.forever().next() {
        log::info!("signal {sig}: stopping");
    }
    engine.stop();
    ExitCode::SUCCESS
}
