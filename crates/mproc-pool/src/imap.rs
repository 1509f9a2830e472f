//! [`Imap`], the iterator of `imap` (ordered or not): results as they come, fed lazily from
//! the caller's iterator with a bounded number of items in flight.

use std::collections::VecDeque;
use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
#[cfg(feature = "tokio")]
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use serde::de::DeserializeOwned;

use crate::chunk;
use crate::condvar::wait_until;
use crate::error::{Error, Result};
use crate::manager::{Chunk, Deliveries, deliver, on_manager_of, reentrant_wait};
use crate::sink::{Delivery, Sink, Span, chunk_results};
use crate::task::{Call, TaskFn};
use crate::waker::WakerSlot;

/// The job of an `imap` call: results kept until the iterator takes them.
pub(crate) struct Stream<R> {
    state: Mutex<StreamState<R>>,
    changed: Condvar,
    ordered: bool,
    /// The iterator was dropped: its chunks not yet sent are dropped too.
    abandoned: AtomicBool,
}

struct StreamState<R> {
    /// Ordered: the results from index `next` on, `None` where not yet arrived.
    waiting: VecDeque<Option<Result<R>>>,
    next: usize,
    /// Unordered: results in the order they arrived.
    arrived: VecDeque<Result<R>>,
    /// The task polling the iterator as a stream, woken with the blocked threads.
    waker: WakerSlot,
}

impl<R> Stream<R> {
    fn new(ordered: bool) -> Arc<Self> {
        Arc::new(Stream {
            state: Mutex::new(StreamState {
                waiting: VecDeque::new(),
                next: 0,
                arrived: VecDeque::new(),
                waker: WakerSlot::default(),
            }),
            changed: Condvar::new(),
            ordered,
            abandoned: AtomicBool::new(false),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, StreamState<R>> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Takes the next result, waiting until `deadline`; `None` if none came in time.
    fn take(&self, deadline: Option<Instant>) -> Option<Result<R>> {
        let ordered = self.ordered;
        let st = self.lock();
        let (mut st, ready) = wait_until(&self.changed, st, deadline, |st| st.ready(ordered));
        if !ready {
            return None;
        }
        st.pop(ordered)
    }

    /// Takes the next result if it is there, or leaves the task's waker.
    #[cfg(feature = "tokio")]
    fn poll_take(&self, cx: &Context<'_>) -> Poll<Result<R>> {
        let mut st = self.lock();
        if st.ready(self.ordered)
            && let Some(r) = st.pop(self.ordered)
        {
            return Poll::Ready(r);
        }
        st.waker.register(cx);
        Poll::Pending
    }
}

impl<R> StreamState<R> {
    /// Whether the next result to hand out is there.
    fn ready(&self, ordered: bool) -> bool {
        if ordered {
            self.waiting.front().is_some_and(Option::is_some)
        } else {
            !self.arrived.is_empty()
        }
    }

    fn pop(&mut self, ordered: bool) -> Option<Result<R>> {
        if ordered {
            self.next += 1;
            self.waiting.pop_front().flatten()
        } else {
            self.arrived.pop_front()
        }
    }
}

impl<R: DeserializeOwned + Send> Sink for Stream<R> {
    fn deliver(&self, span: Span, delivery: Delivery) {
        let results = chunk_results::<R>(span, delivery).into_items(span);
        let mut st = self.lock();
        if self.ordered {
            for (i, r) in results {
                let Some(pos) = i.checked_sub(st.next) else {
                    continue;
                };
                if st.waiting.len() <= pos {
                    st.waiting.resize_with(pos + 1, || None);
                }
                st.waiting[pos] = Some(r);
            }
        } else {
            st.arrived.extend(results.map(|(_, r)| r));
        }
        let waker = st.waker.take();
        drop(st);
        self.changed.notify_all();
        if let Some(w) = waker {
            w.wake();
        }
    }

    fn is_cancelled(&self) -> bool {
        self.abandoned.load(Ordering::Relaxed)
    }
}

/// Pulls the next chunk of items from the caller's iterator and serializes it: the items
/// as chunks (one, or several when an item does not serialize) and the items that failed.
pub(crate) type Feed<'a> =
    Box<dyn FnMut(usize, &Arc<dyn Sink>, &mut Deliveries) -> Option<(Vec<Chunk>, usize)> + 'a>;

/// How many chunks per worker an `imap` keeps in flight.
pub(crate) const IMAP_CHUNKS_PER_WORKER: usize = 32;

/// Makes the feed of `f` over `items`: `chunksize` (at least 1) items to a chunk.
pub(crate) fn feed<'a, F: TaskFn>(
    f: F,
    items: impl IntoIterator<Item = F::Args> + 'a,
    chunksize: usize,
) -> Feed<'a> {
    let call = Call::new(f);
    let mut source = items.into_iter();
    Box::new(move |start, sink, failed| {
        let items: Vec<F::Args> = source.by_ref().take(chunksize).collect();
        let n = items.len();
        (n > 0).then(|| {
            (
                chunk::encode(&items, start, chunksize, call, sink, failed),
                n,
            )
        })
    })
}

/// Hands chunks to the workers: a local pool's manager, or another transport. A target
/// that takes no more work fails the chunks (each item gets the error) and returns it.
pub(crate) type Submit<'a> = Box<dyn Fn(Vec<Chunk>) -> Result<()> + 'a>;

/// The iterator of [`Pool::imap`](crate::Pool::imap) and
/// [`Pool::imap_unordered`](crate::Pool::imap_unordered): Python's `IMapIterator`.
///
/// It takes items from the input only as results are taken from it, so at most a bounded
/// number of items are in flight and an endless input is fine. Each item yields `Ok` with
/// its result or `Err` with its error (whose [`index`](Error::index) names the item), and
/// iteration goes on after an error. Dropping it drops the work not yet sent to a worker.
///
/// ```
/// fn double(x: u64) -> u64 { x * 2 }
/// # mproc_process::init();
/// let pool = mproc_pool::Pool::new(2)?;
/// // An endless input: only what is taken is computed (plus a bounded window ahead).
/// let firsts: Vec<u64> = pool.imap(double, 0..).take(5).collect::<Result<_, _>>()?;
/// assert_eq!(firsts, [0, 2, 4, 6, 8]);
/// # Ok::<(), mproc_pool::Error>(())
/// ```
pub struct Imap<'a, R> {
    submit: Submit<'a>,
    /// The number of the thread that delivers the results (see `on_manager_of`).
    manager: usize,
    stream: Arc<Stream<R>>,
    sink: Arc<dyn Sink>,
    feed: Feed<'a>,
    /// Items taken from the input, and results handed out.
    fed: usize,
    yielded: usize,
    exhausted: bool,
    /// At most this many items in flight.
    window: usize,
}

impl<R> fmt::Debug for Imap<'_, R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Imap")
            .field("ordered", &self.stream.ordered)
            .field("in_flight", &(self.fed - self.yielded))
            .finish()
    }
}

impl<'a, R: DeserializeOwned + Send + 'static> Imap<'a, R> {
    /// Starts the call: feeds the first window at once, so the workers start before the
    /// first `next`. A pool that takes no work (closed, terminated) yields its error for
    /// each item it took from the input, then ends.
    pub(crate) fn new(
        submit: Submit<'a>,
        manager: usize,
        ordered: bool,
        window: usize,
        feed: Feed<'a>,
    ) -> Self {
        let stream = Stream::<R>::new(ordered);
        let sink: Arc<dyn Sink> = stream.clone();
        let mut it = Imap {
            submit,
            manager,
            stream,
            sink,
            feed,
            fed: 0,
            yielded: 0,
            exhausted: false,
            window: window.max(1),
        };
        it.top_up();
        it
    }

    /// Feeds the pool from the input until the window is full or the input ends.
    fn top_up(&mut self) {
        while !self.exhausted && self.fed - self.yielded < self.window {
            let mut failed = Deliveries::new();
            let Some((chunks, n)) = (self.feed)(self.fed, &self.sink, &mut failed) else {
                self.exhausted = true;
                break;
            };
            self.fed += n;
            deliver(failed);
            // A pool that takes no more work fails these items (they are yielded as
            // errors), and the input is not read further.
            if (self.submit)(chunks).is_err() {
                self.exhausted = true;
            }
        }
    }

    fn next_until(&mut self, deadline: Option<Instant>) -> Option<Result<R>> {
        self.top_up();
        if self.yielded == self.fed {
            return None;
        }
        // On the pool's own manager thread (a callback), only look: waiting there would
        // wait for the very thread that delivers the results.
        let reentrant = on_manager_of(self.manager);
        let deadline = if reentrant {
            Some(Instant::now())
        } else {
            deadline
        };
        match self.stream.take(deadline) {
            Some(r) => {
                self.yielded += 1;
                self.top_up();
                Some(r)
            }
            None if reentrant => Some(Err(reentrant_wait())),
            None => Some(Err(Error::wait_timeout())),
        }
    }

    /// Returns the next result, waiting at most `timeout`: Python's `next(timeout)`.
    /// `Some(Err(e))` with [`ErrorKind::Timeout`](crate::ErrorKind::Timeout) and no index
    /// means none came in time; the iterator can be used again. `None` is the end.
    ///
    /// ```
    /// use std::time::Duration;
    /// fn nap(ms: u64) -> u64 { std::thread::sleep(Duration::from_millis(ms)); ms }
    /// # mproc_process::init();
    /// let pool = mproc_pool::Pool::new(1)?;
    /// let mut it = pool.imap(nap, [400]);
    /// let early = it.next_timeout(Duration::from_millis(10)).unwrap().unwrap_err();
    /// assert_eq!(early.kind(), mproc_pool::ErrorKind::Timeout);
    /// assert_eq!(it.next_timeout(Duration::from_secs(30)).unwrap()?, 400);
    /// assert!(it.next().is_none());
    /// # Ok::<(), mproc_pool::Error>(())
    /// ```
    pub fn next_timeout(&mut self, timeout: Duration) -> Option<Result<R>> {
        self.next_until(mproc_sys::deadline_after(timeout))
    }
}

impl<R: DeserializeOwned + Send + 'static> Iterator for Imap<'_, R> {
    type Item = Result<R>;

    fn next(&mut self) -> Option<Result<R>> {
        self.next_until(None)
    }
}

/// The results as an async stream (with the `tokio` feature, for `futures-core`'s
/// `Stream`; no tokio runtime is needed): the same items as the iterator, each awaited
/// without blocking, woken by the pool's result thread. Feeding the pool from the input
/// happens in `poll_next`, as it does in `next`. Dropping a `next()` future midway loses
/// nothing: a result is taken out only when it is returned.
///
/// ```
/// use std::future::poll_fn;
/// use std::pin::Pin;
/// use futures_core::Stream;
/// fn double(x: u64) -> u64 { x * 2 }
/// # mproc_process::init();
/// let pool = mproc_pool::Pool::new(2)?;
/// let rt = tokio::runtime::Builder::new_current_thread().build()?;
/// let total = rt.block_on(async {
///     let mut results = pool.imap_unordered(double, 1..=10);
///     let mut total = 0;
///     while let Some(r) = poll_fn(|cx| Pin::new(&mut results).poll_next(cx)).await {
///         total += r?;
///     }
///     Ok::<_, mproc_pool::Error>(total)
/// })?;
/// assert_eq!(total, 110);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[cfg(feature = "tokio")]
impl<R: DeserializeOwned + Send + 'static> futures_core::Stream for Imap<'_, R> {
    type Item = Result<R>;

    fn poll_next(self: std::pin::Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<R>>> {
        let this = self.get_mut();
        this.top_up();
        if this.yielded == this.fed {
            return Poll::Ready(None);
        }
        match this.stream.poll_take(cx) {
            Poll::Ready(r) => {
                this.yielded += 1;
                this.top_up();
                Poll::Ready(Some(r))
            }
            // From one of this pool's callbacks no result would ever come (that thread
            // delivers them): say so, as `next` does.
            Poll::Pending if on_manager_of(this.manager) => {
                Poll::Ready(Some(Err(reentrant_wait())))
            }
            Poll::Pending => Poll::Pending,
        }
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (self.fed - self.yielded, None)
    }
}

impl<R> Drop for Imap<'_, R> {
    fn drop(&mut self) {
        self.stream.abandoned.store(true, Ordering::Relaxed);
    }
}
