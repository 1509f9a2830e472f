//! A descriptor's readiness on tokio's reactor (feature `tokio`): a registered duplicate, so
//! that its owner keeps the original for blocking calls.

use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};

use tokio::io::unix::AsyncFd;

/// A close-on-exec duplicate of an object's descriptor, registered with tokio's reactor by
/// [`register_async`]: it refers to the same open socket (or pipe, pidfd, eventfd), so its
/// readiness is the object's, while the object keeps its own descriptor. A child made by
/// `fork` closes its copy, as it does the object's (see [`track_owned_fd`](crate::track_owned_fd)).
///
/// ```
/// use std::os::fd::{AsFd, AsRawFd};
/// let (a, _b) = mproc_sys::socketpair()?;
/// let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
/// let _guard = rt.enter();
/// let ready = mproc_sys::register_async(a.as_fd())?;
/// assert_ne!(ready.get_ref().as_raw_fd(), a.as_raw_fd());
/// # Ok::<(), std::io::Error>(())
/// ```
#[derive(Debug)]
pub struct ReactorFd(OwnedFd);

impl AsRawFd for ReactorFd {
    fn as_raw_fd(&self) -> RawFd {
        self.0.as_raw_fd()
    }
}

impl AsFd for ReactorFd {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.0.as_fd()
    }
}

impl Drop for ReactorFd {
    fn drop(&mut self) {
        crate::untrack_owned_fd(self.0.as_fd());
    }
}

/// Registers a duplicate of `fd` with the reactor of the tokio runtime this is called in,
/// for read and write readiness. Readiness is all it is for: reads and writes go on through
/// the original descriptor, with `MSG_DONTWAIT` rather than a non-blocking flag, so blocking
/// calls on it keep working. Dropping the `AsyncFd` deregisters and closes the duplicate.
///
/// # Errors
///
/// An error of kind `Other` when no tokio runtime is running here; the OS's error when the
/// descriptor cannot be duplicated or registered (out of fds, or of epoll watches).
///
/// # Panics
///
/// When the runtime was built without its I/O driver (`enable_io` or `enable_all`), as
/// tokio's own sockets do.
///
/// ```
/// use std::os::fd::AsFd;
/// let (a, b) = mproc_sys::socketpair()?;
/// let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
/// rt.block_on(async {
///     let ready = mproc_sys::register_async(b.as_fd())?;
///     mproc_sys::send_with_fds(a.as_fd(), b"x", &[])?;
///     ready.readable().await?.retain_ready();
///     Ok::<(), std::io::Error>(())
/// })?;
/// # Ok::<(), std::io::Error>(())
/// ```
pub fn register_async(fd: BorrowedFd<'_>) -> io::Result<AsyncFd<ReactorFd>> {
    if tokio::runtime::Handle::try_current().is_err() {
        return Err(io::Error::other(
            "no tokio runtime is running here; await inside a runtime with I/O enabled",
        ));
    }
    let dup = fd.try_clone_to_owned()?; // F_DUPFD_CLOEXEC
    crate::track_owned_fd(dup.as_fd());
    let dup = ReactorFd(dup);
    // SAFETY: `ReactorFd` owns its descriptor, which stays open and the same until the
    // `AsyncFd` (which owns the `ReactorFd`) is dropped or gives it back with `into_inner`;
    // nothing outside this module can reach the `OwnedFd` inside to close or replace it,
    // and `as_raw_fd` always returns that descriptor.
    unsafe { AsyncFd::register(dup) }.map_err(|e| e.into_parts().1)
}
