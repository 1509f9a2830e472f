//! Who this process is: `current_process()`, `parent_process()`, the names of its children.

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU32, Ordering};

use serde::{Deserialize, Serialize};

/// A process as Python's `multiprocessing` names it: pid, name and daemon flag.
///
/// ```
/// let me = mproc_process::current_process();
/// assert_eq!(me.pid(), std::process::id());
/// assert_eq!(me.name(), "MainProcess");
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProcessInfo {
    pub(crate) pid: u32,
    pub(crate) name: String,
    pub(crate) daemon: bool,
    /// Python's `_identity`: the child index at each generation (`Process-2:1` is `[2, 1]`).
    pub(crate) identity: Vec<u32>,
}

impl ProcessInfo {
    pub(crate) fn new(pid: u32, name: String, daemon: bool) -> Self {
        Self {
            pid,
            name,
            daemon,
            identity: Vec::new(),
        }
    }

    /// Returns the process id.
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// Returns the name: `MainProcess`, the name given to the builder, or `Process-N:M`.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Returns whether the process is daemonic (dies with its parent).
    pub fn is_daemon(&self) -> bool {
        self.daemon
    }
}

pub(crate) struct Current {
    me: ProcessInfo,
    parent: Option<ProcessInfo>,
    /// The parent, watched from this process's start: a pidfd opened later could name
    /// another process that reused the pid of a parent long gone.
    parent_pidfd: Option<OwnedFd>,
}

static CURRENT: Mutex<Option<Current>> = Mutex::new(None);
static CHILD_COUNTER: AtomicU32 = AtomicU32::new(0);

fn main_process() -> ProcessInfo {
    ProcessInfo {
        pid: std::process::id(),
        name: "MainProcess".into(),
        daemon: false,
        identity: Vec::new(),
    }
}

/// Records who this process is: a child, once it knows from its parent's request.
pub(crate) fn set_current(me: ProcessInfo, parent: Option<ProcessInfo>) {
    *lock_current() = Some(child_current(me, parent));
}

/// The lock behind `current_process()` (held across a fork).
pub(crate) type CurrentGuard = std::sync::MutexGuard<'static, Option<Current>>;

pub(crate) fn lock_current() -> CurrentGuard {
    CURRENT.lock().unwrap_or_else(|p| p.into_inner())
}

/// Who a child is, with its own pid; starts its numbering of children afresh.
pub(crate) fn child_current(me: ProcessInfo, parent: Option<ProcessInfo>) -> Current {
    CHILD_COUNTER.store(0, Ordering::Relaxed);
    let parent_pidfd = parent
        .as_ref()
        .and_then(|p| mproc_sys::pidfd_open(p.pid).ok());
    Current {
        me: ProcessInfo {
            pid: std::process::id(),
            ..me
        },
        parent,
        parent_pidfd,
    }
}

/// Returns this process: Python's `multiprocessing.current_process()`.
///
/// ```
/// assert_eq!(mproc_process::current_process().name(), "MainProcess");
/// ```
pub fn current_process() -> ProcessInfo {
    let guard = CURRENT.lock().unwrap_or_else(|p| p.into_inner());
    match &*guard {
        // A forked child's copy may be stale until `set_current` runs; the pid tells.
        Some(c) if c.me.pid == std::process::id() => c.me.clone(),
        Some(_) | None => main_process(),
    }
}

/// The process that started this one, as seen from the child.
#[derive(Debug)]
pub struct ParentProcess {
    info: ProcessInfo,
    pidfd: Option<OwnedFd>,
}

impl ParentProcess {
    /// Returns the parent's pid.
    pub fn pid(&self) -> u32 {
        self.info.pid
    }

    /// Returns the parent's name.
    pub fn name(&self) -> &str {
        &self.info.name
    }

    /// Returns whether the parent is still running.
    pub fn is_alive(&self) -> bool {
        !self.join_timeout(std::time::Duration::ZERO)
    }

    /// Waits until the parent ends (Python's `parent_process().join()`).
    ///
    /// A child that does this must be started with
    /// [`Builder::join_at_exit(false)`](crate::Builder::join_at_exit) (or be daemonic):
    /// otherwise the parent's exit waits for the child while the child waits for the
    /// parent's exit.
    pub fn join(&self) {
        if let Some(fd) = &self.pidfd {
            let _ = mproc_sys::wait_readable(fd.as_fd(), None);
        }
    }

    /// Waits at most `timeout` for the parent to end; returns whether it has.
    ///
    /// ```
    /// use std::time::Duration;
    /// fn parent_outlives_me(_: ()) -> bool {
    ///     let parent = mproc_process::parent_process().expect("a child has a parent");
    ///     !parent.join_timeout(Duration::from_millis(10))
    /// }
    /// # mproc_process::init();
    /// let mut child = mproc_process::spawn(parent_outlives_me, ())?;
    /// assert!(child.join()?);
    /// # Ok::<(), mproc_process::Error>(())
    /// ```
    pub fn join_timeout(&self, timeout: std::time::Duration) -> bool {
        match &self.pidfd {
            Some(fd) => {
                let deadline = mproc_sys::deadline_after(timeout);
                mproc_sys::wait_readable(fd.as_fd(), deadline).unwrap_or(true)
            }
            None => true, // gone before we could watch it
        }
    }

    /// The parent's sentinel (Python's `sentinel`): a descriptor that becomes readable when
    /// the parent ends, for [`wait_sentinels`](crate::wait_sentinels) beside children's. `None` when
    /// the parent had already ended when this was made.
    pub fn sentinel(&self) -> Option<BorrowedFd<'_>> {
        self.pidfd.as_ref().map(AsFd::as_fd)
    }
}

/// Returns the parent of this process when mproc started it: Python's
/// `multiprocessing.parent_process()` (`None` in the main process).
///
/// ```
/// assert!(mproc_process::parent_process().is_none());
/// ```
pub fn parent_process() -> Option<ParentProcess> {
    let guard = CURRENT.lock().unwrap_or_else(|p| p.into_inner());
    match &*guard {
        Some(c) if c.me.pid == std::process::id() => Some(ParentProcess {
            info: c.parent.clone()?,
            pidfd: c.parent_pidfd.as_ref().and_then(|fd| fd.try_clone().ok()),
        }),
        _ => None,
    }
}

/// Describes the next child of this process: its name and identity.
pub(crate) fn next_child(name: Option<String>, daemon: bool) -> ProcessInfo {
    let n = CHILD_COUNTER.fetch_add(1, Ordering::Relaxed) + 1;
    let mut identity = current_process().identity;
    identity.push(n);
    let default = || {
        let path: Vec<String> = identity.iter().map(u32::to_string).collect();
        format!("Process-{}", path.join(":"))
    };
    ProcessInfo {
        pid: 0,
        name: name.unwrap_or_else(default),
        daemon,
        identity,
    }
}
