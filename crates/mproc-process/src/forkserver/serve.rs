//! The fork server's loop, in the server process: a child forked per request, each child's
//! end reported to its parent.

use std::os::fd::{AsFd, OwnedFd};
use std::time::{Duration, Instant};

use mproc_sys::ForkOutcome;
use mproc_wire::{ErrorKind as WireKind, Fd, FrameReader, Message};

use super::protocol::{ForkReply, ForkRequest, ForkedRef, limits};

/// Sends a reply that carries no fd.
fn send_reply(control: &OwnedFd, reply: &ForkReply) -> std::result::Result<(), mproc_wire::Error> {
    mproc_wire::encode(reply).and_then(|m| mproc_wire::write_message(control.as_fd(), m, &limits()))
}

/// Sends `Forked` with the child's pidfd borrowed beside the bytes (the server keeps its
/// own; nothing is duplicated on the way).
fn send_forked(
    control: &OwnedFd,
    pid: u32,
    pidfd: &OwnedFd,
) -> std::result::Result<(), mproc_wire::Error> {
    let msg = mproc_wire::encode(&ForkedRef::Forked { pid, pidfd: 0 })?;
    mproc_wire::write_frame(control.as_fd(), msg.bytes(), &[pidfd.as_fd()], &limits())
}

struct Running {
    pidfd: OwnedFd,
    status: OwnedFd,
    daemon: bool,
}

/// The server's main loop (runs in the server process).
pub(super) fn serve(control: Fd) {
    let control = control.into_owned();
    let server_pid = std::process::id();
    // Watch the parent *process* (not the thread that started us) through a pidfd.
    let ppid = mproc_sys::getppid();
    if crate::info::parent_process().map(|p| p.pid()) != Some(ppid) {
        return; // the parent is already gone
    }
    let Ok(parent) = mproc_sys::pidfd_open(ppid) else {
        return;
    };
    if mproc_sys::getppid() != ppid {
        return;
    }
    // Each child flushes stdout when it ends: made here once, the handle is every child's
    // already, rather than made (allocated, locked, flushed) by each of them.
    let _ = std::io::Write::flush(&mut std::io::stdout());
    let mut reader = FrameReader::new();
    let mut children: Vec<Running> = Vec::new();
    loop {
        let mut fds = vec![control.as_fd(), parent.as_fd()];
        fds.extend(children.iter().map(|c| c.pidfd.as_fd()));
        // A read can run into the next request (a batch sends several at once): one
        // already in the buffer is served without waiting for the socket.
        let buffered = reader.has_buffered_message();
        let Ok(ready) = mproc_sys::poll_readable(&fds, buffered.then_some(Duration::ZERO)) else {
            break;
        };
        if ready[1] {
            break; // the parent process ended
        }
        // Report and forget the children that ended.
        let mut i = 0;
        children.retain(|c| {
            i += 1;
            if !ready[1 + i] {
                return true;
            }
            if let Ok(Some(st)) = mproc_sys::wait_pidfd(c.pidfd.as_fd(), true) {
                let _ = mproc_sys::send_with_fds(c.status.as_fd(), &st.to_i64().to_le_bytes(), &[]);
            }
            false
        });
        if !ready[0] && !buffered {
            continue;
        }
        let msg = match reader.read(control.as_fd(), &limits(), Some(Instant::now())) {
            Ok(msg) => msg,
            Err(e) if e.kind() == WireKind::Timeout => continue,
            Err(_) => break, // the parent closed the connection, or sent garbage
        };
        let reply = match mproc_wire::decode::<ForkRequest>(msg) {
            Err(e) => ForkReply::Failed(e.to_string()),
            Ok(req) => match mproc_sys::fork(None) {
                Err(e) => ForkReply::Failed(e.to_string()),
                Ok(ForkOutcome::Child) => {
                    let _exit = crate::run::ExitOnUnwind;
                    // Close everything of the server's; keep only the data socket, which
                    // replaces (and so closes) the server's own reply socket. Fds are
                    // closed, memory is forgotten rather than freed: every page `free`
                    // writes here is a page copied (the server's heap is shared with
                    // this child until one of them writes).
                    children.drain(..).for_each(drop);
                    std::mem::forget(children);
                    drop(control);
                    drop(parent);
                    drop(req.status);
                    // It may hold the next requests, with their fds: not this child's.
                    if reader.holds_fds() {
                        drop(reader);
                    } else {
                        std::mem::forget(reader);
                    }
                    crate::run::set_reply_socket(req.data.into_owned());
                    crate::child_env::apply_env(&req.changes);
                    crate::child_env::apply_env(&req.env);
                    if let Some(cwd) = &req.cwd
                        && let Err(e) = std::env::set_current_dir(cwd)
                    {
                        crate::diag::warning!("cannot enter the parent's directory {cwd:?}: {e}");
                    }
                    let fds = req.request_fds.into_iter().map(Fd::into_owned).collect();
                    let msg = Message::from_parts(req.request, fds);
                    crate::run::serve_message(msg, req.daemon.then_some(server_pid))
                }
                Ok(ForkOutcome::Parent(pid)) => {
                    // The parent waits for this reply: answer first, and close what the
                    // child took (its socket, its request's fds) afterwards.
                    let handed_over = (req.data, req.request_fds);
                    // A child we cannot track must not run: kill and reap it, and say so.
                    let sent = match crate::spawn::fork::pidfd_or_kill(pid) {
                        Ok(pidfd) => {
                            let sent = send_forked(&control, pid, &pidfd);
                            children.push(Running {
                                pidfd,
                                status: req.status.into_owned(),
                                daemon: req.daemon,
                            });
                            sent
                        }
                        Err(e) => send_reply(
                            &control,
                            &ForkReply::Failed(format!("cannot track the child: {e}")),
                        ),
                    };
                    drop(handed_over);
                    if sent.is_err() {
                        break;
                    }
                    continue;
                }
            },
        };
        if send_reply(&control, &reply).is_err() {
            break;
        }
    }
    for c in &children {
        if c.daemon {
            let _ = mproc_sys::pidfd_send_signal(c.pidfd.as_fd(), mproc_sys::SIGKILL);
        }
    }
}
