//! [`Callbacks`]: functions run in the parent when an asynchronous call of a pool
//! completes.

use std::fmt;

use crate::error::{Error, Result};

/// Functions run in the parent when an asynchronous call completes: Python's `callback`
/// and `error_callback`.
///
/// They run on the pool's result thread (or, for a call that fails or completes at once, on
/// the caller's), before [`AsyncResult::get`](crate::AsyncResult::get) returns to anyone,
/// and should return quickly: as in Python, a slow callback holds up every other result. A
/// callback may submit more work to the pool, but not wait for it: waiting there (`get`,
/// `map`, `join`) returns [`ErrorKind::InvalidState`](crate::ErrorKind::InvalidState) at
/// once, and `terminate` (or dropping the pool) there starts the termination without
/// waiting for it.
///
/// ```
/// use std::sync::mpsc;
/// use mproc_pool::{Callbacks, Pool};
/// fn square(x: u64) -> u64 { x * x }
/// # mproc_process::init();
/// let pool = Pool::new(2)?;
/// let (tx, rx) = mpsc::channel();
/// let on_done = Callbacks::new().on_success(move |v: &u64| tx.send(*v).unwrap());
/// let result = pool.apply_async_with(square, 7, on_done)?;
/// assert_eq!(result.get()?, 49);
/// assert_eq!(rx.recv().unwrap(), 49);
/// # Ok::<(), mproc_pool::Error>(())
/// ```
pub struct Callbacks<T> {
    success: Option<OnSuccess<T>>,
    error: Option<OnError>,
}

type OnSuccess<T> = Box<dyn FnOnce(&T) + Send>;
type OnError = Box<dyn FnOnce(&Error) + Send>;

impl<T> Default for Callbacks<T> {
    fn default() -> Self {
        Callbacks {
            success: None,
            error: None,
        }
    }
}

impl<T> fmt::Debug for Callbacks<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Callbacks")
            .field("on_success", &self.success.is_some())
            .field("on_error", &self.error.is_some())
            .finish()
    }
}

impl<T> Callbacks<T> {
    /// Makes an empty set of callbacks.
    pub fn new() -> Self {
        Self::default()
    }

    /// Runs `f` with the result when the call succeeds (Python's `callback`).
    pub fn on_success(mut self, f: impl FnOnce(&T) + Send + 'static) -> Self {
        self.success = Some(Box::new(f));
        self
    }

    /// Runs `f` with the error when the call fails (Python's `error_callback`).
    pub fn on_error(mut self, f: impl FnOnce(&Error) + Send + 'static) -> Self {
        self.error = Some(Box::new(f));
        self
    }

    /// Runs the callback that fits `outcome`.
    pub(crate) fn run(self, outcome: &Result<T>) {
        // A panicking callback must not take the pool's result thread down with it.
        let _ = mproc_process::catch_panic(|| match outcome {
            Ok(v) => self.success.map(|f| f(v)),
            Err(e) => self.error.map(|f| f(e)),
        });
    }
}
