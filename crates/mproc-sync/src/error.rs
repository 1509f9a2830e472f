//! The sync crate's errors: `OwnerDied` (a lock whose holder died, with its guard), and
//! `Error` for everything else.

use std::fmt;

/// The lock was acquired, but its previous holder died holding it (or released it without
/// marking the data consistent): what it protects may be half-updated.
///
/// The guard is inside: take it with [`into_inner`](OwnerDied::into_inner), repair the
/// data, and call the guard's `mark_consistent()`. A guard dropped without that leaves the
/// lock in this state, so the next holder is told too. Python has no equivalent: its locks
/// stay held forever when their holder dies.
///
/// ```
/// let lock = mproc_sync::Lock::new()?;
/// let guard = lock.lock().unwrap_or_else(|died| {
///     let mut guard = died.into_inner();
///     // ... repair what the lock protects ...
///     guard.mark_consistent();
///     guard
/// });
/// # drop(guard);
/// # Ok::<(), mproc_sync::Error>(())
/// ```
pub struct OwnerDied<G> {
    guard: G,
}

impl<G> OwnerDied<G> {
    pub(crate) fn new(guard: G) -> Self {
        OwnerDied { guard }
    }

    /// Returns the guard (the lock is held).
    pub fn into_inner(self) -> G {
        self.guard
    }

    /// Borrows the guard.
    pub fn get_ref(&self) -> &G {
        &self.guard
    }

    /// Borrows the guard mutably.
    pub fn get_mut(&mut self) -> &mut G {
        &mut self.guard
    }

    pub(crate) fn map<H>(self, f: impl FnOnce(G) -> H) -> OwnerDied<H> {
        OwnerDied {
            guard: f(self.guard),
        }
    }
}

impl<G> fmt::Debug for OwnerDied<G> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OwnerDied").finish_non_exhaustive()
    }
}

impl<G> fmt::Display for OwnerDied<G> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(
            "the previous holder of the lock died holding it; the data it protects may need repair",
        )
    }
}

impl<G> std::error::Error for OwnerDied<G> {}

/// Why a `try_lock` or `lock_timeout` did not simply succeed.
pub enum TryLockError<G> {
    /// Acquired, from a holder that died: see [`OwnerDied`].
    OwnerDied(OwnerDied<G>),
    /// Still held by someone else when the deadline passed (at once, for `try_lock`).
    WouldBlock,
}

impl<G> fmt::Debug for TryLockError<G> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TryLockError::OwnerDied(e) => e.fmt(f),
            TryLockError::WouldBlock => f.write_str("WouldBlock"),
        }
    }
}

impl<G> fmt::Display for TryLockError<G> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TryLockError::OwnerDied(e) => e.fmt(f),
            TryLockError::WouldBlock => f.write_str("the lock is held by someone else"),
        }
    }
}

impl<G> std::error::Error for TryLockError<G> {}

impl<G> From<OwnerDied<G>> for TryLockError<G> {
    fn from(e: OwnerDied<G>) -> Self {
        TryLockError::OwnerDied(e)
    }
}

/// The result of a blocking lock: the guard, or the guard inside [`OwnerDied`].
pub type LockResult<G> = Result<G, OwnerDied<G>>;

/// The result of `try_lock` / `lock_timeout`.
pub type TryLockResult<G> = Result<G, TryLockError<G>>;

/// What went wrong, without the details.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorKind {
    /// A release by a thread that does not hold the lock (Python: `AssertionError` for
    /// `RLock`, `ValueError` for an unlocked `Lock`).
    NotOwner,
    /// A `BoundedSemaphore` released more often than acquired (Python: `ValueError`).
    TooManyReleases,
    /// The barrier is broken: aborted, reset, timed out, or a party died in its action
    /// (Python: `BrokenBarrierError`).
    BrokenBarrier,
    /// The deadline passed.
    Timeout,
    /// A lock's holder died; returned when `?` turns an [`OwnerDied`] into an `Error`
    /// (which releases the lock, still marked for repair).
    OwnerDied,
    /// Creating or receiving the shared memory failed.
    Shm,
    /// An index past the end of an [`Array`](crate::Array). Python: `IndexError`.
    IndexOutOfRange,
    /// An argument out of range (an array too large to allocate).
    InvalidInput,
}

/// An error of a synchronisation primitive.
///
/// ```
/// let sem = mproc_sync::BoundedSemaphore::new(1)?;
/// let e = sem.release().unwrap_err();
/// assert_eq!(e.kind(), mproc_sync::ErrorKind::TooManyReleases);
/// # Ok::<(), mproc_sync::Error>(())
/// ```
#[derive(Debug)]
pub struct Error {
    kind: ErrorKind,
    message: String,
    source: Option<mproc_shm::Error>,
}

impl Error {
    pub(crate) fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Error {
            kind,
            message: message.into(),
            source: None,
        }
    }

    /// Returns what went wrong.
    pub fn kind(&self) -> ErrorKind {
        self.kind
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The cause is `source()`'s to tell: a reporter walking the chain prints it once.
        f.write_str(&self.message)
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.source.as_ref().map(|e| e as _)
    }
}

impl From<mproc_shm::Error> for Error {
    fn from(e: mproc_shm::Error) -> Self {
        Error {
            kind: ErrorKind::Shm,
            message: "shared memory for a synchronisation primitive".into(),
            source: Some(e),
        }
    }
}

impl<G> From<OwnerDied<G>> for Error {
    fn from(e: OwnerDied<G>) -> Self {
        Error::new(ErrorKind::OwnerDied, e.to_string())
    }
}

impl<G> From<TryLockError<G>> for Error {
    fn from(e: TryLockError<G>) -> Self {
        match e {
            TryLockError::OwnerDied(e) => e.into(),
            TryLockError::WouldBlock => Error::new(ErrorKind::Timeout, e.to_string()),
        }
    }
}

impl From<Error> for std::io::Error {
    fn from(e: Error) -> Self {
        let kind = match e.kind {
            ErrorKind::Timeout => std::io::ErrorKind::TimedOut,
            _ => std::io::ErrorKind::Other,
        };
        std::io::Error::new(kind, e)
    }
}

/// The result type of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;
