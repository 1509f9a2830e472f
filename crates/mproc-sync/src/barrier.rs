//! `Barrier`: parties that wait for each other, generation after generation.

use std::fmt;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use mproc_sys::{futex_wait, futex_wake};

use crate::error::{Error, ErrorKind, Result};
use crate::lock::{Core, Got, core_handle};

// The six words beside the barrier's mutex.
const PARTIES: usize = 0;
const COUNT: usize = 1;
const GENERATION: usize = 2;
/// Bit 0: broken. Bit 1: a party timed out without getting the lock and asks whoever
/// holds it (or takes it next) to break the barrier.
const BROKEN: usize = 3;
const BROKEN_GEN: usize = 4;
/// The default timeout in milliseconds (0: none).
const TIMEOUT_MS: usize = 5;

/// A barrier for a fixed number of parties (processes or threads). Python:
/// `multiprocessing.Barrier`.
///
/// Each [`wait`](Barrier::wait) blocks until `parties` callers are waiting, then all are
/// released and the barrier is ready for the next generation. Each caller gets an index in
/// `0..parties`, unique within its generation. A timeout (per call, or the default given
/// to [`with_timeout`](Barrier::with_timeout)), [`abort`](Barrier::abort), or a party
/// dying while it updates the barrier *breaks* it: every waiter, and every later caller
/// until [`reset`](Barrier::reset), gets a `BrokenBarrier` error. A party that dies while
/// waiting still counts as waiting (as in Python): give waits a timeout when parties may
/// crash.
///
/// ```
/// let barrier = mproc_sync::Barrier::new(2)?;
/// std::thread::scope(|s| {
///     let other = s.spawn(|| barrier.wait().unwrap());
///     let mine = barrier.wait().unwrap();
///     assert_eq!(mine + other.join().unwrap(), 1); // indices 0 and 1
/// });
/// assert_eq!(barrier.n_waiting(), 0);
/// # Ok::<(), mproc_sync::Error>(())
/// ```
#[derive(Clone)]
pub struct Barrier {
    core: Core,
}

core_handle!(Barrier);

fn broken(message: &str) -> Error {
    Error::new(ErrorKind::BrokenBarrier, message)
}

impl Barrier {
    /// Makes a barrier for `parties` parties (at least 1).
    ///
    /// ```
    /// let barrier = mproc_sync::Barrier::new(3)?;
    /// assert_eq!((barrier.parties(), barrier.n_waiting()), (3, 0));
    /// # Ok::<(), mproc_sync::Error>(())
    /// ```
    ///
    /// # Errors
    ///
    /// `Shm` when shared memory cannot be had.
    pub fn new(parties: u32) -> Result<Barrier> {
        Self::make(parties, None)
    }

    /// Makes a barrier whose waits break it after `timeout` by default (kept to the
    /// millisecond, at least 1 ms).
    ///
    /// ```
    /// use std::time::Duration;
    /// let barrier = mproc_sync::Barrier::with_timeout(2, Duration::from_millis(10))?;
    /// let err = barrier.wait().unwrap_err(); // the other party never comes
    /// assert_eq!(err.kind(), mproc_sync::ErrorKind::BrokenBarrier);
    /// assert!(barrier.is_broken());
    /// # Ok::<(), mproc_sync::Error>(())
    /// ```
    ///
    /// # Errors
    ///
    /// `Shm` when shared memory cannot be had.
    pub fn with_timeout(parties: u32, timeout: Duration) -> Result<Barrier> {
        Self::make(parties, Some(timeout))
    }

    fn make(parties: u32, timeout: Option<Duration>) -> Result<Barrier> {
        let core = Core::new(0)?;
        core.word(PARTIES).store(parties.max(1), Ordering::Relaxed);
        core.word(BROKEN_GEN).store(u32::MAX, Ordering::Relaxed);
        let ms = timeout.map_or(0, |t| t.as_millis().clamp(1, u32::MAX as u128) as u32);
        core.word(TIMEOUT_MS).store(ms, Ordering::Relaxed);
        Ok(Barrier { core })
    }

    /// Returns the number of parties.
    ///
    /// ```
    /// assert_eq!(mproc_sync::Barrier::new(4)?.parties(), 4);
    /// assert_eq!(mproc_sync::Barrier::new(0)?.parties(), 1); // at least one
    /// # Ok::<(), mproc_sync::Error>(())
    /// ```
    pub fn parties(&self) -> u32 {
        self.core.word(PARTIES).load(Ordering::Relaxed).max(1)
    }

    /// Returns how many parties are waiting now.
    ///
    /// ```
    /// let barrier = mproc_sync::Barrier::new(2)?;
    /// std::thread::scope(|s| {
    ///     let first = s.spawn(|| barrier.wait().unwrap());
    ///     while barrier.n_waiting() == 0 {
    ///         std::thread::yield_now(); // until the other thread waits
    ///     }
    ///     barrier.wait().unwrap(); // the second party releases both
    ///     first.join().unwrap();
    /// });
    /// assert_eq!(barrier.n_waiting(), 0);
    /// # Ok::<(), mproc_sync::Error>(())
    /// ```
    pub fn n_waiting(&self) -> u32 {
        self.core.word(COUNT).load(Ordering::Relaxed)
    }

    /// Returns whether the barrier is broken.
    ///
    /// ```
    /// let barrier = mproc_sync::Barrier::new(2)?;
    /// assert!(!barrier.is_broken());
    /// barrier.abort();
    /// assert!(barrier.is_broken());
    /// # Ok::<(), mproc_sync::Error>(())
    /// ```
    pub fn is_broken(&self) -> bool {
        self.core.word(BROKEN).load(Ordering::Relaxed) & 1 != 0
    }

    /// Waits for the other parties (with the default timeout, if any); returns this
    /// party's index. Python: `barrier.wait()`.
    ///
    /// ```
    /// let barrier = mproc_sync::Barrier::new(3)?;
    /// let mut indices = std::thread::scope(|s| {
    ///     let others: Vec<_> = (0..2).map(|_| s.spawn(|| barrier.wait().unwrap())).collect();
    ///     let mut all = vec![barrier.wait().unwrap()];
    ///     all.extend(others.into_iter().map(|t| t.join().unwrap()));
    ///     all
    /// });
    /// indices.sort();
    /// assert_eq!(indices, [0, 1, 2]); // one index each
    /// # Ok::<(), mproc_sync::Error>(())
    /// ```
    ///
    /// # Errors
    ///
    /// `BrokenBarrier` when the barrier is or becomes broken (including by this call's
    /// timeout).
    pub fn wait(&self) -> Result<u32> {
        self.wait_inner(self.default_timeout(), None::<fn()>)
    }

    /// Waits at most `timeout`; a timeout breaks the barrier. Python:
    /// `barrier.wait(timeout)`.
    ///
    /// ```
    /// use std::time::Duration;
    /// let barrier = mproc_sync::Barrier::new(2)?;
    /// let err = barrier.wait_timeout(Duration::from_millis(10)).unwrap_err(); // alone
    /// assert_eq!(err.kind(), mproc_sync::ErrorKind::BrokenBarrier);
    /// assert!(barrier.is_broken()); // until reset()
    /// # Ok::<(), mproc_sync::Error>(())
    /// ```
    ///
    /// # Errors
    ///
    /// As [`wait`](Barrier::wait).
    pub fn wait_timeout(&self, timeout: Duration) -> Result<u32> {
        self.wait_inner(Some(timeout), None::<fn()>)
    }

    /// Waits like [`wait`](Barrier::wait); if this party completes the generation, it
    /// runs `action` before anyone is released (Python's `action`, given here per call
    /// because a closure cannot travel between processes). If `action` panics the barrier
    /// breaks and the panic goes on. The action runs under the barrier's internal lock, so
    /// it must not call this barrier's methods (as in Python, that would deadlock).
    ///
    /// ```
    /// use std::sync::atomic::{AtomicU32, Ordering};
    /// let barrier = mproc_sync::Barrier::new(2)?;
    /// let runs = AtomicU32::new(0);
    /// std::thread::scope(|s| {
    ///     for _ in 0..2 {
    ///         s.spawn(|| barrier.wait_with(|| { runs.fetch_add(1, Ordering::Relaxed); }).unwrap());
    ///     }
    /// });
    /// assert_eq!(runs.load(Ordering::Relaxed), 1); // by the party that came last
    /// # Ok::<(), mproc_sync::Error>(())
    /// ```
    ///
    /// # Errors
    ///
    /// As [`wait`](Barrier::wait).
    pub fn wait_with(&self, action: impl FnOnce()) -> Result<u32> {
        self.wait_inner(self.default_timeout(), Some(action))
    }

    fn default_timeout(&self) -> Option<Duration> {
        let ms = self.core.word(TIMEOUT_MS).load(Ordering::Relaxed);
        (ms != 0).then(|| Duration::from_millis(ms.into()))
    }

    fn lock(&self) {
        self.lock_until(None);
    }

    /// Takes the barrier's internal lock (held only for a few instructions, or while the
    /// last party runs its action); `false` if `deadline` passed first.
    fn lock_until(&self, deadline: Option<Instant>) -> bool {
        let got = self.core.acquire(deadline);
        match got {
            Got::No => return false,
            Got::Clean => {}
            Got::OwnerDied => {
                // A party died in the middle of updating the barrier: it cannot be trusted.
                self.break_locked();
                self.core.mark_consistent();
            }
        }
        if self.core.word(BROKEN).load(Ordering::Relaxed) & 2 != 0 {
            self.break_locked();
        }
        true
    }

    /// Asks for the barrier to be broken without holding its lock (the holder, or the next
    /// to take it, does it), and wakes the waiters so that one of them takes the lock.
    fn request_break(&self) {
        self.core.word(BROKEN).fetch_or(2, Ordering::SeqCst);
        futex_wake(self.core.word(GENERATION), u32::MAX);
        // The holder may have let go meanwhile, with nobody left awake to see the request:
        // take the lock if it is free now and break it ourselves. (If it is held, its
        // holder sees the request before it sleeps or when it next takes the lock.)
        if self.core.try_acquire() != Got::No {
            self.break_locked();
            self.unlock();
        }
    }

    fn unlock(&self) {
        let _ = self.core.release();
    }

    /// Breaks the current generation (lock held): its waiters and later callers fail.
    fn break_locked(&self) {
        let f = |o| self.core.word(o);
        if f(BROKEN).swap(1, Ordering::SeqCst) & 1 != 0 {
            return; // broken already (its generation was ended then); the request is met
        }
        let generation = f(GENERATION).load(Ordering::Relaxed);
        f(BROKEN_GEN).store(generation, Ordering::Relaxed);
        f(COUNT).store(0, Ordering::Relaxed);
        f(GENERATION).store(generation.wrapping_add(1), Ordering::Release);
        futex_wake(f(GENERATION), u32::MAX);
    }

    fn wait_inner(&self, timeout: Option<Duration>, action: Option<impl FnOnce()>) -> Result<u32> {
        let end = timeout.and_then(mproc_sys::deadline_after);
        let f = |o| self.core.word(o);
        if !self.lock_until(end) {
            // Stuck behind the lock's holder (the last party's action, say): a timeout all
            // the same, and the barrier breaks as soon as the holder lets go.
            self.request_break();
            return Err(broken(
                "the barrier wait timed out; the barrier is now broken",
            ));
        }
        if f(BROKEN).load(Ordering::SeqCst) & 1 != 0 {
            self.unlock();
            return Err(broken("the barrier is broken"));
        }
        let generation = f(GENERATION).load(Ordering::Relaxed);
        let index = f(COUNT).load(Ordering::Relaxed);
        if index.saturating_add(1) >= self.parties() {
            if let Some(action) = action {
                let ran = std::panic::catch_unwind(std::panic::AssertUnwindSafe(action));
                if let Err(panic) = ran {
                    self.break_locked();
                    self.unlock();
                    std::panic::resume_unwind(panic);
                }
            }
            f(COUNT).store(0, Ordering::Relaxed);
            f(GENERATION).store(generation.wrapping_add(1), Ordering::Release);
            futex_wake(f(GENERATION), u32::MAX);
            self.unlock();
            return Ok(index);
        }
        f(COUNT).store(index + 1, Ordering::Relaxed);
        self.unlock();
        loop {
            if f(BROKEN).load(Ordering::SeqCst) & 2 != 0 {
                // A party asked for a break it could not make itself: make it (taking the
                // lock honours the request).
                self.lock();
                self.unlock();
            }
            if f(GENERATION).load(Ordering::Acquire) != generation {
                break;
            }
            futex_wait(f(GENERATION), generation, end);
            if f(GENERATION).load(Ordering::Acquire) != generation {
                break;
            }
            if end.is_some_and(|e| Instant::now() >= e) {
                self.lock();
                if f(GENERATION).load(Ordering::Relaxed) == generation {
                    self.break_locked();
                    self.unlock();
                    return Err(broken(
                        "the barrier wait timed out; the barrier is now broken",
                    ));
                }
                self.unlock();
                break;
            }
        }
        // The generation ended: released, or broken (abort, reset, another's timeout).
        // (Should a later generation break before this waiter looks, it would read that
        // one's number; it would need to sleep through a reset and a whole generation.)
        self.lock();
        let was_broken = f(BROKEN_GEN).load(Ordering::Relaxed) == generation;
        self.unlock();
        if was_broken {
            return Err(broken("the barrier was broken while waiting"));
        }
        Ok(index)
    }

    /// Breaks the barrier: waiters and later callers get `BrokenBarrier` until
    /// [`reset`](Barrier::reset). Python: `abort()`.
    ///
    /// ```
    /// let barrier = mproc_sync::Barrier::new(2)?;
    /// barrier.abort();
    /// let err = barrier.wait().unwrap_err();
    /// assert_eq!(err.kind(), mproc_sync::ErrorKind::BrokenBarrier);
    /// # Ok::<(), mproc_sync::Error>(())
    /// ```
    pub fn abort(&self) {
        self.lock();
        self.break_locked();
        self.unlock();
    }

    /// Returns the barrier to its empty, unbroken state; parties waiting now get
    /// `BrokenBarrier`. Python: `reset()`.
    ///
    /// ```
    /// let barrier = mproc_sync::Barrier::new(1)?;
    /// barrier.abort();
    /// barrier.reset();
    /// assert!(!barrier.is_broken());
    /// assert_eq!(barrier.wait()?, 0); // usable again
    /// # Ok::<(), mproc_sync::Error>(())
    /// ```
    pub fn reset(&self) {
        self.lock();
        let f = |o| self.core.word(o);
        if f(COUNT).load(Ordering::Relaxed) > 0 {
            self.break_locked();
        }
        f(COUNT).store(0, Ordering::Relaxed);
        f(BROKEN).store(0, Ordering::Relaxed);
        self.unlock();
    }
}

impl fmt::Debug for Barrier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Barrier")
            .field("parties", &self.parties())
            .field("n_waiting", &self.n_waiting())
            .field("broken", &self.is_broken())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_party_that_times_out_behind_a_long_action_still_breaks_the_barrier() {
        let barrier = &Barrier::new(2).unwrap();
        let running = &std::sync::atomic::AtomicBool::new(false);
        std::thread::scope(|s| {
            let first = s.spawn(|| barrier.wait());
            while barrier.n_waiting() < 1 {
                std::thread::yield_now();
            }
            let last = s.spawn(move || {
                barrier.wait_with(|| {
                    running.store(true, Ordering::SeqCst);
                    std::thread::sleep(Duration::from_millis(300));
                })
            });
            while !running.load(Ordering::SeqCst) {
                std::thread::yield_now(); // until the action holds the barrier's lock
            }
            let late = barrier.wait_timeout(Duration::from_millis(50));
            assert_eq!(late.unwrap_err().kind(), crate::ErrorKind::BrokenBarrier);
            assert!(first.join().unwrap().is_ok() && last.join().unwrap().is_ok());
        });
        assert_eq!(
            barrier.wait().unwrap_err().kind(),
            crate::ErrorKind::BrokenBarrier
        );
        assert!(barrier.is_broken());
        barrier.reset();
        assert!(!barrier.is_broken());
    }
}
