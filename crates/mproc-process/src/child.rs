//! [`Child`]: the handle of a running child process, with its function's typed result.

#[cfg(feature = "tokio")]
mod async_wait;
pub(crate) mod proc;
pub(crate) mod registry;

use std::marker::PhantomData;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::Arc;
use std::time::{Duration, Instant};

use mproc_sys::ExitStatus;
use mproc_wire::{FrameReader, Message};
use serde::de::DeserializeOwned;

use crate::StartMethod;
use crate::error::{Error, ErrorKind, Result};
use crate::protocol::{self, Reply};
use proc::{Proc, Status};
use registry::{detach, register};

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
    /// [`wait_sentinels`](crate::wait_sentinels), `mproc::wait` (beside connections) or
    /// your own `poll`.
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
        self.ended(status)
    }

    /// Reads the reply of a child that ended with `status`, and says how it ended.
    fn ended(&mut self, status: Status) -> Result<ExitStatus> {
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
        self.check_joinable()?;
        let status = self.wait_until(deadline);
        self.take_result(status)
    }

    /// Fails when an earlier join took the result.
    fn check_joinable(&self) -> Result<()> {
        match self.outcome {
            Outcome::Taken => Err(already_joined()),
            _ => Ok(()),
        }
    }

    /// Hands out the result of a child whose wait ended with `status`: its value, its
    /// error, or why there is none. A wait that failed (a timeout) leaves the result there.
    fn take_result(&mut self, status: Result<ExitStatus>) -> Result<R> {
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
            Outcome::Taken => Err(already_joined()),
        }
    }

    /// Reads the reply of a child that has ended: all it wrote is in our socket buffer, so
    /// an incomplete frame means it died while sending.
    fn read_reply(&mut self) {
        read_reply_now(&mut self.reader, self.sock.as_fd(), &mut self.outcome, true);
    }
}

/// Reads what has arrived of a child's reply into `outcome`, without waiting. Until the
/// child has `ended`, a reply not whole yet stays pending (`reader` keeps the part that
/// came, and a later read goes on from there); once it has, the rest never comes.
fn read_reply_now<R: DeserializeOwned>(
    reader: &mut FrameReader,
    sock: BorrowedFd<'_>,
    outcome: &mut Outcome<R>,
    ended: bool,
) {
    if matches!(outcome, Outcome::Pending) {
        *outcome = match reader.read(sock, &protocol::limits(), Some(Instant::now())) {
            Ok(msg) => Outcome::Replied(decode_reply(msg)),
            Err(e) if !ended && e.kind() == mproc_wire::ErrorKind::Timeout => return,
            Err(_) => Outcome::NoReply,
        };
    }
}

fn already_joined() -> Error {
    Error::new(
        ErrorKind::AlreadyJoined,
        "the child's result was already taken by an earlier join",
    )
}

pub(crate) fn decode_reply<R: DeserializeOwned>(msg: Message) -> Result<R> {
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
