//! Waiting on many ends at once: Python's `multiprocessing.connection.wait`.

use std::os::fd::{AsFd, BorrowedFd};
use std::time::Duration;

use crate::error::{Error, Result};

/// Something [`wait`] can wait on: it has an fd that becomes readable when it is ready.
///
/// Implemented for connections, receivers and listeners of this crate and for any
/// `BorrowedFd`, such as a child's sentinel (`mproc_process::Child::sentinel`).
pub trait Waitable {
    /// Returns the fd whose readability means "ready".
    fn wait_fd(&self) -> BorrowedFd<'_>;
}

impl<T: AsFd> Waitable for T {
    fn wait_fd(&self) -> BorrowedFd<'_> {
        self.as_fd()
    }
}

/// Waits until at least one of `items` is ready, or `timeout` passes (`None`: forever),
/// and returns the indices of the ready ones; an empty result means the timeout passed.
///
/// A connection is ready when a message (or the end of the stream) can be received; a child
/// sentinel when the child has ended; a listener when a client is knocking.
///
/// # Errors
///
/// [`ErrorKind::Io`](crate::ErrorKind::Io) when the OS poll fails.
///
/// ```
/// use std::time::Duration;
/// let (mut a1, b1) = mproc_pipe::pipe::<u8>()?;
/// let (_a2, b2) = mproc_pipe::pipe::<u8>()?;
/// a1.send(&1)?;
/// let ready = mproc_pipe::wait(&[&b1, &b2], Some(Duration::from_secs(5)))?;
/// assert_eq!(ready, [0]);
/// # Ok::<(), mproc_pipe::Error>(())
/// ```
pub fn wait(items: &[&dyn Waitable], timeout: Option<Duration>) -> Result<Vec<usize>> {
    let fds: Vec<BorrowedFd<'_>> = items.iter().map(|w| w.wait_fd()).collect();
    let ready = mproc_sys::poll_readable(&fds, timeout).map_err(|e| Error::io("waiting", e))?;
    Ok(ready
        .iter()
        .enumerate()
        .filter(|(_, r)| **r)
        .map(|(i, _)| i)
        .collect())
}
