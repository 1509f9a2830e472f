//! `Manager`: a handle to one manager's server, from its start (or a connection to it) to its
//! shutdown.
//!
//! `builder` starts the server; `objects` makes the shared objects it holds.

pub(crate) mod builder;
mod objects;

use std::fmt;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use mproc_pipe::Address;
use mproc_process::Child;

use crate::client::{self, Endpoint, deadline_after};
use crate::error::{Error, ErrorKind, Result};
use crate::protocol::{Out, Request};
use builder::Builder;

/// How long `shutdown` (and a drop) waits for the server to end before it kills it.
const STOP_TIMEOUT: Duration = Duration::from_secs(2);

/// A manager: a server process holding shared objects, and the proxies to reach them
/// (Python's `multiprocessing.Manager()`, `SyncManager`, `BaseManager`).
///
/// [`Manager::start`] starts a server (a daemonic child, under the default start method)
/// listening on a private local socket; [`Manager::serve`] starts one on a TCP address or
/// socket path for other programs and machines, which reach it with [`Manager::connect`].
/// Dropping the `Manager` that started the server (or calling [`shutdown`](Self::shutdown))
/// stops it, and the server dies with its owner, even when the owner is SIGKILLed.
///
/// Each method below makes a new object in the server and returns its proxy. A proxy is
/// typed, cheap to clone, usable from many threads at once, and transferable: pass it to a
/// child as a spawn argument, send it through a pipe or a queue, or store it in another
/// manager object; every process opens its own connection on first use. Objects live as
/// long as the manager (Python frees one with its last proxy; a proxy on its way to another
/// process could then point at nothing).
///
/// ```
/// # mproc_process::init();
/// let manager = mproc_manager::Manager::start()?;
/// let squares = manager.dict::<u64, u64>()?;
/// let mut child = mproc_process::spawn(
///     |d: mproc_manager::Dict<u64, u64>| {
///         for i in 0..4 {
///             d.insert(i, i * i).unwrap();
///         }
///     },
///     squares.clone(),
/// )?;
/// child.join().unwrap();
/// assert_eq!(squares.get(&3)?, Some(9));
/// manager.shutdown()?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct Manager {
    endpoint: Arc<Endpoint>,
    /// The server process, for the manager that started it.
    server: Option<Mutex<Option<Child<()>>>>,
    pid: Option<u32>,
    /// What `Shutdown` carries (the owner's only).
    owner_token: u64,
}

impl fmt::Debug for Manager {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Manager")
            .field("address", self.endpoint.address())
            .field("pid", &self.pid)
            .field("owner", &self.server.is_some())
            .finish()
    }
}
impl Manager {
    /// Starts a server with the default options ([`Builder::new`]).
    pub fn start() -> Result<Manager> {
        Builder::new().start()
    }

    /// Python's `Manager()`: the same as [`start`](Self::start) (the server starts now).
    ///
    /// ```
    /// # mproc_process::init();
    /// let manager = mproc_manager::Manager::new()?;
    /// assert!(manager.pid().is_some());
    /// # Ok::<(), mproc_manager::Error>(())
    /// ```
    pub fn new() -> Result<Manager> {
        Self::start()
    }

    /// Options for a server.
    pub fn builder() -> Builder<()> {
        Builder::new()
    }

    /// Starts a server on `address` (`"127.0.0.1:50000"`, a socket path or a name) for
    /// clients that know `authkey`, which reach it with [`connect`](Self::connect).
    ///
    /// ```
    /// # mproc_process::init();
    /// let server = mproc_manager::Manager::serve("127.0.0.1:0", b"secret")?;
    /// let jobs = server.list::<u32>()?;
    /// server.publish("jobs", &jobs)?;
    /// // In another program, on another machine:
    /// let client = mproc_manager::Manager::connect(&server.address().to_string(), b"secret")?;
    /// let jobs = client.lookup::<mproc_manager::List<u32>>("jobs")?;
    /// jobs.push(&1)?;
    /// assert!(mproc_manager::Manager::connect(&server.address().to_string(), b"wrong").is_err());
    /// # Ok::<(), mproc_manager::Error>(())
    /// ```
    pub fn serve(address: &str, authkey: &[u8]) -> Result<Manager> {
        Builder::new().serve(address, authkey)
    }

    /// Connects to a server started by another process or program (Python's
    /// `BaseManager(address, authkey).connect()`). The returned manager does not own the
    /// server: dropping it leaves the server running.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Authentication`] for a wrong key, [`ErrorKind::Disconnected`] when nobody
    /// listens there, [`ErrorKind::InvalidInput`] for an address that does not parse.
    pub fn connect(address: &str, authkey: &[u8]) -> Result<Manager> {
        let address: Address = address
            .parse()
            .map_err(|e: mproc_pipe::Error| Error::new(ErrorKind::InvalidInput, e.to_string()))?;
        let manager = Manager {
            endpoint: client::endpoint(&address, authkey),
            server: None,
            pid: None,
            owner_token: 0,
        };
        manager.object_count()?;
        Ok(manager)
    }

    /// Where the server listens (for TCP port 0, with the port it got).
    pub fn address(&self) -> &Address {
        self.endpoint.address()
    }

    /// The server's pid, for the manager that started it.
    pub fn pid(&self) -> Option<u32> {
        self.pid
    }

    /// How many objects the server holds.
    pub fn object_count(&self) -> Result<u64> {
        match self.request(Request::Stats)? {
            Out::Stats { objects, .. } => Ok(objects),
            _ => Err(Error::unexpected()),
        }
    }

    /// Stops the server (Python's `shutdown`): every proxy's next call returns
    /// [`ErrorKind::Disconnected`]. Waits up to 2 s for the server to end, then kills it.
    /// Calling it again does nothing.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::InvalidState`] for a manager made by [`connect`](Self::connect): only
    /// the owner stops the server.
    pub fn shutdown(&self) -> Result<()> {
        let Some(server) = &self.server else {
            return Err(Error::new(
                ErrorKind::InvalidState,
                "only the manager that started the server can shut it down",
            ));
        };
        let mut server = server.lock().unwrap_or_else(PoisonError::into_inner);
        let Some(mut child) = server.take() else {
            return Ok(());
        };
        let _ = self.endpoint.call(
            &Request::Shutdown {
                token: self.owner_token,
            },
            deadline_after(STOP_TIMEOUT),
        );
        if child.wait_timeout(STOP_TIMEOUT).is_err() {
            let _ = child.kill();
            let _ = child.wait_timeout(STOP_TIMEOUT);
        }
        // The server ends without unbinding: its socket file is ours to remove.
        if let Address::Path(path) = self.endpoint.address() {
            let _ = std::fs::remove_file(path);
        }
        Ok(())
    }

    fn request(&self, request: Request) -> Result<Out> {
        self.endpoint.call(&request, None)
    }
}

impl Drop for Manager {
    fn drop(&mut self) {
        if self.server.is_some() {
            let _ = self.shutdown();
        }
    }
}
