//! The loop's private state that callbacks reach through [`Conn`](crate::Conn)
//! and [`LoopCtx`](crate::LoopCtx): the clock, the timer wheels, the buffer pool,
//! the output scratch buffer.

use std::collections::BTreeMap;
use std::time::Instant;

use crate::buffer::BufferPool;
use crate::engine::Engine;
use crate::timeouts::TimeoutCfg;
use crate::timer::{TimerId, TimerWheel};

/// A user timer's wheel payload.
#[derive(Debug, Clone, Copy)]
pub(crate) struct UserTimer {
    pub(crate) slot: u32,
    pub(crate) generation: u32,
    pub(crate) key: u64,
}

/// Loop-wide context shared by every callback of one loop.
#[derive(Debug)]
pub(crate) struct LoopCore {
    pub(crate) loop_id: usize,
    /// Output written during one callback by a connection with nothing pending;
    /// flushed with one `write` when the callback returns.
    pub(crate) scratch: Vec<u8>,
    pub(crate) engine: Engine,
    pub(crate) now: Instant,
    pub(crate) max_outbound: usize,
    pub(crate) high_watermark: usize,
    /// The clock origin of the wheels: loop milliseconds count from here.
    pub(crate) origin: Instant,
    pub(crate) now_ms: u64,
    /// One entry per connection with a timeout configured: `(slot, generation)`.
    pub(crate) conn_wheel: TimerWheel<(u32, u32)>,
    pub(crate) user_wheel: TimerWheel<UserTimer>,
    /// `(slot, key)` of every armed user timer, for `cancel_timer` and close.
    pub(crate) user_timers: BTreeMap<(u32, u64), TimerId>,
    pub(crate) timeouts: TimeoutCfg,
    pub(crate) pool: BufferPool,
    /// No wheel has anything due before this loop time: the wheels are not
    /// touched on iterations before it. Lowered by every insert (`note_deadline`),
    /// recomputed after each expiry pass.
    pub(crate) next_check: u64,
    /// Datagrams and session requests queued by callbacks.
    pub(crate) udp: crate::udp_session::udp::UdpOut,
}

impl LoopCore {
    /// Records that a timer is due at `at`, so the loop looks at the wheels then.
    pub(crate) fn note_deadline(&mut self, at: u64) {
        self.next_check = self.next_check.min(at);
    }
}

pub(crate) use crate::timer::deadline::ms_ceil;
