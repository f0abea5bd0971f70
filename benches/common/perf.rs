//! Syscalls counted with `perf stat -e raw_syscalls:sys_enter -p PID`: exact
//! where time is not (hardware counters are not available here, tracepoints are).

use std::fs;
use std::io::{self, Read};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::thread;
use std::time::{Duration, Instant};

const EVENT: &str = "raw_syscalls:sys_enter";
/// perf prints nothing once attached: give it this long before the load starts.
const ATTACH: Duration = Duration::from_millis(300);
const EXIT_DEADLINE: Duration = Duration::from_secs(10);

/// Syscalls counted one by one besides the total (x86_64 numbers), in table order.
#[cfg(target_arch = "x86_64")]
pub const TRACKED: &[(&str, u32)] = &[
    ("epoll_wait", 232),
    ("epoll_pwait", 281),
    ("epoll_ctl", 233),
    ("read", 0),
    ("write", 1),
    ("readv", 19),
    ("writev", 20),
    ("recvfrom", 45),
    ("sendto", 44),
    ("recvmsg", 47),
    ("sendmsg", 46),
    ("recvmmsg", 299),
    ("sendmmsg", 307),
    ("futex", 202),
    ("sched_yield", 24),
];
#[cfg(not(target_arch = "x86_64"))]
pub const TRACKED: &[(&str, u32)] = &[];

/// What one `perf stat` saw.
#[derive(Clone, Debug, Default)]
pub struct SyscallCount {
    pub total: u64,
    /// The count of each of [`TRACKED`], in its order.
    pub tracked: Vec<u64>,
}

/// Checks that `perf` runs and can count syscall tracepoints here, with a message
/// that says what to do when it cannot.
pub fn check() -> Result<(), String> {
    let output = Command::new("perf")
        .args(["stat", "-x", ",", "-e", EVENT, "--", "true"])
        .stdout(Stdio::null())
        .output()
        .map_err(|e| match e.kind() {
            io::ErrorKind::NotFound => {
                "perf not found: install it (Debian: apt-get install linux-perf)".to_owned()
            }
            _ => format!("cannot run perf: {e}"),
        })?;
    let stderr = String::from_utf8_lossy(&output.stderr);
    if output.status.success() && stderr.contains(EVENT) && !stderr.contains("<not") {
        return Ok(());
    }
    Err(format!(
        "perf cannot count {EVENT} here (needs tracefs and root or \
         kernel.perf_event_paranoid <= 1): {}",
        stderr.trim()
    ))
}

/// A `perf stat` attached to a running process; [`SyscallCounter::finish`] stops it
/// and reads the counts. Dropping it kills perf.
pub struct SyscallCounter {
    perf: Child,
    out: PathBuf,
}

impl SyscallCounter {
    /// Attaches to every thread of process `pid` and waits until perf counts.
    pub fn attach(pid: u32) -> Result<SyscallCounter, String> {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let out = std::env::temp_dir().join(format!(
            "tether-bench-perf-{}-{}.csv",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        let mut command = Command::new("perf");
        command.args(["stat", "-x", ","]).arg("-o").arg(&out);
        command.args(["-e", EVENT]);
        for (_, id) in TRACKED {
            command.args(["-e", EVENT, "--filter", &format!("id == {id}")]);
        }
        let perf = command
            .args(["-p", &pid.to_string()])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| format!("cannot run perf: {e}"))?;
        let mut counter = SyscallCounter { perf, out };
        thread::sleep(ATTACH);
        if let Ok(Some(status)) = counter.perf.try_wait() {
            return Err(format!(
                "perf stat -p {pid} exited with {status}: {}",
                counter.stderr()
            ));
        }
        Ok(counter)
    }

    /// Stops perf (SIGINT, as Ctrl-C would) and returns what it counted.
    pub fn finish(mut self) -> Result<SyscallCount, String> {
        let pid = libc::pid_t::try_from(self.perf.id()).map_err(|e| e.to_string())?;
        // SAFETY: `kill` only sends a signal, to our own child, which is not reaped yet.
        if unsafe { libc::kill(pid, libc::SIGINT) } != 0 {
            return Err(format!("cannot stop perf: {}", io::Error::last_os_error()));
        }
        let deadline = Instant::now() + EXIT_DEADLINE;
        loop {
            match self.perf.try_wait() {
                Ok(Some(_)) => break,
                Ok(None) if Instant::now() < deadline => thread::sleep(Duration::from_millis(5)),
                Ok(None) => return Err("perf did not stop within 10 s".into()),
                Err(e) => return Err(format!("perf: {e}")),
            }
        }
        let text = fs::read_to_string(&self.out)
            .map_err(|e| format!("no perf output ({e}): {}", self.stderr()))?;
        let counts = text
            .lines()
            .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
            .map(|l| {
                let count = l.split(',').next().unwrap_or_default();
                count
                    .parse::<u64>()
                    .map_err(|_| format!("perf did not count: {l:?}"))
            })
            .collect::<Result<Vec<u64>, String>>()?;
        if counts.len() != 1 + TRACKED.len() {
            return Err(format!("unexpected perf output: {text:?}"));
        }
        Ok(SyscallCount {
            total: counts[0],
            tracked: counts[1..].to_vec(),
        })
    }

    fn stderr(&mut self) -> String {
        let mut text = String::new();
        if let Some(stderr) = self.perf.stderr.as_mut() {
            let _ = stderr.read_to_string(&mut text);
        }
        text.trim().to_owned()
    }
}

impl Drop for SyscallCounter {
    fn drop(&mut self) {
        if matches!(self.perf.try_wait(), Ok(None)) {
            let _ = self.perf.kill();
        }
        let _ = self.perf.wait();
        let _ = fs::remove_file(&self.out);
    }
}
