//! [`Pool`] and its [`Builder`]: Python's `multiprocessing.Pool`.

use std::fmt;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use mproc_process::{ForkPermit, ForkServer, StartMethod};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::chunk;
use crate::error::{Error, ErrorKind, Result};
use crate::imap::{Feed, Imap};
use crate::manager::{Config, Deliveries, Phase, Shared, deliver, on_manager_of, reentrant_wait};
use crate::result::{AsyncResult, Callbacks, Collect, Sink};
use crate::task::{Call, Payload, TaskFn};

/// How many chunks per worker an `imap` keeps in flight.
const IMAP_CHUNKS_PER_WORKER: usize = 32;

/// Options for a [`Pool`]: Python's `Pool(processes, initializer, initargs,
/// maxtasksperchild, context)`, plus a task timeout.
///
/// ```
/// use std::sync::atomic::{AtomicU32, Ordering};
/// use std::time::Duration;
/// use mproc_pool::Builder;
/// static LEVEL: AtomicU32 = AtomicU32::new(0);
/// fn setup(level: u32) { LEVEL.store(level, Ordering::Relaxed) } // once per worker
/// fn level(_: ()) -> u32 { LEVEL.load(Ordering::Relaxed) }
/// # mproc_process::init();
/// let pool = Builder::new()
///     .processes(2)
///     .initializer(setup, 3)
///     .max_tasks_per_child(100)
///     .task_timeout(Duration::from_secs(60))
///     .name_prefix("Cruncher")
///     .build()?;
/// assert_eq!(pool.apply(level, ())?, 3);
/// # Ok::<(), mproc_pool::Error>(())
/// ```
pub struct Builder {
    processes: Option<usize>,
    initializer: Option<(Call, std::result::Result<Payload, mproc_wire::Error>)>,
    max_tasks: Option<u64>,
    method: Option<StartMethod>,
    permit: Option<ForkPermit>,
    prefix: Option<String>,
    task_timeout: Option<Duration>,
    /// Workers start when work needs them (the executor's way).
    pub(crate) on_demand: bool,
}

impl fmt::Debug for Builder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Builder")
            .field("processes", &self.processes)
            .field("initializer", &self.initializer.is_some())
            .field("max_tasks_per_child", &self.max_tasks)
            .field("start_method", &self.method)
            .field("name_prefix", &self.prefix)
            .field("task_timeout", &self.task_timeout)
            .finish()
    }
}

impl Default for Builder {
    fn default() -> Self {
        Self::new()
    }
}

impl Builder {
    /// Starts from the defaults: one worker per CPU this process may use, no initializer,
    /// workers that live as long as the pool, the default start method, no task timeout.
    pub fn new() -> Self {
        Builder {
            processes: None,
            initializer: None,
            max_tasks: None,
            method: None,
            permit: None,
            prefix: None,
            task_timeout: None,
            on_demand: false,
        }
    }

    /// Sets the number of workers (Python's `processes`; the default is
    /// [`process_cpu_count`](mproc_process::process_cpu_count)).
    pub fn processes(mut self, n: usize) -> Self {
        self.processes = Some(n);
        self
    }

    /// Runs `f(arg)` once in each worker before its first task (Python's `initializer`
    /// and `initargs`). If it panics, the pool runs no task: every call fails with
    /// [`ErrorKind::Initializer`] (Python starts workers again and again instead).
    pub fn initializer<I>(mut self, f: fn(I), arg: I) -> Self
    where
        I: Serialize + DeserializeOwned + 'static,
    {
        self.initializer = Some((Call::new(f), Payload::encode(std::slice::from_ref(&arg))));
        self
    }

    /// Replaces a worker after it has run `n` tasks (Python's `maxtasksperchild`; a chunk
    /// of `map` is one task), to return the memory a leaky task holds.
    pub fn max_tasks_per_child(mut self, n: u64) -> Self {
        self.max_tasks = Some(n);
        self
    }

    /// Chooses how workers start (Python's `context`); the default is the process-wide
    /// [`get_start_method`](mproc_process::get_start_method).
    pub fn start_method(mut self, method: StartMethod) -> Self {
        self.method = Some(method);
        self
    }

    /// Allows the fork start method while other threads exist, on the permit's promise
    /// (see [`mproc_process::Builder::fork_permit`]). A fork pool forks one
    /// [`ForkServer`] when it is built, and every worker, replacements included, is forked
    /// from that server: workers are copies of this process as it was when the pool was
    /// built, and the pool's own threads never fork.
    pub fn fork_permit(mut self, permit: ForkPermit) -> Self {
        self.permit = Some(permit);
        self
    }

    /// Names the workers `{prefix}-1`, `{prefix}-2`, ... (Python names them
    /// `ForkPoolWorker-1` and so on; so does this pool by default).
    pub fn name_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = Some(prefix.into());
        self
    }

    /// Kills a worker whose task runs longer than `timeout`, replaces it, and fails that
    /// task with [`ErrorKind::Timeout`]. Python's `Pool` has no such thing.
    pub fn task_timeout(mut self, timeout: Duration) -> Self {
        self.task_timeout = Some(timeout);
        self
    }

    /// Starts the workers and returns the pool.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::InvalidInput`] for 0 processes or `max_tasks_per_child(0)`,
    /// [`ErrorKind::Encode`] when the initializer's argument cannot be serialized,
    /// [`ErrorKind::Start`] when a worker cannot be started (`mproc::init()` missing, the
    /// fork method refused with threads, ...).
    pub fn build(self) -> Result<Pool> {
        let processes = self
            .processes
            .unwrap_or_else(mproc_process::process_cpu_count);
        if processes == 0 {
            return Err(Error::new(
                ErrorKind::InvalidInput,
                "a pool needs at least one process",
            ));
        }
        if self.task_timeout == Some(Duration::ZERO) {
            return Err(Error::new(
                ErrorKind::InvalidInput,
                "a task timeout of zero would kill every task",
            ));
        }
        if self.max_tasks == Some(0) {
            return Err(Error::new(
                ErrorKind::InvalidInput,
                "max_tasks_per_child must be at least 1",
            ));
        }
        let initializer = match self.initializer {
            Some((call, Ok(payload))) => Some((call, payload)),
            Some((_, Err(e))) => {
                return Err(Error::new(
                    ErrorKind::Encode,
                    "the initializer's argument could not be serialized",
                )
                .with_source(e));
            }
            None => None,
        };
        let method = self.method.unwrap_or_else(mproc_process::get_start_method);
        let prefix = self.prefix.unwrap_or_else(|| {
            match method {
                StartMethod::Fork => "ForkPoolWorker",
                StartMethod::Spawn => "SpawnPoolWorker",
                StartMethod::ForkServer => "ForkServerPoolWorker",
            }
            .to_string()
        });
        // Fork workers come from the pool's own fork server, a fork of this process now:
        // the manager thread could not fork this (by then threaded) process itself.
        let server = match method {
            StartMethod::Fork => Some(Arc::new(ForkServer::start(self.permit)?)),
            _ => None,
        };
        let shared = Shared::new(Config {
            processes,
            initializer,
            max_tasks: self.max_tasks,
            method,
            server: Mutex::new(server),
            prefix,
            task_timeout: self.task_timeout,
            on_demand: self.on_demand,
        })?;
        let pool = Pool {
            shared,
            threads: Mutex::new(Vec::new()),
        };
        if !pool.shared.starts_first_workers()
            && !pool.shared.config.on_demand
            && let Err(e) = pool.shared.start_first_workers()
        {
            // No thread of the pool runs yet to end it: end it here.
            pool.shared.terminate();
            pool.shared.reap_all();
            return Err(e);
        }
        if let Err(e) = pool.spawn_threads() {
            drop(pool); // terminates and reaps the workers that did start
            return Err(e);
        }
        Ok(pool)
    }
}

/// A pool of worker processes that run functions on many inputs: Python's
/// `multiprocessing.Pool`.
///
/// Functions are plain `fn` items (or closures that capture nothing); arguments and
/// results are serde types. Work travels to the workers and back through queues in shared
/// memory. A panic fails its task (with the message); a worker that dies mid-task
/// (SIGKILL, abort, the OOM killer) fails that task with [`ErrorKind::WorkerDied`], is
/// replaced, and the rest of the work goes on: the pool never hangs on a dead worker.
///
/// Dropping a pool terminates it, as leaving Python's `with Pool() as p:` block does: work
/// still outstanding fails with [`ErrorKind::Terminated`], and every worker is killed and
/// reaped before `drop` returns. Call [`close`](Self::close) and [`join`](Self::join) to
/// let the work finish instead. Workers also die with their parent, even on SIGKILL.
///
/// ```
/// fn square(x: u64) -> u64 { x * x }
/// # mproc_process::init();
/// let pool = mproc_pool::Pool::new(2)?;
/// assert_eq!(pool.map(square, 0..5)?, [0, 1, 4, 9, 16]);
/// # Ok::<(), mproc_pool::Error>(())
/// ```
pub struct Pool {
    shared: Arc<Shared>,
    threads: Mutex<Vec<JoinHandle<()>>>,
}

impl fmt::Debug for Pool {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Pool")
            .field("processes", &self.processes())
            .field("phase", &self.shared.lock().phase)
            .finish()
    }
}

impl Pool {
    /// Starts a pool of `processes` workers with the default options: Python's
    /// `Pool(processes)`.
    ///
    /// # Errors
    ///
    /// As [`Builder::build`].
    pub fn new(processes: usize) -> Result<Pool> {
        Builder::new().processes(processes).build()
    }

    /// Returns a [`Builder`] for the other options.
    pub fn builder() -> Builder {
        Builder::new()
    }

    /// Returns the number of workers.
    pub fn processes(&self) -> usize {
        self.shared.config.processes
    }

    /// Starts the watcher and the manager thread (which starts the first workers when
    /// `starts_first_workers`); returns how that went.
    fn spawn_threads(&self) -> Result<()> {
        let mut threads = self.threads.lock().unwrap_or_else(|p| p.into_inner());
        let watcher = self.shared.watcher.clone();
        let events = self.shared.events.clone();
        let timeout = self.shared.config.task_timeout;
        let w = std::thread::Builder::new()
            .name("mproc-pool-watcher".into())
            .spawn(move || watcher.run(events, timeout));
        let shared = self.shared.clone();
        let start_first = shared.starts_first_workers();
        let (ready, started) = std::sync::mpsc::channel();
        let m = std::thread::Builder::new()
            .name("mproc-pool-manager".into())
            .spawn(move || {
                // A bug in the manager must not leave workers running or joins waiting.
                if mproc_process::catch_panic(|| shared.run_manager(start_first, ready)).is_err() {
                    shared.terminate();
                    shared.reap_all();
                }
            });
        let no_thread = |e: std::io::Error| {
            Error::new(ErrorKind::Start, "cannot start the pool's threads").with_source(e)
        };
        match (w, m) {
            (Ok(w), Ok(m)) => threads.extend([w, m]),
            (w, m) => {
                // Without its threads the pool cannot work: end it here, reaping workers.
                let e = [w.as_ref().err(), m.as_ref().err()]
                    .into_iter()
                    .flatten()
                    .next()
                    .map(|e| no_thread(std::io::Error::new(e.kind(), e.to_string())));
                threads.extend(w.ok().into_iter().chain(m.ok()));
                self.shared.terminate();
                self.shared.reap_all();
                return Err(e.unwrap_or_else(|| Error::new(ErrorKind::Start, "no pool thread")));
            }
        }
        if !start_first {
            return Ok(());
        }
        started.recv().unwrap_or_else(|_| {
            Err(Error::new(
                ErrorKind::Start,
                "the pool's manager thread ended before starting the workers",
            ))
        })
    }

    /// Applies `f` to every item and returns the results in order: Python's `map`.
    ///
    /// The items are cut into chunks by Python's rule (about four per worker); use
    /// [`map_chunked`](Self::map_chunked) to choose.
    ///
    /// # Errors
    ///
    /// The error of the first item that failed (lowest index among those known when it
    /// failed: the call stops at the first failure), naming that item's
    /// [`index`](Error::index); [`ErrorKind::Closed`] on a closed pool.
    ///
    /// ```
    /// fn len(s: String) -> usize { s.len() }
    /// # mproc_process::init();
    /// let pool = mproc_pool::Pool::new(2)?;
    /// let words = ["a", "bb", "ccc"].map(String::from);
    /// assert_eq!(pool.map(len, words)?, [1, 2, 3]);
    /// # Ok::<(), mproc_pool::Error>(())
    /// ```
    pub fn map<A, R>(&self, f: fn(A) -> R, items: impl IntoIterator<Item = A>) -> Result<Vec<R>>
    where
        A: Serialize + DeserializeOwned + 'static,
        R: Serialize + DeserializeOwned + Send + 'static,
    {
        self.collect(f, items, None, Callbacks::new())?.get()
    }

    /// Like [`map`](Self::map), with `chunksize` items per task (Python's `chunksize`).
    ///
    /// ```
    /// fn inc(x: i32) -> i32 { x + 1 }
    /// # mproc_process::init();
    /// let pool = mproc_pool::Pool::new(2)?;
    /// assert_eq!(pool.map_chunked(inc, 0..1000, 100)?.len(), 1000);
    /// # Ok::<(), mproc_pool::Error>(())
    /// ```
    ///
    /// # Errors
    ///
    /// As [`map`](Self::map); [`ErrorKind::InvalidInput`] for a `chunksize` of 0.
    pub fn map_chunked<A, R>(
        &self,
        f: fn(A) -> R,
        items: impl IntoIterator<Item = A>,
        chunksize: usize,
    ) -> Result<Vec<R>>
    where
        A: Serialize + DeserializeOwned + 'static,
        R: Serialize + DeserializeOwned + Send + 'static,
    {
        self.collect(f, items, Some(chunksize), Callbacks::new())?
            .get()
    }

    /// Starts a [`map`](Self::map) and returns at once: Python's `map_async`.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Closed`] on a closed pool; the items' errors come from the result.
    pub fn map_async<A, R>(
        &self,
        f: fn(A) -> R,
        items: impl IntoIterator<Item = A>,
    ) -> Result<AsyncResult<Vec<R>>>
    where
        A: Serialize + DeserializeOwned + 'static,
        R: Serialize + DeserializeOwned + Send + 'static,
    {
        self.collect(f, items, None, Callbacks::new())
    }

    /// Like [`map_async`](Self::map_async), with a chunk size (`None`: Python's rule) and
    /// callbacks run in the parent when it completes.
    ///
    /// ```
    /// use mproc_pool::Callbacks;
    /// fn neg(x: i64) -> i64 { -x }
    /// # mproc_process::init();
    /// let pool = mproc_pool::Pool::new(2)?;
    /// let cb = Callbacks::new().on_success(|v: &Vec<i64>| assert_eq!(v.len(), 3));
    /// let r = pool.map_async_with(neg, [1, 2, 3], Some(1), cb)?;
    /// assert_eq!(r.get()?, [-1, -2, -3]);
    /// # Ok::<(), mproc_pool::Error>(())
    /// ```
    ///
    /// # Errors
    ///
    /// As [`map_async`](Self::map_async); [`ErrorKind::InvalidInput`] for a chunk size of 0.
    pub fn map_async_with<A, R>(
        &self,
        f: fn(A) -> R,
        items: impl IntoIterator<Item = A>,
        chunksize: Option<usize>,
        callbacks: Callbacks<Vec<R>>,
    ) -> Result<AsyncResult<Vec<R>>>
    where
        A: Serialize + DeserializeOwned + 'static,
        R: Serialize + DeserializeOwned + Send + 'static,
    {
        self.collect(f, items, chunksize, callbacks)
    }

    /// Applies `f` to the two arguments of every item: Python's `starmap` (see
    /// [`starmap3`](Self::starmap3) and [`starmap4`](Self::starmap4) for more).
    ///
    /// ```
    /// fn add(a: u32, b: u32) -> u32 { a + b }
    /// # mproc_process::init();
    /// let pool = mproc_pool::Pool::new(2)?;
    /// assert_eq!(pool.starmap(add, [(1, 2), (3, 4)])?, [3, 7]);
    /// # Ok::<(), mproc_pool::Error>(())
    /// ```
    ///
    /// # Errors
    ///
    /// As [`map`](Self::map).
    pub fn starmap<A, B, R>(
        &self,
        f: fn(A, B) -> R,
        items: impl IntoIterator<Item = (A, B)>,
    ) -> Result<Vec<R>>
    where
        A: Serialize + DeserializeOwned + 'static,
        B: Serialize + DeserializeOwned + 'static,
        R: Serialize + DeserializeOwned + Send + 'static,
    {
        self.collect(f, items, None, Callbacks::new())?.get()
    }

    /// [`starmap`](Self::starmap) for functions of three arguments.
    ///
    /// ```
    /// fn fma(a: f64, b: f64, c: f64) -> f64 { a * b + c }
    /// # mproc_process::init();
    /// let pool = mproc_pool::Pool::new(2)?;
    /// assert_eq!(pool.starmap3(fma, [(2.0, 3.0, 1.0)])?, [7.0]);
    /// # Ok::<(), mproc_pool::Error>(())
    /// ```
    ///
    /// # Errors
    ///
    /// As [`map`](Self::map).
    pub fn starmap3<A, B, C, R>(
        &self,
        f: fn(A, B, C) -> R,
        items: impl IntoIterator<Item = (A, B, C)>,
    ) -> Result<Vec<R>>
    where
        A: Serialize + DeserializeOwned + 'static,
        B: Serialize + DeserializeOwned + 'static,
        C: Serialize + DeserializeOwned + 'static,
        R: Serialize + DeserializeOwned + Send + 'static,
    {
        self.collect(f, items, None, Callbacks::new())?.get()
    }

    /// [`starmap`](Self::starmap) for functions of four arguments.
    ///
    /// ```
    /// fn join4(a: u8, b: char, c: String, d: bool) -> String { format!("{a}{b}{c}{d}") }
    /// # mproc_process::init();
    /// let pool = mproc_pool::Pool::new(1)?;
    /// assert_eq!(pool.starmap4(join4, [(1, 'x', "y".to_string(), true)])?, ["1xytrue"]);
    /// # Ok::<(), mproc_pool::Error>(())
    /// ```
    ///
    /// # Errors
    ///
    /// As [`map`](Self::map).
    pub fn starmap4<A, B, C, D, R>(
        &self,
        f: fn(A, B, C, D) -> R,
        items: impl IntoIterator<Item = (A, B, C, D)>,
    ) -> Result<Vec<R>>
    where
        A: Serialize + DeserializeOwned + 'static,
        B: Serialize + DeserializeOwned + 'static,
        C: Serialize + DeserializeOwned + 'static,
        D: Serialize + DeserializeOwned + 'static,
        R: Serialize + DeserializeOwned + Send + 'static,
    {
        self.collect(f, items, None, Callbacks::new())?.get()
    }

    /// Starts a [`starmap`](Self::starmap) and returns at once: Python's `starmap_async`.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Closed`] on a closed pool.
    pub fn starmap_async<A, B, R>(
        &self,
        f: fn(A, B) -> R,
        items: impl IntoIterator<Item = (A, B)>,
    ) -> Result<AsyncResult<Vec<R>>>
    where
        A: Serialize + DeserializeOwned + 'static,
        B: Serialize + DeserializeOwned + 'static,
        R: Serialize + DeserializeOwned + Send + 'static,
    {
        self.collect(f, items, None, Callbacks::new())
    }

    /// Runs `f(arg)` in a worker and waits for its result: Python's `apply`.
    ///
    /// ```
    /// fn pid(_: ()) -> u32 { std::process::id() }
    /// # mproc_process::init();
    /// let pool = mproc_pool::Pool::new(1)?;
    /// assert_ne!(pool.apply(pid, ())?, std::process::id());
    /// # Ok::<(), mproc_pool::Error>(())
    /// ```
    ///
    /// # Errors
    ///
    /// The task's error (its index is 0), or [`ErrorKind::Closed`].
    pub fn apply<A, R>(&self, f: fn(A) -> R, arg: A) -> Result<R>
    where
        A: Serialize + DeserializeOwned + 'static,
        R: Serialize + DeserializeOwned + Send + 'static,
    {
        self.apply_async(f, arg)?.get()
    }

    /// Starts `f(arg)` in a worker and returns at once: Python's `apply_async`.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Closed`] on a closed pool; the task's own error comes from the result.
    pub fn apply_async<A, R>(&self, f: fn(A) -> R, arg: A) -> Result<AsyncResult<R>>
    where
        A: Serialize + DeserializeOwned + 'static,
        R: Serialize + DeserializeOwned + Send + 'static,
    {
        self.apply_async_with(f, arg, Callbacks::new())
    }

    /// Like [`apply_async`](Self::apply_async), with callbacks run in the parent when the
    /// task completes (Python's `callback` and `error_callback`).
    ///
    /// # Errors
    ///
    /// As [`apply_async`](Self::apply_async).
    pub fn apply_async_with<A, R>(
        &self,
        f: fn(A) -> R,
        arg: A,
        callbacks: Callbacks<R>,
    ) -> Result<AsyncResult<R>>
    where
        A: Serialize + DeserializeOwned + 'static,
        R: Serialize + DeserializeOwned + Send + 'static,
    {
        fn first<R>(v: Vec<R>) -> R {
            v.into_iter()
                .next()
                .expect("a call of one item gathers one result")
        }
        self.submit_collect(f, vec![arg], Some(1), first, callbacks)
    }

    /// Applies `f` to the items lazily, yielding results in order as they come: Python's
    /// `imap` (one item per task; see [`imap_chunked`](Self::imap_chunked)). See [`Imap`]
    /// for how much runs ahead.
    pub fn imap<'a, A, R>(
        &self,
        f: fn(A) -> R,
        items: impl IntoIterator<Item = A> + 'a,
    ) -> Imap<'a, R>
    where
        A: Serialize + DeserializeOwned + 'static,
        R: Serialize + DeserializeOwned + Send + 'static,
    {
        self.stream(f, items, 1, true)
    }

    /// Like [`imap`](Self::imap), with `chunksize` items per task (0 counts as 1).
    pub fn imap_chunked<'a, A, R>(
        &self,
        f: fn(A) -> R,
        items: impl IntoIterator<Item = A> + 'a,
        chunksize: usize,
    ) -> Imap<'a, R>
    where
        A: Serialize + DeserializeOwned + 'static,
        R: Serialize + DeserializeOwned + Send + 'static,
    {
        self.stream(f, items, chunksize, true)
    }

    /// Like [`imap`](Self::imap), but yields each result as soon as it is ready, in no
    /// particular order: Python's `imap_unordered`. An error's [`index`](Error::index)
    /// says which item it was.
    ///
    /// ```
    /// fn cube(x: i64) -> i64 { x * x * x }
    /// # mproc_process::init();
    /// let pool = mproc_pool::Pool::new(2)?;
    /// let mut cubes: Vec<i64> = pool.imap_unordered(cube, 1..=4).collect::<Result<_, _>>()?;
    /// cubes.sort();
    /// assert_eq!(cubes, [1, 8, 27, 64]);
    /// # Ok::<(), mproc_pool::Error>(())
    /// ```
    pub fn imap_unordered<'a, A, R>(
        &self,
        f: fn(A) -> R,
        items: impl IntoIterator<Item = A> + 'a,
    ) -> Imap<'a, R>
    where
        A: Serialize + DeserializeOwned + 'static,
        R: Serialize + DeserializeOwned + Send + 'static,
    {
        self.stream(f, items, 1, false)
    }

    /// Like [`imap_unordered`](Self::imap_unordered), with `chunksize` items per task (0
    /// counts as 1).
    pub fn imap_unordered_chunked<'a, A, R>(
        &self,
        f: fn(A) -> R,
        items: impl IntoIterator<Item = A> + 'a,
        chunksize: usize,
    ) -> Imap<'a, R>
    where
        A: Serialize + DeserializeOwned + 'static,
        R: Serialize + DeserializeOwned + Send + 'static,
    {
        self.stream(f, items, chunksize, false)
    }

    /// Stops taking work: what was submitted still runs, then the workers end (Python's
    /// `close`). Call [`join`](Self::join) to wait for them.
    pub fn close(&self) {
        self.shared.close();
    }

    /// Fails the work still outstanding with [`ErrorKind::Terminated`] and kills the
    /// workers at once (Python's `terminate`), waiting until every one has been reaped.
    pub fn terminate(&self) {
        self.shared.terminate();
        if on_manager_of(self.shared.id()) {
            // From one of this pool's callbacks: the manager ends once this returns.
            return;
        }
        self.shared.wait_ended(None);
        self.join_threads();
    }

    /// Waits until the workers have ended, after [`close`](Self::close) or
    /// [`terminate`](Self::terminate): Python's `join`.
    ///
    /// ```
    /// fn double(x: u8) -> u8 { x * 2 }
    /// # mproc_process::init();
    /// let pool = mproc_pool::Pool::new(2)?;
    /// let pending = pool.map_async(double, [1, 2, 3])?;
    /// pool.close();
    /// pool.join()?;
    /// assert_eq!(pending.get()?, [2, 4, 6]);
    /// # Ok::<(), mproc_pool::Error>(())
    /// ```
    ///
    /// # Errors
    ///
    /// [`ErrorKind::InvalidState`] when the pool was neither closed nor terminated.
    pub fn join(&self) -> Result<()> {
        self.join_until(None)
    }

    /// Like [`join`](Self::join), giving up after `timeout` with [`ErrorKind::Timeout`]
    /// (the pool goes on; join again later).
    ///
    /// # Errors
    ///
    /// As [`join`](Self::join), and [`ErrorKind::Timeout`].
    pub fn join_timeout(&self, timeout: Duration) -> Result<()> {
        self.join_until(mproc_sys::deadline_after(timeout))
    }

    fn join_until(&self, deadline: Option<std::time::Instant>) -> Result<()> {
        if on_manager_of(self.shared.id()) {
            return Err(reentrant_wait());
        }
        if self.shared.lock().phase == Phase::Running {
            return Err(Error::new(
                ErrorKind::InvalidState,
                "join needs close() or terminate() first",
            ));
        }
        if !self.shared.wait_ended(deadline) {
            return Err(Error::new(
                ErrorKind::Timeout,
                "timed out waiting for the workers to end; join again later",
            ));
        }
        self.join_threads();
        Ok(())
    }

    /// Joins the pool's threads, which have ended or are ending: a pool that was joined
    /// leaves no thread behind (the fork start method refuses a process with threads).
    fn join_threads(&self) {
        let threads = std::mem::take(&mut *self.threads.lock().unwrap_or_else(|p| p.into_inner()));
        for t in threads {
            let _ = t.join();
        }
    }

    fn collect<F: TaskFn>(
        &self,
        f: F,
        items: impl IntoIterator<Item = F::Args>,
        chunksize: Option<usize>,
        callbacks: Callbacks<Vec<F::Output>>,
    ) -> Result<AsyncResult<Vec<F::Output>>> {
        fn all<R>(v: Vec<R>) -> Vec<R> {
            v
        }
        self.submit_collect(f, items.into_iter().collect(), chunksize, all, callbacks)
    }

    fn submit_collect<F: TaskFn, T: Send + 'static>(
        &self,
        f: F,
        items: Vec<F::Args>,
        chunksize: Option<usize>,
        gather: fn(Vec<F::Output>) -> T,
        callbacks: Callbacks<T>,
    ) -> Result<AsyncResult<T>> {
        let chunksize = match chunksize {
            Some(0) => {
                return Err(Error::new(
                    ErrorKind::InvalidInput,
                    "chunksize must be at least 1",
                ));
            }
            Some(n) => n,
            None => chunk::default_chunksize(items.len(), self.processes()),
        };
        self.shared.check_running()?;
        let job = Collect::<F::Output, T>::new(self.shared.id(), items.len(), gather, callbacks);
        let sink: Arc<dyn Sink> = job.clone();
        let mut failed = Deliveries::new();
        let submitted = chunk::encode_streaming(
            &items,
            0,
            chunksize,
            Call::new(f),
            &sink,
            &mut failed,
            |chunks| self.shared.submit(chunks),
        );
        drop(items);
        deliver(failed);
        // A pool that closed part-way failed the chunks it refused: the job has its
        // outcome, and nobody waits for chunks that were never sent.
        submitted?;
        Ok(AsyncResult::new(job))
    }

    /// Submits one task whose outcome goes to `sink` (an executor's task). An argument
    /// that does not serialize fails the task, not the call.
    pub(crate) fn submit_task<F: TaskFn>(
        &self,
        f: F,
        arg: F::Args,
        sink: Arc<dyn Sink>,
    ) -> Result<()> {
        self.shared.check_running()?;
        let items = [arg];
        let mut failed = Deliveries::new();
        let submitted =
            chunk::encode_streaming(&items, 0, 1, Call::new(f), &sink, &mut failed, |chunks| {
                self.shared.submit(chunks)
            });
        drop(items);
        deliver(failed);
        submitted
    }

    /// The bookkeeping shared with the manager thread.
    pub(crate) fn shared(&self) -> &Arc<Shared> {
        &self.shared
    }

    fn stream<'a, F: TaskFn>(
        &self,
        f: F,
        items: impl IntoIterator<Item = F::Args> + 'a,
        chunksize: usize,
        ordered: bool,
    ) -> Imap<'a, F::Output> {
        let chunksize = chunksize.max(1);
        let call = Call::new(f);
        let mut source = items.into_iter();
        let feed: Feed<'a> = Box::new(move |start, sink, failed| {
            let items: Vec<F::Args> = source.by_ref().take(chunksize).collect();
            let n = items.len();
            (n > 0).then(|| {
                (
                    chunk::encode(&items, start, chunksize, call, sink, failed),
                    n,
                )
            })
        });
        let window = chunksize
            .saturating_mul(IMAP_CHUNKS_PER_WORKER)
            .saturating_mul(self.processes());
        Imap::new(self.shared.clone(), ordered, window, feed)
    }
}

impl Drop for Pool {
    fn drop(&mut self) {
        self.terminate();
    }
}
