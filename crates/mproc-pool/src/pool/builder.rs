//! [`Builder`]: the options of a [`Pool`], Python's `Pool(...)` arguments.

use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use mproc_process::{ForkPermit, ForkServer, StartMethod};
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::Pool;
use crate::error::{Error, ErrorKind, Result};
use crate::manager::{Config, Shared};
use crate::task::{Call, Payload};

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
