//! The fixed-rate ticker over a real loop: deadlines on a grid of periods,
//! lateness reported, missed deadlines skipped rather than bunched. (The
//! schedule itself is tested on a virtual clock in `src/ticker.rs`.)

use std::sync::Mutex;
use std::sync::mpsc::{Sender, channel};
use std::time::{Duration, Instant};

use tether::{Action, Conn, Engine, EventHandler, LoopCtx, TickInfo};

const PERIOD: Duration = Duration::from_nanos(3_333_333);

struct Ticks {
    tx: Sender<(Instant, TickInfo)>,
    stall_at: u64,
}

impl EventHandler for Ticks {
    type State = ();

    fn on_traffic(&mut self, _conn: &mut Conn<'_, ()>) -> Action {
        Action::Continue
    }

    fn on_tick(&mut self, ctx: &mut LoopCtx<'_, ()>) -> Option<Duration> {
        let info = ctx.tick_info().expect("tick info inside on_tick");
        let _ = self.tx.send((Instant::now(), info));
        if info.count == self.stall_at {
            // A callback that blocks the loop for several periods.
            std::thread::sleep(PERIOD * 9 / 2);
        }
        (info.count < 120).then_some(PERIOD)
    }
}

#[test]
fn ticks_stay_on_the_grid_and_a_stall_is_skipped_not_bunched() {
    let (tx, rx) = channel();
    let tx = Mutex::new(tx);
    let engine = Engine::builder(move |_| Ticks {
        tx: tx.lock().expect("tx").clone(),
        stall_at: 40,
    })
    .loops(1)
    .start()
    .expect("engine");
    let mut ticks = Vec::new();
    while ticks.len() < 120 {
        ticks.push(rx.recv_timeout(Duration::from_secs(10)).expect("a tick"));
    }
    let first = ticks[0].1;
    let mut skipped_total = 0;
    for (i, (ran, info)) in ticks.iter().enumerate() {
        assert_eq!(info.count, i as u64 + 1);
        skipped_total += info.skipped;
        // Exact: tick n stands for deadline (n + skipped so far) periods after
        // the first, to the nanosecond (no drift, whole or not whole ms).
        let periods = i as u32 + skipped_total as u32;
        assert_eq!(info.deadline - first.deadline, PERIOD * periods);
        assert!(
            info.late < PERIOD,
            "a tick runs within a period of its deadline"
        );
        assert!(
            *ran + Duration::from_micros(1) >= info.deadline,
            "never early"
        );
    }
    // The stall of four and a half periods skipped at least three deadlines, reported on
    // the tick after it, and nothing ran in a burst: consecutive ticks are never
    // closer than the period minus the lateness of the earlier one.
    let after = &ticks[40].1;
    assert!(after.skipped >= 3, "skipped {}", after.skipped);
    for w in ticks.windows(2) {
        let (a, b) = (&w[0].1, &w[1].1);
        assert!(b.deadline - a.deadline >= PERIOD);
    }
    engine.stop();
}
