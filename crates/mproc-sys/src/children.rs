//! Child processes: waiting for one to end (by pid or by pidfd), how it ended, and sending
//! it signals.

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};

use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};

use crate::Pid;

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
