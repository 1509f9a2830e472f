//! `Pool::apply` with its variants: one call, run in a worker.

use serde::Serialize;
use serde::de::DeserializeOwned;

use super::Pool;
use crate::callbacks::Callbacks;
use crate::error::Result;
use crate::result::AsyncResult;

impl Pool {
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
    /// The task's error (its index is 0), or [`ErrorKind::Closed`](crate::ErrorKind::Closed).
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
    /// [`ErrorKind::Closed`](crate::ErrorKind::Closed) on a closed pool; the task's own
    /// error comes from the result.
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
}
