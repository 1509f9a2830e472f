//! [`SimpleQueue`]: the minimal queue.

use std::fmt;
use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::Queue;
use crate::error::{GetError, PutError, Result};

/// The minimal queue: `put`, `get` and `is_empty`, unbounded in messages (the ring still
/// bounds the bytes waiting: `put` waits for room). Python:
/// `multiprocessing.SimpleQueue`.
///
/// ```
/// let q = mproc_queue::SimpleQueue::new()?;
/// q.put("hello".to_string())?;
/// assert!(!q.is_empty());
/// assert_eq!(q.get()?, "hello");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct SimpleQueue<T> {
    pub(crate) queue: Queue<T>,
}

impl<T> Clone for SimpleQueue<T> {
    fn clone(&self) -> Self {
        SimpleQueue {
            queue: self.queue.clone(),
        }
    }
}

impl<T> fmt::Debug for SimpleQueue<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SimpleQueue").finish_non_exhaustive()
    }
}

impl<T> SimpleQueue<T> {
    /// Makes a simple queue (an 8 MiB ring).
    ///
    /// # Errors
    ///
    /// As [`Queue::new`].
    ///
    /// ```
    /// let q = mproc_queue::SimpleQueue::<u8>::new()?;
    /// assert!(q.is_empty());
    /// # Ok::<(), mproc_queue::Error>(())
    /// ```
    pub fn new() -> Result<Self> {
        Ok(SimpleQueue {
            queue: Queue::new()?,
        })
    }

    /// Returns whether no message is waiting (approximate).
    ///
    /// ```
    /// assert!(mproc_queue::SimpleQueue::<u8>::new()?.is_empty());
    /// # Ok::<(), mproc_queue::Error>(())
    /// ```
    pub fn is_empty(&self) -> bool {
        self.queue.is_empty()
    }

    /// Closes the queue for everyone, as [`Queue::close`].
    ///
    /// ```
    /// let q = mproc_queue::SimpleQueue::<u8>::new()?;
    /// q.close();
    /// assert!(q.get().unwrap_err().is_closed());
    /// # Ok::<(), mproc_queue::Error>(())
    /// ```
    pub fn close(&self) {
        self.queue.close();
    }
}

impl<T: Serialize + DeserializeOwned> SimpleQueue<T> {
    /// Puts `value` at the back, waiting for room in the ring.
    ///
    /// # Errors
    ///
    /// As [`Queue::put`].
    ///
    /// ```
    /// let q = mproc_queue::SimpleQueue::new()?;
    /// q.put(1u8)?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn put(&self, value: T) -> Result<(), PutError<T>> {
        self.queue.put(value)
    }

    /// Takes the message at the front, waiting for one.
    ///
    /// # Errors
    ///
    /// As [`Queue::get`].
    ///
    /// ```
    /// let q = mproc_queue::SimpleQueue::new()?;
    /// q.put(1u8)?;
    /// assert_eq!(q.get()?, 1);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn get(&self) -> Result<T, GetError> {
        self.queue.get()
    }

    /// Like [`get`](SimpleQueue::get), waiting at most `timeout`.
    ///
    /// # Errors
    ///
    /// As [`Queue::get_timeout`].
    ///
    /// ```
    /// let q = mproc_queue::SimpleQueue::<u8>::new()?;
    /// assert!(q.get_timeout(std::time::Duration::ZERO).unwrap_err().is_empty());
    /// # Ok::<(), mproc_queue::Error>(())
    /// ```
    pub fn get_timeout(&self, timeout: Duration) -> Result<T, GetError> {
        self.queue.get_timeout(timeout)
    }

    /// Iterates over the messages, waiting for each, until the queue is closed and drained
    /// or disconnected, as [`Queue::iter`].
    ///
    /// ```
    /// let q = mproc_queue::SimpleQueue::new()?;
    /// q.put(1u8)?;
    /// q.put(2)?;
    /// q.close();
    /// assert_eq!(q.iter().map(Result::unwrap).sum::<u8>(), 3);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn iter(&self) -> crate::Iter<'_, T> {
        self.queue.iter()
    }
}

#[cfg(feature = "tokio")]
impl<T: Serialize + DeserializeOwned> SimpleQueue<T> {
    /// Puts `value` at the back, awaiting room in the ring, as [`Queue::put_async`].
    ///
    /// # Errors
    ///
    /// As [`Queue::put_async`].
    ///
    /// ```
    /// # tokio::runtime::Builder::new_current_thread().enable_all().build()?.block_on(async {
    /// let q = mproc_queue::SimpleQueue::new()?;
    /// q.put_async(1u8).await?;
    /// assert_eq!(q.get()?, 1);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// # })?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn put_async(
        &self,
        value: T,
    ) -> impl std::future::Future<Output = Result<(), PutError<T>>> + '_ {
        self.queue.put_async(value)
    }

    /// Takes the message at the front, awaiting one, as [`Queue::get_async`]
    /// (cancel-safe).
    ///
    /// # Errors
    ///
    /// As [`Queue::get_async`].
    ///
    /// ```
    /// # tokio::runtime::Builder::new_current_thread().enable_all().build()?.block_on(async {
    /// let q = mproc_queue::SimpleQueue::new()?;
    /// q.put(7u8)?;
    /// assert_eq!(q.get_async().await?, 7);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// # })?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn get_async(&self) -> impl std::future::Future<Output = Result<T, GetError>> + '_ {
        self.queue.get_async()
    }

    /// The messages as an async stream, as [`Queue::stream`].
    ///
    /// ```
    /// use futures_core::Stream;
    /// let q = mproc_queue::SimpleQueue::<u8>::new()?;
    /// q.close();
    /// let s = q.stream();
    /// assert_eq!(s.size_hint(), (0, None));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn stream(&self) -> impl futures_core::Stream<Item = Result<T, GetError>> + '_ {
        self.queue.stream()
    }
}

impl<T> Serialize for SimpleQueue<T> {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        self.queue.serialize(s)
    }
}

impl<'de, T> Deserialize<'de> for SimpleQueue<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        Ok(SimpleQueue {
            queue: Queue::deserialize(d)?,
        })
    }
}
