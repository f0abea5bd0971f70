//! tether, the framework under test, written as its users would write it.

use std::io;
use std::net::SocketAddr;

use tether::codec::LengthPrefixed;
use tether::{Action, Conn, Engine, EventHandler, FrameConn, FrameHandler, Framed};

use super::Running;
use crate::common::wire::Proto;

pub(super) fn start(proto: Proto, addr: SocketAddr, loops: usize) -> io::Result<Running> {
    let addr = addr.to_string();
    let engine = match proto {
        Proto::Raw => Engine::builder(|_loop| Echo)
            .loops(loops)
            .listen(addr)
            .start(),
        Proto::Frame => Engine::builder(|_loop| Framed::new(LengthPrefixed::new(), FrameEcho))
            .loops(loops)
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
struct Echo;

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
}
