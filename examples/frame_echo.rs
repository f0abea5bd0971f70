//! A frame echo server: 4-byte big-endian length prefixed frames, each echoed
//! back as a frame.
//!
//! ```text
//! cargo run --release --example frame_echo -- --addr 127.0.0.1:9001 --max-frame 1048576
//! ```
//!
//! Flags: `--addr ADDR` (default `127.0.0.1:9001`; `host:port`, `tcp://…` or
//! `unix:///path`; `udp://` is refused: frames need a stream), `--loops N`
//! (default: cores), `--max-frame BYTES` (largest payload accepted, 1 to
//! 67108864 = 64 MiB, default 1048576 = 1 MiB; a header claiming more closes the
//! connection at once; the input and output caps are sized to hold one such
//! frame and its echo),
//! `--frame-timeout-ms MS` (a connection holding a partial frame that long is
//! closed, however slowly it trickles; default 10000, 0 = off),
//! `--idle-timeout-ms MS` (default 60000, 0 = off), `--max-connections N`
//! (default 10000, 0 = unlimited), `--memory-budget-mb MB` (buffer memory all
//! connections may hold together; past it the largest holders are shed with
//! `memory budget`; default 256, 0 = none), `--fault-summary-ms MS` (default
//! 10000),
//! `--trim-every-ms MS` (hand the memory the allocator holds free back to the
//! system this often, see `tether::memory`; default 1000, 0 = never),
//! `--mmap-threshold BYTES` (buffers this large are their own mappings,
//! returned when freed; default 0 = the allocator's own behaviour).
//! Prints `listening on <addr>`; stops gracefully on SIGINT or SIGTERM.
//! Connections closed for a peer's fault (bad header, frame timeout, overflow,
//! reset) are logged one by one at debug only, and counted in one warn line per
//! `--fault-summary-ms`: `frame_echo: N connections closed for peer faults in
//! the last Ss (frame timeout: a, protocol error: b)`.

mod common;

use std::process::ExitCode;
use std::time::Duration;

use tether::codec::LengthPrefixed;
use tether::net::ListenAddr;
use tether::{Action, CloseReason, Conn, Engine, EventHandler, Options, decode_frames};

const USAGE: &str = "[--addr ADDR] [--loops N] [--max-frame BYTES] [--frame-timeout-ms MS] \
                     [--idle-timeout-ms MS] [--max-connections N] [--memory-budget-mb MB] \
                     [--fault-summary-ms MS] \
                     [--mmap-threshold BYTES] [--trim-every-ms MS]";

/// The largest `--max-frame`.
const MAX_FRAME: usize = 64 * 1024 * 1024;

struct FrameEcho {
    codec: LengthPrefixed,
    faults: common::PeerFaults,
}

impl EventHandler for FrameEcho {
    type State = ();

    fn on_traffic(&mut self, conn: &mut Conn<'_, ()>) -> Action {
        decode_frames(conn, &mut self.codec, |conn, frame| {
            match conn.write_frame(frame) {
                Ok(()) => Action::Continue,
                Err(_) => Action::Close,
            }
        })
    }

    fn on_close(&mut self, conn: &mut Conn<'_, ()>, reason: &CloseReason) {
        self.faults.record(reason);
        log::debug!("{} closed: {reason}", conn.id());
    }
}

struct Args {
    addr: String,
    options: Options,
    max_frame: usize,
    fault_summary: Duration,
    mmap_threshold: usize,
    trim_every: Option<Duration>,
}

fn parse_args(cli: &mut common::Cli) -> Result<Args, common::Usage> {
    let mut addr = "127.0.0.1:9001".to_string();
    let mut options = Options::default();
    let mut max_frame = 1024 * 1024;
    let mut fault_summary = common::FAULT_SUMMARY_EVERY;
    let mut mmap_threshold = 0;
    let mut trim_every = Some(Duration::from_secs(1));
    let mut limits = common::ServerLimits {
        frame_timeout: Some(Duration::from_secs(10)),
        idle_timeout: Some(Duration::from_secs(60)),
        max_connections: 10_000,
        memory_budget: Some(256 * 1024 * 1024),
    };
    while let Some(flag) = cli.flag() {
        match flag.as_str() {
            "--addr" => {
                addr = common::address(&flag, cli.value(&flag)?, |a| match a {
                    ListenAddr::Udp(_) => Err("frames need a stream; use tcp:// or unix://"),
                    _ => Ok(()),
                })?
            }
            "--loops" => options.loops = cli.number(&flag, 1..=1024)?,
            "--max-frame" => max_frame = cli.number(&flag, 1..=MAX_FRAME)?,
            "--fault-summary-ms" => fault_summary = cli.positive_millis(&flag)?,
            "--mmap-threshold" => mmap_threshold = cli.number(&flag, 0..=32 * 1024 * 1024)?,
            "--trim-every-ms" => trim_every = cli.millis(&flag)?,
            other => {
                if !limits.flag(cli, other)? {
                    return Err(cli.unknown(other));
                }
            }
        }
    }
    limits.apply(&mut options);
    // Room for one maximal frame plus a read, and for its echo.
    options.max_inbound = max_frame + 4 + options.read_buffer_size;
    options.max_outbound = options.max_outbound.max(max_frame + 4);
    Ok(Args {
        addr,
        options,
        max_frame,
        fault_summary,
        mmap_threshold,
        trim_every,
    })
}

fn main() -> ExitCode {
    let (args, signals) = match common::start("frame_echo", USAGE, "info", parse_args) {
        Ok(started) => started,
        Err(code) => return code,
    };
    let codec = match LengthPrefixed::builder()
        .max_frame_len(args.max_frame)
        .build()
    {
        Ok(c) => c,
        Err(e) => {
            eprintln!("frame_echo: {e}");
            return ExitCode::from(2);
        }
    };
    // Frame buffers this large go back to the system once freed, instead of
    // staying in the allocator's arenas while the server idles.
    if args.mmap_threshold > 0 && !tether::memory::return_large_frees(args.mmap_threshold) {
        log::debug!("the allocator keeps its own mmap threshold");
    }
    // Or hand back what the arenas hold, now and then: bursts keep the speed
    // of reused memory, and an idle server shrinks back within a period.
    if let Some(every) = args.trim_every {
        std::thread::spawn(move || {
            loop {
                std::thread::sleep(every);
                tether::memory::release_free_memory();
            }
        });
    }
    // Before anything is announced: a signal right after the first output line
    // must find its handler installed.
    let faults = common::PeerFaults::default();
    faults.report_every("frame_echo", args.fault_summary);
    let engine = Engine::builder(move |_| FrameEcho {
        codec: codec.clone(),
        faults: faults.clone(),
    })
    .options(args.options)
    .listen(args.addr)
    .start();
    common::serve_until_signal("frame_echo", engine, signals)
}
