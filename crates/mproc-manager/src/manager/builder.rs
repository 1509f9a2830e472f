//! `Builder`: a manager server's options, then the server started with them.

use std::fmt;
use std::marker::PhantomData;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use mproc_pipe::Address;
use mproc_process::{ForkPermit, StartMethod};
use serde_bytes::ByteBuf;

use super::{Manager, STOP_TIMEOUT};
use crate::client;
use crate::error::{Error, ErrorKind, Result};
use crate::registry::Registry;
use crate::server::{self, Limits, ServerArgs};

/// How long a new server may take to listen.
const START_TIMEOUT: Duration = Duration::from_secs(30);

/// The default frame limit: the largest request or reply.
const DEFAULT_MAX_MESSAGE: u64 = 64 << 20;

/// The default cap on connections open at once.
const DEFAULT_MAX_CONNECTIONS: usize = 1024;

/// Options for a manager's server: where it listens, its key, its limits, its start method
/// and the custom types it serves.
///
/// ```
/// # mproc_process::init();
/// let manager = mproc_manager::Manager::builder()
///     .max_connections(64)
///     .max_message(1 << 20)
///     .start()?;
/// let list = manager.list::<Vec<u8>>()?;
/// let err = list.push(&vec![0; 2 << 20]).unwrap_err();
/// assert_eq!(err.kind(), mproc_manager::ErrorKind::TooLarge);
/// # Ok::<(), mproc_manager::Error>(())
/// ```
pub struct Builder<R = ()> {
    address: Option<String>,
    authkey: Option<Vec<u8>>,
    limits: Limits,
    start_method: Option<StartMethod>,
    fork_permit: Option<ForkPermit>,
    _registry: PhantomData<fn() -> R>,
}

impl<R> fmt::Debug for Builder<R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Builder")
            .field("address", &self.address)
            .field("limits", &self.limits)
            .field("start_method", &self.start_method)
            .field("registry", &std::any::type_name::<R>())
            .finish_non_exhaustive()
    }
}

impl Default for Builder<()> {
    fn default() -> Self {
        Self::new()
    }
}

impl Builder<()> {
    /// A server on a private local socket with a random key, no custom types, at most 1024
    /// connections and 64 MiB per request or reply.
    pub fn new() -> Self {
        Builder {
            address: None,
            authkey: None,
            limits: Limits {
                max_message: DEFAULT_MAX_MESSAGE,
                max_connections: DEFAULT_MAX_CONNECTIONS,
            },
            start_method: None,
            fork_permit: None,
            _registry: PhantomData,
        }
    }
}

impl<R: Registry> Builder<R> {
    /// Serves the custom types `S` (a tuple of [`SharedObject`](crate::SharedObject) types,
    /// `(A,)` or `(A, B)` and so on, up to eight): Python's `BaseManager.register`.
    pub fn register<S: Registry>(self) -> Builder<S> {
        Builder {
            address: self.address,
            authkey: self.authkey,
            limits: self.limits,
            start_method: self.start_method,
            fork_permit: self.fork_permit,
            _registry: PhantomData,
        }
    }

    /// Where the server listens: `"127.0.0.1:50000"` (TCP; port 0 picks a free one), a
    /// socket path with a `/`, or a name in the abstract namespace. Default: a fresh name.
    pub fn address(mut self, address: &str) -> Self {
        self.address = Some(address.to_string());
        self
    }

    /// The key a client must know: both sides prove it with HMAC, and the handshake never
    /// sends it. Default: 32 random bytes. A serialized proxy carries its manager's key (see
    /// the crate's docs, "Connections").
    pub fn authkey(mut self, authkey: &[u8]) -> Self {
        self.authkey = Some(authkey.to_vec());
        self
    }

    /// The largest request or reply, in bytes; a larger one is refused with
    /// [`ErrorKind::TooLarge`] (a client that sends one anyway is dropped).
    /// At least 4 KiB: smaller would refuse the server's own error replies.
    pub fn max_message(mut self, bytes: u64) -> Self {
        self.limits.max_message = bytes.max(4 << 10);
        self
    }

    /// The most connections open at once (each process uses one per thread that calls at
    /// the same time); a client past it gets [`ErrorKind::Busy`].
    pub fn max_connections(mut self, n: usize) -> Self {
        self.limits.max_connections = n;
        self
    }

    /// The start method of the server process (default: the process-wide one).
    pub fn start_method(mut self, method: StartMethod) -> Self {
        self.start_method = Some(method);
        self
    }

    /// Allows the fork start method while other threads exist, on the permit's promise
    /// (see [`mproc_process::Builder::fork_permit`]).
    pub fn fork_permit(mut self, permit: ForkPermit) -> Self {
        self.fork_permit = Some(permit);
        self
    }

    /// Starts the server and returns the manager that owns it.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Start`] when the process cannot start (no `mproc::init()` in `main`,
    /// say) or cannot listen on the address.
    pub fn start(self) -> Result<Manager> {
        static STARTED: AtomicU64 = AtomicU64::new(0);
        let n = STARTED.fetch_add(1, Ordering::Relaxed) + 1;
        let authkey = match self.authkey {
            Some(k) => k,
            None => {
                let mut k = vec![0; 32];
                mproc_sys::random_bytes(&mut k)
                    .map_err(|e| Error::new(ErrorKind::Io, "drawing a key").with_source(e))?;
                k
            }
        };
        let address = match self.address {
            Some(a) => a,
            None => {
                let mut tag = [0u8; 8];
                let _ = mproc_sys::random_bytes(&mut tag);
                format!(
                    "mproc-manager-{}-{n}-{:016x}",
                    std::process::id(),
                    u64::from_le_bytes(tag)
                )
            }
        };
        let mut token = [0u8; 8];
        mproc_sys::random_bytes(&mut token)
            .map_err(|e| Error::new(ErrorKind::Io, "drawing a token").with_source(e))?;
        let owner_token = u64::from_le_bytes(token);
        let (mut ready, theirs) = mproc_pipe::pipe::<Result<String, String>>()
            .map_err(|e| Error::pipe("making the server's start pipe", e))?;
        let args = ServerArgs {
            address,
            authkey: ByteBuf::from(authkey.clone()),
            limits: self.limits,
            owner_token,
            ready: theirs,
        };
        let mut builder = mproc_process::Builder::new()
            .name(format!("SyncManager-{n}"))
            .daemon(true);
        if let Some(m) = self.start_method {
            builder = builder.start_method(m);
        }
        if let Some(permit) = self.fork_permit {
            builder = builder.fork_permit(permit);
        }
        let mut child = builder.spawn(server::serve::<R>, args).map_err(|e| {
            Error::new(ErrorKind::Start, "starting the manager's server").with_source(e)
        })?;
        let bound = match ready.recv_timeout(START_TIMEOUT) {
            Ok(Ok(bound)) => bound,
            Ok(Err(message)) => {
                let _ = child.wait_timeout(STOP_TIMEOUT);
                return Err(Error::new(ErrorKind::Start, message));
            }
            Err(e) => {
                let _ = child.kill();
                let _ = child.wait_timeout(STOP_TIMEOUT);
                return Err(
                    Error::new(ErrorKind::Start, "the manager's server did not come up")
                        .with_source(e),
                );
            }
        };
        let address: Address = bound
            .parse()
            .map_err(|e| Error::pipe("reading the server's address", e))?;
        Ok(Manager {
            endpoint: client::endpoint(&address, &authkey),
            pid: Some(child.pid()),
            owner_token,
            server: Some(Mutex::new(Some(child))),
        })
    }

    /// Starts a server listening on `address` for clients that know `authkey` (see
    /// [`address`](Self::address) for the forms): Python's
    /// `BaseManager(address, authkey).start()`.
    pub fn serve(self, address: &str, authkey: &[u8]) -> Result<Manager> {
        self.address(address).authkey(authkey).start()
    }
}
