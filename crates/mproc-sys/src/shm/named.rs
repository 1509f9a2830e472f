//! Named segments: `/dev/shm/<name>` files created (with their pages reserved up front),
//! opened and unlinked by name.

use std::ffi::CString;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

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
