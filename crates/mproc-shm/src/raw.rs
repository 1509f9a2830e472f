//! `RawValue`, `RawArray` and `SharedAtomic`: typed values in the shared arena, without a
//! lock (see `mproc-sync`'s `Value` and `Array` for the locked kinds).

use std::fmt;
use std::marker::PhantomData;
use std::ops::Deref;

use mproc_sys::{Pinned, ShmAtomic, ShmSafe};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::arena::Block;
use crate::error::{Error, ErrorKind, Result};

/// A value in shared memory with no lock. Python: `RawValue`.
///
/// `get` and `set` copy the whole value; with several writers, a reader can see a mix of
/// two writes. Use `mproc_sync::Value` (a value with its own lock) when more than one
/// process writes, or a [`SharedAtomic`] for a counter.
///
/// ```
/// let v = mproc_shm::RawValue::new(1.5f64)?;
/// v.set(2.5);
/// assert_eq!(v.get(), 2.5);
/// # Ok::<(), mproc_shm::Error>(())
/// ```
pub struct RawValue<T: ShmSafe> {
    block: Block,
    _t: PhantomData<T>,
}

impl<T: ShmSafe> RawValue<T> {
    /// Puts `value` in shared memory.
    ///
    /// ```
    /// let v = mproc_shm::RawValue::new(7u32)?;
    /// assert_eq!(v.get(), 7);
    /// # Ok::<(), mproc_shm::Error>(())
    /// ```
    ///
    /// # Errors
    ///
    /// `InvalidInput` for a type aligned to more than 64 bytes; `NoSpace`/`Io` from the OS.
    pub fn new(value: T) -> Result<Self> {
        Block::check_align::<T>()?;
        let block = Block::alloc(size_of::<T>())?;
        block.write(0, value)?;
        Ok(RawValue {
            block,
            _t: PhantomData,
        })
    }

    /// Copies the value out.
    ///
    /// ```
    /// let v = mproc_shm::RawValue::new(-1i64)?;
    /// let same = v.clone(); // clones (and copies sent to children) share the value
    /// same.set(5);
    /// assert_eq!(v.get(), 5);
    /// # Ok::<(), mproc_shm::Error>(())
    /// ```
    pub fn get(&self) -> T {
        self.block
            .read(0)
            .expect("size and alignment checked when made")
    }

    /// Copies `value` in.
    ///
    /// ```
    /// let v = mproc_shm::RawValue::new([0u8; 4])?;
    /// v.set([1, 2, 3, 4]);
    /// assert_eq!(v.get(), [1, 2, 3, 4]);
    /// # Ok::<(), mproc_shm::Error>(())
    /// ```
    pub fn set(&self, value: T) {
        self.block
            .write(0, value)
            .expect("size and alignment checked when made")
    }
}

impl<T: ShmSafe> Clone for RawValue<T> {
    fn clone(&self) -> Self {
        RawValue {
            block: self.block.clone(),
            _t: PhantomData,
        }
    }
}

impl<T: ShmSafe + fmt::Debug> fmt::Debug for RawValue<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("RawValue").field(&self.get()).finish()
    }
}

impl<T: ShmSafe> Serialize for RawValue<T> {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        self.block.serialize(s)
    }
}

impl<'de, T: ShmSafe> Deserialize<'de> for RawValue<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let block = Block::deserialize(d)?;
        if block.len() < size_of::<T>() || Block::check_align::<T>().is_err() {
            return Err(serde::de::Error::custom(
                "received a shared value of the wrong size",
            ));
        }
        Ok(RawValue {
            block,
            _t: PhantomData,
        })
    }
}

/// A fixed-length array in shared memory with no lock. Python: `RawArray`.
///
/// Element access copies; see [`RawValue`] for what that means with several writers.
///
/// ```
/// let a = mproc_shm::RawArray::from_slice(&[1u32, 2, 3])?;
/// a.set(1, 20)?;
/// assert_eq!(a.get(1), Some(20));
/// assert_eq!(a.to_vec(), vec![1, 20, 3]);
/// assert!(a.set(3, 0).is_err());
/// # Ok::<(), mproc_shm::Error>(())
/// ```
pub struct RawArray<T: ShmSafe> {
    block: Block,
    len: usize,
    _t: PhantomData<T>,
}

impl<T: ShmSafe> RawArray<T> {
    /// Makes an array of `len` zeroed elements.
    ///
    /// ```
    /// let a = mproc_shm::RawArray::<f32>::zeroed(3)?;
    /// assert_eq!(a.to_vec(), [0.0; 3]);
    /// # Ok::<(), mproc_shm::Error>(())
    /// ```
    ///
    /// # Errors
    ///
    /// `InvalidInput` for a size overflow or an over-aligned type; `NoSpace`/`Io`.
    pub fn zeroed(len: usize) -> Result<Self> {
        Block::check_align::<T>()?;
        let bytes = size_of::<T>()
            .checked_mul(len)
            .ok_or_else(|| Error::new(ErrorKind::InvalidInput, "array too large"))?;
        Ok(RawArray {
            block: Block::alloc(bytes)?,
            len,
            _t: PhantomData,
        })
    }

    /// Makes an array holding a copy of `values`.
    ///
    /// ```
    /// let a = mproc_shm::RawArray::from_slice(&[5u16, 6])?;
    /// assert_eq!(a.to_vec(), [5, 6]);
    /// # Ok::<(), mproc_shm::Error>(())
    /// ```
    ///
    /// # Errors
    ///
    /// As [`zeroed`](RawArray::zeroed).
    pub fn from_slice(values: &[T]) -> Result<Self> {
        let a = Self::zeroed(values.len())?;
        a.block.copy_from(0, values)?;
        Ok(a)
    }

    /// Returns the number of elements.
    ///
    /// ```
    /// assert_eq!(mproc_shm::RawArray::<u8>::zeroed(5)?.len(), 5);
    /// # Ok::<(), mproc_shm::Error>(())
    /// ```
    pub fn len(&self) -> usize {
        self.len
    }

    /// Returns whether the array has no elements.
    ///
    /// ```
    /// assert!(mproc_shm::RawArray::<u8>::zeroed(0)?.is_empty());
    /// assert!(!mproc_shm::RawArray::from_slice(&[1u8])?.is_empty());
    /// # Ok::<(), mproc_shm::Error>(())
    /// ```
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Copies element `i` out, or `None` past the end.
    ///
    /// ```
    /// let a = mproc_shm::RawArray::from_slice(&[10u8, 20])?;
    /// assert_eq!(a.get(1), Some(20));
    /// assert_eq!(a.get(2), None); // past the end
    /// # Ok::<(), mproc_shm::Error>(())
    /// ```
    pub fn get(&self, i: usize) -> Option<T> {
        (i < self.len).then(|| {
            self.block
                .read(i * size_of::<T>())
                .expect("in bounds, checked when made")
        })
    }

    /// Copies `value` into element `i`.
    ///
    /// ```
    /// let a = mproc_shm::RawArray::<u8>::zeroed(2)?;
    /// a.set(0, 7)?;
    /// assert!(a.set(2, 7).is_err()); // Python: IndexError
    /// assert_eq!(a.to_vec(), [7, 0]);
    /// # Ok::<(), mproc_shm::Error>(())
    /// ```
    ///
    /// # Errors
    ///
    /// `InvalidInput` past the end (Python: `IndexError`).
    pub fn set(&self, i: usize, value: T) -> Result<()> {
        if i >= self.len {
            return Err(index_error(i, self.len));
        }
        self.block.write(i * size_of::<T>(), value)
    }

    /// Copies elements `start..start + dst.len()` into `dst`.
    ///
    /// ```
    /// let a = mproc_shm::RawArray::from_slice(&[1u8, 2, 3, 4])?;
    /// let mut middle = [0u8; 2];
    /// a.read_into(1, &mut middle)?;
    /// assert_eq!(middle, [2, 3]);
    /// assert!(a.read_into(3, &mut middle).is_err()); // past the end
    /// # Ok::<(), mproc_shm::Error>(())
    /// ```
    ///
    /// # Errors
    ///
    /// `InvalidInput` when the range passes the end.
    pub fn read_into(&self, start: usize, dst: &mut [T]) -> Result<()> {
        check_range(start, dst.len(), self.len)?;
        self.block.copy_to(start * size_of::<T>(), dst)
    }

    /// Copies `src` into elements `start..start + src.len()` (Python: slice assignment).
    ///
    /// ```
    /// let a = mproc_shm::RawArray::<u8>::zeroed(4)?;
    /// a.write_from(2, &[7, 8])?;
    /// assert_eq!(a.to_vec(), [0, 0, 7, 8]);
    /// assert!(a.write_from(3, &[7, 8]).is_err()); // past the end
    /// # Ok::<(), mproc_shm::Error>(())
    /// ```
    ///
    /// # Errors
    ///
    /// `InvalidInput` when the range passes the end.
    pub fn write_from(&self, start: usize, src: &[T]) -> Result<()> {
        check_range(start, src.len(), self.len)?;
        self.block.copy_from(start * size_of::<T>(), src)
    }

    /// Copies the whole array out.
    ///
    /// ```
    /// let a = mproc_shm::RawArray::from_slice(&[1.5f64, 2.5])?;
    /// assert_eq!(a.to_vec(), vec![1.5, 2.5]);
    /// # Ok::<(), mproc_shm::Error>(())
    /// ```
    pub fn to_vec(&self) -> Vec<T> {
        let mut v = Vec::with_capacity(self.len);
        for i in 0..self.len {
            v.push(self.get(i).expect("in bounds"));
        }
        v
    }
}

pub(crate) fn index_error(i: usize, len: usize) -> Error {
    Error::new(
        ErrorKind::InvalidInput,
        format!("index {i} is out of range for length {len}"),
    )
}

pub(crate) fn check_range(start: usize, count: usize, len: usize) -> Result<()> {
    if start.checked_add(count).is_none_or(|end| end > len) {
        return Err(Error::new(
            ErrorKind::InvalidInput,
            format!("range {start}..{start}+{count} is out of range for length {len}"),
        ));
    }
    Ok(())
}

impl<T: ShmSafe> Clone for RawArray<T> {
    fn clone(&self) -> Self {
        RawArray {
            block: self.block.clone(),
            len: self.len,
            _t: PhantomData,
        }
    }
}

impl<T: ShmSafe + fmt::Debug> fmt::Debug for RawArray<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("RawArray").field(&self.to_vec()).finish()
    }
}

impl<T: ShmSafe> Serialize for RawArray<T> {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        (&self.block, self.len as u64).serialize(s)
    }
}

impl<'de, T: ShmSafe> Deserialize<'de> for RawArray<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let (block, len): (Block, u64) = Deserialize::deserialize(d)?;
        let fits = usize::try_from(len)
            .ok()
            .and_then(|n| n.checked_mul(size_of::<T>()))
            .is_some_and(|bytes| bytes <= block.len());
        if !fits || Block::check_align::<T>().is_err() {
            return Err(serde::de::Error::custom(
                "received a shared array longer than its block",
            ));
        }
        Ok(RawArray {
            block,
            len: len as usize,
            _t: PhantomData,
        })
    }
}

/// An atomic in shared memory: a counter or flag every process can update without a lock.
///
/// ```
/// use std::sync::atomic::{AtomicU64, Ordering};
/// let hits = mproc_shm::SharedAtomic::<AtomicU64>::new()?;
/// hits.fetch_add(1, Ordering::Relaxed);
/// assert_eq!(hits.load(Ordering::Relaxed), 1);
/// # Ok::<(), mproc_shm::Error>(())
/// ```
pub struct SharedAtomic<A: ShmAtomic> {
    block: Block,
    value: Pinned<A>,
}

impl<A: ShmAtomic> SharedAtomic<A> {
    /// Makes a zeroed atomic in shared memory.
    ///
    /// ```
    /// use std::sync::atomic::{AtomicI32, Ordering};
    /// let level = mproc_shm::SharedAtomic::<AtomicI32>::new()?;
    /// assert_eq!(level.load(Ordering::Relaxed), 0); // zeroed
    /// level.clone().fetch_sub(3, Ordering::Relaxed); // clones share the atomic
    /// assert_eq!(level.load(Ordering::Relaxed), -3);
    /// # Ok::<(), mproc_shm::Error>(())
    /// ```
    ///
    /// # Errors
    ///
    /// `NoSpace`/`Io` from the OS.
    pub fn new() -> Result<Self> {
        Block::check_align::<A>()?;
        let block = Block::alloc(size_of::<A>())?;
        Ok(SharedAtomic {
            value: block.pin(0)?,
            block,
        })
    }
}

impl<A: ShmAtomic> Deref for SharedAtomic<A> {
    type Target = A;
    #[inline]
    fn deref(&self) -> &A {
        &self.value
    }
}

impl<A: ShmAtomic> Clone for SharedAtomic<A> {
    fn clone(&self) -> Self {
        SharedAtomic {
            block: self.block.clone(),
            value: self.value.clone(),
        }
    }
}

impl<A: ShmAtomic + fmt::Debug> fmt::Debug for SharedAtomic<A> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("SharedAtomic").field(&**self).finish()
    }
}

impl<A: ShmAtomic> Serialize for SharedAtomic<A> {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        self.block.serialize(s)
    }
}

impl<'de, A: ShmAtomic> Deserialize<'de> for SharedAtomic<A> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let block = Block::deserialize(d)?;
        let value = block
            .pin(0)
            .map_err(|_| serde::de::Error::custom("received a shared atomic of the wrong size"))?;
        Ok(SharedAtomic { block, value })
    }
}
