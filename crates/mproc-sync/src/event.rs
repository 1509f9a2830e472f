//! `Event`: a flag processes can wait for.

use std::fmt;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use mproc_shm::Block;
use mproc_sys::{FutexWait, futex_wait, futex_wake};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::error::Result;

/// The flag (bit 0) and the number of times it was set (the other bits), in one futex word:
/// a waiter returns once the count moves, even if the flag was cleared again at once.
const STATE: usize = 0;
const SLEEPERS: usize = 4;

/// A flag shared between processes that they can wait for. Python:
/// `multiprocessing.Event`.
///
/// [`set`](Event::set) wakes every waiter; [`wait`](Event::wait) returns at once while the
/// flag is set. No lock is involved, so no process can die holding one.
///
/// ```
/// let go = mproc_sync::Event::new()?;
/// assert!(!go.wait_timeout(std::time::Duration::from_millis(1)));
/// go.set();
/// assert!(go.is_set() && go.wait_timeout(std::time::Duration::ZERO));
/// go.clear();
/// assert!(!go.is_set());
/// # Ok::<(), mproc_sync::Error>(())
/// ```
#[derive(Clone)]
pub struct Event {
    block: Block,
}

impl Event {
    /// Makes a cleared event.
    ///
    /// ```
    /// let event = mproc_sync::Event::new()?;
    /// assert!(!event.is_set());
    /// # Ok::<(), mproc_sync::Error>(())
    /// ```
    ///
    /// # Errors
    ///
    /// `Shm` when shared memory cannot be had.
    pub fn new() -> Result<Event> {
        Ok(Event {
            block: Block::alloc(8)?,
        })
    }

    fn word(&self, offset: usize) -> &AtomicU32 {
        self.block.get(offset).expect("checked when made")
    }

    /// Returns whether the flag is set.
    ///
    /// ```
    /// let event = mproc_sync::Event::new()?;
    /// assert!(!event.is_set());
    /// event.set();
    /// assert!(event.is_set());
    /// # Ok::<(), mproc_sync::Error>(())
    /// ```
    pub fn is_set(&self) -> bool {
        self.word(STATE).load(Ordering::Acquire) & 1 != 0
    }

    /// Sets the flag and wakes every waiter.
    ///
    /// ```
    /// let event = mproc_sync::Event::new()?;
    /// std::thread::scope(|s| {
    ///     let waiter = s.spawn(|| event.wait());
    ///     event.set(); // the waiter wakes
    ///     waiter.join().unwrap();
    /// });
    /// assert!(event.is_set());
    /// # Ok::<(), mproc_sync::Error>(())
    /// ```
    pub fn set(&self) {
        let state = self.word(STATE);
        let mut s = state.load(Ordering::Relaxed);
        while s & 1 == 0 {
            match state.compare_exchange_weak(
                s,
                (s | 1).wrapping_add(2),
                Ordering::SeqCst,
                Ordering::Relaxed,
            ) {
                Ok(_) => break,
                Err(now) => s = now,
            }
        }
        if self.word(SLEEPERS).load(Ordering::SeqCst) > 0 {
            futex_wake(state, u32::MAX);
        }
    }

    /// Clears the flag.
    ///
    /// ```
    /// let event = mproc_sync::Event::new()?;
    /// event.set();
    /// event.clear();
    /// assert!(!event.is_set());
    /// # Ok::<(), mproc_sync::Error>(())
    /// ```
    pub fn clear(&self) {
        self.word(STATE).fetch_and(!1, Ordering::SeqCst);
    }

    /// Waits until the flag is set. Python: `event.wait()`.
    ///
    /// ```
    /// let ready = mproc_sync::Event::new()?;
    /// let setter = ready.clone();
    /// std::thread::spawn(move || setter.set());
    /// ready.wait(); // returns once the other thread has set it
    /// assert!(ready.is_set());
    /// # Ok::<(), mproc_sync::Error>(())
    /// ```
    pub fn wait(&self) {
        self.wait_until(None);
    }

    /// Waits until the flag is set or `timeout` passes; returns whether it is set.
    /// Python: `event.wait(timeout)`.
    ///
    /// ```
    /// use std::time::Duration;
    /// let event = mproc_sync::Event::new()?;
    /// assert!(!event.wait_timeout(Duration::from_millis(1))); // nobody sets it
    /// event.set();
    /// assert!(event.wait_timeout(Duration::ZERO));
    /// # Ok::<(), mproc_sync::Error>(())
    /// ```
    pub fn wait_timeout(&self, timeout: Duration) -> bool {
        match mproc_sys::deadline_after(timeout) {
            Some(d) => self.wait_until(Some(d)),
            None => {
                self.wait_until(None);
                true
            }
        }
    }

    fn wait_until(&self, deadline: Option<Instant>) -> bool {
        let state = self.word(STATE);
        let seen = state.load(Ordering::SeqCst);
        if seen & 1 != 0 {
            return true;
        }
        self.word(SLEEPERS).fetch_add(1, Ordering::SeqCst);
        let set = loop {
            let now = state.load(Ordering::SeqCst);
            if now != seen {
                break true; // set since we looked (perhaps cleared again already)
            }
            if futex_wait(state, seen, deadline) == FutexWait::TimedOut {
                break state.load(Ordering::SeqCst) != seen;
            }
        };
        self.word(SLEEPERS).fetch_sub(1, Ordering::SeqCst);
        set
    }
}

impl fmt::Debug for Event {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Event")
            .field("set", &self.is_set())
            .finish()
    }
}

impl Serialize for Event {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        self.block.serialize(s)
    }
}

impl<'de> Deserialize<'de> for Event {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let block = Block::deserialize(d)?;
        if block.len() < 8 {
            return Err(serde::de::Error::custom(
                "received an event block too small",
            ));
        }
        Ok(Event { block })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_set_cleared_at_once_still_wakes_the_waiters() {
        let event = Event::new().unwrap();
        std::thread::scope(|s| {
            let waiter = s.spawn(|| event.wait_timeout(Duration::from_secs(30)));
            while event.word(SLEEPERS).load(Ordering::SeqCst) == 0 {
                std::thread::yield_now();
            }
            event.set();
            event.clear();
            assert!(waiter.join().unwrap());
        });
        assert!(!event.is_set());
    }
}
