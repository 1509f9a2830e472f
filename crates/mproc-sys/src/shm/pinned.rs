//! `Pinned`: an atomic value (or a lock slot) in a shared `Region`, lent for as long as the
//! handle keeps the region mapped.

use std::io;
use std::ptr::NonNull;
use std::sync::Arc;

use crate::{LockSlot, Region, ShmAtomic, ShmSafe};

/// An atomic value in a shared [`Region`], lent for as long as this handle lives: a checked
/// pointer that keeps its region mapped, so that reaching the value costs nothing more
/// than a dereference (what a lock's fast path needs).
///
/// ```
/// use std::sync::{Arc, atomic::{AtomicU32, Ordering}};
/// let region = Arc::new(mproc_sys::Region::anonymous("demo", 64)?);
/// let word = mproc_sys::Pinned::<AtomicU32>::new(&region, 8)?;
/// word.store(3, Ordering::Relaxed);
/// assert_eq!(region.read::<u32>(8)?, 3);
/// # Ok::<(), std::io::Error>(())
/// ```
pub struct Pinned<T: Sync + Send + 'static> {
    _region: Arc<Region>,
    ptr: NonNull<T>,
}

impl Pinned<LockSlot> {
    /// Lends the lock slot at `offset` of a lock region (see [`Region::lock_slot`]).
    ///
    /// # Errors
    ///
    /// As [`Region::lock_slot`].
    pub fn lock_slot(region: &Arc<Region>, offset: usize) -> io::Result<Self> {
        let ptr = NonNull::from(region.lock_slot(offset)?);
        Ok(Pinned {
            _region: region.clone(),
            ptr,
        })
    }
}

impl<T: ShmAtomic> Pinned<T> {
    /// Lends the value at `offset` of `region`, checking bounds and alignment once.
    ///
    /// # Errors
    ///
    /// `InvalidInput` when it does not fit or is misaligned.
    pub fn new(region: &Arc<Region>, offset: usize) -> io::Result<Self> {
        let ptr = NonNull::from(region.get::<T>(offset)?);
        Ok(Pinned {
            _region: region.clone(),
            ptr,
        })
    }
}

impl<T: Sync + Send + 'static> std::ops::Deref for Pinned<T> {
    type Target = T;
    #[inline]
    fn deref(&self) -> &T {
        // SAFETY: `ptr` came from `Region::get` or `Region::lock_slot` (in bounds, aligned,
        // atomics only), and the
        // `Arc` keeps the mapping alive for as long as this handle, which the borrow is
        // tied to.
        unsafe { self.ptr.as_ref() }
    }
}

impl<T: Sync + Send + 'static> Clone for Pinned<T> {
    fn clone(&self) -> Self {
        Pinned {
            _region: self._region.clone(),
            ptr: self.ptr,
        }
    }
}

impl<T: Sync + Send + 'static> std::fmt::Debug for Pinned<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pinned").field("ptr", &self.ptr).finish()
    }
}

// SAFETY: `T` is `Sync + Send` and the region is `Send + Sync`: sharing or sending the
// handle shares `&T` only.
unsafe impl<T: Sync + Send + 'static> Send for Pinned<T> {}
// SAFETY: as above.
unsafe impl<T: Sync + Send + 'static> Sync for Pinned<T> {}

/// A plain (`ShmSafe`) value in a shared [`Region`], checked once when made: each
/// [`read`](Self::read) or [`write`](Self::write) is then a single copy, with no bounds or
/// alignment check. What a `Value`'s guard uses on its hot path; the handle keeps the region
/// mapped.
///
/// Reads and writes are volatile copies through a raw pointer (no reference into shared
/// memory is made). Without a lock around them, another process's write may tear a read;
/// every bit pattern is still a valid `T`.
///
/// ```
/// use std::sync::Arc;
/// let region = Arc::new(mproc_sys::Region::anonymous("demo", 64)?);
/// let slot = mproc_sys::PinnedPlain::<[u32; 2]>::new(&region, 8)?;
/// slot.write([4, 5]);
/// assert_eq!(slot.read(), [4, 5]);
/// assert_eq!(region.read::<u32>(12)?, 5);
/// assert!(mproc_sys::PinnedPlain::<u64>::new(&region, 60).is_err()); // does not fit
/// # Ok::<(), std::io::Error>(())
/// ```
pub struct PinnedPlain<T: ShmSafe> {
    _region: Arc<Region>,
    ptr: NonNull<T>,
}

impl<T: ShmSafe> PinnedPlain<T> {
    /// Lends the `T` at `offset` of a data region.
    ///
    /// # Errors
    ///
    /// `InvalidInput` when it does not fit, is misaligned, or the region holds locks.
    pub fn new(region: &Arc<Region>, offset: usize) -> io::Result<Self> {
        Ok(PinnedPlain {
            _region: region.clone(),
            ptr: region.plain_ptr(offset)?,
        })
    }

    /// Copies the value out.
    #[inline]
    pub fn read(&self) -> T {
        // SAFETY: `ptr` was checked in bounds and aligned for `T` in a data region when
        // this handle was made, and the `Arc` keeps the mapping alive. Any bit pattern is a
        // valid `T` (ShmSafe); the copy goes through the raw pointer.
        unsafe { self.ptr.as_ptr().read_volatile() }
    }

    /// Copies `value` in.
    #[inline]
    pub fn write(&self, value: T) {
        // SAFETY: as in `read`; the shared mapping is writable (data regions are mapped
        // read-write) and no reference to these bytes exists through this API.
        unsafe { self.ptr.as_ptr().write_volatile(value) }
    }
}

impl<T: ShmSafe> Clone for PinnedPlain<T> {
    fn clone(&self) -> Self {
        PinnedPlain {
            _region: self._region.clone(),
            ptr: self.ptr,
        }
    }
}

impl<T: ShmSafe> std::fmt::Debug for PinnedPlain<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PinnedPlain")
            .field("ptr", &self.ptr)
            .finish()
    }
}

// SAFETY: the handle only copies `T` values in and out (ShmSafe: plain bytes, `Send`), and
// the region is `Send + Sync`.
unsafe impl<T: ShmSafe> Send for PinnedPlain<T> {}
// SAFETY: as above: `&PinnedPlain` gives copies only, never a `&T`.
unsafe impl<T: ShmSafe> Sync for PinnedPlain<T> {}
