//! Single file descriptors: their close-on-exec flag, what they refer to (kind, size,
//! identity), how many are open, and taking the one inherited at exec.

use std::io;
use std::os::fd::{BorrowedFd, FromRawFd, OwnedFd};

use nix::fcntl::{FcntlArg, FdFlag, fcntl};

/// Sets or clears close-on-exec on `fd`.
///
/// ```
/// let (a, _b) = mproc_sys::socketpair()?;
/// mproc_sys::set_cloexec(std::os::fd::AsFd::as_fd(&a), true)?;
/// # Ok::<(), std::io::Error>(())
/// ```
pub fn set_cloexec(fd: BorrowedFd<'_>, on: bool) -> io::Result<()> {
    let mut flags = FdFlag::from_bits_retain(fcntl(fd, FcntlArg::F_GETFD)?);
    flags.set(FdFlag::FD_CLOEXEC, on);
    fcntl(fd, FcntlArg::F_SETFD(flags))?;
    Ok(())
}

/// Counts the open file descriptors of this process (Linux: entries of `/proc/self/fd`).
///
/// ```
/// let before = mproc_sys::open_fd_count()?;
/// let pair = mproc_sys::socketpair()?;
/// assert_eq!(mproc_sys::open_fd_count()?, before + 2);
/// drop(pair);
/// assert_eq!(mproc_sys::open_fd_count()?, before);
/// # Ok::<(), std::io::Error>(())
/// ```
pub fn open_fd_count() -> io::Result<usize> {
    // The directory handle itself is one open fd while we read it.
    Ok(std::fs::read_dir("/proc/self/fd")?
        .count()
        .saturating_sub(1))
}

/// What kind of object an fd refers to, as far as mproc cares.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FdKind {
    /// A socket.
    Socket,
    /// Anything else that is open.
    Other,
    /// Not an open file descriptor.
    Closed,
}

/// Tells whether `fd` is an open socket, another open file, or not open at all.
///
/// ```
/// use std::os::fd::AsRawFd;
/// let (a, _b) = mproc_sys::socketpair()?;
/// assert_eq!(mproc_sys::fd_kind(a.as_raw_fd()), mproc_sys::FdKind::Socket);
/// assert_eq!(mproc_sys::fd_kind(-1), mproc_sys::FdKind::Closed);
/// # Ok::<(), std::io::Error>(())
/// ```
pub fn fd_kind(fd: std::os::fd::RawFd) -> FdKind {
    if fd < 0 {
        return FdKind::Closed;
    }
    // SAFETY: `fstat` only writes into the stat buffer we own; an invalid fd yields EBADF.
    let mut st = unsafe { std::mem::zeroed::<libc::stat>() };
    // SAFETY: see above; `st` is a valid, writable `stat`.
    if unsafe { libc::fstat(fd, &mut st) } != 0 {
        return FdKind::Closed;
    }
    if st.st_mode & libc::S_IFMT == libc::S_IFSOCK {
        FdKind::Socket
    } else {
        FdKind::Other
    }
}

/// Takes the socket this process inherited from an mproc parent, named by the environment
/// variable `key` as `<fd>:<rest>`. Returns the socket (close-on-exec from now on) and
/// `<rest>`, or `None` when the variable is not set.
///
/// The variable is removed when the process is single-threaded (see
/// [`take_env_var`](crate::take_env_var)), so programs this one starts do not inherit it. It succeeds at
/// most once per process, and only for an fd above 2 that is an open socket: such an fd was
/// inherited at exec and nothing in this process owns it before this call.
///
/// ```
/// assert!(mproc_sys::take_inherited_socket("MPROC_SYS_DOCTEST_NO_MARKER").is_none());
/// ```
pub fn take_inherited_socket(key: &str) -> Option<io::Result<(OwnedFd, String)>> {
    use std::sync::atomic::{AtomicBool, Ordering};
    static TAKEN: AtomicBool = AtomicBool::new(false);
    let marker = crate::take_env_var(key)?.to_string_lossy().into_owned();
    let invalid = |why: &str| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{key}={marker:?}: {why}"),
        )
    };
    let Some((fd, rest)) = marker.split_once(':') else {
        return Some(Err(invalid("expected <fd>:<rest>")));
    };
    let raw = match fd.parse::<std::os::fd::RawFd>() {
        Ok(raw) if raw > 2 => raw,
        _ => return Some(Err(invalid("the fd must be a number above 2"))),
    };
    if fd_kind(raw) != FdKind::Socket {
        return Some(Err(invalid("the fd is not an open socket")));
    }
    if TAKEN.swap(true, Ordering::SeqCst) {
        return Some(Err(invalid("the inherited socket was taken already")));
    }
    // SAFETY: `raw` is open and above the standard streams; it was named by the environment
    // this process was started with (which safe code cannot change), so it was inherited at
    // exec, and `TAKEN` makes this the only place that ever takes ownership of it.
    let fd = unsafe { OwnedFd::from_raw_fd(raw) };
    // Close-on-exec is the only fd flag: set it outright (one fcntl, not a read and a write).
    let cloexec = fcntl(
        std::os::fd::AsFd::as_fd(&fd),
        FcntlArg::F_SETFD(FdFlag::FD_CLOEXEC),
    );
    Some(
        cloexec
            .map(|_| (fd, rest.to_string()))
            .map_err(io::Error::from),
    )
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
