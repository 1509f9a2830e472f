//! Processes: fork, pidfds, waiting, signals, parent death.

use std::ffi::{OsStr, OsString};
use std::io::{self, Write};
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};

use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};

/// A process id.
pub type Pid = u32;

/// SIGTERM's number.
pub const SIGTERM: i32 = libc::SIGTERM;
/// SIGKILL's number.
pub const SIGKILL: i32 = libc::SIGKILL;
/// The errno of waiting for a process that is not (or no longer) our child.
pub const ECHILD: i32 = libc::ECHILD;

/// How a process ended: Python's `exitcode` as a type.
///
/// ```
/// use mproc_sys::ExitStatus;
/// assert_eq!(ExitStatus::Code(3).python_exitcode(), 3);
/// assert_eq!(ExitStatus::Signal(9).python_exitcode(), -9);
/// assert!(ExitStatus::Code(0).success());
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ExitStatus {
    /// It exited with this code.
    Code(i32),
    /// It was killed by this signal.
    Signal(i32),
}

impl ExitStatus {
    /// Returns whether the process exited with code 0.
    pub fn success(self) -> bool {
        self == ExitStatus::Code(0)
    }

    /// Returns Python's `exitcode`: the code, or minus the signal number.
    pub fn python_exitcode(self) -> i32 {
        match self {
            ExitStatus::Code(c) => c,
            ExitStatus::Signal(s) => -s,
        }
    }

    /// Packs the status in an `i64` for the wire (the inverse of [`from_i64`](Self::from_i64)).
    pub fn to_i64(self) -> i64 {
        match self {
            ExitStatus::Code(c) => c as i64,
            ExitStatus::Signal(s) => -(s as i64) - (1 << 32),
        }
    }

    /// Unpacks [`to_i64`](Self::to_i64) output; `None` for values no status packs to.
    pub fn from_i64(v: i64) -> Option<Self> {
        if let Ok(c) = i32::try_from(v) {
            return Some(ExitStatus::Code(c));
        }
        // The sender may be another process: no arithmetic here may overflow.
        v.checked_add(1 << 32)
            .and_then(i64::checked_neg)
            .and_then(|s| i32::try_from(s).ok())
            .filter(|s| *s > 0)
            .map(ExitStatus::Signal)
    }
}

impl std::fmt::Display for ExitStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match *self {
            ExitStatus::Code(c) => write!(f, "exit code {c}"),
            ExitStatus::Signal(s) => write!(f, "signal {s} ({})", signal_name(s)),
        }
    }
}

fn signal_name(sig: i32) -> &'static str {
    nix::sys::signal::Signal::try_from(sig)
        .map(|s| s.as_str())
        .unwrap_or("unknown")
}

/// Returns this process's id.
pub fn getpid() -> Pid {
    std::process::id()
}

/// Returns the parent process's id.
pub fn getppid() -> Pid {
    nix::unistd::getppid().as_raw() as Pid
}

/// Counts this process's threads (entries of `/proc/self/task`).
///
/// ```
/// let before = mproc_sys::thread_count()?;
/// let (tx, rx) = std::sync::mpsc::channel::<()>();
/// let t = std::thread::spawn(move || rx.recv());
/// assert_eq!(mproc_sys::thread_count()?, before + 1);
/// tx.send(()).unwrap();
/// t.join().unwrap().unwrap();
/// # Ok::<(), std::io::Error>(())
/// ```
pub fn thread_count() -> io::Result<usize> {
    use std::os::unix::fs::MetadataExt;
    // procfs gives /proc/self/task a link count of 2 + the number of threads: one `stat`
    // instead of reading the directory (this runs before every fork).
    match std::fs::metadata("/proc/self/task")?.nlink() {
        n if n >= 3 => Ok(n as usize - 2),
        _ => Ok(std::fs::read_dir("/proc/self/task")?.count()),
    }
}

/// Registers fork handlers: `prepare` runs in the forking thread just before `fork`,
/// `parent` and `child` just after it, in the parent and in the child (`pthread_atfork`).
/// Used to hold a library's locks across a fork, so a child never inherits one held by a
/// thread that does not exist there.
///
/// ```
/// extern "C" fn nothing() {}
/// mproc_sys::at_fork(nothing, nothing, nothing)?;
/// # Ok::<(), std::io::Error>(())
/// ```
///
/// # Errors
///
/// The error of `pthread_atfork` (out of memory).
pub fn at_fork(
    prepare: extern "C" fn(),
    parent: extern "C" fn(),
    child: extern "C" fn(),
) -> std::io::Result<()> {
    // SAFETY: the handlers are plain functions that live for the whole program.
    let r = unsafe { libc::pthread_atfork(Some(prepare), Some(parent), Some(child)) };
    if r != 0 {
        return Err(std::io::Error::from_raw_os_error(r));
    }
    Ok(())
}

/// Registers `handler` to run when this process calls `exit` (which `main` returning and
/// `std::process::exit` do), after the handlers registered later: C's `atexit`. It does not
/// run on `_exit` ([`exit_now`]), on a signal's default action, or on `abort`.
///
/// ```
/// extern "C" fn goodbye() {}
/// mproc_sys::at_exit(goodbye)?;
/// # Ok::<(), std::io::Error>(())
/// ```
///
/// # Errors
///
/// When the C library has no room for another handler.
pub fn at_exit(handler: extern "C" fn()) -> std::io::Result<()> {
    // SAFETY: the handler is a plain function that lives for the whole program.
    if unsafe { libc::atexit(handler) } != 0 {
        return Err(std::io::Error::other("atexit: no room for another handler"));
    }
    Ok(())
}

/// A caller's promise that forking while other threads run is acceptable here.
///
/// After `fork` only the calling thread exists in the child. Any lock another thread held at
/// that moment stays held forever there, and any data it was changing stays half-changed,
/// which can deadlock the child or worse. Make a permit only when you know what every other
/// thread of the process may be doing (for example, a test harness's idle threads).
#[derive(Clone, Copy, Debug)]
pub struct ForkPermit(());

impl ForkPermit {
    /// Makes a permit.
    ///
    /// # Safety
    ///
    /// Every other thread of the process, at every moment a fork may happen with this permit,
    /// must hold no lock and be in the middle of no change to memory that the child will use.
    /// (mproc holds its own locks across the fork.)
    ///
    /// ```
    /// // SAFETY: this doctest runs no other thread of its own.
    /// let _permit = unsafe { mproc_sys::ForkPermit::other_threads_are_idle() };
    /// ```
    pub unsafe fn other_threads_are_idle() -> Self {
        ForkPermit(())
    }
}

/// Which side of a fork this is.
#[derive(Debug)]
pub enum ForkOutcome {
    /// The parent, with the child's pid.
    Parent(Pid),
    /// The child.
    Child,
}

/// Forks this process.
///
/// Refused with `io::ErrorKind::Unsupported` when other threads exist, unless `permit` is
/// given; the error message says how many threads there are.
///
/// ```
/// // The doctest binary is single-threaded, so no permit is needed.
/// match mproc_sys::fork(None)? {
///     mproc_sys::ForkOutcome::Child => mproc_sys::exit_now(7),
///     mproc_sys::ForkOutcome::Parent(pid) => {
///         let st = mproc_sys::wait_pid(pid, true)?;
///         assert_eq!(st, Some(mproc_sys::ExitStatus::Code(7)));
///     }
/// }
/// # Ok::<(), std::io::Error>(())
/// ```
pub fn fork(permit: Option<ForkPermit>) -> io::Result<ForkOutcome> {
    if permit.is_none() {
        let n = thread_count()?;
        if n > 1 {
            return Err(io::Error::new(
                io::ErrorKind::Unsupported,
                format!(
                    "refusing to fork: this process has {n} threads and fork copies only \
                     the calling one; use the spawn or forkserver start method, or opt in \
                     with a ForkPermit"
                ),
            ));
        }
    }
    // SAFETY: either the process is single-threaded (checked just above), so the child is a
    // complete copy, or the caller holds a `ForkPermit`, whose contract covers the other
    // threads. The child only runs Rust code of this process afterwards.
    match unsafe { nix::unistd::fork() }? {
        nix::unistd::ForkResult::Parent { child } => Ok(ForkOutcome::Parent(child.as_raw() as Pid)),
        nix::unistd::ForkResult::Child => Ok(ForkOutcome::Child),
    }
}

/// Flushes stdout and stderr, then ends the process at once with `code`, without running
/// destructors or `atexit` handlers (which belong to the parent in a forked child).
pub fn exit_now(code: i32) -> ! {
    let _ = io::stdout().flush();
    let _ = io::stderr().flush();
    // SAFETY: `_exit` has no preconditions; it never returns.
    unsafe { libc::_exit(code) }
}

/// Waits for the child `pid` (blocking or not) and reaps it.
///
/// Returns `None` when not blocking and the child is still running.
pub fn wait_pid(pid: Pid, block: bool) -> io::Result<Option<ExitStatus>> {
    let flags = if block {
        None
    } else {
        Some(WaitPidFlag::WNOHANG)
    };
    let pid = nix::unistd::Pid::from_raw(pid as i32);
    loop {
        return match waitpid(pid, flags) {
            Ok(WaitStatus::Exited(_, code)) => Ok(Some(ExitStatus::Code(code))),
            Ok(WaitStatus::Signaled(_, sig, _)) => Ok(Some(ExitStatus::Signal(sig as i32))),
            Ok(WaitStatus::StillAlive) => Ok(None),
            Ok(_) => continue, // stopped / continued: not an end
            Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => Err(e.into()),
        };
    }
}

/// Waits for the child behind `pidfd` (blocking or not) and reaps it, with
/// `waitid(P_PIDFD)`: unlike a wait by pid, it can never reap another child that reused the
/// pid. Returns `None` when not blocking and the child still runs.
///
/// ```
/// use std::os::fd::AsFd;
/// match mproc_sys::fork(None)? {
///     mproc_sys::ForkOutcome::Child => mproc_sys::exit_now(4),
///     mproc_sys::ForkOutcome::Parent(pid) => {
///         let fd = mproc_sys::pidfd_open(pid)?;
///         assert_eq!(mproc_sys::wait_pidfd(fd.as_fd(), true)?, Some(mproc_sys::ExitStatus::Code(4)));
///     }
/// }
/// # Ok::<(), std::io::Error>(())
/// ```
pub fn wait_pidfd(pidfd: BorrowedFd<'_>, block: bool) -> io::Result<Option<ExitStatus>> {
    let mut flags = libc::WEXITED;
    if !block {
        flags |= libc::WNOHANG;
    }
    loop {
        // SAFETY: `waitid` writes only into `info`, a zeroed `siginfo_t` we own.
        let mut info = unsafe { std::mem::zeroed::<libc::siginfo_t>() };
        // SAFETY: as above; the id is a pidfd we borrow for the call.
        let r = unsafe {
            libc::waitid(
                libc::P_PIDFD,
                pidfd.as_raw_fd() as libc::id_t,
                &mut info,
                flags,
            )
        };
        if r < 0 {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e);
        }
        // SAFETY: after a successful `waitid`, `si_pid` and `si_status` are initialised (or
        // zero when WNOHANG found nothing).
        let (pid, status) = unsafe { (info.si_pid(), info.si_status()) };
        if pid == 0 {
            return Ok(None);
        }
        return Ok(Some(match info.si_code {
            libc::CLD_EXITED => ExitStatus::Code(status),
            _ => ExitStatus::Signal(status), // CLD_KILLED or CLD_DUMPED
        }));
    }
}

/// Sends `signal` to the child `pid`, which must not have been reaped yet (so its pid
/// cannot have been reused). For a child whose pidfd could not be opened.
pub fn kill_pid(pid: Pid, signal: i32) -> io::Result<()> {
    let sig = nix::sys::signal::Signal::try_from(signal)?;
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid as i32), sig)?;
    Ok(())
}

/// Opens a pidfd for `pid`: an fd that becomes readable when the process ends, and through
/// which it can be signalled without any risk of pid reuse.
///
/// ```
/// let fd = mproc_sys::pidfd_open(std::process::id())?;
/// # drop(fd);
/// # Ok::<(), std::io::Error>(())
/// ```
pub fn pidfd_open(pid: Pid) -> io::Result<OwnedFd> {
    // SAFETY: the syscall takes a pid and flags and returns a new fd or -1.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid as libc::pid_t, 0) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: the fd is new and ours alone. (pidfds are always close-on-exec.)
    Ok(unsafe { OwnedFd::from_raw_fd(fd as RawFd) })
}

/// Sends `signal` to the process behind `pidfd`. A process that already ended (and was
/// reaped) is not an error: there is nothing left to signal.
pub fn pidfd_send_signal(pidfd: BorrowedFd<'_>, signal: i32) -> io::Result<()> {
    // SAFETY: the syscall takes an fd, a signal number, a null siginfo and flags 0.
    let r = unsafe {
        libc::syscall(
            libc::SYS_pidfd_send_signal,
            pidfd.as_raw_fd(),
            signal,
            std::ptr::null::<libc::siginfo_t>(),
            0,
        )
    };
    if r < 0 {
        let e = io::Error::last_os_error();
        if e.raw_os_error() == Some(libc::ESRCH) {
            return Ok(());
        }
        return Err(e);
    }
    Ok(())
}

/// Asks the kernel to send `signal` to this process when the thread that created it exits.
pub fn set_parent_death_signal(signal: i32) -> io::Result<()> {
    // SAFETY: PR_SET_PDEATHSIG takes a signal number; other arguments are ignored.
    if unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, signal as libc::c_ulong, 0, 0, 0) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Reads the environment variable `key`, and removes it from the environment when this
/// process has a single thread (so that programs it starts later do not inherit it).
///
/// ```
/// assert_eq!(mproc_sys::take_env_var("MPROC_SYS_DOCTEST_UNSET"), None);
/// ```
pub fn take_env_var(key: &str) -> Option<OsString> {
    let value = std::env::var_os(key)?;
    if thread_count().is_ok_and(|n| n == 1) {
        // SAFETY: only one thread exists (checked just above), so nothing can read or write
        // the environment concurrently.
        unsafe { std::env::remove_var(key) };
    }
    Some(value)
}

/// Sets (or, with `None`, removes) an environment variable, only when this process has a
/// single thread; otherwise it is an `io::ErrorKind::Unsupported` error. A freshly forked
/// child always qualifies.
///
/// ```
/// // Doctests may run beside other threads; either outcome is well defined.
/// match mproc_sys::set_env_var("MPROC_SYS_DOCTEST".as_ref(), Some("1".as_ref())) {
///     Ok(()) => assert_eq!(std::env::var("MPROC_SYS_DOCTEST").as_deref(), Ok("1")),
///     Err(e) => assert_eq!(e.kind(), std::io::ErrorKind::Unsupported),
/// }
/// ```
pub fn set_env_var(key: &OsStr, value: Option<&OsStr>) -> io::Result<()> {
    if thread_count()? != 1 {
        return Err(io::Error::new(
            io::ErrorKind::Unsupported,
            "environment can only be changed while the process has one thread",
        ));
    }
    match value {
        // SAFETY: only one thread exists (checked just above), so nothing can read or write
        // the environment concurrently.
        Some(v) => unsafe { std::env::set_var(key, v) },
        // SAFETY: as above.
        None => unsafe { std::env::remove_var(key) },
    }
    Ok(())
}

/// Points this process's standard input at `/dev/null` (as Python's multiprocessing does
/// in every child), so that a child never competes with its parent for the terminal.
///
/// ```
/// use std::io::Read;
/// match mproc_sys::fork(None)? {
///     mproc_sys::ForkOutcome::Child => {
///         mproc_sys::stdin_from_null().unwrap();
///         let mut buf = [0u8; 8];
///         let eof = std::io::stdin().read(&mut buf).unwrap() == 0;
///         mproc_sys::exit_now(if eof { 0 } else { 1 })
///     }
///     mproc_sys::ForkOutcome::Parent(pid) => {
///         assert_eq!(mproc_sys::wait_pid(pid, true)?, Some(mproc_sys::ExitStatus::Code(0)));
///     }
/// }
/// # Ok::<(), std::io::Error>(())
/// ```
pub fn stdin_from_null() -> io::Result<()> {
    let null = std::fs::File::open("/dev/null")?;
    if null.as_raw_fd() == 0 {
        // Standard input was closed, and /dev/null took its number: keep it there.
        crate::set_cloexec(std::os::fd::AsFd::as_fd(&null), false)?;
        std::mem::forget(null);
        return Ok(());
    }
    // SAFETY: fd 0 is open (the lowest free number went to `null`), and it is the standard
    // input: mproc's own fds never take a number below 3, and fd 0 belongs to the standard
    // library's stdin handle, which keeps using it and now reads `/dev/null`. `dup2`
    // replaces it atomically.
    if unsafe { libc::dup2(null.as_raw_fd(), 0) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Restricts the calling thread (and the processes it starts afterwards) to the CPUs in
/// `cpus`; an empty list allows every CPU again. For benchmarks that must place processes
/// the same way on both sides of a comparison.
///
/// ```
/// mproc_sys::set_cpu_affinity(&[0])?;
/// mproc_sys::set_cpu_affinity(&[])?;
/// # Ok::<(), std::io::Error>(())
/// ```
pub fn set_cpu_affinity(cpus: &[usize]) -> io::Result<()> {
    let mut set = nix::sched::CpuSet::new();
    let all: Vec<usize> = if cpus.is_empty() {
        (0..nix::sched::CpuSet::count()).collect()
    } else {
        cpus.to_vec()
    };
    for cpu in all {
        // CPUs past the set's size are not there to allow; others must be valid.
        let _ = set.set(cpu);
    }
    nix::sched::sched_setaffinity(nix::unistd::Pid::from_raw(0), &set)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_status_packs_round_trip() {
        for st in [
            ExitStatus::Code(0),
            ExitStatus::Code(-1),
            ExitStatus::Code(255),
            ExitStatus::Code(i32::MIN),
            ExitStatus::Code(i32::MAX),
            ExitStatus::Signal(9),
            ExitStatus::Signal(15),
        ] {
            assert_eq!(ExitStatus::from_i64(st.to_i64()), Some(st), "{st:?}");
        }
        for v in [i64::MIN, i64::MAX, i64::MAX - (1 << 32) + 1, -(1 << 32)] {
            assert_eq!(ExitStatus::from_i64(v), None, "{v}");
        }
        assert_eq!(ExitStatus::Signal(9).to_string(), "signal 9 (SIGKILL)");
    }
}
