//! `Array<T>`: a fixed-length array of plain data in shared memory with its own robust lock.

use std::fmt;
use std::marker::PhantomData;
use std::time::Duration;

use mproc_shm::{Block, LockBlock, ShmSafe};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::error::{Error, ErrorKind, LockResult, Result, TryLockResult};
use crate::lock::{Core, lock_result, try_lock_result};
use crate::value::{DATA, check_align};

/// A fixed-length array in shared memory with its own lock. Python:
/// `multiprocessing.Array`.
///
/// [`lock`](Array::lock) holds the lock for a series of reads and writes;
/// [`get`](Array::get), [`set`](Array::set) and [`to_vec`](Array::to_vec) take it once
/// each.
///
/// ```
/// let a = mproc_sync::Array::from_slice(&[1.0f64, 2.0, 3.0])?;
/// {
///     let mut g = a.lock()?;
///     let x = g.get(0).unwrap();
///     g.set(2, x + 10.0)?;
/// }
/// assert_eq!(a.to_vec()?, vec![1.0, 2.0, 11.0]);
/// # Ok::<(), mproc_sync::Error>(())
/// ```
pub struct Array<T: ShmSafe> {
    core: Core,
    len: usize,
    _t: PhantomData<T>,
}

impl<T: ShmSafe> Array<T> {
    /// Makes an array of `len` zeroed elements with a new lock.
    ///
    /// ```
    /// let a = mproc_sync::Array::<u16>::zeroed(4)?;
    /// assert_eq!(a.to_vec()?, [0, 0, 0, 0]);
    /// # Ok::<(), mproc_sync::Error>(())
    /// ```
    ///
    /// # Errors
    ///
    /// `Shm` when shared memory cannot be had.
    pub fn zeroed(len: usize) -> Result<Self> {
        check_align::<T>()?;
        let bytes = size_of::<T>()
            .checked_mul(len)
            .ok_or_else(|| Error::new(ErrorKind::InvalidInput, "array too large"))?;
        Ok(Array {
            core: Core::new(bytes.max(1))?,
            len,
            _t: PhantomData,
        })
    }

    /// Makes an array holding a copy of `values`.
    ///
    /// ```
    /// let a = mproc_sync::Array::from_slice(&[3i64, 1, 2])?;
    /// assert_eq!(a.len(), 3);
    /// assert_eq!(a.to_vec()?, [3, 1, 2]);
    /// # Ok::<(), mproc_sync::Error>(())
    /// ```
    ///
    /// # Errors
    ///
    /// As [`zeroed`](Array::zeroed).
    pub fn from_slice(values: &[T]) -> Result<Self> {
        let a = Self::zeroed(values.len())?;
        a.core.data().copy_from(DATA, values)?;
        Ok(a)
    }

    /// Returns the number of elements.
    ///
    /// ```
    /// assert_eq!(mproc_sync::Array::<u8>::zeroed(5)?.len(), 5);
    /// # Ok::<(), mproc_sync::Error>(())
    /// ```
    pub fn len(&self) -> usize {
        self.len
    }

    /// Returns whether the array has no elements.
    ///
    /// ```
    /// assert!(mproc_sync::Array::<u8>::zeroed(0)?.is_empty());
    /// assert!(!mproc_sync::Array::from_slice(&[1u8])?.is_empty());
    /// # Ok::<(), mproc_sync::Error>(())
    /// ```
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    fn guard(&self) -> ArrayGuard<'_, T> {
        ArrayGuard {
            array: self,
            _not_send: PhantomData,
        }
    }

    /// Waits for the lock.
    ///
    /// ```
    /// let a = mproc_sync::Array::from_slice(&[1u32, 2, 3])?;
    /// {
    ///     let mut g = a.lock()?; // one lock for the whole update
    ///     let sum = g.to_vec().iter().sum();
    ///     g.set(0, sum)?;
    /// }
    /// assert_eq!(a.to_vec()?, [6, 2, 3]);
    /// # Ok::<(), mproc_sync::Error>(())
    /// ```
    ///
    /// # Errors
    ///
    /// [`OwnerDied`](crate::OwnerDied) (holding the guard) when the previous holder died holding it.
    pub fn lock(&self) -> LockResult<ArrayGuard<'_, T>> {
        lock_result(self.core.acquire(None), || self.guard())
    }

    /// Takes the lock if it is free.
    ///
    /// ```
    /// let a = mproc_sync::Array::<u8>::zeroed(2)?;
    /// let guard = a.try_lock()?;
    /// assert!(a.try_lock().is_err()); // held
    /// drop(guard);
    /// assert!(a.try_lock().is_ok());
    /// # Ok::<(), mproc_sync::Error>(())
    /// ```
    ///
    /// # Errors
    ///
    /// `WouldBlock` when it is held; `OwnerDied` as for [`lock`](Array::lock).
    pub fn try_lock(&self) -> TryLockResult<ArrayGuard<'_, T>> {
        try_lock_result(self.core.try_acquire(), || self.guard())
    }

    /// Waits for the lock at most `timeout`.
    ///
    /// ```
    /// use std::time::Duration;
    /// let a = mproc_sync::Array::<u8>::zeroed(2)?;
    /// a.lock_timeout(Duration::from_secs(1))?.set(1, 9)?;
    /// assert_eq!(a.to_vec()?, [0, 9]);
    /// # Ok::<(), mproc_sync::Error>(())
    /// ```
    ///
    /// # Errors
    ///
    /// `WouldBlock` after `timeout`; `OwnerDied` as for [`lock`](Array::lock).
    pub fn lock_timeout(&self, timeout: Duration) -> TryLockResult<ArrayGuard<'_, T>> {
        try_lock_result(
            self.core.acquire(mproc_sys::deadline_after(timeout)),
            || self.guard(),
        )
    }

    /// Copies element `i` out under the lock (`Ok(None)` past the end).
    ///
    /// ```
    /// let a = mproc_sync::Array::from_slice(&[10u8, 20])?;
    /// assert_eq!(a.get(1)?, Some(20));
    /// assert_eq!(a.get(2)?, None); // past the end
    /// # Ok::<(), mproc_sync::Error>(())
    /// ```
    ///
    /// # Errors
    ///
    /// `OwnerDied` (converted into an [`Error`]) when a holder died.
    pub fn get(&self, i: usize) -> Result<Option<T>> {
        Ok(self.lock()?.get(i))
    }

    /// Stores `value` at `i` under the lock.
    ///
    /// ```
    /// let a = mproc_sync::Array::<u8>::zeroed(2)?;
    /// a.set(0, 7)?;
    /// assert!(a.set(2, 7).is_err()); // past the end
    /// assert_eq!(a.to_vec()?, [7, 0]);
    /// # Ok::<(), mproc_sync::Error>(())
    /// ```
    ///
    /// # Errors
    ///
    /// `IndexOutOfRange` past the end; `OwnerDied` when a holder died.
    pub fn set(&self, i: usize, value: T) -> Result<()> {
        self.lock()?.set(i, value)
    }

    /// Copies the whole array out under the lock.
    ///
    /// ```
    /// let a = mproc_sync::Array::from_slice(&[1.5f32, 2.5])?;
    /// assert_eq!(a.to_vec()?, vec![1.5, 2.5]);
    /// # Ok::<(), mproc_sync::Error>(())
    /// ```
    ///
    /// # Errors
    ///
    /// `OwnerDied` when a holder died.
    pub fn to_vec(&self) -> Result<Vec<T>> {
        Ok(self.lock()?.to_vec())
    }
}

impl<T: ShmSafe> Clone for Array<T> {
    fn clone(&self) -> Self {
        Array {
            core: self.core.clone(),
            len: self.len,
            _t: PhantomData,
        }
    }
}

impl<T: ShmSafe> fmt::Debug for Array<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Array").field("len", &self.len).finish()
    }
}

impl<T: ShmSafe> Serialize for Array<T> {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        (&self.core.lock, self.core.data(), self.len as u64).serialize(s)
    }
}

impl<'de, T: ShmSafe> Deserialize<'de> for Array<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        use serde::de::Error as _;
        let (lock, block, len): (LockBlock, Block, u64) = Deserialize::deserialize(d)?;
        check_align::<T>().map_err(D::Error::custom)?;
        let len = usize::try_from(len).map_err(D::Error::custom)?;
        let bytes = size_of::<T>()
            .checked_mul(len)
            .ok_or_else(|| D::Error::custom("received a shared array of impossible length"))?;
        let core = Core::received(lock, Some(block), bytes.max(1)).map_err(D::Error::custom)?;
        Ok(Array {
            core,
            len,
            _t: PhantomData,
        })
    }
}

/// The lock of an [`Array`], held. Element access copies in and out of shared memory.
#[must_use = "the lock is released as soon as the guard is dropped"]
pub struct ArrayGuard<'a, T: ShmSafe> {
    array: &'a Array<T>,
    _not_send: PhantomData<*const ()>,
}

impl<T: ShmSafe> ArrayGuard<'_, T> {
    /// Returns the number of elements.
    ///
    /// ```
    /// let a = mproc_sync::Array::<u8>::zeroed(3)?;
    /// assert_eq!(a.lock()?.len(), 3);
    /// # Ok::<(), mproc_sync::Error>(())
    /// ```
    pub fn len(&self) -> usize {
        self.array.len
    }

    /// Returns whether the array has no elements.
    ///
    /// ```
    /// let a = mproc_sync::Array::<u8>::zeroed(0)?;
    /// assert!(a.lock()?.is_empty());
    /// # Ok::<(), mproc_sync::Error>(())
    /// ```
    pub fn is_empty(&self) -> bool {
        self.array.len == 0
    }

    /// Copies element `i` out, or `None` past the end.
    ///
    /// ```
    /// let a = mproc_sync::Array::from_slice(&[4u8, 5])?;
    /// let g = a.lock()?;
    /// assert_eq!((g.get(0), g.get(2)), (Some(4), None));
    /// # Ok::<(), mproc_sync::Error>(())
    /// ```
    pub fn get(&self, i: usize) -> Option<T> {
        (i < self.array.len).then(|| {
            self.array
                .core
                .data()
                .read(DATA + i * size_of::<T>())
                .expect("in bounds, checked when made")
        })
    }

    /// Stores `value` at `i`.
    ///
    /// ```
    /// let a = mproc_sync::Array::<u8>::zeroed(2)?;
    /// let mut g = a.lock()?;
    /// g.set(1, 8)?;
    /// assert!(g.set(2, 8).is_err()); // Python: IndexError
    /// assert_eq!(g.to_vec(), [0, 8]);
    /// # Ok::<(), mproc_sync::Error>(())
    /// ```
    ///
    /// # Errors
    ///
    /// `IndexOutOfRange` past the end (Python: `IndexError`).
    pub fn set(&mut self, i: usize, value: T) -> Result<()> {
        if i >= self.array.len {
            return Err(Error::new(
                ErrorKind::IndexOutOfRange,
                format!("index {i} is out of range for length {}", self.array.len),
            ));
        }
        Ok(self
            .array
            .core
            .data()
            .write(DATA + i * size_of::<T>(), value)?)
    }

    /// Copies elements `start..start + dst.len()` into `dst`.
    ///
    /// ```
    /// let a = mproc_sync::Array::from_slice(&[1u8, 2, 3, 4])?;
    /// let mut middle = [0u8; 2];
    /// a.lock()?.read_into(1, &mut middle)?;
    /// assert_eq!(middle, [2, 3]);
    /// # Ok::<(), mproc_sync::Error>(())
    /// ```
    ///
    /// # Errors
    ///
    /// `IndexOutOfRange` when the range passes the end.
    pub fn read_into(&self, start: usize, dst: &mut [T]) -> Result<()> {
        self.check(start, dst.len())?;
        Ok(self
            .array
            .core
            .data()
            .copy_to(DATA + start * size_of::<T>(), dst)?)
    }

    /// Copies `src` into elements `start..start + src.len()` (Python: slice assignment).
    ///
    /// ```
    /// let a = mproc_sync::Array::<u8>::zeroed(4)?;
    /// a.lock()?.write_from(2, &[7, 8])?;
    /// assert_eq!(a.to_vec()?, [0, 0, 7, 8]);
    /// assert!(a.lock()?.write_from(3, &[7, 8]).is_err()); // past the end
    /// # Ok::<(), mproc_sync::Error>(())
    /// ```
    ///
    /// # Errors
    ///
    /// `Shm` when the range passes the end.
    pub fn write_from(&mut self, start: usize, src: &[T]) -> Result<()> {
        self.check(start, src.len())?;
        Ok(self
            .array
            .core
            .data()
            .copy_from(DATA + start * size_of::<T>(), src)?)
    }

    fn check(&self, start: usize, count: usize) -> Result<()> {
        if start.checked_add(count).is_none_or(|e| e > self.array.len) {
            return Err(Error::new(
                ErrorKind::IndexOutOfRange,
                format!(
                    "range {start}..{start}+{count} is out of range for length {}",
                    self.array.len
                ),
            ));
        }
        Ok(())
    }

    /// Copies the whole array out.
    ///
    /// ```
    /// let a = mproc_sync::Array::from_slice(&[1u8, 2])?;
    /// let g = a.lock()?;
    /// assert_eq!(g.to_vec(), [1, 2]);
    /// # Ok::<(), mproc_sync::Error>(())
    /// ```
    pub fn to_vec(&self) -> Vec<T> {
        (0..self.array.len)
            .map(|i| self.get(i).expect("in bounds"))
            .collect()
    }

    /// Declares the data repaired after an [`OwnerDied`](crate::OwnerDied).
    ///
    /// ```
    /// let a = mproc_sync::Array::from_slice(&[1u8, 2])?;
    /// let dying = a.clone();
    /// std::thread::spawn(move || std::mem::forget(dying.lock())).join().unwrap();
    /// let mut guard = a.lock().unwrap_err().into_inner(); // its holder ended holding it
    /// guard.write_from(0, &[1, 2])?; // repair
    /// guard.mark_consistent();
    /// drop(guard);
    /// assert!(a.lock().is_ok());
    /// # Ok::<(), mproc_sync::Error>(())
    /// ```
    pub fn mark_consistent(&mut self) {
        self.array.core.mark_consistent();
    }
}

impl<T: ShmSafe> fmt::Debug for ArrayGuard<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ArrayGuard")
            .field("len", &self.array.len)
            .finish()
    }
}

impl<T: ShmSafe> Drop for ArrayGuard<'_, T> {
    fn drop(&mut self) {
        let _ = self.array.core.release();
    }
}
