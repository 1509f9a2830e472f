//! Telling whether other processes are still there: a process's identity that survives pid
//! reuse, and a pipe whose read end reports when no write end is left anywhere.

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, OwnedFd};
use std::sync::atomic::{AtomicU64, Ordering};

use nix::poll::{PollFd, PollFlags, PollTimeout, poll};

use crate::Pid;

/// A process as other processes can recognise it: its pid in the low 32 bits and the low 32
/// bits of its start time (clock ticks since boot) in the high ones, so that a pid reused
/// by a later process is a different identity. Never 0.
///
/// ```
/// let me = mproc_sys::process_identity(mproc_sys::getpid())?.expect("we are alive");
/// assert_eq!(me as u32, mproc_sys::getpid());
/// assert_eq!(mproc_sys::current_identity(), me);
/// # Ok::<(), std::io::Error>(())
/// ```
///
/// # Errors
///
/// An OS error other than "no such process" while reading `/proc/<pid>/stat`. `Ok(None)`
/// when the process is gone or a zombie (it ended and waits for its parent to reap it).
pub fn process_identity(pid: Pid) -> io::Result<Option<u64>> {
    let stat = match std::fs::read(format!("/proc/{pid}/stat")) {
        Ok(s) => s,
        Err(e) if e.kind() == io::ErrorKind::NotFound || e.raw_os_error() == Some(libc::ESRCH) => {
            return Ok(None);
        }
        Err(e) => return Err(e),
    };
    // `pid (comm) state ppid ...`: the command may hold spaces and parentheses, so the
    // fields are counted from the last `)`.
    let Some(close) = stat.iter().rposition(|&b| b == b')') else {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "unreadable /proc stat",
        ));
    };
    let rest = String::from_utf8_lossy(&stat[close + 1..]);
    // Fields from `state` (field 3 of the man page): `num_threads` is field 20, `starttime`
    // field 22.
    let fields: Vec<&str> = rest.split_ascii_whitespace().collect();
    let field = |n: usize| fields.get(n - 3).copied();
    let unreadable = || io::Error::new(io::ErrorKind::InvalidData, "unreadable /proc stat");
    let state = field(3).ok_or_else(unreadable)?;
    let threads: u64 = field(20).and_then(|f| f.parse().ok()).unwrap_or(0);
    // A zombie has ended; a main thread that ended while others run reads as one too.
    if state == "X" || state == "x" || (state == "Z" && threads <= 1) {
        return Ok(None);
    }
    let start: u64 = field(22)
        .and_then(|f| f.parse().ok())
        .ok_or_else(unreadable)?;
    Ok(Some(u64::from(pid) | (start & 0xffff_ffff) << 32))
}

/// This process's [`process_identity`], cached (and taken afresh in a forked child).
///
/// ```
/// assert_eq!(mproc_sys::current_identity() as u32, mproc_sys::getpid());
/// ```
pub fn current_identity() -> u64 {
    static CACHE: AtomicU64 = AtomicU64::new(0);
    let pid = crate::getpid();
    let cached = CACHE.load(Ordering::Relaxed);
    if cached != 0 && cached as u32 == pid {
        return cached;
    }
    // A process can always read its own stat; if /proc is missing, the pid alone (start
    // 0) still names this process while it lives.
    let id = process_identity(pid)
        .ok()
        .flatten()
        .unwrap_or(u64::from(pid));
    CACHE.store(id, Ordering::Relaxed);
    id
}

/// Whether the process with identity `id` (from [`process_identity`]) is still running.
/// A zombie is not running; an unreadable `/proc` answers "running" (the cautious answer
/// for a caller about to give up on it).
///
/// ```
/// assert!(mproc_sys::is_running(mproc_sys::current_identity()));
/// ```
pub fn is_running(id: u64) -> bool {
    match process_identity(id as u32) {
        Ok(Some(now)) => now == id || id >> 32 == 0,
        Ok(None) => false,
        Err(_) => true,
    }
}

/// The inode of this process's pid namespace (low 32 bits; 0 when unknown). Pids mean the
/// same process only between processes of one namespace.
///
/// ```
/// let _ = mproc_sys::pid_namespace();
/// ```
pub fn pid_namespace() -> u32 {
    use std::os::unix::fs::MetadataExt;
    static CACHE: AtomicU64 = AtomicU64::new(u64::MAX);
    let cached = CACHE.load(Ordering::Relaxed);
    if cached != u64::MAX {
        return cached as u32;
    }
    let ino = std::fs::metadata("/proc/self/ns/pid").map_or(0, |m| m.ino() as u32);
    CACHE.store(u64::from(ino), Ordering::Relaxed);
    ino
}

/// Makes a pipe, both ends close-on-exec and non-blocking: `(read end, write end)`.
///
/// ```
/// let (r, w) = mproc_sys::pipe()?;
/// use std::os::fd::AsFd;
/// assert!(!mproc_sys::is_hung_up(r.as_fd())?);
/// drop(w);
/// assert!(mproc_sys::is_hung_up(r.as_fd())?);
/// # Ok::<(), std::io::Error>(())
/// ```
///
/// # Errors
///
/// The OS error from `pipe2`.
pub fn pipe() -> io::Result<(OwnedFd, OwnedFd)> {
    let flags = nix::fcntl::OFlag::O_CLOEXEC | nix::fcntl::OFlag::O_NONBLOCK;
    Ok(nix::unistd::pipe2(flags)?)
}

/// Opens a new write end of the pipe whose read end is `read_end` (through
/// `/proc/self/fd`, as Linux allows for pipes), close-on-exec and non-blocking. A process
/// holding only the read end can so hand out write ends that keep the pipe from hanging up.
///
/// ```
/// use std::os::fd::AsFd;
/// let (r, w) = mproc_sys::pipe()?;
/// drop(w);
/// let w2 = mproc_sys::open_pipe_writer(r.as_fd())?;
/// assert!(!mproc_sys::is_hung_up(r.as_fd())?);
/// drop(w2);
/// assert!(mproc_sys::is_hung_up(r.as_fd())?);
/// # Ok::<(), std::io::Error>(())
/// ```
///
/// # Errors
///
/// The OS error from `open` (no `/proc`, say).
pub fn open_pipe_writer(read_end: BorrowedFd<'_>) -> io::Result<OwnedFd> {
    use std::os::unix::fs::OpenOptionsExt;
    let file = std::fs::OpenOptions::new()
        .write(true)
        .custom_flags(libc::O_CLOEXEC | libc::O_NONBLOCK)
        .open(format!("/proc/self/fd/{}", read_end.as_raw_fd()))?;
    Ok(file.into())
}

/// Whether the pipe whose read end is `read_end` has no write end left open in any process
/// (nor inside a message in flight). Does not wait.
///
/// # Errors
///
/// The OS error from `poll`.
pub fn is_hung_up(read_end: BorrowedFd<'_>) -> io::Result<bool> {
    let mut fds = [PollFd::new(read_end, PollFlags::POLLIN)];
    loop {
        match poll(&mut fds, PollTimeout::ZERO) {
            Ok(_) => break,
            Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => return Err(e.into()),
        }
    }
    Ok(fds[0]
        .revents()
        .is_some_and(|r| r.contains(PollFlags::POLLHUP)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_process_that_is_gone_has_no_identity() {
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let pid = child.id();
        child.wait().unwrap();
        assert_eq!(process_identity(pid).unwrap(), None);
    }

    #[test]
    fn a_zombie_is_not_running() {
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let pid = child.id();
        // Not reaped yet: a zombie once it has ended.
        while process_identity(pid).unwrap().is_some() {
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
        assert!(
            std::fs::metadata(format!("/proc/{pid}")).is_ok(),
            "still a zombie"
        );
        child.wait().unwrap();
    }

    #[test]
    fn a_reused_pid_is_another_identity() {
        let me = current_identity();
        let older = me ^ (1 << 40);
        assert!(is_running(me));
        assert!(!is_running(older));
    }
}
