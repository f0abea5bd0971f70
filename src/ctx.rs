//! What loop-level callbacks see of their loop.

use std::time::Instant;

use crate::engine::Engine;
use crate::udp_session::Udp;
use crate::udp_session::udp::UdpOut;

/// The loop a loop-level callback (`on_boot`, `on_shutdown`, …) runs on.
#[derive(Debug)]
pub struct LoopCtx<'a> {
    pub(crate) loop_id: usize,
    pub(crate) now: Instant,
    pub(crate) engine: &'a Engine,
    pub(crate) udp: &'a mut UdpOut,
}

impl LoopCtx<'_> {
    /// Index of this loop, `0..loops`.
    pub fn loop_id(&self) -> usize {
        self.loop_id
    }

    /// The loop's clock, read once per loop iteration.
    pub fn now(&self) -> Instant {
        self.now
    }

    /// A handle to the engine, e.g. to keep for use from other threads.
    pub fn engine(&self) -> &Engine {
        self.engine
    }

    /// UDP from this callback: send to sessions and addresses, dial sessions.
    pub fn udp(&mut self) -> Udp<'_> {
        self.udp.handle(self.loop_id)
    }
}
