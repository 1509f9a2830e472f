//! [`ForkServer`]: a fork server of one's own, forked from this process.

use std::ffi::OsString;
use std::os::fd::OwnedFd;
use std::sync::Mutex;

use mproc_sys::ForkPermit;
use mproc_wire::Message;

use super::Server;
use super::connection::{fork_via, retire};
use super::global::ServerGuard;
use crate::error::Result;
use crate::{Builder, StartMethod};

/// A fork server of your own, forked from this process: the children it starts are
/// forks of this process *as it was when the server started*, so they see the memory of
/// that moment (statics, anything set up before), as fork children do, while this
/// process may have started threads since. Their environment and working directory are
/// this process's at each spawn, as for every child.
///
/// This is how a pool with the fork start method replaces its workers: its manager thread
/// cannot fork the (by then multi-threaded) parent, so it asks the server. Children start
/// with [`Builder::fork_server`]; their [`start_method`](crate::Child::start_method) is `Fork`.
/// The server copies every fd this process had when it started (as any fork does), except
/// mproc's own handles (pipe ends, queue sockets, children), which a fork child closes
/// (see [`StartMethod::Fork`]), and keeps them open while it runs; dropping the last
/// handle kills it. A server that died is
/// not replaced (its snapshot is gone): starting a child through it fails with
/// [`ErrorKind::ForkServer`](crate::ErrorKind::ForkServer).
///
/// ```
/// use std::sync::Arc;
/// use mproc_process::{Builder, ForkServer, StartMethod};
/// fn answer(_: ()) -> u32 { 42 }
/// # mproc_process::init();
/// let server = Arc::new(ForkServer::start(None)?);
/// let mut child = Builder::new().fork_server(server.clone()).spawn(answer, ())?;
/// assert_eq!(child.start_method(), StartMethod::Fork);
/// assert_eq!(child.join()?, 42);
/// # Ok::<(), mproc_process::Error>(())
/// ```
pub struct ForkServer {
    server: Mutex<Option<Server>>,
}

impl std::fmt::Debug for ForkServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ForkServer")
            .field("pid", &self.pid())
            .finish()
    }
}

impl ForkServer {
    /// Forks the server from this process now.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::ForkRefused`](crate::ErrorKind::ForkRefused) when other threads exist
    /// and no `permit` is given (the fork method's rule),
    /// [`ErrorKind::NotInitialized`](crate::ErrorKind::NotInitialized) without `init()`,
    /// [`ErrorKind::Io`](crate::ErrorKind::Io) when the OS refuses.
    pub fn start(permit: Option<ForkPermit>) -> Result<Self> {
        let mut builder = Builder::new().start_method(StartMethod::Fork);
        if let Some(p) = permit {
            builder = builder.fork_permit(p);
        }
        Ok(ForkServer {
            server: Mutex::new(Some(Server::start(builder)?)),
        })
    }

    /// Returns the server's pid while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.lock()
            .as_ref()
            .filter(|s| s.child.is_alive())
            .map(|s| s.child.pid())
    }

    pub(super) fn lock(&self) -> ServerGuard<'_> {
        self.server.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(crate) fn fork_child(
        &self,
        data: OwnedFd,
        daemon: bool,
        env: &[(OsString, Option<OsString>)],
        request: Message,
    ) -> Result<(u32, OwnedFd, OwnedFd)> {
        fork_via(&mut self.lock(), None, data, daemon, env, request)
    }
}

impl Drop for ForkServer {
    fn drop(&mut self) {
        retire(self.lock().take());
    }
}
