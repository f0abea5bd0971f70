//! What the bench asks of the OS for itself: CPU pinning and the open-file limit.

use std::io;

/// Pins the calling thread, and every thread it starts afterwards, to one CPU.
///
/// The server child pins itself to CPU 1 and the load generator to CPU 0, so the two
/// never compete for a core and the figures of one run compare with the next.
/// Does nothing (and returns `Ok(false)`) on a single-CPU machine.
pub fn pin_to_cpu(cpu: usize) -> io::Result<bool> {
    if online_cpus() < 2 {
        return Ok(false);
    }
    // SAFETY: `cpu_set_t` is a plain bit set for which all-zero bytes is the empty set.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    // SAFETY: `set` is a valid, exclusively borrowed `cpu_set_t` and `cpu` is below
    // the number of online CPUs, well within `CPU_SETSIZE`.
    unsafe { libc::CPU_SET(cpu, &mut set) };
    // SAFETY: pid 0 means the calling thread; the size and pointer describe `set`,
    // which outlives the call.
    let rc = unsafe { libc::sched_setaffinity(0, size_of::<libc::cpu_set_t>(), &set) };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(true)
}

/// Raises the soft limit on open files to the hard limit.
///
/// The idle case holds 10,000 connections on each side; both processes call this at
/// start so that only the hard limit (20,000 here) bounds them.
pub fn raise_open_file_limit() -> io::Result<u64> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: `limit` is a valid, exclusively borrowed `rlimit` for the call to fill.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0 {
        return Err(io::Error::last_os_error());
    }
    limit.rlim_cur = limit.rlim_max;
    // SAFETY: `limit` is a valid `rlimit` that outlives the call.
    if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &limit) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(limit.rlim_cur)
}

fn online_cpus() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// CPU time (user + system) of the whole calling process so far, in nanoseconds.
pub fn process_cpu_nanos() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, exclusively borrowed `timespec` for the call to fill.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_PROCESS_CPUTIME_ID, &mut ts) };
    if rc != 0 {
        return 0;
    }
    (ts.tv_sec as u64) * 1_000_000_000 + ts.tv_nsec as u64
}
