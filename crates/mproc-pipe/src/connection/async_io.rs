//! `AsyncConnection`: a connection whose sends and receives wait on tokio's reactor
//! (feature `tokio`).

use std::collections::VecDeque;
use std::fmt;
use std::future::poll_fn;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::task::{Context, Poll, ready};
use std::time::Instant;

use mproc_sys::ReactorFd;
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::io::unix::AsyncFd;

use super::{Connection, Transport};
use crate::error::{Error, ErrorKind, Result};

/// A [`Connection`] awaited on tokio's reactor: [`send_async`](Self::send_async),
/// [`recv_async`](Self::recv_async), their bytes variants, and a
/// [`Stream`](futures_core::Stream) of the received messages. Made by [`Connection::into_async`] (or [`AsyncConnection::new`]);
/// [`into_inner`](Self::into_inner) gives the blocking connection back.
///
/// Why a wrapper rather than `conn.recv_async()` on the connection itself: registering with
/// a reactor is done once here, not on every call (it is a `dup` and an `epoll_ctl`), and it
/// ties the object to a runtime; a plain [`Connection`] stays runtime-free, transferable to
/// children and usable from threads. The two views share everything else: the same frames,
/// size limits, fd passing, and buffers, so a message half-received by a dropped future is
/// finished by the next receive, async or (after `into_inner`) blocking.
///
/// Nothing here blocks a thread or moves a blocking call elsewhere: each attempt is a
/// non-blocking `recvmsg`/`sendmsg` (`MSG_DONTWAIT`, the socket itself stays blocking for
/// the blocking API), and a would-block waits for readiness of a duplicate of the socket
/// registered with the runtime's reactor (one extra fd per async connection).
///
/// Every future is cancel-safe:
/// - [`recv_async`](Self::recv_async) dropped midway (a `select!` or `timeout` that fired
///   in the middle of a large message) loses nothing: the bytes already read stay in the
///   connection's buffer, and the next receive returns the whole message.
/// - [`send_async`](Self::send_async) dropped before any byte of its message went out did
///   not send it (sending it again is right); dropped after, the message is committed, and
///   its rest goes out before the next message, on [`flush_async`](Self::flush_async), or
///   (without waiting) when the connection is dropped, exactly as after a
///   [`send_timeout`](Connection::send_timeout).
///
/// Errors are the blocking calls' errors: a peer that is gone (closed, dropped, killed)
/// while a receive waits is [`ErrorKind::Disconnected`], a frame with a length prefix above
/// the limit is [`ErrorKind::TooLarge`] (skipped), garbage is [`ErrorKind::Corrupt`].
///
/// ```
/// # fn main() -> mproc_pipe::Result<()> {
/// # let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
/// # rt.block_on(async {
/// let (a, b) = mproc_pipe::duplex::<String, usize>()?;
/// let (mut client, mut server) = (a.into_async()?, b.into_async()?);
/// client.send_async(&"hello".to_string()).await?;
/// let request = server.recv_async().await?;
/// server.send_async(&request.len()).await?;
/// assert_eq!(client.recv_async().await?, 5);
/// # Ok(())
/// # })
/// # }
/// ```
pub struct AsyncConnection<S, R = S> {
    conn: Connection<S, R>,
    ready: AsyncFd<ReactorFd>,
    /// Messages queued by [`start_send`](Self::start_send), not sent yet (none of their
    /// bytes went out), oldest first.
    outbox: VecDeque<(Vec<u8>, Vec<OwnedFd>)>,
    /// The `Stream` returned its end (see `iter::loop_item`).
    pub(super) stream_ended: bool,
}

impl<S, R> fmt::Debug for AsyncConnection<S, R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AsyncConnection")
            .field("conn", &self.conn)
            .finish_non_exhaustive()
    }
}

impl<S, R> Connection<S, R> {
    /// Turns this end into an [`AsyncConnection`], registered with the reactor of the tokio
    /// runtime this is called in.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Io`] when no tokio runtime is running here, or the OS cannot register
    /// the socket (out of fds or epoll watches); the connection is closed then.
    ///
    /// # Panics
    ///
    /// When the runtime was built without its I/O driver, as tokio's own sockets do.
    ///
    /// ```
    /// # let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    /// # rt.block_on(async {
    /// let (a, mut b) = mproc_pipe::pipe::<u8>()?;
    /// let mut a = a.into_async()?;
    /// a.send_async(&7).await?;
    /// assert_eq!(b.recv()?, 7);
    /// # Ok::<(), mproc_pipe::Error>(())
    /// # })?;
    /// # Ok::<(), mproc_pipe::Error>(())
    /// ```
    pub fn into_async(self) -> Result<AsyncConnection<S, R>> {
        AsyncConnection::new(self)
    }
}

impl<T> super::Sender<T> {
    /// Turns this sending end into an [`AsyncConnection`] that sends `T` (and receives
    /// nothing); see [`Connection::into_async`].
    ///
    /// # Errors
    ///
    /// As [`Connection::into_async`].
    ///
    /// ```
    /// # let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    /// # rt.block_on(async {
    /// let (tx, mut rx) = mproc_pipe::channel::<String>()?;
    /// let mut tx = tx.into_async()?;
    /// tx.send_async(&"one way".to_string()).await?;
    /// assert_eq!(rx.recv()?, "one way");
    /// # Ok::<(), mproc_pipe::Error>(())
    /// # })?;
    /// # Ok::<(), mproc_pipe::Error>(())
    /// ```
    pub fn into_async(self) -> Result<AsyncConnection<T, ()>> {
        self.0.into_async()
    }
}

impl<T> super::Receiver<T> {
    /// Turns this receiving end into an [`AsyncConnection`] that receives `T` (and sends
    /// nothing); see [`Connection::into_async`].
    ///
    /// # Errors
    ///
    /// As [`Connection::into_async`].
    ///
    /// ```
    /// # let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    /// # rt.block_on(async {
    /// let (mut tx, rx) = mproc_pipe::channel::<u64>()?;
    /// let mut rx = rx.into_async()?;
    /// tx.send(&42)?;
    /// assert_eq!(rx.recv_async().await?, 42);
    /// # Ok::<(), mproc_pipe::Error>(())
    /// # })?;
    /// # Ok::<(), mproc_pipe::Error>(())
    /// ```
    pub fn into_async(self) -> Result<AsyncConnection<(), T>> {
        self.0.into_async()
    }
}

impl<S, R> AsyncConnection<S, R> {
    /// Wraps `conn`, registered with the reactor of the tokio runtime this is called in;
    /// the same as [`Connection::into_async`].
    ///
    /// # Errors
    ///
    /// As [`Connection::into_async`].
    ///
    /// # Panics
    ///
    /// As [`Connection::into_async`].
    ///
    /// ```
    /// # let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    /// # rt.block_on(async {
    /// let (a, _b) = mproc_pipe::pipe::<u8>()?;
    /// let a = mproc_pipe::AsyncConnection::new(a)?;
    /// assert_eq!(a.get_ref().max_message(), 4 << 30);
    /// # Ok::<(), mproc_pipe::Error>(())
    /// # })?;
    /// # Ok::<(), mproc_pipe::Error>(())
    /// ```
    pub fn new(conn: Connection<S, R>) -> Result<Self> {
        let ready = mproc_sys::register_async(conn.as_fd())
            .map_err(|e| Error::io("registering the connection with tokio's reactor", e))?;
        Ok(Self {
            conn,
            ready,
            outbox: VecDeque::new(),
            stream_ended: false,
        })
    }

    /// Gives the blocking connection back (deregistered), with whatever it had buffered:
    /// a message half-received by an async call is finished by its next `recv`.
    ///
    /// ```
    /// # let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    /// # rt.block_on(async {
    /// let (a, b) = mproc_pipe::pipe::<u8>()?;
    /// let mut a = a.into_async()?.into_inner();
    /// a.send(&1)?;
    /// # drop(b);
    /// # Ok::<(), mproc_pipe::Error>(())
    /// # })?;
    /// # Ok::<(), mproc_pipe::Error>(())
    /// ```
    pub fn into_inner(self) -> Connection<S, R> {
        self.conn
    }

    /// Returns the blocking connection inside, for what does not wait:
    /// [`max_message`](Connection::max_message),
    /// [`has_buffered_message`](Connection::has_buffered_message),
    /// [`has_pending_send`](Connection::has_pending_send), [`poll`](Connection::poll).
    ///
    /// ```
    /// # let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    /// # rt.block_on(async {
    /// let (mut a, b) = mproc_pipe::pipe::<u8>()?;
    /// let b = b.into_async()?;
    /// a.send(&1)?;
    /// assert!(b.get_ref().poll(Some(std::time::Duration::from_secs(5)))?);
    /// # Ok::<(), mproc_pipe::Error>(())
    /// # })?;
    /// # Ok::<(), mproc_pipe::Error>(())
    /// ```
    pub fn get_ref(&self) -> &Connection<S, R> {
        &self.conn
    }

    /// Sets the largest message this end sends or accepts; see
    /// [`Connection::set_max_message`].
    ///
    /// ```
    /// # let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    /// # rt.block_on(async {
    /// let (a, _b) = mproc_pipe::pipe::<Vec<u8>>()?;
    /// let mut a = a.into_async()?;
    /// a.set_max_message(16);
    /// let err = a.send_async(&vec![0; 64]).await.unwrap_err();
    /// assert_eq!(err.kind(), mproc_pipe::ErrorKind::TooLarge);
    /// # Ok::<(), mproc_pipe::Error>(())
    /// # })?;
    /// # Ok::<(), mproc_pipe::Error>(())
    /// ```
    pub fn set_max_message(&mut self, bytes: u64) {
        self.conn.set_max_message(bytes);
    }

    /// Waits until the socket is readable, then runs `attempt` (a receive that does not
    /// wait), until it returns something other than [`ErrorKind::Timeout`]. A message
    /// already buffered is attempted at once.
    fn poll_read_with<T>(
        &mut self,
        cx: &mut Context<'_>,
        mut attempt: impl FnMut(&mut Connection<S, R>) -> Result<T>,
    ) -> Poll<Result<T>> {
        // A message already buffered is attempted without waiting, once.
        let mut wait = !self.conn.has_buffered_message();
        loop {
            // The guard is taken before the attempt, so that readiness cleared below was
            // seen before the attempt found nothing (none arriving after it is lost).
            let mut guard = if wait {
                Some(ready!(self.ready.poll_read_ready(cx)).map_err(wait_error)?)
            } else {
                None
            };
            wait = true;
            match attempt(&mut self.conn) {
                Err(e) if e.kind() == ErrorKind::Timeout => {
                    if let Some(guard) = guard.as_mut() {
                        guard.clear_ready();
                    }
                }
                done => return Poll::Ready(done),
            }
        }
    }

    /// Waits until the socket is writable, then runs `attempt` (a send that does not wait),
    /// until it returns something other than [`ErrorKind::Timeout`].
    fn poll_write_with(
        &mut self,
        cx: &mut Context<'_>,
        attempt: impl FnMut(&mut Connection<S, R>) -> Result<()>,
    ) -> Poll<Result<()>> {
        poll_write_on(&self.ready, &mut self.conn, cx, attempt)
    }

    /// Sends what is waiting to go: the rest of a committed message (see
    /// [`send_async`](Self::send_async)), then the messages queued by
    /// [`start_send`](Self::start_send); `Ready(Ok(()))` once nothing is left. Sink-like
    /// use, for hand-written `poll` loops that send and receive on one connection at once.
    ///
    /// # Errors
    ///
    /// As [`Connection::send`], when the peer is gone; the queued messages stay queued
    /// (and are dropped with the connection).
    ///
    /// ```
    /// use std::future::poll_fn;
    /// # let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    /// # rt.block_on(async {
    /// let (a, mut b) = mproc_pipe::pipe::<u8>()?;
    /// let mut a = a.into_async()?;
    /// a.start_send(&3)?;
    /// poll_fn(|cx| a.poll_flush(cx)).await?;
    /// assert_eq!(b.recv()?, 3);
    /// # Ok::<(), mproc_pipe::Error>(())
    /// # })?;
    /// # Ok::<(), mproc_pipe::Error>(())
    /// ```
    pub fn poll_flush(&mut self, cx: &mut Context<'_>) -> Poll<Result<()>> {
        loop {
            if self.conn.has_pending_send() {
                ready!(self.poll_write_with(cx, |conn| {
                    Ok(conn.writer.flush(conn.sock.as_fd(), Some(Instant::now()))?)
                }))?;
            }
            let Some((bytes, fds)) = self.outbox.front() else {
                return Poll::Ready(Ok(()));
            };
            let fds: Vec<BorrowedFd<'_>> = fds.iter().map(|f| f.as_fd()).collect();
            let (conn, ready) = (&mut self.conn, &self.ready);
            ready!(poll_write_on(ready, conn, cx, |conn| conn.write_now(bytes, &fds)))?;
            self.outbox.pop_front();
        }
    }

    /// Sends what is waiting to go (see [`poll_flush`](Self::poll_flush)): the rest of a
    /// message that a dropped [`send_async`](Self::send_async) had committed, and the
    /// messages queued by [`start_send`](Self::start_send).
    ///
    /// # Errors
    ///
    /// As [`Connection::send`], when the peer is gone.
    ///
    /// ```
    /// # let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    /// # rt.block_on(async {
    /// let (a, mut b) = mproc_pipe::pipe::<u8>()?;
    /// let mut a = a.into_async()?;
    /// a.start_send(&1)?;
    /// a.start_send(&2)?;
    /// a.flush_async().await?;
    /// assert_eq!((b.recv()?, b.recv()?), (1, 2));
    /// # Ok::<(), mproc_pipe::Error>(())
    /// # })?;
    /// # Ok::<(), mproc_pipe::Error>(())
    /// ```
    pub async fn flush_async(&mut self) -> Result<()> {
        poll_fn(|cx| self.poll_flush(cx)).await
    }

    /// Sends one frame of `bytes` and `fds` after what is waiting to go, waiting for room
    /// without blocking the thread.
    async fn send_frame_async(&mut self, bytes: &[u8], fds: &[OwnedFd]) -> Result<()> {
        self.flush_async().await?;
        let fds: Vec<BorrowedFd<'_>> = fds.iter().map(|f| f.as_fd()).collect();
        poll_fn(|cx| self.poll_write_with(cx, |conn| conn.write_now(bytes, &fds))).await?;
        // Committed; a rest that did not fit goes out now.
        self.flush_async().await
    }

    /// Sends raw bytes as one message (Python's `send_bytes`), waiting for room without
    /// blocking the thread. Cancel-safe as [`send_async`](Self::send_async).
    ///
    /// # Errors
    ///
    /// As [`Connection::send_bytes`].
    ///
    /// ```
    /// # let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    /// # rt.block_on(async {
    /// let (a, b) = mproc_pipe::pipe::<()>()?;
    /// let (mut a, mut b) = (a.into_async()?, b.into_async()?);
    /// a.send_bytes_async(b"raw").await?;
    /// assert_eq!(b.recv_bytes_async().await?, b"raw");
    /// # Ok::<(), mproc_pipe::Error>(())
    /// # })?;
    /// # Ok::<(), mproc_pipe::Error>(())
    /// ```
    pub async fn send_bytes_async(&mut self, bytes: &[u8]) -> Result<()> {
        self.send_frame_async(bytes, &[]).await
    }

    /// Receives one message as raw bytes (Python's `recv_bytes`), waiting without blocking
    /// the thread. Cancel-safe as [`recv_async`](Self::recv_async).
    ///
    /// # Errors
    ///
    /// As [`Connection::recv_bytes`].
    ///
    /// ```
    /// # let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    /// # rt.block_on(async {
    /// let (mut a, b) = mproc_pipe::pipe::<()>()?;
    /// let mut b = b.into_async()?;
    /// a.send_bytes(&[1, 2, 3])?;
    /// assert_eq!(b.recv_bytes_async().await?, [1, 2, 3]);
    /// # Ok::<(), mproc_pipe::Error>(())
    /// # })?;
    /// # Ok::<(), mproc_pipe::Error>(())
    /// ```
    pub async fn recv_bytes_async(&mut self) -> Result<Vec<u8>> {
        let msg = poll_fn(|cx| self.poll_read_with(cx, |conn| conn.read(Some(Instant::now()))));
        Ok(msg.await?.into_parts().0)
    }

    /// Receives one message into `buf` and returns its length (Python's
    /// `recv_bytes_into`), waiting without blocking the thread. Cancel-safe: what arrived
    /// before the future was dropped is kept for the next receive.
    ///
    /// # Errors
    ///
    /// As [`Connection::recv_bytes_into`]: [`ErrorKind::BufferTooShort`] carries a message
    /// that does not fit.
    ///
    /// ```
    /// # let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    /// # rt.block_on(async {
    /// let (a, b) = mproc_pipe::pipe::<()>()?;
    /// let (mut a, mut b) = (a.into_async()?, b.into_async()?);
    /// a.send_bytes_async(b"12345").await?;
    /// let mut buf = [0u8; 8];
    /// assert_eq!(b.recv_bytes_into_async(&mut buf).await?, 5);
    /// assert_eq!(&buf[..5], b"12345");
    /// # Ok::<(), mproc_pipe::Error>(())
    /// # })?;
    /// # Ok::<(), mproc_pipe::Error>(())
    /// ```
    pub async fn recv_bytes_into_async(&mut self, buf: &mut [u8]) -> Result<usize> {
        poll_fn(|cx| {
            self.poll_read_with(cx, |conn| {
                conn.recv_bytes_into_until(buf, Some(Instant::now()))
            })
        })
        .await
    }
}

impl<S: Serialize, R> AsyncConnection<S, R> {
    /// Sends a value (Python's `send`), waiting for room without blocking the thread. OS
    /// handles inside it (pipe ends, ...) travel beside the bytes, as with
    /// [`Connection::send`].
    ///
    /// Cancel-safe: dropped before any byte of the message went out, it did not send it;
    /// dropped after, the message is committed and its rest goes out before the next
    /// message (or on [`flush_async`](Self::flush_async)), so the stream never tears.
    ///
    /// # Errors
    ///
    /// As [`Connection::send`].
    ///
    /// ```
    /// # let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    /// # rt.block_on(async {
    /// // A pipe end inside the message travels as the socket itself.
    /// let (a, mut b) = mproc_pipe::pipe::<mproc_pipe::Connection<String>>()?;
    /// let mut a = a.into_async()?;
    /// let (mut near, far) = mproc_pipe::pipe::<String>()?;
    /// a.send_async(&far).await?;
    /// let mut far = b.recv()?;
    /// far.send(&"through the pipe".to_string())?;
    /// assert_eq!(near.recv()?, "through the pipe");
    /// # Ok::<(), mproc_pipe::Error>(())
    /// # })?;
    /// # Ok::<(), mproc_pipe::Error>(())
    /// ```
    pub async fn send_async(&mut self, value: &S) -> Result<()> {
        let (bytes, fds) = mproc_wire::encode(value)?.into_parts();
        self.send_frame_async(&bytes, &fds).await
    }

    /// Queues a value to be sent by [`poll_flush`](Self::poll_flush) /
    /// [`flush_async`](Self::flush_async) (or a later send), in order, without waiting:
    /// Sink-like use, so that one task can send and receive on a connection at once. What
    /// is queued is sent only by a flush; dropping the connection (or
    /// [`into_inner`](Self::into_inner)) drops what was never flushed.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Encode`] when the value cannot be serialized (or holds OS handles on a
    /// TCP connection), [`ErrorKind::TooLarge`] above the limit; nothing is queued then.
    ///
    /// ```
    /// # let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    /// # rt.block_on(async {
    /// let (a, mut b) = mproc_pipe::pipe::<u8>()?;
    /// let mut a = a.into_async()?;
    /// for i in 0..3 {
    ///     a.start_send(&i)?;
    /// }
    /// a.flush_async().await?;
    /// assert_eq!([b.recv()?, b.recv()?, b.recv()?], [0, 1, 2]);
    /// # Ok::<(), mproc_pipe::Error>(())
    /// # })?;
    /// # Ok::<(), mproc_pipe::Error>(())
    /// ```
    pub fn start_send(&mut self, value: &S) -> Result<()> {
        let (bytes, fds) = mproc_wire::encode(value)?.into_parts();
        self.conn.check_sendable(bytes.len(), fds.len())?;
        self.outbox.push_back((bytes, fds));
        Ok(())
    }
}

impl<S, R: DeserializeOwned> AsyncConnection<S, R> {
    /// Receives a value (Python's `recv`), waiting without blocking the thread.
    ///
    /// Cancel-safe: dropped midway through a message, the part read stays buffered and the
    /// next receive (async, or blocking after [`into_inner`](Self::into_inner)) returns the
    /// whole message.
    ///
    /// # Errors
    ///
    /// As [`Connection::recv`]: [`ErrorKind::Disconnected`] when the peer is gone (also
    /// when it dies while this waits).
    ///
    /// ```
    /// # let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    /// # rt.block_on(async {
    /// let (a, b) = mproc_pipe::pipe::<u8>()?;
    /// let mut b = b.into_async()?;
    /// drop(a);
    /// let err = b.recv_async().await.unwrap_err();
    /// assert_eq!(err.kind(), mproc_pipe::ErrorKind::Disconnected);
    /// # Ok::<(), mproc_pipe::Error>(())
    /// # })?;
    /// # Ok::<(), mproc_pipe::Error>(())
    /// ```
    pub async fn recv_async(&mut self) -> Result<R> {
        poll_fn(|cx| self.poll_recv(cx)).await
    }

    /// Polls for a value: `Ready` with what [`recv_async`](Self::recv_async) would return,
    /// or `Pending` with `cx`'s waker registered for the socket. For hand-written `poll`
    /// loops over many connections; the [`Stream`](futures_core::Stream) impl is the
    /// same with the end of the stream as `None`.
    ///
    /// # Errors
    ///
    /// As [`recv_async`](Self::recv_async).
    ///
    /// ```
    /// use std::future::poll_fn;
    /// use std::task::Poll;
    /// # let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    /// # rt.block_on(async {
    /// // One hand-written loop waiting on two connections at once.
    /// let (mut x, a) = mproc_pipe::pipe::<u8>()?;
    /// let (_y, b) = mproc_pipe::pipe::<u8>()?;
    /// let (mut a, mut b) = (a.into_async()?, b.into_async()?);
    /// x.send(&5)?;
    /// let (which, value) = poll_fn(|cx| {
    ///     if let Poll::Ready(r) = a.poll_recv(cx) {
    ///         return Poll::Ready(("a", r));
    ///     }
    ///     if let Poll::Ready(r) = b.poll_recv(cx) {
    ///         return Poll::Ready(("b", r));
    ///     }
    ///     Poll::Pending
    /// })
    /// .await;
    /// assert_eq!((which, value?), ("a", 5));
    /// # Ok::<(), mproc_pipe::Error>(())
    /// # })?;
    /// # Ok::<(), mproc_pipe::Error>(())
    /// ```
    pub fn poll_recv(&mut self, cx: &mut Context<'_>) -> Poll<Result<R>> {
        let msg = ready!(self.poll_read_with(cx, |conn| conn.read(Some(Instant::now()))))?;
        Poll::Ready(Ok(mproc_wire::decode(msg)?))
    }
}

impl<S, R> AsFd for AsyncConnection<S, R> {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.conn.as_fd()
    }
}

impl<S, R> Connection<S, R> {
    /// Refuses, before anything is queued, what [`write_now`](Self::write_now) would refuse
    /// for its size or its fds.
    fn check_sendable(&self, len: usize, fds: usize) -> Result<()> {
        if self.transport == Transport::Tcp && fds > 0 {
            return Err(Error::new(
                ErrorKind::Encode,
                "the value holds OS handles (pipe ends, ...), which cannot travel over TCP",
            ));
        }
        if len as u64 > self.limits.max_message {
            return Err(Error::new(
                ErrorKind::TooLarge,
                format!(
                    "message of {len} bytes exceeds the limit of {} bytes",
                    self.limits.max_message
                ),
            ));
        }
        if fds as u64 > u64::from(self.limits.max_fds) {
            return Err(Error::new(
                ErrorKind::TooLarge,
                format!(
                    "message carries {fds} fds; the limit is {}",
                    self.limits.max_fds
                ),
            ));
        }
        Ok(())
    }

    /// Sends one frame without waiting: [`ErrorKind::Timeout`] when none of it went out
    /// (no room), `Ok` once it is committed (its rest may be pending).
    fn write_now(&mut self, bytes: &[u8], fds: &[BorrowedFd<'_>]) -> Result<()> {
        self.check_sendable(bytes.len(), fds.len())?;
        let now = Some(Instant::now());
        Ok(self
            .writer
            .write(self.sock.as_fd(), bytes, fds, &self.limits, now)?)
    }
}

/// Waits until `ready` (the socket of `conn`) is writable, then runs `attempt` (a send that
/// does not wait), until it returns something other than [`ErrorKind::Timeout`]. The guard
/// is taken before the attempt, so that readiness cleared after a fruitless attempt was
/// seen before it (none arriving after it is lost).
fn poll_write_on<C>(
    ready: &AsyncFd<ReactorFd>,
    conn: &mut C,
    cx: &mut Context<'_>,
    mut attempt: impl FnMut(&mut C) -> Result<()>,
) -> Poll<Result<()>> {
    loop {
        let mut guard = ready!(ready.poll_write_ready(cx)).map_err(wait_error)?;
        match attempt(conn) {
            Err(e) if e.kind() == ErrorKind::Timeout => guard.clear_ready(),
            done => return Poll::Ready(done),
        }
    }
}

fn wait_error(e: std::io::Error) -> Error {
    Error::io("waiting for the socket on tokio's reactor", e)
}
