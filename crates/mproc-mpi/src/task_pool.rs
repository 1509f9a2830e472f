//! [`MpiPool`]'s [`TaskPool`]: the calls both pools answer, so code written against the
//! trait runs on the worker ranks unchanged.

use std::time::Duration;

use mproc_pool::{AsyncResult, Callbacks, Imap, Result, TaskHandle, TaskPool};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::pool::MpiPool;

impl TaskPool for MpiPool {
    fn processes(&self) -> usize {
        MpiPool::processes(self)
    }

    fn apply<A, R>(&self, f: fn(A) -> R, arg: A) -> Result<R>
    where
        A: Serialize + DeserializeOwned + 'static,
        R: Serialize + DeserializeOwned + Send + 'static,
    {
        MpiPool::apply(self, f, arg)
    }

    fn apply_async<A, R>(&self, f: fn(A) -> R, arg: A) -> Result<AsyncResult<R>>
    where
        A: Serialize + DeserializeOwned + 'static,
        R: Serialize + DeserializeOwned + Send + 'static,
    {
        MpiPool::apply_async(self, f, arg)
    }

    fn apply_async_with<A, R>(
        &self,
        f: fn(A) -> R,
        arg: A,
        callbacks: Callbacks<R>,
    ) -> Result<AsyncResult<R>>
    where
        A: Serialize + DeserializeOwned + 'static,
        R: Serialize + DeserializeOwned + Send + 'static,
    {
        MpiPool::apply_async_with(self, f, arg, callbacks)
    }

    fn map<A, R>(&self, f: fn(A) -> R, items: impl IntoIterator<Item = A>) -> Result<Vec<R>>
    where
        A: Serialize + DeserializeOwned + 'static,
        R: Serialize + DeserializeOwned + Send + 'static,
    {
        MpiPool::map(self, f, items)
    }

    fn map_chunked<A, R>(
        &self,
        f: fn(A) -> R,
        items: impl IntoIterator<Item = A>,
        chunksize: usize,
    ) -> Result<Vec<R>>
    where
        A: Serialize + DeserializeOwned + 'static,
        R: Serialize + DeserializeOwned + Send + 'static,
    {
        MpiPool::map_chunked(self, f, items, chunksize)
    }

    fn map_async<A, R>(
        &self,
        f: fn(A) -> R,
        items: impl IntoIterator<Item = A>,
    ) -> Result<AsyncResult<Vec<R>>>
    where
        A: Serialize + DeserializeOwned + 'static,
        R: Serialize + DeserializeOwned + Send + 'static,
    {
        MpiPool::map_async(self, f, items)
    }

    fn map_async_with<A, R>(
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
        MpiPool::map_async_with(self, f, items, chunksize, callbacks)
    }

    fn starmap<A, B, R>(
        &self,
        f: fn(A, B) -> R,
        items: impl IntoIterator<Item = (A, B)>,
    ) -> Result<Vec<R>>
    where
        A: Serialize + DeserializeOwned + 'static,
        B: Serialize + DeserializeOwned + 'static,
        R: Serialize + DeserializeOwned + Send + 'static,
    {
        MpiPool::starmap(self, f, items)
    }

    fn imap<'a, A, R>(&self, f: fn(A) -> R, items: impl IntoIterator<Item = A> + 'a) -> Imap<'a, R>
    where
        A: Serialize + DeserializeOwned + 'static,
        R: Serialize + DeserializeOwned + Send + 'static,
    {
        MpiPool::imap(self, f, items)
    }

    fn imap_chunked<'a, A, R>(
        &self,
        f: fn(A) -> R,
        items: impl IntoIterator<Item = A> + 'a,
        chunksize: usize,
    ) -> Imap<'a, R>
    where
        A: Serialize + DeserializeOwned + 'static,
        R: Serialize + DeserializeOwned + Send + 'static,
    {
        MpiPool::imap_chunked(self, f, items, chunksize)
    }

    fn imap_unordered<'a, A, R>(
        &self,
        f: fn(A) -> R,
        items: impl IntoIterator<Item = A> + 'a,
    ) -> Imap<'a, R>
    where
        A: Serialize + DeserializeOwned + 'static,
        R: Serialize + DeserializeOwned + Send + 'static,
    {
        MpiPool::imap_unordered(self, f, items)
    }

    fn submit<A, R>(&self, f: fn(A) -> R, arg: A) -> Result<TaskHandle<R>>
    where
        A: Serialize + DeserializeOwned + 'static,
        R: Serialize + DeserializeOwned + Send + 'static,
    {
        MpiPool::submit(self, f, arg)
    }

    fn close(&self) {
        MpiPool::close(self)
    }

    fn terminate(&self) {
        MpiPool::terminate(self)
    }

    fn join(&self) -> Result<()> {
        MpiPool::join(self)
    }

    fn join_timeout(&self, timeout: Duration) -> Result<()> {
        MpiPool::join_timeout(self, timeout)
    }
}
