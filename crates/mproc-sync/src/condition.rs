//! `Condition<T>`: a robust lock around a shared value, with wait and notify.

use std::fmt;
use std::marker::PhantomData;
use std::ops::{Deref, DerefMut};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use mproc_shm::ShmSafe;
use mproc_sys::{futex_wait, futex_wake};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::error::{LockResult, OwnerDied, Result, TryLockResult};
use crate::lock::{Core, Got, lock_result, try_lock_result};

const SEQ: usize = 0;
const WAITING: usize = 1;
const PENDING: usize = 2;
/// Set once a holder's death has been handled (counters woken), until `mark_consistent`:
/// an unrepaired lock reports `OwnerDied` to every later locker, and each must not wake
/// everyone again.
const DEATH_SEEN: usize = 3;
/// Set while a notify grants tokens and wakes: a holder that dies in between leaves it
/// set, and the next locker wakes everyone whatever `DEATH_SEEN` says.
const NOTIFYING: usize = 4;
const DATA: usize = 0;

/// A condition variable shared between processes, bundled with its lock and the value it
/// guards. Python: `multiprocessing.Condition`.
///
/// Lock it to get a [`ConditionGuard`]; on the guard, [`wait`](ConditionGuard::wait)
/// releases the lock until notified, and [`notify`](ConditionGuard::notify) /
/// [`notify_all`](ConditionGuard::notify_all) wake waiters. Since waiting and notifying
/// are methods of the guard, "wait without holding the lock" (Python's `RuntimeError`)
/// cannot be written. `notify(n)` wakes exactly `n` of the processes waiting at that
/// moment (fewer if fewer wait); later arrivals cannot take their place. A waiter that
/// dies while waiting stays counted, so a later `notify` may be spent on it (a live
/// waiter then gets it at the next notify): give waits a timeout when waiters may crash.
/// `Condition<()>` is Python's plain `Condition()`.
///
/// The lock is robust, as [`Lock`](crate::Lock)'s is.
///
/// ```
/// let ready = mproc_sync::Condition::new(0u32)?; // plain data: a u32, not a bool
/// std::thread::scope(|s| {
///     s.spawn(|| {
///         let mut g = ready.lock().unwrap();
///         *g = 1;
///         g.notify_all();
///     });
///     let (g, ok) = ready.lock().unwrap().wait_for(|r| *r == 1, None).unwrap();
///     assert!(ok && *g == 1);
/// });
/// # Ok::<(), mproc_sync::Error>(())
/// ```
pub struct Condition<T: ShmSafe = ()> {
    core: Core,
    _t: PhantomData<T>,
}

impl<T: ShmSafe> Condition<T> {
    /// Makes a condition guarding `value`.
    ///
    /// ```
    /// let cond = mproc_sync::Condition::new(5u32)?;
    /// assert_eq!(*cond.lock()?, 5);
    /// # Ok::<(), mproc_sync::Error>(())
    /// ```
    ///
    /// # Errors
    ///
    /// `Shm` when shared memory cannot be had.
    pub fn new(value: T) -> Result<Self> {
        crate::value::check_align::<T>()?;
        let core = Core::new(size_of::<T>().max(1))?;
        core.data().write(DATA, value)?;
        Ok(Condition {
            core,
            _t: PhantomData,
        })
    }

    fn word(&self, offset: usize) -> &AtomicU32 {
        self.core.word(offset)
    }

    fn guard(&self) -> ConditionGuard<'_, T> {
        ConditionGuard {
            cond: self,
            value: self.core.data().read(DATA).expect("checked when made"),
            _not_send: PhantomData,
        }
    }

    /// Returns how many processes or threads are waiting now (approximate: it can change
    /// as soon as it is read).
    ///
    /// ```
    /// let cond = mproc_sync::Condition::new(())?;
    /// std::thread::scope(|s| {
    ///     s.spawn(|| drop(cond.lock().unwrap().wait().unwrap()));
    ///     while cond.waiting() == 0 {
    ///         std::thread::yield_now(); // until the other thread waits
    ///     }
    ///     cond.lock().unwrap().notify_all();
    /// });
    /// assert_eq!(cond.waiting(), 0);
    /// # Ok::<(), mproc_sync::Error>(())
    /// ```
    pub fn waiting(&self) -> u32 {
        self.word(WAITING).load(Ordering::Relaxed)
    }

    /// Waits for the lock.
    ///
    /// ```
    /// let total = mproc_sync::Condition::new(0u64)?;
    /// *total.lock()? += 2; // written back when the guard drops
    /// assert_eq!(*total.lock()?, 2);
    /// # Ok::<(), mproc_sync::Error>(())
    /// ```
    ///
    /// # Errors
    ///
    /// [`OwnerDied`] (holding the guard) when the previous holder died holding it.
    pub fn lock(&self) -> LockResult<ConditionGuard<'_, T>> {
        lock_result(self.acquire(None), || self.guard())
    }

    /// Takes the lock. If a holder died, it may have died half-way through a notify (its
    /// tokens granted but nobody woken): wake everyone, so the tokens are taken.
    fn acquire(&self, deadline: Option<Instant>) -> Got {
        self.after(self.core.acquire(deadline))
    }

    fn after(&self, got: Got) -> Got {
        if got == Got::OwnerDied
            && (self.word(DEATH_SEEN).swap(1, Ordering::Relaxed) == 0
                || self.word(NOTIFYING).swap(0, Ordering::Relaxed) != 0)
        {
            self.word(SEQ).fetch_add(1, Ordering::Release);
            futex_wake(self.word(SEQ), u32::MAX);
        }
        got
    }

    /// Takes the lock if it is free.
    ///
    /// ```
    /// let cond = mproc_sync::Condition::new(0u32)?;
    /// let guard = cond.try_lock()?;
    /// assert!(cond.try_lock().is_err()); // held
    /// drop(guard);
    /// assert!(cond.try_lock().is_ok());
    /// # Ok::<(), mproc_sync::Error>(())
    /// ```
    ///
    /// # Errors
    ///
    /// `WouldBlock` when it is held; `OwnerDied` as for [`lock`](Condition::lock).
    pub fn try_lock(&self) -> TryLockResult<ConditionGuard<'_, T>> {
        try_lock_result(self.after(self.core.try_acquire()), || self.guard())
    }

    /// Waits for the lock at most `timeout`.
    ///
    /// ```
    /// use std::time::Duration;
    /// let cond = mproc_sync::Condition::new(0u32)?;
    /// let _held = cond.lock()?;
    /// std::thread::scope(|s| {
    ///     s.spawn(|| assert!(cond.lock_timeout(Duration::from_millis(10)).is_err()));
    /// });
    /// # Ok::<(), mproc_sync::Error>(())
    /// ```
    ///
    /// # Errors
    ///
    /// `WouldBlock` after `timeout`; `OwnerDied` as for [`lock`](Condition::lock).
    pub fn lock_timeout(&self, timeout: Duration) -> TryLockResult<ConditionGuard<'_, T>> {
        try_lock_result(self.acquire(mproc_sys::deadline_after(timeout)), || {
            self.guard()
        })
    }
}

impl<T: ShmSafe> Clone for Condition<T> {
    fn clone(&self) -> Self {
        Condition {
            core: self.core.clone(),
            _t: PhantomData,
        }
    }
}

impl<T: ShmSafe> fmt::Debug for Condition<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Condition")
            .field("waiting", &self.word(WAITING).load(Ordering::Relaxed))
            .finish()
    }
}

impl<T: ShmSafe> Serialize for Condition<T> {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        crate::value::serialize_one(&self.core, s)
    }
}

impl<'de, T: ShmSafe> Deserialize<'de> for Condition<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        Ok(Condition {
            core: crate::value::deserialize_one::<T, D>(d)?,
            _t: PhantomData,
        })
    }
}

/// The lock of a [`Condition`], held: dereferences to (a copy of) the guarded value, which
/// is written back before waiting and when the guard is dropped.
#[must_use = "the lock is released as soon as the guard is dropped"]
pub struct ConditionGuard<'a, T: ShmSafe> {
    cond: &'a Condition<T>,
    value: T,
    _not_send: PhantomData<*const ()>,
}

impl<'a, T: ShmSafe> ConditionGuard<'a, T> {
    /// Releases the lock and sleeps until notified, then takes the lock back. Python:
    /// `cond.wait()`.
    ///
    /// ```
    /// let cond = mproc_sync::Condition::new(0u32)?;
    /// std::thread::scope(|s| {
    ///     s.spawn(|| {
    ///         let mut g = cond.lock().unwrap();
    ///         *g = 1;
    ///         g.notify_all();
    ///     });
    ///     let mut g = cond.lock().unwrap();
    ///     while *g == 0 {
    ///         g = g.wait().unwrap(); // the lock is free while this thread sleeps
    ///     }
    ///     assert_eq!(*g, 1);
    /// });
    /// # Ok::<(), mproc_sync::Error>(())
    /// ```
    ///
    /// # Errors
    ///
    /// [`OwnerDied`] (holding the guard) when a holder of the lock died meanwhile.
    pub fn wait(self) -> LockResult<Self> {
        match self.wait_until(None) {
            Ok((g, _)) => Ok(g),
            Err(died) => Err(died.map(|(g, _)| g)),
        }
    }

    /// Like [`wait`](ConditionGuard::wait), for at most `timeout`; the `bool` is `true`
    /// when notified and `false` when the time ran out. Python: `cond.wait(timeout)`.
    ///
    /// ```
    /// use std::time::Duration;
    /// let cond = mproc_sync::Condition::new(0u32)?;
    /// let (guard, notified) = cond.lock()?.wait_timeout(Duration::from_millis(10))?;
    /// assert!(!notified); // nobody notified: the time ran out
    /// assert_eq!(*guard, 0); // and the lock is held again
    /// # Ok::<(), mproc_sync::Error>(())
    /// ```
    ///
    /// # Errors
    ///
    /// As [`wait`](ConditionGuard::wait).
    pub fn wait_timeout(self, timeout: Duration) -> LockResult<(Self, bool)> {
        self.wait_until(Some(mproc_sys::deadline_after(timeout)))
    }

    /// Waits until `condition` holds for the value, or `timeout` passes; returns the last
    /// answer of `condition`. Python: `cond.wait_for(predicate, timeout)`.
    ///
    /// ```
    /// use std::time::Duration;
    /// let count = mproc_sync::Condition::new(3u32)?;
    /// let (guard, ok) = count.lock()?.wait_for(|n| *n >= 3, None)?; // true already: no wait
    /// assert!(ok);
    /// drop(guard);
    /// let (_, ok) = count.lock()?.wait_for(|n| *n >= 10, Some(Duration::from_millis(10)))?;
    /// assert!(!ok); // still 3 when the time ran out
    /// # Ok::<(), mproc_sync::Error>(())
    /// ```
    ///
    /// # Errors
    ///
    /// As [`wait`](ConditionGuard::wait).
    pub fn wait_for(
        self,
        mut condition: impl FnMut(&T) -> bool,
        timeout: Option<Duration>,
    ) -> LockResult<(Self, bool)> {
        let end = timeout.map(mproc_sys::deadline_after);
        let mut guard = self;
        let mut died = false;
        loop {
            if condition(&guard.value) {
                return finish(guard, true, died);
            }
            if end.is_some_and(|e| e.is_some_and(|e| Instant::now() >= e)) {
                return finish(guard, false, died);
            }
            guard = match guard.wait_until(end) {
                Ok((g, _)) => g,
                Err(d) => {
                    died = true;
                    d.into_inner().0
                }
            };
        }
    }

    /// `deadline`: `None` waits forever; `Some(None)` is a timeout too far to represent.
    fn wait_until(mut self, deadline: Option<Option<Instant>>) -> LockResult<(Self, bool)> {
        let cond = self.cond;
        let core = &cond.core;
        let _ = core.data().write(DATA, self.value);
        cond.word(WAITING).fetch_add(1, Ordering::Relaxed);
        let mut seq = cond.word(SEQ).load(Ordering::Relaxed);
        let mut died = false;
        let notified = loop {
            let _ = core.release();
            let timed_out = futex_wait(cond.word(SEQ), seq, deadline.flatten())
                == mproc_sys::FutexWait::TimedOut;
            died |= cond.acquire(None) == Got::OwnerDied;
            // A token is ours only if a notify came after we went to sleep: one granted
            // earlier belongs to those already waiting then, not to a later arrival.
            let pending = cond.word(PENDING).load(Ordering::Relaxed);
            let now = cond.word(SEQ).load(Ordering::Relaxed);
            if pending > 0 && now != seq {
                cond.word(PENDING).store(pending - 1, Ordering::Relaxed);
                break true;
            }
            let expired = deadline.is_some_and(|d| d.is_some_and(|d| Instant::now() >= d));
            if timed_out || expired {
                break false;
            }
            seq = now;
        };
        let waiting = cond.word(WAITING).load(Ordering::Relaxed);
        cond.word(WAITING)
            .store(waiting.saturating_sub(1), Ordering::Relaxed);
        self.value = core.data().read(DATA).expect("checked when made");
        finish(self, notified, died)
    }

    /// Wakes up to `n` of the processes or threads waiting now. Python: `notify(n)`.
    ///
    /// ```
    /// let cond = mproc_sync::Condition::new(0u32)?;
    /// std::thread::scope(|s| {
    ///     let waiter = s.spawn(|| *cond.lock().unwrap().wait().unwrap());
    ///     while cond.waiting() == 0 {
    ///         std::thread::yield_now();
    ///     }
    ///     let mut g = cond.lock().unwrap();
    ///     *g = 7;
    ///     g.notify(1);
    ///     drop(g); // the woken waiter takes the lock and sees 7
    ///     assert_eq!(waiter.join().unwrap(), 7);
    /// });
    /// # Ok::<(), mproc_sync::Error>(())
    /// ```
    pub fn notify(&self, n: u32) {
        let cond = self.cond;
        let waiting = cond.word(WAITING).load(Ordering::Relaxed);
        if waiting == 0 || n == 0 {
            return;
        }
        let pending = cond.word(PENDING).load(Ordering::Relaxed).min(waiting);
        let k = n.min(waiting - pending);
        cond.word(NOTIFYING).store(1, Ordering::Relaxed);
        cond.word(PENDING).store(pending + k, Ordering::Relaxed);
        cond.word(SEQ).fetch_add(1, Ordering::Release);
        // With k == 0 every waiter holds a token already, or tokens went to waiters that
        // died: waking one lets a live waiter take such a token instead of sleeping on.
        futex_wake(cond.word(SEQ), k.max(1));
        cond.word(NOTIFYING).store(0, Ordering::Relaxed);
    }

    /// Wakes every process or thread waiting now. Python: `notify_all()`.
    ///
    /// ```
    /// let go = mproc_sync::Condition::new(0u32)?;
    /// std::thread::scope(|s| {
    ///     for _ in 0..3 {
    ///         s.spawn(|| assert!(go.lock().unwrap().wait_for(|g| *g == 1, None).unwrap().1));
    ///     }
    ///     while go.waiting() < 3 {
    ///         std::thread::yield_now();
    ///     }
    ///     let mut g = go.lock().unwrap();
    ///     *g = 1;
    ///     g.notify_all(); // all three wake, in turn take the lock, and see 1
    /// });
    /// # Ok::<(), mproc_sync::Error>(())
    /// ```
    pub fn notify_all(&self) {
        self.notify(u32::MAX);
    }

    /// Declares the value repaired after an [`OwnerDied`].
    ///
    /// ```
    /// let cond = mproc_sync::Condition::new(0u32)?;
    /// let dying = cond.clone();
    /// std::thread::spawn(move || std::mem::forget(dying.lock())).join().unwrap();
    /// let mut guard = cond.lock().unwrap_err().into_inner(); // its holder ended holding it
    /// *guard = 0; // repair the value
    /// guard.mark_consistent();
    /// drop(guard);
    /// assert!(cond.lock().is_ok());
    /// # Ok::<(), mproc_sync::Error>(())
    /// ```
    pub fn mark_consistent(&mut self) {
        self.cond.word(DEATH_SEEN).store(0, Ordering::Relaxed);
        self.cond.core.mark_consistent();
    }
}

fn finish<G>(guard: G, notified: bool, died: bool) -> LockResult<(G, bool)> {
    if died {
        Err(OwnerDied::new((guard, notified)))
    } else {
        Ok((guard, notified))
    }
}

impl<T: ShmSafe> Deref for ConditionGuard<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.value
    }
}

impl<T: ShmSafe> DerefMut for ConditionGuard<'_, T> {
    fn deref_mut(&mut self) -> &mut T {
        &mut self.value
    }
}

impl<T: ShmSafe + fmt::Debug> fmt::Debug for ConditionGuard<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("ConditionGuard").field(&self.value).finish()
    }
}

impl<T: ShmSafe> Drop for ConditionGuard<'_, T> {
    fn drop(&mut self) {
        let _ = self.cond.core.data().write(DATA, self.value);
        let _ = self.cond.core.release();
    }
}
