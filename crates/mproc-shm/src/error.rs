//! The shared-memory crate's error type.

use std::fmt;
use std::io;

/// What went wrong, without the details.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorKind {
    /// No segment has that name (Python: `FileNotFoundError`).
    NotFound,
    /// A segment with that name exists already (Python: `FileExistsError`).
    AlreadyExists,
    /// `/dev/shm` (or memory) has no room for the segment; nothing was left behind.
    NoSpace,
    /// A bad argument: a zero size, a bad name, an offset or index out of range.
    InvalidInput,
    /// A `ShareableList` item does not fit the space its slot was created with.
    ExceedsStorage,
    /// Memory or a handle from another process does not hold what it should (garbage, a
    /// torn write, a handle whose sizes do not match its segment).
    Corrupt,
    /// The operating system reported an error.
    Io,
}

/// An error of a shared-memory operation.
///
/// ```
/// let e = mproc_shm::SharedMemory::open("mproc-no-such-segment").unwrap_err();
/// assert_eq!(e.kind(), mproc_shm::ErrorKind::NotFound);
/// ```
#[derive(Debug)]
pub struct Error {
    kind: ErrorKind,
    message: String,
    source: Option<io::Error>,
}

impl Error {
    pub(crate) fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Self {
            kind,
            message: message.into(),
            source: None,
        }
    }

    /// Classifies an OS error: names that exist or do not, no space, bad input.
    pub(crate) fn io(context: impl Into<String>, e: io::Error) -> Self {
        let kind = match e.kind() {
            io::ErrorKind::NotFound => ErrorKind::NotFound,
            io::ErrorKind::AlreadyExists => ErrorKind::AlreadyExists,
            io::ErrorKind::StorageFull | io::ErrorKind::OutOfMemory => ErrorKind::NoSpace,
            io::ErrorKind::InvalidInput => ErrorKind::InvalidInput,
            _ => ErrorKind::Io,
        };
        Self {
            kind,
            message: context.into(),
            source: Some(e),
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

impl From<Error> for io::Error {
    fn from(e: Error) -> Self {
        let kind = match e.kind {
            ErrorKind::NotFound => io::ErrorKind::NotFound,
            ErrorKind::AlreadyExists => io::ErrorKind::AlreadyExists,
            ErrorKind::NoSpace => io::ErrorKind::StorageFull,
            ErrorKind::InvalidInput | ErrorKind::ExceedsStorage => io::ErrorKind::InvalidInput,
            ErrorKind::Corrupt => io::ErrorKind::InvalidData,
            ErrorKind::Io => io::ErrorKind::Other,
        };
        io::Error::new(kind, e)
    }
}

/// The result type of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;
