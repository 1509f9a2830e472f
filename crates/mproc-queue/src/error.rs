//! The queue crate's errors: [`PutError`] (which hands the value back), [`GetError`], and
//! [`Error`] for what went wrong underneath.

use std::fmt;

/// What went wrong, beyond a full, empty or closed queue.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ErrorKind {
    /// The value could not be serialized (its `Serialize` failed, or it holds more file
    /// descriptors than one message can carry).
    Encode,
    /// A message could not be deserialized as the queue's type; it is consumed, and the
    /// queue goes on with the next one.
    Decode,
    /// The queue's shared memory holds something no mproc process wrote (another process
    /// scribbled on it). The messages waiting at that moment are dropped.
    Corrupt,
    /// [`JoinableQueue::task_done`](crate::JoinableQueue::task_done) was called more
    /// often than items were put.
    TooManyTaskDone,
    /// A [`join_timeout`](crate::JoinableQueue::join_timeout) ran out of time.
    Timeout,
    /// Creating or mapping shared memory failed.
    Shm,
    /// The OS refused something else (sending a large message's buffer, say).
    Io,
    /// A [`PutError::Full`] turned into an `Error` by `?` (the value is dropped); or a
    /// [`JoinableQueue`](crate::JoinableQueue) already counting 2^31 − 1 unfinished items.
    Full,
    /// A [`GetError::Empty`] turned into an `Error` by `?`.
    Empty,
    /// A [`PutError::Closed`] or [`GetError::Closed`] turned into an `Error` by `?`.
    Closed,
    /// An argument out of range: a ring larger than 1 GiB, or a bound of 0 messages.
    InvalidInput,
    /// Nobody else is left: a [`PutError::Disconnected`] or [`GetError::Disconnected`]
    /// turned into an `Error` by `?`, or a [`join`](crate::JoinableQueue::join) with items
    /// unfinished and no other process holding the queue.
    Disconnected,
}

/// An error from a queue, with its [`ErrorKind`] and what was being done.
///
/// One pointer wide (the details are boxed), so that the `Result`s of `put` and `get`
/// stay small on their fast path.
pub struct Error {
    inner: Box<Inner>,
}

struct Inner {
    kind: ErrorKind,
    message: String,
    source: Option<Box<dyn std::error::Error + Send + Sync>>,
}

impl Error {
    #[cold]
    pub(crate) fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Error {
            inner: Box::new(Inner {
                kind,
                message: message.into(),
                source: None,
            }),
        }
    }

    #[cold]
    pub(crate) fn with_source(
        kind: ErrorKind,
        message: impl Into<String>,
        source: impl std::error::Error + Send + Sync + 'static,
    ) -> Self {
        Error {
            inner: Box::new(Inner {
                kind,
                message: message.into(),
                source: Some(Box::new(source)),
            }),
        }
    }

    pub(crate) fn io(message: impl Into<String>, e: std::io::Error) -> Self {
        Self::with_source(ErrorKind::Io, message, e)
    }

    /// Returns what kind of error this is.
    pub fn kind(&self) -> ErrorKind {
        self.inner.kind
    }
}

impl fmt::Debug for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Error")
            .field("kind", &self.inner.kind)
            .field("message", &self.inner.message)
            .field("source", &self.inner.source)
            .finish()
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The cause is `source()`'s to tell: a reporter walking the chain prints it once.
        f.write_str(&self.inner.message)
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.inner.source.as_deref().map(|s| s as _)
    }
}

impl From<mproc_shm::Error> for Error {
    fn from(e: mproc_shm::Error) -> Self {
        Error::with_source(ErrorKind::Shm, "shared memory for a queue", e)
    }
}

impl From<mproc_wire::Error> for Error {
    fn from(e: mproc_wire::Error) -> Self {
        let kind = match e.kind() {
            mproc_wire::ErrorKind::Encode => ErrorKind::Encode,
            mproc_wire::ErrorKind::Decode => ErrorKind::Decode,
            _ => ErrorKind::Io,
        };
        Error::with_source(kind, "a queue message", e)
    }
}

/// The result of creating a queue or of its other fallible calls.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Why a `put` did not enqueue its value. Every variant hands the value back.
pub enum PutError<T> {
    /// The queue stayed full until the deadline (at once, for `try_put`). Python:
    /// `queue.Full`.
    Full(T),
    /// The queue was [closed](crate::Queue::close). Python: `ValueError` on a closed queue.
    Closed(T),
    /// The queue stayed full, and no other live process holds it any more (nor a message
    /// in flight carries it): nobody is left to make room. See [`Queue`](crate::Queue)'s
    /// "When a process dies".
    Disconnected(T),
    /// Something else failed: the value could not be serialized, or the OS refused.
    Failed(T, Error),
}

impl<T> PutError<T> {
    /// Returns the value that was not put.
    pub fn into_inner(self) -> T {
        match self {
            PutError::Full(v)
            | PutError::Closed(v)
            | PutError::Disconnected(v)
            | PutError::Failed(v, _) => v,
        }
    }

    /// Returns whether the queue was full.
    pub fn is_full(&self) -> bool {
        matches!(self, PutError::Full(_))
    }

    /// Returns whether the queue was closed.
    pub fn is_closed(&self) -> bool {
        matches!(self, PutError::Closed(_))
    }

    /// Returns whether nobody else was left to make room.
    pub fn is_disconnected(&self) -> bool {
        matches!(self, PutError::Disconnected(_))
    }
}

impl<T> fmt::Debug for PutError<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PutError::Full(_) => f.write_str("Full(..)"),
            PutError::Closed(_) => f.write_str("Closed(..)"),
            PutError::Disconnected(_) => f.write_str("Disconnected(..)"),
            PutError::Failed(_, e) => f.debug_tuple("Failed").field(&"..").field(e).finish(),
        }
    }
}

impl<T> fmt::Display for PutError<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PutError::Full(_) => f.write_str("the queue is full"),
            PutError::Closed(_) => f.write_str("the queue is closed"),
            PutError::Disconnected(_) => {
                f.write_str("the queue is full and no other process holds it any more")
            }
            PutError::Failed(..) => f.write_str("cannot put the value"),
        }
    }
}

impl<T> std::error::Error for PutError<T> {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            PutError::Failed(_, e) => Some(e),
            _ => None,
        }
    }
}

/// Why a `get` returned no value.
#[derive(Debug)]
pub enum GetError {
    /// The queue stayed empty until the deadline (at once, for `try_get`). Python:
    /// `queue.Empty`.
    Empty,
    /// The queue is [closed](crate::Queue::close) and every message has been taken.
    Closed,
    /// The queue is empty, and no other live process holds it any more (nor a message in
    /// flight carries it): nobody is left to put. Python waits for ever there. See
    /// [`Queue`](crate::Queue)'s "When a process dies".
    Disconnected,
    /// A message could not be read: it did not deserialize as the queue's type (it is
    /// consumed; the next `get` goes on), or the queue's memory was corrupted.
    Failed(Error),
}

impl GetError {
    /// Returns whether the queue was empty.
    pub fn is_empty(&self) -> bool {
        matches!(self, GetError::Empty)
    }

    /// Returns whether the queue was closed and drained.
    pub fn is_closed(&self) -> bool {
        matches!(self, GetError::Closed)
    }

    /// Returns whether nobody else was left to put.
    pub fn is_disconnected(&self) -> bool {
        matches!(self, GetError::Disconnected)
    }
}

impl fmt::Display for GetError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            GetError::Empty => f.write_str("the queue is empty"),
            GetError::Closed => f.write_str("the queue is closed and drained"),
            GetError::Disconnected => {
                f.write_str("the queue is empty and no other process holds it any more")
            }
            GetError::Failed(_) => f.write_str("cannot get a message"),
        }
    }
}

impl std::error::Error for GetError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            GetError::Failed(e) => Some(e),
            _ => None,
        }
    }
}

impl From<Error> for GetError {
    fn from(e: Error) -> Self {
        GetError::Failed(e)
    }
}

/// For `?` in functions returning [`Error`]: the value that was not put is dropped.
///
/// ```
/// fn send(q: &mproc_queue::Queue<u8>) -> mproc_queue::Result<()> {
///     q.try_put(1)?;
///     q.try_put(2)?; // full: the error says so, the 2 is dropped
///     Ok(())
/// }
/// let q = mproc_queue::Queue::bounded(1)?;
/// assert_eq!(send(&q).unwrap_err().kind(), mproc_queue::ErrorKind::Full);
/// # Ok::<(), mproc_queue::Error>(())
/// ```
impl<T> From<PutError<T>> for Error {
    fn from(e: PutError<T>) -> Self {
        match e {
            PutError::Full(_) => Error::new(ErrorKind::Full, "the queue is full"),
            PutError::Closed(_) => Error::new(ErrorKind::Closed, "the queue is closed"),
            PutError::Disconnected(_) => Error::new(
                ErrorKind::Disconnected,
                "the queue is full and no other process holds it any more",
            ),
            PutError::Failed(_, e) => e,
        }
    }
}

/// For `?` in functions returning [`Error`].
///
/// ```
/// fn take(q: &mproc_queue::Queue<u8>) -> mproc_queue::Result<u8> {
///     Ok(q.try_get()?)
/// }
/// let q = mproc_queue::Queue::new()?;
/// assert_eq!(take(&q).unwrap_err().kind(), mproc_queue::ErrorKind::Empty);
/// # Ok::<(), mproc_queue::Error>(())
/// ```
impl From<GetError> for Error {
    fn from(e: GetError) -> Self {
        match e {
            GetError::Empty => Error::new(ErrorKind::Empty, "the queue is empty"),
            GetError::Closed => Error::new(ErrorKind::Closed, "the queue is closed and drained"),
            GetError::Disconnected => Error::new(
                ErrorKind::Disconnected,
                "the queue is empty and no other process holds it any more",
            ),
            GetError::Failed(e) => e,
        }
    }
}

impl From<Error> for std::io::Error {
    fn from(e: Error) -> Self {
        let kind = match e.kind() {
            ErrorKind::Full | ErrorKind::Empty => std::io::ErrorKind::WouldBlock,
            ErrorKind::Timeout => std::io::ErrorKind::TimedOut,
            ErrorKind::Closed | ErrorKind::Disconnected => std::io::ErrorKind::BrokenPipe,
            ErrorKind::Encode | ErrorKind::Decode | ErrorKind::Corrupt => {
                std::io::ErrorKind::InvalidData
            }
            ErrorKind::TooManyTaskDone | ErrorKind::InvalidInput => {
                std::io::ErrorKind::InvalidInput
            }
            ErrorKind::Shm | ErrorKind::Io => std::io::ErrorKind::Other,
        };
        std::io::Error::new(kind, e)
    }
}
