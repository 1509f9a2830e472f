//! `Child<R>`: a running child process and its typed result; the registry of children.

use std::marker::PhantomData;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use mproc_sys::ExitStatus;
use mproc_wire::{FrameReader, Message};
use serde::de::DeserializeOwned;

use crate::StartMethod;
use crate::error::{Error, ErrorKind, Result};
use crate::info::ProcessInfo;
use crate::protocol::{self, Reply};

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
    pidfd: OwnedFd,
    reaper: Reaper,
    status: Mutex<Option<Status>>,
    /// The fork server closed the status socket without reporting.
    server_gone: AtomicBool,
    /// Not joined when this process exits (`Builder::join_at_exit(false)`, or its `Child`
    /// dropped while a panic unwound).
    outlives: AtomicBool,
    /// The process that started it: only that one waits for it at exit (a copy of this
    /// registry in a process forked by other means is not its own).
    by: u32,
}

#[derive(Clone, Copy, Debug)]
enum Status {
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

    fn has_exited(&self) -> bool {
        mproc_sys::wait_readable(self.pidfd.as_fd(), Some(Instant::now())).unwrap_or(true)
    }

    /// Returns the status if the child has ended, collecting (and reaping) it once.
    fn try_status(&self) -> Option<Status> {
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

    /// Waits for the status until `deadline`.
    fn status_until(&self, deadline: Option<Instant>) -> Result<Status> {
        loop {
            if let Some(st) = self.try_status() {
                return Ok(st);
            }
            let fd = match &self.reaper {
                Reaper::Server(sock) if !self.server_gone.load(Ordering::Relaxed) => sock.as_fd(),
                _ => self.pidfd.as_fd(),
            };
            if !mproc_sys::wait_readable(fd, deadline)
                .map_err(|e| Error::io("waiting for a child", e))?
            {
                return Err(Error::timeout());
            }
        }
    }

    fn signal(&self, sig: i32) -> Result<()> {
        if self.try_status().is_some() {
            return Ok(()); // already ended: nothing to signal, and its pid may be reused
        }
        mproc_sys::pidfd_send_signal(self.pidfd.as_fd(), sig)
            .map_err(|e| Error::io("signalling a child", e))
    }
}

/// Every child this process started and has not yet forgotten: Python's `_children`.
static REGISTRY: Mutex<Vec<(Arc<Proc>, bool)>> = Mutex::new(Vec::new());

/// Locks the registry (held across a fork, so that the child's copy is consistent).
pub(crate) fn lock_registry() -> std::sync::MutexGuard<'static, Vec<(Arc<Proc>, bool)>> {
    REGISTRY.lock().unwrap_or_else(|p| p.into_inner())
}

/// The registry entries, type-erased for `ForkGuards`.
pub(crate) type Registry = Vec<(Arc<Proc>, bool)>;

pub(crate) fn register(proc: &Arc<Proc>) {
    reap_detached();
    join_at_exit();
    REGISTRY
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .push((proc.clone(), false));
}

/// Reaps children whose `Child` was dropped before they ended, so no zombie accumulates.
pub(crate) fn reap_detached() {
    let mut reg = REGISTRY.lock().unwrap_or_else(|p| p.into_inner());
    reg.retain(|(p, detached)| !(*detached && p.try_status().is_some()));
}

fn detach(proc: &Arc<Proc>) {
    let mut reg = REGISTRY.lock().unwrap_or_else(|p| p.into_inner());
    let finished = proc.try_status().is_some();
    reg.retain_mut(|(p, detached)| {
        if Arc::ptr_eq(p, proc) {
            *detached = true;
            !finished
        } else {
            true
        }
    });
}

/// Makes this process, when it exits, terminate its daemonic children and wait for the
/// others, as Python does at interpreter exit (installed with the first child).
fn join_at_exit() {
    static INSTALLED: std::sync::Once = std::sync::Once::new();
    INSTALLED.call_once(|| {
        if let Err(e) = mproc_sys::at_exit(join_children) {
            crate::diag::warning!("children will not be joined at exit: {e}");
        }
    });
}

/// The exit handler: Python's `_exit_function`. Daemonic children get SIGTERM (they die with
/// this process anyway); every other child is waited for, unless it was started with
/// `Builder::join_at_exit(false)` or its `Child` was dropped by a panic. A test binary
/// (initialized by `init_before_main!`) waits for none: a failed test must end its run, not
/// hang it on a child that waits for what the test would have given it.
extern "C" fn join_children() {
    if crate::init::initialized_before_main() {
        return;
    }
    join_children_now();
}

/// What the exit handler does; also run by a child when its function has returned, before
/// it exits (as Python's children run `_exit_function` too).
pub(crate) fn join_children_now() {
    // Another thread may hold the registry as `exit` runs: give it a moment, never hang.
    let give_up = Instant::now() + Duration::from_secs(1);
    let me = std::process::id();
    let ours = |reg: &Registry| -> Vec<Arc<Proc>> {
        reg.iter()
            .filter(|(p, _)| p.by == me)
            .map(|(p, _)| p.clone())
            .collect()
    };
    let procs = loop {
        match REGISTRY.try_lock() {
            Ok(reg) => break ours(&reg),
            Err(std::sync::TryLockError::Poisoned(p)) => break ours(&p.into_inner()),
            Err(std::sync::TryLockError::WouldBlock) if Instant::now() < give_up => {
                std::thread::sleep(Duration::from_millis(1));
            }
            Err(std::sync::TryLockError::WouldBlock) => return,
        }
    };
    for p in procs.iter().filter(|p| p.info.daemon) {
        let _ = p.signal(mproc_sys::SIGTERM);
    }
    for p in procs.iter().filter(|p| !p.info.daemon) {
        if !p.outlives.load(Ordering::Relaxed) {
            let _ = p.status_until(None);
        }
    }
}

/// Returns the children of this process that are still running, reaping finished ones:
/// Python's `multiprocessing.active_children()`.
///
/// ```
/// assert!(mproc_process::active_children().is_empty());
/// ```
pub fn active_children() -> Vec<ProcessInfo> {
    reap_detached();
    let reg = REGISTRY.lock().unwrap_or_else(|p| p.into_inner());
    reg.iter()
        .filter(|(p, _)| p.try_status().is_none())
        .map(|(p, _)| p.info.clone())
        .collect()
}

/// Sends SIGKILL to every running child of this process: a last resort for test harnesses
/// and watchdogs. Returns how many were signalled.
///
/// ```
/// assert_eq!(mproc_process::kill_all_children(), 0);
/// ```
pub fn kill_all_children() -> usize {
    let reg = REGISTRY.lock().unwrap_or_else(|p| p.into_inner());
    reg.iter()
        .filter(|(p, _)| p.signal(mproc_sys::SIGKILL).is_ok() && p.try_status().is_none())
        .count()
}

enum Outcome<R> {
    /// No reply read yet.
    Pending,
    /// The reply, decoded (a value or the child's error).
    Replied(Result<R>),
    /// The child ended without a (readable) reply.
    NoReply,
    /// The result was handed out.
    Taken,
}

/// A child process running a function that returns `R`: Python's `Process`, with the
/// target's return value.
///
/// Dropping a `Child` does not stop it (a daemonic one still dies with its parent); its exit
/// is collected in the background so that it never lingers as a zombie.
///
/// ```
/// fn square(x: u64) -> u64 { x * x }
/// # mproc_process::init();
/// let mut child = mproc_process::spawn(square, 7)?;
/// println!("child {} is {}", child.pid(), child.name());
/// assert_eq!(child.join()?, 49);
/// assert_eq!(child.exit_status(), Some(mproc_process::ExitStatus::Code(0)));
/// # Ok::<(), mproc_process::Error>(())
/// ```
pub struct Child<R> {
    proc: Arc<Proc>,
    sock: OwnedFd,
    reader: FrameReader,
    outcome: Outcome<R>,
    _r: PhantomData<fn() -> R>,
}

impl<R> std::fmt::Debug for Child<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Child")
            .field("pid", &self.proc.info.pid)
            .field("name", &self.proc.info.name)
            .field("daemon", &self.proc.info.daemon)
            .field("method", &self.proc.method)
            .field("exit_status", &self.exit_status())
            .finish()
    }
}

impl<R> Child<R> {
    pub(crate) fn new(proc: Arc<Proc>, sock: OwnedFd, listed: bool) -> Self {
        // A child made by fork closes its copy: held there, it would keep this child from
        // seeing its parent end.
        mproc_sys::track_owned_fd(sock.as_fd());
        crate::diag::debug!(
            "started {} (pid {}) by {}",
            proc.info.name,
            proc.info.pid,
            proc.method.as_str()
        );
        if listed {
            register(&proc);
        }
        Self {
            proc,
            sock,
            reader: FrameReader::new(),
            outcome: Outcome::Pending,
            _r: PhantomData,
        }
    }

    /// Lets the child outlive this process (not joined at exit).
    pub(crate) fn outlive(&self) {
        self.proc.outlive();
    }

    pub(crate) fn socket(&self) -> BorrowedFd<'_> {
        self.sock.as_fd()
    }

    /// Returns the child's process id.
    pub fn pid(&self) -> u32 {
        self.proc.info.pid
    }

    /// Returns the child's name (Python's `Process.name`).
    pub fn name(&self) -> &str {
        &self.proc.info.name
    }

    /// Returns whether the child is daemonic.
    pub fn is_daemon(&self) -> bool {
        self.proc.info.daemon
    }

    /// Returns the start method that created the child.
    pub fn start_method(&self) -> StartMethod {
        self.proc.method
    }

    /// Returns whether the child is still running.
    ///
    /// ```
    /// fn nap(ms: u64) { std::thread::sleep(std::time::Duration::from_millis(ms)) }
    /// # mproc_process::init();
    /// let mut child = mproc_process::spawn(nap, 10_000)?;
    /// assert!(child.is_alive());
    /// child.kill()?;
    /// child.wait()?;
    /// assert!(!child.is_alive());
    /// # Ok::<(), mproc_process::Error>(())
    /// ```
    pub fn is_alive(&self) -> bool {
        self.proc.try_status().is_none() && !self.proc.has_exited()
    }

    /// Returns how the child ended, or `None` while it runs: Python's `exitcode`.
    pub fn exit_status(&self) -> Option<ExitStatus> {
        match self.proc.try_status() {
            Some(Status::Exited(st)) => Some(st),
            _ => None,
        }
    }

    /// Sends SIGTERM (Python's `terminate()`). Harmless once the child has ended.
    pub fn terminate(&self) -> Result<()> {
        self.proc.signal(mproc_sys::SIGTERM)
    }

    /// Sends SIGKILL (Python's `kill()`). Harmless once the child has ended.
    ///
    /// The signal goes through a pidfd, so it can never reach another process that reused
    /// the pid.
    ///
    /// ```
    /// use mproc_process::{ErrorKind, ExitStatus};
    /// fn nap(ms: u64) { std::thread::sleep(std::time::Duration::from_millis(ms)) }
    /// # mproc_process::init();
    /// let mut child = mproc_process::spawn(nap, 10_000)?;
    /// child.kill()?;
    /// let err = child.join().unwrap_err();
    /// assert_eq!(err.kind(), ErrorKind::Died);
    /// assert_eq!(err.exit_status(), Some(ExitStatus::Signal(9)));
    /// # Ok::<(), mproc_process::Error>(())
    /// ```
    pub fn kill(&self) -> Result<()> {
        self.proc.signal(mproc_sys::SIGKILL)
    }

    /// Returns an fd that becomes readable when the child ends (Python's `sentinel`), for
    /// [`wait_any`] or your own `poll`.
    pub fn sentinel(&self) -> BorrowedFd<'_> {
        self.proc.pidfd.as_fd()
    }
}

impl<R: DeserializeOwned> Child<R> {
    /// Waits for the child and returns its function's result.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Panicked`] (with the message), [`ErrorKind::Died`] (with the exit code
    /// or signal) when it ended without a result, [`ErrorKind::Decode`] when the result is
    /// not an `R`, [`ErrorKind::AlreadyJoined`] on a second call after a result was taken.
    pub fn join(&mut self) -> Result<R> {
        self.join_until(None)
    }

    /// Like [`join`](Self::join), but gives up after `timeout` with [`ErrorKind::Timeout`];
    /// the child is left running and can be joined again.
    ///
    /// Python: `p.join(timeout)` (which returns `None` either way; here the outcome is typed).
    ///
    /// ```
    /// use std::time::Duration;
    /// fn nap(ms: u64) -> u64 { std::thread::sleep(Duration::from_millis(ms)); ms }
    /// # mproc_process::init();
    /// let mut child = mproc_process::spawn(nap, 300)?;
    /// let err = child.join_timeout(Duration::from_millis(10)).unwrap_err();
    /// assert_eq!(err.kind(), mproc_process::ErrorKind::Timeout);
    /// assert_eq!(child.join_timeout(Duration::from_secs(30))?, 300);
    /// # Ok::<(), mproc_process::Error>(())
    /// ```
    pub fn join_timeout(&mut self, timeout: Duration) -> Result<R> {
        self.join_until(mproc_sys::deadline_after(timeout))
    }

    /// Returns the result if the child has finished, `None` if it still runs.
    ///
    /// ```
    /// fn nap(ms: u64) -> u64 { std::thread::sleep(std::time::Duration::from_millis(ms)); ms }
    /// # mproc_process::init();
    /// let mut child = mproc_process::spawn(nap, 200)?;
    /// let result = loop {
    ///     if let Some(r) = child.try_join()? {
    ///         break r;
    ///     }
    ///     std::thread::sleep(std::time::Duration::from_millis(20)); // other work here
    /// };
    /// assert_eq!(result, 200);
    /// # Ok::<(), mproc_process::Error>(())
    /// ```
    pub fn try_join(&mut self) -> Result<Option<R>> {
        match self.join_until(Some(Instant::now())) {
            Ok(r) => Ok(Some(r)),
            Err(e) if e.kind() == ErrorKind::Timeout => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Waits for the child to end, without taking its result, and returns its exit status:
    /// Python's `join()` followed by `exitcode`. Can be called any number of times.
    ///
    /// ```
    /// fn leave(code: i32) { std::process::exit(code) }
    /// # mproc_process::init();
    /// let mut child = mproc_process::spawn(leave, 3)?;
    /// assert_eq!(child.wait()?, mproc_process::ExitStatus::Code(3));
    /// assert_eq!(child.wait()?.python_exitcode(), 3);
    /// # Ok::<(), mproc_process::Error>(())
    /// ```
    pub fn wait(&mut self) -> Result<ExitStatus> {
        self.wait_until(None)
    }

    /// Like [`wait`](Self::wait), with a timeout ([`ErrorKind::Timeout`] leaves it running).
    pub fn wait_timeout(&mut self, timeout: Duration) -> Result<ExitStatus> {
        self.wait_until(mproc_sys::deadline_after(timeout))
    }

    fn wait_until(&mut self, deadline: Option<Instant>) -> Result<ExitStatus> {
        // Wait for the end first, then read the reply that is already in our buffer: one
        // wake-up instead of two. A child never blocks on sending its reply (small replies
        // fit the socket buffer, large ones go by memfd), so it always gets to its end.
        let status = self.proc.status_until(deadline)?;
        self.read_reply();
        match status {
            Status::Exited(st) => Ok(st),
            Status::Lost => Err(Error::new(
                ErrorKind::StatusLost,
                "the child's exit status was lost: its fork server died, or something else reaped it",
            )),
        }
    }

    fn join_until(&mut self, deadline: Option<Instant>) -> Result<R> {
        if let Outcome::Taken = self.outcome {
            return Err(Error::new(
                ErrorKind::AlreadyJoined,
                "the child's result was already taken by an earlier join",
            ));
        }
        let status = self.wait_until(deadline);
        let status = match (status, &self.outcome) {
            (Ok(st), _) => Some(st),
            // The result is in; the status was lost with the fork server. Still a result.
            (Err(e), Outcome::Replied(_)) if e.kind() == ErrorKind::StatusLost => None,
            (Err(e), _) => return Err(e),
        };
        match std::mem::replace(&mut self.outcome, Outcome::Taken) {
            Outcome::Replied(Ok(r)) => Ok(r),
            Outcome::Replied(Err(mut e)) => {
                if let Some(st) = status {
                    e.set_status(st);
                }
                Err(e)
            }
            Outcome::NoReply | Outcome::Pending => match status {
                Some(st) => Err(Error::died(st)),
                None => Err(Error::new(
                    ErrorKind::StatusLost,
                    "the child ended without a result and its exit status was lost",
                )),
            },
            Outcome::Taken => unreachable!("checked above"),
        }
    }

    /// Reads the reply of a child that has ended: all it wrote is in our socket buffer, so
    /// an incomplete frame means it died while sending.
    fn read_reply(&mut self) {
        if matches!(self.outcome, Outcome::Pending) {
            self.outcome =
                match self
                    .reader
                    .read(self.sock.as_fd(), &protocol::limits(), Some(Instant::now()))
                {
                    Ok(msg) => Outcome::Replied(decode_reply(msg)),
                    Err(_) => Outcome::NoReply,
                };
        }
    }
}

fn decode_reply<R: DeserializeOwned>(msg: Message) -> Result<R> {
    let (reply, fds): (Reply, _) = protocol::open_envelope(msg)?;
    match reply {
        Reply::Ok(bytes) => mproc_wire::decode(Message::from_parts(bytes, fds)).map_err(|e| {
            Error::new(
                ErrorKind::Decode,
                "the child's result could not be deserialized",
            )
            .with_source(e)
        }),
        Reply::Panicked(msg) => Err(Error::panicked(msg, None)),
        Reply::BuildMismatch => Err(Error::new(
            ErrorKind::BuildMismatch,
            "the child runs a different build of the executable; rebuild, or do not replace the binary while it runs",
        )),
        Reply::Encode(m) => Err(Error::new(ErrorKind::Encode, m)),
        Reply::Decode(m) => Err(Error::new(ErrorKind::Decode, m)),
    }
}

impl<R> Drop for Child<R> {
    fn drop(&mut self) {
        // Dropped by a panic: whatever the child waits for will not come; the exit must
        // not wait for it.
        if std::thread::panicking() {
            self.proc.outlive();
        }
        detach(&self.proc);
        mproc_sys::untrack_owned_fd(self.sock.as_fd());
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

/// Waits until at least one of `sentinels` is ready (its child ended) or `timeout` passes,
/// and returns the indices of the ready ones: Python's `multiprocessing.connection.wait`
/// for process sentinels. An empty result means the timeout passed.
///
/// ```
/// fn nap(ms: u64) { std::thread::sleep(std::time::Duration::from_millis(ms)) }
/// # mproc_process::init();
/// let mut slow = mproc_process::spawn(nap, 5_000)?;
/// let mut fast = mproc_process::spawn(nap, 0)?;
/// let ready = mproc_process::wait_any(&[slow.sentinel(), fast.sentinel()], None)?;
/// assert_eq!(ready, [1]);
/// slow.kill()?;
/// # slow.wait()?; fast.wait()?;
/// # Ok::<(), mproc_process::Error>(())
/// ```
pub fn wait_any(sentinels: &[BorrowedFd<'_>], timeout: Option<Duration>) -> Result<Vec<usize>> {
    let ready = mproc_sys::poll_readable(sentinels, timeout)
        .map_err(|e| Error::io("waiting for children", e))?;
    Ok(ready
        .iter()
        .enumerate()
        .filter(|(_, r)| **r)
        .map(|(i, _)| i)
        .collect())
}
