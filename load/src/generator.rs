//! A running load generator: an engine of load loops, its connections, and the
//! figures they publish. The command-line tool and the benches both drive one.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tether::client::backoff::BackoffPolicy;
use tether::net::ListenAddr;
use tether::{ConnectOptions, Engine, Options, SendError};

use crate::control::Control;
use crate::handler::{ConnState, LoadHandler, Shape, Shared};
use crate::proto::Protocol;
use crate::stats::{Counters, LoopStats, Snapshot};

/// How to start a [`Generator`].
#[derive(Debug, Clone)]
pub struct Setup {
    /// The server.
    pub addr: ListenAddr,
    /// Load loops (threads).
    pub loops: usize,
    /// The load on each connection.
    pub shape: Shape,
    /// Redial connections the server closes.
    pub reconnect: bool,
}

/// Counters without the histogram: cheap to read often.
#[derive(Debug, Clone, Copy)]
pub struct Quick {
    /// Counters summed over the loops.
    pub counters: Counters,
    /// Requests sent and not yet answered.
    pub in_flight: u64,
    /// Connections open.
    pub up: u64,
}

type Dialer = Box<dyn Fn(&Engine, u32) -> Result<(), SendError> + Send + Sync>;

/// A load generator at work. Dropping it stops its loops.
pub struct Generator {
    engine: Engine,
    control: Arc<dyn Steer>,
    dial: Dialer,
    dialed: u32,
}

/// The protocol-independent view of a run's shared state.
trait Steer: Send + Sync {
    fn control(&self) -> &Control;
    fn loops(&self) -> &[LoopStats];
}

impl<P: Protocol> Steer for Shared<P> {
    fn control(&self) -> &Control {
        &self.control
    }
    fn loops(&self) -> &[LoopStats] {
        &self.loops
    }
}

impl std::fmt::Debug for Generator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Generator")
            .field("dialed", &self.dialed)
            .finish_non_exhaustive()
    }
}

impl Generator {
    /// Starts the loops; no connection is dialed yet (see [`dial`](Self::dial)).
    ///
    /// # Errors
    ///
    /// The engine's, when its loops cannot start.
    pub fn start<P: Protocol>(setup: &Setup, proto: P) -> Result<Generator, tether::Error> {
        let loops = setup.loops.max(1);
        let shared = Arc::new(Shared {
            proto,
            shape: setup.shape,
            control: Control::default(),
            loops: (0..loops).map(|_| LoopStats::default()).collect(),
            epoch: Instant::now(),
        });
        let mut options = Options::default();
        options.loops = loops;
        let for_loops = shared.clone();
        let engine = Engine::builder(move |loop_id| LoadHandler::new(for_loops.clone(), loop_id))
            .options(options)
            .start()?;
        let addr = setup.addr.clone();
        let mut connect = ConnectOptions::default();
        if setup.reconnect {
            connect = connect.reconnect(
                BackoffPolicy::default()
                    .with_initial(Duration::from_millis(20))
                    .with_max_delay(Duration::from_secs(1))
                    .with_reset_after(Duration::from_secs(1)),
            );
        }
        let dial: Dialer = Box::new(move |engine: &Engine, index: u32| {
            let state: ConnState<P::Conn> = ConnState::new(index);
            let options = connect.clone().on_loop(index as usize % loops);
            engine
                .connect_with(addr.clone(), state, options)
                .map(|_| ())
        });
        Ok(Generator {
            engine,
            control: shared,
            dial,
            dialed: 0,
        })
    }

    /// Dials `n` more connections (numbered on from the last).
    ///
    /// # Errors
    ///
    /// The engine's, when it has stopped.
    pub fn dial(&mut self, n: u32) -> Result<(), SendError> {
        for _ in 0..n {
            (self.dial)(&self.engine, self.dialed)?;
            self.dialed += 1;
        }
        Ok(())
    }

    /// Connections dialed so far.
    pub fn dialed(&self) -> u32 {
        self.dialed
    }

    /// Stop, budget and failure of the run.
    pub fn control(&self) -> &Control {
        self.control.control()
    }

    /// The counters, without the latency histogram.
    pub fn quick(&self) -> Quick {
        let s = Snapshot::take_counters(self.control.loops());
        Quick {
            counters: s.0,
            in_flight: s.1,
            up: s.2,
        }
    }

    /// Everything counted so far, latencies included.
    pub fn snapshot(&self) -> Snapshot {
        Snapshot::take(self.control.loops())
    }

    /// Waits until `done` holds for the counters, a check fails, or `deadline`
    /// passes; returns the last counters and whether `done` held.
    pub fn wait_for(&self, deadline: Instant, done: impl Fn(&Quick) -> bool) -> (Quick, bool) {
        loop {
            let q = self.quick();
            if done(&q) {
                return (q, true);
            }
            if Instant::now() >= deadline || self.control().failure().is_some() {
                return (q, false);
            }
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    /// Stops sending, closes the connections and stops the loops.
    pub fn stop(self) {}
}

impl Drop for Generator {
    fn drop(&mut self) {
        self.control().stop();
        self.engine.stop_with_timeout(Duration::ZERO);
        self.engine.join();
    }
}
