//! How the driver of a run steers its loops: stop sending, a budget of requests,
//! and the first failure seen.

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

/// No budget: send as the load shape allows.
const UNLIMITED: u64 = u64::MAX;

/// Shared by the driver and every loop.
#[derive(Debug)]
pub struct Control {
    stop: AtomicBool,
    allowance: AtomicU64,
    resumes: AtomicU64,
    failure: Mutex<Option<String>>,
}

impl Default for Control {
    fn default() -> Self {
        Control {
            stop: AtomicBool::new(false),
            allowance: AtomicU64::new(UNLIMITED),
            resumes: AtomicU64::new(0),
            failure: Mutex::new(None),
        }
    }
}

impl Control {
    /// No new request is sent after this.
    pub fn stop(&self) {
        self.stop.store(true, Ordering::Relaxed);
    }

    /// True once [`stop`](Self::stop) was called or a check failed.
    pub fn is_stopped(&self) -> bool {
        self.stop.load(Ordering::Relaxed)
    }

    /// Allows `n` more requests in total (`None`: no limit), and tells the loops
    /// to wake connections that were waiting for a budget.
    pub fn set_allowance(&self, n: Option<u64>) {
        self.allowance
            .store(n.unwrap_or(UNLIMITED), Ordering::Relaxed);
        self.resumes.fetch_add(1, Ordering::Release);
    }

    /// Counts up each time the allowance is raised.
    pub fn resumes(&self) -> u64 {
        self.resumes.load(Ordering::Acquire)
    }

    /// Takes up to `want` requests from the allowance; returns how many may go.
    pub fn take(&self, want: u32) -> u32 {
        let mut have = self.allowance.load(Ordering::Relaxed);
        loop {
            if have == UNLIMITED {
                return want;
            }
            let got = have.min(u64::from(want));
            if got == 0 {
                return 0;
            }
            match self.allowance.compare_exchange_weak(
                have,
                have - got,
                Ordering::Relaxed,
                Ordering::Relaxed,
            ) {
                Ok(_) => return got as u32,
                Err(now) => have = now,
            }
        }
    }

    /// Records a failed check (the first one is kept) and stops the run.
    pub fn fail(&self, why: String) {
        let mut f = self.failure.lock().unwrap_or_else(|p| p.into_inner());
        if f.is_none() {
            *f = Some(why);
        }
        self.stop();
    }

    /// The first failed check, if any.
    pub fn failure(&self) -> Option<String> {
        self.failure
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}
