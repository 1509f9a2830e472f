//! Waiting on several children's sentinels at once.

use std::os::fd::BorrowedFd;
use std::time::Duration;

use crate::error::{Error, Result};

/// Waits until at least one of `sentinels` is ready (its child ended) or `timeout` passes,
/// and returns the indices of the ready ones: Python's `multiprocessing.connection.wait`
/// for process sentinels. An empty result means the timeout passed.
///
/// To wait on sentinels, connections and listeners together, use `mproc::wait` (the
/// facade's, from mproc-pipe), which takes a sentinel as it takes a connection.
///
/// ```
/// fn nap(ms: u64) { std::thread::sleep(std::time::Duration::from_millis(ms)) }
/// # mproc_process::init();
/// let mut slow = mproc_process::spawn(nap, 5_000)?;
/// let mut fast = mproc_process::spawn(nap, 0)?;
/// let ready = mproc_process::wait_sentinels(&[slow.sentinel(), fast.sentinel()], None)?;
/// assert_eq!(ready, [1]);
/// slow.kill()?;
/// # slow.wait()?; fast.wait()?;
/// # Ok::<(), mproc_process::Error>(())
/// ```
pub fn wait_sentinels(
    sentinels: &[BorrowedFd<'_>],
    timeout: Option<Duration>,
) -> Result<Vec<usize>> {
    let ready = mproc_sys::poll_readable(sentinels, timeout)
        .map_err(|e| Error::io("waiting for children", e))?;
    Ok(ready
        .iter()
        .enumerate()
        .filter(|(_, r)| **r)
        .map(|(i, _)| i)
        .collect())
}
