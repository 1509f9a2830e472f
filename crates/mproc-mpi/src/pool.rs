//! [`MpiPool`]: `Pool`'s calls, run on the worker ranks of an MPI job.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use mproc_pool::relay::{
    RelayError, RelayFront, RelayJob, RelayTransport, on_result_thread, reentrant_wait_error,
};
use mproc_pool::{AsyncResult, Callbacks, ErrorKind, Result};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::init::{Inner, Mpi, result_thread};
use crate::root::{Command, PoolShared, PoolState, terminated};

/// A pool whose workers are the worker ranks of an MPI job: `mpi4py.futures`'
/// `MPIPoolExecutor`, with [`mproc_pool::Pool`]'s calls and result types.
///
/// Each worker rank runs the tasks in a local pool of its own (one child by default), so
/// a task that panics, aborts, segfaults or runs past the
/// [`task_timeout`](MpiPoolBuilder::task_timeout) fails alone, with the error kinds of a
/// local pool, and the rank serves on. A worker rank that dies as a whole is MPI's to
/// handle: the launcher (`mpiexec`) ends the whole job.
///
/// Dropping the pool terminates it (work outstanding fails with `Terminated`); call
/// [`close`](Self::close) and [`join`](Self::join) to let it finish.
///
/// ```no_run
/// // no_run: needs `mpiexec -n 3 ./prog` (rank 0 and two worker ranks).
/// fn square(x: u64) -> u64 { x * x }
/// mproc_process::init();
/// let mpi = mproc_mpi::init()?;
/// let pool = mproc_mpi::MpiPool::new(&mpi)?;
/// assert_eq!(pool.map_chunked(square, 0..1000, 100)?.len(), 1000);
/// pool.close();
/// pool.join()?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct MpiPool {
    inner: Arc<Inner>,
    shared: Arc<PoolShared>,
    pub(crate) front: RelayFront,
    /// Local worker processes over every worker rank.
    workers: usize,
}

impl std::fmt::Debug for MpiPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MpiPool")
            .field("worker_ranks", &(self.inner.size - 1))
            .field("processes", &self.workers)
            .finish()
    }
}

/// Options of an [`MpiPool`].
///
/// A worker rank's local pool starts its children by the start method of that rank
/// ([`mproc_process::set_start_method`] before [`init`](crate::init), or
/// `MPROC_START_METHOD`): spawn, or forkserver (the fork server was started before MPI).
/// Fork, refused in a process once MPI is initialised, falls back to forkserver there.
#[derive(Debug, Clone, Default)]
pub struct MpiPoolBuilder {
    processes_per_rank: Option<usize>,
    task_timeout: Option<Duration>,
}

impl MpiPoolBuilder {
    /// Sets how many children each worker rank's local pool has (default 1).
    pub fn processes_per_rank(mut self, n: usize) -> Self {
        self.processes_per_rank = Some(n);
        self
    }

    /// Fails a task that runs longer than `timeout` with
    /// [`ErrorKind::Timeout`](mproc_pool::ErrorKind::Timeout); its local worker is killed
    /// and replaced, and the rank serves on.
    pub fn task_timeout(mut self, timeout: Duration) -> Self {
        self.task_timeout = Some(timeout);
        self
    }

    /// Starts the pool on `mpi`'s worker ranks.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Start`](mproc_pool::ErrorKind::Start) with no worker rank (the program
    /// runs outside `mpiexec`, or with `-n 1`), or when the MPI thread has ended;
    /// [`ErrorKind::InvalidInput`](mproc_pool::ErrorKind::InvalidInput) for 0 processes.
    pub fn build(self, mpi: &Mpi) -> Result<MpiPool> {
        let inner = mpi.inner.clone();
        if inner.size < 2 {
            return Err(RelayError::new(
                ErrorKind::Start,
                "no worker rank to run tasks: start the program under mpiexec -n N, N >= 2",
            )
            .into());
        }
        let processes = self.processes_per_rank.unwrap_or(1);
        if processes == 0 {
            return Err(RelayError::new(
                ErrorKind::InvalidInput,
                "a worker rank needs at least one process",
            )
            .into());
        }
        let id = inner.next_pool();
        let opened = inner.command(Command::Open {
            pool: id,
            processes: processes as u32,
            task_timeout: self.task_timeout,
        });
        if !opened {
            return Err(RelayError::new(ErrorKind::Start, "the MPI thread has ended").into());
        }
        let shared = Arc::new(PoolShared {
            id,
            state: Mutex::new(PoolState::default()),
            changed: std::sync::Condvar::new(),
        });
        let workers = (inner.size - 1) * processes;
        let transport = Transport {
            inner: inner.clone(),
            shared: shared.clone(),
            workers,
        };
        let front = RelayFront::new(Arc::new(transport), result_thread());
        Ok(MpiPool {
            inner,
            shared,
            front,
            workers,
        })
    }
}

/// Carries a pool's jobs to the MPI thread.
struct Transport {
    inner: Arc<Inner>,
    shared: Arc<PoolShared>,
    workers: usize,
}

impl RelayTransport for Transport {
    fn workers(&self) -> usize {
        self.workers
    }

    fn send(&self, jobs: Vec<RelayJob>) -> std::result::Result<(), (RelayError, Vec<RelayJob>)> {
        let mut st = self.shared.state.lock().unwrap_or_else(|p| p.into_inner());
        if st.closed {
            let e = RelayError::new(
                ErrorKind::Closed,
                "the pool is closed and takes no new work",
            );
            return Err((e, jobs));
        }
        st.outstanding += jobs.len();
        drop(st);
        let n = jobs.len();
        let tx = self
            .inner
            .commands
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        let command = Command::Jobs {
            pool: self.shared.clone(),
            jobs,
        };
        // No sender: `Mpi` was dropped (its MPI thread has or will have ended).
        let unsent = match tx.as_ref() {
            Some(tx) => tx.send(command).err().map(|e| e.0),
            None => Some(command),
        };
        drop(tx);
        match unsent {
            None => Ok(()),
            Some(Command::Jobs { jobs, .. }) => {
                self.shared.finished_externally(n);
                Err((terminated(), jobs))
            }
            Some(_) => unreachable!("the command sent was Jobs"),
        }
    }
}

impl MpiPool {
    /// Starts a pool with one local process per worker rank.
    ///
    /// # Errors
    ///
    /// As [`MpiPoolBuilder::build`].
    pub fn new(mpi: &Mpi) -> Result<MpiPool> {
        MpiPoolBuilder::default().build(mpi)
    }

    /// Returns a builder for the other options.
    pub fn builder() -> MpiPoolBuilder {
        MpiPoolBuilder::default()
    }

    /// Runs `f(arg)` on a worker rank and waits for its result: Python's `apply`.
    ///
    /// # Errors
    ///
    /// As [`mproc_pool::Pool::apply`].
    pub fn apply<A, R>(&self, f: fn(A) -> R, arg: A) -> Result<R>
    where
        A: Serialize + DeserializeOwned + 'static,
        R: Serialize + DeserializeOwned + Send + 'static,
    {
        self.apply_async(f, arg)?.get()
    }

    /// Starts `f(arg)` on a worker rank and returns at once: Python's `apply_async`.
    ///
    /// # Errors
    ///
    /// As [`mproc_pool::Pool::apply_async`].
    pub fn apply_async<A, R>(&self, f: fn(A) -> R, arg: A) -> Result<AsyncResult<R>>
    where
        A: Serialize + DeserializeOwned + 'static,
        R: Serialize + DeserializeOwned + Send + 'static,
    {
        self.apply_async_with(f, arg, Callbacks::new())
    }

    /// Like [`apply_async`](Self::apply_async), with callbacks run on rank 0 when the task
    /// completes (on the MPI thread: keep them short, and do not wait there for the pool).
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
        self.front.collect(f, vec![arg], Some(1), first, callbacks)
    }

    /// Applies `f` to every item on the worker ranks and returns the results in order:
    /// Python's `map`, with Python's chunk size (about four chunks per worker process).
    ///
    /// # Errors
    ///
    /// As [`mproc_pool::Pool::map`].
    pub fn map<A, R>(&self, f: fn(A) -> R, items: impl IntoIterator<Item = A>) -> Result<Vec<R>>
    where
        A: Serialize + DeserializeOwned + 'static,
        R: Serialize + DeserializeOwned + Send + 'static,
    {
        self.map_async_with(f, items, None, Callbacks::new())?.get()
    }

    /// Like [`map`](Self::map), with `chunksize` items per task.
    ///
    /// # Errors
    ///
    /// As [`mproc_pool::Pool::map_chunked`].
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
        self.map_async_with(f, items, Some(chunksize), Callbacks::new())?
            .get()
    }

    /// Starts a [`map`](Self::map) and returns at once: Python's `map_async`.
    ///
    /// # Errors
    ///
    /// As [`mproc_pool::Pool::map_async`].
    pub fn map_async<A, R>(
        &self,
        f: fn(A) -> R,
        items: impl IntoIterator<Item = A>,
    ) -> Result<AsyncResult<Vec<R>>>
    where
        A: Serialize + DeserializeOwned + 'static,
        R: Serialize + DeserializeOwned + Send + 'static,
    {
        self.map_async_with(f, items, None, Callbacks::new())
    }

    /// Like [`map_async`](Self::map_async), with a chunk size (`None`: Python's rule) and
    /// callbacks run on rank 0 when it completes.
    ///
    /// # Errors
    ///
    /// As [`mproc_pool::Pool::map_async_with`].
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
        let items = items.into_iter().collect();
        self.front.collect(f, items, chunksize, all, callbacks)
    }

    /// Applies `f` to the two arguments of every item: Python's `starmap`.
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
        let items = items.into_iter().collect();
        self.front
            .collect(f, items, None, all, Callbacks::new())?
            .get()
    }

    /// [`starmap`](Self::starmap) for functions of three arguments.
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
        let items = items.into_iter().collect();
        self.front
            .collect(f, items, None, all, Callbacks::new())?
            .get()
    }

    /// [`starmap`](Self::starmap) for functions of four arguments.
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
        let items = items.into_iter().collect();
        self.front
            .collect(f, items, None, all, Callbacks::new())?
            .get()
    }

    /// Starts a [`starmap`](Self::starmap) and returns at once: Python's `starmap_async`.
    ///
    /// # Errors
    ///
    /// As [`mproc_pool::Pool::starmap_async`].
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
        let items = items.into_iter().collect();
        self.front.collect(f, items, None, all, Callbacks::new())
    }

    /// Returns how many local worker processes run the tasks, over every worker rank:
    /// worker ranks × [`processes_per_rank`](MpiPoolBuilder::processes_per_rank).
    pub fn processes(&self) -> usize {
        self.workers
    }

    /// Stops taking work: what was submitted still runs (Python's `close`).
    pub fn close(&self) {
        self.shared
            .state
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .closed = true;
    }

    /// Fails the work still outstanding with
    /// [`ErrorKind::Terminated`](mproc_pool::ErrorKind::Terminated) and ends the worker
    /// ranks' local pools of this pool (their children are killed): Python's `terminate`.
    ///
    /// From one of the pool's callbacks (which run on the MPI thread) it returns at once:
    /// the MPI thread fails the outstanding work once the callback returns.
    pub fn terminate(&self) {
        self.close();
        if self.inner.command(Command::Terminate {
            pool: self.shared.id,
        }) && !on_result_thread(result_thread())
        {
            // The MPI thread fails every outstanding job at once.
            let _ = self.wait_done(None);
        }
    }

    /// Stops taking work (a later call is
    /// [`ErrorKind::Closed`](mproc_pool::ErrorKind::Closed)); with `cancel_futures`, cancels
    /// every task of [`submit`](Self::submit) still waiting on rank 0 for a worker rank
    /// (its handle reports `Cancelled`; a task sent to a rank runs to its end); with
    /// `wait`, waits until the rest is done and the worker ranks' local pools of this
    /// pool have ended. `MPIPoolExecutor.shutdown(wait, cancel_futures=...)`, and
    /// `Executor::shutdown` of a local pool. Calling it again is harmless.
    ///
    /// ```no_run
    /// // no_run: needs `mpiexec -n 3 ./prog`.
    /// fn square(x: u64) -> u64 { x * x }
    /// mproc_process::init();
    /// let mpi = mproc_mpi::init()?;
    /// let pool = mproc_mpi::MpiPool::new(&mpi)?;
    /// let task = pool.submit(square, 5)?;
    /// pool.shutdown(true, false)?;
    /// assert_eq!(task.result()?, 25);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// # Errors
    ///
    /// As [`join`](Self::join) when `wait` is set (from one of the pool's callbacks:
    /// [`ErrorKind::InvalidState`](mproc_pool::ErrorKind::InvalidState)).
    pub fn shutdown(&self, wait: bool, cancel_futures: bool) -> Result<()> {
        if cancel_futures {
            // Off the MPI thread, wait until the tasks are cancelled, as Python's
            // shutdown returns with its futures cancelled; on it (in a callback), they
            // are once the callback returns.
            let on_mpi_thread = on_result_thread(result_thread());
            let (tx, rx) = std::sync::mpsc::channel();
            let sent = self.inner.command(Command::CancelPending {
                pool: self.shared.id,
                done: (!on_mpi_thread).then_some(tx),
            });
            if sent && !on_mpi_thread {
                let _ = rx.recv();
            }
        }
        self.close();
        if wait { self.join() } else { Ok(()) }
    }

    /// Waits until the work submitted has completed, after [`close`](Self::close): Python's
    /// `join`. The worker ranks' local pools of this pool then end.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::InvalidState`](mproc_pool::ErrorKind::InvalidState) when the pool was
    /// not closed, or when called from one of the pool's callbacks (they run on the MPI
    /// thread, which the join would wait for).
    pub fn join(&self) -> Result<()> {
        self.join_until(None)
    }

    /// Like [`join`](Self::join), giving up after `timeout` with
    /// [`ErrorKind::Timeout`](mproc_pool::ErrorKind::Timeout) (join again later).
    ///
    /// # Errors
    ///
    /// As [`join`](Self::join), and `Timeout`.
    pub fn join_timeout(&self, timeout: Duration) -> Result<()> {
        self.join_until(Some(Instant::now() + timeout))
    }

    fn join_until(&self, deadline: Option<Instant>) -> Result<()> {
        if on_result_thread(result_thread()) {
            return Err(reentrant_wait_error());
        }
        if !self
            .shared
            .state
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .closed
        {
            return Err(RelayError::new(
                ErrorKind::InvalidState,
                "join needs close() or terminate() first",
            )
            .into());
        }
        if !self.wait_done(deadline) {
            return Err(RelayError::new(
                ErrorKind::Timeout,
                "timed out waiting for the pool's work to end; join again later",
            )
            .into());
        }
        self.inner.command(Command::ClosePool {
            pool: self.shared.id,
        });
        Ok(())
    }

    /// Waits until no job of this pool is outstanding; `false` when `deadline` passed.
    fn wait_done(&self, deadline: Option<Instant>) -> bool {
        let mut st = self.shared.state.lock().unwrap_or_else(|p| p.into_inner());
        while st.outstanding > 0 {
            match deadline {
                None => {
                    st = self
                        .shared
                        .changed
                        .wait(st)
                        .unwrap_or_else(|p| p.into_inner())
                }
                Some(d) => {
                    let now = Instant::now();
                    if now >= d {
                        return false;
                    }
                    st = self
                        .shared
                        .changed
                        .wait_timeout(st, d - now)
                        .unwrap_or_else(|p| p.into_inner())
                        .0;
                }
            }
        }
        true
    }
}

/// Gathers a call's results as they are: a `Vec` in the items' order.
fn all<R>(v: Vec<R>) -> Vec<R> {
    v
}

impl Drop for MpiPool {
    fn drop(&mut self) {
        self.terminate();
    }
}
