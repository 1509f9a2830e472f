//! [`StartMethod`]: how a child starts, with the process-wide default.

use std::str::FromStr;
use std::sync::atomic::{AtomicU8, Ordering};

/// How a child process is started.
///
/// ```
/// use mproc_process::StartMethod;
/// assert_eq!("forkserver".parse::<StartMethod>(), Ok(StartMethod::ForkServer));
/// assert_eq!(StartMethod::Spawn.as_str(), "spawn");
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum StartMethod {
    /// Run this executable again (`/proc/self/exe`); `init()` in `main` serves the request.
    /// The slowest start, the cleanest child: nothing of the parent's memory, no fd but its
    /// own socket.
    Spawn,
    /// Ask a fork server (started once by `Spawn`, single-threaded) to fork the child. The
    /// default on Linux: fork's speed, spawn's safety.
    ForkServer,
    /// Fork this process. The fastest; refused when other threads exist unless
    /// [`Builder::fork_permit`](crate::Builder::fork_permit) is given.
    ///
    /// The child gets a copy of the parent's memory and of every fd, but before the
    /// function runs it closes its copies of the mproc handles that are not in its
    /// argument (pipe ends, queue sockets, other children's handles; each is pointed at
    /// `/dev/null`), so the parent dropping its end of a pipe ends the child's stream as
    /// under the other methods. Python's forked child keeps them all, and a reader waiting
    /// for the end of the stream waits for ever. Other fds are left as fork leaves them.
    Fork,
}

impl StartMethod {
    /// Returns Python's name of the method.
    pub fn as_str(self) -> &'static str {
        match self {
            StartMethod::Spawn => "spawn",
            StartMethod::ForkServer => "forkserver",
            StartMethod::Fork => "fork",
        }
    }

    /// Returns every method this platform offers, the default first: Python's
    /// `get_all_start_methods()`.
    pub fn all() -> [StartMethod; 3] {
        [
            StartMethod::ForkServer,
            StartMethod::Spawn,
            StartMethod::Fork,
        ]
    }
}

impl std::fmt::Display for StartMethod {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The error of parsing an unknown start method name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UnknownStartMethod(pub String);

impl std::fmt::Display for UnknownStartMethod {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "unknown start method {:?}; use spawn, forkserver or fork",
            self.0
        )
    }
}

impl std::error::Error for UnknownStartMethod {}

impl FromStr for StartMethod {
    type Err = UnknownStartMethod;
    fn from_str(s: &str) -> std::result::Result<Self, Self::Err> {
        match s {
            "spawn" => Ok(StartMethod::Spawn),
            "forkserver" => Ok(StartMethod::ForkServer),
            "fork" => Ok(StartMethod::Fork),
            other => Err(UnknownStartMethod(other.to_string())),
        }
    }
}

static DEFAULT_METHOD: AtomicU8 = AtomicU8::new(0);

fn method_code(m: StartMethod) -> u8 {
    match m {
        StartMethod::Spawn => 1,
        StartMethod::ForkServer => 2,
        StartMethod::Fork => 3,
    }
}

/// Sets the start method of children whose builder names none: Python's
/// `set_start_method(method, force=True)`.
///
/// ```
/// mproc_process::set_start_method(mproc_process::StartMethod::Spawn);
/// assert_eq!(mproc_process::get_start_method(), mproc_process::StartMethod::Spawn);
/// ```
pub fn set_start_method(method: StartMethod) {
    DEFAULT_METHOD.store(method_code(method), Ordering::Relaxed);
}

/// Returns the start method of children whose builder names none: the one given to
/// [`set_start_method`], else `MPROC_START_METHOD` from the environment, else `ForkServer`.
///
/// ```
/// let m = mproc_process::get_start_method();
/// assert!(mproc_process::StartMethod::all().contains(&m));
/// ```
pub fn get_start_method() -> StartMethod {
    match DEFAULT_METHOD.load(Ordering::Relaxed) {
        1 => StartMethod::Spawn,
        2 => StartMethod::ForkServer,
        3 => StartMethod::Fork,
        _ => {
            let m = std::env::var("MPROC_START_METHOD")
                .ok()
                .and_then(|s| s.parse().ok())
                .unwrap_or(StartMethod::ForkServer);
            DEFAULT_METHOD.store(method_code(m), Ordering::Relaxed);
            m
        }
    }
}

/// Why this process refuses to fork, once [`refuse_fork`] was called.
static FORK_REFUSAL: std::sync::OnceLock<String> = std::sync::OnceLock::new();

/// Refuses the fork start method in this process from now on, for `reason`: every fork
/// of this process (a child with [`StartMethod::Fork`], a [`ForkServer`](crate::ForkServer)
/// started) fails with [`ErrorKind::ForkRefused`](crate::ErrorKind::ForkRefused) naming
/// the reason, even with a [`ForkPermit`](crate::ForkPermit). The spawn and forkserver
/// methods, and fork servers started earlier, go on working. It cannot be undone; a
/// second call keeps the first reason.
///
/// mproc-mpi calls it once MPI is initialised: an MPI library does not survive `fork()`
/// (registered memory, progress threads).
///
/// ```
/// use mproc_process::{Builder, ErrorKind, StartMethod};
/// fn nothing(_: ()) {}
/// mproc_process::init();
/// mproc_process::refuse_fork("MPI is initialised in this process");
/// let err = Builder::new().start_method(StartMethod::Fork).spawn(nothing, ()).unwrap_err();
/// assert_eq!(err.kind(), ErrorKind::ForkRefused);
/// assert!(err.to_string().contains("MPI is initialised"));
/// ```
pub fn refuse_fork(reason: impl Into<String>) {
    let _ = FORK_REFUSAL.set(reason.into());
}

/// Returns why this process refuses to fork, if [`refuse_fork`] was called.
pub(crate) fn fork_refusal() -> Option<&'static str> {
    FORK_REFUSAL.get().map(String::as_str)
}
