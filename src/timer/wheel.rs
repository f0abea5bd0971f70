//! The timing wheel itself.
//!
//! Layout: [`LEVELS`] levels of [`SLOTS`] slots. A slot of level `L` spans
//! `64^L` ms, so level 0 resolves single ticks and level 5 spans `2^36` ms
//! (about 2.2 years). Timers live in a slab of nodes addressed by `u32`
//! index, threaded into intrusive doubly-linked lists by `u32` links, and
//! every level has a `u64` occupancy bitmap so the next non-empty slot is one
//! `rotate_right` + `trailing_zeros` away.
//!
//! Every list is split into [`STRIPES`] independent FIFO sub-lists, chosen
//! by the node index. Insert, cancel and reset touch one sub-list, so they
//! stay O(1) with no allocation. The split exists for cascading, which walks
//! whole slots of cold nodes: a single linked list serialises one cache miss
//! per node (each `next` is only known once the previous node has arrived),
//! while [`TimerWheel::refile`] chases all stripes in lockstep, so their
//! misses overlap. With a million timers in a 32 MiB slab that took expiring
//! them all from ~90 ms to ~40 ms on the development machine, while keeping
//! the neighbour locality that makes unlinking a cold node cheaper than with
//! per-slot index vectors (which were tried: as fast to cascade, but every
//! removal had to patch the moved entry's node, one more cold miss).
//!
//! An armed timer sits on the level given by the highest bit in which its
//! deadline differs from `elapsed` (the wheel's notion of "now"), in the slot
//! named by the deadline's 6-bit digit for that level. Two consequences carry
//! the whole design:
//!
//! * A timer's list is a pure function of `(elapsed, deadline)` (see
//!   [`TimerWheel::list_for`]) and its stripe a function of its index, so
//!   nodes need not store where they live, which keeps them at 32 bytes for
//!   an 8-byte payload.
//! * Below the top level, an occupied slot always lies ahead of `elapsed`'s
//!   digit, so the lowest occupied level holds the earliest slot and slots
//!   can be visited in time order without scanning.
//!
//! When `elapsed` reaches the start of an occupied slot of level `L > 0`,
//! its timers are re-filed relative to the new `elapsed` ("cascaded"); each
//! lands on a strictly lower level, so a timer cascades at most
//! `LEVELS - 1` times. Reaching a level-0 slot moves its lists onto the
//! pending lists in O(1): all of its timers share that exact deadline.
//!
//! The wheel's levels only hold deadlines inside the `2^36` ms-aligned
//! *epoch* that contains `elapsed`. Later deadlines wait on an overflow list
//! together with a lower bound of their minimum; when `elapsed` reaches the
//! start of that minimum's epoch the list is walked once and whatever now
//! falls inside the epoch is filed normally. Keeping them off the top level
//! (instead of parking them in a slot that comes round every `2^36` ms)
//! means a clock jump over centuries costs one walk, not one per epoch.

use std::fmt;
use std::mem;
use std::num::{NonZeroU32, NonZeroU64};

/// log2 of the number of slots per level.
const SLOT_BITS: u32 = 6;
/// Slots per level: one `u64` occupancy bitmap covers a level.
const SLOTS: usize = 1 << SLOT_BITS;
const SLOT_MASK: u64 = SLOTS as u64 - 1;
/// Six levels reach 2^36 ms, comfortably beyond the ≥ 1 day requirement.
const LEVELS: usize = 6;
/// Sub-lists per list; see the module docs. Sixteen measured only ~8 %
/// faster to cascade, for twice the per-slot heads; eight keeps the heads
/// and tails of a slot in one 64-byte line.
const STRIPES: usize = 8;
/// Runs of `2^STRIPE_SHIFT` consecutive node indices share a stripe, so list
/// neighbours stay close in memory when the slab is filled in order. Unit
/// tests use single-node runs so that their small wheels exercise every
/// stripe; the integration tests cover the real setting.
const STRIPE_SHIFT: u32 = if cfg!(test) { 0 } else { 9 };
/// Nodes gathered per round of a cascade; see [`TimerWheel::refile`].
const REFILE_BATCH: usize = 256;
/// Marks the end of a list and of the free list.
const NIL: u32 = u32::MAX;
/// One value of the `u64` range is given up to make room for the niche that
/// keeps vacant-node bookkeeping free (see [`Armed`]).
const MAX_DEADLINE: u64 = u64::MAX - 1;

/// Span of time, in ms, covered by the wheel's levels: `64^6` ms, about
/// 795 days.
///
/// Time is cut into epochs of `RANGE_MS` aligned on multiples of it. Timers
/// due in a later epoch than [`TimerWheel::now`] (so every timer more than
/// `RANGE_MS` ahead, and near an epoch's end some closer ones) wait on an
/// overflow list and are filed into the wheel when their epoch begins.
/// Entering an epoch costs one pass over that list; the rest of the time they
/// cost nothing, and insert, cancel and reset stay O(1) for them too.
pub const RANGE_MS: u64 = 1 << (SLOT_BITS as usize * LEVELS);

/// Handle to a timer armed in a [`TimerWheel`].
///
/// It stays cheap to keep around after the timer fired or was cancelled:
/// the generation makes stale handles miss instead of hitting whichever
/// timer later reuses the same slab slot. `Option<TimerId>` is 8 bytes,
/// the same as `TimerId`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct TimerId {
    index: u32,
    generation: NonZeroU32,
}

impl TimerId {
    /// Slab slot of the timer. Slots are reused, so this alone does not
    /// identify a timer; it is exposed for logging and for callers that want
    /// a dense key.
    pub fn index(self) -> u32 {
        self.index
    }

    /// Generation of the slot when the timer was armed; bumped every time the
    /// slot is freed.
    pub fn generation(self) -> u32 {
        self.generation.get()
    }
}

/// Slab node. `next` doubles as the free-list link while the node is vacant.
struct Node<T> {
    next: u32,
    prev: u32,
    generation: NonZeroU32,
    armed: Option<Armed<T>>,
}

/// Payload of an armed node.
///
/// The deadline is stored plus one in a `NonZeroU64` so that `Option<Armed<T>>`
/// needs no separate tag: a node stays at 32 bytes for `T = u64` instead of 40.
struct Armed<T> {
    deadline_plus_one: NonZeroU64,
    payload: T,
}

impl<T> Armed<T> {
    fn new(deadline: u64, payload: T) -> Self {
        debug_assert!(deadline <= MAX_DEADLINE);
        Armed {
            deadline_plus_one: NonZeroU64::MIN.saturating_add(deadline),
            payload,
        }
    }

    fn deadline(&self) -> u64 {
        self.deadline_plus_one.get() - 1
    }

    fn set_deadline(&mut self, deadline: u64) {
        debug_assert!(deadline <= MAX_DEADLINE);
        self.deadline_plus_one = NonZeroU64::MIN.saturating_add(deadline);
    }
}

/// The stripes of one list: FIFO, so that a slot filled in allocation order
/// is walked in address order, which the hardware prefetcher follows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Lists {
    head: [u32; STRIPES],
    tail: [u32; STRIPES],
}

const EMPTY: Lists = Lists {
    head: [NIL; STRIPES],
    tail: [NIL; STRIPES],
};

impl Lists {
    #[inline]
    fn is_empty(&self) -> bool {
        self.head.iter().all(|&head| head == NIL)
    }
}

fn stripe(index: u32) -> usize {
    (index >> STRIPE_SHIFT) as usize % STRIPES
}

#[derive(Clone, Copy)]
struct Level {
    /// Bit `s` is set iff some stripe of `slots[s]` is non-empty.
    occupied: u64,
    slots: [Lists; SLOTS],
}

const EMPTY_LEVEL: Level = Level {
    occupied: 0,
    slots: [EMPTY; SLOTS],
};

/// Which list a node is on; derived, never stored.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum List {
    /// Due: deadline at or before `elapsed`, waiting to be popped.
    Pending,
    Slot {
        level: usize,
        slot: usize,
    },
    /// Due in a later epoch than `elapsed`.
    Overflow,
}

/// The next point in time at which the wheel has work to do.
#[derive(Clone, Copy, Debug)]
enum Event {
    /// Reaching the start of this slot: cascade it.
    Slot { level: usize, slot: usize },
    /// Reaching the epoch of the earliest overflow timer: re-file the list.
    Overflow,
}

/// A hierarchical timing wheel holding timers with a payload `T`.
///
/// See the [module documentation](crate::timer) for an example and the
/// performance characteristics.
///
/// Ordering: [`poll_expired`](Self::poll_expired) returns timers in order of
/// their *effective* deadline, `max(deadline, now())` at the time the timer
/// was inserted or last reset. Timers with the same effective deadline come
/// out in unspecified order. In particular, timers armed with a deadline that
/// had already passed fire on the next poll, in unspecified order among
/// themselves, but before anything with a later deadline.
pub struct TimerWheel<T> {
    nodes: Vec<Node<T>>,
    free_head: u32,
    len: usize,
    /// The wheel's "now": every slot before it has been processed.
    elapsed: u64,
    /// Boxed: ~25 KiB of list heads would otherwise be copied on every move.
    levels: Box<[Level; LEVELS]>,
    /// Due timers, all with effective deadline `elapsed`; the wheel does not
    /// advance while this is non-empty, which is what keeps pops in order.
    pending: Lists,
    /// Lower bound of the raw deadlines on `pending`, valid while it is
    /// non-empty. Not raised on cancel, hence only a bound.
    pending_min: u64,
    /// Timers due in a later epoch; see [`RANGE_MS`].
    overflow: Lists,
    /// Lower bound of the deadlines on `overflow`, valid while it is
    /// non-empty; always in a later epoch than `elapsed`.
    overflow_min: u64,
}

impl<T> TimerWheel<T> {
    /// Creates an empty wheel whose clock reads `now_ms`.
    pub fn new(now_ms: u64) -> Self {
        Self::with_capacity(now_ms, 0)
    }

    /// Creates an empty wheel whose clock reads `now_ms`, with room for `cap`
    /// timers before the node slab has to grow.
    pub fn with_capacity(now_ms: u64, cap: usize) -> Self {
        TimerWheel {
            nodes: Vec::with_capacity(cap),
            free_head: NIL,
            len: 0,
            elapsed: now_ms,
            levels: Box::new([EMPTY_LEVEL; LEVELS]),
            pending: EMPTY,
            pending_min: now_ms,
            overflow: EMPTY,
            overflow_min: u64::MAX,
        }
    }

    /// Number of armed timers, including due ones not yet polled.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether no timer is armed.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Number of timers the node slab holds without reallocating.
    pub fn capacity(&self) -> usize {
        self.nodes.capacity()
    }

    /// The wheel's clock: the latest time it has been advanced to.
    ///
    /// It lags the `now_ms` last given to [`poll_expired`](Self::poll_expired)
    /// until that call has returned every due timer, since the wheel only
    /// moves on once the current tick is drained.
    pub fn now(&self) -> u64 {
        self.elapsed
    }

    /// Arms a timer that fires at `deadline_ms` and returns its handle.
    ///
    /// A deadline at or before [`now`](Self::now) is due immediately: the next
    /// [`poll_expired`](Self::poll_expired) returns it. `u64::MAX` is treated
    /// as `u64::MAX - 1`.
    ///
    /// # Panics
    ///
    /// If `u32::MAX - 1` timers are already armed (about 128 GiB of nodes).
    pub fn insert(&mut self, deadline_ms: u64, payload: T) -> TimerId {
        let deadline = deadline_ms.min(MAX_DEADLINE);
        let armed = Some(Armed::new(deadline, payload));
        let index = if self.free_head != NIL {
            let index = self.free_head;
            let node = &mut self.nodes[index as usize];
            self.free_head = node.next;
            node.armed = armed;
            index
        } else {
            let index = self.nodes.len();
            assert!(index < NIL as usize, "TimerWheel: too many timers");
            self.nodes.push(Node {
                next: NIL,
                prev: NIL,
                generation: NonZeroU32::MIN,
                armed,
            });
            index as u32
        };
        self.link(index, deadline);
        self.len += 1;
        TimerId {
            index,
            generation: self.nodes[index as usize].generation,
        }
    }

    /// Disarms a timer and returns its payload, or `None` (doing nothing) if
    /// `id` already fired or was cancelled.
    pub fn cancel(&mut self, id: TimerId) -> Option<T> {
        let deadline = self.deadline(id)?;
        self.unlink(id.index, deadline);
        self.release(id.index).map(|armed| armed.payload)
    }

    /// Moves an armed timer to `new_deadline_ms`, keeping its handle and
    /// payload. Returns `false` (doing nothing) if `id` already fired or was
    /// cancelled.
    ///
    /// This is the idle-timeout fast path: no allocation, and when the new
    /// deadline falls in the same slot as the old one (common for frequent
    /// re-arms far ahead) only the deadline is rewritten. A deadline at or
    /// before [`now`](Self::now) makes the timer due, as with
    /// [`insert`](Self::insert).
    pub fn reset(&mut self, id: TimerId, new_deadline_ms: u64) -> bool {
        let Some(old) = self.deadline(id) else {
            return false;
        };
        let new = new_deadline_ms.min(MAX_DEADLINE);
        let (from, to) = (self.list_for(old), self.list_for(new));
        if from != to {
            self.unlink(id.index, old);
        }
        if let Some(armed) = &mut self.nodes[id.index as usize].armed {
            armed.set_deadline(new);
        }
        if from != to {
            self.link(id.index, new);
        } else if to == List::Pending {
            self.pending_min = self.pending_min.min(new);
        } else if to == List::Overflow {
            self.overflow_min = self.overflow_min.min(new);
        }
        true
    }

    /// Deadline of an armed timer, or `None` if `id` already fired or was
    /// cancelled.
    pub fn deadline(&self, id: TimerId) -> Option<u64> {
        let node = self.nodes.get(id.index as usize)?;
        if node.generation != id.generation {
            return None;
        }
        node.armed.as_ref().map(Armed::deadline)
    }

    /// When the reactor must next call [`poll_expired`](Self::poll_expired):
    /// a lower bound on the earliest deadline, or `None` if no timer is armed.
    ///
    /// The bound is exact when the earliest timer is due within the current
    /// 64 ms block of [`now`](Self::now). Otherwise it is the start of the
    /// slot holding that timer, at which point polling re-files the slot and
    /// the bound tightens, so a timer costs at most 5 early wake-ups over its
    /// whole life (plus one per epoch for timers beyond [`RANGE_MS`]). The
    /// result is at most `now()` exactly when some timer is already due.
    pub fn next_expiry(&self) -> Option<u64> {
        if !self.pending.is_empty() {
            return Some(self.pending_min);
        }
        self.next_event().map(|(_, start)| start)
    }

    /// Advances the clock to `now_ms` and pops one timer whose deadline is at
    /// or before it, earliest first; call it until it returns `None`.
    ///
    /// The clock stops at the tick being drained, so between two calls the
    /// caller may insert, cancel or reset timers (including the ones about
    /// to fire) and ordering is preserved. Advancing skips empty stretches
    /// with the bitmaps, so its cost depends on the number of occupied slots
    /// crossed, not on the time elapsed. A `now_ms` earlier than
    /// [`now`](Self::now) does not move the clock back.
    pub fn poll_expired(&mut self, now_ms: u64) -> Option<(TimerId, T)> {
        if self.pending.is_empty() {
            self.advance(now_ms);
        }
        let s = self.pending.head.iter().position(|&head| head != NIL)?;
        let index = self.pending.head[s];
        let next = self.nodes[index as usize].next;
        self.pending.head[s] = next;
        if next == NIL {
            self.pending.tail[s] = NIL;
        } else {
            self.nodes[next as usize].prev = NIL;
        }
        let generation = self.nodes[index as usize].generation;
        let armed = self.release(index)?;
        Some((TimerId { index, generation }, armed.payload))
    }

    /// Processes occupied slots up to `now` until some timer becomes due.
    /// Only called with empty pending lists.
    fn advance(&mut self, now: u64) {
        debug_assert!(self.pending.is_empty());
        while self.pending.is_empty() {
            let Some((event, start)) = self.next_event() else {
                break;
            };
            if start > now {
                break;
            }
            // Every other event comes later, so no timer is skipped.
            debug_assert!(start > self.elapsed);
            self.elapsed = start;
            match event {
                Event::Slot { level, slot } => self.cascade(level, slot),
                Event::Overflow => self.refile_overflow(),
            }
        }
        if self.pending.is_empty() && now > self.elapsed {
            // Nothing starts in (elapsed, now]: every timer keeps its list.
            self.elapsed = now;
        }
    }

    /// Empties the slot that `elapsed` just reached and re-files its timers.
    fn cascade(&mut self, level: usize, slot: usize) {
        let lvl = &mut self.levels[level];
        lvl.occupied &= !(1 << slot);
        let lists = mem::replace(&mut lvl.slots[slot], EMPTY);
        if level == 0 {
            // A level-0 slot holds exactly one deadline, `elapsed`.
            debug_assert!(self.pending.is_empty());
            self.pending = lists;
            self.pending_min = self.elapsed;
            return;
        }
        self.refile(lists);
    }

    /// Files every node of lists that were just taken out of the wheel
    /// according to the current `elapsed`.
    fn refile(&mut self, lists: Lists) {
        let mut cursors = lists.head;
        let mut batch = [NIL; REFILE_BATCH];
        loop {
            // Gather first, with nothing but the pointer chase in the loop,
            // one node per stripe per round: the loads of a round do not
            // depend on each other, so their cache misses overlap. Filing
            // the batch afterwards then finds the nodes in cache.
            let mut len = 0;
            while len + STRIPES <= REFILE_BATCH {
                let before = len;
                for cursor in &mut cursors {
                    if *cursor != NIL {
                        batch[len] = *cursor;
                        len += 1;
                        *cursor = self.nodes[*cursor as usize].next;
                    }
                }
                if len == before {
                    break;
                }
            }
            if len == 0 {
                return;
            }
            for &index in &batch[..len] {
                match &self.nodes[index as usize].armed {
                    Some(armed) => {
                        let deadline = armed.deadline();
                        self.link(index, deadline);
                    }
                    None => debug_assert!(false, "vacant node on a list"),
                }
            }
        }
    }

    /// Walks the overflow list once `elapsed` has entered the epoch of its
    /// earliest timer, filing what belongs to this epoch into the levels.
    fn refile_overflow(&mut self) {
        let lists = mem::replace(&mut self.overflow, EMPTY);
        self.refile(lists);
    }

    /// The earliest event after `elapsed` and the time it happens.
    fn next_event(&self) -> Option<(Event, u64)> {
        match self.levels.iter().position(|level| level.occupied != 0) {
            Some(level) => {
                let (slot, start) = self.next_slot(level);
                Some((Event::Slot { level, slot }, start))
            }
            None if !self.overflow.is_empty() => {
                Some((Event::Overflow, self.overflow_min & !(RANGE_MS - 1)))
            }
            None => None,
        }
    }

    /// First occupied slot of `level` and its start time.
    ///
    /// The lowest occupied level always holds the earliest slot: a slot of
    /// level `L` starts before the current level-`L + 1` slot ends, and every
    /// occupied slot of a higher level starts after that.
    fn next_slot(&self, level: usize) -> (usize, u64) {
        let shift = level as u32 * SLOT_BITS;
        let occupied = self.levels[level].occupied;
        debug_assert_ne!(occupied, 0);
        // Timers on a level always sit past elapsed's own digit, so slots
        // above it are ahead in time and lower ones are empty.
        let from = (((self.elapsed >> shift) + 1) & SLOT_MASK) as u32;
        let slot = (from + occupied.rotate_right(from).trailing_zeros()) & SLOT_MASK as u32;
        let level_span = 1u64 << (shift + SLOT_BITS);
        let level_start = self.elapsed & !(level_span - 1);
        let start = level_start + (u64::from(slot) << shift);
        debug_assert!(start > self.elapsed, "slot behind the clock");
        (slot as usize, start)
    }

    /// The list a timer with `deadline` belongs on, given the current clock.
    fn list_for(&self, deadline: u64) -> List {
        if deadline <= self.elapsed {
            return List::Pending;
        }
        let Some(level) = level_for(self.elapsed, deadline) else {
            return List::Overflow;
        };
        let slot = (deadline >> (level as u32 * SLOT_BITS)) & SLOT_MASK;
        List::Slot {
            level,
            slot: slot as usize,
        }
    }

    /// Appends node `index`, armed with `deadline`, to its list's stripe.
    #[inline]
    fn link(&mut self, index: u32, deadline: u64) {
        let lists = match self.list_for(deadline) {
            List::Pending => {
                self.pending_min = if self.pending.is_empty() {
                    deadline
                } else {
                    self.pending_min.min(deadline)
                };
                &mut self.pending
            }
            List::Overflow => {
                self.overflow_min = if self.overflow.is_empty() {
                    deadline
                } else {
                    self.overflow_min.min(deadline)
                };
                &mut self.overflow
            }
            List::Slot { level, slot } => {
                let lvl = &mut self.levels[level];
                lvl.occupied |= 1 << slot;
                &mut lvl.slots[slot]
            }
        };
        let s = stripe(index);
        let old = mem::replace(&mut lists.tail[s], index);
        if old == NIL {
            lists.head[s] = index;
        } else {
            self.nodes[old as usize].next = index;
        }
        let node = &mut self.nodes[index as usize];
        node.prev = old;
        node.next = NIL;
    }

    /// Takes node `index`, armed with `deadline`, off its list.
    fn unlink(&mut self, index: u32, deadline: u64) {
        let node = &self.nodes[index as usize];
        let (prev, next) = (node.prev, node.next);
        if prev != NIL {
            self.nodes[prev as usize].next = next;
        }
        if next != NIL {
            self.nodes[next as usize].prev = prev;
        }
        if prev != NIL && next != NIL {
            return;
        }
        // The node ends its stripe; find which list that is.
        let (lists, occupancy) = match self.list_for(deadline) {
            List::Pending => (&mut self.pending, None),
            List::Overflow => (&mut self.overflow, None),
            List::Slot { level, slot } => {
                let lvl = &mut self.levels[level];
                (&mut lvl.slots[slot], Some((&mut lvl.occupied, slot)))
            }
        };
        let s = stripe(index);
        if prev == NIL {
            debug_assert_eq!(lists.head[s], index, "list head mismatch");
            lists.head[s] = next;
        }
        if next == NIL {
            debug_assert_eq!(lists.tail[s], index, "list tail mismatch");
            lists.tail[s] = prev;
        }
        let emptied = prev == NIL && next == NIL && lists.is_empty();
        if let (true, Some((occupied, slot))) = (emptied, occupancy) {
            *occupied &= !(1 << slot);
        }
    }

    /// Returns an unlinked node to the free list, invalidating its handles.
    fn release(&mut self, index: u32) -> Option<Armed<T>> {
        let node = &mut self.nodes[index as usize];
        let armed = node.armed.take();
        debug_assert!(armed.is_some(), "releasing a vacant node");
        node.generation = node.generation.checked_add(1).unwrap_or(NonZeroU32::MIN);
        node.next = self.free_head;
        node.prev = NIL;
        self.free_head = index;
        self.len -= 1;
        armed
    }
}

/// Level on which a timer due at `deadline` (> `elapsed`) is filed: the one
/// holding the highest bit in which the two differ; `None` past the top
/// level, i.e. in a later epoch.
fn level_for(elapsed: u64, deadline: u64) -> Option<usize> {
    // OR-ing in the level-0 digit bits makes deadlines within the same
    // 64 ms block land on level 0 and keeps leading_zeros below 64.
    let diff = (elapsed ^ deadline) | SLOT_MASK;
    if diff >= RANGE_MS {
        return None;
    }
    let significant = u64::BITS - 1 - diff.leading_zeros();
    Some((significant / SLOT_BITS) as usize)
}

impl<T> fmt::Debug for TimerWheel<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TimerWheel")
            .field("now", &self.elapsed)
            .field("len", &self.len)
            .field("next_expiry", &self.next_expiry())
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    impl<T> TimerWheel<T> {
        /// Asserts every structural invariant the O(1) paths rely on.
        fn check_invariants(&self) {
            let mut filed = 0;
            let mut check_list = |lists: &Lists, list: List| {
                for (stripe_no, &head) in lists.head.iter().enumerate() {
                    let (mut prev, mut cursor) = (NIL, head);
                    while cursor != NIL {
                        let node = &self.nodes[cursor as usize];
                        assert_eq!(stripe(cursor), stripe_no, "stripe of {cursor}");
                        assert_eq!(node.prev, prev, "back link of {cursor}");
                        let deadline = node.armed.as_ref().map(Armed::deadline);
                        let deadline = deadline.expect("vacant node on a list");
                        assert_eq!(self.list_for(deadline), list, "list of {deadline}");
                        match list {
                            List::Pending => assert!(deadline >= self.pending_min),
                            List::Overflow => assert!(deadline >= self.overflow_min),
                            List::Slot { .. } => {}
                        }
                        filed += 1;
                        assert!(filed <= self.len, "list cycle");
                        (prev, cursor) = (cursor, node.next);
                    }
                    assert_eq!(lists.tail[stripe_no], prev, "tail of stripe {stripe_no}");
                }
            };
            for (level, lvl) in self.levels.iter().enumerate() {
                for (slot, lists) in lvl.slots.iter().enumerate() {
                    assert_eq!(lvl.occupied >> slot & 1 == 1, !lists.is_empty());
                    check_list(lists, List::Slot { level, slot });
                }
            }
            check_list(&self.pending, List::Pending);
            check_list(&self.overflow, List::Overflow);
            assert_eq!(filed, self.len);
            if !self.pending.is_empty() {
                assert!(self.pending_min <= self.elapsed);
            }
            if !self.overflow.is_empty() {
                assert!(self.overflow_min & !(RANGE_MS - 1) > self.elapsed);
            }
            let mut free = 0;
            let mut cursor = self.free_head;
            while cursor != NIL {
                let node = &self.nodes[cursor as usize];
                assert!(node.armed.is_none(), "armed node on the free list");
                free += 1;
                assert!(free <= self.nodes.len(), "free list cycle");
                cursor = node.next;
            }
            assert_eq!(free + self.len, self.nodes.len());
        }
    }

    #[test]
    fn invariants_hold_under_random_operations() {
        let mut state = 0x2545_F491_4F6C_DD1Du64;
        let mut rand = move |n: u64| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state % n
        };
        for start in [0, 4_000, RANGE_MS - 70, 3 * RANGE_MS + 1] {
            let mut wheel = TimerWheel::new(start);
            let mut ids = Vec::new();
            let mut now = start;
            for _ in 0..4_000 {
                let offset = match rand(5) {
                    0 => rand(70),
                    1 => rand(5_000),
                    2 => rand(1 << 20),
                    3 => rand(2 * RANGE_MS),
                    _ => 0,
                };
                match rand(10) {
                    0..=3 => {
                        ids.push(wheel.insert((now + offset).saturating_sub(rand(2) * 50), ()))
                    }
                    4 | 5 if !ids.is_empty() => {
                        let id = ids[rand(ids.len() as u64) as usize];
                        wheel.cancel(id);
                    }
                    6 if !ids.is_empty() => {
                        let id = ids[rand(ids.len() as u64) as usize];
                        wheel.reset(id, now + offset);
                    }
                    7 => {
                        now += offset / 2;
                        wheel.poll_expired(now);
                    }
                    _ => {
                        now += rand(100);
                        while wheel.poll_expired(now).is_some() {}
                    }
                }
                wheel.check_invariants();
            }
        }
    }

    #[test]
    fn invariants_hold_with_many_timers() {
        let mut state = 0x9E37_79B9_7F4A_7C15u64;
        let mut rand = move |n: u64| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state % n
        };
        let start = 1 << 30;
        let mut wheel = TimerWheel::with_capacity(start, 10_000);
        let mut ids: Vec<_> = (0..10_000)
            .map(|i| wheel.insert(start + rand(1 << 18), i))
            .collect();
        wheel.check_invariants();
        let mut now = start;
        for round in 0..20_000 {
            let id = ids[rand(ids.len() as u64) as usize];
            match rand(4) {
                0 => {
                    wheel.cancel(id);
                }
                1 => {
                    wheel.reset(id, now + rand(1 << 16));
                }
                2 => ids.push(wheel.insert(now + rand(1 << 12), round)),
                _ => {
                    now += rand(40);
                    while wheel.poll_expired(now).is_some() {}
                }
            }
            if round % 1_000 == 0 {
                wheel.check_invariants();
            }
        }
        wheel.check_invariants();
        while wheel.poll_expired(u64::MAX).is_some() {}
        assert!(wheel.is_empty());
        wheel.check_invariants();
    }

    #[test]
    fn node_is_small() {
        assert_eq!(mem::size_of::<Node<u64>>(), 32);
        assert_eq!(mem::size_of::<Node<(u32, u8)>>(), 32);
        assert_eq!(mem::size_of::<Option<TimerId>>(), 8);
    }

    #[test]
    fn level_boundaries() {
        assert_eq!(level_for(0, 1), Some(0));
        assert_eq!(level_for(0, 63), Some(0));
        assert_eq!(level_for(0, 64), Some(1));
        assert_eq!(level_for(0, 4095), Some(1));
        assert_eq!(level_for(0, 4096), Some(2));
        assert_eq!(level_for(0, RANGE_MS - 1), Some(5));
        assert_eq!(level_for(0, RANGE_MS), None);
        assert_eq!(level_for(0, u64::MAX - 1), None);
        // Crossing a 64 ms boundary one tick ahead still needs level 1.
        assert_eq!(level_for(63, 64), Some(1));
        // Crossing an epoch boundary one tick ahead goes to overflow.
        assert_eq!(level_for(RANGE_MS - 1, RANGE_MS), None);
    }

    #[test]
    fn list_is_derivable_after_partial_advance() {
        let mut wheel = TimerWheel::new(10);
        let id = wheel.insert(10 + 5000, 1u64);
        assert!(wheel.poll_expired(4000).is_none());
        // The timer has not been re-filed yet, but cancel still finds it.
        assert_eq!(wheel.cancel(id), Some(1));
        assert_eq!(wheel.levels.iter().map(|l| l.occupied).sum::<u64>(), 0);
    }

    #[test]
    fn timer_in_a_later_epoch_waits_on_overflow() {
        let start = 5 * RANGE_MS + 123;
        let mut wheel = TimerWheel::new(start);
        let far = start + 3 * RANGE_MS;
        let id = wheel.insert(far, ());
        assert_eq!(wheel.list_for(far), List::Overflow);
        let next = wheel.next_expiry().unwrap_or(u64::MAX);
        assert!(next > start && next <= far);
        assert!(wheel.poll_expired(far - 1).is_none());
        assert_eq!(wheel.deadline(id), Some(far));
        assert_eq!(wheel.next_expiry(), Some(far));
        assert_eq!(wheel.poll_expired(far).map(|(i, ())| i), Some(id));
    }

    #[test]
    fn generation_wraps_to_one() {
        let mut wheel = TimerWheel::new(0);
        let id = wheel.insert(5, ());
        wheel.nodes[id.index as usize].generation = NonZeroU32::MAX;
        let id = TimerId {
            index: id.index,
            generation: NonZeroU32::MAX,
        };
        assert_eq!(wheel.cancel(id), Some(()));
        assert_eq!(wheel.nodes[id.index as usize].generation, NonZeroU32::MIN);
    }
}
