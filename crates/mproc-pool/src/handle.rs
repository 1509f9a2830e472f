//! One submitted task of an [`Executor`](crate::Executor): its [`TaskHandle`], Python's
//! `concurrent.futures.Future`. Waiting on several at once is in `handle/wait.rs`.

pub(crate) mod wait;

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::task::{Context, Poll};
use std::thread::ThreadId;
use std::time::{Duration, Instant};

use serde::de::DeserializeOwned;

use crate::condvar::{lock, wait_until};
use crate::error::{Error, ErrorKind, Result};
use crate::manager::{on_manager_of, reentrant_wait};
use crate::result::take_once;
use crate::sink::{Delivery, Sink, Span, chunk_results};
use crate::waker::WakerSlot;
use wait::Watch;

/// Where a task is: Python's future states.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Stage {
    /// Submitted, not yet handed to a worker: it can be cancelled.
    Pending,
    /// Handed to a worker (in its queue or running).
    Running,
    Finished,
    Cancelled,
}

type Callback<R> = Box<dyn FnOnce(&Result<R>) + Send>;

struct JobState<R> {
    stage: Stage,
    /// The outcome once finished or cancelled; out of it while callbacks borrow it.
    outcome: Option<Result<R>>,
    taken: bool,
    /// The thread running the callbacks (which must not wait for the outcome it holds).
    in_callbacks: Option<ThreadId>,
    callbacks: Vec<Callback<R>>,
    watches: Vec<(Arc<Watch>, usize)>,
    /// Threads waiting on `changed` (a notify is skipped when there are none).
    waiters: u32,
    /// The task awaiting the outcome, woken where blocking waiters are notified.
    waker: WakerSlot,
}

/// A task's side of the pool: the pool's manager delivers its outcome here.
pub(crate) struct TaskJob<R> {
    pool: usize,
    state: Mutex<JobState<R>>,
    changed: Condvar,
    cancelled: AtomicBool,
}

impl<R: Send + 'static> TaskJob<R> {
    pub(crate) fn new(pool: usize) -> Arc<Self> {
        Arc::new(TaskJob {
            pool,
            state: Mutex::new(JobState {
                stage: Stage::Pending,
                outcome: None,
                taken: false,
                in_callbacks: None,
                callbacks: Vec::new(),
                watches: Vec::new(),
                waiters: 0,
                waker: WakerSlot::default(),
            }),
            changed: Condvar::new(),
            cancelled: AtomicBool::new(false),
        })
    }

    /// Settles the task as `stage` with `outcome` (unless it is settled already), then
    /// runs the callbacks with the outcome, then publishes it. Returns whether it settled.
    fn settle(&self, stage: Stage, outcome: Result<R>) -> bool {
        self.settle_locked(lock(&self.state), stage, outcome)
    }

    fn settle_locked<'a>(
        &'a self,
        mut st: MutexGuard<'a, JobState<R>>,
        stage: Stage,
        outcome: Result<R>,
    ) -> bool {
        if matches!(st.stage, Stage::Finished | Stage::Cancelled) {
            return false;
        }
        st.stage = stage;
        if stage == Stage::Cancelled {
            self.cancelled.store(true, Ordering::Relaxed);
        }
        let callbacks = std::mem::take(&mut st.callbacks);
        let watches = std::mem::take(&mut st.watches);
        let st = self.run_callbacks(st, callbacks, outcome);
        self.publish(st);
        for (w, i) in watches {
            w.notify(i);
        }
        true
    }

    /// Runs `callbacks` with `outcome`, then those added while they ran (a task whose
    /// outcome is out with its callbacks queues new ones for them), then puts the outcome
    /// back for `result`.
    fn run_callbacks<'a>(
        &'a self,
        mut st: MutexGuard<'a, JobState<R>>,
        mut callbacks: Vec<Callback<R>>,
        outcome: Result<R>,
    ) -> MutexGuard<'a, JobState<R>> {
        if !callbacks.is_empty() {
            st.in_callbacks = Some(std::thread::current().id());
            while !callbacks.is_empty() {
                drop(st);
                for cb in callbacks {
                    call_back(cb, &outcome);
                }
                st = lock(&self.state);
                callbacks = std::mem::take(&mut st.callbacks);
            }
            st.in_callbacks = None;
        }
        st.outcome = Some(outcome);
        st
    }

    /// Pending → cancelled, decided under the same lock as the pool's `begin`.
    fn cancel(&self) -> bool {
        let st = lock(&self.state);
        match st.stage {
            Stage::Cancelled => true,
            Stage::Running | Stage::Finished => false,
            Stage::Pending => self.settle_locked(st, Stage::Cancelled, Err(Error::cancelled())),
        }
    }

    fn stage(&self) -> Stage {
        lock(&self.state).stage
    }

    /// Waits until the outcome is there (or was taken) or `deadline` passes.
    fn wait_until(&self, deadline: Option<Instant>) -> bool {
        let st = lock(&self.state);
        let me = std::thread::current().id();
        // On the pool's manager thread, or inside this task's own callbacks, only look:
        // waiting there would wait for the very thread that publishes the outcome.
        let deadline = if on_manager_of(self.pool) || st.in_callbacks == Some(me) {
            Some(Instant::now())
        } else {
            deadline
        };
        let ready = |st: &JobState<R>| st.taken || st.outcome.is_some();
        if ready(&st) {
            return true;
        }
        let mut st = st;
        st.waiters += 1;
        let (mut st, done) = wait_until(&self.changed, st, deadline, ready);
        st.waiters -= 1;
        done
    }

    fn take(&self) -> Result<R> {
        let mut st = lock(&self.state);
        let st = &mut *st;
        if let Some(r) = take_once(&mut st.outcome, &mut st.taken, "result() or .await") {
            return r;
        }
        if st.in_callbacks == Some(std::thread::current().id()) {
            Err(Error::new(
                ErrorKind::InvalidState,
                "a done callback is given the outcome; it cannot take it with result()",
            ))
        } else if on_manager_of(self.pool) {
            Err(reentrant_wait())
        } else {
            Err(Error::wait_timeout())
        }
    }

    /// The error it finished with, if any (a cancelled task's is `Cancelled`).
    fn error(&self) -> Option<Error> {
        match &lock(&self.state).outcome {
            Some(Err(e)) => Some(e.clone()),
            _ => None,
        }
    }

    /// Registers `watch` to hear (as `index`) when the task is done; `true` when it is
    /// done already (and nothing is registered).
    fn watch(&self, watch: &Arc<Watch>, index: usize) -> bool {
        let mut st = lock(&self.state);
        // Done, even while its callbacks still run (the watches were told, or are about to
        // be, before this one came).
        if matches!(st.stage, Stage::Finished | Stage::Cancelled) {
            return true;
        }
        st.watches.push((watch.clone(), index));
        false
    }

    fn add_callback(&self, f: Callback<R>) {
        let mut st = lock(&self.state);
        if st.taken {
            // Done, and the value taken: run it here with the error saying so.
            drop(st);
            let taken = Err(Error::new(
                ErrorKind::AlreadyTaken,
                "the callback was added after result() took the value",
            ));
            call_back(f, &taken);
            return;
        }
        let Some(outcome) = st.outcome.take() else {
            // Not done, or done with the outcome out with its callbacks: whoever runs
            // them runs this one too.
            st.callbacks.push(f);
            return;
        };
        // Done already: run it here, with the outcome.
        let st = self.run_callbacks(st, vec![f], outcome);
        self.publish(st);
    }

    /// Tells the waiters that the outcome is back in `st`: the blocked threads and the
    /// awaiting task (woken after the lock is released).
    fn publish(&self, mut st: MutexGuard<'_, JobState<R>>) {
        let waiting = st.waiters > 0;
        let waker = st.waker.take();
        drop(st);
        // A condvar's notify is a system call even with nobody waiting: most results are
        // taken after they arrive, so skip it then.
        if waiting {
            self.changed.notify_all();
        }
        if let Some(w) = waker {
            w.wake();
        }
    }

    /// Takes the outcome as `take` does if it is there (or if waiting could never end,
    /// for `take`'s error), or leaves the task's waker.
    fn poll_take(&self, cx: &mut Context<'_>) -> Poll<Result<R>> {
        let mut st = lock(&self.state);
        let settled = st.taken || st.outcome.is_some();
        let reentrant =
            st.in_callbacks == Some(std::thread::current().id()) || on_manager_of(self.pool);
        if settled || reentrant {
            drop(st);
            return Poll::Ready(self.take());
        }
        st.waker.register(cx);
        Poll::Pending
    }
}

/// Runs a done callback; as Python logs and ignores an exception in one, a panic is
/// reported on stderr.
fn call_back<R>(cb: Callback<R>, outcome: &Result<R>) {
    if let Err(m) = mproc_process::catch_panic(|| cb(outcome)) {
        eprintln!("mproc-pool: a done callback panicked: {m}");
    }
}

impl<R: DeserializeOwned + Send + 'static> Sink for TaskJob<R> {
    fn deliver(&self, span: Span, delivery: Delivery) {
        let outcome = chunk_results::<R>(span, delivery)
            .into_items(span)
            .next()
            .map(|(_, r)| r.map_err(|e| e.without_index()))
            .unwrap_or_else(|| {
                Err(Error::new(
                    ErrorKind::Decode,
                    "a worker sent no result for the task",
                ))
            });
        self.settle(Stage::Finished, outcome);
    }

    fn is_cancelled(&self) -> bool {
        self.cancelled.load(Ordering::Relaxed)
    }

    fn begin(&self) -> bool {
        let mut st = lock(&self.state);
        match st.stage {
            Stage::Pending | Stage::Running => {
                st.stage = Stage::Running;
                true
            }
            Stage::Finished | Stage::Cancelled => false,
        }
    }

    fn unbegin(&self) {
        let mut st = lock(&self.state);
        if st.stage == Stage::Running {
            st.stage = Stage::Pending;
        }
    }

    fn cancel_pending(&self) {
        self.cancel();
    }
}

/// What an untyped waiter needs of a task.
trait Job<R>: Send + Sync {
    fn stage(&self) -> Stage;
    fn cancel(&self) -> bool;
    fn wait_until(&self, deadline: Option<Instant>) -> bool;
    fn take(&self) -> Result<R>;
    fn poll_take(&self, cx: &mut Context<'_>) -> Poll<Result<R>>;
    fn error(&self) -> Option<Error>;
    fn watch(&self, watch: &Arc<Watch>, index: usize) -> bool;
    fn add_callback(&self, f: Callback<R>);
    fn id(&self) -> usize;
}

impl<R: Send + 'static> Job<R> for TaskJob<R> {
    fn stage(&self) -> Stage {
        TaskJob::stage(self)
    }
    fn cancel(&self) -> bool {
        TaskJob::cancel(self)
    }
    fn wait_until(&self, deadline: Option<Instant>) -> bool {
        TaskJob::wait_until(self, deadline)
    }
    fn take(&self) -> Result<R> {
        TaskJob::take(self)
    }
    fn poll_take(&self, cx: &mut Context<'_>) -> Poll<Result<R>> {
        TaskJob::poll_take(self, cx)
    }
    fn error(&self) -> Option<Error> {
        TaskJob::error(self)
    }
    fn watch(&self, watch: &Arc<Watch>, index: usize) -> bool {
        TaskJob::watch(self, watch, index)
    }
    fn add_callback(&self, f: Callback<R>) {
        TaskJob::add_callback(self, f)
    }
    fn id(&self) -> usize {
        self as *const Self as *const () as usize
    }
}

/// A task submitted to an [`Executor`](crate::Executor): Python's
/// `concurrent.futures.Future` (named so beside `std::future::Future`).
///
/// [`result`](Self::result) waits and hands the value out once (later calls return
/// [`ErrorKind::AlreadyTaken`]); an error can be read any number of times. A task is
/// *pending* until the executor hands it to a worker, then *running*, then *done*;
/// [`cancel`](Self::cancel) succeeds only while it is pending. Dropping the handle does
/// not cancel the task.
///
/// It is also a [`Future`] of the same outcome (Python: `await asyncio.wrap_future(f)`),
/// woken by the executor's result thread with no runtime involved; `.await` takes the
/// value as `result` does (see [`AsyncResult`](crate::AsyncResult) for awaiting by
/// `&mut` and dropping a future midway).
///
/// ```
/// fn square(x: u64) -> u64 { x * x }
/// # mproc_process::init();
/// let executor = mproc_pool::Executor::new(2)?;
/// let task = executor.submit(square, 7)?;
/// assert_eq!(task.result()?, 49);
/// assert!(task.done() && !task.cancelled());
///
/// let rt = tokio::runtime::Builder::new_current_thread().build()?;
/// let tasks = [executor.submit(square, 2)?, executor.submit(square, 3)?];
/// let squares = rt.block_on(async {
///     let mut out = Vec::new();
///     for task in tasks {
///         out.push(task.await?);
///     }
///     Ok::<_, mproc_pool::Error>(out)
/// })?;
/// assert_eq!(squares, [4, 9]);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[doc(alias = "Future")]
pub struct TaskHandle<R> {
    job: Arc<dyn Job<R>>,
}

impl<R> fmt::Debug for TaskHandle<R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TaskHandle")
            .field("state", &self.job.stage())
            .finish()
    }
}

impl<R: Send + 'static> TaskHandle<R> {
    pub(crate) fn new(job: Arc<TaskJob<R>>) -> Self {
        TaskHandle { job }
    }
}

impl<R> TaskHandle<R> {
    /// Waits for the task and returns its value (once) or its error. Python: `result()`.
    ///
    /// # Errors
    ///
    /// The task's error: [`ErrorKind::Panicked`] with the panic's message,
    /// [`ErrorKind::WorkerDied`] with the worker's exit status or signal,
    /// [`ErrorKind::Encode`] / [`ErrorKind::Decode`] for an argument or result that would
    /// not travel, [`ErrorKind::Timeout`] for the executor's task timeout,
    /// [`ErrorKind::Cancelled`]; [`ErrorKind::AlreadyTaken`] after the value was taken;
    /// [`ErrorKind::InvalidState`] from one of its own done callbacks.
    pub fn result(&self) -> Result<R> {
        self.job.wait_until(None);
        self.job.take()
    }

    /// Like [`result`](Self::result), but gives up after `timeout` with
    /// [`ErrorKind::Timeout`] (the task goes on, and can be waited for again). Python:
    /// `result(timeout)`.
    ///
    /// ```
    /// use std::time::Duration;
    /// fn nap(ms: u64) -> u64 { std::thread::sleep(Duration::from_millis(ms)); ms }
    /// # mproc_process::init();
    /// let executor = mproc_pool::Executor::new(1)?;
    /// let task = executor.submit(nap, 300)?;
    /// let early = task.result_timeout(Duration::from_millis(10)).unwrap_err();
    /// assert_eq!(early.kind(), mproc_pool::ErrorKind::Timeout);
    /// assert_eq!(task.result_timeout(Duration::from_secs(30))?, 300);
    /// # Ok::<(), mproc_pool::Error>(())
    /// ```
    pub fn result_timeout(&self, timeout: Duration) -> Result<R> {
        self.job.wait_until(mproc_sys::deadline_after(timeout));
        self.job.take()
    }

    /// Returns whether the task is done: finished (with a value or an error) or
    /// cancelled. Python: `done()`.
    pub fn done(&self) -> bool {
        matches!(self.job.stage(), Stage::Finished | Stage::Cancelled)
    }

    /// Returns whether a worker has the task (in its queue or running it) and it is not
    /// done. Python: `running()`.
    pub fn running(&self) -> bool {
        self.job.stage() == Stage::Running
    }

    /// Cancels the task if no worker has it yet; returns whether it is cancelled (also
    /// `true` when it was already). A cancelled task never runs; its
    /// [`result`](Self::result) is [`ErrorKind::Cancelled`] and its callbacks run now.
    /// Python: `cancel()`.
    ///
    /// ```
    /// use std::time::Duration;
    /// fn nap(ms: u64) -> u64 { std::thread::sleep(Duration::from_millis(ms)); ms }
    /// # mproc_process::init();
    /// let executor = mproc_pool::Executor::new(1)?;
    /// let first = executor.submit(nap, 300)?; // takes the only worker
    /// let second = executor.submit(nap, 300)?;
    /// while !first.running() { std::thread::sleep(Duration::from_millis(1)); }
    /// assert!(second.cancel());
    /// assert!(!first.cancel(), "a worker has it");
    /// assert_eq!(second.result().unwrap_err().kind(), mproc_pool::ErrorKind::Cancelled);
    /// assert_eq!(first.result()?, 300);
    /// # Ok::<(), mproc_pool::Error>(())
    /// ```
    pub fn cancel(&self) -> bool {
        self.job.cancel()
    }

    /// Returns whether the task was cancelled. Python: `cancelled()`.
    pub fn cancelled(&self) -> bool {
        self.job.stage() == Stage::Cancelled
    }

    /// Runs `f` with the task's outcome when it is done, in this process: on the
    /// executor's result thread, or at once on the caller's when the task is done already
    /// (after [`result`](Self::result) took the value, `f` gets
    /// [`ErrorKind::AlreadyTaken`]; while the task's callbacks are still running, `f` runs
    /// after them, on their thread). Callbacks run in the order added, before the outcome
    /// is published to `result`; one that panics is reported on stderr and the others
    /// still run. Python: `add_done_callback(fn)`, whose `fn` gets the future.
    ///
    /// ```
    /// use std::sync::mpsc;
    /// fn square(x: u64) -> u64 { x * x }
    /// # mproc_process::init();
    /// let executor = mproc_pool::Executor::new(1)?;
    /// let task = executor.submit(square, 9)?;
    /// let (tx, rx) = mpsc::channel();
    /// task.add_done_callback(move |r| tx.send(*r.as_ref().unwrap()).unwrap());
    /// assert_eq!(rx.recv().unwrap(), 81);
    /// # Ok::<(), mproc_pool::Error>(())
    /// ```
    pub fn add_done_callback(&self, f: impl FnOnce(&Result<R>) + Send + 'static) {
        self.job.add_callback(Box::new(f));
    }
}

/// Resolves to the task's outcome as [`result`](TaskHandle::result) returns it, without
/// blocking: the value once, an error (such as [`ErrorKind::Cancelled`]) as often as
/// asked.
impl<R> Future for TaskHandle<R> {
    type Output = Result<R>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<R>> {
        self.job.poll_take(cx)
    }
}
