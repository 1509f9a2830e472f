//! The process-wide fork server of the forkserver start method: started on first use,
//! replaced when it dies.

use std::ffi::OsString;
use std::os::fd::OwnedFd;
use std::sync::Mutex;

use mproc_wire::Message;

use super::Server;
use super::connection::fork_via;
use crate::error::Result;
use crate::{Builder, StartMethod};

static SERVER: Mutex<Option<Server>> = Mutex::new(None);

/// The lock of the fork server connection (held across a fork; see `ForkGuards`).
pub(crate) type ServerGuard<'a> = std::sync::MutexGuard<'a, Option<Server>>;

pub(crate) fn lock_server() -> ServerGuard<'static> {
    SERVER.lock().unwrap_or_else(|p| p.into_inner())
}

/// Returns the pid of this process's fork server, if one is running (for diagnostics).
///
/// ```
/// // No child was started through the fork server in this doctest.
/// assert_eq!(mproc_process::fork_server_pid(), None);
/// ```
pub fn fork_server_pid() -> Option<u32> {
    lock_server()
        .as_ref()
        .filter(|s| s.child.is_alive())
        .map(|s| s.child.pid())
}

/// Starts the process-wide server, by the spawn method: a fresh start of this program.
pub(super) fn start_server() -> Result<Server> {
    Server::start(Builder::new().start_method(StartMethod::Spawn))
}

/// Asks the fork server (starting or restarting it as needed) for a child whose data socket
/// is `data`. Returns its pid, a pidfd, and the socket its exit status will arrive on.
pub(crate) fn fork_child(
    data: OwnedFd,
    daemon: bool,
    env: &[(OsString, Option<OsString>)],
    request: Message,
) -> Result<(u32, OwnedFd, OwnedFd)> {
    fork_via(
        &mut lock_server(),
        Some(start_server),
        data,
        daemon,
        env,
        request,
    )
}

/// Starts the process-wide fork server now, if it is not running, and returns its pid.
/// Children of the forkserver method are forks of that server, a fresh start of this
/// program: starting it early (before a library that dislikes `fork()`, such as MPI, is
/// initialised) keeps every later child clear of what this process set up since.
///
/// ```
/// mproc_process::init();
/// let pid = mproc_process::start_fork_server()?;
/// assert_eq!(mproc_process::fork_server_pid(), Some(pid));
/// # Ok::<(), mproc_process::Error>(())
/// ```
///
/// # Errors
///
/// As spawning a child by the spawn method.
pub fn start_fork_server() -> Result<u32> {
    let mut slot = lock_server();
    if let Some(server) = slot.as_ref().filter(|s| s.child.is_alive()) {
        return Ok(server.child.pid());
    }
    let server = start_server()?;
    let pid = server.child.pid();
    super::connection::retire(slot.replace(server));
    Ok(pid)
}
