//! Memfds: creating anonymous in-memory files, and sealing their size so that no process
//! can truncate one under another's mapping.

use std::io;
use std::os::fd::{BorrowedFd, FromRawFd, OwnedFd};

use nix::fcntl::{FcntlArg, fcntl};

/// Creates an anonymous in-memory file (close-on-exec), to carry a large payload by fd.
///
/// ```
/// use std::io::{Read, Seek, Write};
/// let mut f = std::fs::File::from(mproc_sys::memfd_create("demo")?);
/// f.write_all(b"payload")?;
/// f.rewind()?;
/// let mut s = String::new();
/// f.read_to_string(&mut s)?;
/// assert_eq!(s, "payload");
/// # Ok::<(), std::io::Error>(())
/// ```
pub fn memfd_create(name: &str) -> io::Result<OwnedFd> {
    let name = std::ffi::CString::new(name).map_err(|_| io::ErrorKind::InvalidInput)?;
    // SAFETY: `name` is a valid NUL-terminated string; the flags are valid.
    let fd =
        unsafe { libc::memfd_create(name.as_ptr(), libc::MFD_CLOEXEC | libc::MFD_ALLOW_SEALING) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `memfd_create` returned a fresh fd that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Returns whether `fd` is a memfd (or another in-memory, sealable file): reading it never
/// waits for a device or a network.
///
/// ```
/// use std::os::fd::AsFd;
/// assert!(mproc_sys::is_memfd(mproc_sys::memfd_create("x")?.as_fd()));
/// let (a, _b) = mproc_sys::socketpair()?;
/// assert!(!mproc_sys::is_memfd(a.as_fd()));
/// # Ok::<(), std::io::Error>(())
/// ```
pub fn is_memfd(fd: BorrowedFd<'_>) -> bool {
    fcntl(fd, FcntlArg::F_GET_SEALS).is_ok()
}

/// Seals a memfd's size: it can no longer shrink or grow (and take no further seals). A
/// process that maps it can then trust its length: nobody can truncate it under the
/// mapping and make a reader take SIGBUS.
///
/// ```
/// use std::os::fd::AsFd;
/// let fd = mproc_sys::memfd_create("sized")?;
/// nix::unistd::ftruncate(&fd, 4096)?;
/// assert!(!mproc_sys::is_size_sealed(fd.as_fd()));
/// mproc_sys::seal_size(fd.as_fd())?;
/// assert!(mproc_sys::is_size_sealed(fd.as_fd()));
/// assert!(nix::unistd::ftruncate(&fd, 0).is_err());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
///
/// # Errors
///
/// The OS error from fcntl (`EPERM` for a file that is not a sealable memfd).
pub fn seal_size(fd: BorrowedFd<'_>) -> io::Result<()> {
    use nix::fcntl::SealFlag;
    fcntl(
        fd,
        FcntlArg::F_ADD_SEALS(
            SealFlag::F_SEAL_SHRINK | SealFlag::F_SEAL_GROW | SealFlag::F_SEAL_SEAL,
        ),
    )?;
    Ok(())
}

/// Returns whether `fd` is a memfd whose size is sealed against shrinking (see
/// [`seal_size`]).
pub fn is_size_sealed(fd: BorrowedFd<'_>) -> bool {
    fcntl(fd, FcntlArg::F_GET_SEALS).is_ok_and(|seals| seals & libc::F_SEAL_SHRINK != 0)
}
