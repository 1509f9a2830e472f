//! Waiting on state behind a mutex: a lock that survives poisoning, a condvar wait with a
//! deadline.

use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::Instant;

/// Locks `m`, ignoring poison: a panic elsewhere (in a callback, say) leaves the state as
/// consistent as it was at the panic.
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Waits on `cv` until `done(state)` or `deadline`; returns whether `done` holds.
pub(crate) fn wait_until<'a, T>(
    cv: &Condvar,
    mut guard: MutexGuard<'a, T>,
    deadline: Option<Instant>,
    done: impl Fn(&T) -> bool,
) -> (MutexGuard<'a, T>, bool) {
    loop {
        if done(&guard) {
            return (guard, true);
        }
        match deadline {
            None => guard = cv.wait(guard).unwrap_or_else(|p| p.into_inner()),
            Some(d) => {
                let left = d.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    return (guard, false);
                }
                guard = cv
                    .wait_timeout(guard, left)
                    .unwrap_or_else(|p| p.into_inner())
                    .0;
            }
        }
    }
}
