//! [`AsyncResult`]: the pending outcome of a call whose items are gathered into one
//! (`apply_async`, `map_async`), with the job that gathers them.

use std::collections::BTreeMap;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use serde::de::DeserializeOwned;

use crate::callbacks::Callbacks;
use crate::condvar::{lock, wait_until};
use crate::error::{Error, ErrorKind, Result};
use crate::manager::{on_manager_of, reentrant_wait};
use crate::sink::{Delivery, Sink, Span, chunk_results};
use crate::waker::WakerSlot;

/// A call whose items are gathered into one outcome: `apply_async` (one item) and
/// `map_async` (all of them, in order). It fails as soon as an item fails.
pub(crate) struct Collect<R, T> {
    /// The pool it runs on: its manager thread must not wait for it.
    pool: usize,
    state: Mutex<CollectState<R, T>>,
    changed: Condvar,
    cancelled: AtomicBool,
    gather: fn(Vec<R>) -> T,
}

struct CollectState<R, T> {
    /// The values so far, in order from item 0: chunks that arrive in order are appended
    /// at once (the common case), the others wait in `early` until their turn.
    values: Vec<R>,
    /// Chunks that arrived before the ones in front of them, by their first item.
    early: BTreeMap<usize, Vec<R>>,
    total: usize,
    remaining: usize,
    /// The error of the lowest failed index seen so far.
    error: Option<Error>,
    /// Set once the outcome is decided; the callbacks run before it is stored.
    decided: bool,
    outcome: Option<Result<T>>,
    taken: bool,
    callbacks: Option<Callbacks<T>>,
    /// The task awaiting the outcome, woken where blocking waiters are notified.
    waker: WakerSlot,
}

impl<R, T> CollectState<R, T> {
    /// Adds the values of the chunk starting at item `start`.
    fn append(&mut self, start: usize, values: Vec<R>) {
        if start != self.values.len() {
            self.early.insert(start, values);
            return;
        }
        if self.values.capacity() == 0 {
            self.values.reserve_exact(self.total);
        }
        self.values.extend(values);
        while let Some(next) = self.early.remove(&self.values.len()) {
            self.values.extend(next);
        }
    }
}

impl<R: Send, T: Send> Collect<R, T> {
    /// Makes the job of `n` items. With no item at all it completes at once (its
    /// callbacks run here).
    pub(crate) fn new(
        pool: usize,
        n: usize,
        gather: fn(Vec<R>) -> T,
        callbacks: Callbacks<T>,
    ) -> Arc<Self> {
        let job = Arc::new(Collect {
            pool,
            state: Mutex::new(CollectState {
                values: Vec::new(),
                early: BTreeMap::new(),
                total: n,
                remaining: n,
                error: None,
                decided: false,
                outcome: None,
                taken: false,
                callbacks: Some(callbacks),
                waker: WakerSlot::default(),
            }),
            changed: Condvar::new(),
            cancelled: AtomicBool::new(false),
            gather,
        });
        if n == 0 {
            let st = lock(&job.state);
            job.decide(st);
        }
        job
    }

    /// Decides the outcome, runs the callbacks without the lock, then publishes it.
    fn decide(&self, mut st: MutexGuard<'_, CollectState<R, T>>) {
        st.decided = true;
        let outcome = match st.error.take() {
            Some(e) => {
                self.cancelled.store(true, Ordering::Relaxed);
                Err(e)
            }
            None => Ok((self.gather)(std::mem::take(&mut st.values))),
        };
        let callbacks = st.callbacks.take();
        drop(st);
        if let Some(cb) = callbacks {
            cb.run(&outcome);
        }
        let waker = {
            let mut st = lock(&self.state);
            st.outcome = Some(outcome);
            st.waker.take()
        };
        self.changed.notify_all();
        if let Some(w) = waker {
            w.wake();
        }
    }
}

impl<R: DeserializeOwned + Send, T: Send> Sink for Collect<R, T> {
    fn deliver(&self, span: Span, delivery: Delivery) {
        let outcomes = chunk_results::<R>(span, delivery);
        let mut st = lock(&self.state);
        if st.decided {
            return;
        }
        if let Some(first) = outcomes.failures.into_iter().next() {
            // Failures come in order: the first is this chunk's lowest index.
            if st
                .error
                .as_ref()
                .is_none_or(|old| old.index() > first.index())
            {
                st.error = Some(first);
            }
        } else {
            st.remaining = st.remaining.saturating_sub(outcomes.values.len());
            st.append(span.start, outcomes.values);
        }
        if st.error.is_some() || st.remaining == 0 {
            self.decide(st);
        }
    }

    fn is_cancelled(&self) -> bool {
        self.cancelled.load(Ordering::Relaxed)
    }
}

/// Hands out an outcome the way `get` and `result()` do: the value once (then
/// `AlreadyTaken`, naming `call`), an error as often as asked; `None` while there is none.
pub(crate) fn take_once<T>(
    outcome: &mut Option<Result<T>>,
    taken: &mut bool,
    call: &str,
) -> Option<Result<T>> {
    if *taken {
        return Some(Err(Error::new(
            ErrorKind::AlreadyTaken,
            format!("the result was already taken by an earlier {call}"),
        )));
    }
    match outcome.take()? {
        Ok(v) => {
            *taken = true;
            Some(Ok(v))
        }
        Err(e) => {
            *outcome = Some(Err(e.clone()));
            Some(Err(e))
        }
    }
}

/// What an [`AsyncResult`] needs of its job, whatever the item type.
trait Outcome<T>: Send + Sync {
    fn wait_until(&self, deadline: Option<Instant>) -> bool;
    /// Whether the caller is the pool's manager thread (which must not wait for it).
    fn reentrant(&self) -> bool;
    fn take(&self) -> Result<T>;
    /// Takes the outcome if it is there (as `take`), or leaves the task's waker.
    fn poll_take(&self, cx: &mut Context<'_>) -> Poll<Result<T>>;
    fn successful(&self) -> Option<bool>;
}

impl<R: Send, T: Send> Outcome<T> for Collect<R, T> {
    fn wait_until(&self, deadline: Option<Instant>) -> bool {
        let st = lock(&self.state);
        // On the pool's own manager thread (a callback), only look: waiting there would
        // wait for the very thread that delivers the result.
        let deadline = if on_manager_of(self.pool) {
            Some(Instant::now())
        } else {
            deadline
        };
        wait_until(&self.changed, st, deadline, |st| {
            st.taken || st.outcome.is_some()
        })
        .1
    }

    fn reentrant(&self) -> bool {
        on_manager_of(self.pool)
    }

    fn take(&self) -> Result<T> {
        let mut st = lock(&self.state);
        let st = &mut *st;
        take_once(&mut st.outcome, &mut st.taken, "get or .await")
            .unwrap_or_else(|| Err(Error::wait_timeout()))
    }

    fn poll_take(&self, cx: &mut Context<'_>) -> Poll<Result<T>> {
        let mut st = lock(&self.state);
        let st = &mut *st;
        if let Some(r) = take_once(&mut st.outcome, &mut st.taken, "get or .await") {
            return Poll::Ready(r);
        }
        if on_manager_of(self.pool) {
            // A `block_on` in one of this pool's callbacks would wait for its own thread.
            return Poll::Ready(Err(reentrant_wait()));
        }
        st.waker.register(cx);
        Poll::Pending
    }

    fn successful(&self) -> Option<bool> {
        let st = lock(&self.state);
        if st.taken {
            return Some(true);
        }
        st.outcome.as_ref().map(|o| o.is_ok())
    }
}

/// The pending result of [`Pool::apply_async`](crate::Pool::apply_async) or
/// [`Pool::map_async`](crate::Pool::map_async): Python's `AsyncResult`.
///
/// [`get`](Self::get) hands the value out once (later calls return
/// [`ErrorKind::AlreadyTaken`]); an error can be read any number of times. Dropping it
/// does not cancel the work.
///
/// It is also a [`Future`] of the same outcome, for async code (Python:
/// `await loop.run_in_executor(...)`): `.await` never blocks a thread, it is woken by the
/// pool's own result thread and needs no runtime (tokio, smol or a hand-written
/// `block_on` all do). Awaiting takes the value as `get` does: `pool.apply_async(f,
/// x)?.await` consumes the result; `(&mut result).await` (or `&mut result` in a
/// `select!`) borrows it, and a future dropped before it is ready leaves the result to a
/// later `get` or `.await`. A worker that dies, a task timeout or
/// [`terminate`](crate::Pool::terminate) resolves it to the same error `get` returns.
///
/// ```
/// use std::time::Duration;
/// fn slow_square(x: u64) -> u64 { std::thread::sleep(Duration::from_millis(50)); x * x }
/// # mproc_process::init();
/// let pool = mproc_pool::Pool::new(2)?;
/// let result = pool.apply_async(slow_square, 12)?;
/// assert!(!result.ready());
/// assert!(result.wait_timeout(Duration::from_secs(30)));
/// assert_eq!(result.successful(), Some(true));
/// assert_eq!(result.get()?, 144);
/// # Ok::<(), mproc_pool::Error>(())
/// ```
///
/// Awaited, on any executor (here tokio's single-threaded one):
///
/// ```
/// fn square(x: u64) -> u64 { x * x }
/// # mproc_process::init();
/// let pool = mproc_pool::Pool::new(2)?;
/// let rt = tokio::runtime::Builder::new_current_thread().build()?;
/// let (a, b) = rt.block_on(async {
///     let a = pool.apply_async(square, 3)?;
///     let b = pool.map_async(square, [4, 5])?;
///     Ok::<_, mproc_pool::Error>((a.await?, b.await?))
/// })?;
/// assert_eq!((a, b), (9, vec![16, 25]));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct AsyncResult<T> {
    job: Arc<dyn Outcome<T>>,
}

impl<T> fmt::Debug for AsyncResult<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AsyncResult")
            .field("ready", &self.ready())
            .finish()
    }
}

impl<T: Send + 'static> AsyncResult<T> {
    pub(crate) fn new<R: Send + 'static>(job: Arc<Collect<R, T>>) -> Self {
        AsyncResult { job }
    }
}

impl<T> AsyncResult<T> {
    /// Waits for the call and returns its outcome: the value (once) or the error of the
    /// first failed item (with its index). Python: `get()`.
    ///
    /// # Errors
    ///
    /// The task's error ([`ErrorKind::Panicked`], [`ErrorKind::WorkerDied`],
    /// [`ErrorKind::Timeout`] with an index, ...), [`ErrorKind::Terminated`] when the pool
    /// ended first, [`ErrorKind::AlreadyTaken`] after the value was taken,
    /// [`ErrorKind::InvalidState`] when called, before the result is ready, from a callback
    /// of the same pool (its thread is the one that delivers results).
    pub fn get(&self) -> Result<T> {
        if !self.job.wait_until(None) && self.job.reentrant() {
            return Err(reentrant_wait());
        }
        self.job.take()
    }

    /// Like [`get`](Self::get), but gives up after `timeout` with [`ErrorKind::Timeout`]
    /// (with no index): the call goes on and can be waited for again. Python:
    /// `get(timeout)`.
    pub fn get_timeout(&self, timeout: Duration) -> Result<T> {
        if !self.job.wait_until(mproc_sys::deadline_after(timeout)) {
            if self.job.reentrant() {
                return Err(reentrant_wait());
            }
            return Err(Error::wait_timeout());
        }
        self.job.take()
    }

    /// Waits until the call completes (Python's `wait()`).
    pub fn wait(&self) {
        self.job.wait_until(None);
    }

    /// Waits until the call completes or `timeout` passes; returns whether it completed.
    pub fn wait_timeout(&self, timeout: Duration) -> bool {
        self.job.wait_until(mproc_sys::deadline_after(timeout))
    }

    /// Returns whether the call has completed (Python's `ready()`).
    pub fn ready(&self) -> bool {
        self.job.wait_until(Some(Instant::now()))
    }

    /// Returns whether the call completed without error, or `None` while it runs
    /// (Python's `successful()`, which raises `ValueError` instead of `None`).
    pub fn successful(&self) -> Option<bool> {
        self.job.successful()
    }
}

/// Resolves to the call's outcome, as [`get`](AsyncResult::get) returns it, without
/// blocking: the value once (a later `get` or `.await` is [`ErrorKind::AlreadyTaken`]),
/// an error as often as asked. From a callback of the same pool, before the result is
/// ready, it resolves to [`ErrorKind::InvalidState`] (as `get` does) rather than never.
impl<T> Future for AsyncResult<T> {
    type Output = Result<T>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<T>> {
        self.job.poll_take(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::task::{ItemFailure, Payload};

    #[test]
    fn a_map_fails_with_its_lowest_failed_index_and_gathers_in_order() {
        fn all(v: Vec<u64>) -> Vec<u64> {
            v
        }
        let job = Collect::<u64, Vec<u64>>::new(0, 4, all, Callbacks::new());
        let part = |v: Vec<u64>| {
            Delivery::Ran(Payload::encode(&(Vec::<(u32, ItemFailure)>::new(), v)).unwrap())
        };
        job.deliver(Span { start: 2, len: 2 }, part(vec![3, 4]));
        assert!(!job.wait_until(Some(Instant::now())));
        job.deliver(Span { start: 0, len: 2 }, part(vec![1, 2]));
        assert_eq!(Outcome::take(&*job).unwrap(), [1, 2, 3, 4]);

        let job = Collect::<u64, Vec<u64>>::new(0, 4, all, Callbacks::new());
        job.deliver(
            Span { start: 2, len: 2 },
            Delivery::Failed(Error::terminated()),
        );
        let e = Outcome::take(&*job).unwrap_err();
        assert_eq!((e.kind(), e.index()), (ErrorKind::Terminated, Some(2)));
        assert!(job.is_cancelled(), "the rest of a failed map is not sent");
    }
}
