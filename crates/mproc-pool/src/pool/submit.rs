//! Handing a call's items to the manager: cut into chunks, serialized, submitted.

use std::sync::Arc;

use super::Pool;
use crate::callbacks::Callbacks;
use crate::chunk;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::error::{Error, ErrorKind, Result};
use crate::handle::{TaskHandle, TaskJob};
use crate::manager::{Deliveries, deliver};
use crate::result::{AsyncResult, Collect};
use crate::sink::Sink;
use crate::task::{Call, TaskFn};

impl Pool {
    pub(super) fn collect<F: TaskFn>(
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

    pub(super) fn submit_collect<F: TaskFn, T: Send + 'static>(
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

    /// Schedules `f(arg)` in a worker and returns its [`TaskHandle`] at once: an
    /// executor's `submit` on a pool, so that [`as_completed`](crate::as_completed) and
    /// [`wait`](crate::wait) work on its tasks. An argument that does not serialize fails
    /// the task, not this call.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Closed`] on a closed pool, [`ErrorKind::Terminated`] on a terminated
    /// one.
    ///
    /// ```
    /// fn square(x: u64) -> u64 { x * x }
    /// # mproc_process::init();
    /// let pool = mproc_pool::Pool::new(2)?;
    /// let tasks: Vec<_> = (1..=3).map(|x| pool.submit(square, x)).collect::<Result<_, _>>()?;
    /// let mut done: Vec<u64> = mproc_pool::as_completed(&tasks, None)
    ///     .map(|t| t?.result())
    ///     .collect::<Result<_, _>>()?;
    /// done.sort();
    /// assert_eq!(done, [1, 4, 9]);
    /// # Ok::<(), mproc_pool::Error>(())
    /// ```
    pub fn submit<A, R>(&self, f: fn(A) -> R, arg: A) -> Result<TaskHandle<R>>
    where
        A: Serialize + DeserializeOwned + 'static,
        R: Serialize + DeserializeOwned + Send + 'static,
    {
        let job = TaskJob::<R>::new(self.shared.id());
        let sink: Arc<dyn Sink> = job.clone();
        self.submit_task(f, arg, sink)?;
        Ok(TaskHandle::new(job))
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
}
