//! The wire's error type.

use std::fmt;
use std::io;

/// What went wrong on the wire, without the details.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorKind {
    /// The peer closed its end at a frame boundary: there will be no more messages.
    Disconnected,
    /// The peer closed its end in the middle of a frame.
    Truncated,
    /// The deadline passed before a whole frame arrived; a later read resumes where this
    /// one stopped.
    Timeout,
    /// A frame is larger than the [`Limits`](crate::Limits) allow (on either side).
    TooLarge,
    /// The bytes on the stream are not an mproc frame; the stream cannot be trusted further.
    Corrupt,
    /// A value could not be serialized.
    Encode,
    /// A message could not be deserialized into the requested type.
    Decode,
    /// The operating system reported an error.
    Io,
}

/// An error from encoding, decoding, sending or receiving a message.
///
/// ```
/// let err = mproc_wire::decode::<u32>(mproc_wire::Message::from_bytes(vec![])).unwrap_err();
/// assert_eq!(err.kind(), mproc_wire::ErrorKind::Decode);
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

    pub(crate) fn with_source(mut self, e: io::Error) -> Self {
        self.source = Some(e);
        self
    }

    pub(crate) fn io(context: &str, e: io::Error) -> Self {
        Self {
            kind: ErrorKind::Io,
            message: context.to_string(),
            source: Some(e),
        }
    }

    /// Returns what kind of error this is.
    pub fn kind(&self) -> ErrorKind {
        self.kind
    }

    /// Returns whether the peer closed its end with bytes of ours still unread
    /// (`ECONNRESET`). On a Unix stream socket this says that it did not read the last thing
    /// we sent to its end, so that a request can safely go to another peer.
    ///
    /// ```
    /// use std::os::fd::AsFd;
    /// let (a, b) = mproc_sys::socketpair()?;
    /// let limits = mproc_wire::Limits::default();
    /// mproc_wire::write_message(a.as_fd(), mproc_wire::encode(&1u8)?, &limits)?;
    /// drop(b); // closed unread
    /// let err = mproc_wire::FrameReader::new().read(a.as_fd(), &limits, None).unwrap_err();
    /// assert!(err.is_reset());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn is_reset(&self) -> bool {
        self.source
            .as_ref()
            .is_some_and(|e| e.kind() == io::ErrorKind::ConnectionReset)
    }

    /// Returns whether the peer is gone (disconnected, or gone in the middle of a frame).
    pub fn is_disconnect(&self) -> bool {
        matches!(self.kind, ErrorKind::Disconnected | ErrorKind::Truncated)
            || self.source.as_ref().is_some_and(|e| {
                matches!(
                    e.kind(),
                    io::ErrorKind::BrokenPipe | io::ErrorKind::ConnectionReset
                )
            })
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
            ErrorKind::Disconnected | ErrorKind::Truncated => io::ErrorKind::UnexpectedEof,
            ErrorKind::Timeout => io::ErrorKind::TimedOut,
            ErrorKind::TooLarge | ErrorKind::Encode => io::ErrorKind::InvalidInput,
            ErrorKind::Corrupt | ErrorKind::Decode => io::ErrorKind::InvalidData,
            ErrorKind::Io => match &e.source {
                Some(s) => s.kind(),
                None => io::ErrorKind::Other,
            },
        };
        io::Error::new(kind, e)
    }
}

impl From<io::Error> for Error {
    fn from(e: io::Error) -> Self {
        Error::io("i/o error", e)
    }
}
