//! Eventfds: a kernel counter that a reactor (epoll, and so tokio's `AsyncFd`) can watch,
//! which lets a process that sleeps on futexes wake a waiter that cannot.

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};

/// Creates an eventfd with its counter at 0, close-on-exec and non-blocking (a
/// [`eventfd_signal`] never waits, a [`eventfd_read`] of a zero counter returns `None`).
///
/// The counter is readable to `poll`/`epoll` while it is above 0, and every signal, even one
/// to a counter already above 0, is a fresh edge to every epoll instance watching it.
///
/// ```
/// use std::os::fd::AsFd;
/// let fd = mproc_sys::eventfd()?;
/// assert_eq!(mproc_sys::eventfd_read(fd.as_fd())?, None);
/// mproc_sys::eventfd_signal(fd.as_fd())?;
/// mproc_sys::eventfd_signal(fd.as_fd())?;
/// assert_eq!(mproc_sys::eventfd_read(fd.as_fd())?, Some(2));
/// # Ok::<(), std::io::Error>(())
/// ```
pub fn eventfd() -> io::Result<OwnedFd> {
    // SAFETY: `eventfd` takes an initial value and flags and returns a new fd or -1.
    let fd = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC | libc::EFD_NONBLOCK) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `eventfd` returned a fresh fd that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Adds 1 to an eventfd's counter, waking whoever polls it. Never waits: a counter at its
/// maximum (2^64 − 2, already readable) is left as it is.
///
/// # Errors
///
/// When `fd` is not an eventfd (or not writable).
///
/// ```
/// use std::os::fd::AsFd;
/// let fd = mproc_sys::eventfd()?;
/// mproc_sys::eventfd_signal(fd.as_fd())?;
/// assert_eq!(mproc_sys::poll_readable(&[fd.as_fd()], Some(std::time::Duration::ZERO))?, [true]);
/// # Ok::<(), std::io::Error>(())
/// ```
pub fn eventfd_signal(fd: BorrowedFd<'_>) -> io::Result<()> {
    let one = 1u64.to_ne_bytes();
    loop {
        // SAFETY: `one` is 8 readable bytes, as an eventfd write takes; `fd` is open for
        // the borrow's lifetime.
        let n = unsafe { libc::write(fd.as_raw_fd(), one.as_ptr().cast(), one.len()) };
        if n == 8 {
            return Ok(());
        }
        let e = io::Error::last_os_error();
        match e.kind() {
            io::ErrorKind::Interrupted => {}
            io::ErrorKind::WouldBlock => return Ok(()),
            _ => return Err(e),
        }
    }
}

/// Reads an eventfd's counter and resets it to 0: `None` when it was 0 already.
///
/// # Errors
///
/// When `fd` is not an eventfd (or not readable).
///
/// ```
/// use std::os::fd::AsFd;
/// let fd = mproc_sys::eventfd()?;
/// mproc_sys::eventfd_signal(fd.as_fd())?;
/// assert_eq!(mproc_sys::eventfd_read(fd.as_fd())?, Some(1));
/// assert_eq!(mproc_sys::eventfd_read(fd.as_fd())?, None);
/// # Ok::<(), std::io::Error>(())
/// ```
pub fn eventfd_read(fd: BorrowedFd<'_>) -> io::Result<Option<u64>> {
    let mut buf = [0u8; 8];
    loop {
        // SAFETY: `buf` is 8 writable bytes, as an eventfd read takes; `fd` is open for
        // the borrow's lifetime.
        let n = unsafe { libc::read(fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
        if n == 8 {
            return Ok(Some(u64::from_ne_bytes(buf)));
        }
        if n >= 0 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "a short read from an eventfd",
            ));
        }
        let e = io::Error::last_os_error();
        match e.kind() {
            io::ErrorKind::Interrupted => {}
            io::ErrorKind::WouldBlock => return Ok(None),
            _ => return Err(e),
        }
    }
}

/// Returns whether `fd` is an eventfd (so that writing 8 bytes to it only adds to a
/// counter): a check for an fd received from another process.
///
/// ```
/// use std::os::fd::AsFd;
/// assert!(mproc_sys::is_eventfd(mproc_sys::eventfd()?.as_fd()));
/// let (r, _w) = mproc_sys::pipe()?;
/// assert!(!mproc_sys::is_eventfd(r.as_fd()));
/// # Ok::<(), std::io::Error>(())
/// ```
pub fn is_eventfd(fd: BorrowedFd<'_>) -> bool {
    std::fs::read_link(format!("/proc/self/fd/{}", fd.as_raw_fd()))
        .is_ok_and(|target| target.as_os_str() == "anon_inode:[eventfd]")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsFd;

    #[test]
    fn a_signal_is_seen_through_a_duplicate_and_a_non_eventfd_is_refused() {
        let fd = eventfd().unwrap();
        let dup = fd.try_clone().unwrap();
        eventfd_signal(fd.as_fd()).unwrap();
        assert_eq!(eventfd_read(dup.as_fd()).unwrap(), Some(1));
        let (r, _w) = crate::pipe().unwrap();
        assert!(eventfd_signal(r.as_fd()).is_err());
    }
}
