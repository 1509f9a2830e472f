//! `Pool::map` with its variants (`map_chunked`, `map_async`, `starmap`, ...): every item
//! through one function, the results gathered in order.

use serde::Serialize;
use serde::de::DeserializeOwned;

use super::Pool;
use crate::callbacks::Callbacks;
use crate::error::Result;
use crate::result::AsyncResult;

impl Pool {
    /// Applies `f` to every item and returns the results in order: Python's `map`.
    ///
    /// The items are cut into chunks by Python's rule (about four per worker); use
    /// [`map_chunked`](Self::map_chunked) to choose.
    ///
    /// # Errors
    ///
    /// The error of the first item that failed (lowest index among those known when it
    /// failed: the call stops at the first failure), naming that item's
    /// [`index`](crate::Error::index); [`ErrorKind::Closed`](crate::ErrorKind::Closed) on a
    /// closed pool.
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
    /// As [`map`](Self::map); [`ErrorKind::InvalidInput`](crate::ErrorKind::InvalidInput)
    /// for a `chunksize` of 0.
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
    /// [`ErrorKind::Closed`](crate::ErrorKind::Closed) on a closed pool; the items' errors
    /// come from the result.
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
    /// As [`map_async`](Self::map_async);
    /// [`ErrorKind::InvalidInput`](crate::ErrorKind::InvalidInput) for a chunk size of 0.
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
    /// [`ErrorKind::Closed`](crate::ErrorKind::Closed) on a closed pool.
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
}
