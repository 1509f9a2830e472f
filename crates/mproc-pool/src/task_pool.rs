//! [`TaskPool`], the calls every pool of mproc answers (the local [`Pool`], mproc-mpi's
//! `MpiPool`), so that code written against it runs on either unchanged.

use std::time::Duration;

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::callbacks::Callbacks;
use crate::error::Result;
use crate::handle::TaskHandle;
use crate::imap::Imap;
use crate::pool::Pool;
use crate::result::AsyncResult;

/// The calls of a pool of worker processes, wherever its workers are: a local [`Pool`]
/// on this machine, or `mproc_mpi::MpiPool` on the ranks of an MPI job. Write a function
/// over `&impl TaskPool` and it runs on either, with the same results and errors.
///
/// Each method is the pool's own method of that name (see [`Pool`]'s for the details);
/// [`submit`](Self::submit) is an executor's, its [`TaskHandle`]s waited on by
/// [`as_completed`](crate::as_completed) and [`wait`](crate::wait).
///
/// ```
/// use mproc_pool::{Pool, TaskPool};
/// fn square(x: u64) -> u64 { x * x }
///
/// /// The sum of squares below `n`, on whatever pool it is given.
/// fn sum_of_squares(pool: &impl TaskPool, n: u64) -> mproc_pool::Result<u64> {
///     let eager: u64 = pool.map_chunked(square, 0..n, 64)?.iter().sum();
///     let lazy: u64 = pool.imap(square, 0..n).sum::<mproc_pool::Result<u64>>()?;
///     assert_eq!(eager, lazy);
///     Ok(eager)
/// }
///
/// # mproc_process::init();
/// let pool = Pool::new(2)?;
/// assert_eq!(sum_of_squares(&pool, 100)?, 328_350);
/// # Ok::<(), mproc_pool::Error>(())
/// ```
///
/// Under `mpiexec -n 3 ./prog`, the same function runs unchanged on the MPI job's worker
/// ranks: `let mpi = mproc_mpi::init()?; let pool = mproc_mpi::MpiPool::new(&mpi)?;`
/// then `sum_of_squares(&pool, 100)?`.
pub trait TaskPool {
    /// Returns how many worker processes run the tasks.
    fn processes(&self) -> usize;

    /// Runs `f(arg)` in a worker and waits for its result: Python's `apply`.
    ///
    /// # Errors
    ///
    /// As [`Pool::apply`].
    fn apply<A, R>(&self, f: fn(A) -> R, arg: A) -> Result<R>
    where
        A: Serialize + DeserializeOwned + 'static,
        R: Serialize + DeserializeOwned + Send + 'static;

    /// Starts `f(arg)` in a worker and returns at once: Python's `apply_async`.
    ///
    /// # Errors
    ///
    /// As [`Pool::apply_async`].
    fn apply_async<A, R>(&self, f: fn(A) -> R, arg: A) -> Result<AsyncResult<R>>
    where
        A: Serialize + DeserializeOwned + 'static,
        R: Serialize + DeserializeOwned + Send + 'static;

    /// Like [`apply_async`](Self::apply_async), with callbacks run when it completes.
    ///
    /// # Errors
    ///
    /// As [`Pool::apply_async_with`].
    fn apply_async_with<A, R>(
        &self,
        f: fn(A) -> R,
        arg: A,
        callbacks: Callbacks<R>,
    ) -> Result<AsyncResult<R>>
    where
        A: Serialize + DeserializeOwned + 'static,
        R: Serialize + DeserializeOwned + Send + 'static;

    /// Applies `f` to every item and returns the results in order: Python's `map`.
    ///
    /// # Errors
    ///
    /// As [`Pool::map`].
    fn map<A, R>(&self, f: fn(A) -> R, items: impl IntoIterator<Item = A>) -> Result<Vec<R>>
    where
        A: Serialize + DeserializeOwned + 'static,
        R: Serialize + DeserializeOwned + Send + 'static;

    /// Like [`map`](Self::map), with `chunksize` items per task.
    ///
    /// # Errors
    ///
    /// As [`Pool::map_chunked`].
    fn map_chunked<A, R>(
        &self,
        f: fn(A) -> R,
        items: impl IntoIterator<Item = A>,
        chunksize: usize,
    ) -> Result<Vec<R>>
    where
        A: Serialize + DeserializeOwned + 'static,
        R: Serialize + DeserializeOwned + Send + 'static;

    /// Starts a [`map`](Self::map) and returns at once: Python's `map_async`.
    ///
    /// # Errors
    ///
    /// As [`Pool::map_async`].
    fn map_async<A, R>(
        &self,
        f: fn(A) -> R,
        items: impl IntoIterator<Item = A>,
    ) -> Result<AsyncResult<Vec<R>>>
    where
        A: Serialize + DeserializeOwned + 'static,
        R: Serialize + DeserializeOwned + Send + 'static;

    /// Like [`map_async`](Self::map_async), with a chunk size and callbacks.
    ///
    /// # Errors
    ///
    /// As [`Pool::map_async_with`].
    fn map_async_with<A, R>(
        &self,
        f: fn(A) -> R,
        items: impl IntoIterator<Item = A>,
        chunksize: Option<usize>,
        callbacks: Callbacks<Vec<R>>,
    ) -> Result<AsyncResult<Vec<R>>>
    where
        A: Serialize + DeserializeOwned + 'static,
        R: Serialize + DeserializeOwned + Send + 'static;

    /// Applies `f` to the two arguments of every item: Python's `starmap`.
    ///
    /// # Errors
    ///
    /// As [`Pool::starmap`].
    fn starmap<A, B, R>(
        &self,
        f: fn(A, B) -> R,
        items: impl IntoIterator<Item = (A, B)>,
    ) -> Result<Vec<R>>
    where
        A: Serialize + DeserializeOwned + 'static,
        B: Serialize + DeserializeOwned + 'static,
        R: Serialize + DeserializeOwned + Send + 'static;

    /// Applies `f` to the items lazily, yielding results in order: Python's `imap`.
    fn imap<'a, A, R>(&self, f: fn(A) -> R, items: impl IntoIterator<Item = A> + 'a) -> Imap<'a, R>
    where
        A: Serialize + DeserializeOwned + 'static,
        R: Serialize + DeserializeOwned + Send + 'static;

    /// Like [`imap`](Self::imap), with `chunksize` items per task (0 counts as 1).
    fn imap_chunked<'a, A, R>(
        &self,
        f: fn(A) -> R,
        items: impl IntoIterator<Item = A> + 'a,
        chunksize: usize,
    ) -> Imap<'a, R>
    where
        A: Serialize + DeserializeOwned + 'static,
        R: Serialize + DeserializeOwned + Send + 'static;

    /// Like [`imap`](Self::imap), yielding results as they come: Python's
    /// `imap_unordered`.
    fn imap_unordered<'a, A, R>(
        &self,
        f: fn(A) -> R,
        items: impl IntoIterator<Item = A> + 'a,
    ) -> Imap<'a, R>
    where
        A: Serialize + DeserializeOwned + 'static,
        R: Serialize + DeserializeOwned + Send + 'static;

    /// Schedules `f(arg)` and returns its [`TaskHandle`] at once: an executor's `submit`.
    ///
    /// # Errors
    ///
    /// As [`Pool::submit`].
    fn submit<A, R>(&self, f: fn(A) -> R, arg: A) -> Result<TaskHandle<R>>
    where
        A: Serialize + DeserializeOwned + 'static,
        R: Serialize + DeserializeOwned + Send + 'static;

    /// Stops taking work: what was submitted still runs (Python's `close`).
    fn close(&self);

    /// Fails the work outstanding and ends the workers (Python's `terminate`).
    fn terminate(&self);

    /// Waits until the work has completed, after [`close`](Self::close) (Python's `join`).
    ///
    /// # Errors
    ///
    /// As [`Pool::join`].
    fn join(&self) -> Result<()>;

    /// Like [`join`](Self::join), giving up after `timeout`.
    ///
    /// # Errors
    ///
    /// As [`Pool::join_timeout`].
    fn join_timeout(&self, timeout: Duration) -> Result<()>;
}

/// Implements [`TaskPool`] for a pool type whose inherent methods have the trait's names
/// and signatures, each trait method calling the inherent one (mproc's pools: `Pool` here,
/// `MpiPool` in mproc-mpi). Not for use outside mproc.
#[doc(hidden)]
#[macro_export]
macro_rules! impl_task_pool_by_inherent_methods {
    ($ty:ty) => {
        impl $crate::TaskPool for $ty {
            fn processes(&self) -> usize {
                <$ty>::processes(self)
            }

            fn apply<A, R>(&self, f: fn(A) -> R, arg: A) -> $crate::Result<R>
            where
                A: $crate::__serde::Serialize + $crate::__serde::de::DeserializeOwned + 'static,
                R: $crate::__serde::Serialize
                    + $crate::__serde::de::DeserializeOwned
                    + Send
                    + 'static,
            {
                <$ty>::apply(self, f, arg)
            }

            fn apply_async<A, R>(
                &self,
                f: fn(A) -> R,
                arg: A,
            ) -> $crate::Result<$crate::AsyncResult<R>>
            where
                A: $crate::__serde::Serialize + $crate::__serde::de::DeserializeOwned + 'static,
                R: $crate::__serde::Serialize
                    + $crate::__serde::de::DeserializeOwned
                    + Send
                    + 'static,
            {
                <$ty>::apply_async(self, f, arg)
            }

            fn apply_async_with<A, R>(
                &self,
                f: fn(A) -> R,
                arg: A,
                callbacks: $crate::Callbacks<R>,
            ) -> $crate::Result<$crate::AsyncResult<R>>
            where
                A: $crate::__serde::Serialize + $crate::__serde::de::DeserializeOwned + 'static,
                R: $crate::__serde::Serialize
                    + $crate::__serde::de::DeserializeOwned
                    + Send
                    + 'static,
            {
                <$ty>::apply_async_with(self, f, arg, callbacks)
            }

            fn map<A, R>(
                &self,
                f: fn(A) -> R,
                items: impl IntoIterator<Item = A>,
            ) -> $crate::Result<Vec<R>>
            where
                A: $crate::__serde::Serialize + $crate::__serde::de::DeserializeOwned + 'static,
                R: $crate::__serde::Serialize
                    + $crate::__serde::de::DeserializeOwned
                    + Send
                    + 'static,
            {
                <$ty>::map(self, f, items)
            }

            fn map_chunked<A, R>(
                &self,
                f: fn(A) -> R,
                items: impl IntoIterator<Item = A>,
                chunksize: usize,
            ) -> $crate::Result<Vec<R>>
            where
                A: $crate::__serde::Serialize + $crate::__serde::de::DeserializeOwned + 'static,
                R: $crate::__serde::Serialize
                    + $crate::__serde::de::DeserializeOwned
                    + Send
                    + 'static,
            {
                <$ty>::map_chunked(self, f, items, chunksize)
            }

            fn map_async<A, R>(
                &self,
                f: fn(A) -> R,
                items: impl IntoIterator<Item = A>,
            ) -> $crate::Result<$crate::AsyncResult<Vec<R>>>
            where
                A: $crate::__serde::Serialize + $crate::__serde::de::DeserializeOwned + 'static,
                R: $crate::__serde::Serialize
                    + $crate::__serde::de::DeserializeOwned
                    + Send
                    + 'static,
            {
                <$ty>::map_async(self, f, items)
            }

            fn map_async_with<A, R>(
                &self,
                f: fn(A) -> R,
                items: impl IntoIterator<Item = A>,
                chunksize: Option<usize>,
                callbacks: $crate::Callbacks<Vec<R>>,
            ) -> $crate::Result<$crate::AsyncResult<Vec<R>>>
            where
                A: $crate::__serde::Serialize + $crate::__serde::de::DeserializeOwned + 'static,
                R: $crate::__serde::Serialize
                    + $crate::__serde::de::DeserializeOwned
                    + Send
                    + 'static,
            {
                <$ty>::map_async_with(self, f, items, chunksize, callbacks)
            }

            fn starmap<A, B, R>(
                &self,
                f: fn(A, B) -> R,
                items: impl IntoIterator<Item = (A, B)>,
            ) -> $crate::Result<Vec<R>>
            where
                A: $crate::__serde::Serialize + $crate::__serde::de::DeserializeOwned + 'static,
                B: $crate::__serde::Serialize + $crate::__serde::de::DeserializeOwned + 'static,
                R: $crate::__serde::Serialize
                    + $crate::__serde::de::DeserializeOwned
                    + Send
                    + 'static,
            {
                <$ty>::starmap(self, f, items)
            }

            fn imap<'a, A, R>(
                &self,
                f: fn(A) -> R,
                items: impl IntoIterator<Item = A> + 'a,
            ) -> $crate::Imap<'a, R>
            where
                A: $crate::__serde::Serialize + $crate::__serde::de::DeserializeOwned + 'static,
                R: $crate::__serde::Serialize
                    + $crate::__serde::de::DeserializeOwned
                    + Send
                    + 'static,
            {
                <$ty>::imap(self, f, items)
            }

            fn imap_chunked<'a, A, R>(
                &self,
                f: fn(A) -> R,
                items: impl IntoIterator<Item = A> + 'a,
                chunksize: usize,
            ) -> $crate::Imap<'a, R>
            where
                A: $crate::__serde::Serialize + $crate::__serde::de::DeserializeOwned + 'static,
                R: $crate::__serde::Serialize
                    + $crate::__serde::de::DeserializeOwned
                    + Send
                    + 'static,
            {
                <$ty>::imap_chunked(self, f, items, chunksize)
            }

            fn imap_unordered<'a, A, R>(
                &self,
                f: fn(A) -> R,
                items: impl IntoIterator<Item = A> + 'a,
            ) -> $crate::Imap<'a, R>
            where
                A: $crate::__serde::Serialize + $crate::__serde::de::DeserializeOwned + 'static,
                R: $crate::__serde::Serialize
                    + $crate::__serde::de::DeserializeOwned
                    + Send
                    + 'static,
            {
                <$ty>::imap_unordered(self, f, items)
            }

            fn submit<A, R>(&self, f: fn(A) -> R, arg: A) -> $crate::Result<$crate::TaskHandle<R>>
            where
                A: $crate::__serde::Serialize + $crate::__serde::de::DeserializeOwned + 'static,
                R: $crate::__serde::Serialize
                    + $crate::__serde::de::DeserializeOwned
                    + Send
                    + 'static,
            {
                <$ty>::submit(self, f, arg)
            }

            fn close(&self) {
                <$ty>::close(self)
            }

            fn terminate(&self) {
                <$ty>::terminate(self)
            }

            fn join(&self) -> $crate::Result<()> {
                <$ty>::join(self)
            }

            fn join_timeout(&self, timeout: ::std::time::Duration) -> $crate::Result<()> {
                <$ty>::join_timeout(self, timeout)
            }
        }
    };
}

impl_task_pool_by_inherent_methods!(Pool);
