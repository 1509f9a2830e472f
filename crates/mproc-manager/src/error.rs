//! The manager crate's error type.

use std::fmt;

use crate::protocol::Fault;

/// What went wrong, without the details.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorKind {
    /// The manager's server is gone (shut down, killed, or unreachable): nothing more will
    /// be answered.
    Disconnected,
    /// The deadline passed. For a blocking operation (a queue's `get`, a lock's
    /// `acquire`) nothing happened; for a call the server did not answer in time, the call
    /// may or may not have taken effect.
    Timeout,
    /// The server or the client does not know the authentication key.
    Authentication,
    /// A request or a reply is larger than the connection's frame limit.
    TooLarge,
    /// A value could not be serialized.
    Encode,
    /// Stored bytes could not be deserialized into the proxy's type (a namespace field read
    /// as another type, say), or the server's reply was not understood.
    Decode,
    /// The server has no such object (a proxy from another run of the server), or no object
    /// is published under that name.
    NoSuchObject,
    /// The object exists but is of another kind or type than the proxy asked for.
    WrongType,
    /// An index past the end of a list or array (Python's `IndexError`).
    IndexOutOfRange,
    /// A dict key or namespace field that is not there (Python's `KeyError`, `AttributeError`).
    KeyNotFound,
    /// A list item that is not there (`remove` and `index`; Python's `ValueError`).
    ValueNotFound,
    /// A queue is empty (Python's `queue.Empty`).
    Empty,
    /// A bounded queue is full (Python's `queue.Full`).
    Full,
    /// A lock, `RLock` or condition released, waited on or notified by a caller that does not
    /// hold it, or a semaphore released above its bound, or a `task_done` too many.
    NotOwner,
    /// A barrier was broken (aborted, reset, or a party timed out or died).
    BrokenBarrier,
    /// A custom type that the server was not started with.
    NotRegistered,
    /// An argument that cannot be used (0 parties, an address that does not parse).
    InvalidInput,
    /// A call that does not fit the manager's state (`shutdown` from a process that only
    /// connected).
    InvalidState,
    /// The server is at its connection limit.
    Busy,
    /// A registered type's handler panicked; the object is as the handler left it.
    Handler,
    /// The server process could not be started, or did not come up.
    Start,
    /// The operating system reported an error.
    Io,
}

/// An error of a manager or one of its proxies.
///
/// ```
/// # mproc_process::init();
/// let manager = mproc_manager::Manager::start()?;
/// let list = manager.list::<u32>()?;
/// let err = list.get(3).unwrap_err();
/// assert_eq!(err.kind(), mproc_manager::ErrorKind::IndexOutOfRange);
/// # Ok::<(), mproc_manager::Error>(())
/// ```
#[derive(Debug)]
pub struct Error {
    kind: ErrorKind,
    message: String,
    source: Option<Box<dyn std::error::Error + Send + Sync>>,
}

/// The crate's `Result`.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub(crate) fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Self {
            kind,
            message: message.into(),
            source: None,
        }
    }

    pub(crate) fn with_source(
        mut self,
        source: impl Into<Box<dyn std::error::Error + Send + Sync>>,
    ) -> Self {
        self.source = Some(source.into());
        self
    }

    /// What went wrong.
    pub fn kind(&self) -> ErrorKind {
        self.kind
    }

    /// An error of the pipe layer under a call, with what we were doing.
    pub(crate) fn pipe(doing: &str, e: mproc_pipe::Error) -> Self {
        use mproc_pipe::ErrorKind as P;
        let kind = match e.kind() {
            P::Disconnected => ErrorKind::Disconnected,
            P::Timeout => ErrorKind::Timeout,
            P::TooLarge => ErrorKind::TooLarge,
            P::Encode => ErrorKind::Encode,
            P::Decode | P::Corrupt => ErrorKind::Decode,
            P::Authentication => ErrorKind::Authentication,
            _ => ErrorKind::Io,
        };
        Self::new(kind, doing.to_string()).with_source(e)
    }

    pub(crate) fn from_fault(fault: Fault, message: String) -> Self {
        let kind = match fault {
            Fault::NoSuchObject => ErrorKind::NoSuchObject,
            Fault::WrongType => ErrorKind::WrongType,
            Fault::IndexOutOfRange => ErrorKind::IndexOutOfRange,
            Fault::KeyNotFound => ErrorKind::KeyNotFound,
            Fault::ValueNotFound => ErrorKind::ValueNotFound,
            Fault::Empty => ErrorKind::Empty,
            Fault::Full => ErrorKind::Full,
            Fault::Timeout => ErrorKind::Timeout,
            Fault::NotOwner => ErrorKind::NotOwner,
            Fault::BrokenBarrier => ErrorKind::BrokenBarrier,
            Fault::NotRegistered => ErrorKind::NotRegistered,
            Fault::InvalidInput => ErrorKind::InvalidInput,
            Fault::Busy => ErrorKind::Busy,
            Fault::Handler => ErrorKind::Handler,
            Fault::TooLarge => ErrorKind::TooLarge,
        };
        Self::new(kind, message)
    }

    pub(crate) fn encode(e: impl std::error::Error + Send + Sync + 'static) -> Self {
        Self::new(ErrorKind::Encode, "serializing a value for the manager").with_source(e)
    }

    pub(crate) fn decode(e: impl std::error::Error + Send + Sync + 'static) -> Self {
        Self::new(ErrorKind::Decode, "deserializing a value from the manager").with_source(e)
    }

    pub(crate) fn unexpected() -> Self {
        Self::new(
            ErrorKind::Decode,
            "the manager answered with an unexpected reply",
        )
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.source
            .as_deref()
            .map(|e| e as &(dyn std::error::Error + 'static))
    }
}

impl From<Error> for std::io::Error {
    fn from(e: Error) -> Self {
        let kind = match e.kind {
            ErrorKind::Disconnected => std::io::ErrorKind::BrokenPipe,
            ErrorKind::Timeout => std::io::ErrorKind::TimedOut,
            ErrorKind::InvalidInput => std::io::ErrorKind::InvalidInput,
            _ => std::io::ErrorKind::Other,
        };
        std::io::Error::new(kind, e)
    }
}
