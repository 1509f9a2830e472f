//! Time as every process of the machine reads it: CLOCK_MONOTONIC, and deadlines on it.

use std::time::{Duration, Instant};

/// Returns CLOCK_MONOTONIC in nanoseconds: a clock every process of the machine reads
/// alike (the one `Instant` reads), so one process can time what another started.
///
/// ```
/// let a = mproc_sys::monotonic_ns();
/// assert!(mproc_sys::monotonic_ns() >= a);
/// ```
pub fn monotonic_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid out-pointer; CLOCK_MONOTONIC always exists on Linux.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    (ts.tv_sec as u64)
        .saturating_mul(1_000_000_000)
        .saturating_add(ts.tv_nsec as u64)
}

/// Returns the instant `timeout` from now, or `None` ("no deadline") when that is too far
/// to represent (`Duration::MAX`, say).
///
/// ```
/// use std::time::Duration;
/// assert!(mproc_sys::deadline_after(Duration::from_secs(1)).is_some());
/// assert!(mproc_sys::deadline_after(Duration::MAX).is_none());
/// ```
pub fn deadline_after(timeout: Duration) -> Option<Instant> {
    Instant::now().checked_add(timeout)
}
