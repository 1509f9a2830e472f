//! Process-shared futex calls: sleeping on a word until it changes or a deadline passes,
//! and waking the sleepers.
//!
//! The calls here are the *shared* (non-private) kind, so a word in shared memory can be
//! waited on by one process and woken by another.

use std::io;
use std::sync::atomic::AtomicU32;
use std::time::Instant;

/// How a [`futex_wait`] ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FutexWait {
    /// Woken by [`futex_wake`], by a signal, or spuriously: re-check the word.
    Woken,
    /// The word did not hold the expected value, so the call did not sleep.
    Changed,
    /// The deadline passed.
    TimedOut,
}

/// Sleeps while `word` holds `expected`, until woken or until `deadline`.
///
/// The word may live in memory shared with other processes. `None` waits without a deadline.
///
/// ```
/// use std::sync::atomic::AtomicU32;
/// use std::time::{Duration, Instant};
/// use mproc_sys::{FutexWait, futex_wait};
/// let word = AtomicU32::new(0);
/// assert_eq!(futex_wait(&word, 1, None), FutexWait::Changed);
/// let deadline = Instant::now() + Duration::from_millis(5);
/// assert_eq!(futex_wait(&word, 0, Some(deadline)), FutexWait::TimedOut);
/// ```
pub fn futex_wait(word: &AtomicU32, expected: u32, deadline: Option<Instant>) -> FutexWait {
    let ts = match deadline {
        None => None,
        Some(d) => match absolute_monotonic(d) {
            Some(ts) => Some(ts),
            None => return FutexWait::TimedOut,
        },
    };
    let ts_ptr = ts
        .as_ref()
        .map_or(std::ptr::null(), |t| t as *const libc::timespec);
    // SAFETY: `word` is a valid, aligned u32 for the duration of the call; `ts_ptr` is null
    // or points to a timespec on our stack. FUTEX_WAIT_BITSET with an absolute
    // CLOCK_MONOTONIC timeout only reads them.
    let r = unsafe {
        libc::syscall(
            libc::SYS_futex,
            word.as_ptr(),
            libc::FUTEX_WAIT_BITSET,
            expected,
            ts_ptr,
            std::ptr::null::<u32>(),
            libc::FUTEX_BITSET_MATCH_ANY,
        )
    };
    if r == 0 {
        return FutexWait::Woken;
    }
    match io::Error::last_os_error().raw_os_error() {
        Some(libc::EAGAIN) => FutexWait::Changed,
        Some(libc::ETIMEDOUT) => FutexWait::TimedOut,
        _ => FutexWait::Woken,
    }
}

/// Wakes up to `n` processes or threads sleeping in [`futex_wait`] on `word`; returns how
/// many woke.
///
/// ```
/// use std::sync::atomic::AtomicU32;
/// assert_eq!(mproc_sys::futex_wake(&AtomicU32::new(0), u32::MAX), 0);
/// ```
pub fn futex_wake(word: &AtomicU32, n: u32) -> usize {
    let n = n.min(i32::MAX as u32);
    // SAFETY: `word` is a valid, aligned u32; FUTEX_WAKE does not access memory beyond
    // using its address as a key.
    let r = unsafe { libc::syscall(libc::SYS_futex, word.as_ptr(), libc::FUTEX_WAKE, n) };
    r.max(0) as usize
}

/// Converts `deadline` to an absolute CLOCK_MONOTONIC time (the clock `Instant` reads), or
/// `None` if it has passed.
fn absolute_monotonic(deadline: Instant) -> Option<libc::timespec> {
    let now = Instant::now();
    let remaining = deadline.checked_duration_since(now)?;
    if remaining.is_zero() {
        return None;
    }
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid out-pointer.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    let mut sec = ts
        .tv_sec
        .saturating_add(remaining.as_secs() as libc::time_t);
    let mut nsec = ts.tv_nsec + remaining.subsec_nanos() as libc::c_long;
    if nsec >= 1_000_000_000 {
        nsec -= 1_000_000_000;
        sec = sec.saturating_add(1);
    }
    Some(libc::timespec {
        tv_sec: sec,
        tv_nsec: nsec,
    })
}
