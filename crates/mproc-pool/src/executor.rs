//! [`Executor`]: Python's `concurrent.futures.ProcessPoolExecutor` on the pool.
//!
//! Its [`submit`](Executor::submit) returns a [`TaskHandle`]; workers start on demand; there
//! is no broken executor: a worker that dies costs its task, not the executor.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use mproc_process::{ForkPermit, StartMethod};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::error::{Error, ErrorKind, Result};
use crate::handle::{TaskHandle, TaskJob};
use crate::imap::Imap;
use crate::manager::on_manager_of;
use crate::pool::Pool;
use crate::pool::builder::Builder as PoolBuilder;
use crate::sink::Sink;

/// Options for an [`Executor`]: Python's `ProcessPoolExecutor(max_workers, mp_context,
/// initializer, initargs, max_tasks_per_child)`, plus a task timeout.
///
/// ```
/// fn setup(level: u8) { assert!(level > 0); }
/// fn double(x: u32) -> u32 { x * 2 }
/// # mproc_process::init();
/// let executor = mproc_pool::executor::Builder::new()
///     .max_workers(2)
///     .initializer(setup, 3)
///     .max_tasks_per_child(100)
///     .build()?;
/// assert_eq!(executor.submit(double, 21)?.result()?, 42);
/// # Ok::<(), mproc_pool::Error>(())
/// ```
pub struct Builder {
    pool: PoolBuilder,
    max_workers: Option<usize>,
}

impl fmt::Debug for Builder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Builder")
            .field("max_workers", &self.max_workers)
            .field("pool", &self.pool)
            .finish()
    }
}

impl Default for Builder {
    fn default() -> Self {
        Self::new()
    }
}

impl Builder {
    /// Starts from the defaults: up to one worker per CPU this process may use, no
    /// initializer, workers that live as long as the executor, the default start method,
    /// no task timeout.
    pub fn new() -> Self {
        Builder {
            pool: PoolBuilder::new(),
            max_workers: None,
        }
    }

    /// Sets how many workers may run at once (Python's `max_workers`; the default is
    /// [`process_cpu_count`](mproc_process::process_cpu_count)). Workers start when work
    /// needs them, not before.
    pub fn max_workers(mut self, n: usize) -> Self {
        self.max_workers = Some(n);
        self
    }

    /// Runs `f(arg)` once in each worker before its first task (Python's `initializer`
    /// and `initargs`). If it panics, every task fails with
    /// [`ErrorKind::Initializer`] (Python breaks the
    /// executor).
    pub fn initializer<I>(mut self, f: fn(I), arg: I) -> Self
    where
        I: Serialize + DeserializeOwned + 'static,
    {
        self.pool = self.pool.initializer(f, arg);
        self
    }

    /// Replaces a worker after it has run `n` tasks (Python's `max_tasks_per_child`).
    /// A backlog larger than `n` goes on in the replacement (CPython's gh-115634 hung).
    pub fn max_tasks_per_child(mut self, n: u64) -> Self {
        self.pool = self.pool.max_tasks_per_child(n);
        self
    }

    /// Chooses how workers start (Python's `mp_context`).
    pub fn start_method(mut self, method: StartMethod) -> Self {
        self.pool = self.pool.start_method(method);
        self
    }

    /// Allows the fork start method while other threads exist (see
    /// [`pool::Builder::fork_permit`](crate::Builder::fork_permit)).
    pub fn fork_permit(mut self, permit: ForkPermit) -> Self {
        self.pool = self.pool.fork_permit(permit);
        self
    }

    /// Kills a worker whose task runs longer than `timeout`, replaces it, and fails that
    /// task with [`ErrorKind::Timeout`]. Python's executor has no such thing.
    pub fn task_timeout(mut self, timeout: Duration) -> Self {
        self.pool = self.pool.task_timeout(timeout);
        self
    }

    /// Makes the executor. No worker starts until work is submitted.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::InvalidInput`] for `max_workers(0)` (Python's `ValueError`) and the
    /// pool builder's other refusals.
    pub fn build(self) -> Result<Executor> {
        let max_workers = self
            .max_workers
            .unwrap_or_else(mproc_process::process_cpu_count);
        if max_workers == 0 {
            return Err(Error::new(
                ErrorKind::InvalidInput,
                "max_workers must be at least 1",
            ));
        }
        let mut pool = self.pool.processes(max_workers);
        pool.on_demand = true;
        Ok(Executor {
            pool: Some(pool.build()?),
            max_workers,
            detached: AtomicBool::new(false),
        })
    }
}

/// Runs functions in worker processes and hands back a [`TaskHandle`] for each: Python's
/// `concurrent.futures.ProcessPoolExecutor`, on mproc's [`Pool`].
///
/// Workers start when work needs them, up to `max_workers`, and idle ones are reused.
/// Every failure is one task's, typed: a panic ([`ErrorKind::Panicked`], with the
/// message), a worker that exits, aborts, segfaults or is killed
/// ([`ErrorKind::WorkerDied`], with its exit status or signal), an argument or result that
/// will not serialize or deserialize ([`ErrorKind::Encode`], [`ErrorKind::Decode`]). The
/// dead worker is replaced and the executor serves on: Python's executor is *broken* by
/// one dead worker (`BrokenProcessPool` for every pending task and every later `submit`).
///
/// Dropping the executor shuts it down with `wait = true` (as leaving Python's `with`
/// block does): it waits for every submitted task. After [`shutdown`](Self::shutdown)
/// with `wait = false`, or in a done callback, a drop does not wait: the work finishes in
/// the background, and its handles still get their outcomes.
///
/// ```
/// use mproc_pool::{Executor, as_completed};
/// fn square(x: u64) -> u64 { x * x }
/// # mproc_process::init();
/// let executor = Executor::new(2)?;
/// let tasks: Vec<_> = (1..=4).map(|x| executor.submit(square, x)).collect::<Result<_, _>>()?;
/// let mut total = 0;
/// for task in as_completed(&tasks, None) {
///     total += task?.result()?;
/// }
/// assert_eq!(total, 1 + 4 + 9 + 16);
/// let squares: Vec<u64> = executor.map(square, 1..=4, None, 1).collect::<Result<_, _>>()?;
/// assert_eq!(squares, [1, 4, 9, 16]);
/// # Ok::<(), mproc_pool::Error>(())
/// ```
pub struct Executor {
    /// `None` only while dropping.
    pool: Option<Pool>,
    max_workers: usize,
    /// `shutdown(wait = false)` was called: a drop lets the work finish in the background.
    detached: AtomicBool,
}

impl fmt::Debug for Executor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Executor")
            .field("max_workers", &self.max_workers)
            .field("workers", &self.workers())
            .finish()
    }
}

impl Executor {
    /// Makes an executor of up to `max_workers` workers with the default options:
    /// Python's `ProcessPoolExecutor(max_workers)`.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::InvalidInput`] for 0.
    pub fn new(max_workers: usize) -> Result<Executor> {
        Builder::new().max_workers(max_workers).build()
    }

    /// Returns a [`Builder`] for the other options.
    pub fn builder() -> Builder {
        Builder::new()
    }

    fn pool(&self) -> &Pool {
        self.pool.as_ref().expect("the pool lives until drop")
    }

    /// Returns the most workers that run at once.
    pub fn max_workers(&self) -> usize {
        self.max_workers
    }

    /// Returns how many workers run now (they start on demand).
    pub fn workers(&self) -> usize {
        self.pool().shared().live_workers()
    }

    /// Schedules `f(arg)` in a worker and returns its handle at once: Python's
    /// `submit(fn, arg)`. An argument that does not serialize fails the task (its
    /// [`result`](TaskHandle::result) is [`ErrorKind::Encode`]), not this call.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Closed`] after [`shutdown`](Self::shutdown) (Python's `RuntimeError`),
    /// [`ErrorKind::Terminated`] after [`terminate_workers`](Self::terminate_workers).
    ///
    /// ```
    /// fn greet(name: String) -> String { format!("hello, {name}") }
    /// # mproc_process::init();
    /// let executor = mproc_pool::Executor::new(1)?;
    /// let task = executor.submit(greet, "Ada".to_string())?;
    /// assert_eq!(task.result()?, "hello, Ada");
    /// # Ok::<(), mproc_pool::Error>(())
    /// ```
    pub fn submit<A, R>(&self, f: fn(A) -> R, arg: A) -> Result<TaskHandle<R>>
    where
        A: Serialize + DeserializeOwned + 'static,
        R: Serialize + DeserializeOwned + Send + 'static,
    {
        let pool = self.pool();
        let job = TaskJob::<R>::new(pool.shared().id());
        let sink: Arc<dyn Sink> = job.clone();
        pool.submit_task(f, arg, sink)?;
        Ok(TaskHandle::new(job))
    }

    /// Applies `f` to the items and yields the results in order: Python's
    /// `map(fn, items, timeout, chunksize)`. Items go out `chunksize` to a task (0 counts
    /// as 1) and are read lazily, a few tasks ahead of the results taken (as Python 3.14's
    /// `buffersize`), so an endless iterator works. With a `timeout`, counted from this
    /// call, the first result not ready in time is an `Err` of kind
    /// [`ErrorKind::Timeout`] and the iteration ends there (the items not yet sent are
    /// dropped, as Python cancels them). Each item's error is its own: the iteration goes
    /// on past a failed item.
    ///
    /// ```
    /// fn len(s: String) -> usize { s.len() }
    /// # mproc_process::init();
    /// let executor = mproc_pool::Executor::new(2)?;
    /// let words = ["a", "bb", "ccc"].map(String::from);
    /// let lens: Vec<usize> = executor.map(len, words, None, 1).collect::<Result<_, _>>()?;
    /// assert_eq!(lens, [1, 2, 3]);
    /// # Ok::<(), mproc_pool::Error>(())
    /// ```
    pub fn map<'a, A, R>(
        &'a self,
        f: fn(A) -> R,
        items: impl IntoIterator<Item = A> + 'a,
        timeout: Option<Duration>,
        chunksize: usize,
    ) -> ExecutorMap<'a, R>
    where
        A: Serialize + DeserializeOwned + 'static,
        R: Serialize + DeserializeOwned + Send + 'static,
    {
        ExecutorMap {
            inner: Some(self.pool().imap_chunked(f, items, chunksize)),
            deadline: timeout.and_then(mproc_sys::deadline_after),
        }
    }

    /// Stops taking work (a later [`submit`](Self::submit) is [`ErrorKind::Closed`]);
    /// with `cancel_futures`, cancels every task no worker has yet
    /// ([`ErrorKind::Cancelled`]); with `wait`, waits until every other task is done and
    /// every worker has ended. Python: `shutdown(wait, cancel_futures=...)`. Calling it
    /// again is harmless. A [`map`](Self::map) in progress is not a set of tasks here:
    /// its items keep going out and running after `cancel_futures` (Python cancels the
    /// futures its `map` made); drop its iterator to stop it.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::InvalidState`] when called with `wait` from a done callback (the
    /// callback runs on the thread that would have to finish the work).
    ///
    /// ```
    /// fn square(x: u64) -> u64 { x * x }
    /// # mproc_process::init();
    /// let executor = mproc_pool::Executor::new(2)?;
    /// let task = executor.submit(square, 5)?;
    /// executor.shutdown(true, false)?;
    /// assert_eq!(task.result()?, 25);
    /// assert_eq!(executor.submit(square, 6).unwrap_err().kind(), mproc_pool::ErrorKind::Closed);
    /// # Ok::<(), mproc_pool::Error>(())
    /// ```
    pub fn shutdown(&self, wait: bool, cancel_futures: bool) -> Result<()> {
        let pool = self.pool();
        if cancel_futures {
            pool.shared().cancel_pending();
        }
        pool.close();
        if wait {
            pool.join()
        } else {
            self.detached.store(true, Ordering::Relaxed);
            Ok(())
        }
    }

    /// Stops taking work, cancels the tasks no worker has yet, fails the others with
    /// [`ErrorKind::Terminated`] and sends every worker SIGTERM, without waiting: Python
    /// 3.14's `terminate_workers()`.
    pub fn terminate_workers(&self) {
        self.force_shutdown(false);
    }

    /// As [`terminate_workers`](Self::terminate_workers), with SIGKILL: Python 3.14's
    /// `kill_workers()`.
    ///
    /// ```
    /// use std::time::Duration;
    /// fn nap(ms: u64) -> u64 { std::thread::sleep(Duration::from_millis(ms)); ms }
    /// # mproc_process::init();
    /// let executor = mproc_pool::Executor::new(1)?;
    /// let task = executor.submit(nap, 60_000)?;
    /// while !task.running() { std::thread::sleep(Duration::from_millis(1)); }
    /// executor.kill_workers();
    /// assert_eq!(task.result().unwrap_err().kind(), mproc_pool::ErrorKind::Terminated);
    /// # Ok::<(), mproc_pool::Error>(())
    /// ```
    pub fn kill_workers(&self) {
        self.force_shutdown(true);
    }

    fn force_shutdown(&self, kill: bool) {
        let pool = self.pool();
        pool.shared().cancel_pending();
        pool.close();
        pool.shared().terminate_with(kill);
    }
}

impl Drop for Executor {
    /// Shuts the executor down with `wait = true`, unless [`shutdown`](Executor::shutdown)
    /// was called with `wait = false` or this runs in a done callback: then the work
    /// finishes in the background.
    fn drop(&mut self) {
        let Some(pool) = self.pool.take() else { return };
        pool.close();
        // On the pool's own result thread (the last handle dropped in a done callback) the
        // work cannot be waited for (that thread delivers it): it finishes in the
        // background there too, rather than being terminated by the pool's drop.
        let on_own_thread = on_manager_of(pool.shared().id());
        if self.detached.load(Ordering::Relaxed) || on_own_thread {
            let pool = Arc::new(pool);
            let drained = pool.clone();
            let background = std::thread::Builder::new()
                .name("mproc-executor-drain".into())
                .spawn(move || {
                    let _ = drained.join();
                });
            if let Err(e) = background {
                // Without a thread, waiting here is the only way that still finishes the
                // work (the closure, and its handle on the pool, went with the error).
                eprintln!("mproc-pool: no thread to finish the executor's work in: {e}");
                let _ = pool.join();
            }
            return;
        }
        let _ = pool.join();
    }
}

/// The iterator of [`Executor::map`].
pub struct ExecutorMap<'a, R> {
    inner: Option<Imap<'a, R>>,
    deadline: Option<Instant>,
}

impl<R> fmt::Debug for ExecutorMap<'_, R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ExecutorMap")
            .field("ended", &self.inner.is_none())
            .finish()
    }
}

impl<R: DeserializeOwned + Send + 'static> Iterator for ExecutorMap<'_, R> {
    type Item = Result<R>;

    fn next(&mut self) -> Option<Result<R>> {
        let inner = self.inner.as_mut()?;
        let next = match self.deadline {
            None => inner.next(),
            Some(d) => inner.next_timeout(d.saturating_duration_since(Instant::now())),
        };
        match next {
            Some(Err(e)) if e.kind() == ErrorKind::Timeout && e.index().is_none() => {
                // Out of time: the rest is abandoned (its unsent items dropped).
                self.inner = None;
                Some(Err(Error::new(
                    ErrorKind::Timeout,
                    "map: a result was not ready within the timeout",
                )))
            }
            None => {
                self.inner = None;
                None
            }
            other => other.map(|r| r.map_err(Error::without_index)),
        }
    }
}
