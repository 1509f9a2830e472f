//! The error of starting mproc-mpi ([`init`](crate::init)).

use std::fmt;

/// What went wrong, without the details.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorKind {
    /// MPI could not be initialised as needed (already initialised, or without
    /// `MPI_THREAD_FUNNELED`), or mproc's fork server could not start first.
    Init,
    /// A worker rank runs a different build of the program: [`Error::rank`] and
    /// [`Error::host`] say which. Every rank has ended its part.
    BuildMismatch,
    /// A worker rank broke the protocol (a message that is not one, or none in time).
    Protocol,
}

/// An error of [`init`](crate::init).
///
/// ```no_run
/// // no_run: a mismatch needs mpiexec and two builds.
/// mproc_process::init();
/// match mproc_mpi::init() {
///     Err(e) if e.kind() == mproc_mpi::ErrorKind::BuildMismatch => {
///         eprintln!("rank {:?} on {:?} runs another build", e.rank(), e.host());
///     }
///     other => drop(other),
/// }
/// ```
#[derive(Clone)]
pub struct Error {
    kind: ErrorKind,
    message: String,
    rank: Option<i32>,
    host: Option<String>,
}

impl Error {
    pub(crate) fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Error {
            kind,
            message: message.into(),
            rank: None,
            host: None,
        }
    }

    pub(crate) fn mismatch(rank: i32, host: String) -> Self {
        Error {
            kind: ErrorKind::BuildMismatch,
            message: format!(
                "rank {rank} on host {host} runs a different build of this program; start \
                 the same executable on every rank"
            ),
            rank: Some(rank),
            host: Some(host),
        }
    }

    /// Returns what kind of error this is.
    pub fn kind(&self) -> ErrorKind {
        self.kind
    }

    /// Returns the rank the error is about, if one.
    pub fn rank(&self) -> Option<i32> {
        self.rank
    }

    /// Returns the host of that rank, if known.
    pub fn host(&self) -> Option<&str> {
        self.host.as_deref()
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl fmt::Debug for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({:?})", self.message, self.kind)
    }
}

impl std::error::Error for Error {}
