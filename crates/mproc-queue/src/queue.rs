//! [`Queue`]: the multi-producer, multi-consumer queue of typed messages.

use std::cell::RefCell;
use std::fmt;
use std::marker::PhantomData;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::Builder;
use crate::error::{Error, GetError, PutError, Result};
use crate::ring::{self, Payload, Refused, Ring};

#[cfg(feature = "tokio")]
mod async_io;
mod batch;
mod iter;

pub use iter::Iter;

thread_local! {
    /// Each thread's buffer for encoding and for copying messages out, reused.
    static SCRATCH: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

/// A scratch buffer kept between calls only up to this size: that of the largest segment
/// a producer reuses, so that moving messages of up to that size touches no fresh page
/// (a fresh 16 MiB buffer per message cost more than the copies: page faults).
const SCRATCH_KEEP: usize = 32 << 20;

/// A value with a piece this large (a byte string, a string) is encoded straight where it
/// travels (its size counted first) rather than into the scratch buffer and copied: the
/// count costs less than the copy.
const BULK: usize = 8 << 10;

/// Runs `f` with this thread's scratch buffer (a fresh one if it is in use: a value whose
/// `Serialize` puts into a queue itself).
fn with_scratch<R>(f: impl FnOnce(&mut Vec<u8>) -> R) -> R {
    SCRATCH.with(|cell| match cell.try_borrow_mut() {
        Ok(mut buf) => {
            let r = f(&mut buf);
            if buf.capacity() > SCRATCH_KEEP {
                *buf = Vec::new();
            }
            r
        }
        Err(_) => f(&mut Vec::new()),
    })
}

/// A multi-producer, multi-consumer queue of `T` shared between processes (and threads).
/// Python: `multiprocessing.Queue`.
///
/// Messages live in shared memory: a small one is serialized and copied once into a ring
/// (no pipe, no feeder thread, no syscall while the other side is awake); one larger than
/// a quarter of the ring travels in a shared segment that its producer reuses once the
/// consumer has decoded the message out of it (up to 4 segments of up to 32 MiB per producer
/// handle; a put waits briefly for one to be freed while consumers are taking messages),
/// or, past that, in a sealed memfd of its own. A value made of large pieces (a byte
/// string, a long string) is encoded straight into shared memory (its size counted first,
/// and, when it goes into the ring, with the producers' lock held), so it costs the
/// producer one copy; the consumer copies it out and decodes it.
/// [`put_many`](Queue::put_many) and [`get_many`](Queue::get_many)
/// move small messages in batches. Any number of processes may put and get; the queue
/// travels as a spawn argument or through a pipe, and is inherited by fork.
///
/// # Bounds and backpressure
///
/// [`Queue::new`] bounds nothing but the ring (8 MiB by default; see [`Builder`]);
/// [`Queue::bounded`] also bounds the number of messages. When either bound is reached,
/// `put` waits for room (`put_timeout` and `try_put` give the value back in
/// [`PutError::Full`]). Python's queue never blocks a `put` without `maxsize`: it buffers in
/// the producer's memory without limit, and a producer that exits with data still
/// buffered hangs in its feeder thread. Here the memory used is bounded and a returned
/// `put` is in the queue.
///
/// # When a process dies
///
/// Producers and consumers take robust locks for the instant they touch the ring. One
/// killed in the middle of a `put` or `get` (even by SIGKILL) neither corrupts the queue
/// nor blocks the others: at most the message it was moving is lost, every other one is
/// delivered exactly once.
///
/// A wait nobody is left to end says so, where Python's waits for ever: a `get` on an
/// empty queue returns [`GetError::Disconnected`] (a `put` waiting for room,
/// [`PutError::Disconnected`]; a [`JoinableQueue::join`](crate::JoinableQueue::join), `ErrorKind::Disconnected`) once
///
/// - the queue has been held by a process other than its creator, or handed to a child
///   as (part of) its argument (a queue used by one process only waits as before, even if
///   a handle to it was serialized),
/// - no *other* live process holds a handle to it: each process that creates or receives
///   one is registered in the queue's shared header under its pid and start time, so a
///   SIGKILLed holder is seen as dead (zombies included) and a reused pid is not mistaken
///   for it, and
/// - no handle to it is in flight inside a message (sent through a pipe, another queue or
///   a spawn, and not yet received; a message destroyed unread no longer counts).
///
/// Messages already in the queue are delivered first. Any other holder keeps a wait going,
/// even one that only consumes: two consumers waiting on a queue whose producers died
/// both wait. The waiting process's own threads do not count: a queue that a thread of this process still feeds after every other process
/// has gone should be built with [`Builder::watch_peers(false)`](Builder::watch_peers).
/// The check runs only while a waiter sleeps, once per 100 ms nap without progress (so a
/// death is noticed within about 100 ms; a timeout shorter than that ends as `Empty`), and
/// costs nothing per message. More than 128 handle-holding instances at once, or no
/// `/proc`, turn it off for that queue (it then waits as Python's does).
///
/// # Handles inside messages
///
/// A message may hold file-descriptor handles (a pipe end, a shared memory segment,
/// another queue): their fds travel beside the record over a Unix socket, so they arrive
/// working.
///
/// ```
/// let q = mproc_queue::Queue::<(u32, String)>::new()?;
/// q.put((1, "one".into()))?;
/// q.put((2, "two".into()))?;
/// assert_eq!(q.len(), 2);
/// assert_eq!(q.get()?, (1, "one".into()));
/// assert_eq!(q.try_get()?.0, 2);
/// assert!(q.try_get().unwrap_err().is_empty());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct Queue<T> {
    pub(crate) ring: Arc<Ring>,
    _type: PhantomData<fn(T) -> T>,
}

impl<T> Clone for Queue<T> {
    fn clone(&self) -> Self {
        Queue {
            ring: self.ring.clone(),
            _type: PhantomData,
        }
    }
}

impl<T> fmt::Debug for Queue<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Queue")
            .field("len", &self.ring.len())
            .field("max_bytes", &self.ring.capacity_bytes())
            .field("max_messages", &self.ring.max_messages())
            .finish()
    }
}

impl<T> Queue<T> {
    pub(crate) fn from_ring(ring: Ring) -> Self {
        Queue {
            ring: Arc::new(ring),
            _type: PhantomData,
        }
    }

    /// Makes a queue with an 8 MiB ring and no bound on the number of messages.
    ///
    /// # Errors
    ///
    /// `Shm` or `Io` when the shared memory or the side socket cannot be made.
    ///
    /// ```
    /// let q = mproc_queue::Queue::<u64>::new()?;
    /// assert!(q.is_empty());
    /// # Ok::<(), mproc_queue::Error>(())
    /// ```
    pub fn new() -> Result<Self> {
        Builder::new().build()
    }

    /// Makes a queue that holds at most `n` messages (Python: `Queue(maxsize=n)`).
    ///
    /// # Errors
    ///
    /// As [`new`](Queue::new); `Shm` when `n` is 0.
    ///
    /// ```
    /// let q = mproc_queue::Queue::bounded(1)?;
    /// q.put(1u8)?;
    /// assert!(q.is_full());
    /// assert_eq!(q.try_put(2).unwrap_err().into_inner(), 2);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn bounded(n: usize) -> Result<Self> {
        Builder::new().max_messages(n).build()
    }

    /// Returns how many messages are waiting. Approximate while other processes put and
    /// get, as in Python (`qsize()`).
    ///
    /// ```
    /// let q = mproc_queue::Queue::new()?;
    /// q.put('x')?;
    /// assert_eq!(q.len(), 1);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn len(&self) -> usize {
        self.ring.len()
    }

    /// The Python spelling of [`len`](Queue::len).
    ///
    /// ```
    /// let q = mproc_queue::Queue::<u8>::new()?;
    /// assert_eq!(q.qsize(), 0);
    /// # Ok::<(), mproc_queue::Error>(())
    /// ```
    pub fn qsize(&self) -> usize {
        self.len()
    }

    /// Returns whether no message is waiting (approximate, as [`len`](Queue::len)).
    ///
    /// ```
    /// assert!(mproc_queue::Queue::<u8>::new()?.is_empty());
    /// # Ok::<(), mproc_queue::Error>(())
    /// ```
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Returns whether the queue is at its bound of messages or has no room left for a
    /// small one (approximate, as [`len`](Queue::len)).
    ///
    /// ```
    /// let q = mproc_queue::Queue::<u8>::bounded(2)?;
    /// assert!(!q.is_full());
    /// # Ok::<(), mproc_queue::Error>(())
    /// ```
    pub fn is_full(&self) -> bool {
        self.ring.is_full()
    }

    /// Returns the bound on the number of messages (`usize` max-ish when unbounded).
    ///
    /// ```
    /// assert_eq!(mproc_queue::Queue::<u8>::bounded(8)?.max_messages(), 8);
    /// # Ok::<(), mproc_queue::Error>(())
    /// ```
    pub fn max_messages(&self) -> usize {
        self.ring.max_messages()
    }

    /// Returns the size of the ring in bytes (see [`Builder::max_bytes`]).
    ///
    /// ```
    /// assert_eq!(mproc_queue::Queue::<u8>::new()?.max_bytes(), 8 << 20);
    /// # Ok::<(), mproc_queue::Error>(())
    /// ```
    pub fn max_bytes(&self) -> usize {
        self.ring.capacity_bytes()
    }

    /// Closes the queue, for every process: later puts fail with
    /// [`PutError::Closed`]; gets take what is left, then fail with [`GetError::Closed`];
    /// everyone waiting wakes up. A put that returned before `close` is delivered.
    ///
    /// Python's `close()` only says that *this* process will put no more; here it is the
    /// way to tell consumers that no more is coming.
    ///
    /// ```
    /// let q = mproc_queue::Queue::new()?;
    /// q.put(1)?;
    /// q.close();
    /// assert!(q.put(2).unwrap_err().is_closed());
    /// assert_eq!(q.get()?, 1);
    /// assert!(q.get().unwrap_err().is_closed());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn close(&self) {
        self.ring.close();
    }

    /// Returns whether the queue was closed.
    ///
    /// ```
    /// let q = mproc_queue::Queue::<u8>::new()?;
    /// q.close();
    /// assert!(q.is_closed());
    /// # Ok::<(), mproc_queue::Error>(())
    /// ```
    pub fn is_closed(&self) -> bool {
        self.ring.is_closed()
    }
}

impl<T: Serialize + DeserializeOwned> Queue<T> {
    fn put_until(&self, value: T, deadline: Option<Instant>) -> Result<(), PutError<T>> {
        handed_back(self.put_encoded(&value, deadline), value)
    }

    fn put_ref_until(&self, value: &T, deadline: Option<Instant>) -> Result<(), PutError<()>> {
        handed_back(self.put_encoded(value, deadline), ())
    }

    /// Encodes `value` into the scratch buffer, or (made of large pieces) straight into
    /// shared memory, and puts it.
    fn put_encoded(&self, value: &T, deadline: Option<Instant>) -> Result<(), Refused> {
        with_scratch(|buf| {
            buf.clear();
            buf.resize(ring::REC_HEADER, 0);
            match mproc_wire::encode_into_unless_bulk(value, buf, BULK).map_err(Error::from)? {
                Some(fds) => self.ring.put(buf, fds, deadline),
                // Made of large pieces: encoded once more, straight into shared memory.
                None => self.ring.put_value(value, deadline),
            }
        })
    }

    fn get_until(&self, deadline: Option<Instant>) -> Result<T, GetError> {
        with_scratch(|buf| match self.ring.get_at(buf, deadline, true) {
            Ok((Payload::Inline, start)) => {
                Ok(mproc_wire::decode_from(&buf[start..], Vec::new()).map_err(Error::from)?)
            }
            Ok((Payload::WithFds(fds), start)) => {
                Ok(mproc_wire::decode_from(&buf[start..], fds).map_err(Error::from)?)
            }
            Ok((Payload::Sealed(sealed), _)) => {
                let (bytes, fds) = *sealed;
                Ok(mproc_wire::decode_from(bytes.as_slice(), fds).map_err(Error::from)?)
            }
            Ok((Payload::Segment(lent), _)) => {
                // Read out of the segment as it is decoded, which frees it after.
                Ok(crate::ring::spill::decode(*lent).map_err(Error::from)?)
            }
            Ok((Payload::Bad(e), _)) | Err(Refused::Failed(e)) => Err(GetError::Failed(e)),
            Err(Refused::Timeout) => Err(GetError::Empty),
            Err(Refused::Closed) => Err(GetError::Closed),
            Err(Refused::Disconnected) => Err(GetError::Disconnected),
        })
    }

    /// Puts `value` at the back, waiting for room if the queue is full. Python: `put(obj)`.
    ///
    /// # Errors
    ///
    /// [`PutError::Closed`]; [`PutError::Failed`] when `value` cannot be serialized or
    /// the OS refuses (a large message's memory). The value comes back either way.
    ///
    /// ```
    /// let q = mproc_queue::Queue::new()?;
    /// q.put(vec![1, 2, 3])?;
    /// assert_eq!(q.get()?, [1, 2, 3]);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn put(&self, value: T) -> Result<(), PutError<T>> {
        self.put_until(value, None)
    }

    /// Like [`put`](Queue::put), waiting at most `timeout` for room (and for the producers'
    /// lock). Python: `put(obj, timeout=t)`.
    ///
    /// # Errors
    ///
    /// [`PutError::Full`] when no room came in time; otherwise as `put`.
    ///
    /// ```
    /// use std::time::Duration;
    /// let q = mproc_queue::Queue::bounded(1)?;
    /// q.put_timeout(1, Duration::from_millis(10))?;
    /// assert!(q.put_timeout(2, Duration::from_millis(10)).unwrap_err().is_full());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn put_timeout(&self, value: T, timeout: Duration) -> Result<(), PutError<T>> {
        self.put_until(value, mproc_sys::deadline_after(timeout))
    }

    /// Like [`put`](Queue::put), encoding the message from a borrow: the caller keeps
    /// `value`, and no clone is made to put it (a large buffer put many times, or kept after
    /// the put). This is what Python's `put(obj)` does, which pickles `obj` and leaves it
    /// to the caller; `put` takes the value so that a refused put can hand it back.
    ///
    /// # Errors
    ///
    /// As `put`; the error holds `()`, since the caller still has the value (so `?` turns
    /// it into a `Box<dyn Error>` as it does `put`'s).
    ///
    /// ```
    /// let q = mproc_queue::Queue::new()?;
    /// let frame = vec![7u8; 1 << 20];
    /// q.put_ref(&frame)?;
    /// q.put_ref(&frame)?;
    /// assert_eq!(q.get()?, frame);
    /// assert_eq!(q.get()?, frame);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn put_ref(&self, value: &T) -> Result<(), PutError<()>> {
        self.put_ref_until(value, None)
    }

    /// Like [`put_ref`](Queue::put_ref), waiting at most `timeout` for room.
    ///
    /// # Errors
    ///
    /// [`PutError::Full`] when no room came in time; otherwise as `put`.
    ///
    /// ```
    /// use std::time::Duration;
    /// let q = mproc_queue::Queue::bounded(1)?;
    /// let v = String::from("kept");
    /// q.put_ref_timeout(&v, Duration::from_millis(10))?;
    /// assert!(q.put_ref_timeout(&v, Duration::from_millis(10)).unwrap_err().is_full());
    /// assert_eq!(v, "kept");
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn put_ref_timeout(&self, value: &T, timeout: Duration) -> Result<(), PutError<()>> {
        self.put_ref_until(value, mproc_sys::deadline_after(timeout))
    }

    /// Puts `value` only if there is room now. Python: `put_nowait(obj)`.
    ///
    /// # Errors
    ///
    /// [`PutError::Full`] at once when there is no room (or another producer holds the
    /// lock); otherwise as `put`.
    ///
    /// ```
    /// let q = mproc_queue::Queue::bounded(1)?;
    /// q.try_put('a')?;
    /// let back = q.try_put('b').unwrap_err().into_inner();
    /// assert_eq!(back, 'b');
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    #[doc(alias = "put_nowait")]
    pub fn try_put(&self, value: T) -> Result<(), PutError<T>> {
        self.put_until(value, Some(Instant::now()))
    }

    /// Takes the message at the front, waiting for one. Python: `get()`.
    ///
    /// # Errors
    ///
    /// [`GetError::Closed`] once the queue is closed and drained; [`GetError::Failed`]
    /// when the message does not deserialize as a `T` (it is consumed; the next `get`
    /// goes on).
    ///
    /// ```
    /// let q = mproc_queue::Queue::new()?;
    /// q.put(7u64)?;
    /// assert_eq!(q.get()?, 7);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn get(&self) -> Result<T, GetError> {
        self.get_until(None)
    }

    /// Like [`get`](Queue::get), waiting at most `timeout`. Python: `get(timeout=t)`.
    ///
    /// # Errors
    ///
    /// [`GetError::Empty`] when nothing came in time; otherwise as `get`.
    ///
    /// ```
    /// use std::time::Duration;
    /// let q = mproc_queue::Queue::<u8>::new()?;
    /// assert!(q.get_timeout(Duration::from_millis(10)).unwrap_err().is_empty());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn get_timeout(&self, timeout: Duration) -> Result<T, GetError> {
        self.get_until(mproc_sys::deadline_after(timeout))
    }

    /// Takes a message only if one is waiting now. Python: `get_nowait()`.
    ///
    /// # Errors
    ///
    /// [`GetError::Empty`] at once when none is waiting (or another consumer holds the
    /// lock); otherwise as `get`.
    ///
    /// ```
    /// let q = mproc_queue::Queue::<u8>::new()?;
    /// assert!(q.try_get().unwrap_err().is_empty());
    /// # Ok::<(), mproc_queue::Error>(())
    /// ```
    #[doc(alias = "get_nowait")]
    pub fn try_get(&self) -> Result<T, GetError> {
        self.get_until(Some(Instant::now()))
    }
}

/// The values a batch encodes before putting them (one hold of the producers' lock, one
/// store of the tail, one wake-up for them, room permitting).
const BATCH: usize = 64;

/// # Batches
///
/// `put_many` and `get_many` move many messages with one hold of the lock and one
/// wake-up, where `put` and `get` take them per message: small messages move several
/// times faster (see `queue_msgs_per_s.batch_1p1c` in the benchmarks). A message with
/// handles inside or a large one still travels on its own, in its place in the order.
/// A put's refusal as the error that hands back `values`.
fn refused<V>(r: Refused, values: V) -> PutError<V> {
    match r {
        Refused::Timeout => PutError::Full(values),
        Refused::Closed => PutError::Closed(values),
        Refused::Disconnected => PutError::Disconnected(values),
        Refused::Failed(e) => PutError::Failed(values, e),
    }
}

/// Sent as its shared memory, locks and side socket (by fd): the receiver uses the same
/// queue.
impl<T> Serialize for Queue<T> {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        self.ring.serialize(s)
    }
}

impl<'de, T> Deserialize<'de> for Queue<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        Ok(Queue::from_ring(Ring::deserialize(d)?))
    }
}

/// A put's outcome, with the value (or the borrow of it) handed back when refused.
fn handed_back<V>(r: Result<(), Refused>, value: V) -> Result<(), PutError<V>> {
    match r {
        Ok(()) => Ok(()),
        Err(Refused::Timeout) => Err(PutError::Full(value)),
        Err(Refused::Closed) => Err(PutError::Closed(value)),
        Err(Refused::Disconnected) => Err(PutError::Disconnected(value)),
        Err(Refused::Failed(e)) => Err(PutError::Failed(value, e)),
    }
}
