//! The fork server's messages for the fuzz target (built with `cfg(fuzzing)` only): a
//! request as the server reads it, a reply as the parent reads it.

use std::os::fd::BorrowedFd;
use std::time::Instant;

use mproc_wire::FrameReader;

use super::protocol::{ForkReply, ForkRequest, limits};

/// Reads and decodes one fork request from `sock`, as the server does before it forks
/// (it forks nothing here). Returns what the request carries: its environment changes and
/// fds, or the error the server would reply with (or stop on).
pub(crate) fn request(sock: BorrowedFd<'_>) -> Result<(usize, usize), mproc_wire::Error> {
    let msg = FrameReader::new().read(sock, &limits(), Some(Instant::now()))?;
    let req = mproc_wire::decode::<ForkRequest>(msg)?;
    Ok((
        req.changes.len() + req.env.len() + usize::from(req.cwd.is_some()),
        req.request_fds.len() + 2,
    ))
}

/// Reads and decodes one reply from `sock`, as the parent does after a request. Returns
/// the pid a `Forked` reply names.
pub(crate) fn reply(sock: BorrowedFd<'_>) -> Result<Option<u32>, mproc_wire::Error> {
    let msg = FrameReader::new().read(sock, &limits(), Some(Instant::now()))?;
    Ok(match mproc_wire::decode::<ForkReply>(msg)? {
        ForkReply::Forked { pid, pidfd } => {
            drop(pidfd);
            Some(pid)
        }
        ForkReply::Failed(_) => None,
    })
}
