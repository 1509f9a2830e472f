//! Synchronisation proxies (locks, semaphores, conditions, events, barriers): Python's
//! `manager.Lock()`, `manager.Semaphore()`, `manager.Condition()`, `manager.Event()`,
//! `manager.Barrier()`.
//!
//! A lock is owned by a thread of a process. When a process dies holding a manager lock,
//! `RLock` or condition, the server releases it once the process's last connection closes
//! (Python's stays locked for ever and its waiters hang).

use std::fmt;
use std::marker::PhantomData;
use std::time::{Duration, Instant};

use crate::client::owner;
use crate::error::Result;
use crate::handle::Handle;
use crate::protocol::{Kind, Op, Wait};
use crate::proxy::common::proxy_common;
use crate::values::OutExt;

/// Holds a manager lock (or `RLock`, or condition) until dropped.
#[must_use = "the lock is released when the guard is dropped"]
pub struct LockGuard<'a> {
    handle: &'a Handle,
    /// A lock belongs to the thread that acquired it: the guard stays on that thread.
    _not_send: PhantomData<*const ()>,
}

impl<'a> LockGuard<'a> {
    fn new(handle: &'a Handle) -> Self {
        Self {
            handle,
            _not_send: PhantomData,
        }
    }
}

impl fmt::Debug for LockGuard<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "LockGuard({:?})", self.handle)
    }
}

impl Drop for LockGuard<'_> {
    fn drop(&mut self) {
        // A server that is gone has released it already.
        let _ = self.handle.op(Op::Release(owner())).unit();
    }
}

/// The calls a lock, an `RLock`, a condition and a semaphore share: taking and giving
/// back (a unit, for a semaphore).
macro_rules! acquire_calls {
    () => {
        /// Acquires (takes a unit), waiting as long as it takes (Python's `acquire()`).
        pub fn acquire(&self) -> Result<()> {
            match self.acquire_with(Wait::Forever)? {
                true => Ok(()),
                false => Err(self.handle.timed_out()),
            }
        }

        /// Acquires if free now (Python's `acquire(False)`).
        pub fn try_acquire(&self) -> Result<bool> {
            self.acquire_with(Wait::No)
        }

        /// Acquires, waiting at most `timeout`; `false` when that passed (Python's
        /// `acquire(timeout=t)`).
        pub fn acquire_timeout(&self, timeout: Duration) -> Result<bool> {
            self.acquire_with(Wait::For(timeout))
        }

        /// Releases (gives a unit back).
        ///
        /// # Errors
        ///
        /// [`ErrorKind::NotOwner`](crate::ErrorKind::NotOwner) when it is not held (by the
        /// caller, for an `RLock` or a condition), or for a bounded semaphore at its bound
        /// (Python's `ValueError`).
        pub fn release(&self) -> Result<()> {
            self.handle.op(Op::Release(owner())).unit()
        }

        fn acquire_with(&self, wait: Wait) -> Result<bool> {
            self.handle
                .op_waiting(wait, false, |w| Op::Acquire(owner(), w))
                .boolean()
        }
    };
}

/// The calls a lock, an `RLock` and a condition share: [`acquire_calls`], guards, and
/// whether it is held.
macro_rules! lock_calls {
    () => {
        acquire_calls!();

        /// Acquires and returns a guard that releases on drop.
        pub fn lock(&self) -> Result<LockGuard<'_>> {
            self.acquire()?;
            Ok(LockGuard::new(&self.handle))
        }

        /// Like [`lock`](Self::lock) if free now; `None` otherwise.
        pub fn try_lock(&self) -> Result<Option<LockGuard<'_>>> {
            Ok(self.try_acquire()?.then(|| LockGuard::new(&self.handle)))
        }

        /// Like [`lock`](Self::lock), waiting at most `timeout`; `None` when that passed.
        pub fn lock_timeout(&self, timeout: Duration) -> Result<Option<LockGuard<'_>>> {
            Ok(self
                .acquire_timeout(timeout)?
                .then(|| LockGuard::new(&self.handle)))
        }

        /// Whether anyone holds it.
        pub fn is_locked(&self) -> Result<bool> {
            self.handle.op(Op::Locked).boolean()
        }
    };
}

/// A lock held by the manager: Python's `manager.Lock()`. As in Python, any thread may
/// release it, and acquiring it again from its holder waits.
///
/// ```
/// # mproc_process::init();
/// let manager = mproc_manager::Manager::start()?;
/// let lock = manager.lock()?;
/// {
///     let _held = lock.lock()?;
///     assert!(!lock.try_acquire()?);
/// }
/// assert!(lock.try_acquire()?);
/// lock.release()?;
/// # Ok::<(), mproc_manager::Error>(())
/// ```
pub struct Lock {
    handle: Handle,
    _types: PhantomData<()>,
}

proxy_common!(Lock, Kind::Lock);

impl Lock {
    lock_calls!();
}

/// A reentrant lock held by the manager: Python's `manager.RLock()`. Its holder (a thread
/// of a process) may acquire it again and must release it as many times.
///
/// ```
/// # mproc_process::init();
/// let manager = mproc_manager::Manager::start()?;
/// let lock = manager.rlock()?;
/// let _outer = lock.lock()?;
/// let _inner = lock.lock()?; // the same thread: no wait
/// # Ok::<(), mproc_manager::Error>(())
/// ```
pub struct RLock {
    handle: Handle,
    _types: PhantomData<()>,
}

proxy_common!(RLock, Kind::RLock);

impl RLock {
    lock_calls!();
}

/// A condition variable held by the manager, with its own `RLock`: Python's
/// `manager.Condition()`.
///
/// ```
/// # mproc_process::init();
/// use std::time::Duration;
/// let manager = mproc_manager::Manager::start()?;
/// let cond = manager.condition()?;
/// let _held = cond.lock()?;
/// // Nobody notifies: the wait times out, with the lock held again.
/// assert!(!cond.wait_timeout(Duration::from_millis(20))?);
/// cond.notify_all()?;
/// # Ok::<(), mproc_manager::Error>(())
/// ```
pub struct Condition {
    handle: Handle,
    _types: PhantomData<()>,
}

proxy_common!(Condition, Kind::Condition);

impl Condition {
    lock_calls!();

    /// Releases the lock, waits to be notified, and acquires it again. The caller must hold
    /// the lock.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::NotOwner`](crate::ErrorKind::NotOwner) when it does not.
    pub fn wait(&self) -> Result<()> {
        match self.wait_with(Wait::Forever)? {
            true => Ok(()),
            false => Err(self.handle.timed_out()),
        }
    }

    /// Like [`wait`](Self::wait), waiting at most `timeout` to be notified; `false` when that
    /// passed. The lock is held again either way.
    pub fn wait_timeout(&self, timeout: Duration) -> Result<bool> {
        self.wait_with(Wait::For(timeout))
    }

    /// Waits until `ready()` holds, checking it first and after each notification; gives up
    /// after `timeout` (`None`: never) and returns the last value of `ready()`.
    pub fn wait_for(
        &self,
        mut ready: impl FnMut() -> bool,
        timeout: Option<Duration>,
    ) -> Result<bool> {
        let deadline = timeout.and_then(crate::client::deadline_after);
        loop {
            if ready() {
                return Ok(true);
            }
            match deadline {
                None => self.wait()?,
                Some(d) => {
                    let left = d.saturating_duration_since(Instant::now());
                    if left.is_zero() || !self.wait_timeout(left)? {
                        return Ok(ready());
                    }
                }
            }
        }
    }

    /// Wakes up to `n` waiters. The caller must hold the lock.
    pub fn notify(&self, n: usize) -> Result<()> {
        self.handle.op(Op::Notify(owner(), n as u64)).unit()
    }

    /// Wakes every waiter. The caller must hold the lock.
    pub fn notify_all(&self) -> Result<()> {
        self.handle.op(Op::Notify(owner(), u64::MAX)).unit()
    }

    fn wait_with(&self, wait: Wait) -> Result<bool> {
        self.handle
            // However long the wait, taking the lock back may take longer: only the proxy's
            // own deadline bounds the call.
            .op_waiting(wait, true, |w| Op::CondWait(owner(), w))
            .boolean()
    }
}

/// A semaphore held by the manager: Python's `manager.Semaphore(n)`, or
/// `manager.BoundedSemaphore(n)` when made with
/// [`Manager::bounded_semaphore`](crate::Manager::bounded_semaphore).
///
/// ```
/// # mproc_process::init();
/// let manager = mproc_manager::Manager::start()?;
/// let slots = manager.semaphore(2)?;
/// slots.acquire()?;
/// assert!(slots.try_acquire()?);
/// assert!(!slots.try_acquire()?);
/// slots.release()?;
/// assert_eq!(slots.value()?, 1);
/// # Ok::<(), mproc_manager::Error>(())
/// ```
pub struct Semaphore {
    handle: Handle,
    _types: PhantomData<()>,
}

proxy_common!(Semaphore, Kind::Semaphore);

impl Semaphore {
    acquire_calls!();

    /// The units free now.
    pub fn value(&self) -> Result<u64> {
        self.handle.op(Op::SemValue).num()
    }
}

/// An event held by the manager: Python's `manager.Event()`.
///
/// ```
/// # mproc_process::init();
/// use std::time::Duration;
/// let manager = mproc_manager::Manager::start()?;
/// let ready = manager.event()?;
/// assert!(!ready.wait_timeout(Duration::from_millis(10))?);
/// ready.set()?;
/// assert!(ready.is_set()?);
/// ready.wait()?;
/// # Ok::<(), mproc_manager::Error>(())
/// ```
pub struct Event {
    handle: Handle,
    _types: PhantomData<()>,
}

proxy_common!(Event, Kind::Event);

impl Event {
    /// Sets the flag and wakes every waiter.
    pub fn set(&self) -> Result<()> {
        self.handle.op(Op::EventSet).unit()
    }

    /// Clears the flag.
    pub fn clear(&self) -> Result<()> {
        self.handle.op(Op::EventClear).unit()
    }

    /// Whether the flag is set.
    pub fn is_set(&self) -> Result<bool> {
        self.handle.op(Op::IsSet).boolean()
    }

    /// Waits until the flag is set.
    pub fn wait(&self) -> Result<()> {
        match self
            .handle
            .op_waiting(Wait::Forever, false, Op::EventWait)
            .boolean()?
        {
            true => Ok(()),
            false => Err(self.handle.timed_out()),
        }
    }

    /// Waits at most `timeout` for the flag; returns whether it is set.
    pub fn wait_timeout(&self, timeout: Duration) -> Result<bool> {
        let wait = Wait::For(timeout);
        self.handle.op_waiting(wait, false, Op::EventWait).boolean()
    }
}

/// A barrier held by the manager: Python's `manager.Barrier(parties)`. A party that times
/// out, or whose process dies while it waits, breaks the barrier for all (Python's hang for
/// ever on a dead party).
///
/// ```
/// # mproc_process::init();
/// let manager = mproc_manager::Manager::start()?;
/// let barrier = manager.barrier(1)?;
/// assert_eq!(barrier.wait()?, 0);
/// assert_eq!(barrier.parties()?, 1);
/// # Ok::<(), mproc_manager::Error>(())
/// ```
pub struct Barrier {
    handle: Handle,
    _types: PhantomData<()>,
}

proxy_common!(Barrier, Kind::Barrier);

impl Barrier {
    /// Waits until every party has arrived; returns this party's arrival index (0 to
    /// `parties - 1`).
    ///
    /// # Errors
    ///
    /// [`ErrorKind::BrokenBarrier`](crate::ErrorKind::BrokenBarrier) when the barrier is or
    /// gets broken.
    pub fn wait(&self) -> Result<u64> {
        self.wait_with(Wait::Forever)
    }

    /// Like [`wait`](Self::wait); when `timeout` passes first, the barrier breaks.
    pub fn wait_timeout(&self, timeout: Duration) -> Result<u64> {
        self.wait_with(Wait::For(timeout))
    }

    /// Breaks the barrier: current and later waiters get `BrokenBarrier`.
    pub fn abort(&self) -> Result<()> {
        self.handle.op(Op::Abort).unit()
    }

    /// Makes a broken barrier usable again; parties waiting now get `BrokenBarrier`.
    pub fn reset(&self) -> Result<()> {
        self.handle.op(Op::Reset).unit()
    }

    /// How many parties must arrive.
    pub fn parties(&self) -> Result<u64> {
        self.handle.op(Op::Parties).num()
    }

    /// How many parties wait now.
    pub fn n_waiting(&self) -> Result<u64> {
        self.handle.op(Op::Waiting).num()
    }

    /// Whether the barrier is broken.
    pub fn is_broken(&self) -> Result<bool> {
        self.handle.op(Op::Broken).boolean()
    }

    fn wait_with(&self, wait: Wait) -> Result<u64> {
        self.handle
            .op_waiting(wait, false, |w| Op::BarrierWait(owner(), w))
            .num()
    }
}
