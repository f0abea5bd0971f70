//! tether's ticker: `on_tick` at 60 Hz sends one message, a shared `Bytes`, to
//! every member of its loop.

use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use tether::{Action, Conn, EventHandler, LoopCtx};

use super::{Running, TICK_PERIOD, TICK_SIZE};
use crate::wire;

pub(super) fn start(addr: SocketAddr, loops: usize) -> io::Result<Running> {
    super::start_tether(addr, loops, |_| Ticker { seq: 0 })
}

struct Ticker {
    /// This loop's ticks so far: each member sees consecutive numbers.
    seq: u64,
}

impl EventHandler for Ticker {
    /// Whether the connection has joined.
    type State = bool;

    fn on_boot(&mut self, _ctx: &mut LoopCtx<'_, bool>) {}

    fn on_traffic(&mut self, conn: &mut Conn<'_, bool>) -> Action {
        let input = conn.read_buf();
        if !*conn.state() && input.first() == Some(&wire::SUBSCRIBE) {
            *conn.state_mut() = true;
            conn.write(&[wire::JOINED]);
        }
        conn.consume(input.len());
        Action::Continue
    }

    fn on_tick(&mut self, ctx: &mut LoopCtx<'_, bool>) -> Option<Duration> {
        let mut message = vec![0; TICK_SIZE];
        wire::encode(self.seq, &mut message);
        self.seq += 1;
        let message = Bytes::from(message);
        ctx.for_each(|mut member| {
            if *member.state() {
                member.send(message.clone());
            }
        });
        Some(TICK_PERIOD)
    }
}
