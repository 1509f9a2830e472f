//! `Pinned`: an atomic value (or a lock slot) in a shared `Region`, lent for as long as the
//! handle keeps the region mapped.

use std::io;
use std::ptr::NonNull;
use std::sync::Arc;

use crate::{LockSlot, Region, ShmAtomic};

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
