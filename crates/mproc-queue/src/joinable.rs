//! [`JoinableQueue`]: a queue that counts unfinished work.

use std::fmt;
use std::ops::Deref;
use std::time::{Duration, Instant};

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::error::{Error, ErrorKind, Result};
use crate::ring::Waited;
use crate::{Builder, Queue};

/// A [`Queue`] that counts unfinished work: each `put` adds one, each
/// [`task_done`](JoinableQueue::task_done) takes one away, and
/// [`join`](JoinableQueue::join) waits for zero. Python: `multiprocessing.JoinableQueue`.
///
/// Every `Queue` method is available through `Deref`.
///
/// A consumer that dies between `get` and `task_done` leaves its item counted forever:
/// use [`join_timeout`](JoinableQueue::join_timeout) when that can happen. A producer that
/// dies in the middle of a `put` does not leave its item counted. At most 2^31 − 1 items
/// are counted at once: a `put` beyond that fails with [`PutError::Failed`](crate::PutError::Failed) (kind
/// [`ErrorKind::Full`]) until `task_done` is called.
///
/// ```
/// let q = mproc_queue::JoinableQueue::new()?;
/// q.put("job".to_string())?;
/// assert_eq!(q.unfinished(), 1);
/// let job = q.get()?;
/// q.task_done()?;
/// q.join();
/// assert!(q.task_done().is_err(), "more task_done() than puts");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct JoinableQueue<T> {
    pub(crate) queue: Queue<T>,
}

impl<T> Clone for JoinableQueue<T> {
    fn clone(&self) -> Self {
        JoinableQueue {
            queue: self.queue.clone(),
        }
    }
}

impl<T> fmt::Debug for JoinableQueue<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JoinableQueue")
            .field("queue", &self.queue)
            .field("unfinished", &self.unfinished())
            .finish()
    }
}

impl<T> Deref for JoinableQueue<T> {
    type Target = Queue<T>;
    fn deref(&self) -> &Queue<T> {
        &self.queue
    }
}

impl<T> JoinableQueue<T> {
    /// Makes a joinable queue with the defaults of [`Queue::new`].
    ///
    /// # Errors
    ///
    /// As [`Queue::new`].
    ///
    /// ```
    /// let q = mproc_queue::JoinableQueue::<u8>::new()?;
    /// assert_eq!(q.unfinished(), 0);
    /// # Ok::<(), mproc_queue::Error>(())
    /// ```
    pub fn new() -> Result<Self> {
        Builder::new().build_joinable()
    }

    /// Makes a joinable queue holding at most `n` messages.
    ///
    /// # Errors
    ///
    /// As [`Queue::bounded`].
    ///
    /// ```
    /// let q = mproc_queue::JoinableQueue::<u8>::bounded(4)?;
    /// assert_eq!(q.max_messages(), 4);
    /// # Ok::<(), mproc_queue::Error>(())
    /// ```
    pub fn bounded(n: usize) -> Result<Self> {
        Builder::new().max_messages(n).build_joinable()
    }

    /// Marks one item as processed.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::TooManyTaskDone`] when every item put is already marked (Python raises
    /// `ValueError`).
    ///
    /// ```
    /// let q = mproc_queue::JoinableQueue::new()?;
    /// q.put(1)?;
    /// q.get()?;
    /// q.task_done()?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn task_done(&self) -> Result<()> {
        self.queue.ring.task_done()
    }

    /// Returns how many items were put and not yet marked done.
    ///
    /// ```
    /// let q = mproc_queue::JoinableQueue::new()?;
    /// q.put(1)?;
    /// assert_eq!(q.unfinished(), 1);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn unfinished(&self) -> usize {
        self.queue.ring.unfinished()
    }

    /// Waits until every item put has been marked done. Python: `join()`.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Disconnected`] when items are unfinished and nobody is left to mark
    /// them done: the queue was shared, and no other live process holds it (see
    /// [`Queue`]'s "When a process dies"). Python waits for ever there.
    ///
    /// ```
    /// let q = mproc_queue::JoinableQueue::<u8>::new()?;
    /// q.join()?; // nothing was put
    /// # Ok::<(), mproc_queue::Error>(())
    /// ```
    pub fn join(&self) -> Result<()> {
        self.join_until(None)
    }

    fn join_until(&self, deadline: Option<Instant>) -> Result<()> {
        match self.queue.ring.join(deadline) {
            Waited::Ready => Ok(()),
            Waited::TimedOut => Err(Error::new(
                ErrorKind::Timeout,
                format!("{} items still unfinished", self.unfinished()),
            )),
            Waited::Alone => Err(self.alone()),
        }
    }

    /// Like [`join`](JoinableQueue::join), waiting at most `timeout`.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Timeout`] when items were still unfinished; otherwise as `join`.
    ///
    /// ```
    /// use std::time::Duration;
    /// let q = mproc_queue::JoinableQueue::new()?;
    /// q.put(1)?;
    /// let err = q.join_timeout(Duration::from_millis(10)).unwrap_err();
    /// assert_eq!(err.kind(), mproc_queue::ErrorKind::Timeout);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn join_timeout(&self, timeout: Duration) -> Result<()> {
        self.join_until(mproc_sys::deadline_after(timeout))
    }

    /// The error of a `join` that nobody is left to end.
    fn alone(&self) -> Error {
        Error::new(
            ErrorKind::Disconnected,
            format!(
                "{} items unfinished, and no other process holds the queue to mark them done",
                self.unfinished()
            ),
        )
    }

    /// Awaits until every item put has been marked done, without blocking the thread: the
    /// async [`join`](JoinableQueue::join). Woken by the last `task_done`, in any process,
    /// through the queue's eventfd (see [`Queue::get_async`]); needs a Tokio runtime with
    /// IO and time enabled. Cancel-safe: it only looks.
    ///
    /// `put_async` and `get_async` come through `Deref` to [`Queue`].
    ///
    /// # Errors
    ///
    /// As [`join`](JoinableQueue::join): [`ErrorKind::Disconnected`] when items are
    /// unfinished and nobody else is left to mark them done.
    ///
    /// ```
    /// # tokio::runtime::Builder::new_current_thread().enable_all().build()?.block_on(async {
    /// let q = mproc_queue::JoinableQueue::new()?;
    /// q.put_async(1u32).await?;
    /// let worker = q.clone();
    /// let t = std::thread::spawn(move || -> mproc_queue::Result<()> {
    ///     let _job = worker.get()?;
    ///     worker.task_done()
    /// });
    /// q.join_async().await?;
    /// assert_eq!(q.unfinished(), 0);
    /// t.join().unwrap()?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// # })?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    #[cfg(feature = "tokio")]
    pub async fn join_async(&self) -> Result<()> {
        use crate::ring::wait_async::{AsyncWaiter, Awaiting, Stopped};
        let ring = &*self.queue.ring;
        let waited = Awaiting {
            ring,
            waiter: AsyncWaiter::Joiner,
            wait: Default::default(),
            attempt: || ring.join_attempt().then_some(()),
        }
        .await;
        match waited {
            Ok(()) => Ok(()),
            Err(Stopped::Alone) => Err(self.alone()),
            Err(Stopped::Failed(e)) => Err(e),
        }
    }
}

impl<T> Serialize for JoinableQueue<T> {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        self.queue.serialize(s)
    }
}

impl<'de, T> Deserialize<'de> for JoinableQueue<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        Ok(JoinableQueue {
            queue: Queue::deserialize(d)?,
        })
    }
}
