//! `Manager`: starts, reaches and stops a manager's server, and makes its shared objects.

use std::borrow::Borrow;
use std::fmt;
use std::marker::PhantomData;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use mproc_pipe::Address;
use mproc_process::{Child, ForkPermit, StartMethod};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_bytes::ByteBuf;

use crate::Proxy;
use crate::client::{self, Endpoint, deadline_after};
use crate::error::{Error, ErrorKind, Result};
use crate::handle::{Handle, Sealed, enc, enc_all, enc_pairs};
use crate::protocol::{Init, Kind, Out, Request};
use crate::proxy::{
    Array, Barrier, Condition, Dict, Event, JoinableQueue, List, Lock, Namespace, Queue, RLock,
    Semaphore, Set, Value,
};
use crate::registry::{Registry, Shared, SharedObject};
use crate::server::{self, Limits, ServerArgs};

/// How long a new server may take to listen.
const START_TIMEOUT: Duration = Duration::from_secs(30);

/// How long `shutdown` (and a drop) waits for the server to end before it kills it.
const STOP_TIMEOUT: Duration = Duration::from_secs(2);

/// The default frame limit: the largest request or reply.
const DEFAULT_MAX_MESSAGE: u64 = 64 << 20;

/// The default cap on connections open at once.
const DEFAULT_MAX_CONNECTIONS: usize = 1024;

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
    /// Serves the custom types `S` (a tuple of [`SharedObject`] types, `(A,)` or `(A, B)`
    /// and so on, up to eight): Python's `BaseManager.register`.
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

    fn create<P: Sealed>(&self, kind: Kind, init: Init) -> Result<P> {
        let request = Request::Create {
            kind,
            type_name: P::type_name(),
            init,
        };
        match self.request(request)? {
            Out::Id(id) => Ok(P::from_handle(Handle::new(Arc::clone(&self.endpoint), id))),
            _ => Err(Error::unexpected()),
        }
    }

    /// A new, empty list (Python's `manager.list()`).
    pub fn list<T: Serialize + DeserializeOwned>(&self) -> Result<List<T>> {
        self.create(Kind::List, Init::Empty)
    }

    /// A new list holding `items`, values or references (Python's `manager.list(sequence)`).
    pub fn list_from<T: Serialize + DeserializeOwned>(
        &self,
        items: impl IntoIterator<Item: Borrow<T>>,
    ) -> Result<List<T>> {
        self.create(Kind::List, Init::Items(enc_all::<T>(items)?))
    }

    /// A new, empty dict (Python's `manager.dict()`).
    pub fn dict<K, V>(&self) -> Result<Dict<K, V>>
    where
        K: Serialize + DeserializeOwned,
        V: Serialize + DeserializeOwned,
    {
        self.create(Kind::Dict, Init::Empty)
    }

    /// A new dict holding `pairs`: a `Vec<(K, V)>`, a slice of pairs, a `HashMap<K, V>`...
    /// (Python's `manager.dict(mapping)`).
    pub fn dict_from<K, V>(
        &self,
        pairs: impl IntoIterator<Item: Borrow<(K, V)>>,
    ) -> Result<Dict<K, V>>
    where
        K: Serialize + DeserializeOwned,
        V: Serialize + DeserializeOwned,
    {
        self.create(Kind::Dict, Init::Pairs(enc_pairs::<K, V>(pairs)?))
    }

    /// A new, empty set (Python's `manager.set()`).
    pub fn set<T: Serialize + DeserializeOwned>(&self) -> Result<Set<T>> {
        self.create(Kind::Set, Init::Empty)
    }

    /// A new value (Python's `manager.Value(typecode, value)`).
    pub fn value<T: Serialize + DeserializeOwned>(&self, value: T) -> Result<Value<T>> {
        self.create(Kind::Value, Init::One(enc(&value)?))
    }

    /// A new fixed-length array holding `items` (Python's `manager.Array(typecode, seq)`).
    pub fn array<T: Serialize + DeserializeOwned>(&self, items: Vec<T>) -> Result<Array<T>> {
        self.create(Kind::Array, Init::Items(enc_all::<T>(&items)?))
    }

    /// A new namespace with no fields (Python's `manager.Namespace()`).
    pub fn namespace(&self) -> Result<Namespace> {
        self.create(Kind::Namespace, Init::Empty)
    }

    /// A new unbounded queue (Python's `manager.Queue()`).
    pub fn queue<T: Serialize + DeserializeOwned>(&self) -> Result<Queue<T>> {
        self.create(Kind::Queue, Init::Count(0))
    }

    /// A new queue that holds at most `maxsize` items (Python's `manager.Queue(maxsize)`).
    ///
    /// # Errors
    ///
    /// [`ErrorKind::InvalidInput`] for 0 (Python's 0 means unbounded: use [`queue`](Self::queue)).
    pub fn bounded_queue<T: Serialize + DeserializeOwned>(
        &self,
        maxsize: usize,
    ) -> Result<Queue<T>> {
        self.create(
            Kind::Queue,
            Init::Count(positive(maxsize, "a bounded queue's size")?),
        )
    }

    /// A new unbounded joinable queue (Python's `manager.JoinableQueue()`).
    pub fn joinable_queue<T: Serialize + DeserializeOwned>(&self) -> Result<JoinableQueue<T>> {
        self.create(Kind::JoinableQueue, Init::Count(0))
    }

    /// A new joinable queue that holds at most `maxsize` items.
    pub fn bounded_joinable_queue<T: Serialize + DeserializeOwned>(
        &self,
        maxsize: usize,
    ) -> Result<JoinableQueue<T>> {
        let max = positive(maxsize, "a bounded queue's size")?;
        self.create(Kind::JoinableQueue, Init::Count(max))
    }

    /// A new lock (Python's `manager.Lock()`).
    pub fn lock(&self) -> Result<Lock> {
        self.create(Kind::Lock, Init::Empty)
    }

    /// A new reentrant lock (Python's `manager.RLock()`).
    pub fn rlock(&self) -> Result<RLock> {
        self.create(Kind::RLock, Init::Empty)
    }

    /// A new semaphore with `value` units (Python's `manager.Semaphore(value)`).
    pub fn semaphore(&self, value: u64) -> Result<Semaphore> {
        self.create(Kind::Semaphore, Init::Count(value))
    }

    /// A new semaphore that refuses a release above `value` (Python's
    /// `manager.BoundedSemaphore(value)`).
    pub fn bounded_semaphore(&self, value: u64) -> Result<Semaphore> {
        self.create(Kind::BoundedSemaphore, Init::Count(value))
    }

    /// A new condition with its own `RLock` (Python's `manager.Condition()`).
    pub fn condition(&self) -> Result<Condition> {
        self.create(Kind::Condition, Init::Empty)
    }

    /// A new event, not set (Python's `manager.Event()`).
    pub fn event(&self) -> Result<Event> {
        self.create(Kind::Event, Init::Empty)
    }

    /// A new barrier for `parties` parties (Python's `manager.Barrier(parties)`).
    ///
    /// # Errors
    ///
    /// [`ErrorKind::InvalidInput`] for 0 parties.
    pub fn barrier(&self, parties: usize) -> Result<Barrier> {
        self.create(
            Kind::Barrier,
            Init::Count(positive(parties, "a barrier's parties")?),
        )
    }

    /// A new object of a registered custom type, built in the server from `init`.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::NotRegistered`] when the server was not started with `T` (see
    /// [`Builder::register`]).
    pub fn shared<T: SharedObject>(&self, init: T::Init) -> Result<Shared<T>> {
        self.create(Kind::Custom(T::NAME.to_string()), Init::Custom(enc(&init)?))
    }

    /// Makes `proxy`'s object findable by `name` from any client (a name used before now
    /// names this object).
    pub fn publish<P: Proxy>(&self, name: &str, proxy: &P) -> Result<()> {
        let id = proxy.handle().id();
        if !Arc::ptr_eq(proxy.handle().endpoint(), &self.endpoint) {
            return Err(Error::new(
                ErrorKind::InvalidInput,
                "the proxy belongs to another manager",
            ));
        }
        match self.request(Request::Publish {
            name: name.to_string(),
            id,
        })? {
            Out::Unit => Ok(()),
            _ => Err(Error::unexpected()),
        }
    }

    /// The object published under `name`, as a `P` (Python's registered `get_*` callables).
    ///
    /// # Errors
    ///
    /// [`ErrorKind::NoSuchObject`] when nothing is published under `name`,
    /// [`ErrorKind::WrongType`] when it is not a `P`.
    pub fn lookup<P: Proxy>(&self, name: &str) -> Result<P> {
        let request = Request::Lookup {
            name: name.to_string(),
            kind: P::kind(),
            type_name: P::type_name(),
        };
        match self.request(request)? {
            Out::Id(id) => Ok(P::from_handle(Handle::new(Arc::clone(&self.endpoint), id))),
            _ => Err(Error::unexpected()),
        }
    }

    /// Forgets the name `name`; returns whether it named an object.
    pub fn unpublish(&self, name: &str) -> Result<bool> {
        match self.request(Request::Unpublish {
            name: name.to_string(),
        })? {
            Out::Bool(b) => Ok(b),
            _ => Err(Error::unexpected()),
        }
    }
}

fn positive(n: usize, what: &str) -> Result<u64> {
    if n == 0 {
        return Err(Error::new(
            ErrorKind::InvalidInput,
            format!("{what} must be at least 1"),
        ));
    }
    Ok(n as u64)
}

impl Drop for Manager {
    fn drop(&mut self) {
        if self.server.is_some() {
            let _ = self.shutdown();
        }
    }
}
