//! The process crate's error type.

use std::fmt;
use std::io;

use mproc_sys::ExitStatus;

/// What went wrong, without the details.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorKind {
    /// `mproc::init()` was never called in this program.
    NotInitialized,
    /// The fork start method was refused because other threads exist.
    ForkRefused,
    /// The child's function panicked.
    Panicked,
    /// The child ended (exit code or signal) without returning a result.
    Died,
    /// A deadline passed; the child is still there and can be joined again.
    Timeout,
    /// The result was already taken by an earlier join.
    AlreadyJoined,
    /// The child runs a different build of the executable.
    BuildMismatch,
    /// The argument or the result could not be serialized.
    Encode,
    /// The argument or the result could not be deserialized.
    Decode,
    /// The fork server failed or died while starting this child.
    ForkServer,
    /// The child ended but its exit status is unknown: the fork server that started it
    /// died, or something else reaped it (a `waitpid(-1)`, or SIGCHLD set to SIG_IGN).
    StatusLost,
    /// The operating system reported an error.
    Io,
}

/// An error from starting, running or joining a child process.
///
/// ```no_run
/// fn boom(_: ()) { panic!("boom") }
/// mproc_process::init();
/// let err = mproc_process::spawn(boom, ())?.join().unwrap_err();
/// assert_eq!(err.kind(), mproc_process::ErrorKind::Panicked);
/// assert!(err.panic_message().unwrap().contains("boom"));
/// # Ok::<(), mproc_process::Error>(())
/// ```
#[derive(Debug)]
pub struct Error {
    kind: ErrorKind,
    message: String,
    status: Option<ExitStatus>,
    panic: Option<String>,
    source: Option<Box<dyn std::error::Error + Send + Sync>>,
}

impl Error {
    pub(crate) fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Self {
            kind,
            message: message.into(),
            status: None,
            panic: None,
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

    pub(crate) fn timeout() -> Self {
        Self::new(
            ErrorKind::Timeout,
            "timed out waiting for the child; it can be joined again",
        )
    }

    pub(crate) fn panicked(message: String, status: Option<ExitStatus>) -> Self {
        let mut e = Self::new(ErrorKind::Panicked, format!("child panicked: {message}"));
        e.panic = Some(message);
        e.status = status;
        e
    }

    pub(crate) fn died(status: ExitStatus) -> Self {
        let mut e = Self::new(
            ErrorKind::Died,
            format!("child ended with {status} before returning a result"),
        );
        e.status = Some(status);
        e
    }

    pub(crate) fn set_status(&mut self, status: ExitStatus) {
        self.status = Some(status);
    }

    /// Returns what kind of error this is.
    pub fn kind(&self) -> ErrorKind {
        self.kind
    }

    /// Returns the child's exit status, when the error is about a child that ended.
    pub fn exit_status(&self) -> Option<ExitStatus> {
        self.status
    }

    /// Returns the panic message, when the child's function panicked.
    pub fn panic_message(&self) -> Option<&str> {
        self.panic.as_deref()
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

impl From<Error> for io::Error {
    fn from(e: Error) -> Self {
        let kind = match e.kind {
            ErrorKind::Timeout => io::ErrorKind::TimedOut,
            ErrorKind::ForkRefused => io::ErrorKind::Unsupported,
            ErrorKind::Encode => io::ErrorKind::InvalidInput,
            ErrorKind::Decode | ErrorKind::BuildMismatch => io::ErrorKind::InvalidData,
            _ => io::ErrorKind::Other,
        };
        io::Error::new(kind, e)
    }
}

impl From<mproc_wire::Error> for Error {
    fn from(e: mproc_wire::Error) -> Self {
        let kind = match e.kind() {
            mproc_wire::ErrorKind::Encode => ErrorKind::Encode,
            mproc_wire::ErrorKind::Decode => ErrorKind::Decode,
            mproc_wire::ErrorKind::Timeout => ErrorKind::Timeout,
            _ => ErrorKind::Io,
        };
        Self::new(kind, "message to or from a child failed").with_source(e)
    }
}

/// The crate's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;
