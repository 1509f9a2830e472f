//! The fork server: a single-threaded process, started once by the spawn method, that
//! forks children on request.
//!
//! The parent sends `Fork { daemon, env }` with two fds: the child's end of its data socket,
//! and the write end of a status socket. The server forks; the child serves its request on
//! the data socket exactly like a spawned child; the server replies with the pid and a pidfd
//! of the child, and when it reaps the child it writes the exit status (8 bytes) on the
//! status socket. The server watches its parent through a pidfd: when the parent process
//! ends, it kills its daemonic children and exits. A dead server is noticed and replaced on
//! the next request.
//!
//! The parent's side asks for one child (`connection.rs`) or a batch (`batch.rs`), of the
//! process-wide server (`global.rs`) or of a `ForkServer` of one's own (`own.rs`); the
//! messages are in `protocol.rs`, the server's loop in `serve.rs`.

mod batch;
mod connection;
#[cfg(fuzzing)]
pub(crate) mod fuzz;
pub(crate) mod global;
pub(crate) mod own;
mod protocol;
mod serve;

use std::os::fd::OwnedFd;

use mproc_wire::{Fd, FrameReader};

use crate::child_env::Snapshot;
use crate::error::{Error, Result};
use crate::{Builder, Child};

pub(crate) use batch::{ForkJob, fork_children};
pub(crate) use global::{ServerGuard, fork_child, lock_server};

/// A running fork server, as its parent holds it: the process, the socket to it.
pub(crate) struct Server {
    child: Child<()>,
    control: OwnedFd,
    reader: FrameReader,
    /// The environment and directory the server started with.
    born: Snapshot,
}

impl Server {
    /// Starts a fork server by `builder` (which names its start method): a hidden child
    /// serving requests on the other end of a fresh socket.
    fn start(builder: Builder) -> Result<Server> {
        let (ours, theirs) = mproc_sys::socketpair()
            .map_err(|e| Error::io("creating the fork server's socket", e))?;
        let born = Snapshot::now();
        let child = builder
            .name("ForkServer")
            .spawn_hidden(serve::serve, Fd::from(theirs))?;
        Ok(Server {
            child,
            control: ours,
            reader: FrameReader::new(),
            born,
        })
    }
}
