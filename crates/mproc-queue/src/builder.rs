//! How a queue is made: [`Builder`] and its bounds.

use crate::error::Result;
use crate::ring::{self, Ring};
use crate::{JoinableQueue, Queue};

/// How to make a queue: its bounds, in messages and in bytes.
///
/// ```
/// let q = mproc_queue::Builder::new()
///     .max_messages(100)
///     .max_bytes(64 * 1024)
///     .build::<String>()?;
/// assert_eq!(q.max_messages(), 100);
/// assert_eq!(q.max_bytes(), 64 * 1024);
/// # Ok::<(), mproc_queue::Error>(())
/// ```
#[derive(Clone, Debug)]
pub struct Builder {
    max_messages: usize,
    max_bytes: usize,
    watch_peers: bool,
    async_waits: bool,
}

impl Default for Builder {
    fn default() -> Self {
        Builder::new()
    }
}

impl Builder {
    /// Starts from the defaults: no bound on the number of messages, an 8 MiB ring.
    pub fn new() -> Builder {
        Builder {
            max_messages: usize::MAX,
            max_bytes: ring::DEFAULT_BYTES,
            watch_peers: true,
            async_waits: true,
        }
    }

    /// Bounds the number of messages waiting (at least 1): a `put` beyond it waits.
    pub fn max_messages(mut self, n: usize) -> Builder {
        self.max_messages = n;
        self
    }

    /// Sizes the ring the messages are copied into: rounded up to a power of two, at
    /// least 4 KiB, at most 1 GiB. A message larger than a quarter of it travels in a
    /// shared buffer of its own instead, so this bounds the bytes waiting *in the ring*,
    /// not the size of a message.
    pub fn max_bytes(mut self, bytes: usize) -> Builder {
        self.max_bytes = bytes;
        self
    }

    /// Whether a wait that nobody is left to end reports it (the default) or goes on until
    /// its deadline. When on, a `get` waiting on an empty queue, a `put` waiting for room
    /// and a [`join`](JoinableQueue::join) return [`Disconnected`](crate::GetError::Disconnected)
    /// once the queue has been shared with another process and no *other* live process
    /// holds a handle to it (nor a message in flight carries one). Turn it off for a queue
    /// that threads of the waiting process also feed after every other process has gone:
    /// the waiting process's own threads do not count as holders.
    ///
    /// ```
    /// let q = mproc_queue::Builder::new().watch_peers(false).build::<u8>()?;
    /// # drop(q);
    /// # Ok::<(), mproc_queue::Error>(())
    /// ```
    pub fn watch_peers(mut self, on: bool) -> Builder {
        self.watch_peers = on;
        self
    }

    /// Whether the queue can wake async waiters (`get_async`, `put_async`, `stream`,
    /// `join_async`; feature `tokio`): on by default. It costs one fd (an eventfd) in every
    /// process that holds the queue; turn it off for a queue only ever waited on by
    /// blocking calls. Without it, or in a build without the feature, an async wait fails
    /// at once with [`ErrorKind::Io`](crate::ErrorKind::Io) rather than hanging.
    ///
    /// ```
    /// let q = mproc_queue::Builder::new().async_waits(false).build::<u8>()?;
    /// q.put(1)?;
    /// assert_eq!(q.get()?, 1);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn async_waits(mut self, on: bool) -> Builder {
        self.async_waits = on;
        self
    }

    /// Makes a [`Queue`].
    ///
    /// # Errors
    ///
    /// `Shm` or `Io` when the shared memory or the side socket cannot be made;
    /// `InvalidInput` when a bound is out of range (0 messages, more than 1 GiB).
    pub fn build<T>(&self) -> Result<Queue<T>> {
        Ok(Queue::from_ring(Ring::new(
            self.max_bytes,
            self.max_messages,
            false,
            self.watch_peers,
            self.async_waits,
        )?))
    }

    /// Makes a [`JoinableQueue`].
    ///
    /// # Errors
    ///
    /// As [`build`](Builder::build).
    pub fn build_joinable<T>(&self) -> Result<JoinableQueue<T>> {
        Ok(JoinableQueue {
            queue: Queue::from_ring(Ring::new(
                self.max_bytes,
                self.max_messages,
                true,
                self.watch_peers,
                self.async_waits,
            )?),
        })
    }
}
