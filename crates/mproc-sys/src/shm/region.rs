//! `Region`: a shared, read-write mapping of a whole file (a memfd or a `/dev/shm`
//! segment), lending data by copies and atomics, or lock slots.
//!
//! Memory shared with other processes can change at any moment, so a `Region` never hands
//! out a plain reference to data in it: values are copied in and out (`read`, `write`,
//! `copy_to`, `copy_from`), and only types whose every field is an atomic (or made of
//! atomics, like [`RawMutex`](crate::RawMutex)) are lent by reference (`get`).

use std::io;
use std::mem::{align_of, size_of};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::ptr::NonNull;
use std::sync::atomic::AtomicU32;

use super::mapped_files::{leak, register, unregister};
use crate::{ShmAtomic, ShmSafe, file_identity, file_size};

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
    /// The file's (device, inode), registered in `mapped_files` while mapped (0, 0: none).
    identity: (u64, u64),
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

    /// Checks that a `T` fits at `offset` of this data region, aligned, and returns its
    /// address (for [`PinnedPlain`](crate::PinnedPlain), which keeps the region mapped).
    pub(crate) fn plain_ptr<T: ShmSafe>(&self, offset: usize) -> io::Result<NonNull<T>> {
        self.data()?;
        self.check(offset, size_of::<T>(), align_of::<T>())?;
        // SAFETY: in bounds (checked), so the address is inside the mapping and not null.
        Ok(unsafe { NonNull::new_unchecked(self.ptr.as_ptr().add(offset).cast::<T>()) })
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

    /// Appends the `len` bytes starting at `offset` to `out`, copied straight into its spare
    /// capacity (not zeroed first: a large copy out pays one pass over memory, not two).
    ///
    /// # Errors
    ///
    /// `InvalidInput` when they do not fit (nothing is appended then).
    ///
    /// ```
    /// let r = mproc_sys::Region::anonymous("doc", 4096)?;
    /// r.copy_from(0, b"hello")?;
    /// let mut out = b">".to_vec();
    /// r.append_to(1, 4, &mut out)?;
    /// assert_eq!(out, b">ello");
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn append_to(&self, offset: usize, len: usize, out: &mut Vec<u8>) -> io::Result<()> {
        self.data()?;
        self.check(offset, len, 1)?;
        out.reserve(len);
        let spare = out.spare_capacity_mut();
        // SAFETY: the source range is in bounds; `spare` is `out`'s own allocation, at least
        // `len` long after the reserve, and cannot overlap the mapping (no `&mut` into a
        // region is ever made). The copy initializes its first `len` bytes, which `set_len`
        // then counts; every bit pattern is a valid `u8`.
        unsafe {
            std::ptr::copy_nonoverlapping(
                self.ptr.as_ptr().add(offset),
                spare.as_mut_ptr().cast::<u8>(),
                len,
            );
            out.set_len(out.len() + len);
        }
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicU64;

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
