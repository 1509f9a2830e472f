//! File-descriptor helpers: readiness with deadlines, close-on-exec, memfd, fd accounting.

use std::io;
use std::os::fd::{BorrowedFd, FromRawFd, OwnedFd};
use std::time::{Duration, Instant};

use nix::fcntl::{FcntlArg, FdFlag, fcntl};
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};

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

fn timeout_from(remaining: Option<Duration>) -> PollTimeout {
    match remaining {
        None => PollTimeout::NONE,
        Some(d) => {
            // Round up so that a wait never returns before its deadline.
            let ms = d.as_nanos().div_ceil(1_000_000);
            PollTimeout::try_from(ms.min(i32::MAX as u128) as i32).unwrap_or(PollTimeout::MAX)
        }
    }
}

/// Waits until one of `fds` is readable (or hung up), or `timeout` passes.
///
/// Returns one flag per fd; all `false` means the timeout passed. `None` waits forever.
/// An interrupted wait is resumed with the time that is left.
///
/// ```
/// use std::os::fd::AsFd;
/// use std::time::Duration;
/// let (a, b) = mproc_sys::socketpair()?;
/// assert_eq!(mproc_sys::poll_readable(&[b.as_fd()], Some(Duration::ZERO))?, [false]);
/// mproc_sys::send_with_fds(a.as_fd(), b"x", &[])?;
/// assert_eq!(mproc_sys::poll_readable(&[b.as_fd()], None)?, [true]);
/// # Ok::<(), std::io::Error>(())
/// ```
pub fn poll_readable(fds: &[BorrowedFd<'_>], timeout: Option<Duration>) -> io::Result<Vec<bool>> {
    let deadline = timeout.and_then(deadline_after);
    let mut pfds: Vec<PollFd<'_>> = fds
        .iter()
        .map(|fd| PollFd::new(*fd, PollFlags::POLLIN))
        .collect();
    loop {
        let remaining = deadline.map(|d| d.saturating_duration_since(Instant::now()));
        match poll(&mut pfds, timeout_from(remaining)) {
            Ok(_) => break,
            Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => return Err(e.into()),
        }
    }
    Ok(pfds
        .iter()
        .map(|p| p.revents().is_some_and(|r| !r.is_empty()))
        .collect())
}

/// Waits until `fd` is readable (or hung up), or until `deadline`. Returns whether it is.
///
/// ```
/// use std::os::fd::AsFd;
/// let (_a, b) = mproc_sys::socketpair()?;
/// assert!(!mproc_sys::wait_readable(b.as_fd(), Some(std::time::Instant::now()))?);
/// # Ok::<(), std::io::Error>(())
/// ```
pub fn wait_readable(fd: BorrowedFd<'_>, deadline: Option<Instant>) -> io::Result<bool> {
    let timeout = deadline.map(|d| d.saturating_duration_since(Instant::now()));
    Ok(poll_readable(&[fd], timeout)?[0])
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
    Some(set_cloexec(std::os::fd::AsFd::as_fd(&fd), true).map(|()| (fd, rest.to_string())))
}

/// Fills `buf` with random bytes from the kernel (`getrandom`), for nonces and keys.
///
/// ```
/// let mut a = [0u8; 32];
/// let mut b = [0u8; 32];
/// mproc_sys::random_bytes(&mut a)?;
/// mproc_sys::random_bytes(&mut b)?;
/// assert_ne!(a, b);
/// # Ok::<(), std::io::Error>(())
/// ```
pub fn random_bytes(buf: &mut [u8]) -> io::Result<()> {
    let mut filled = 0;
    while filled < buf.len() {
        let rest = &mut buf[filled..];
        // SAFETY: `rest` is a valid, writable buffer of `rest.len()` bytes.
        let n = unsafe { libc::getrandom(rest.as_mut_ptr().cast(), rest.len(), 0) };
        if n < 0 {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e);
        }
        filled += n as usize;
    }
    Ok(())
}

/// Waits until `fd` can be written to (or is hung up), or until `deadline`. Returns
/// whether it can.
///
/// ```
/// use std::os::fd::AsFd;
/// let (a, _b) = mproc_sys::socketpair()?;
/// assert!(mproc_sys::wait_writable(a.as_fd(), None)?);
/// # Ok::<(), std::io::Error>(())
/// ```
pub fn wait_writable(fd: BorrowedFd<'_>, deadline: Option<Instant>) -> io::Result<bool> {
    let mut pfd = [PollFd::new(fd, PollFlags::POLLOUT)];
    loop {
        let remaining = deadline.map(|d| d.saturating_duration_since(Instant::now()));
        match poll(&mut pfd, timeout_from(remaining)) {
            Ok(_) => return Ok(pfd[0].revents().is_some_and(|r| !r.is_empty())),
            Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => return Err(e.into()),
        }
    }
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

/// Returns CLOCK_MONOTONIC in nanoseconds: a clock every process of the machine reads
/// alike (the one `Instant` reads), so one process can time what another started.
///
/// ```
/// let a = mproc_sys::monotonic_ns();
/// assert!(mproc_sys::monotonic_ns() >= a);
/// ```
pub fn monotonic_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid out-pointer; CLOCK_MONOTONIC always exists on Linux.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    (ts.tv_sec as u64)
        .saturating_mul(1_000_000_000)
        .saturating_add(ts.tv_nsec as u64)
}

/// Returns the instant `timeout` from now, or `None` ("no deadline") when that is too far
/// to represent (`Duration::MAX`, say).
///
/// ```
/// use std::time::Duration;
/// assert!(mproc_sys::deadline_after(Duration::from_secs(1)).is_some());
/// assert!(mproc_sys::deadline_after(Duration::MAX).is_none());
/// ```
pub fn deadline_after(timeout: Duration) -> Option<Instant> {
    Instant::now().checked_add(timeout)
}

/// An error and each of its causes, joined by `": "`: for the few places where an error
/// has to become text (a message to another process, a line on stderr), since each
/// error's own `Display` leaves its cause to `source()`.
///
/// ```
/// let inner = std::io::Error::other("disk full");
/// let outer = std::io::Error::new(std::io::ErrorKind::Other, inner);
/// assert_eq!(mproc_sys::with_causes(&outer), "disk full");
/// ```
pub fn with_causes(e: &(dyn std::error::Error + 'static)) -> String {
    let mut text = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        let more = c.to_string();
        // An error that already prints its cause (std's io wrappers do) is not repeated.
        if !text.ends_with(&more) {
            text.push_str(": ");
            text.push_str(&more);
        }
        cause = c.source();
    }
    text
}
