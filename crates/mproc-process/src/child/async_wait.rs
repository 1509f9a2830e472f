//! [`Child::join_async`] and [`Child::wait_async`]: a child's end awaited on tokio's
//! reactor, its reply read as it arrives.
//!
//! Two fds are registered with the reactor for the time of one await: the one that signals
//! the child's end ([`Proc::end_fd`], the same the blocking wait polls: the pidfd, or the
//! status socket of a fork server's child) and the child's socket, whose reply is read with
//! non-blocking receives each time it becomes readable. Everything read is kept in the
//! `Child` (its frame reader, its outcome, its status), never in the future: a future
//! dropped at any await leaves the child as a blocking `join` or a new `join_async` expects
//! it.

use std::future::poll_fn;
use std::os::fd::{AsRawFd, BorrowedFd, RawFd};
use std::task::{Context, Poll};

use mproc_sys::{ExitStatus, ReactorFd, register_async};
use mproc_wire::FrameReader;
use serde::de::DeserializeOwned;
use tokio::io::unix::AsyncFd;

use super::proc::{Proc, Status};
use super::{Child, Outcome, read_reply_now};
use crate::error::{Error, Result};

impl<R: DeserializeOwned> Child<R> {
    /// Waits for the child without blocking a thread, and returns its function's result:
    /// [`join`](Self::join) for tokio. The wait is tokio's reactor watching the child's
    /// pidfd (or, for a fork server's child, its status socket) and its socket, whose reply
    /// is read as it arrives.
    ///
    /// Cancel-safe: a future dropped before it completes (by `tokio::time::timeout`, a
    /// `select!`, an aborted task) leaves the child running and joinable; what arrived of
    /// its reply is kept in the `Child`, and a later `join`, `join_timeout` or `join_async`
    /// gets the whole result. Python: `await loop.run_in_executor(None, p.join)`, without
    /// the thread.
    ///
    /// ```
    /// use std::time::Duration;
    /// fn nap(ms: u64) -> u64 { std::thread::sleep(Duration::from_millis(ms)); ms }
    /// # mproc_process::init();
    /// let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    /// rt.block_on(async {
    ///     let mut child = mproc_process::spawn(nap, 300)?;
    ///     // A timeout drops the join: the child runs on and is joined again.
    ///     let early = tokio::time::timeout(Duration::from_millis(10), child.join_async()).await;
    ///     assert!(early.is_err());
    ///     assert_eq!(child.join_async().await?, 300);
    ///     Ok::<(), mproc_process::Error>(())
    /// })?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// # Errors
    ///
    /// As [`join`](Self::join): [`ErrorKind::Panicked`](crate::ErrorKind::Panicked),
    /// [`ErrorKind::Died`](crate::ErrorKind::Died) (a child killed while awaited, say),
    /// [`ErrorKind::Decode`](crate::ErrorKind::Decode),
    /// [`ErrorKind::AlreadyJoined`](crate::ErrorKind::AlreadyJoined); and
    /// [`ErrorKind::Io`](crate::ErrorKind::Io) when it is polled outside a tokio runtime or
    /// the reactor refuses the fds (the child is then left as it was).
    ///
    /// # Panics
    ///
    /// When polled in a tokio runtime built without IO (`enable_io`), as tokio's own
    /// sockets do.
    pub async fn join_async(&mut self) -> Result<R> {
        self.check_joinable()?;
        let status = self.wait_async().await;
        self.take_result(status)
    }

    /// Waits for the child to end without blocking a thread, without taking its result,
    /// and returns its exit status: [`wait`](Self::wait) for tokio. Cancel-safe, as
    /// [`join_async`](Self::join_async) is; can be called any number of times.
    ///
    /// ```
    /// fn leave(code: i32) { std::process::exit(code) }
    /// # mproc_process::init();
    /// let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    /// let mut child = mproc_process::spawn(leave, 3)?;
    /// let status = rt.block_on(child.wait_async())?;
    /// assert_eq!(status, mproc_process::ExitStatus::Code(3));
    /// assert_eq!(child.wait()?, status);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// # Errors
    ///
    /// As [`wait`](Self::wait), and [`ErrorKind::Io`](crate::ErrorKind::Io) outside a tokio
    /// runtime or when the reactor refuses the fds.
    ///
    /// # Panics
    ///
    /// As [`join_async`](Self::join_async).
    pub async fn wait_async(&mut self) -> Result<ExitStatus> {
        let status = self.end_async().await?;
        self.ended(status)
    }

    /// Waits on the reactor until the child's status is in, reading its reply meanwhile.
    async fn end_async(&mut self) -> Result<Status> {
        // A child that has ended already costs one non-blocking reap, no registration.
        if let Some(st) = self.proc.try_status() {
            return Ok(st);
        }
        let Child {
            proc,
            sock,
            reader,
            outcome,
            ..
        } = self;
        let mut waiter = EndWaiter {
            proc,
            sock: std::os::fd::AsFd::as_fd(sock),
            reader,
            outcome,
            end: None,
            reply: None,
        };
        poll_fn(|cx| waiter.poll(cx)).await
    }
}

/// One await of a child's end: the parts of the `Child` it reads into, and the fds it has
/// registered with the reactor (deregistered when it is dropped).
struct EndWaiter<'a, R> {
    proc: &'a Proc,
    sock: BorrowedFd<'a>,
    reader: &'a mut FrameReader,
    outcome: &'a mut Outcome<R>,
    /// The registration of `proc.end_fd()`, with that fd's number (the fd can change).
    end: Option<(RawFd, AsyncFd<ReactorFd>)>,
    /// The registration of the socket, while the reply is still to come.
    reply: Option<AsyncFd<ReactorFd>>,
}

impl<R: DeserializeOwned> EndWaiter<'_, R> {
    fn poll(&mut self, cx: &mut Context<'_>) -> Poll<Result<Status>> {
        loop {
            if self.poll_reply(cx)? {
                continue;
            }
            let fd = self.proc.end_fd();
            if self
                .end
                .as_ref()
                .is_none_or(|(raw, _)| *raw != fd.as_raw_fd())
            {
                self.end = None;
                self.end = Some((fd.as_raw_fd(), register(fd)?));
            }
            let (_, end) = self.end.as_ref().expect("registered above");
            match end.poll_read_ready(cx) {
                Poll::Ready(guard) => {
                    let mut guard = guard.map_err(reactor_error)?;
                    if let Some(st) = self.proc.try_status() {
                        return Poll::Ready(Ok(st));
                    }
                    // Not the end (a fork server found gone, whose child runs on): wait
                    // again, on whatever fd now signals it.
                    guard.clear_ready();
                }
                Poll::Pending => return Poll::Pending,
            }
        }
    }

    /// Reads what arrived of the reply, if the socket is readable: the child's socket
    /// buffer is drained as it fills, so a child never waits on this process to read.
    /// Returns whether it read (the caller polls again, so that the reactor wakes it for
    /// the next bytes).
    fn poll_reply(&mut self, cx: &mut Context<'_>) -> Result<bool> {
        if !matches!(self.outcome, Outcome::Pending) {
            self.reply = None;
            return Ok(false);
        }
        let reply = match &self.reply {
            Some(reply) => reply,
            None => self.reply.insert(register(self.sock)?),
        };
        let Poll::Ready(guard) = reply.poll_read_ready(cx) else {
            return Ok(false);
        };
        let mut guard = guard.map_err(reactor_error)?;
        read_reply_now(self.reader, self.sock, self.outcome, false);
        if matches!(self.outcome, Outcome::Pending) {
            // Everything that had come was read (the receives would block now).
            guard.clear_ready();
        }
        Ok(true)
    }
}

/// Registers (a duplicate of) `fd` with the reactor; reads go on through `fd` itself.
fn register(fd: BorrowedFd<'_>) -> Result<AsyncFd<ReactorFd>> {
    register_async(fd).map_err(reactor_error)
}

fn reactor_error(e: std::io::Error) -> Error {
    Error::io("waiting for a child on the async runtime", e)
}

#[cfg(test)]
mod tests {
    use std::os::fd::{AsFd, OwnedFd};
    use std::sync::Arc;
    use std::time::Duration;

    use super::super::proc::Reaper;
    use super::*;
    use crate::StartMethod;
    use crate::info::ProcessInfo;
    use crate::protocol::{self, Reply};

    /// The bytes of the reply frame a child sends for `value` (inline: under 32 KiB).
    fn reply_frame(value: &Vec<u8>) -> Vec<u8> {
        let msg = protocol::envelope(Reply::Ok, mproc_wire::encode(value).unwrap()).unwrap();
        let (a, b) = mproc_sys::socketpair().unwrap();
        mproc_wire::write_message(a.as_fd(), msg, &protocol::limits()).unwrap();
        drop(a);
        let mut bytes = Vec::new();
        while mproc_sys::recv_append(b.as_fd(), &mut bytes, 1 << 16, false).unwrap() > 0 {}
        bytes
    }

    /// A `Child` around a plain `sleep` process whose reply this test writes by hand on
    /// the returned socket, a piece at a time.
    #[allow(clippy::zombie_processes)] // reaped through its pidfd, by the `Child`
    fn sleeper() -> (Child<Vec<u8>>, OwnedFd) {
        let sleep = std::process::Command::new("sleep")
            .arg("60")
            .spawn()
            .unwrap();
        let pidfd = mproc_sys::pidfd_open(sleep.id()).unwrap();
        let info = ProcessInfo::new(sleep.id(), "sleeper".into(), false);
        let proc = Proc::new(info, StartMethod::Spawn, pidfd, Reaper::Direct);
        let (ours, theirs) = mproc_sys::socketpair().unwrap();
        (Child::new(Arc::new(proc), ours, false), theirs)
    }

    fn runtime() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
    }

    /// Dropped futures keep what they read: half a reply, then the whole reply while the
    /// child still runs; a blocking join after them gets the result.
    #[test]
    fn a_dropped_join_keeps_the_reply_read_so_far() {
        let (mut child, theirs) = sleeper();
        let value: Vec<u8> = (0..20_000u32).map(|i| (i % 251) as u8).collect();
        let frame = reply_frame(&value);
        let (first, rest) = frame.split_at(frame.len() / 2);
        let rt = runtime();
        let wait = Duration::from_millis(20);

        mproc_sys::send_with_fds(theirs.as_fd(), first, &[]).unwrap();
        let early = rt.block_on(async { tokio::time::timeout(wait, child.join_async()).await });
        assert!(early.is_err(), "the child still runs");
        assert!(child.reader.in_frame(), "the first half was read and kept");
        assert!(matches!(child.outcome, Outcome::Pending));

        mproc_sys::send_with_fds(theirs.as_fd(), rest, &[]).unwrap();
        let early = rt.block_on(async { tokio::time::timeout(wait, child.join_async()).await });
        assert!(early.is_err(), "the child still runs");
        assert!(matches!(child.outcome, Outcome::Replied(Ok(ref v)) if *v == value));

        child.kill().unwrap();
        assert_eq!(child.join().unwrap(), value);
        assert_eq!(child.exit_status(), Some(ExitStatus::Signal(9)));
    }

    /// A child that ends with half a reply sent: no result, as a blocking join says.
    #[test]
    fn a_reply_cut_short_is_no_result() {
        let (mut child, theirs) = sleeper();
        let frame = reply_frame(&vec![7u8; 10_000]);
        mproc_sys::send_with_fds(theirs.as_fd(), &frame[..frame.len() / 2], &[]).unwrap();
        let rt = runtime();
        let wait = Duration::from_millis(20);
        let early = rt.block_on(async { tokio::time::timeout(wait, child.join_async()).await });
        assert!(early.is_err(), "the child still runs");
        child.kill().unwrap();
        drop(theirs);
        let err = rt.block_on(child.join_async()).unwrap_err();
        assert_eq!(err.kind(), crate::ErrorKind::Died);
        assert_eq!(err.exit_status(), Some(ExitStatus::Signal(9)));
    }

    #[test]
    fn the_futures_are_send() {
        fn send<T: Send>(_: &T) {}
        let (mut child, _theirs) = sleeper();
        send(&child.join_async());
        send(&child.wait_async());
        child.kill().unwrap();
        child.wait().unwrap();
    }
}
