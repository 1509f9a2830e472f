//! The queue proxies, `Queue<T>` or `JoinableQueue<T>`: Python's `manager.Queue()`,
//! `manager.JoinableQueue()`.

use std::borrow::Borrow;
use std::marker::PhantomData;
use std::time::Duration;

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::error::{ErrorKind, Result};
use crate::handle::Handle;
use crate::protocol::{Kind, Op, Wait};
use crate::proxy::common::proxy_common;
use crate::values::{OutExt, dec, enc};

/// The calls both queue proxies have.
macro_rules! queue_calls {
    () => {
        /// Puts an item, waiting for room in a bounded queue.
        pub fn put(&self, item: impl Borrow<T>) -> Result<()> {
            let item = enc(item.borrow())?;
            self.handle
                .op_waiting(Wait::Forever, false, move |w| Op::Put(item, w))
                .unit()
        }

        /// Puts an item, waiting at most `timeout` for room.
        ///
        /// # Errors
        ///
        /// [`ErrorKind::Full`](crate::ErrorKind::Full) when there was no room in time.
        pub fn put_timeout(&self, item: impl Borrow<T>, timeout: Duration) -> Result<()> {
            let item = enc(item.borrow())?;
            let wait = Wait::For(timeout);
            self.handle
                .op_waiting(wait, false, move |w| Op::Put(item, w))
                .unit()
        }

        /// Puts an item if there is room now (Python's `put_nowait`).
        ///
        /// # Errors
        ///
        /// [`ErrorKind::Full`](crate::ErrorKind::Full).
        pub fn try_put(&self, item: impl Borrow<T>) -> Result<()> {
            let item = enc(item.borrow())?;
            self.handle
                .op_waiting(Wait::No, false, move |w| Op::Put(item, w))
                .unit()
        }

        /// Takes the oldest item, waiting for one as long as it takes (or until the
        /// manager is gone: [`ErrorKind::Disconnected`](crate::ErrorKind::Disconnected)).
        pub fn get(&self) -> Result<T> {
            dec(&self
                .handle
                .op_waiting(Wait::Forever, false, Op::Take)
                .bytes()?)
        }

        /// Takes the oldest item, waiting at most `timeout`.
        ///
        /// # Errors
        ///
        /// [`ErrorKind::Empty`](crate::ErrorKind::Empty) when none came in time.
        pub fn get_timeout(&self, timeout: Duration) -> Result<T> {
            let wait = Wait::For(timeout);
            dec(&self.handle.op_waiting(wait, false, Op::Take).bytes()?)
        }

        /// Takes the oldest item if there is one (Python's `get_nowait`).
        pub fn try_get(&self) -> Result<Option<T>> {
            match self.handle.op_waiting(Wait::No, false, Op::Take).bytes() {
                Ok(b) => dec(&b).map(Some),
                Err(e) if e.kind() == ErrorKind::Empty => Ok(None),
                Err(e) => Err(e),
            }
        }

        /// The number of items (Python's `qsize`), exact at the moment the server answered.
        pub fn len(&self) -> Result<usize> {
            Ok(self.handle.op(Op::Len).num()? as usize)
        }

        /// Whether the queue is empty (Python's `empty`).
        pub fn is_empty(&self) -> Result<bool> {
            Ok(self.len()? == 0)
        }

        /// Whether a bounded queue is full (Python's `full`).
        pub fn is_full(&self) -> Result<bool> {
            self.handle.op(Op::Full).boolean()
        }
    };
}

/// A queue held by the manager: Python's `manager.Queue(maxsize)`.
///
/// Unlike [`mproc_queue::Queue`]-style shared-memory queues, every item goes through the
/// server, so this is slower, but it can be reached over TCP and its `put` returns once the
/// item is in the queue (no feeder thread to flush). A `get` whose caller dies while it
/// waits takes no item.
///
/// [`mproc_queue::Queue`]: https://docs.rs/mproc-queue
///
/// ```
/// # mproc_process::init();
/// let manager = mproc_manager::Manager::start()?;
/// let q = manager.bounded_queue::<u32>(1)?;
/// q.put(1)?;
/// assert_eq!(q.try_put(2).unwrap_err().kind(), mproc_manager::ErrorKind::Full);
/// assert_eq!(q.get()?, 1);
/// assert_eq!(q.try_get()?, None);
/// # Ok::<(), mproc_manager::Error>(())
/// ```
pub struct Queue<T> {
    handle: Handle,
    _types: PhantomData<fn() -> T>,
}

proxy_common!(Queue<T>, Kind::Queue);

impl<T: Serialize + DeserializeOwned> Queue<T> {
    queue_calls!();
}

/// A queue whose consumers mark items done and whose producers can wait for all of them:
/// Python's `manager.JoinableQueue()`.
///
/// ```
/// # mproc_process::init();
/// let manager = mproc_manager::Manager::start()?;
/// let q = manager.joinable_queue::<u32>()?;
/// q.put(7)?;
/// assert_eq!(q.get()?, 7);
/// q.task_done()?;
/// q.join()?; // every item put was marked done
/// # Ok::<(), mproc_manager::Error>(())
/// ```
pub struct JoinableQueue<T> {
    handle: Handle,
    _types: PhantomData<fn() -> T>,
}

proxy_common!(JoinableQueue<T>, Kind::JoinableQueue);

impl<T: Serialize + DeserializeOwned> JoinableQueue<T> {
    queue_calls!();

    /// Marks one item taken with `get` as done.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::NotOwner`](crate::ErrorKind::NotOwner) when called more times than items
    /// were put (Python's `ValueError`).
    pub fn task_done(&self) -> Result<()> {
        self.handle.op(Op::TaskDone).unit()
    }

    /// Waits until every item put has been marked done.
    pub fn join(&self) -> Result<()> {
        self.handle
            .op_waiting(Wait::Forever, false, Op::Join)
            .unit()
    }

    /// Like [`join`](Self::join), waiting at most `timeout`.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Timeout`](crate::ErrorKind::Timeout) when items are still unfinished.
    pub fn join_timeout(&self, timeout: Duration) -> Result<()> {
        let wait = Wait::For(timeout);
        self.handle.op_waiting(wait, false, Op::Join).unit()
    }
}
