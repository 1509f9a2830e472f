//! `Value<T>`: one plain value in shared memory with its own robust lock (`Array` is in
//! `array.rs`).

use std::fmt;
use std::marker::PhantomData;
use std::ops::{Deref, DerefMut};
use std::time::Duration;

use mproc_shm::{Block, LockBlock, ShmSafe};
use mproc_sys::PinnedPlain;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::error::{LockResult, OwnerDied, Result, TryLockResult};
use crate::lock::{Core, lock_result, try_lock_result};

/// Where the data starts in the block: after the lock, on its own cache line.
pub(crate) const DATA: usize = 0;

pub(crate) fn check_align<T>() -> Result<()> {
    Ok(Block::check_align::<T>()?)
}

/// A value in shared memory with its own lock. Python: `multiprocessing.Value`.
///
/// Read-modify-write goes through [`lock`](Value::lock): the guard holds the lock and
/// dereferences to the value, so `*v.lock()? += 1` is one atomic step for every process.
/// That is the right way to count, and the obvious one here: Python's `v.value += 1`
/// reads and writes under two separate lock acquisitions and loses updates when processes
/// race (see `examples/level7_shared_memory.rs`). [`get`](Value::get) and
/// [`set`](Value::set) each take the lock once.
///
/// The guard works on a copy, written back when it is dropped, so a reader never sees
/// half of a write. The lock is robust: if a holder dies, the next one gets
/// [`OwnerDied`] and can check the value.
///
/// ```
/// let hits = mproc_sync::Value::new(0u64)?;
/// *hits.lock()? += 1;
/// hits.set(hits.get()? * 10)?;
/// assert_eq!(hits.get()?, 10);
/// # Ok::<(), mproc_sync::Error>(())
/// ```
pub struct Value<T: ShmSafe> {
    core: Core,
    /// The value's bytes, checked once here so that a guard's copy in and out is a single
    /// load and store (the contended lock's hot path).
    slot: PinnedPlain<T>,
}

impl<T: ShmSafe> Value<T> {
    /// Puts `value` in shared memory with a new lock.
    ///
    /// ```
    /// let point = mproc_sync::Value::new([1.0f64, 2.0])?;
    /// assert_eq!(point.get()?, [1.0, 2.0]);
    /// # Ok::<(), mproc_sync::Error>(())
    /// ```
    ///
    /// # Errors
    ///
    /// `Shm` when shared memory cannot be had or `T` is aligned to more than 64 bytes.
    pub fn new(value: T) -> Result<Self> {
        check_align::<T>()?;
        let core = Core::new(size_of::<T>().max(1))?;
        let slot = core.data().pin_plain(DATA)?;
        slot.write(value);
        Ok(Value { core, slot })
    }

    /// Waits for the lock and returns a guard that dereferences to the value.
    ///
    /// ```
    /// let v = mproc_sync::Value::new(10i32)?;
    /// {
    ///     let mut g = v.lock()?;
    ///     *g = *g * 2 + 1; // one step for every process: nobody writes in between
    /// }
    /// assert_eq!(v.get()?, 21);
    /// # Ok::<(), mproc_sync::Error>(())
    /// ```
    ///
    /// # Errors
    ///
    /// [`OwnerDied`] (holding the guard) when the previous holder died holding the lock.
    #[inline]
    pub fn lock(&self) -> LockResult<ValueGuard<'_, T>> {
        lock_result(self.core.acquire(None), || {
            ValueGuard::new(&self.core, &self.slot)
        })
    }

    /// Takes the lock if it is free.
    ///
    /// ```
    /// let v = mproc_sync::Value::new(0u32)?;
    /// let guard = v.try_lock()?;
    /// assert!(v.try_lock().is_err()); // held
    /// drop(guard);
    /// assert!(v.try_lock().is_ok());
    /// # Ok::<(), mproc_sync::Error>(())
    /// ```
    ///
    /// # Errors
    ///
    /// `WouldBlock` when it is held; `OwnerDied` as for [`lock`](Value::lock).
    pub fn try_lock(&self) -> TryLockResult<ValueGuard<'_, T>> {
        try_lock_result(self.core.try_acquire(), || {
            ValueGuard::new(&self.core, &self.slot)
        })
    }

    /// Waits for the lock at most `timeout`.
    ///
    /// ```
    /// use std::time::Duration;
    /// let v = mproc_sync::Value::new(0u32)?;
    /// *v.lock_timeout(Duration::from_secs(1))? += 5;
    /// assert_eq!(v.get()?, 5);
    /// # Ok::<(), mproc_sync::Error>(())
    /// ```
    ///
    /// # Errors
    ///
    /// `WouldBlock` after `timeout`; `OwnerDied` as for [`lock`](Value::lock).
    pub fn lock_timeout(&self, timeout: Duration) -> TryLockResult<ValueGuard<'_, T>> {
        try_lock_result(
            self.core.acquire(mproc_sys::deadline_after(timeout)),
            || ValueGuard::new(&self.core, &self.slot),
        )
    }

    /// Returns a copy of the value, taken under the lock. Python: `v.value`.
    ///
    /// ```
    /// let v = mproc_sync::Value::new(2.5f64)?;
    /// assert_eq!(v.get()?, 2.5);
    /// # Ok::<(), mproc_sync::Error>(())
    /// ```
    ///
    /// # Errors
    ///
    /// [`OwnerDied`] carrying the value (possibly half-updated) when a holder died.
    pub fn get(&self) -> LockResult<T> {
        match self.lock() {
            Ok(g) => Ok(g.value),
            Err(died) => Err(died.map(|g| g.value)),
        }
    }

    /// Replaces the value under the lock. Python: `v.value = x`.
    ///
    /// ```
    /// let v = mproc_sync::Value::new(0u64)?;
    /// v.set(42)?;
    /// assert_eq!(v.get()?, 42);
    /// # Ok::<(), mproc_sync::Error>(())
    /// ```
    ///
    /// # Errors
    ///
    /// [`OwnerDied`] when a holder died (the value is written anyway).
    pub fn set(&self, value: T) -> LockResult<()> {
        match self.lock() {
            Ok(mut g) => {
                g.value = value;
                Ok(())
            }
            Err(died) => {
                let mut g = died.into_inner();
                g.value = value;
                Err(OwnerDied::new(()))
            }
        }
    }
}

impl<T: ShmSafe> Clone for Value<T> {
    fn clone(&self) -> Self {
        Value {
            core: self.core.clone(),
            slot: self.slot.clone(),
        }
    }
}

impl<T: ShmSafe + fmt::Debug> fmt::Debug for Value<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let v: T = self.slot.read();
        f.debug_tuple("Value").field(&v).finish()
    }
}

impl<T: ShmSafe> Serialize for Value<T> {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        serialize_one(&self.core, s)
    }
}

impl<'de, T: ShmSafe> Deserialize<'de> for Value<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let core = deserialize_one::<T, D>(d)?;
        let slot = core
            .data()
            .pin_plain(DATA)
            .map_err(serde::de::Error::custom)?;
        Ok(Value { core, slot })
    }
}

/// Sends a lock holding one `T` (a `Value`, a `Condition`): its lock and its data block.
pub(crate) fn serialize_one<S: Serializer>(
    core: &Core,
    s: S,
) -> std::result::Result<S::Ok, S::Error> {
    (&core.lock, core.data()).serialize(s)
}

/// Receives what [`serialize_one`] sent, checking that the block holds a `T`.
pub(crate) fn deserialize_one<'de, T: ShmSafe, D: Deserializer<'de>>(
    d: D,
) -> std::result::Result<Core, D::Error> {
    let (lock, block): (LockBlock, Block) = Deserialize::deserialize(d)?;
    check_align::<T>().map_err(serde::de::Error::custom)?;
    Core::received(lock, Some(block), size_of::<T>().max(1)).map_err(serde::de::Error::custom)
}

/// The lock of a [`Value`], held; dereferences to (a copy of) the value, written back
/// when the guard is dropped.
#[must_use = "the lock is released as soon as the guard is dropped"]
pub struct ValueGuard<'a, T: ShmSafe> {
    core: &'a Core,
    slot: &'a PinnedPlain<T>,
    value: T,
    _not_send: PhantomData<*const ()>,
}

impl<'a, T: ShmSafe> ValueGuard<'a, T> {
    #[inline]
    fn new(core: &'a Core, slot: &'a PinnedPlain<T>) -> Self {
        ValueGuard {
            core,
            slot,
            value: slot.read(),
            _not_send: PhantomData,
        }
    }

    /// Declares the value repaired after an [`OwnerDied`].
    ///
    /// ```
    /// let v = mproc_sync::Value::new(0u64)?;
    /// let dying = v.clone();
    /// std::thread::spawn(move || std::mem::forget(dying.lock())).join().unwrap();
    /// let mut guard = v.lock().unwrap_err().into_inner(); // its holder ended holding it
    /// *guard = 0; // repair
    /// guard.mark_consistent();
    /// drop(guard);
    /// assert_eq!(v.get()?, 0);
    /// # Ok::<(), mproc_sync::Error>(())
    /// ```
    pub fn mark_consistent(&mut self) {
        self.core.mark_consistent();
    }
}

impl<T: ShmSafe> Deref for ValueGuard<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.value
    }
}

impl<T: ShmSafe> DerefMut for ValueGuard<'_, T> {
    fn deref_mut(&mut self) -> &mut T {
        &mut self.value
    }
}

impl<T: ShmSafe + fmt::Debug> fmt::Debug for ValueGuard<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("ValueGuard").field(&self.value).finish()
    }
}

impl<T: ShmSafe> Drop for ValueGuard<'_, T> {
    #[inline]
    fn drop(&mut self) {
        self.slot.write(self.value);
        let _ = self.core.release();
    }
}
