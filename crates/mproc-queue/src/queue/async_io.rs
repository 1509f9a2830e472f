//! The async calls of [`Queue`] (`tokio` feature): `get_async`, `put_async` and a
//! [`Stream`] of messages, woken through the queue's eventfd (see `ring::wait_async`).

use std::future::Future;
use std::pin::Pin;
use std::sync::OnceLock;
use std::task::{Context, Poll};
use std::time::Instant;

use futures_core::Stream;
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::Queue;
use crate::error::{GetError, PutError};
use crate::ring::wait_async::{AsyncWait, AsyncWaiter, Stopped};

/// A deadline already passed, for the non-blocking attempts of async waits (a `try_*`
/// without a clock read of its own).
fn passed() -> Instant {
    static PASSED: OnceLock<Instant> = OnceLock::new();
    *PASSED.get_or_init(Instant::now)
}

/// The future of [`Queue::get_async`].
struct GetAsync<'a, T> {
    queue: &'a Queue<T>,
    wait: AsyncWait,
}

impl<T: Serialize + DeserializeOwned> Queue<T> {
    /// One non-blocking get for an async wait: `None` when it should wait.
    fn get_attempt(&self) -> Option<Result<T, GetError>> {
        match self.get_until(Some(passed())) {
            Err(GetError::Empty) => None,
            r => Some(r),
        }
    }

    /// One poll of an async get.
    fn poll_get(&self, wait: &mut AsyncWait, cx: &mut Context<'_>) -> Poll<Result<T, GetError>> {
        wait.poll(cx, &self.ring, AsyncWaiter::Consumer, || self.get_attempt())
            .map(|r| match r {
                Ok(r) => r,
                Err(Stopped::Alone) => Err(GetError::Disconnected),
                Err(Stopped::Failed(e)) => Err(GetError::Failed(e)),
            })
    }

    /// Takes the message at the front, awaiting one without blocking the thread: the
    /// async [`get`](Queue::get). Python has none (`asyncio` users wrap `get` in an
    /// executor); here the wait runs on the runtime's reactor.
    ///
    /// While the other side keeps up it spins, as `get` does, yielding to the runtime's
    /// other tasks every few dozen looks; then it sleeps on the queue's eventfd, which the
    /// process that puts signals (see the crate's architecture notes). A sync producer in
    /// another process wakes it as it wakes a blocking consumer.
    ///
    /// Needs a Tokio runtime with IO and time enabled (`#[tokio::main]`, or
    /// `Builder::enable_all`); otherwise tokio panics, as its own IO types do.
    ///
    /// **Cancel-safe**: the message is taken within one poll, so a future dropped before
    /// it returns took nothing (put a `tokio::time::timeout` around it for a deadline).
    ///
    /// # Errors
    ///
    /// As [`get`](Queue::get): [`GetError::Closed`] once the queue is closed and drained,
    /// [`GetError::Disconnected`] when nobody else is left to put (noticed within about
    /// 100 ms, as by `get`), [`GetError::Failed`] for a message that does not decode (or
    /// when the runtime refuses the eventfd).
    ///
    /// ```
    /// # tokio::runtime::Builder::new_current_thread().enable_all().build()?.block_on(async {
    /// let q = mproc_queue::Queue::new()?;
    /// let producer = q.clone();
    /// let t = std::thread::spawn(move || producer.put(42u32));
    /// assert_eq!(q.get_async().await?, 42);
    /// t.join().unwrap()?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// # })?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn get_async(&self) -> impl Future<Output = Result<T, GetError>> + '_ {
        GetAsync {
            queue: self,
            wait: AsyncWait::default(),
        }
    }

    /// Puts `value` at the back, awaiting room without blocking the thread: the async
    /// [`put`](Queue::put). The value is encoded again at each attempt (an attempt comes
    /// after a get has freed room).
    ///
    /// Needs a Tokio runtime with IO and time enabled, as
    /// [`get_async`](Queue::get_async). **Cancel-safe**: each attempt puts the whole
    /// message or nothing, so a future dropped before it returns put nothing (and the
    /// value is dropped with it).
    ///
    /// # Errors
    ///
    /// As [`put`](Queue::put); [`PutError::Disconnected`] when nobody else is left to
    /// get. The value comes back in every error.
    ///
    /// ```
    /// # tokio::runtime::Builder::new_current_thread().enable_all().build()?.block_on(async {
    /// let q = mproc_queue::Queue::bounded(1)?;
    /// q.put_async("first".to_string()).await?;
    /// let consumer = q.clone();
    /// let t = std::thread::spawn(move || (consumer.get(), consumer.get()));
    /// q.put_async("second".to_string()).await?; // waits for the first get
    /// let (a, b) = t.join().unwrap();
    /// assert_eq!((a?, b?), ("first".to_string(), "second".to_string()));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// # })?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn put_async(&self, value: T) -> impl Future<Output = Result<(), PutError<T>>> + '_ {
        PutAsync {
            queue: self,
            value: Some(value),
            wait: AsyncWait::default(),
        }
    }

    /// The messages as an async [`Stream`] (`futures_core`'s), each a [`get_async`]: it
    /// ends when the queue is closed and drained, or disconnected; a message that does
    /// not decode is an `Err` item, and the stream goes on. The async form of
    /// [`iter`](Queue::iter). Keeps its registration with the reactor between messages.
    ///
    /// [`get_async`]: Queue::get_async
    ///
    /// ```
    /// use std::pin::pin;
    /// use std::future::poll_fn;
    /// use futures_core::Stream;
    /// # tokio::runtime::Builder::new_current_thread().enable_all().build()?.block_on(async {
    /// let q = mproc_queue::Queue::new()?;
    /// for i in 0..3u8 {
    ///     q.put(i)?;
    /// }
    /// q.close();
    /// let mut stream = pin!(q.stream());
    /// let mut got = Vec::new();
    /// while let Some(m) = poll_fn(|cx| stream.as_mut().poll_next(cx)).await {
    ///     got.push(m?);
    /// }
    /// assert_eq!(got, [0, 1, 2]);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// # })?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn stream(&self) -> impl Stream<Item = Result<T, GetError>> + '_ {
        Messages {
            queue: self,
            wait: AsyncWait::default(),
            done: false,
        }
    }
}

impl<T: Serialize + DeserializeOwned> Future for GetAsync<'_, T> {
    type Output = Result<T, GetError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = &mut *self;
        this.queue.poll_get(&mut this.wait, cx)
    }
}

/// The future of [`Queue::put_async`].
struct PutAsync<'a, T> {
    queue: &'a Queue<T>,
    /// `None` once put (or handed back in an error).
    value: Option<T>,
    wait: AsyncWait,
}

/// Never pins `T`: the value is moved in and out whole.
impl<T> Unpin for PutAsync<'_, T> {}

impl<T: Serialize + DeserializeOwned> Future for PutAsync<'_, T> {
    type Output = Result<(), PutError<T>>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = &mut *self;
        let (queue, value) = (this.queue, &mut this.value);
        let attempt = || {
            let v = value.take()?;
            match queue.put_until(v, Some(passed())) {
                Err(PutError::Full(v)) => {
                    *value = Some(v);
                    None
                }
                r => Some(r),
            }
        };
        let r = std::task::ready!(
            this.wait
                .poll(cx, &queue.ring, AsyncWaiter::Producer, attempt)
        );
        Poll::Ready(match r {
            Ok(r) => r,
            Err(stopped) => {
                let Some(v) = this.value.take() else {
                    panic!("a put_async future polled after it completed");
                };
                match stopped {
                    Stopped::Alone => Err(PutError::Disconnected(v)),
                    Stopped::Failed(e) => Err(PutError::Failed(v, e)),
                }
            }
        })
    }
}

/// The stream of [`Queue::stream`].
struct Messages<'a, T> {
    queue: &'a Queue<T>,
    wait: AsyncWait,
    done: bool,
}

impl<T: Serialize + DeserializeOwned> Stream for Messages<'_, T> {
    type Item = Result<T, GetError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        if this.done {
            return Poll::Ready(None);
        }
        Poll::Ready(
            match std::task::ready!(this.queue.poll_get(&mut this.wait, cx)) {
                Err(GetError::Closed | GetError::Disconnected) => {
                    this.done = true;
                    None
                }
                r => Some(r),
            },
        )
    }
}
