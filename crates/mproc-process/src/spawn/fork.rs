//! The fork method: a copy of this process runs the function, with mproc's locks held
//! across the fork.

use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::Arc;

use mproc_sys::ForkOutcome;
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::{Builder, child_socketpair};
use crate::child::Child;
use crate::child::proc::{Proc, Reaper};
use crate::child::registry::{self, Registry};
use crate::error::{Error, ErrorKind, Result};
use crate::forkserver;
use crate::info::{self, ProcessInfo};
use crate::run;
use crate::start_method::StartMethod;

impl Builder {
    /// The fork method: the child gets `arg` in its copy of memory, no serialization.
    pub(super) fn fork<A, R>(
        self,
        me: ProcessInfo,
        f: fn(A) -> R,
        arg: A,
        hidden: bool,
    ) -> Result<Child<R>>
    where
        A: Serialize,
        R: Serialize + DeserializeOwned,
    {
        if let Some(reason) = crate::start_method::fork_refusal() {
            return Err(Error::new(
                ErrorKind::ForkRefused,
                format!(
                    "the fork start method is refused in this process: {reason}; use spawn or forkserver"
                ),
            ));
        }
        // The argument walked as a message would be (nothing is written): the fds it
        // holds, which the child keeps, and a mark "in flight" held across the fork by each
        // queue in it until the child has registered as its holder. A value that will not
        // serialize fails here, as it does under the other methods.
        let mut keep =
            mproc_wire::handover(&arg, mproc_wire::Handover::BeforeFork).map_err(|e| {
                mproc_wire::release_held();
                Error::new(ErrorKind::Encode, "the argument could not be serialized").with_source(e)
            })?;
        let (ours, theirs) = child_socketpair().inspect_err(|_| mproc_wire::release_held())?;
        let parent = info::current_process();
        // What the parent buffered must not be printed twice (Python flushes here too).
        let _ = std::io::Write::flush(&mut std::io::stdout());
        let _ = std::io::Write::flush(&mut std::io::stderr());
        let guards = ForkGuards::acquire();
        match mproc_sys::fork(self.permit) {
            Err(e) if e.kind() == std::io::ErrorKind::Unsupported => {
                mproc_wire::release_held();
                Err(Error::new(ErrorKind::ForkRefused, e.to_string()))
            }
            Err(e) => {
                mproc_wire::release_held();
                Err(Error::io("fork failed", e))
            }
            Ok(ForkOutcome::Child) => {
                let _exit = run::ExitOnUnwind;
                let parent_pid = parent.pid;
                keep.push(theirs.as_raw_fd());
                guards.into_child(me, parent, theirs);
                drop(ours);
                // The queues in the argument take this process as a holder, then their
                // marks "in flight" go. The copies of the parent's pipe ends, queue
                // sockets and child handles that are not in the argument go too: held
                // here, they would keep the parent's streams from ever ending (a reader
                // waiting for `Disconnected` would wait for ever).
                let _ = mproc_wire::handover(&arg, mproc_wire::Handover::Child);
                mproc_wire::release_held();
                mproc_sys::retire_owned_fds_except(&keep);
                if self.daemon {
                    let _ = mproc_sys::set_parent_death_signal(mproc_sys::SIGKILL);
                    if mproc_sys::getppid() != parent_pid {
                        mproc_sys::exit_now(1);
                    }
                }
                crate::child_env::apply_env(&self.env);
                let _ = mproc_sys::stdin_from_null();
                run::run_and_finish(move || f(arg))
            }
            Ok(ForkOutcome::Parent(pid)) => {
                drop(guards);
                drop(theirs);
                mproc_wire::release_held();
                let pidfd = pidfd_or_kill(pid)
                    .map_err(|e| Error::io("opening a pidfd for the child", e))?;
                let proc = Arc::new(Proc::new(
                    ProcessInfo { pid, ..me },
                    StartMethod::Fork,
                    pidfd,
                    Reaper::Direct,
                ));
                Ok(Child::new(proc, ours, !hidden))
            }
        }
    }
}

/// Opens the pidfd of our new, unreaped child; if that fails, kills and reaps the child
/// (its pid cannot have been reused yet) so that nothing runs, or lingers, untracked.
pub(crate) fn pidfd_or_kill(pid: u32) -> std::io::Result<OwnedFd> {
    mproc_sys::pidfd_open(pid).inspect_err(|_| {
        let _ = mproc_sys::kill_pid(pid, mproc_sys::SIGKILL);
        let _ = mproc_sys::wait_pid(pid, true);
    })
}

/// mproc's own locks, held across `fork` (as `pthread_atfork` would), so that no other
/// thread can leave one locked, or half-updated, in the child's copy of memory. In the lock
/// order used everywhere: server, registry, current process, reply socket.
struct ForkGuards {
    server: forkserver::ServerGuard<'static>,
    registry: std::sync::MutexGuard<'static, Registry>,
    current: info::CurrentGuard,
    reply: run::ReplyGuard,
}

impl ForkGuards {
    fn acquire() -> Self {
        let server = forkserver::lock_server();
        let registry = registry::lock_registry();
        let current = info::lock_current();
        let reply = run::lock_reply();
        Self {
            server,
            registry,
            current,
            reply,
        }
    }

    /// In the forked child: forget the parent's children, fork server and reply socket
    /// (they are not ours), record who we are and where we reply, then release the locks.
    fn into_child(mut self, me: ProcessInfo, parent: ProcessInfo, reply: OwnedFd) {
        let server = self.server.take();
        let children = std::mem::take(&mut *self.registry);
        let inherited_reply = self.reply.replace(reply);
        let old = self.current.replace(info::child_current(me, Some(parent)));
        drop(self);
        // The inherited reply socket must close (its reader would wait for us otherwise).
        drop(inherited_reply);
        // The rest is forgotten, not dropped: this child ends soon, and dropping would run
        // the parent's bookkeeping (locks, waits, frees) on freshly copied pages, the main
        // cost of a fork. Their fds (pidfds, result sockets) are pointed at /dev/null
        // once the argument has been walked (see `fork`).
        std::mem::forget((server, children, old));
    }
}
