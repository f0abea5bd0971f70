//! tether's UDP echo: `on_datagram` answers with `reply`, one datagram at a time
//! (`udp_batch` = 1, the default) or in `recvmmsg`/`sendmmsg` batches.

use std::io;
use std::net::SocketAddr;

use tether::{Action, Conn, Datagram, Engine, EventHandler, Options};

use super::Running;

pub(super) fn start(addr: SocketAddr, loops: usize, batch: usize) -> io::Result<Running> {
    let mut options = Options::default();
    options.loops = loops;
    options.udp_batch = batch;
    let engine = Engine::builder(|_loop| UdpEcho)
        .options(options)
        .listen(format!("udp://{addr}"))
        .start()
        .map_err(io::Error::other)?;
    Ok(Running {
        addr: engine.local_addrs()[0],
        stop: Box::new(move || engine.stop()),
    })
}

struct UdpEcho;

impl EventHandler for UdpEcho {
    type State = ();

    fn on_traffic(&mut self, _conn: &mut Conn<'_, ()>) -> Action {
        Action::Continue
    }

    fn on_datagram(&mut self, dgram: &mut Datagram<'_>) -> Action {
        // A reply the socket refuses is dropped (and counted by tether), as UDP may.
        let _ = dgram.reply(dgram.data());
        Action::Continue
    }
}
