//! Shared mappings: `Region` (an mmap of a memfd or `/dev/shm` file), the `ShmSafe` marker,
//! and named segments (`shm_open` with a size reserved up front).
//!
//! Memory shared with other processes can change at any moment, so a `Region` never hands
//! out a plain reference to data in it: values are copied in and out (`read`, `write`,
//! `copy_to`, `copy_from`), and only types whose every field is an atomic (or made of
//! atomics, like [`RawMutex`](crate::RawMutex)) are lent by reference (`get`).

use std::ffi::CString;
use std::io;
use std::mem::{align_of, size_of};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::ptr::NonNull;
use std::sync::Arc;
use std::sync::atomic::{
    AtomicI8, AtomicI16, AtomicI32, AtomicI64, AtomicIsize, AtomicU8, AtomicU16, AtomicU32,
    AtomicU64, AtomicUsize,
};

/// Plain data that may live in memory shared between processes and be copied in and out
/// of it: any type that is [`bytemuck::AnyBitPattern`] (every bit pattern is a valid value:
/// another process, or a crash in the middle of a write, can leave any bytes there) and
/// [`bytemuck::NoUninit`] (no padding, so copying it out as bytes reads no uninitialised
/// memory), and `Send + 'static` (no references or pointers, whose meaning would not
/// survive the trip to another process).
///
/// Integers, floats, arrays of them and `()` qualify. A `#[repr(C)]` struct of your own
/// qualifies by deriving bytemuck's traits, with no `unsafe` in your code (add `bytemuck`
/// with its `derive` feature to your dependencies):
///
/// ```ignore
/// #[derive(Clone, Copy, bytemuck::AnyBitPattern, bytemuck::NoUninit)]
/// #[repr(C)]
/// struct Point { x: f64, y: f64, hits: u64 }
/// let shared = mproc::RawValue::new(Point { x: 1.0, y: 2.0, hits: 0 })?;
/// ```
///
/// `bool`, `char`, enums and references do not qualify: not every bit pattern is one.
///
/// # Safety
///
/// Do not implement it by hand: derive bytemuck's traits instead. A type that is
/// `ShmSafe` must be `Copy`, hold no pointers, references or handles (their meaning would
/// not survive the trip to another process), have no padding, and accept **every bit
/// pattern** as a valid value: another process, or a crash in the middle of a write, can
/// leave any bytes there.
pub unsafe trait ShmSafe: Copy + Send + 'static {}

// SAFETY: `AnyBitPattern` promises every bit pattern is a valid `T` (so bytes another
// process wrote, or a torn write, are still a `T`) and is never implemented for references
// or function pointers; `NoUninit` promises no padding (so its bytes can be copied out);
// raw pointers, `Pod` only under bytemuck's opt-in `unsound_ptr_pod_impl`, are not `Send`.
unsafe impl<T: bytemuck::AnyBitPattern + bytemuck::NoUninit + Send> ShmSafe for T {}

/// Types made only of atomics (or of [`RawMutex`](crate::RawMutex)-like words): shared
/// memory may be lent to them by reference, because every access they make is atomic.
///
/// # Safety
///
/// Implement only for `#[repr(C)]` types whose fields are all atomics or `ShmAtomic`
/// types, for which all zero bytes is a valid initial state, and which hold no pointers
/// whose meaning another process relies on.
pub unsafe trait ShmAtomic: Sync + Send + 'static {}

macro_rules! shm_atomic {
    ($($t:ty),*) => { $(
        // SAFETY: an atomic integer: every access is atomic; zero is valid.
        unsafe impl ShmAtomic for $t {}
    )* };
}
shm_atomic!(
    AtomicU8,
    AtomicU16,
    AtomicU32,
    AtomicU64,
    AtomicUsize,
    AtomicI8,
    AtomicI16,
    AtomicI32,
    AtomicI64,
    AtomicIsize
);
// SAFETY: an array of `ShmAtomic` values is `ShmAtomic`.
unsafe impl<T: ShmAtomic, const N: usize> ShmAtomic for [T; N] {}

/// A shared, read-write mapping of a whole file (a memfd or a `/dev/shm` segment).
///
/// Unmapped on drop. A forked child inherits the mapping.
///
/// ```
/// use mproc_sys::Region;
/// use std::sync::atomic::{AtomicU64, Ordering};
/// let region = Region::anonymous("demo", 4096)?;
/// region.write::<u64>(8, 42)?;
/// assert_eq!(region.read::<u64>(8)?, 42);
/// let counter: &AtomicU64 = region.get(0)?;
/// counter.fetch_add(1, Ordering::Relaxed);
/// assert_eq!(region.read::<u64>(0)?, 1);
/// # Ok::<(), std::io::Error>(())
/// ```
#[derive(Debug)]
pub struct Region {
    ptr: NonNull<u8>,
    len: usize,
    locks: bool,
    /// The file's (device, inode), registered in `KINDS` while mapped (0, 0: none).
    identity: (u64, u64),
}

/// Every file this process maps, by (device, inode): whether as locks, and how many
/// mappings. A file is never mapped both ways, so no data view of a lock ever exists in
/// this process; a lock file whose mapping had to be leaked stays registered for good.
static KINDS: std::sync::Mutex<Option<Kinds>> = std::sync::Mutex::new(None);

/// Holds the registry of mapped files until dropped: for fork handlers, so that a fork
/// child never inherits it locked by a thread that does not exist there.
#[must_use = "the registry is released when this is dropped"]
pub struct MappingsGuard(#[allow(dead_code)] std::sync::MutexGuard<'static, Option<Kinds>>);

impl std::fmt::Debug for MappingsGuard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MappingsGuard")
    }
}

/// Per file: mapped as locks?, how many live mappings, and a lock mapping that had to be
/// leaked (address, length), to be handed out again rather than mapped anew.
type Kinds = std::collections::HashMap<(u64, u64), Kind>;

#[derive(Debug)]
struct Kind {
    locks: bool,
    count: usize,
    leaked: Option<(usize, usize)>,
}

/// Locks the registry of mapped files (see [`MappingsGuard`]).
///
/// ```
/// drop(mproc_sys::hold_mappings());
/// ```
pub fn hold_mappings() -> MappingsGuard {
    MappingsGuard(KINDS.lock().unwrap_or_else(|e| e.into_inner()))
}

/// Registers a new mapping of `identity`; returns a leaked lock mapping of that length to
/// reuse instead of mapping again, if there is one.
fn register(identity: (u64, u64), locks: bool, len: usize) -> io::Result<Option<usize>> {
    let mut kinds = KINDS.lock().unwrap_or_else(|e| e.into_inner());
    let entry = kinds
        .get_or_insert_with(Default::default)
        .entry(identity)
        .or_insert(Kind {
            locks,
            count: 0,
            leaked: None,
        });
    if entry.locks != locks {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            if locks {
                "this file is mapped as data here: it cannot be mapped as locks"
            } else {
                "this file holds locks here: it cannot be mapped as data"
            },
        ));
    }
    if let Some((ptr, leaked_len)) = entry.leaked
        && leaked_len == len
    {
        // The leaked mapping's count is still held: it simply has an owner again. Its
        // addresses are the ones this process's robust lists and held sets know.
        entry.leaked = None;
        return Ok(Some(ptr));
    }
    entry.count += 1;
    Ok(None)
}

/// Records that a lock mapping of `identity` is leaked (its count stays held).
fn leak(identity: (u64, u64), ptr: usize, len: usize) {
    let mut kinds = KINDS.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(entry) = kinds.as_mut().and_then(|m| m.get_mut(&identity))
        && entry.leaked.is_none()
    {
        entry.leaked = Some((ptr, len));
    }
}

fn unregister(identity: (u64, u64)) {
    let mut kinds = KINDS.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(map) = kinds.as_mut()
        && let Some(entry) = map.get_mut(&identity)
    {
        entry.count -= 1;
        if entry.count == 0 && entry.leaked.is_none() {
            map.remove(&identity);
        }
    }
}

/// The size of a [`LockSlot`]: lock regions are arrays of slots.
pub const LOCK_SLOT: usize = 64;

/// One slot of a lock region: a [`RawMutex`](crate::RawMutex) and six atomic words for the
/// primitive built on it (a recursion count lives in the mutex itself).
///
/// The only way to reach a lock region's memory: no copy, fill or other view of it is
/// ever lent, so nothing in this process can overwrite a held mutex's robust-list links.
#[repr(C, align(64))]
#[derive(Debug)]
pub struct LockSlot {
    mutex: crate::RawMutex,
    words: [AtomicU32; 6],
}

const _: () = assert!(size_of::<LockSlot>() == LOCK_SLOT);

impl LockSlot {
    /// Returns the slot's mutex.
    #[inline]
    pub fn mutex(&self) -> &crate::RawMutex {
        &self.mutex
    }

    /// Returns the slot's atomic words (zero in a fresh region).
    #[inline]
    pub fn words(&self) -> &[AtomicU32; 6] {
        &self.words
    }
}

// SAFETY: the mapping is plain memory, valid until drop; all access through `Region` is by
// atomics or by raw copies, neither of which relies on thread affinity.
unsafe impl Send for Region {}
// SAFETY: as above; `&Region` allows only atomic access and raw copies.
unsafe impl Sync for Region {}

#[inline]
fn bounds(len: usize, offset: usize, size: usize, align: usize) -> io::Result<()> {
    match offset.checked_add(size) {
        Some(end) if end <= len && offset.is_multiple_of(align) => Ok(()),
        _ => Err(out_of_bounds(len, offset, size, align)),
    }
}

#[cold]
#[inline(never)]
fn out_of_bounds(len: usize, offset: usize, size: usize, align: usize) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidInput,
        format!(
            "{size} bytes at offset {offset} (alignment {align}) do not fit a {len}-byte region"
        ),
    )
}

#[cold]
#[inline(never)]
fn misaligned(offset: usize, align: usize) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidInput,
        format!("offset {offset} is not aligned to {align}"),
    )
}

#[cold]
#[inline(never)]
fn not_data() -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidInput,
        "a lock region is reachable only through its lock slots",
    )
}

impl Region {
    /// Creates a memfd of `len` bytes (zeroed) and maps it. Returns the region; the fd is
    /// available through [`Region::anonymous_with_fd`].
    ///
    /// # Errors
    ///
    /// The OS error from memfd_create, ftruncate or mmap.
    pub fn anonymous(name: &str, len: usize) -> io::Result<Region> {
        Self::anonymous_with_fd(name, len).map(|(r, _)| r)
    }

    /// Creates a memfd of `len` bytes (zeroed, its size sealed: see
    /// [`seal_size`](crate::seal_size)), maps it, and returns both.
    ///
    /// ```
    /// let (region, fd) = mproc_sys::Region::anonymous_with_fd("demo", 100)?;
    /// assert_eq!(mproc_sys::file_size(std::os::fd::AsFd::as_fd(&fd))?, 100);
    /// # drop(region);
    /// # Ok::<(), std::io::Error>(())
    /// ```
    ///
    /// # Errors
    ///
    /// The OS error from memfd_create, ftruncate or mmap.
    pub fn anonymous_with_fd(name: &str, len: usize) -> io::Result<(Region, OwnedFd)> {
        let fd = crate::memfd_create(name)?;
        nix::unistd::ftruncate(&fd, len as libc::off_t)?;
        crate::seal_size(fd.as_fd())?;
        let region = Region::map(fd.as_fd(), len)?;
        Ok((region, fd))
    }

    /// Creates a memfd of `len` bytes and maps it as a *lock region*: an array of
    /// [`LockSlot`]s, reachable only through [`lock_slot`](Region::lock_slot).
    ///
    /// # Errors
    ///
    /// The OS error from memfd_create, ftruncate or mmap.
    pub fn anonymous_locks_with_fd(len: usize) -> io::Result<(Region, OwnedFd)> {
        let fd = crate::memfd_create("mproc-locks")?;
        nix::unistd::ftruncate(&fd, len as libc::off_t)?;
        crate::seal_size(fd.as_fd())?;
        let region = Region::map_locks(fd.as_fd(), len)?;
        Ok((region, fd))
    }

    /// Maps the first `len` bytes of `fd` as a lock region (see
    /// [`anonymous_locks_with_fd`](Region::anonymous_locks_with_fd)). Whoever else maps the
    /// same file shares its locks, and is trusted not to write over them.
    ///
    /// # Errors
    ///
    /// As [`map`](Region::map).
    pub fn map_locks(fd: BorrowedFd<'_>, len: usize) -> io::Result<Region> {
        Region::map_kind(fd, len, true)
    }

    /// Returns whether this is a lock region.
    pub fn is_lock_region(&self) -> bool {
        self.locks
    }

    /// Lends the lock slot at `offset` (a multiple of [`LOCK_SLOT`]) of a lock region.
    ///
    /// # Errors
    ///
    /// `InvalidInput` for a data region, or an offset out of range or not on a slot.
    pub fn lock_slot(&self, offset: usize) -> io::Result<&LockSlot> {
        if !self.locks {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "locks live in lock regions only",
            ));
        }
        self.check(offset, LOCK_SLOT, LOCK_SLOT)?;
        // SAFETY: in bounds and aligned (checked); the slot is atomics only (a mutex word,
        // its list links, plain atomics), zero at creation. Nothing else in this process
        // can view these bytes: data accessors refuse lock regions.
        Ok(unsafe { &*self.ptr.as_ptr().add(offset).cast::<LockSlot>() })
    }

    #[inline]
    fn data(&self) -> io::Result<()> {
        if self.locks {
            return Err(not_data());
        }
        Ok(())
    }

    /// Checks that `size` bytes at `offset` lie in the region and start at an address
    /// aligned to `align`.
    #[inline]
    fn check(&self, offset: usize, size: usize, align: usize) -> io::Result<()> {
        bounds(self.len, offset, size, 1)?;
        if !(self.ptr.as_ptr() as usize)
            .wrapping_add(offset)
            .is_multiple_of(align)
        {
            return Err(misaligned(offset, align));
        }
        Ok(())
    }

    /// Maps the first `len` bytes of `fd` shared and read-write.
    ///
    /// # Errors
    ///
    /// `InvalidInput` when `len` exceeds the file's size (touching the rest would raise
    /// SIGBUS), or the OS error from mmap.
    pub fn map(fd: BorrowedFd<'_>, len: usize) -> io::Result<Region> {
        Region::map_kind(fd, len, false)
    }

    fn map_kind(fd: BorrowedFd<'_>, len: usize, locks: bool) -> io::Result<Region> {
        if len as u64 > file_size(fd)? {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "the mapping would be longer than the file",
            ));
        }
        if len == 0 {
            return Ok(Region {
                ptr: NonNull::dangling(),
                len: 0,
                locks,
                identity: (0, 0),
            });
        }
        let identity = file_identity(fd)?;
        if let Some(ptr) = register(identity, locks, len)? {
            return Ok(Region {
                ptr: NonNull::new(ptr as *mut u8).ok_or(io::ErrorKind::Other)?,
                len,
                locks,
                identity,
            });
        }
        // SAFETY: a fresh shared mapping chosen by the kernel (null hint); `fd` is a valid
        // open file at least `len` bytes long.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                fd.as_raw_fd(),
                0,
            )
        };
        if ptr == libc::MAP_FAILED {
            let e = io::Error::last_os_error();
            unregister(identity);
            return Err(e);
        }
        Ok(Region {
            ptr: NonNull::new(ptr.cast()).ok_or(io::ErrorKind::Other)?,
            len,
            locks,
            identity,
        })
    }

    /// Returns the length in bytes.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Returns whether the region is empty.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Returns the start of the mapping, for callers that manage their own access (valid
    /// for [`len`](Region::len) bytes while the region lives; other processes may write to
    /// it at any time).
    pub fn as_ptr(&self) -> *mut u8 {
        self.ptr.as_ptr()
    }

    /// Lends the atomic value at `offset`.
    ///
    /// # Errors
    ///
    /// `InvalidInput` when it does not fit or is misaligned.
    pub fn get<T: ShmAtomic>(&self, offset: usize) -> io::Result<&T> {
        self.data()?;
        self.check(offset, size_of::<T>(), align_of::<T>())?;
        // SAFETY: in bounds and aligned (checked); `T` is made of atomics, for which any
        // bytes the memory holds (zero at creation, else written by atomics) are valid and
        // concurrent access from anywhere is atomic. The borrow ties it to the mapping.
        Ok(unsafe { &*self.ptr.as_ptr().add(offset).cast::<T>() })
    }

    /// Lends `count` atomic values starting at `offset`.
    ///
    /// # Errors
    ///
    /// `InvalidInput` when they do not fit or are misaligned.
    pub fn get_slice<T: ShmAtomic>(&self, offset: usize, count: usize) -> io::Result<&[T]> {
        let size = size_of::<T>()
            .checked_mul(count)
            .ok_or(io::ErrorKind::InvalidInput)?;
        self.data()?;
        self.check(offset, size, align_of::<T>())?;
        if count == 0 {
            return Ok(&[]);
        }
        // SAFETY: as in `get`, for each of the `count` values.
        Ok(unsafe { std::slice::from_raw_parts(self.ptr.as_ptr().add(offset).cast::<T>(), count) })
    }

    /// Copies the value at `offset` out (it may be torn if another process writes it at the
    /// same time without a lock; every bit pattern is a valid `T`).
    ///
    /// # Errors
    ///
    /// `InvalidInput` when it does not fit or is misaligned.
    pub fn read<T: ShmSafe>(&self, offset: usize) -> io::Result<T> {
        self.data()?;
        self.check(offset, size_of::<T>(), align_of::<T>())?;
        // SAFETY: in bounds and aligned; any bit pattern is a valid `T` (ShmSafe). The read
        // goes through a raw pointer, so no reference to shared memory is made.
        Ok(unsafe { self.ptr.as_ptr().add(offset).cast::<T>().read_volatile() })
    }

    /// Copies `value` in at `offset`.
    ///
    /// # Errors
    ///
    /// `InvalidInput` when it does not fit or is misaligned.
    pub fn write<T: ShmSafe>(&self, offset: usize, value: T) -> io::Result<()> {
        self.data()?;
        self.check(offset, size_of::<T>(), align_of::<T>())?;
        // SAFETY: in bounds and aligned; the write goes through a raw pointer (no reference
        // to shared memory exists through this API for a `ShmSafe` type).
        unsafe {
            self.ptr
                .as_ptr()
                .add(offset)
                .cast::<T>()
                .write_volatile(value)
        };
        Ok(())
    }

    /// Copies `dst.len()` values starting at `offset` into `dst`.
    ///
    /// # Errors
    ///
    /// `InvalidInput` when they do not fit or are misaligned.
    pub fn copy_to<T: ShmSafe>(&self, offset: usize, dst: &mut [T]) -> io::Result<()> {
        let size = std::mem::size_of_val(dst);
        self.data()?;
        self.check(offset, size, align_of::<T>())?;
        // SAFETY: the source range is in bounds and aligned; `dst` is a separate, exclusive
        // buffer (it cannot overlap the mapping: it is `&mut`, and no `&mut` into a region
        // is ever made); every bit pattern is a valid `T`.
        unsafe {
            std::ptr::copy_nonoverlapping(
                self.ptr.as_ptr().add(offset).cast::<T>(),
                dst.as_mut_ptr(),
                dst.len(),
            )
        };
        Ok(())
    }

    /// Copies `src` in, starting at `offset`.
    ///
    /// # Errors
    ///
    /// `InvalidInput` when it does not fit or is misaligned.
    pub fn copy_from<T: ShmSafe>(&self, offset: usize, src: &[T]) -> io::Result<()> {
        let size = std::mem::size_of_val(src);
        self.data()?;
        self.check(offset, size, align_of::<T>())?;
        // SAFETY: the destination range is in bounds and aligned; it is written through a
        // raw pointer. `src` may itself point into this mapping (a slice of atomics cannot
        // be passed as `&[T: ShmSafe]`, but a copy from another region could overlap), so
        // use the overlap-safe copy.
        unsafe {
            std::ptr::copy(
                src.as_ptr(),
                self.ptr.as_ptr().add(offset).cast::<T>(),
                src.len(),
            )
        };
        Ok(())
    }

    /// Sets `len` bytes starting at `offset` to `byte`.
    ///
    /// # Errors
    ///
    /// `InvalidInput` when they do not fit.
    pub fn fill(&self, offset: usize, len: usize, byte: u8) -> io::Result<()> {
        self.data()?;
        self.check(offset, len, 1)?;
        // SAFETY: in bounds; bytes have no invalid values; written through a raw pointer.
        unsafe { std::ptr::write_bytes(self.ptr.as_ptr().add(offset), byte, len) };
        Ok(())
    }
}

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

impl Region {
    /// Returns whether any of this lock region's mutexes is held, by anyone: if one of
    /// this process's threads holds it, its robust-list links point into the mapping.
    /// (Held elsewhere, keeping the mapping costs only memory; telling our threads' ids
    /// apart from others' is not reliable across PID namespaces.)
    fn holds_locks(&self) -> bool {
        (0..self.len / LOCK_SLOT).any(|i| {
            self.lock_slot(i * LOCK_SLOT)
                .is_ok_and(|slot| slot.mutex().is_locked())
        })
    }
}

impl Drop for Region {
    fn drop(&mut self) {
        if self.locks && self.holds_locks() {
            // A guard was forgotten (or a lock acquired without one was never released):
            // leak the mapping, and keep its file registered as locks, rather than leave
            // dangling robust-list links. Mapping the file again reuses it, at the same
            // addresses, so the holder can still release its lock.
            leak(self.identity, self.ptr.as_ptr() as usize, self.len);
            return;
        }
        if self.identity != (0, 0) {
            unregister(self.identity);
        }
        if self.len != 0 {
            // SAFETY: the mapping was made by `map` with this address and length, and no
            // reference into it outlives `self` (every borrow is tied to `&self`).
            unsafe { libc::munmap(self.ptr.as_ptr().cast(), self.len) };
        }
    }
}

/// Returns the size of the file behind `fd`.
///
/// # Errors
///
/// The OS error from fstat.
pub fn file_size(fd: BorrowedFd<'_>) -> io::Result<u64> {
    Ok(nix::sys::stat::fstat(fd)?.st_size as u64)
}

/// Returns `(device, inode)` of the file behind `fd`: two fds with the same identity are
/// the same segment.
///
/// # Errors
///
/// The OS error from fstat.
pub fn file_identity(fd: BorrowedFd<'_>) -> io::Result<(u64, u64)> {
    let st = nix::sys::stat::fstat(fd)?;
    Ok((st.st_dev, st.st_ino))
}

/// Checks a segment name: 1 to 250 bytes, no `/` or NUL, not `.` or `..`.
pub(crate) fn check_name(name: &str) -> io::Result<()> {
    if name.is_empty()
        || name.len() > 250
        || name.contains('/')
        || name.contains('\0')
        || name == "."
        || name == ".."
    {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "a shared memory name is 1 to 250 bytes, without '/' or NUL, and not . or ..",
        ));
    }
    Ok(())
}

fn shm_name(name: &str) -> io::Result<CString> {
    check_name(name)?;
    CString::new(format!("/{name}")).map_err(|_| io::ErrorKind::InvalidInput.into())
}

/// Creates the named segment `/dev/shm/<name>` (mode 0600, failing if it exists) of `len`
/// bytes, with its pages reserved up front so that a full `/dev/shm` fails here (ENOSPC)
/// rather than with SIGBUS on first touch. On failure nothing is left behind.
///
/// ```
/// let name = format!("mproc-doc-{}", std::process::id());
/// let fd = mproc_sys::shm_create(&name, 4096)?;
/// assert_eq!(mproc_sys::file_size(std::os::fd::AsFd::as_fd(&fd))?, 4096);
/// mproc_sys::shm_unlink(&name)?;
/// # Ok::<(), std::io::Error>(())
/// ```
///
/// # Errors
///
/// `AlreadyExists`, `InvalidInput` (a bad name), `StorageFull` (no room), or another OS
/// error.
pub fn shm_create(name: &str, len: usize) -> io::Result<OwnedFd> {
    let cname = shm_name(name)?;
    // SAFETY: `cname` is a valid C string; flags and mode are valid.
    let fd = unsafe {
        libc::shm_open(
            cname.as_ptr(),
            libc::O_RDWR | libc::O_CREAT | libc::O_EXCL | libc::O_CLOEXEC,
            0o600 as libc::mode_t,
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: shm_open returned a fresh fd that nothing else owns.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    let reserve = || -> io::Result<()> {
        if len > 0 {
            // SAFETY: `fd` is a valid open file; posix_fallocate allocates blocks only.
            let r = unsafe { libc::posix_fallocate(fd.as_raw_fd(), 0, len as libc::off_t) };
            if r != 0 {
                return Err(io::Error::from_raw_os_error(r));
            }
        }
        Ok(())
    };
    if let Err(e) = reserve() {
        let _ = shm_unlink(name);
        return Err(e);
    }
    Ok(fd)
}

/// Opens the existing named segment `/dev/shm/<name>` read-write.
///
/// # Errors
///
/// `NotFound`, `InvalidInput` (a bad name), or another OS error.
pub fn shm_open_existing(name: &str) -> io::Result<OwnedFd> {
    let cname = shm_name(name)?;
    // SAFETY: `cname` is a valid C string; flags are valid.
    let fd = unsafe { libc::shm_open(cname.as_ptr(), libc::O_RDWR | libc::O_CLOEXEC, 0) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: shm_open returned a fresh fd that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Removes the name `/dev/shm/<name>`; mappings and fds already open keep the memory.
///
/// # Errors
///
/// `NotFound`, `InvalidInput` (a bad name), or another OS error.
pub fn shm_unlink(name: &str) -> io::Result<()> {
    let cname = shm_name(name)?;
    // SAFETY: `cname` is a valid C string.
    if unsafe { libc::shm_unlink(cname.as_ptr()) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_is_never_mapped_both_as_locks_and_as_data() {
        let (locks, lfd) = Region::anonymous_locks_with_fd(4096).unwrap();
        let (_data, dfd) = Region::anonymous_with_fd("data", 4096).unwrap();
        assert!(Region::map(lfd.as_fd(), 4096).is_err());
        assert!(Region::map_locks(dfd.as_fd(), 4096).is_err());
        let again = Region::map_locks(lfd.as_fd(), 4096).unwrap();
        drop((locks, again));
        // Once no mapping remains, the file may be used either way again.
        assert!(Region::map(lfd.as_fd(), 4096).is_ok());
    }

    #[test]
    fn offsets_are_checked_against_the_real_address() {
        let empty = Region::map(Region::anonymous_with_fd("e", 0).unwrap().1.as_fd(), 0).unwrap();
        // The empty region's base is a dangling address 1: a zero-sized, 8-aligned view of
        // it would be misaligned.
        assert!(empty.get::<[AtomicU64; 0]>(0).is_err());
    }
}
