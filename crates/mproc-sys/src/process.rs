//! This process's own state: its ids and thread count, its environment and standard input,
//! its CPU affinity, parent-death signal and exit handlers.

use std::ffi::{OsStr, OsString};
use std::io;
use std::os::fd::AsRawFd;

/// A process id.
pub type Pid = u32;

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

/// Registers `handler` to run when this process calls `exit` (which `main` returning and
/// `std::process::exit` do), after the handlers registered later: C's `atexit`. It does not
/// run on `_exit` ([`exit_now`](crate::exit_now)), on a signal's default action, or on `abort`.
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
