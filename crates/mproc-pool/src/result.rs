//! Where results land: a call's job (which items are done, what failed), the
//! [`AsyncResult`] a caller waits on, and the callbacks run when it completes.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use serde::de::DeserializeOwned;

use crate::error::{Error, ErrorKind, Result};
use crate::manager::{on_manager_of, reentrant_wait};
use crate::task::{ChunkResults, ItemFailure, Payload};

/// A chunk's place in its call: items `start .. start + len` of the input.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Span {
    pub start: usize,
    pub len: usize,
}

/// What a job receives for one chunk.
pub(crate) enum Delivery {
    /// The worker ran it: a serialized `Vec<Result<R, ItemFailure>>`.
    Ran(Payload),
    /// No item of it ran, or its result was lost: every item fails with this error.
    Failed(Error),
}

/// The receiving end of a call: the pool's manager hands it each chunk's outcome.
pub(crate) trait Sink: Send + Sync {
    /// Takes the outcome of the chunk at `span`.
    fn deliver(&self, span: Span, delivery: Delivery);
    /// Returns whether the job needs no more results (it failed, or its reader is gone);
    /// its chunks not yet sent to a worker are then dropped.
    fn is_cancelled(&self) -> bool;
    /// Called under the pool's lock just before a chunk is sent to a worker: `false` when
    /// the job was cancelled (the chunk is dropped), and from then on a cancel fails.
    fn begin(&self) -> bool {
        !self.is_cancelled()
    }
    /// Undoes [`begin`](Sink::begin) for a chunk that could not be sent after all (it goes
    /// back to the pending list).
    fn unbegin(&self) {}
    /// Cancels the job if none of its chunks has been sent (`shutdown(cancel_futures)`).
    fn cancel_pending(&self) {}
}

/// A chunk's results in the parent: the values of the items that succeeded, in order,
/// and the failed items' errors, by index in the call.
pub(crate) struct Outcomes<R> {
    pub values: Vec<R>,
    pub failures: Vec<Error>,
}

impl<R> Outcomes<R> {
    /// Merges values and failures back into one result per item, in order.
    pub(crate) fn into_items(self, span: Span) -> impl Iterator<Item = (usize, Result<R>)> {
        let mut values = self.values.into_iter();
        let mut failures = self.failures.into_iter().peekable();
        (span.start..span.start + span.len).filter_map(move |i| {
            if failures.peek().and_then(Error::index) == Some(i) {
                return failures.next().map(|e| (i, Err(e)));
            }
            values.next().map(|v| (i, Ok(v)))
        })
    }
}

/// Decodes a chunk's outcome; each error names its item's index. Bytes that do not
/// decode as the chunk's results (or do not account for each item exactly once) fail
/// every item of the chunk.
pub(crate) fn chunk_results<R: DeserializeOwned>(span: Span, delivery: Delivery) -> Outcomes<R> {
    let all_fail = |e: Error| Outcomes {
        values: Vec::new(),
        failures: (0..span.len)
            .map(|i| e.clone().at(span.start + i))
            .collect(),
    };
    let payload = match delivery {
        Delivery::Ran(payload) => payload,
        Delivery::Failed(e) => return all_fail(e),
    };
    let (failures, values) = match payload.decode::<ChunkResults<R>>() {
        Ok(r) => r,
        Err(e) => {
            return all_fail(
                Error::new(
                    ErrorKind::Decode,
                    "the task's result could not be deserialized",
                )
                .with_source(e),
            );
        }
    };
    let ordered = failures.windows(2).all(|w| w[0].0 < w[1].0)
        && failures
            .last()
            .is_none_or(|(i, _)| (*i as usize) < span.len);
    if !ordered || failures.len() + values.len() != span.len {
        return all_fail(Error::new(
            ErrorKind::Decode,
            format!(
                "a worker sent {} results and {} failures for a chunk of {}",
                values.len(),
                failures.len(),
                span.len
            ),
        ));
    }
    let failures = failures
        .into_iter()
        .map(|(i, failure)| {
            match failure {
                ItemFailure::Panicked(m) => Error::panicked(m),
                ItemFailure::Encode(m) => Error::new(ErrorKind::Encode, m),
            }
            .at(span.start + i as usize)
        })
        .collect();
    Outcomes { values, failures }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Waits on `cv` until `done(state)` or `deadline`; returns whether `done` holds.
pub(crate) fn wait_until<'a, T>(
    cv: &Condvar,
    mut guard: MutexGuard<'a, T>,
    deadline: Option<Instant>,
    done: impl Fn(&T) -> bool,
) -> (MutexGuard<'a, T>, bool) {
    loop {
        if done(&guard) {
            return (guard, true);
        }
        match deadline {
            None => guard = cv.wait(guard).unwrap_or_else(|p| p.into_inner()),
            Some(d) => {
                let left = d.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    return (guard, false);
                }
                guard = cv
                    .wait_timeout(guard, left)
                    .unwrap_or_else(|p| p.into_inner())
                    .0;
            }
        }
    }
}

/// Functions run in the parent when an asynchronous call completes: Python's `callback`
/// and `error_callback`.
///
/// They run on the pool's result thread (or, for a call that fails or completes at once,
/// on the caller's), before [`AsyncResult::get`] returns to anyone, and should return
/// quickly: as in Python, a slow callback holds up every other result. A callback may
/// submit more work to the pool, but not wait for it: waiting there (`get`, `map`,
/// `join`) returns [`ErrorKind::InvalidState`] at once, and `terminate` (or dropping the
/// pool) there starts the termination without waiting for it.
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

    fn run(self, outcome: &Result<T>) {
        // A panicking callback must not take the pool's result thread down with it.
        let _ = mproc_process::catch_panic(|| match outcome {
            Ok(v) => self.success.map(|f| f(v)),
            Err(e) => self.error.map(|f| f(e)),
        });
    }
}

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
        lock(&self.state).outcome = Some(outcome);
        self.changed.notify_all();
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
        take_once(&mut st.outcome, &mut st.taken, "get")
            .unwrap_or_else(|| Err(Error::wait_timeout()))
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

#[cfg(test)]
mod tests {
    use super::*;

    fn decode(span: Span, payload: Payload) -> Vec<std::result::Result<u64, ErrorKind>> {
        chunk_results::<u64>(span, Delivery::Ran(payload))
            .into_items(span)
            .map(|(_, r)| r.map_err(|e| e.kind()))
            .collect()
    }

    #[test]
    fn results_and_failures_merge_back_in_order() {
        let sent: ChunkResults<u64> = (vec![(1, ItemFailure::Panicked("boom".into()))], vec![7, 9]);
        let span = Span { start: 10, len: 3 };
        let items: Vec<_> =
            chunk_results::<u64>(span, Delivery::Ran(Payload::encode(&sent).unwrap()))
                .into_items(span)
                .map(|(i, r)| (i, r.map_err(|e| (e.kind(), e.index()))))
                .collect();
        assert_eq!(
            items,
            [
                (10, Ok(7)),
                (11, Err((ErrorKind::Panicked, Some(11)))),
                (12, Ok(9))
            ]
        );
    }

    #[test]
    fn what_a_worker_cannot_have_sent_fails_the_chunk_without_panicking() {
        let span = Span { start: 0, len: 2 };
        let decode_err = Err(ErrorKind::Decode);
        // Garbage bytes.
        let garbage = Payload::encode(&serde_bytes::Bytes::new(&[0xff; 9])).unwrap();
        assert_eq!(decode(span, garbage), [decode_err, decode_err]);
        // Too many values, or too few.
        let three: ChunkResults<u64> = (Vec::new(), vec![1, 2, 3]);
        assert_eq!(
            decode(span, Payload::encode(&three).unwrap()),
            [decode_err, decode_err]
        );
        // A failure out of range, and failures out of order.
        let out: ChunkResults<u64> = (vec![(5, ItemFailure::Encode("x".into()))], vec![1]);
        assert_eq!(
            decode(span, Payload::encode(&out).unwrap()),
            [decode_err, decode_err]
        );
        let unordered: ChunkResults<u64> = (
            vec![
                (1, ItemFailure::Encode("x".into())),
                (0, ItemFailure::Encode("y".into())),
            ],
            Vec::new(),
        );
        assert_eq!(
            decode(span, Payload::encode(&unordered).unwrap()),
            [decode_err, decode_err]
        );
    }

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
