//! Asking a fork server for one child: a request over its socket, sent again to a new
//! server when the old one died before reading it.

use std::ffi::OsString;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::time::{Duration, Instant};

use mproc_wire::{Fd, Message};

use super::Server;
use super::protocol::{ForkReply, ForkRequestRef, limits};
use crate::error::{Error, ErrorKind, Result};

/// How long a healthy server may take to answer a fork request.
const REPLY_DEADLINE: Duration = Duration::from_secs(30);

pub(super) fn fail(what: &str, e: mproc_wire::Error) -> Error {
    Error::new(ErrorKind::ForkServer, format!("fork server: {what}")).with_source(e)
}

/// Why a fork request failed, which decides what becomes of the server.
pub(super) enum ForkFailure {
    /// Nothing reached the server (it is gone): no child exists; replace it, try again.
    NotSent(Error),
    /// The server answered that it could not fork (say, EAGAIN at a pids limit), or we
    /// failed before sending: no child exists, and the server is healthy.
    Refused(Error),
    /// The server took the request but gave no usable answer: it may have forked, so the
    /// request must not be sent again; the server is replaced.
    Broken(Error),
    /// The server died with the request unread (its socket was closed with our bytes in
    /// it: `ECONNRESET`): no child exists; replace it, try again.
    NotTaken(Error),
}

/// Stops a server that is broken or gone, and reaps it.
pub(super) fn retire(server: Option<Server>) {
    if let Some(mut server) = server {
        let _ = server.child.kill();
        let _ = server.child.wait_timeout(Duration::from_secs(5));
    }
}

impl ForkFailure {
    pub(super) fn into_error(self) -> Error {
        match self {
            ForkFailure::NotSent(e)
            | ForkFailure::Refused(e)
            | ForkFailure::Broken(e)
            | ForkFailure::NotTaken(e) => e,
        }
    }
}

/// Asks the server in `slot` for a child; `restart` starts a new server when there is none
/// or it died (without it, a dead server is an error).
pub(super) fn fork_via(
    slot: &mut Option<Server>,
    restart: Option<fn() -> Result<Server>>,
    data: OwnedFd,
    daemon: bool,
    env: &[(OsString, Option<OsString>)],
    request: Message,
) -> Result<(u32, OwnedFd, OwnedFd)> {
    let (request, request_fds) = request.into_parts();
    let request_fds: Vec<Fd> = request_fds.into_iter().map(Fd::from).collect();
    let guard = slot;
    for attempt in 0..2 {
        if guard.as_ref().is_none_or(|s| !s.child.is_alive()) {
            let replacing = guard.is_some() || attempt > 0;
            retire(guard.take());
            let Some(restart) = restart else {
                return Err(Error::new(
                    ErrorKind::ForkServer,
                    "this fork server has ended (it is not restarted: its snapshot of the \
                     parent is gone)",
                ));
            };
            *guard = Some(restart()?);
            if replacing {
                crate::diag::debug!(
                    "the fork server was gone; a new one runs (pid {:?})",
                    guard.as_ref().map(|s| s.child.pid())
                );
            }
        }
        let server = guard.as_mut().expect("started above");
        match send_fork(server, &data, daemon, env, &request, &request_fds) {
            Ok(status) => match read_fork_reply(server, status) {
                Ok(r) => return Ok(r),
                Err(ForkFailure::Refused(e)) => return Err(e),
                // A server SIGKILLed just before our request: it never read it, so the
                // request goes to a fresh server, as Python's `ensure_running()` does.
                Err(ForkFailure::NotTaken(_)) if attempt == 0 && restart.is_some() => {
                    retire(guard.take());
                }
                Err(
                    ForkFailure::NotSent(e) | ForkFailure::Broken(e) | ForkFailure::NotTaken(e),
                ) => {
                    retire(guard.take());
                    return Err(e);
                }
            },
            Err(ForkFailure::Refused(e)) => return Err(e),
            Err(ForkFailure::NotSent(_)) if attempt == 0 && restart.is_some() => {
                retire(guard.take())
            }
            Err(ForkFailure::NotSent(e) | ForkFailure::Broken(e) | ForkFailure::NotTaken(e)) => {
                retire(guard.take());
                return Err(e);
            }
        }
    }
    unreachable!("the second attempt returns")
}

pub(super) fn send_fork(
    server: &mut Server,
    data: &OwnedFd,
    daemon: bool,
    env: &[(OsString, Option<OsString>)],
    request: &[u8],
    request_fds: &[Fd],
) -> std::result::Result<OwnedFd, ForkFailure> {
    let local = |what: &str, e: std::io::Error| ForkFailure::Refused(Error::io(what, e));
    let (status_ours, status_theirs) =
        mproc_sys::socketpair().map_err(|e| local("creating a status socket", e))?;
    let indices: Vec<u32> = (2..2 + request_fds.len() as u32).collect();
    let req = ForkRequestRef {
        daemon,
        changes: server.born.env_changes(),
        cwd: server.born.cwd_change(),
        env,
        data: 0,
        status: 1,
        request,
        request_fds: &indices,
    };
    let msg = mproc_wire::encode(&req)
        .map_err(|e| ForkFailure::Refused(fail("encoding a request", e)))?;
    let fds: Vec<BorrowedFd<'_>> = [data.as_fd(), status_theirs.as_fd()]
        .into_iter()
        .chain(request_fds.iter().map(Fd::as_fd))
        .collect();
    mproc_wire::write_frame(server.control.as_fd(), msg.bytes(), &fds, &limits()).map_err(|e| {
        let err = fail("sending a request", e);
        if server.reader.in_frame() {
            ForkFailure::Broken(err)
        } else {
            ForkFailure::NotSent(err)
        }
    })?;
    Ok(status_ours)
}

/// Reads the server's answer to a request just sent; `status` is our end of the child's
/// status socket. Returns the child's pid, a pidfd, and `status`.
pub(super) fn read_fork_reply(
    server: &mut Server,
    status: OwnedFd,
) -> std::result::Result<(u32, OwnedFd, OwnedFd), ForkFailure> {
    let deadline = Instant::now() + REPLY_DEADLINE;
    let reply = server
        .reader
        .read(server.control.as_fd(), &limits(), Some(deadline))
        .map_err(|e| {
            if e.is_reset() {
                ForkFailure::NotTaken(fail("reading a reply", e))
            } else {
                ForkFailure::Broken(fail("reading a reply", e))
            }
        })?;
    match mproc_wire::decode::<ForkReply>(reply)
        .map_err(|e| ForkFailure::Broken(fail("decoding a reply", e)))?
    {
        ForkReply::Forked { pid, pidfd } => Ok((pid, pidfd.into_owned(), status)),
        ForkReply::Failed(msg) => Err(ForkFailure::Refused(Error::new(
            ErrorKind::ForkServer,
            format!("fork server could not fork: {msg}"),
        ))),
    }
}
