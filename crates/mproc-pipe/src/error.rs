//! The pipe crate's error type.

use std::fmt;
use std::io;

/// What went wrong, without the details.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorKind {
    /// The other end closed, was dropped, or its process died: nothing more will come.
    Disconnected,
    /// The deadline passed; nothing was lost, a later call goes on where this one stopped.
    Timeout,
    /// A message is larger than the connection's limit (refused on sending, skipped on
    /// receiving).
    TooLarge,
    /// The peer sent bytes that are not mproc frames; the connection cannot be used further.
    Corrupt,
    /// A value could not be serialized (or holds OS handles a TCP connection cannot carry).
    Encode,
    /// A message could not be deserialized into the expected type.
    Decode,
    /// `recv_bytes_into` got a message longer than the buffer: the message is in the error.
    BufferTooShort,
    /// The other side does not know the authentication key (or is not an mproc peer).
    Authentication,
    /// The operating system reported an error.
    Io,
}

/// An error of a pipe, connection, listener or client.
///
/// ```
/// let (mut a, b) = mproc_pipe::pipe::<u8>()?;
/// drop(b);
/// assert_eq!(a.recv().unwrap_err().kind(), mproc_pipe::ErrorKind::Disconnected);
/// # Ok::<(), mproc_pipe::Error>(())
/// ```
#[derive(Debug)]
pub struct Error {
    kind: ErrorKind,
    message: String,
    message_bytes: Option<Vec<u8>>,
    source: Option<Box<dyn std::error::Error + Send + Sync>>,
}

impl Error {
    pub(crate) fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Self {
            kind,
            message: message.into(),
            message_bytes: None,
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

    pub(crate) fn io(context: &str, e: io::Error) -> Self {
        Self::new(ErrorKind::Io, context).with_source(e)
    }

    pub(crate) fn buffer_too_short(message: Vec<u8>, buffer: usize) -> Self {
        let mut e = Self::new(
            ErrorKind::BufferTooShort,
            format!(
                "the message has {} bytes but the buffer only {buffer}",
                message.len()
            ),
        );
        e.message_bytes = Some(message);
        e
    }

    pub(crate) fn auth(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Authentication, message)
    }

    /// Returns what kind of error this is.
    pub fn kind(&self) -> ErrorKind {
        self.kind
    }

    /// For [`ErrorKind::BufferTooShort`]: the size the buffer needed to be.
    pub fn needed(&self) -> Option<usize> {
        self.message_bytes.as_ref().map(Vec::len)
    }

    /// For [`ErrorKind::BufferTooShort`]: takes the message that did not fit (Python puts it
    /// in the exception too), so nothing is lost.
    pub fn into_message(self) -> Option<Vec<u8>> {
        self.message_bytes
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
        self.source.as_deref().map(|e| e as _)
    }
}

impl From<mproc_wire::Error> for Error {
    fn from(e: mproc_wire::Error) -> Self {
        use mproc_wire::ErrorKind as W;
        let (kind, what) = match e.kind() {
            W::Disconnected | W::Truncated => (ErrorKind::Disconnected, "the other end is gone"),
            W::Timeout => (ErrorKind::Timeout, "timed out"),
            W::TooLarge => (ErrorKind::TooLarge, "message too large"),
            W::Corrupt => (ErrorKind::Corrupt, "corrupt stream"),
            W::Encode => (ErrorKind::Encode, "cannot serialize"),
            W::Decode => (ErrorKind::Decode, "cannot deserialize"),
            _ if e.is_disconnect() => (ErrorKind::Disconnected, "the other end is gone"),
            _ => (ErrorKind::Io, "i/o error"),
        };
        Error::new(kind, what).with_source(e)
    }
}

impl From<Error> for io::Error {
    fn from(e: Error) -> Self {
        let kind = match e.kind {
            ErrorKind::Disconnected => io::ErrorKind::BrokenPipe,
            ErrorKind::Timeout => io::ErrorKind::TimedOut,
            ErrorKind::TooLarge | ErrorKind::Encode => io::ErrorKind::InvalidInput,
            ErrorKind::Corrupt | ErrorKind::Decode => io::ErrorKind::InvalidData,
            ErrorKind::Authentication => io::ErrorKind::PermissionDenied,
            _ => io::ErrorKind::Other,
        };
        io::Error::new(kind, e)
    }
}

/// The crate's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;
