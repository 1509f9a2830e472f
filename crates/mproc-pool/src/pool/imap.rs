//! `Pool::imap` with its variants: results as they come, from items taken lazily.

use serde::Serialize;
use serde::de::DeserializeOwned;

use super::Pool;
use crate::imap::{IMAP_CHUNKS_PER_WORKER, Imap, feed};
use crate::task::TaskFn;

impl Pool {
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
    /// particular order: Python's `imap_unordered`. An error's [`index`](crate::Error::index)
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

    fn stream<'a, F: TaskFn>(
        &self,
        f: F,
        items: impl IntoIterator<Item = F::Args> + 'a,
        chunksize: usize,
        ordered: bool,
    ) -> Imap<'a, F::Output> {
        let chunksize = chunksize.max(1);
        let feed = feed(f, items, chunksize);
        let window = chunksize
            .saturating_mul(IMAP_CHUNKS_PER_WORKER)
            .saturating_mul(self.processes());
        let shared = self.shared.clone();
        let manager = shared.id();
        Imap::new(
            Box::new(move |chunks| shared.submit(chunks)),
            manager,
            ordered,
            window,
            feed,
        )
    }
}
