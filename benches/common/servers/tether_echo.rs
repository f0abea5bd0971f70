//! tether, the framework under test, written as its users would write it.

use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use tether::codec::LengthPrefixed;
use tether::{Action, Conn, Engine, EventHandler, Options, decode_frames};

use super::Running;
use crate::common::wire::Proto;

/// An idle timeout no run reaches: every connection keeps one armed wheel entry.
const IDLE_TIMEOUT: Duration = Duration::from_secs(60);

/// Starts the echo; with `idle_timeout`, as the `tether-idle` variant: the same
/// echo with `Options::idle_timeout` set and no heartbeat.
pub(super) fn start(
    proto: Proto,
    addr: SocketAddr,
    loops: usize,
    idle_timeout: bool,
) -> io::Result<Running> {
    let addr = addr.to_string();
    let mut options = Options::default();
    options.loops = loops;
    if idle_timeout {
        options.idle_timeout = Some(IDLE_TIMEOUT);
    }
    let engine = match proto {
        Proto::Raw => Engine::builder(|_loop| Echo)
            .options(options)
            .listen(addr)
            .start(),
        Proto::Frame => Engine::builder(|_loop| FrameEcho(LengthPrefixed::new()))
            .options(options)
            .listen(addr)
            .start(),
    }
    .map_err(io::Error::other)?;
    Ok(Running {
        addr: engine.local_addrs()[0],
        stop: Box::new(move || engine.stop()),
    })
}

/// Echoes every byte straight from the loop's read buffer.
pub struct Echo;

impl EventHandler for Echo {
    type State = ();

    fn on_traffic(&mut self, conn: &mut Conn<'_, ()>) -> Action {
        let data = conn.read_buf();
        conn.write(data);
        conn.consume(data.len());
        Action::Continue
    }
}

/// Echoes each length-prefixed frame through tether's frame layer.
struct FrameEcho(LengthPrefixed);

impl EventHandler for FrameEcho {
    type State = ();

    fn on_traffic(&mut self, conn: &mut Conn<'_, ()>) -> Action {
        decode_frames(conn, &mut self.0, |conn, frame| {
            match conn.write_frame(frame) {
                Ok(()) => Action::Continue,
                Err(_) => Action::Close,
            }
        })
    }
}
