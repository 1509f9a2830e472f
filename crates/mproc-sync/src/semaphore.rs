//! `Semaphore` and `BoundedSemaphore`: counters processes wait on.

use std::fmt;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use mproc_shm::Block;
use mproc_sys::{FutexWait, futex_wait, futex_wake};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::error::{Error, ErrorKind, Result};

const COUNT: usize = 0;
const SLEEPERS: usize = 4;
/// The bound, plus one (0: unbounded).
const BOUND: usize = 8;

/// The shared counter behind both semaphores.
#[derive(Clone)]
struct Counter {
    block: Block,
}

impl Counter {
    fn new(value: u32, bounded: bool) -> Result<Counter> {
        let block = Block::alloc(12)?;
        block.write::<u32>(COUNT, value)?;
        if bounded {
            block.write::<u32>(BOUND, value.saturating_add(1))?;
        }
        Ok(Counter { block })
    }

    fn word(&self, offset: usize) -> &AtomicU32 {
        self.block.get(offset).expect("checked when made")
    }

    fn try_take(&self) -> bool {
        let count = self.word(COUNT);
        let mut c = count.load(Ordering::Relaxed);
        while c > 0 {
            match count.compare_exchange_weak(c, c - 1, Ordering::Acquire, Ordering::Relaxed) {
                Ok(_) => return true,
                Err(now) => c = now,
            }
        }
        false
    }

    fn take(&self, deadline: Option<Instant>) -> bool {
        for _ in 0..100 {
            if self.try_take() {
                return true;
            }
            std::hint::spin_loop();
        }
        self.word(SLEEPERS).fetch_add(1, Ordering::SeqCst);
        let got = loop {
            if self.try_take() {
                break true;
            }
            if futex_wait(self.word(COUNT), 0, deadline) == FutexWait::TimedOut {
                break self.try_take();
            }
        };
        self.word(SLEEPERS).fetch_sub(1, Ordering::SeqCst);
        got
    }

    fn give(&self) -> Result<()> {
        let bound = self.word(BOUND).load(Ordering::Relaxed);
        let count = self.word(COUNT);
        let mut c = count.load(Ordering::Relaxed);
        loop {
            if (bound != 0 && c >= bound - 1) || c == u32::MAX {
                return Err(Error::new(
                    ErrorKind::TooManyReleases,
                    "semaphore released too many times",
                ));
            }
            match count.compare_exchange_weak(c, c + 1, Ordering::SeqCst, Ordering::Relaxed) {
                Ok(_) => break,
                Err(now) => c = now,
            }
        }
        if self.word(SLEEPERS).load(Ordering::SeqCst) > 0 {
            futex_wake(count, 1);
        }
        Ok(())
    }

    fn value(&self) -> u32 {
        self.word(COUNT).load(Ordering::Relaxed)
    }
}

impl Serialize for Counter {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        self.block.serialize(s)
    }
}

impl<'de> Deserialize<'de> for Counter {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let block = Block::deserialize(d)?;
        if block.len() < 12 {
            return Err(serde::de::Error::custom(
                "received a semaphore block too small",
            ));
        }
        Ok(Counter { block })
    }
}

macro_rules! semaphore {
    ($(#[$doc:meta])* $name:ident, $bounded:expr) => {
        $(#[$doc])*
        #[derive(Clone, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name {
            counter: Counter,
        }

        impl $name {
            /// Makes a semaphore with `value` permits.
            ///
            /// ```
            /// use mproc_sync::{BoundedSemaphore, Semaphore};
            /// assert_eq!(Semaphore::new(3)?.value(), 3);
            /// assert_eq!(BoundedSemaphore::new(3)?.value(), 3);
            /// # Ok::<(), mproc_sync::Error>(())
            /// ```
            ///
            /// # Errors
            ///
            /// `Shm` when shared memory cannot be had.
            pub fn new(value: u32) -> Result<Self> {
                Ok($name { counter: Counter::new(value, $bounded)? })
            }

            /// Takes a permit, waiting for one. Python: `acquire()`.
            ///
            /// ```
            /// use mproc_sync::{BoundedSemaphore, Semaphore};
            /// let (sem, bounded) = (Semaphore::new(1)?, BoundedSemaphore::new(1)?);
            /// sem.acquire();
            /// bounded.acquire();
            /// assert_eq!((sem.value(), bounded.value()), (0, 0));
            /// # Ok::<(), mproc_sync::Error>(())
            /// ```
            pub fn acquire(&self) {
                self.counter.take(None);
            }

            /// Takes a permit if one is free; returns whether it did. Python:
            /// `acquire(False)`.
            ///
            /// ```
            /// use mproc_sync::{BoundedSemaphore, Semaphore};
            /// let (sem, bounded) = (Semaphore::new(1)?, BoundedSemaphore::new(1)?);
            /// assert!(sem.try_acquire() && bounded.try_acquire());
            /// assert!(!sem.try_acquire() && !bounded.try_acquire()); // none left
            /// # Ok::<(), mproc_sync::Error>(())
            /// ```
            pub fn try_acquire(&self) -> bool {
                self.counter.try_take()
            }

            /// Takes a permit, waiting at most `timeout`; returns whether it did. Python:
            /// `acquire(timeout=t)`.
            ///
            /// ```
            /// use std::time::Duration;
            /// use mproc_sync::{BoundedSemaphore, Semaphore};
            /// let (sem, bounded) = (Semaphore::new(1)?, BoundedSemaphore::new(1)?);
            /// let wait = Duration::from_millis(1);
            /// assert!(sem.acquire_timeout(wait) && bounded.acquire_timeout(wait));
            /// assert!(!sem.acquire_timeout(wait) && !bounded.acquire_timeout(wait)); // none left
            /// # Ok::<(), mproc_sync::Error>(())
            /// ```
            pub fn acquire_timeout(&self, timeout: Duration) -> bool {
                match mproc_sys::deadline_after(timeout) {
                    Some(d) => self.counter.take(Some(d)),
                    None => self.counter.take(None),
                }
            }

            /// Takes a permit, waiting for one, and gives it back when the guard drops.
            /// Python: `with sem:`.
            ///
            /// ```
            /// use mproc_sync::{BoundedSemaphore, Semaphore};
            /// let (sem, bounded) = (Semaphore::new(2)?, BoundedSemaphore::new(2)?);
            /// {
            ///     let _permits = (sem.access(), bounded.access());
            ///     assert_eq!((sem.value(), bounded.value()), (1, 1));
            /// }
            /// assert_eq!((sem.value(), bounded.value()), (2, 2)); // given back
            /// # Ok::<(), mproc_sync::Error>(())
            /// ```
            pub fn access(&self) -> Permit<'_> {
                self.acquire();
                Permit { counter: &self.counter }
            }

            /// Returns the number of free permits. Python: `get_value()` (which macOS
            /// cannot give; this works everywhere).
            ///
            /// ```
            /// use mproc_sync::{BoundedSemaphore, Semaphore};
            /// let (sem, bounded) = (Semaphore::new(2)?, BoundedSemaphore::new(2)?);
            /// sem.acquire();
            /// assert_eq!((sem.value(), bounded.value()), (1, 2));
            /// # Ok::<(), mproc_sync::Error>(())
            /// ```
            pub fn value(&self) -> u32 {
                self.counter.value()
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.debug_struct(stringify!($name)).field("value", &self.value()).finish()
            }
        }
    };
}

semaphore!(
    /// A counter of permits shared between processes. Python: `multiprocessing.Semaphore`.
    ///
    /// A semaphore has no owner: any process may release, and a process that dies holding
    /// a permit does not give it back (use a [`Lock`](crate::Lock) for robust mutual
    /// exclusion).
    ///
    /// ```
    /// let sem = mproc_sync::Semaphore::new(2)?;
    /// sem.acquire();
    /// assert!(sem.try_acquire());
    /// assert!(!sem.acquire_timeout(std::time::Duration::from_millis(1)));
    /// sem.release()?;
    /// assert_eq!(sem.value(), 1);
    /// # Ok::<(), mproc_sync::Error>(())
    /// ```
    Semaphore,
    false
);

semaphore!(
    /// A semaphore that refuses to be released above its initial value. Python:
    /// `multiprocessing.BoundedSemaphore` (whose check macOS cannot make; this one works
    /// everywhere).
    ///
    /// ```
    /// let sem = mproc_sync::BoundedSemaphore::new(1)?;
    /// {
    ///     let _permit = sem.access();
    ///     assert_eq!(sem.value(), 0);
    /// }
    /// assert_eq!(sem.release().unwrap_err().kind(), mproc_sync::ErrorKind::TooManyReleases);
    /// # Ok::<(), mproc_sync::Error>(())
    /// ```
    BoundedSemaphore,
    true
);

impl Semaphore {
    /// Gives a permit back, waking a waiter. Python: `release()`.
    ///
    /// ```
    /// let sem = mproc_sync::Semaphore::new(0)?;
    /// sem.release()?;
    /// sem.release()?; // above the initial value: no bound
    /// assert_eq!(sem.value(), 2);
    /// # Ok::<(), mproc_sync::Error>(())
    /// ```
    ///
    /// # Errors
    ///
    /// `TooManyReleases` only when the count would overflow `u32`.
    pub fn release(&self) -> Result<()> {
        self.counter.give()
    }
}

impl BoundedSemaphore {
    /// Gives a permit back, waking a waiter. Python: `release()`.
    ///
    /// ```
    /// let sem = mproc_sync::BoundedSemaphore::new(1)?;
    /// sem.acquire();
    /// sem.release()?;
    /// assert_eq!(sem.release().unwrap_err().kind(), mproc_sync::ErrorKind::TooManyReleases);
    /// # Ok::<(), mproc_sync::Error>(())
    /// ```
    ///
    /// # Errors
    ///
    /// `TooManyReleases` when that would exceed the initial value (Python: `ValueError`).
    pub fn release(&self) -> Result<()> {
        self.counter.give()
    }
}

/// A permit taken with `access()`; given back when dropped.
#[must_use = "the permit is given back as soon as it is dropped"]
pub struct Permit<'a> {
    counter: &'a Counter,
}

impl fmt::Debug for Permit<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Permit")
    }
}

impl Drop for Permit<'_> {
    fn drop(&mut self) {
        let _ = self.counter.give();
    }
}
