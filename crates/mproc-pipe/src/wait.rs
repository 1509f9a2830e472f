//! Waiting on many ends at once: Python's `multiprocessing.connection.wait`.

use std::os::fd::{AsFd, BorrowedFd};
use std::time::Duration;

use crate::error::{Error, Result};

/// Something [`wait`] can wait on: it has an fd that becomes readable when it is ready,
/// and may already be ready without it (a message already received into a buffer).
///
/// Implemented for connections, receivers and listeners of this crate, and for fds, such
/// as a child's sentinel (`mproc_process::Child::sentinel`).
pub trait Waitable {
    /// Returns the fd whose readability means "ready".
    fn wait_fd(&self) -> BorrowedFd<'_>;

    /// Returns whether it is ready now whatever its fd says.
    fn ready_now(&self) -> bool {
        false
    }

    /// Returns every fd whose readability means "ready" (the listener's own and those of
    /// the handshakes it has in progress, say); by default just [`wait_fd`](Self::wait_fd).
    fn wait_fds(&self) -> Vec<BorrowedFd<'_>> {
        vec![self.wait_fd()]
    }
}

impl Waitable for BorrowedFd<'_> {
    fn wait_fd(&self) -> BorrowedFd<'_> {
        self.as_fd()
    }
}

impl Waitable for std::os::fd::OwnedFd {
    fn wait_fd(&self) -> BorrowedFd<'_> {
        self.as_fd()
    }
}

impl<S, R> Waitable for crate::Connection<S, R> {
    fn wait_fd(&self) -> BorrowedFd<'_> {
        self.as_fd()
    }

    fn ready_now(&self) -> bool {
        self.has_buffered_message()
    }
}

impl<T> Waitable for crate::Receiver<T> {
    fn wait_fd(&self) -> BorrowedFd<'_> {
        self.as_fd()
    }

    fn ready_now(&self) -> bool {
        self.has_buffered_message()
    }
}

impl Waitable for crate::Listener {
    fn wait_fd(&self) -> BorrowedFd<'_> {
        self.as_fd()
    }

    fn wait_fds(&self) -> Vec<BorrowedFd<'_>> {
        self.all_fds()
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
    let mut fds: Vec<BorrowedFd<'_>> = Vec::new();
    let mut owner = Vec::new();
    for (i, w) in items.iter().enumerate() {
        for fd in w.wait_fds() {
            fds.push(fd);
            owner.push(i);
        }
    }
    // Messages already buffered make the wait end at once.
    let buffered = items.iter().any(|w| w.ready_now());
    let timeout = if buffered {
        Some(Duration::ZERO)
    } else {
        timeout
    };
    let ready = mproc_sys::poll_readable(&fds, timeout).map_err(|e| Error::io("waiting", e))?;
    let mut out: Vec<usize> = (0..items.len()).filter(|&i| items[i].ready_now()).collect();
    out.extend(
        ready
            .iter()
            .zip(&owner)
            .filter(|(r, _)| **r)
            .map(|(_, &i)| i),
    );
    out.sort_unstable();
    out.dedup();
    Ok(out)
}
