//! `Lock` and `RLock`, and the robust core every locked primitive shares.

use std::fmt;
use std::marker::PhantomData;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use mproc_shm::{Block, LockBlock};
use mproc_sys::{LockStatus, RawMutex};

use crate::error::{Error, ErrorKind, LockResult, OwnerDied, Result, TryLockError, TryLockResult};

/// A robust mutex at the start of a block (its word also carries the "needs repair" mark).
#[derive(Clone)]
pub(crate) struct Core {
    /// The mutex and six words of the primitive's state, in a lock chunk.
    pub(crate) lock: LockBlock,
    /// The data the lock guards (a `Value`'s value, say), in a data chunk.
    block: Option<Block>,
}

/// How an acquisition went.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Got {
    Clean,
    OwnerDied,
    No,
}

impl Core {
    /// Makes a lock, with `data` bytes of data beside it (none for a plain lock).
    pub(crate) fn new(data: usize) -> Result<Core> {
        Ok(Core {
            lock: LockBlock::alloc()?,
            block: if data > 0 {
                Some(Block::alloc(data)?)
            } else {
                None
            },
        })
    }

    /// Checks a received lock and its data (at least `data` bytes when some are needed).
    pub(crate) fn received(
        lock: LockBlock,
        block: Option<Block>,
        data: usize,
    ) -> std::result::Result<Core, String> {
        if data > 0 && block.as_ref().is_none_or(|b| b.len() < data) {
            return Err("received a synchronisation primitive with too little data".into());
        }
        Ok(Core { lock, block })
    }

    /// The guarded data (for the primitives that have some).
    #[inline]
    pub(crate) fn data(&self) -> &Block {
        self.block.as_ref().expect("made with data")
    }

    #[inline]
    pub(crate) fn raw(&self) -> &RawMutex {
        self.lock.slot().mutex()
    }

    /// One of the six state words beside the mutex.
    pub(crate) fn word(&self, index: usize) -> &AtomicU32 {
        &self.lock.slot().words()[index]
    }

    #[inline]
    pub(crate) fn acquire(&self, deadline: Option<Instant>) -> Got {
        self.note(self.raw().lock(deadline))
    }

    pub(crate) fn try_acquire(&self) -> Got {
        self.note(self.raw().try_lock())
    }

    #[inline]
    fn note(&self, status: LockStatus) -> Got {
        match status {
            LockStatus::Acquired => Got::Clean,
            LockStatus::OwnerDied => {
                crate::diag::warning!("a lock's holder died holding it; its new holder repairs");
                Got::OwnerDied
            }
            LockStatus::WouldBlock => Got::No,
        }
    }

    /// Releases; the lock stays marked for repair unless `mark_consistent` was called.
    #[inline]
    pub(crate) fn release(&self) -> std::result::Result<(), mproc_sys::NotOwner> {
        self.raw().unlock()
    }

    pub(crate) fn mark_consistent(&self) {
        let _ = self.raw().mark_consistent();
    }

    pub(crate) fn is_consistent(&self) -> bool {
        self.raw().is_consistent()
    }
}

pub(crate) fn not_owner() -> Error {
    Error::new(ErrorKind::NotOwner, "the lock is not held by this thread")
}

/// Wraps a guard by how it was acquired.
#[inline]
pub(crate) fn lock_result<G>(got: Got, guard: impl FnOnce() -> G) -> LockResult<G> {
    match got {
        Got::OwnerDied => Err(OwnerDied::new(guard())),
        _ => Ok(guard()),
    }
}

pub(crate) fn try_lock_result<G>(got: Got, guard: impl FnOnce() -> G) -> TryLockResult<G> {
    match got {
        Got::Clean => Ok(guard()),
        Got::OwnerDied => Err(TryLockError::OwnerDied(OwnerDied::new(guard()))),
        Got::No => Err(TryLockError::WouldBlock),
    }
}

/// Implements `Serialize` / `Deserialize` for a primitive that is a `Core` without data:
/// it travels as its lock slot.
macro_rules! core_handle {
    ($t:ident) => {
        impl serde::Serialize for $t {
            fn serialize<S: serde::Serializer>(
                &self,
                s: S,
            ) -> std::result::Result<S::Ok, S::Error> {
                self.core.lock.serialize(s)
            }
        }

        impl<'de> serde::Deserialize<'de> for $t {
            fn deserialize<D: serde::Deserializer<'de>>(
                d: D,
            ) -> std::result::Result<Self, D::Error> {
                let lock = mproc_shm::LockBlock::deserialize(d)?;
                let core = $crate::lock::Core::received(lock, None, 0)
                    .map_err(<D::Error as serde::de::Error>::custom)?;
                Ok($t { core })
            }
        }
    };
}
pub(crate) use core_handle;

/// A lock shared between processes. Python: `multiprocessing.Lock`.
///
/// Lock it with [`lock`](Lock::lock) (waits), [`try_lock`](Lock::try_lock) or
/// [`lock_timeout`](Lock::lock_timeout); the guard releases it when dropped. The lock
/// sleeps in the kernel after a short spin, and it is robust: if its holder dies (a
/// crash, SIGKILL, a thread that ends), the next locker gets the lock with
/// [`OwnerDied`] instead of waiting forever.
///
/// Unlike Python's, the lock belongs to the thread that took it: only that thread can
/// release it (this is what lets the kernel release it when the thread dies). Clones and
/// copies received through a pipe or as a spawn argument are the same lock.
///
/// ```
/// let lock = mproc_sync::Lock::new()?;
/// {
///     let _guard = lock.lock()?;
///     assert!(lock.is_locked());
///     assert!(lock.try_lock().is_err());
/// }
/// assert!(!lock.is_locked());
/// # Ok::<(), mproc_sync::Error>(())
/// ```
#[derive(Clone)]
pub struct Lock {
    core: Core,
}

core_handle!(Lock);

impl fmt::Debug for Lock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Lock")
            .field("owner", &self.core.raw().owner())
            .finish()
    }
}

impl Lock {
    /// Makes an unlocked lock in shared memory.
    ///
    /// ```
    /// let lock = mproc_sync::Lock::new()?;
    /// assert!(!lock.is_locked());
    /// # Ok::<(), mproc_sync::Error>(())
    /// ```
    ///
    /// # Errors
    ///
    /// `Shm` when shared memory cannot be had.
    pub fn new() -> Result<Lock> {
        Ok(Lock {
            core: Core::new(0)?,
        })
    }

    /// Waits for the lock. Python: `with lock:` / `lock.acquire()`.
    ///
    /// ```
    /// let lock = mproc_sync::Lock::new()?;
    /// let guard = lock.lock()?;
    /// assert!(lock.is_locked());
    /// drop(guard); // releases
    /// assert!(!lock.is_locked());
    /// # Ok::<(), mproc_sync::Error>(())
    /// ```
    ///
    /// # Errors
    ///
    /// [`OwnerDied`] (holding the guard) when the previous holder died holding it.
    #[inline]
    pub fn lock(&self) -> LockResult<LockGuard<'_>> {
        lock_result(self.core.acquire(None), || LockGuard::new(&self.core))
    }

    /// Takes the lock if it is free. Python: `lock.acquire(False)`.
    ///
    /// ```
    /// use mproc_sync::{Lock, TryLockError};
    /// let lock = Lock::new()?;
    /// let guard = lock.try_lock()?;
    /// assert!(matches!(lock.try_lock(), Err(TryLockError::WouldBlock)));
    /// drop(guard);
    /// assert!(lock.try_lock().is_ok());
    /// # Ok::<(), mproc_sync::Error>(())
    /// ```
    ///
    /// # Errors
    ///
    /// `WouldBlock` when it is held; `OwnerDied` as for [`lock`](Lock::lock).
    pub fn try_lock(&self) -> TryLockResult<LockGuard<'_>> {
        try_lock_result(self.core.try_acquire(), || LockGuard::new(&self.core))
    }

    /// Waits for the lock at most `timeout`. Python: `lock.acquire(timeout=t)`.
    ///
    /// ```
    /// use std::time::Duration;
    /// let lock = mproc_sync::Lock::new()?;
    /// let _held = lock.lock()?;
    /// std::thread::scope(|s| {
    ///     s.spawn(|| assert!(lock.lock_timeout(Duration::from_millis(10)).is_err()));
    /// });
    /// # Ok::<(), mproc_sync::Error>(())
    /// ```
    ///
    /// # Errors
    ///
    /// `WouldBlock` when still held after `timeout`; `OwnerDied` as for
    /// [`lock`](Lock::lock).
    pub fn lock_timeout(&self, timeout: Duration) -> TryLockResult<LockGuard<'_>> {
        try_lock_result(
            self.core.acquire(mproc_sys::deadline_after(timeout)),
            || LockGuard::new(&self.core),
        )
    }

    /// Acquires without a guard (Python: `acquire()`); pair with [`release`](Lock::release)
    /// on the same thread. Returns `false` if the previous holder died (the lock is taken
    /// all the same, still marked for repair; see [`OwnerDied`]).
    ///
    /// ```
    /// let lock = mproc_sync::Lock::new()?;
    /// assert!(lock.acquire()); // taken, from a live holder (or none)
    /// assert!(lock.is_locked());
    /// lock.release()?;
    /// # Ok::<(), mproc_sync::Error>(())
    /// ```
    pub fn acquire(&self) -> bool {
        self.core.acquire(None) == Got::Clean
    }

    /// Releases a lock taken by [`acquire`](Lock::acquire) (Python: `release()`).
    ///
    /// ```
    /// let lock = mproc_sync::Lock::new()?;
    /// assert!(lock.acquire());
    /// lock.release()?;
    /// assert_eq!(lock.release().unwrap_err().kind(), mproc_sync::ErrorKind::NotOwner);
    /// # Ok::<(), mproc_sync::Error>(())
    /// ```
    ///
    /// # Errors
    ///
    /// `NotOwner` when this thread does not hold the lock (Python raises `ValueError` for
    /// an unlocked lock; it lets other threads release, which a robust lock cannot).
    pub fn release(&self) -> Result<()> {
        self.core.release().map_err(|_| not_owner())
    }

    /// Returns whether the lock is held, by anyone (Python 3.14: `locked()`).
    ///
    /// ```
    /// let lock = mproc_sync::Lock::new()?;
    /// assert!(!lock.is_locked());
    /// let _guard = lock.lock()?;
    /// assert!(lock.is_locked());
    /// # Ok::<(), mproc_sync::Error>(())
    /// ```
    pub fn is_locked(&self) -> bool {
        self.core.raw().is_locked()
    }
}

/// Proof that a [`Lock`] is held; releases it when dropped. Not `Send`: the thread that
/// locked is the one that releases.
#[must_use = "the lock is released as soon as the guard is dropped"]
pub struct LockGuard<'a> {
    core: &'a Core,
    _not_send: PhantomData<*const ()>,
}

impl<'a> LockGuard<'a> {
    #[inline]
    fn new(core: &'a Core) -> Self {
        LockGuard {
            core,
            _not_send: PhantomData,
        }
    }

    /// Declares the protected data repaired after an [`OwnerDied`]: the lock is released
    /// normally from now on.
    ///
    /// ```
    /// let lock = mproc_sync::Lock::new()?;
    /// let dying = lock.clone();
    /// std::thread::spawn(move || std::mem::forget(dying.lock())).join().unwrap();
    /// let mut guard = lock.lock().unwrap_err().into_inner(); // its holder ended holding it
    /// guard.mark_consistent(); // repaired
    /// drop(guard);
    /// assert!(lock.lock().is_ok());
    /// # Ok::<(), mproc_sync::Error>(())
    /// ```
    pub fn mark_consistent(&mut self) {
        self.core.mark_consistent();
    }

    /// Returns whether the lock is consistent (no holder died, or the data was repaired).
    ///
    /// ```
    /// let lock = mproc_sync::Lock::new()?;
    /// let dying = lock.clone();
    /// std::thread::spawn(move || std::mem::forget(dying.lock())).join().unwrap();
    /// let mut guard = lock.lock().unwrap_err().into_inner();
    /// assert!(!guard.is_consistent());
    /// guard.mark_consistent();
    /// assert!(guard.is_consistent());
    /// # Ok::<(), mproc_sync::Error>(())
    /// ```
    pub fn is_consistent(&self) -> bool {
        self.core.is_consistent()
    }
}

impl fmt::Debug for LockGuard<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LockGuard")
            .field("consistent", &self.is_consistent())
            .finish()
    }
}

impl Drop for LockGuard<'_> {
    #[inline]
    fn drop(&mut self) {
        let _ = self.core.release();
    }
}

/// A reentrant lock shared between processes. Python: `multiprocessing.RLock`.
///
/// The owner (a thread of a process) may lock it again without waiting; it is released
/// when every guard is gone. Robust as [`Lock`] is. [`acquire`](RLock::acquire) /
/// [`release`](RLock::release) give Python's explicit form, where a release by a thread
/// that does not own the lock is an error.
///
/// ```
/// let rlock = mproc_sync::RLock::new()?;
/// let outer = rlock.lock()?;
/// let inner = rlock.lock()?; // the owner re-enters
/// assert_eq!(rlock.count(), 2);
/// drop(inner);
/// drop(outer);
/// assert!(!rlock.is_locked());
/// assert_eq!(rlock.release().unwrap_err().kind(), mproc_sync::ErrorKind::NotOwner);
/// # Ok::<(), mproc_sync::Error>(())
/// ```
#[derive(Clone)]
pub struct RLock {
    core: Core,
}

core_handle!(RLock);

impl fmt::Debug for RLock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RLock")
            .field("owner", &self.core.raw().owner())
            .field("count", &self.count())
            .finish()
    }
}

impl RLock {
    /// Makes an unlocked reentrant lock in shared memory.
    ///
    /// ```
    /// let rlock = mproc_sync::RLock::new()?;
    /// assert!(!rlock.is_locked());
    /// assert_eq!(rlock.count(), 0);
    /// # Ok::<(), mproc_sync::Error>(())
    /// ```
    ///
    /// # Errors
    ///
    /// `Shm` when shared memory cannot be had.
    pub fn new() -> Result<RLock> {
        Ok(RLock {
            core: Core::new(0)?,
        })
    }

    fn depth(&self) -> &AtomicU32 {
        self.core.raw().owner_word()
    }

    fn enter(&self, deadline: Option<Instant>, wait: bool) -> Got {
        if self.core.raw().is_owned_by_current_thread() {
            self.depth().fetch_add(1, Ordering::Relaxed);
            return if self.core.is_consistent() {
                Got::Clean
            } else {
                Got::OwnerDied
            };
        }
        let got = if wait {
            self.core.acquire(deadline)
        } else {
            self.core.try_acquire()
        };
        if got != Got::No {
            self.depth().store(1, Ordering::Relaxed);
        }
        got
    }

    /// Waits for the lock (at once if this thread owns it).
    ///
    /// ```
    /// let rlock = mproc_sync::RLock::new()?;
    /// let outer = rlock.lock()?;
    /// let inner = rlock.lock()?; // at once: this thread owns it
    /// assert_eq!(rlock.count(), 2);
    /// drop((inner, outer));
    /// assert!(!rlock.is_locked());
    /// # Ok::<(), mproc_sync::Error>(())
    /// ```
    ///
    /// # Errors
    ///
    /// [`OwnerDied`] when the previous holder died holding it.
    pub fn lock(&self) -> LockResult<RLockGuard<'_>> {
        lock_result(self.enter(None, true), || RLockGuard::new(self))
    }

    /// Takes the lock if this thread owns it or it is free.
    ///
    /// ```
    /// let rlock = mproc_sync::RLock::new()?;
    /// let _outer = rlock.lock()?;
    /// assert!(rlock.try_lock().is_ok()); // the owner re-enters
    /// std::thread::scope(|s| {
    ///     s.spawn(|| assert!(rlock.try_lock().is_err())); // another thread does not
    /// });
    /// # Ok::<(), mproc_sync::Error>(())
    /// ```
    ///
    /// # Errors
    ///
    /// `WouldBlock` when another thread holds it; `OwnerDied` as for [`lock`](RLock::lock).
    pub fn try_lock(&self) -> TryLockResult<RLockGuard<'_>> {
        try_lock_result(self.enter(None, false), || RLockGuard::new(self))
    }

    /// Waits for the lock at most `timeout`.
    ///
    /// ```
    /// use std::time::Duration;
    /// let rlock = mproc_sync::RLock::new()?;
    /// let _held = rlock.lock_timeout(Duration::from_secs(1))?;
    /// std::thread::scope(|s| {
    ///     s.spawn(|| assert!(rlock.lock_timeout(Duration::from_millis(10)).is_err()));
    /// });
    /// # Ok::<(), mproc_sync::Error>(())
    /// ```
    ///
    /// # Errors
    ///
    /// `WouldBlock` when still held after `timeout`; `OwnerDied` as for
    /// [`lock`](RLock::lock).
    pub fn lock_timeout(&self, timeout: Duration) -> TryLockResult<RLockGuard<'_>> {
        try_lock_result(self.enter(mproc_sys::deadline_after(timeout), true), || {
            RLockGuard::new(self)
        })
    }

    /// Acquires without a guard (Python: `acquire()`); pair with
    /// [`release`](RLock::release). Returns `false` if the previous holder died (the lock
    /// is still taken; see [`OwnerDied`]).
    ///
    /// ```
    /// let rlock = mproc_sync::RLock::new()?;
    /// assert!(rlock.acquire() && rlock.acquire());
    /// assert_eq!(rlock.count(), 2);
    /// rlock.release()?;
    /// rlock.release()?;
    /// assert!(!rlock.is_locked());
    /// # Ok::<(), mproc_sync::Error>(())
    /// ```
    pub fn acquire(&self) -> bool {
        self.enter(None, true) == Got::Clean
    }

    /// Releases one level taken by [`acquire`](RLock::acquire).
    ///
    /// ```
    /// let rlock = mproc_sync::RLock::new()?;
    /// rlock.acquire();
    /// rlock.release()?;
    /// assert_eq!(rlock.release().unwrap_err().kind(), mproc_sync::ErrorKind::NotOwner);
    /// # Ok::<(), mproc_sync::Error>(())
    /// ```
    ///
    /// # Errors
    ///
    /// `NotOwner` when this thread does not hold the lock (Python: `AssertionError`).
    pub fn release(&self) -> Result<()> {
        if !self.core.raw().is_owned_by_current_thread() {
            return Err(not_owner());
        }
        if self.depth().fetch_sub(1, Ordering::Relaxed) <= 1 {
            self.depth().store(0, Ordering::Relaxed);
            self.core.release().map_err(|_| not_owner())?;
        }
        Ok(())
    }

    /// Returns how many times the owner holds the lock (0 when free or held elsewhere).
    ///
    /// ```
    /// let rlock = mproc_sync::RLock::new()?;
    /// let (_a, _b) = (rlock.lock()?, rlock.lock()?);
    /// assert_eq!(rlock.count(), 2);
    /// std::thread::scope(|s| {
    ///     s.spawn(|| assert_eq!(rlock.count(), 0)); // held, but not by this thread
    /// });
    /// # Ok::<(), mproc_sync::Error>(())
    /// ```
    pub fn count(&self) -> u32 {
        if self.core.raw().is_owned_by_current_thread() {
            self.depth().load(Ordering::Relaxed)
        } else {
            0
        }
    }

    /// Returns whether the lock is held, by anyone.
    ///
    /// ```
    /// let rlock = mproc_sync::RLock::new()?;
    /// assert!(!rlock.is_locked());
    /// let _guard = rlock.lock()?;
    /// assert!(rlock.is_locked());
    /// # Ok::<(), mproc_sync::Error>(())
    /// ```
    pub fn is_locked(&self) -> bool {
        self.core.raw().is_locked()
    }

    /// Returns whether the calling thread owns the lock.
    ///
    /// ```
    /// let rlock = mproc_sync::RLock::new()?;
    /// let _guard = rlock.lock()?;
    /// assert!(rlock.is_owned());
    /// std::thread::scope(|s| {
    ///     s.spawn(|| assert!(rlock.is_locked() && !rlock.is_owned()));
    /// });
    /// # Ok::<(), mproc_sync::Error>(())
    /// ```
    pub fn is_owned(&self) -> bool {
        self.core.raw().is_owned_by_current_thread()
    }
}

/// One level of an [`RLock`]; the lock is released when the last guard goes.
#[must_use = "the level is released as soon as the guard is dropped"]
pub struct RLockGuard<'a> {
    lock: &'a RLock,
    _not_send: PhantomData<*const ()>,
}

impl<'a> RLockGuard<'a> {
    fn new(lock: &'a RLock) -> Self {
        RLockGuard {
            lock,
            _not_send: PhantomData,
        }
    }

    /// Declares the protected data repaired after an [`OwnerDied`].
    ///
    /// ```
    /// let rlock = mproc_sync::RLock::new()?;
    /// let dying = rlock.clone();
    /// std::thread::spawn(move || std::mem::forget(dying.lock())).join().unwrap();
    /// let mut guard = rlock.lock().unwrap_err().into_inner(); // its owner ended holding it
    /// guard.mark_consistent();
    /// drop(guard);
    /// assert!(rlock.lock().is_ok());
    /// # Ok::<(), mproc_sync::Error>(())
    /// ```
    pub fn mark_consistent(&mut self) {
        self.lock.core.mark_consistent();
    }
}

impl fmt::Debug for RLockGuard<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RLockGuard")
            .field("count", &self.lock.count())
            .finish()
    }
}

impl Drop for RLockGuard<'_> {
    fn drop(&mut self) {
        let _ = self.lock.release();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lock_timeout_returns_would_block_after_about_the_timeout() {
        let lock = Lock::new().unwrap();
        let _g = lock.lock().unwrap();
        std::thread::scope(|s| {
            s.spawn(|| {
                let t0 = Instant::now();
                assert!(matches!(
                    lock.lock_timeout(Duration::from_millis(50)),
                    Err(TryLockError::WouldBlock)
                ));
                assert!(t0.elapsed() >= Duration::from_millis(50));
            });
        });
    }

    #[test]
    fn a_thread_dying_with_the_lock_hands_it_over_for_repair() {
        let lock = Lock::new().unwrap();
        std::thread::scope(|s| {
            s.spawn(|| std::mem::forget(lock.lock().unwrap()));
        });
        let died = lock.lock().unwrap_err();
        drop(died.into_inner()); // not repaired: the next holder is told again
        let mut guard = lock.lock().unwrap_err().into_inner();
        guard.mark_consistent();
        drop(guard);
        assert!(lock.lock().is_ok());
    }

    #[test]
    fn waiters_that_time_out_do_not_strand_those_without_a_deadline() {
        // Timed waiters give up all the time while others wait for good: a wake-up an
        // unlock meant for a sleeper must never be lost with the one who gave up.
        let lock = Lock::new().unwrap();
        let (done, finished) = std::sync::mpsc::channel();
        for patient in [true, false, true, false, true, false] {
            let lock = lock.clone();
            let done = done.clone();
            std::thread::spawn(move || {
                for _ in 0..2_000 {
                    if patient {
                        drop(lock.lock().unwrap());
                    } else if let Ok(g) = lock.lock_timeout(Duration::from_micros(5)) {
                        drop(g);
                    }
                }
                done.send(()).unwrap();
            });
        }
        for _ in 0..6 {
            finished
                .recv_timeout(Duration::from_secs(60))
                .expect("a waiter was never woken");
        }
    }

    #[test]
    fn rlock_reenters_under_other_locks_and_unlocks_out_of_order() {
        let (r, a, b) = (
            RLock::new().unwrap(),
            Lock::new().unwrap(),
            Lock::new().unwrap(),
        );
        let outer = r.lock().unwrap();
        let ga = a.lock().unwrap();
        let inner = r.lock().unwrap(); // r is no longer the newest lock held
        let gb = b.lock().unwrap();
        assert_eq!(r.count(), 2);
        drop(ga); // out of order
        drop(outer);
        assert!(r.is_owned());
        drop(inner);
        assert!(!r.is_locked());
        drop(gb);
        assert!(!a.is_locked() && !b.is_locked());
    }

    #[test]
    fn rlock_release_by_another_thread_is_refused() {
        let rlock = RLock::new().unwrap();
        assert!(rlock.acquire());
        assert!(rlock.acquire());
        std::thread::scope(|s| {
            s.spawn(|| assert_eq!(rlock.release().unwrap_err().kind(), ErrorKind::NotOwner));
        });
        rlock.release().unwrap();
        assert!(rlock.is_locked());
        rlock.release().unwrap();
        assert!(!rlock.is_locked());
        assert_eq!(rlock.release().unwrap_err().kind(), ErrorKind::NotOwner);
    }
}
