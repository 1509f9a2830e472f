//! The facade's error: any mproc crate's error.

use std::fmt;

/// An error from any part of mproc; `?` converts each crate's error into it.
///
#[cfg_attr(feature = "wire", doc = "```")]
#[cfg_attr(not(feature = "wire"), doc = "```ignore")]
/// fn f() -> mproc::Result<()> {
///     Err(mproc::wire::decode::<u8>(mproc::wire::Message::from_bytes(vec![]))
///         .unwrap_err())?
/// }
/// assert!(matches!(f(), Err(mproc::Error::Wire(_))));
/// ```
#[non_exhaustive]
pub enum Error {
    /// From child processes ([`mproc_process::Error`]).
    #[cfg(feature = "process")]
    Process(mproc_process::Error),
    /// From pipes, connections and listeners ([`mproc_pipe::Error`]).
    #[cfg(feature = "pipe")]
    Pipe(mproc_pipe::Error),
    /// From the wire ([`mproc_wire::Error`]).
    #[cfg(feature = "wire")]
    Wire(mproc_wire::Error),
    /// From shared memory ([`mproc_shm::Error`]).
    #[cfg(feature = "shm")]
    Shm(mproc_shm::Error),
    /// From locks and the other synchronisation primitives ([`mproc_sync::Error`]).
    #[cfg(feature = "sync")]
    Sync(mproc_sync::Error),
    /// From queues ([`mproc_queue::Error`]; a full, empty or closed queue turned into an
    /// error by `?` too).
    #[cfg(feature = "queue")]
    Queue(mproc_queue::Error),
    /// From pools ([`mproc_pool::Error`]: a failed task, with its index, or a pool that
    /// could not do what was asked).
    #[cfg(feature = "pool")]
    Pool(mproc_pool::Error),
    /// From managers and their proxies ([`mproc_manager::Error`]).
    #[cfg(feature = "manager")]
    Manager(mproc_manager::Error),
    /// From the operating system.
    Io(std::io::Error),
}

/// The facade's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// The inner error's message: the facade adds no words of its own.
impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self.inner(), f)
    }
}

/// The message and its causes, one per line, as `main` returning an error prints them.
impl fmt::Debug for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if f.alternate() {
            return f
                .debug_struct("Error")
                .field("kind", &self.kind())
                .field("message", &self.to_string())
                .finish();
        }
        write!(f, "{self}")?;
        let mut cause = std::error::Error::source(self);
        if cause.is_some() {
            f.write_str("\n\nCaused by:")?;
        }
        while let Some(c) = cause {
            write!(f, "\n    {c}")?;
            cause = c.source();
        }
        Ok(())
    }
}

/// Transparent: the inner error's causes (not the inner error itself, which `Display`
/// already shows).
impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.inner().source()
    }
}

/// What went wrong, whichever part of mproc it came from: every crate's kinds in one enum
/// (see [`Error::kind`]). New kinds may come, so match with a `_` arm.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorKind {
    /// `mproc::init()` was not called (or `init_before_main!` in a test binary).
    NotInitialized,
    /// The fork start method was refused (other threads, no permit).
    ForkRefused,
    /// A child's function, or a pool task, panicked.
    Panicked,
    /// A child process, or a pool worker running a task, died (signal or exit).
    Died,
    /// A deadline passed.
    Timeout,
    /// The child was already joined, or the result already taken.
    AlreadyTaken,
    /// A child runs a different build of the program.
    BuildMismatch,
    /// A value could not be serialized.
    Encode,
    /// Bytes could not be deserialized as the expected type.
    Decode,
    /// The fork server failed.
    ForkServer,
    /// A child's exit status was lost.
    StatusLost,
    /// The other side is gone (a pipe's peer, a queue's last other holder, a manager).
    Disconnected,
    /// A message over the size limit.
    TooLarge,
    /// Bytes from another process that no mproc process wrote, or a message cut short.
    Corrupt,
    /// A receive buffer too short for the message (which is kept).
    BufferTooShort,
    /// A wrong authentication key, on either side.
    Authentication,
    /// A named segment (or a manager's object, key or value) that does not exist.
    NotFound,
    /// A named segment that exists already.
    AlreadyExists,
    /// No room: shared memory exhausted, or a value too large for its slot.
    NoSpace,
    /// An argument out of range.
    InvalidInput,
    /// A call that needs another first, or that the object's state refuses.
    InvalidState,
    /// Unlocking a lock this thread or process does not hold.
    NotOwner,
    /// A semaphore released more often than acquired, or `task_done` called too often.
    TooManyReleases,
    /// A barrier broken by an abort, a reset, a timeout or a dead party.
    BrokenBarrier,
    /// A lock whose holder died holding it.
    OwnerDied,
    /// A queue was full, or empty (from `?` on a `try_*`).
    Full,
    /// See [`Full`](ErrorKind::Full).
    Empty,
    /// A closed queue or pool.
    Closed,
    /// A pool terminated before the task finished.
    Terminated,
    /// A pool's initializer failed.
    Initializer,
    /// A worker or a server could not be started.
    Start,
    /// A task cancelled before it started.
    Cancelled,
    /// A manager's object of another type, or an unregistered type.
    WrongType,
    /// An index out of range in a manager's list or array.
    IndexOutOfRange,
    /// A manager's server is busy (its connection limit).
    Busy,
    /// A registered type's handler failed in the manager's server.
    Handler,
    /// The operating system refused.
    Io,
    /// A kind this version of the facade does not name.
    Other,
}

impl Error {
    /// Returns what went wrong, whichever part of mproc it came from.
    ///
    /// ```
    /// let err = mproc::Error::from(std::io::Error::other("no"));
    /// assert_eq!(err.kind(), mproc::ErrorKind::Io);
    /// ```
    pub fn kind(&self) -> ErrorKind {
        use ErrorKind as K;
        match self {
            #[cfg(feature = "process")]
            Error::Process(e) => {
                use mproc_process::ErrorKind as P;
                match e.kind() {
                    P::NotInitialized => K::NotInitialized,
                    P::ForkRefused => K::ForkRefused,
                    P::Panicked => K::Panicked,
                    P::Died => K::Died,
                    P::Timeout => K::Timeout,
                    P::AlreadyJoined => K::AlreadyTaken,
                    P::BuildMismatch => K::BuildMismatch,
                    P::Encode => K::Encode,
                    P::Decode => K::Decode,
                    P::ForkServer => K::ForkServer,
                    P::StatusLost => K::StatusLost,
                    P::Io => K::Io,
                    _ => K::Other,
                }
            }
            #[cfg(feature = "pipe")]
            Error::Pipe(e) => {
                use mproc_pipe::ErrorKind as P;
                match e.kind() {
                    P::Disconnected => K::Disconnected,
                    P::Timeout => K::Timeout,
                    P::TooLarge => K::TooLarge,
                    P::Corrupt => K::Corrupt,
                    P::Encode => K::Encode,
                    P::Decode => K::Decode,
                    P::BufferTooShort => K::BufferTooShort,
                    P::Authentication => K::Authentication,
                    P::Io => K::Io,
                    _ => K::Other,
                }
            }
            #[cfg(feature = "wire")]
            Error::Wire(e) => {
                use mproc_wire::ErrorKind as W;
                match e.kind() {
                    W::Disconnected => K::Disconnected,
                    W::Truncated | W::Corrupt => K::Corrupt,
                    W::Timeout => K::Timeout,
                    W::TooLarge => K::TooLarge,
                    W::Encode => K::Encode,
                    W::Decode => K::Decode,
                    W::Io => K::Io,
                    _ => K::Other,
                }
            }
            #[cfg(feature = "shm")]
            Error::Shm(e) => shm_kind(e),
            #[cfg(feature = "sync")]
            Error::Sync(e) => {
                use mproc_sync::ErrorKind as S;
                match e.kind() {
                    S::NotOwner => K::NotOwner,
                    S::TooManyReleases => K::TooManyReleases,
                    S::BrokenBarrier => K::BrokenBarrier,
                    S::Timeout => K::Timeout,
                    S::OwnerDied => K::OwnerDied,
                    S::IndexOutOfRange => K::IndexOutOfRange,
                    S::InvalidInput => K::InvalidInput,
                    S::Shm => shm_cause(e).unwrap_or(K::Io),
                    _ => K::Other,
                }
            }
            #[cfg(feature = "queue")]
            Error::Queue(e) => {
                use mproc_queue::ErrorKind as Q;
                match e.kind() {
                    Q::Encode => K::Encode,
                    Q::Decode => K::Decode,
                    Q::Corrupt => K::Corrupt,
                    Q::TooManyTaskDone => K::TooManyReleases,
                    Q::Timeout => K::Timeout,
                    Q::Shm => shm_cause(e).unwrap_or(K::Io),
                    Q::Io => K::Io,
                    Q::Full => K::Full,
                    Q::Empty => K::Empty,
                    Q::Closed => K::Closed,
                    Q::Disconnected => K::Disconnected,
                    Q::InvalidInput => K::InvalidInput,
                    _ => K::Other,
                }
            }
            #[cfg(feature = "pool")]
            Error::Pool(e) => {
                use mproc_pool::ErrorKind as P;
                match e.kind() {
                    P::Panicked => K::Panicked,
                    P::WorkerDied => K::Died,
                    P::Timeout => K::Timeout,
                    P::Encode => K::Encode,
                    P::Decode => K::Decode,
                    P::Closed => K::Closed,
                    P::Terminated => K::Terminated,
                    P::Initializer => K::Initializer,
                    P::Start => K::Start,
                    P::AlreadyTaken => K::AlreadyTaken,
                    P::InvalidState => K::InvalidState,
                    P::InvalidInput => K::InvalidInput,
                    P::Cancelled => K::Cancelled,
                    P::Io => K::Io,
                    _ => K::Other,
                }
            }
            #[cfg(feature = "manager")]
            Error::Manager(e) => {
                use mproc_manager::ErrorKind as M;
                match e.kind() {
                    M::Disconnected => K::Disconnected,
                    M::Timeout => K::Timeout,
                    M::Authentication => K::Authentication,
                    M::TooLarge => K::TooLarge,
                    M::Encode => K::Encode,
                    M::Decode => K::Decode,
                    M::NoSuchObject | M::KeyNotFound | M::ValueNotFound => K::NotFound,
                    M::WrongType | M::NotRegistered => K::WrongType,
                    M::IndexOutOfRange => K::IndexOutOfRange,
                    M::Empty => K::Empty,
                    M::Full => K::Full,
                    M::NotOwner => K::NotOwner,
                    M::BrokenBarrier => K::BrokenBarrier,
                    M::InvalidInput => K::InvalidInput,
                    M::InvalidState => K::InvalidState,
                    M::Busy => K::Busy,
                    M::Handler => K::Handler,
                    M::Start => K::Start,
                    M::Io => K::Io,
                    _ => K::Other,
                }
            }
            Error::Io(_) => K::Io,
        }
    }

    /// The error this one wraps, as a trait object (the same error [`Display`] shows).
    fn inner(&self) -> &(dyn std::error::Error + 'static) {
        match self {
            #[cfg(feature = "process")]
            Error::Process(e) => e,
            #[cfg(feature = "pipe")]
            Error::Pipe(e) => e,
            #[cfg(feature = "wire")]
            Error::Wire(e) => e,
            #[cfg(feature = "shm")]
            Error::Shm(e) => e,
            #[cfg(feature = "sync")]
            Error::Sync(e) => e,
            #[cfg(feature = "queue")]
            Error::Queue(e) => e,
            #[cfg(feature = "pool")]
            Error::Pool(e) => e,
            #[cfg(feature = "manager")]
            Error::Manager(e) => e,
            Error::Io(e) => e,
        }
    }
}

#[cfg(feature = "process")]
impl From<mproc_process::Error> for Error {
    fn from(e: mproc_process::Error) -> Self {
        Error::Process(e)
    }
}

#[cfg(feature = "pool")]
impl From<mproc_pool::Error> for Error {
    fn from(e: mproc_pool::Error) -> Self {
        Error::Pool(e)
    }
}

#[cfg(feature = "manager")]
impl From<mproc_manager::Error> for Error {
    fn from(e: mproc_manager::Error) -> Self {
        Error::Manager(e)
    }
}

#[cfg(feature = "pipe")]
impl From<mproc_pipe::Error> for Error {
    fn from(e: mproc_pipe::Error) -> Self {
        Error::Pipe(e)
    }
}

#[cfg(feature = "wire")]
impl From<mproc_wire::Error> for Error {
    fn from(e: mproc_wire::Error) -> Self {
        Error::Wire(e)
    }
}

#[cfg(feature = "shm")]
impl From<mproc_shm::Error> for Error {
    fn from(e: mproc_shm::Error) -> Self {
        Error::Shm(e)
    }
}

#[cfg(feature = "sync")]
impl From<mproc_sync::Error> for Error {
    fn from(e: mproc_sync::Error) -> Self {
        Error::Sync(e)
    }
}

/// A lock whose holder died, turned into an error by `?` (the guard inside is dropped,
/// leaving the lock marked for repair; match on [`mproc_sync::OwnerDied`] to repair).
#[cfg(feature = "sync")]
impl<G> From<mproc_sync::OwnerDied<G>> for Error {
    fn from(e: mproc_sync::OwnerDied<G>) -> Self {
        Error::Sync(e.into())
    }
}

/// A `try_lock` / `lock_timeout` that did not get the lock, turned into an error by `?`.
#[cfg(feature = "sync")]
impl<G> From<mproc_sync::TryLockError<G>> for Error {
    fn from(e: mproc_sync::TryLockError<G>) -> Self {
        Error::Sync(e.into())
    }
}

#[cfg(feature = "queue")]
impl From<mproc_queue::Error> for Error {
    fn from(e: mproc_queue::Error) -> Self {
        Error::Queue(e)
    }
}

/// A put that did not happen, turned into an error by `?` (the value is dropped).
#[cfg(feature = "queue")]
impl<T> From<mproc_queue::PutError<T>> for Error {
    fn from(e: mproc_queue::PutError<T>) -> Self {
        Error::Queue(e.into())
    }
}

#[cfg(feature = "queue")]
impl From<mproc_queue::GetError> for Error {
    fn from(e: mproc_queue::GetError) -> Self {
        Error::Queue(e.into())
    }
}

impl From<std::io::Error> for Error {
    fn from(e: std::io::Error) -> Self {
        Error::Io(e)
    }
}

impl From<Error> for std::io::Error {
    fn from(e: Error) -> Self {
        match e {
            #[cfg(feature = "process")]
            Error::Process(e) => e.into(),
            #[cfg(feature = "pipe")]
            Error::Pipe(e) => e.into(),
            #[cfg(feature = "wire")]
            Error::Wire(e) => e.into(),
            #[cfg(feature = "shm")]
            Error::Shm(e) => e.into(),
            #[cfg(feature = "sync")]
            Error::Sync(e) => e.into(),
            #[cfg(feature = "queue")]
            Error::Queue(e) => e.into(),
            #[cfg(feature = "pool")]
            Error::Pool(e) => e.into(),
            #[cfg(feature = "manager")]
            Error::Manager(e) => e.into(),
            Error::Io(e) => e,
        }
    }
}

/// The kind of a shared-memory error.
#[cfg(feature = "shm")]
fn shm_kind(e: &mproc_shm::Error) -> ErrorKind {
    use ErrorKind as K;
    use mproc_shm::ErrorKind as S;
    match e.kind() {
        S::NotFound => K::NotFound,
        S::AlreadyExists => K::AlreadyExists,
        S::NoSpace | S::ExceedsStorage => K::NoSpace,
        S::InvalidInput => K::InvalidInput,
        S::Corrupt => K::Corrupt,
        S::Io => K::Io,
        _ => K::Other,
    }
}

/// The kind of the shared-memory error behind a lock's or a queue's error, if that is
/// what caused it.
#[cfg(any(feature = "sync", feature = "queue"))]
fn shm_cause(e: &(dyn std::error::Error + 'static)) -> Option<ErrorKind> {
    e.source()?.downcast_ref::<mproc_shm::Error>().map(shm_kind)
}
