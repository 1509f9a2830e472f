//! Waiting, with a deadline, until file descriptors are readable or writable (`poll`).

use std::io;
use std::os::fd::BorrowedFd;
use std::time::{Duration, Instant};

use nix::poll::{PollFd, PollFlags, PollTimeout, poll};

use crate::deadline_after;

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
