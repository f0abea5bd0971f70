//! Servers for the tether-load tests, each an in-process tether engine on a
//! loopback port of its own, and a runner for the `tether-load` binary.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use tether::codec::LengthPrefixed;
use tether::{Action, Conn, Engine, EventHandler, Options, decode_frames};

/// A running server; stops when dropped.
pub struct Server {
    pub engine: Engine,
    pub addr: SocketAddr,
}

impl Drop for Server {
    fn drop(&mut self) {
        self.engine.stop_with_timeout(Duration::ZERO);
        self.engine.join();
    }
}

pub fn serve<H: EventHandler>(factory: impl Fn(usize) -> H + Send + Sync + 'static) -> Server {
    let mut options = Options::default();
    options.loops = 1;
    let engine = Engine::builder(factory)
        .listen("127.0.0.1:0")
        .options(options)
        .start()
        .expect("server starts");
    let addr = engine.local_addrs()[0];
    Server { engine, addr }
}

/// Echoes every byte, like `examples/echo`. With `flip_at`, the byte at that
/// offset of each connection's stream comes back with one bit flipped; with
/// `close_after`, each connection is closed once that many bytes were echoed;
/// with `stall`, input is read and never answered.
#[derive(Clone, Copy, Default)]
pub struct Echo {
    pub flip_at: Option<u64>,
    pub close_after: Option<u64>,
    pub stall: bool,
}

impl EventHandler for Echo {
    type State = u64;

    fn on_traffic(&mut self, conn: &mut Conn<'_, u64>) -> Action {
        let input = conn.read_buf();
        let n = input.len();
        let at = *conn.state();
        if !self.stall {
            match self.flip_at {
                Some(f) if (at..at + n as u64).contains(&f) => {
                    let mut copy = input.to_vec();
                    copy[(f - at) as usize] ^= 0x01;
                    conn.write(&copy);
                }
                _ => conn.write(input),
            }
        }
        conn.consume(n);
        *conn.state_mut() += n as u64;
        match self.close_after {
            Some(limit) if at + n as u64 >= limit => Action::Close,
            _ => Action::Continue,
        }
    }
}

/// Length-prefixed frame echo, like `examples/frame_echo`.
pub struct FrameEcho {
    codec: LengthPrefixed,
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
}

pub fn frame_echo() -> Server {
    serve(|_| FrameEcho {
        codec: LengthPrefixed::new(),
    })
}

/// Answers every HTTP request (up to its blank line) with `status`.
#[derive(Clone)]
pub struct HttpStatus {
    pub response: Vec<u8>,
}

impl HttpStatus {
    pub fn new(status: &str) -> HttpStatus {
        HttpStatus {
            response: format!("HTTP/1.1 {status}\r\nContent-Length: 2\r\n\r\nok").into_bytes(),
        }
    }
}

impl EventHandler for HttpStatus {
    type State = ();

    fn on_traffic(&mut self, conn: &mut Conn<'_, ()>) -> Action {
        let input = conn.read_buf();
        let mut used = 0;
        while let Some(p) = input[used..].windows(4).position(|w| w == b"\r\n\r\n") {
            used += p + 4;
            conn.write(&self.response);
        }
        conn.consume(used);
        Action::Continue
    }
}

/// Runs the `tether-load` binary with `args`.
pub fn tether_load(args: &[&str]) -> Output {
    let started = Instant::now();
    let out = Command::new(env!("CARGO_BIN_EXE_tether-load"))
        .args(args)
        .output()
        .expect("tether-load runs");
    eprintln!(
        "tether-load {} → {:?} in {:.1?}\n{}{}",
        args.join(" "),
        out.status.code(),
        started.elapsed(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// The value of `"key": <number>` in tether-load's JSON output.
pub fn json_number(json: &str, key: &str) -> f64 {
    let pat = format!("\"{key}\": ");
    let at = json
        .find(&pat)
        .unwrap_or_else(|| panic!("no {key} in {json}"))
        + pat.len();
    let end = json[at..]
        .find([',', '}', '\n'])
        .map_or(json.len(), |e| at + e);
    json[at..end]
        .trim()
        .parse()
        .unwrap_or_else(|_| panic!("{key} is not a number in {json}"))
}

/// A fresh path for a JSON output.
pub fn json_path(name: &str) -> std::path::PathBuf {
    std::env::temp_dir().join(format!(
        "tether-load-test-{name}-{}.json",
        std::process::id()
    ))
}

/// Runs `tether-load` with `args` and `--json`: exit code, JSON, stdout.
pub fn run_json(name: &str, args: &[&str]) -> (Option<i32>, String, String) {
    let path = json_path(name);
    let p = path.to_string_lossy().into_owned();
    let mut all: Vec<&str> = args.to_vec();
    all.extend(["--json", &p]);
    let out = tether_load(&all);
    let json = std::fs::read_to_string(&path).unwrap_or_default();
    let _ = std::fs::remove_file(&path);
    (
        out.status.code(),
        json,
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}
