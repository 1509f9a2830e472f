//! What a `Child` and the registry share about one child process: its pidfd, its exit
//! status (collected once).

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use mproc_sys::ExitStatus;

use crate::StartMethod;
use crate::error::{Error, Result};
use crate::info::ProcessInfo;

/// How the parent learns a child's exit status.
#[derive(Debug)]
pub(crate) enum Reaper {
    /// Our own child: `waitpid`.
    Direct,
    /// A child of the fork server: it writes the status on this socket when it reaps it.
    Server(OwnedFd),
}

/// What the registry and the `Child` share about one child process.
#[derive(Debug)]
pub(crate) struct Proc {
    pub info: ProcessInfo,
    pub method: StartMethod,
    pub(super) pidfd: OwnedFd,
    reaper: Reaper,
    status: Mutex<Option<Status>>,
    /// The fork server closed the status socket without reporting.
    server_gone: AtomicBool,
    /// Not joined when this process exits (`Builder::join_at_exit(false)`, or its `Child`
    /// dropped while a panic unwound).
    pub(super) outlives: AtomicBool,
    /// The process that started it: only that one waits for it at exit (a copy of this
    /// registry in a process forked by other means is not its own).
    pub(super) by: u32,
}

/// How a child ended, as far as its parent knows.
#[derive(Clone, Copy, Debug)]
pub(super) enum Status {
    Exited(ExitStatus),
    /// The fork server died before it could report the status.
    Lost,
}

impl Proc {
    pub(crate) fn new(
        info: ProcessInfo,
        method: StartMethod,
        pidfd: OwnedFd,
        reaper: Reaper,
    ) -> Self {
        // A child made by fork closes its copy unless this handle is in its argument.
        mproc_sys::track_owned_fd(pidfd.as_fd());
        if let Reaper::Server(status) = &reaper {
            mproc_sys::track_owned_fd(status.as_fd());
        }
        Self {
            info,
            method,
            pidfd,
            reaper,
            status: Mutex::new(None),
            server_gone: AtomicBool::new(false),
            outlives: AtomicBool::new(false),
            by: std::process::id(),
        }
    }

    /// Lets the child outlive this process: it is not joined at exit.
    pub(crate) fn outlive(&self) {
        self.outlives.store(true, Ordering::Relaxed);
    }

    pub(super) fn has_exited(&self) -> bool {
        mproc_sys::wait_readable(self.pidfd.as_fd(), Some(Instant::now())).unwrap_or(true)
    }

    /// Returns the status if the child has ended, collecting (and reaping) it once.
    pub(super) fn try_status(&self) -> Option<Status> {
        let mut cached = self.status.lock().unwrap_or_else(|p| p.into_inner());
        if cached.is_some() {
            return *cached;
        }
        *cached = match &self.reaper {
            // Reaped under the status lock, through the pidfd: no other thread can see
            // ECHILD in between, and a reused pid can never be reaped by mistake.
            Reaper::Direct => match mproc_sys::wait_pidfd(self.pidfd.as_fd(), false) {
                Ok(st) => st.map(Status::Exited),
                // Someone else reaped it (a `waitpid(-1)` elsewhere, or SIGCHLD set
                // to SIG_IGN): it has ended, but its status is gone.
                Err(e) if e.raw_os_error() == Some(mproc_sys::ECHILD) => Some(Status::Lost),
                Err(_) => None,
            },
            Reaper::Server(sock) => self.read_server_status(sock),
        };
        let status = *cached;
        // Logged without the lock: a logger that asks about children must not deadlock.
        drop(cached);
        #[cfg(feature = "log")]
        if let Some(st) = &status {
            crate::diag::debug!(
                "{} (pid {}) ended: {}",
                self.info.name,
                self.info.pid,
                match st {
                    Status::Exited(e) => e.to_string(),
                    Status::Lost => "status lost (reaped elsewhere)".to_string(),
                }
            );
        }
        status
    }

    /// Reads the 8-byte status the fork server sends when it reaps the child. A closed,
    /// empty status socket means the server died first: the status is lost, and the child
    /// (perhaps still running, orphaned) is then watched through its pidfd alone.
    fn read_server_status(&self, sock: &OwnedFd) -> Option<Status> {
        if !self.server_gone.load(Ordering::Relaxed) {
            let mut buf = [0u8; 8];
            match mproc_sys::recv_with_fds(sock.as_fd(), &mut buf, &mut Vec::new(), true) {
                Ok(8) => {
                    return Some(
                        ExitStatus::from_i64(i64::from_le_bytes(buf))
                            .map_or(Status::Lost, Status::Exited),
                    );
                }
                Ok(_) => self.server_gone.store(true, Ordering::Relaxed),
                Err(_) => return None,
            }
        }
        self.has_exited().then_some(Status::Lost)
    }

    /// Returns whether nothing is left to wait for: its status is in, or it has ended and
    /// its fork server reaps it (whose report nobody needs once its `Child` is gone).
    pub(super) fn is_over(&self) -> bool {
        self.try_status().is_some()
            || (matches!(self.reaper, Reaper::Server(_)) && self.has_exited())
    }

    /// Waits for the status until `deadline`.
    ///
    /// It waits for the fd before it asks for the status: a join of a running child costs
    /// a wait and a reap, without a reap that finds nothing first.
    pub(super) fn status_until(&self, deadline: Option<Instant>) -> Result<Status> {
        if let Some(st) = self.known_status() {
            return Ok(st);
        }
        loop {
            let ready = mproc_sys::wait_readable(self.end_fd(), deadline)
                .map_err(|e| Error::io("waiting for a child", e))?;
            if let Some(st) = self.try_status() {
                return Ok(st);
            }
            if !ready {
                return Err(Error::timeout());
            }
        }
    }

    /// Returns the status if it was collected already (no syscall).
    pub(super) fn known_status(&self) -> Option<Status> {
        *self.status.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Returns the fd that becomes readable when [`try_status`](Self::try_status) may have
    /// news: the status socket while the fork server can report on it, else the pidfd. It
    /// can change between calls (when the server is found gone): waiters ask again after
    /// each wake-up. The blocking wait (`status_until`) and the async one both wait on it.
    pub(super) fn end_fd(&self) -> BorrowedFd<'_> {
        match &self.reaper {
            Reaper::Server(sock) if !self.server_gone.load(Ordering::Relaxed) => sock.as_fd(),
            _ => self.pidfd.as_fd(),
        }
    }

    pub(super) fn signal(&self, sig: i32) -> Result<()> {
        if self.try_status().is_some() {
            return Ok(()); // already ended: nothing to signal, and its pid may be reused
        }
        mproc_sys::pidfd_send_signal(self.pidfd.as_fd(), sig)
            .map_err(|e| Error::io("signalling a child", e))
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        mproc_sys::untrack_owned_fd(self.pidfd.as_fd());
        if let Reaper::Server(status) = &self.reaper {
            mproc_sys::untrack_owned_fd(status.as_fd());
        }
    }
}
