//! Waiting on several [`TaskHandle`]s at once: Python's `concurrent.futures.as_completed`
//! with its sibling `concurrent.futures.wait`.

use std::fmt;
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use super::TaskHandle;
use crate::condvar::{lock, wait_until};
use crate::error::{Error, ErrorKind, Result};

/// Told when a task is done: [`as_completed`] and [`wait`] register one on each task.
pub(super) struct Watch {
    done: Mutex<Vec<usize>>,
    changed: Condvar,
}

impl Watch {
    pub(super) fn new() -> Arc<Watch> {
        Arc::new(Watch {
            done: Mutex::new(Vec::new()),
            changed: Condvar::new(),
        })
    }

    pub(super) fn notify(&self, index: usize) {
        lock(&self.done).push(index);
        self.changed.notify_all();
    }
}

/// Yields the tasks of `tasks` as they complete (done or cancelled), each once (a task
/// given twice is yielded once), those done already first: Python's `as_completed`. When
/// `timeout` passes with tasks still running, it yields one `Err` of kind
/// [`ErrorKind::Timeout`] and ends (the tasks go on).
///
/// ```
/// use std::time::Duration;
/// fn nap(ms: u64) -> u64 { std::thread::sleep(Duration::from_millis(ms)); ms }
/// # mproc_process::init();
/// let executor = mproc_pool::Executor::new(2)?;
/// let tasks = [executor.submit(nap, 400)?, executor.submit(nap, 10)?];
/// let order: Vec<u64> = mproc_pool::as_completed(&tasks, Some(Duration::from_secs(30)))
///     .map(|t| t?.result())
///     .collect::<Result<_, _>>()?;
/// assert_eq!(order, [10, 400]);
/// # Ok::<(), mproc_pool::Error>(())
/// ```
pub fn as_completed<R>(tasks: &[TaskHandle<R>], timeout: Option<Duration>) -> AsCompleted<'_, R> {
    let watch = Watch::new();
    let mut seen = std::collections::HashSet::new();
    let mut left = 0;
    for (i, t) in tasks.iter().enumerate() {
        if !seen.insert(t.job.id()) {
            continue;
        }
        left += 1;
        if t.job.watch(&watch, i) {
            lock(&watch.done).push(i);
        }
    }
    AsCompleted {
        tasks,
        watch,
        left,
        deadline: timeout.and_then(mproc_sys::deadline_after),
    }
}

/// The iterator of [`as_completed`].
pub struct AsCompleted<'a, R> {
    tasks: &'a [TaskHandle<R>],
    watch: Arc<Watch>,
    left: usize,
    deadline: Option<Instant>,
}

impl<R> fmt::Debug for AsCompleted<'_, R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AsCompleted")
            .field("left", &self.left)
            .finish()
    }
}

impl<'a, R> Iterator for AsCompleted<'a, R> {
    type Item = Result<&'a TaskHandle<R>>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.left == 0 {
            return None;
        }
        let done = lock(&self.watch.done);
        let (mut done, ready) =
            wait_until(&self.watch.changed, done, self.deadline, |d| !d.is_empty());
        if !ready {
            self.left = 0;
            return Some(Err(Error::new(
                ErrorKind::Timeout,
                "as_completed timed out with tasks still running",
            )));
        }
        let i = done.remove(0);
        self.left -= 1;
        Some(Ok(&self.tasks[i]))
    }
}

/// When [`wait`] returns.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReturnWhen {
    /// When any task is done (or cancelled). Python: `FIRST_COMPLETED`.
    FirstCompleted,
    /// When any task finishes with an error (not counting cancelled ones), or else when
    /// all are done. Python: `FIRST_EXCEPTION`.
    FirstException,
    /// When all tasks are done. Python: `ALL_COMPLETED`.
    AllCompleted,
}

/// The two sets [`wait`] returns: Python's `DoneAndNotDoneFutures`.
#[derive(Debug)]
pub struct DoneAndNotDone<'a, R> {
    /// The tasks done (finished or cancelled), in the order given.
    pub done: Vec<&'a TaskHandle<R>>,
    /// The others, in the order given.
    pub not_done: Vec<&'a TaskHandle<R>>,
}

/// Waits until `return_when` holds for `tasks`, or `timeout` passes, and returns which
/// tasks are done and which not: Python's `concurrent.futures.wait`. A task given twice
/// appears once.
///
/// ```
/// use std::time::Duration;
/// use mproc_pool::ReturnWhen;
/// fn nap(ms: u64) -> u64 { std::thread::sleep(Duration::from_millis(ms)); ms }
/// # mproc_process::init();
/// let executor = mproc_pool::Executor::new(2)?;
/// let tasks = [executor.submit(nap, 10)?, executor.submit(nap, 2000)?];
/// let r = mproc_pool::wait(&tasks, Some(Duration::from_secs(30)), ReturnWhen::FirstCompleted);
/// assert_eq!((r.done.len(), r.not_done.len()), (1, 1));
/// # Ok::<(), mproc_pool::Error>(())
/// ```
pub fn wait<R>(
    tasks: &[TaskHandle<R>],
    timeout: Option<Duration>,
    return_when: ReturnWhen,
) -> DoneAndNotDone<'_, R> {
    let deadline = timeout.and_then(mproc_sys::deadline_after);
    let watch = Watch::new();
    let mut seen = std::collections::HashSet::new();
    let unique: Vec<usize> = (0..tasks.len())
        .filter(|&i| seen.insert(tasks[i].job.id()))
        .collect();
    for &i in &unique {
        tasks[i].job.watch(&watch, i);
    }
    let satisfied = || {
        let done: Vec<usize> = unique
            .iter()
            .copied()
            .filter(|&i| tasks[i].done())
            .collect();
        let all = done.len() == unique.len();
        match return_when {
            ReturnWhen::AllCompleted => all,
            ReturnWhen::FirstCompleted => !done.is_empty() || unique.is_empty(),
            ReturnWhen::FirstException => {
                all || done
                    .iter()
                    .any(|&i| !tasks[i].cancelled() && tasks[i].job.error().is_some())
            }
        }
    };
    let mut guard = lock(&watch.done);
    loop {
        guard.clear();
        drop(guard);
        if satisfied() {
            break;
        }
        guard = lock(&watch.done);
        let (g, changed) = wait_until(&watch.changed, guard, deadline, |d| !d.is_empty());
        guard = g;
        if !changed {
            drop(guard);
            break;
        }
    }
    let (done, not_done) = unique.iter().map(|&i| &tasks[i]).partition(|t| t.done());
    DoneAndNotDone { done, not_done }
}
