//! The pool's error type: what became of a task, or why the pool could not do something.

use std::fmt;
use std::sync::Arc;

use mproc_sys::ExitStatus;

/// What went wrong, without the details.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorKind {
    /// The task's function panicked; [`Error::panic_message`] has the message.
    Panicked,
    /// The worker running the task died (SIGKILL, abort, exit); [`Error::exit_status`]
    /// says how. A fresh worker replaced it and the rest of the work went on.
    WorkerDied,
    /// The task ran past the pool's [`task_timeout`](crate::Builder::task_timeout) (its
    /// worker was killed and replaced), or a wait such as
    /// [`AsyncResult::get_timeout`](crate::AsyncResult::get_timeout) gave up (the task
    /// goes on, and can be waited for again). [`Error::index`] is set only for the former.
    Timeout,
    /// The task's argument or result could not be serialized.
    Encode,
    /// The task's argument or result could not be deserialized.
    Decode,
    /// The pool was closed: it takes no new work.
    Closed,
    /// The pool was terminated (or dropped) before the task finished.
    Terminated,
    /// The pool's initializer failed in a worker; the pool runs no task.
    Initializer,
    /// A worker process could not be started.
    Start,
    /// The result was already taken by an earlier `get`.
    AlreadyTaken,
    /// A call that needs another first, such as `join` before `close` or `terminate`.
    InvalidState,
    /// An argument out of range, such as a pool of 0 processes or a chunk size of 0.
    InvalidInput,
    /// Shared memory, a queue or the OS failed underneath.
    Io,
    /// The task was cancelled before it started ([`TaskHandle::cancel`](crate::TaskHandle::cancel),
    /// or [`Executor::shutdown`](crate::Executor::shutdown) with `cancel_futures`). Python:
    /// `CancelledError`.
    Cancelled,
}

/// An error from a pool: a task that failed (with the index of its item and, for a panic,
/// the message), or a pool that could not do what was asked.
///
/// ```
/// fn check(x: u32) -> u32 { assert!(x != 3, "three is not allowed"); x }
/// # mproc_process::init();
/// let pool = mproc_pool::Pool::new(2)?;
/// let err = pool.map(check, 0..8).unwrap_err();
/// assert_eq!(err.kind(), mproc_pool::ErrorKind::Panicked);
/// assert_eq!(err.index(), Some(3));
/// assert!(err.panic_message().unwrap().contains("three is not allowed"));
/// # Ok::<(), mproc_pool::Error>(())
/// ```
#[derive(Clone)]
pub struct Error {
    inner: Box<Inner>,
}

#[derive(Clone)]
struct Inner {
    kind: ErrorKind,
    message: String,
    index: Option<usize>,
    panic: Option<String>,
    status: Option<ExitStatus>,
    source: Option<Arc<dyn std::error::Error + Send + Sync>>,
}

/// The pool's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    #[cold]
    pub(crate) fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Error {
            inner: Box::new(Inner {
                kind,
                message: message.into(),
                index: None,
                panic: None,
                status: None,
                source: None,
            }),
        }
    }

    pub(crate) fn with_source(
        mut self,
        source: impl std::error::Error + Send + Sync + 'static,
    ) -> Self {
        self.inner.source = Some(Arc::new(source));
        self
    }

    pub(crate) fn panicked(message: String) -> Self {
        let mut e = Self::new(ErrorKind::Panicked, "the task panicked");
        e.inner.panic = Some(message);
        e
    }

    pub(crate) fn worker_died(status: Option<ExitStatus>) -> Self {
        let how = match status {
            Some(st) => format!("the worker running the task ended with {st}"),
            None => "the worker running the task ended".to_string(),
        };
        let mut e = Self::new(ErrorKind::WorkerDied, how);
        e.inner.status = status;
        e
    }

    pub(crate) fn wait_timeout() -> Self {
        Self::new(
            ErrorKind::Timeout,
            "timed out waiting for the result; it can be waited for again",
        )
    }

    pub(crate) fn terminated() -> Self {
        Self::new(
            ErrorKind::Terminated,
            "the pool was terminated before the task finished",
        )
    }

    pub(crate) fn cancelled() -> Self {
        Self::new(
            ErrorKind::Cancelled,
            "the task was cancelled before it started",
        )
    }

    pub(crate) fn closed() -> Self {
        Self::new(
            ErrorKind::Closed,
            "the pool is closed and takes no new work",
        )
    }

    /// Returns this error with no item index (an executor's task is not an item of a call).
    pub(crate) fn without_index(mut self) -> Self {
        self.inner.index = None;
        self
    }

    /// Returns this error for the item at `index` of a call.
    pub(crate) fn at(mut self, index: usize) -> Self {
        self.inner.index = Some(index);
        self
    }

    /// Returns what kind of error this is.
    pub fn kind(&self) -> ErrorKind {
        self.inner.kind
    }

    /// Returns the index of the failed item in the call's input (0 for `apply`), when the
    /// error is about one task.
    pub fn index(&self) -> Option<usize> {
        self.inner.index
    }

    /// Returns the panic message (with where it panicked), when the task panicked.
    pub fn panic_message(&self) -> Option<&str> {
        self.inner.panic.as_deref()
    }

    /// Returns how the worker ended, when it died running the task.
    pub fn exit_status(&self) -> Option<ExitStatus> {
        self.inner.status
    }
}

impl fmt::Debug for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{self} ({:?})", self.inner.kind)?;
        if let Some(s) = &self.inner.source {
            write!(f, ", caused by: {s}")?;
        }
        Ok(())
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.inner.message)?;
        if let Some(i) = self.inner.index {
            write!(f, " (item {i})")?;
        }
        if let Some(p) = &self.inner.panic {
            write!(f, ": {p}")?;
        }
        Ok(())
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.inner.source.as_deref().map(|e| e as _)
    }
}

impl From<Error> for std::io::Error {
    fn from(e: Error) -> Self {
        let kind = match e.kind() {
            ErrorKind::Timeout => std::io::ErrorKind::TimedOut,
            ErrorKind::InvalidInput => std::io::ErrorKind::InvalidInput,
            _ => std::io::ErrorKind::Other,
        };
        std::io::Error::new(kind, e)
    }
}

impl From<mproc_queue::Error> for Error {
    fn from(e: mproc_queue::Error) -> Self {
        Error::new(ErrorKind::Io, "a pool queue failed").with_source(e)
    }
}

impl From<mproc_shm::Error> for Error {
    fn from(e: mproc_shm::Error) -> Self {
        Error::new(ErrorKind::Io, "the pool's shared memory failed").with_source(e)
    }
}

impl From<mproc_process::Error> for Error {
    fn from(e: mproc_process::Error) -> Self {
        Error::new(ErrorKind::Start, "a worker process could not be started").with_source(e)
    }
}
