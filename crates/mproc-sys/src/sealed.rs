//! Write-sealed memfds: a producer fills one, seals it against any further write, and
//! hands it on; a receiver that checks the seals may then read it as a plain `&[u8]`,
//! because no process can change those bytes any more.

use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::ptr::NonNull;

use nix::fcntl::{FcntlArg, SealFlag, fcntl};

/// The seals a reader requires: no write, no shrink, no grow (and no seal removed later,
/// which the kernel never allows anyway).
const READ_ONLY: libc::c_int = libc::F_SEAL_WRITE | libc::F_SEAL_SHRINK | libc::F_SEAL_GROW;

/// A fresh memfd of a fixed length, mapped writable, to be filled and then
/// [`seal`](SealedWriter::seal)ed.
///
/// Its pages are reserved up front, so a full memory gives an error here instead of a
/// SIGBUS while writing.
///
/// ```
/// let w = mproc_sys::SealedWriter::new("demo", 5)?;
/// w.write_at(0, b"hello")?;
/// let fd = w.seal()?;
/// let bytes = mproc_sys::SealedBytes::map(fd, 5)?;
/// assert_eq!(bytes.as_slice(), b"hello");
/// # Ok::<(), std::io::Error>(())
/// ```
#[derive(Debug)]
pub struct SealedWriter {
    fd: OwnedFd,
    ptr: NonNull<u8>,
    len: usize,
}

// SAFETY: the mapping is plain memory owned by this handle; writes go through `&self`
// as raw copies only.
unsafe impl Send for SealedWriter {}

impl SealedWriter {
    /// Creates a memfd of `len` (> 0) zeroed bytes and maps it for writing.
    ///
    /// # Errors
    ///
    /// `InvalidInput` for a zero length; the OS error from memfd_create, fallocate or mmap
    /// (`ENOSPC` / `ENOMEM` when memory is short).
    pub fn new(name: &str, len: usize) -> io::Result<SealedWriter> {
        if len == 0 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "a sealed buffer needs at least one byte",
            ));
        }
        let fd = crate::memfd_create(name)?;
        nix::fcntl::posix_fallocate(&fd, 0, len as libc::off_t)?;
        // SAFETY: a fresh shared mapping chosen by the kernel (null hint) of a file that is
        // `len` bytes long (just allocated); nobody else holds the file yet.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED | libc::MAP_POPULATE,
                fd.as_raw_fd(),
                0,
            )
        };
        if ptr == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        Ok(SealedWriter {
            fd,
            ptr: NonNull::new(ptr.cast()).ok_or(io::ErrorKind::Other)?,
            len,
        })
    }

    /// Returns the length in bytes.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Returns whether the buffer is empty (never: see [`new`](SealedWriter::new)).
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Copies `data` in at `offset`.
    ///
    /// # Errors
    ///
    /// `InvalidInput` when the range does not fit.
    pub fn write_at(&self, offset: usize, data: &[u8]) -> io::Result<()> {
        if offset
            .checked_add(data.len())
            .is_none_or(|end| end > self.len)
        {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "write past the end of a sealed buffer",
            ));
        }
        // SAFETY: the range is inside our private-until-sealed mapping (checked above);
        // `data` cannot overlap it (nothing lends a reference into the mapping).
        unsafe {
            std::ptr::copy_nonoverlapping(data.as_ptr(), self.ptr.as_ptr().add(offset), data.len())
        };
        Ok(())
    }

    /// Unmaps the buffer and seals the memfd against every write, shrink and grow.
    ///
    /// # Errors
    ///
    /// The OS error from fcntl.
    pub fn seal(self) -> io::Result<OwnedFd> {
        let this = std::mem::ManuallyDrop::new(self);
        // SAFETY: unmapping our own mapping, made in `new` with this address and length;
        // `this` is never used again except to move the fd out.
        unsafe { libc::munmap(this.ptr.as_ptr().cast(), this.len) };
        // SAFETY: the fd is moved out exactly once and `this` is not dropped.
        let fd = unsafe { std::ptr::read(&this.fd) };
        fcntl(
            &fd,
            FcntlArg::F_ADD_SEALS(
                SealFlag::F_SEAL_WRITE
                    | SealFlag::F_SEAL_SHRINK
                    | SealFlag::F_SEAL_GROW
                    | SealFlag::F_SEAL_SEAL,
            ),
        )?;
        Ok(fd)
    }
}

impl Drop for SealedWriter {
    fn drop(&mut self) {
        // SAFETY: our own mapping, made in `new`; nothing borrows into it.
        unsafe { libc::munmap(self.ptr.as_ptr().cast(), self.len) };
    }
}

/// A read-only view of a memfd sealed against writes (see [`SealedWriter`]).
///
/// Because the kernel refuses every write to such a file, the bytes can be lent as a
/// plain slice.
#[derive(Debug)]
pub struct SealedBytes {
    fd: OwnedFd,
    ptr: NonNull<u8>,
    len: usize,
}

// SAFETY: immutable memory (write-sealed), unmapped only on drop.
unsafe impl Send for SealedBytes {}
// SAFETY: as above; `&SealedBytes` lends only `&[u8]` of immutable memory.
unsafe impl Sync for SealedBytes {}

impl SealedBytes {
    /// Maps `fd`, which must be a memfd of exactly `len` (> 0) bytes sealed against write,
    /// shrink and grow.
    ///
    /// # Errors
    ///
    /// `InvalidData` when the file is not such a memfd or has another length; the OS
    /// error from fstat or mmap.
    pub fn map(fd: OwnedFd, len: usize) -> io::Result<SealedBytes> {
        let bad = |what: &str| io::Error::new(io::ErrorKind::InvalidData, what.to_string());
        let seals = fcntl(&fd, FcntlArg::F_GET_SEALS).map_err(|_| bad("not a memfd"))?;
        if seals & READ_ONLY != READ_ONLY {
            return Err(bad("the memfd is not sealed against writes"));
        }
        if len == 0 || crate::file_size(fd.as_fd())? != len as u64 {
            return Err(bad("the sealed memfd does not have the announced length"));
        }
        // SAFETY: a fresh read-only shared mapping chosen by the kernel of a file exactly
        // `len` bytes long whose size can no longer change.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ,
                libc::MAP_SHARED | libc::MAP_POPULATE,
                fd.as_raw_fd(),
                0,
            )
        };
        if ptr == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        Ok(SealedBytes {
            fd,
            ptr: NonNull::new(ptr.cast()).ok_or(io::ErrorKind::Other)?,
            len,
        })
    }

    /// Returns the bytes.
    pub fn as_slice(&self) -> &[u8] {
        // SAFETY: `len` readable bytes, mapped until drop; the file is sealed against every
        // write, so the memory cannot change while the slice lives.
        unsafe { std::slice::from_raw_parts(self.ptr.as_ptr(), self.len) }
    }

    /// Returns the fd (to check the seals, or to pass the buffer on).
    pub fn fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

impl Drop for SealedBytes {
    fn drop(&mut self) {
        // SAFETY: our own mapping, made in `map`; slices borrow `self` so none outlives it.
        unsafe { libc::munmap(self.ptr.as_ptr().cast(), self.len) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unsealed_or_resized_memfd_is_refused() {
        let fd = crate::memfd_create("loose").unwrap();
        nix::unistd::ftruncate(&fd, 8).unwrap();
        assert!(SealedBytes::map(fd, 8).is_err());
        let w = SealedWriter::new("x", 8).unwrap();
        let fd = w.seal().unwrap();
        let dup = fd.try_clone().unwrap();
        assert!(SealedBytes::map(dup, 16).is_err(), "wrong length");
        // Nobody can write any more, not even the creator.
        assert!(nix::unistd::write(&fd, b"x").is_err());
        let bytes = SealedBytes::map(fd, 8).unwrap();
        assert_eq!(bytes.as_slice(), [0; 8]);
    }
}
