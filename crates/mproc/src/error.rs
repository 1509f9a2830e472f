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
#[derive(Debug)]
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

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            #[cfg(feature = "process")]
            Error::Process(e) => e.fmt(f),
            #[cfg(feature = "pipe")]
            Error::Pipe(e) => e.fmt(f),
            #[cfg(feature = "wire")]
            Error::Wire(e) => e.fmt(f),
            #[cfg(feature = "shm")]
            Error::Shm(e) => e.fmt(f),
            #[cfg(feature = "sync")]
            Error::Sync(e) => e.fmt(f),
            #[cfg(feature = "queue")]
            Error::Queue(e) => e.fmt(f),
            #[cfg(feature = "pool")]
            Error::Pool(e) => e.fmt(f),
            #[cfg(feature = "manager")]
            Error::Manager(e) => e.fmt(f),
            Error::Io(e) => e.fmt(f),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            #[cfg(feature = "process")]
            Error::Process(e) => Some(e),
            #[cfg(feature = "pipe")]
            Error::Pipe(e) => Some(e),
            #[cfg(feature = "wire")]
            Error::Wire(e) => Some(e),
            #[cfg(feature = "shm")]
            Error::Shm(e) => Some(e),
            #[cfg(feature = "sync")]
            Error::Sync(e) => Some(e),
            #[cfg(feature = "queue")]
            Error::Queue(e) => Some(e),
            #[cfg(feature = "pool")]
            Error::Pool(e) => Some(e),
            #[cfg(feature = "manager")]
            Error::Manager(e) => Some(e),
            Error::Io(e) => Some(e),
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
