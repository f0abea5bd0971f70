//! Keeping a loop within its share of the engine's memory budget: past it, the
//! connections holding the most buffer memory are shed with
//! [`CloseReason::MemoryBudget`] (the accountant is `memory::budget`).

use super::*;
use crate::memory::budget::{Budget, victims};

impl<H: EventHandler> EventLoop<H> {
    /// Sheds the largest holders if this loop holds more than its share.
    /// Returns whether anything was shed.
    pub(super) fn enforce_budget(&mut self) -> bool {
        let Some(budget) = Budget::per_loop(self.opts.memory_budget, self.opts.loops) else {
            return false;
        };
        let held = self.core.pool.stats().lent_bytes;
        if !budget.exceeded(held) {
            return false;
        }
        let shed = victims(
            held,
            budget.target(),
            self.conns.iter().map(|(key, slot)| (key, held_by(slot))),
        );
        for &key in &shed {
            self.close(key, CloseReason::MemoryBudget);
        }
        !shed.is_empty()
    }
}

/// Buffer capacity a connection holds: its input and its pending output.
fn held_by<S>(slot: &Slot<S>) -> usize {
    let input = slot.io.inbound.as_ref().map_or(0, |b| b.capacity());
    input + slot.io.queued()
}
