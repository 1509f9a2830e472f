//! Asking a fork server for a batch of children: the requests pipelined, so the server forks
//! the next child while this process takes the previous one's answer.

use std::ffi::OsString;
use std::os::fd::OwnedFd;

use mproc_wire::{Fd, Message};

use super::Server;
use super::connection::{ForkFailure, fork_via, read_fork_reply, retire, send_fork};
use super::global::{lock_server, start_server};
use super::own::ForkServer;
use crate::error::{Error, ErrorKind, Result};

/// One child of a batch: its data socket and its request.
pub(crate) struct ForkJob {
    pub data: OwnedFd,
    pub request: Message,
}

/// Asks the fork server (or `server`, a private one) for several children at once: every
/// request is sent before the first answer is read, so the server forks the next child
/// while this process handles the previous one. Returns one outcome per job, in order.
pub(crate) fn fork_children(
    server: Option<&ForkServer>,
    jobs: Vec<ForkJob>,
    daemon: bool,
    env: &[(OsString, Option<OsString>)],
) -> Vec<Result<(u32, OwnedFd, OwnedFd)>> {
    match server {
        Some(s) => fork_batch(&mut s.lock(), None, jobs, daemon, env),
        None => fork_batch(&mut lock_server(), Some(start_server), jobs, daemon, env),
    }
}

/// A batch's first request goes alone, the careful way: a server killed just before it
/// (whose socket then resets with the request unread) is replaced and the request sent
/// again, as for a single spawn. Only a request alone can be retried so: once several are
/// in the socket, a reset does not tell which of them the server took. The rest follow
/// pipelined, to the server that answered.
fn fork_batch(
    slot: &mut Option<Server>,
    restart: Option<fn() -> Result<Server>>,
    mut jobs: Vec<ForkJob>,
    daemon: bool,
    env: &[(OsString, Option<OsString>)],
) -> Vec<Result<(u32, OwnedFd, OwnedFd)>> {
    if restart.is_none() || jobs.is_empty() {
        return pipeline(slot, restart, jobs, daemon, env);
    }
    let first = jobs.remove(0);
    let mut out = vec![fork_via(
        slot,
        restart,
        first.data,
        daemon,
        env,
        first.request,
    )];
    out.extend(pipeline(slot, restart, jobs, daemon, env));
    out
}

/// Sends every request of a batch before reading the first answer (see `fork_batch`).
fn pipeline(
    slot: &mut Option<Server>,
    restart: Option<fn() -> Result<Server>>,
    jobs: Vec<ForkJob>,
    daemon: bool,
    env: &[(OsString, Option<OsString>)],
) -> Vec<Result<(u32, OwnedFd, OwnedFd)>> {
    if jobs.is_empty() {
        return Vec::new();
    }
    let not_started = || {
        Error::new(
            ErrorKind::ForkServer,
            "fork server: not started, an earlier request of the batch failed",
        )
    };
    let mut jobs: Vec<BatchJob> = jobs
        .into_iter()
        .map(|j| {
            let (request, fds) = j.request.into_parts();
            (j.data, request, fds.into_iter().map(Fd::from).collect())
        })
        .collect();
    let n = jobs.len();
    let alive = slot.as_ref().is_some_and(|s| s.child.is_alive());
    let Some(server) = slot.as_mut().filter(|_| alive) else {
        // No server yet, or a dead one: the careful way, one by one (it starts one).
        return one_by_one(slot, restart, jobs, daemon, env);
    };
    // Send the requests, reading the answers in order, with at most `BATCH_IN_FLIGHT`
    // requests unanswered: neither side's socket buffer can fill up.
    let mut pending = std::collections::VecDeque::new();
    let mut out = Vec::with_capacity(n);
    let mut failure = None;
    let mut broken = false;
    let mut sent = 0;
    for (data, request, fds) in &jobs {
        if pending.len() >= BATCH_IN_FLIGHT {
            let status = pending.pop_front().expect("not empty");
            out.push(read_reply_of_batch(server, status, &mut broken));
            if broken {
                break;
            }
        }
        match send_fork(server, data, daemon, env, request, fds) {
            Ok(status) => {
                pending.push_back(status);
                sent += 1;
            }
            Err(f) => {
                failure = Some(f);
                break;
            }
        }
    }
    if sent == 0 && matches!(failure, Some(ForkFailure::NotSent(_))) && restart.is_some() {
        // The server died just now, before taking anything: replace it and go the careful
        // way.
        retire(slot.take());
        return one_by_one(slot, restart, jobs, daemon, env);
    }
    // What was sent is the server's now: close ours while it forks.
    let unsent = jobs.split_off(sent);
    drop(jobs);
    for status in pending {
        if broken {
            // After an answer that went wrong the stream is out of step: no more reading.
            drop(status);
            out.push(Err(Error::new(
                ErrorKind::ForkServer,
                "fork server: no answer read, an earlier answer of the batch went wrong",
            )));
        } else {
            out.push(read_reply_of_batch(server, status, &mut broken));
        }
    }
    let mut unsent = unsent.into_iter();
    if let Some(f) = failure {
        broken |= !matches!(f, ForkFailure::Refused(_));
        unsent.next(); // the job whose request failed
        out.push(Err(f.into_error()));
    }
    out.extend(unsent.map(|_| Err(not_started())));
    if broken {
        // The stream may be out of step with the server: replace it (it is restarted on
        // the next request, or, for a private server, reported dead from then on).
        retire(slot.take());
    }
    out
}

/// At most this many requests of a batch wait for their answers at once.
const BATCH_IN_FLIGHT: usize = 16;

/// Reads the answer to a request of a batch; a failure other than the server's refusal
/// marks the stream `broken`.
fn read_reply_of_batch(
    server: &mut Server,
    status: OwnedFd,
    broken: &mut bool,
) -> Result<(u32, OwnedFd, OwnedFd)> {
    read_fork_reply(server, status).map_err(|f| {
        *broken |= !matches!(f, ForkFailure::Refused(_));
        f.into_error()
    })
}

/// A job of a batch, taken apart: its data socket, its request's bytes and fds.
type BatchJob = (OwnedFd, Vec<u8>, Vec<Fd>);

/// Sends a batch's requests the careful way, one after the other (each may start or
/// replace the server).
fn one_by_one(
    slot: &mut Option<Server>,
    restart: Option<fn() -> Result<Server>>,
    jobs: Vec<BatchJob>,
    daemon: bool,
    env: &[(OsString, Option<OsString>)],
) -> Vec<Result<(u32, OwnedFd, OwnedFd)>> {
    jobs.into_iter()
        .map(|(data, request, fds)| {
            let fds = fds.into_iter().map(Fd::into_owned).collect();
            fork_via(
                slot,
                restart,
                data,
                daemon,
                env,
                Message::from_parts(request, fds),
            )
        })
        .collect()
}
