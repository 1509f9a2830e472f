//! [`MpiPool`]'s calls that hand results over one at a time: `imap` (ordered or not),
//! lazy and bounded in flight, and `submit`, an executor's task with its handle.

use mproc_pool::{Imap, Result, TaskHandle};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::pool::MpiPool;

impl MpiPool {
    /// Applies `f` to the items lazily on the worker ranks, yielding results in order as
    /// they come: Python's `imap` (one item per task). Items are taken from the input only
    /// as results are taken, so an endless input is fine; see [`mproc_pool::Imap`].
    ///
    /// ```no_run
    /// // no_run: needs `mpiexec -n 3 ./prog`.
    /// fn double(x: u64) -> u64 { x * 2 }
    /// mproc_process::init();
    /// let mpi = mproc_mpi::init()?;
    /// let pool = mproc_mpi::MpiPool::new(&mpi)?;
    /// let firsts: Vec<u64> = pool.imap(double, 0..).take(5).collect::<Result<_, _>>()?;
    /// assert_eq!(firsts, [0, 2, 4, 6, 8]);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn imap<'a, A, R>(
        &self,
        f: fn(A) -> R,
        items: impl IntoIterator<Item = A> + 'a,
    ) -> Imap<'a, R>
    where
        A: Serialize + DeserializeOwned + 'static,
        R: Serialize + DeserializeOwned + Send + 'static,
    {
        self.front.stream(f, items, 1, true)
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
        self.front.stream(f, items, chunksize, true)
    }

    /// Like [`imap`](Self::imap), yielding each result as soon as it is ready, in no
    /// particular order: Python's `imap_unordered`.
    pub fn imap_unordered<'a, A, R>(
        &self,
        f: fn(A) -> R,
        items: impl IntoIterator<Item = A> + 'a,
    ) -> Imap<'a, R>
    where
        A: Serialize + DeserializeOwned + 'static,
        R: Serialize + DeserializeOwned + Send + 'static,
    {
        self.front.stream(f, items, 1, false)
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
        self.front.stream(f, items, chunksize, false)
    }

    /// Schedules `f(arg)` on a worker rank and returns its [`TaskHandle`] at once:
    /// `MPIPoolExecutor.submit`. [`mproc_pool::as_completed`] and [`mproc_pool::wait`]
    /// take these handles as they take a local executor's; a handle's `cancel` succeeds
    /// until rank 0 sends the task to a rank.
    ///
    /// ```no_run
    /// // no_run: needs `mpiexec -n 3 ./prog`.
    /// fn square(x: u64) -> u64 { x * x }
    /// mproc_process::init();
    /// let mpi = mproc_mpi::init()?;
    /// let pool = mproc_mpi::MpiPool::new(&mpi)?;
    /// let tasks = [pool.submit(square, 3)?, pool.submit(square, 4)?];
    /// let sum: u64 = mproc_pool::as_completed(&tasks, None)
    ///     .map(|t| t?.result())
    ///     .sum::<Result<u64, _>>()?;
    /// assert_eq!(sum, 25);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Closed`](mproc_pool::ErrorKind::Closed) on a closed pool,
    /// [`ErrorKind::Terminated`](mproc_pool::ErrorKind::Terminated) after the MPI thread
    /// ended.
    pub fn submit<A, R>(&self, f: fn(A) -> R, arg: A) -> Result<TaskHandle<R>>
    where
        A: Serialize + DeserializeOwned + 'static,
        R: Serialize + DeserializeOwned + Send + 'static,
    {
        self.front.submit(f, arg)
    }
}
