//! Handing freed heap memory back to the operating system.
//!
//! tether's buffers grow to hold a large frame and are freed when it is
//! consumed; the pool keeps only default-size buffers. What stays in the
//! process afterwards is the C allocator's: glibc keeps freed chunks in its
//! arenas (one per loop thread), and after the first large buffer is freed it
//! raises its mmap threshold (up to 32 MiB), so later large buffers come from
//! the arenas too and are never returned. After three bursts of 64 × 8 MiB
//! frames a `frame_echo` stays at 140–190 MiB while idle, from 3 MiB.
//!
//! Two remedies, both process-wide and so left to the application:
//!
//! * [`return_large_frees`] fixes the mmap threshold: every buffer at least
//!   that large is its own mapping, returned to the system when freed (RSS
//!   goes back to its baseline after each burst). Setting the environment
//!   variable `MALLOC_MMAP_THRESHOLD_` or `MALLOC_TRIM_THRESHOLD_` has the same
//!   effect without code.
//! * [`release_free_memory`] trims what the arenas hold now (`malloc_trim`);
//!   call it after a burst, e.g. from a periodic tick.
//!
//! With another allocator (or another libc) both do nothing and return false.
// The two glibc calls are the only libc here.
#![allow(unsafe_code)]

pub(crate) mod budget;
pub(crate) mod report;

/// Makes every allocation of at least `bytes` a separate mapping that is
/// returned to the system when freed, for the whole process (glibc's
/// `M_MMAP_THRESHOLD`, which also stops its dynamic raise). 1 MiB suits
/// servers that see occasional large frames: small buffers keep coming from
/// the arenas. Returns false where unsupported or if `bytes` exceeds the
/// allocator's maximum (32 MiB on 64-bit glibc).
///
/// # Examples
///
/// ```
/// // Large frame buffers go back to the system as soon as they are freed.
/// let _ = tether::memory::return_large_frees(1024 * 1024);
/// ```
pub fn return_large_frees(bytes: usize) -> bool {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        let Ok(bytes) = i32::try_from(bytes) else {
            return false;
        };
        // SAFETY: mallopt(3) only changes allocator tunables; any value is
        // checked by glibc, which returns 0 when it refuses one.
        unsafe { libc::mallopt(libc::M_MMAP_THRESHOLD, bytes) == 1 }
    }
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    {
        let _ = bytes;
        false
    }
}

/// Returns the free memory the allocator's arenas hold to the system now
/// (glibc's `malloc_trim(0)`); true if any was released. It walks every arena,
/// so it is for quiet moments, not for each request.
pub fn release_free_memory() -> bool {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        // SAFETY: malloc_trim(3) takes no pointers and is thread-safe.
        unsafe { libc::malloc_trim(0) == 1 }
    }
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    {
        false
    }
}
