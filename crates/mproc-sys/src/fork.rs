//! Forking this process: `fork` itself (refused beside other threads unless a
//! `ForkPermit` is given), the handlers that run around it, and the child's quick exit.

use std::io::{self, Write};

use crate::{Pid, thread_count};

/// Registers fork handlers: `prepare` runs in the forking thread just before `fork`,
/// `parent` and `child` just after it, in the parent and in the child (`pthread_atfork`).
/// For work of one's own around a fork (counting forks, forgetting per-thread state in the
/// child); a lock to hold across every fork is a [`ForkLock`](crate::ForkLock) instead.
///
/// ```
/// extern "C" fn nothing() {}
/// mproc_sys::at_fork(nothing, nothing, nothing)?;
/// # Ok::<(), std::io::Error>(())
/// ```
///
/// # Errors
///
/// The error of `pthread_atfork` (out of memory).
pub fn at_fork(
    prepare: extern "C" fn(),
    parent: extern "C" fn(),
    child: extern "C" fn(),
) -> std::io::Result<()> {
    // SAFETY: the handlers are plain functions that live for the whole program.
    let r = unsafe { libc::pthread_atfork(Some(prepare), Some(parent), Some(child)) };
    if r != 0 {
        return Err(std::io::Error::from_raw_os_error(r));
    }
    Ok(())
}

/// A caller's promise that forking while other threads run is acceptable here.
///
/// After `fork` only the calling thread exists in the child. Any lock another thread held at
/// that moment stays held forever there, and any data it was changing stays half-changed,
/// which can deadlock the child or worse. Make a permit only when you know what every other
/// thread of the process may be doing (for example, a test harness's idle threads).
#[derive(Clone, Copy, Debug)]
pub struct ForkPermit(());

impl ForkPermit {
    /// Makes a permit.
    ///
    /// # Safety
    ///
    /// Every other thread of the process, at every moment a fork may happen with this permit,
    /// must hold no lock and be in the middle of no change to memory that the child will use.
    /// (mproc holds its own locks across the fork.)
    ///
    /// ```
    /// // SAFETY: this doctest runs no other thread of its own.
    /// let _permit = unsafe { mproc_sys::ForkPermit::other_threads_are_idle() };
    /// ```
    pub unsafe fn other_threads_are_idle() -> Self {
        ForkPermit(())
    }
}

/// Which side of a fork this is.
#[derive(Debug)]
pub enum ForkOutcome {
    /// The parent, with the child's pid.
    Parent(Pid),
    /// The child.
    Child,
}

/// Forks this process.
///
/// Refused with `io::ErrorKind::Unsupported` when other threads exist, unless `permit` is
/// given; the error message says how many threads there are.
///
/// ```
/// // The doctest binary is single-threaded, so no permit is needed.
/// match mproc_sys::fork(None)? {
///     mproc_sys::ForkOutcome::Child => mproc_sys::exit_now(7),
///     mproc_sys::ForkOutcome::Parent(pid) => {
///         let st = mproc_sys::wait_pid(pid, true)?;
///         assert_eq!(st, Some(mproc_sys::ExitStatus::Code(7)));
///     }
/// }
/// # Ok::<(), std::io::Error>(())
/// ```
pub fn fork(permit: Option<ForkPermit>) -> io::Result<ForkOutcome> {
    if permit.is_none() {
        let n = thread_count()?;
        if n > 1 {
            return Err(io::Error::new(
                io::ErrorKind::Unsupported,
                format!(
                    "refusing to fork: this process has {n} threads and fork copies only \
                     the calling one; use the spawn or forkserver start method, or opt in \
                     with a ForkPermit"
                ),
            ));
        }
    }
    // SAFETY: either the process is single-threaded (checked just above), so the child is a
    // complete copy, or the caller holds a `ForkPermit`, whose contract covers the other
    // threads. The child only runs Rust code of this process afterwards.
    match unsafe { nix::unistd::fork() }? {
        nix::unistd::ForkResult::Parent { child } => Ok(ForkOutcome::Parent(child.as_raw() as Pid)),
        nix::unistd::ForkResult::Child => Ok(ForkOutcome::Child),
    }
}

/// Flushes stdout, then ends the process at once with `code`, without running destructors
/// or `atexit` handlers (which belong to the parent in a forked child). (Rust's stderr is
/// unbuffered: nothing of it waits to be flushed.)
pub fn exit_now(code: i32) -> ! {
    let _ = io::stdout().flush();
    // SAFETY: `_exit` has no preconditions; it never returns.
    unsafe { libc::_exit(code) }
}
