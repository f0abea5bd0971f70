//! What the parent reads about a server child from `/proc`: CPU time and memory.

use std::fs;
use std::io;
use std::sync::OnceLock;
use std::time::Duration;

/// User plus system CPU time of all threads of process `pid` so far.
pub fn cpu_time(pid: u32) -> io::Result<Duration> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // The command name (field 2) is in parentheses and may contain spaces, so fields
    // are counted from the last ')': utime and stime are fields 14 and 15.
    let after_name = stat
        .rfind(')')
        .map(|i| &stat[i + 1..])
        .ok_or_else(|| malformed("stat"))?;
    let mut fields = after_name.split_whitespace().skip(11);
    let mut next_ticks = || -> io::Result<u64> {
        fields
            .next()
            .and_then(|f| f.parse().ok())
            .ok_or_else(|| malformed("stat"))
    };
    let ticks = next_ticks()? + next_ticks()?;
    Ok(Duration::from_micros(
        ticks * 1_000_000 / clock_ticks_per_second(),
    ))
}

/// Resident set size of process `pid` now, in bytes (`VmRSS`).
pub fn rss_bytes(pid: u32) -> io::Result<u64> {
    status_kib(pid, "VmRSS:").map(|kib| kib * 1024)
}

/// Peak resident set size of process `pid`, in bytes (`VmHWM`).
pub fn peak_rss_bytes(pid: u32) -> io::Result<u64> {
    status_kib(pid, "VmHWM:").map(|kib| kib * 1024)
}

/// Voluntary plus involuntary context switches of every thread of process `pid`
/// but its main thread.
pub fn context_switches_except_main(pid: u32) -> io::Result<u64> {
    let mut total = 0;
    for task in fs::read_dir(format!("/proc/{pid}/task"))? {
        let task = task?;
        if task.file_name().to_str() == Some(&pid.to_string()) {
            continue;
        }
        // A thread that ended since the listing has nothing left to count.
        let Ok(status) = fs::read_to_string(task.path().join("status")) else {
            continue;
        };
        for key in ["voluntary_ctxt_switches:", "nonvoluntary_ctxt_switches:"] {
            total += status
                .lines()
                .find_map(|line| line.strip_prefix(key))
                .and_then(|n| n.trim().parse::<u64>().ok())
                .ok_or_else(|| malformed("task/TID/status"))?;
        }
    }
    Ok(total)
}

fn status_kib(pid: u32, key: &str) -> io::Result<u64> {
    let status = fs::read_to_string(format!("/proc/{pid}/status"))?;
    status
        .lines()
        .find_map(|line| line.strip_prefix(key))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
        .ok_or_else(|| malformed("status"))
}

fn clock_ticks_per_second() -> u64 {
    static TICKS: OnceLock<u64> = OnceLock::new();
    *TICKS.get_or_init(|| {
        // SAFETY: `sysconf` only reads a configuration value.
        let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
        // 100 is what Linux reports everywhere; the fallback only guards a failure.
        u64::try_from(ticks).ok().filter(|&t| t > 0).unwrap_or(100)
    })
}

fn malformed(file: &str) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        format!("unexpected /proc/PID/{file} format"),
    )
}

/// The machine's load average over the last minute (`/proc/loadavg`).
pub fn load_average() -> Option<f64> {
    fs::read_to_string("/proc/loadavg")
        .ok()?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// A warning line when other processes compete for the CPUs (load average above
/// 1.5 on this two-core machine, where the bench itself keeps about one busy).
pub fn load_warning() -> Option<String> {
    let load = load_average()?;
    (load > 1.5).then(|| {
        format!(
            "warning: load average {load:.1}: other processes compete for the CPUs; \
             timings and ratios are unreliable (instruction and syscall counts less so)"
        )
    })
}
