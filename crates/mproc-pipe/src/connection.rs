//! `Connection<S, R>`: one end of a typed duplex pipe; `Sender`/`Receiver`: a one-way pipe.

#[cfg(feature = "tokio")]
pub(crate) mod async_io;
#[cfg(feature = "tokio")]
mod async_stream;
pub(crate) mod iter;

use std::fmt;
use std::marker::PhantomData;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::time::{Duration, Instant};

use mproc_wire::{Fd, FdRef, FrameReader, FrameWriter, Limits, Message};
use serde::de::DeserializeOwned;
use serde::ser::Error as _;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::error::{Error, ErrorKind, Result};

/// What a connection runs over. Only Unix sockets carry OS handles.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) enum Transport {
    Unix,
    Tcp,
}

/// The default size limit of a message: 4 GiB (Python's old 32-bit frames stopped at 2).
const DEFAULT_MAX_MESSAGE: u64 = 4 << 30;

/// One end of a pipe that sends `S` and receives `R` (Python's `Connection`).
///
/// For large byte buffers, [`send_bytes`](Self::send_bytes) and
/// [`recv_bytes_into`](Self::recv_bytes_into) (or `serde_bytes` inside your types) move them
/// as one block; a plain `Vec<u8>` field goes through serde byte by byte.
///
/// Made by [`pipe`] (`S = R`), [`duplex`], [`Listener::accept`](crate::Listener::accept)
/// or [`Client::connect`](crate::Client::connect). Values travel as postcard frames; OS
/// handles inside them (other connections, for instance) travel beside the bytes. A
/// connection is itself transferable: pass it as (part of) a spawn argument or send it
/// through another pipe, and the receiving process gets a working end.
///
/// ```
/// let (mut client, mut server) = mproc_pipe::duplex::<String, usize>()?;
/// client.send(&"hello".to_string())?;
/// let request = server.recv()?;
/// server.send(&request.len())?;
/// assert_eq!(client.recv()?, 5);
/// # Ok::<(), mproc_pipe::Error>(())
/// ```
pub struct Connection<S, R = S> {
    sock: OwnedFd,
    reader: FrameReader,
    writer: FrameWriter,
    limits: Limits,
    transport: Transport,
    _types: PhantomData<fn(S) -> R>,
}

impl<S, R> fmt::Debug for Connection<S, R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Connection")
            .field("fd", &self.sock)
            .field("transport", &self.transport)
            .field("max_message", &self.limits.max_message)
            .finish()
    }
}

/// Makes a pipe: two connected ends, each sending and receiving `T` (Python's
/// `Pipe(duplex=True)`).
///
/// # Errors
///
/// [`ErrorKind::Io`] when the OS cannot make the socket pair (out of fds).
///
/// ```
/// let (mut a, mut b) = mproc_pipe::pipe::<Vec<u32>>()?;
/// a.send(&vec![1, 2, 3])?;
/// assert_eq!(b.recv()?, [1, 2, 3]);
/// # Ok::<(), mproc_pipe::Error>(())
/// ```
pub fn pipe<T>() -> Result<(Connection<T>, Connection<T>)> {
    duplex::<T, T>()
}

/// Makes a pipe whose first end sends `A` and receives `B`, and whose second end does the
/// opposite: a request/response channel with a type each way.
///
/// # Errors
///
/// [`ErrorKind::Io`] when the OS cannot make the socket pair.
///
/// ```
/// let (mut ask, mut answer) = mproc_pipe::duplex::<u32, bool>()?;
/// ask.send(&7)?;
/// let n = answer.recv()?;
/// answer.send(&(n % 2 == 1))?;
/// assert!(ask.recv()?);
/// # Ok::<(), mproc_pipe::Error>(())
/// ```
pub fn duplex<A, B>() -> Result<(Connection<A, B>, Connection<B, A>)> {
    let (a, b) = mproc_sys::socketpair().map_err(|e| Error::io("creating a socket pair", e))?;
    Ok((
        Connection::from_fd(a, Transport::Unix),
        Connection::from_fd(b, Transport::Unix),
    ))
}

impl<S, R> Connection<S, R> {
    pub(crate) fn from_fd(sock: OwnedFd, transport: Transport) -> Self {
        Self::with_reader(sock, transport, FrameReader::new())
    }

    /// Wraps a socket whose reader already received bytes (a handshake's), keeping them.
    pub(crate) fn with_reader(sock: OwnedFd, transport: Transport, reader: FrameReader) -> Self {
        // A child made by fork closes its copy unless this connection is in its argument:
        // held there, it would keep the peer from ever seeing this end go.
        mproc_sys::track_owned_fd(sock.as_fd());
        let limits = limits_for(transport, DEFAULT_MAX_MESSAGE);
        Self {
            sock,
            reader,
            writer: FrameWriter::new(),
            limits,
            transport,
            _types: PhantomData,
        }
    }

    /// Returns whether a message (or the end of the stream) can be received without
    /// waiting, waiting up to `timeout` for one (Python's `poll(timeout)`; `None` waits
    /// forever).
    ///
    /// ```
    /// use std::time::Duration;
    /// let (mut a, b) = mproc_pipe::pipe::<u8>()?;
    /// assert!(!b.poll(Some(Duration::ZERO))?);
    /// a.send(&1)?;
    /// assert!(b.poll(Some(Duration::from_secs(5)))?);
    /// # Ok::<(), mproc_pipe::Error>(())
    /// ```
    pub fn poll(&self, timeout: Option<Duration>) -> Result<bool> {
        if self.has_buffered_message() {
            return Ok(true);
        }
        Ok(mproc_sys::poll_readable(&[self.sock.as_fd()], timeout)
            .map_err(|e| Error::io("polling", e))?[0])
    }

    /// Returns whether a whole message was already received into this end's buffer (one
    /// receive can bring several small messages): it can be received without the socket
    /// being readable. [`poll`](Self::poll) and [`wait`](crate::wait) take it into account.
    pub fn has_buffered_message(&self) -> bool {
        self.reader.has_buffered_message()
    }

    /// Returns the largest message this end sends or accepts, in bytes.
    pub fn max_message(&self) -> u64 {
        self.limits.max_message
    }

    /// Sets the largest message this end sends or accepts (default 4 GiB). A larger
    /// outgoing message is refused before anything is sent; a larger incoming one is
    /// skipped without being allocated, and reported as [`ErrorKind::TooLarge`].
    ///
    /// ```
    /// let (mut a, _b) = mproc_pipe::pipe::<Vec<u8>>()?;
    /// a.set_max_message(1024);
    /// let err = a.send(&vec![0; 4096]).unwrap_err();
    /// assert_eq!(err.kind(), mproc_pipe::ErrorKind::TooLarge);
    /// # Ok::<(), mproc_pipe::Error>(())
    /// ```
    pub fn set_max_message(&mut self, bytes: u64) {
        self.limits = limits_for(self.transport, bytes);
    }

    /// Closes this end (Python's `close()`) after sending the rest of a message that a
    /// [`send_timeout`](Self::send_timeout) committed; the peer's receives then report
    /// [`ErrorKind::Disconnected`]. Dropping the end closes it too, but only tries, without
    /// waiting, to send such a rest: close (or flush) before dropping after a timed-out send.
    ///
    /// # Errors
    ///
    /// As [`send`](Self::send), when the pending rest cannot be sent.
    pub fn close(mut self) -> Result<()> {
        Ok(self.writer.flush(self.sock.as_fd(), None)?)
    }

    /// Like [`close`](Self::close), waiting at most `timeout` for the peer to take the rest
    /// of a committed message; the end is closed either way.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Timeout`] when the rest could not be sent in time (the peer sees the
    /// message cut short), otherwise as [`close`](Self::close).
    ///
    /// ```
    /// use std::time::Duration;
    /// let (mut a, mut b) = mproc_pipe::pipe::<u8>()?;
    /// a.send(&1)?;
    /// a.close_timeout(Duration::from_secs(1))?;
    /// assert_eq!(b.recv()?, 1);
    /// # Ok::<(), mproc_pipe::Error>(())
    /// ```
    pub fn close_timeout(mut self, timeout: Duration) -> Result<()> {
        Ok(self
            .writer
            .flush(self.sock.as_fd(), mproc_sys::deadline_after(timeout))?)
    }

    /// Sends raw bytes as one message (Python's `send_bytes`).
    ///
    /// # Errors
    ///
    /// [`ErrorKind::TooLarge`] above the limit (nothing sent), [`ErrorKind::Disconnected`]
    /// when the peer is gone.
    ///
    /// ```
    /// let (mut a, mut b) = mproc_pipe::pipe::<()>()?;
    /// a.send_bytes(b"raw")?;
    /// assert_eq!(b.recv_bytes()?, b"raw");
    /// # Ok::<(), mproc_pipe::Error>(())
    /// ```
    pub fn send_bytes(&mut self, bytes: &[u8]) -> Result<()> {
        Ok(self
            .writer
            .write(self.sock.as_fd(), bytes, &[], &self.limits, None)?)
    }

    /// Like [`send_bytes`](Self::send_bytes), waiting at most `timeout` for the peer to make
    /// room; see [`send_timeout`](Self::send_timeout) for what a timeout means.
    pub fn send_bytes_timeout(&mut self, bytes: &[u8], timeout: Duration) -> Result<()> {
        let deadline = mproc_sys::deadline_after(timeout);
        Ok(self
            .writer
            .write(self.sock.as_fd(), bytes, &[], &self.limits, deadline)?)
    }

    /// Receives one message as raw bytes (Python's `recv_bytes`).
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Disconnected`] when the peer is gone, [`ErrorKind::TooLarge`] for a
    /// message over the limit (skipped; the next receive goes on after it).
    pub fn recv_bytes(&mut self) -> Result<Vec<u8>> {
        Ok(self.read(None)?.into_parts().0)
    }

    /// Like [`recv_bytes`](Self::recv_bytes), giving up after `timeout` with
    /// [`ErrorKind::Timeout`] (nothing is lost; a later receive goes on).
    pub fn recv_bytes_timeout(&mut self, timeout: Duration) -> Result<Vec<u8>> {
        Ok(self
            .read(mproc_sys::deadline_after(timeout))?
            .into_parts()
            .0)
    }

    /// Receives one message into `buf` and returns its length (Python's
    /// `recv_bytes_into`). The bytes go straight from the socket into `buf`.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::BufferTooShort`] when the message does not fit: the error carries it
    /// ([`Error::needed`], [`Error::into_message`]), so nothing is lost. Otherwise as
    /// [`recv_bytes`](Self::recv_bytes).
    ///
    /// ```
    /// let (mut a, mut b) = mproc_pipe::pipe::<()>()?;
    /// a.send_bytes(b"0123456789")?;
    /// let mut small = [0u8; 4];
    /// let err = b.recv_bytes_into(&mut small).unwrap_err();
    /// assert_eq!(err.needed(), Some(10));
    /// assert_eq!(err.into_message().unwrap(), b"0123456789");
    /// # Ok::<(), mproc_pipe::Error>(())
    /// ```
    pub fn recv_bytes_into(&mut self, buf: &mut [u8]) -> Result<usize> {
        self.recv_bytes_into_until(buf, None)
    }

    /// Like [`recv_bytes_into`](Self::recv_bytes_into), giving up after `timeout` with
    /// [`ErrorKind::Timeout`]; what arrived is kept, and a later receive finishes it.
    ///
    /// ```
    /// use std::time::Duration;
    /// let (_a, mut b) = mproc_pipe::pipe::<()>()?;
    /// let err = b.recv_bytes_into_timeout(&mut [0u8; 8], Duration::from_millis(10)).unwrap_err();
    /// assert_eq!(err.kind(), mproc_pipe::ErrorKind::Timeout);
    /// # Ok::<(), mproc_pipe::Error>(())
    /// ```
    pub fn recv_bytes_into_timeout(&mut self, buf: &mut [u8], timeout: Duration) -> Result<usize> {
        self.recv_bytes_into_until(buf, mproc_sys::deadline_after(timeout))
    }

    fn recv_bytes_into_until(
        &mut self,
        buf: &mut [u8],
        deadline: Option<Instant>,
    ) -> Result<usize> {
        match self
            .reader
            .read_into(self.sock.as_fd(), &self.limits, buf, deadline)?
        {
            Ok(n) => Ok(n),
            Err(msg) => Err(Error::buffer_too_short(msg.into_parts().0, buf.len())),
        }
    }

    fn read(&mut self, deadline: Option<Instant>) -> Result<Message> {
        Ok(self
            .reader
            .read(self.sock.as_fd(), &self.limits, deadline)?)
    }

    fn write(&mut self, msg: Message, deadline: Option<Instant>) -> Result<()> {
        if self.transport == Transport::Tcp && msg.fd_count() > 0 {
            return Err(Error::new(
                ErrorKind::Encode,
                "the value holds OS handles (pipe ends, ...), which cannot travel over TCP",
            ));
        }
        let (bytes, fds) = msg.into_parts();
        let fds: Vec<BorrowedFd<'_>> = fds.iter().map(|f| f.as_fd()).collect();
        Ok(self
            .writer
            .write(self.sock.as_fd(), &bytes, &fds, &self.limits, deadline)?)
    }

    /// Pushes out the rest of a message that a [`send_timeout`](Self::send_timeout) had
    /// committed when its deadline passed, waiting at most `timeout`.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Timeout`] when some is still pending then (call again later).
    pub fn flush_timeout(&mut self, timeout: Duration) -> Result<()> {
        Ok(self
            .writer
            .flush(self.sock.as_fd(), mproc_sys::deadline_after(timeout))?)
    }

    /// Returns whether the rest of a committed message is still to be sent (see
    /// [`send_timeout`](Self::send_timeout)).
    pub fn has_pending_send(&self) -> bool {
        self.writer.has_pending()
    }
}

/// Limits for a transport: bodies travel on the stream (as Python's do, and as fast as
/// the socket allows), up to `max` bytes.
fn limits_for(_transport: Transport, max: u64) -> Limits {
    Limits {
        max_message: max,
        inline_max: usize::try_from(max).unwrap_or(usize::MAX),
        max_fds: 64,
    }
}

impl<S: Serialize, R> Connection<S, R> {
    /// Sends a value (Python's `send`).
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Encode`] when it cannot be serialized, [`ErrorKind::TooLarge`] above the
    /// limit (nothing is sent), [`ErrorKind::Disconnected`] when the peer is gone.
    pub fn send(&mut self, value: &S) -> Result<()> {
        let msg = mproc_wire::encode(value)?;
        self.write(msg, None)
    }

    /// Sends a value, waiting at most `timeout` for a peer that does not read to make room.
    ///
    /// A timeout means that no byte of the message went out: it was not sent, and sending it
    /// again is correct. Once part of it has gone out the message is committed and this
    /// returns `Ok`: the rest goes out before the next message, or on
    /// [`flush_timeout`](Self::flush_timeout) ([`has_pending_send`](Self::has_pending_send)
    /// tells), so the stream never loses its place.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Timeout`] (not sent), otherwise as [`send`](Self::send).
    ///
    /// ```
    /// use std::time::Duration;
    /// let (mut a, _b) = mproc_pipe::pipe::<Vec<u8>>()?;
    /// // The peer never reads: sooner or later there is no room left.
    /// let outcome = loop {
    ///     if let Err(e) = a.send_timeout(&vec![0; 64 << 10], Duration::from_millis(50)) {
    ///         break e.kind();
    ///     }
    /// };
    /// assert_eq!(outcome, mproc_pipe::ErrorKind::Timeout);
    /// # Ok::<(), mproc_pipe::Error>(())
    /// ```
    pub fn send_timeout(&mut self, value: &S, timeout: Duration) -> Result<()> {
        let msg = mproc_wire::encode(value)?;
        self.write(msg, mproc_sys::deadline_after(timeout))
    }
}

impl<S, R: DeserializeOwned> Connection<S, R> {
    /// Receives a value, waiting as long as it takes (Python's `recv`). Returns
    /// [`ErrorKind::Disconnected`] at once when the peer is gone (closed, dropped, killed).
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Disconnected`], [`ErrorKind::Decode`] for bytes that are not an `R`,
    /// [`ErrorKind::TooLarge`] for a message over the limit (skipped).
    pub fn recv(&mut self) -> Result<R> {
        let msg = self.read(None)?;
        Ok(mproc_wire::decode(msg)?)
    }

    /// Like [`recv`](Self::recv), giving up after `timeout` with [`ErrorKind::Timeout`];
    /// a message that was partly read is kept, and a later receive finishes it.
    ///
    /// ```
    /// use std::time::Duration;
    /// let (_a, mut b) = mproc_pipe::pipe::<u8>()?;
    /// let err = b.recv_timeout(Duration::from_millis(10)).unwrap_err();
    /// assert_eq!(err.kind(), mproc_pipe::ErrorKind::Timeout);
    /// # Ok::<(), mproc_pipe::Error>(())
    /// ```
    pub fn recv_timeout(&mut self, timeout: Duration) -> Result<R> {
        let msg = self.read(mproc_sys::deadline_after(timeout))?;
        Ok(mproc_wire::decode(msg)?)
    }

    /// Receives a value if one is there, without waiting.
    ///
    /// ```
    /// let (mut a, mut b) = mproc_pipe::pipe::<u8>()?;
    /// assert_eq!(b.try_recv()?, None);
    /// a.send(&9)?;
    /// # b.poll(None)?;
    /// assert_eq!(b.try_recv()?, Some(9));
    /// # Ok::<(), mproc_pipe::Error>(())
    /// ```
    pub fn try_recv(&mut self) -> Result<Option<R>> {
        match self.read(Some(Instant::now())) {
            Ok(msg) => Ok(Some(mproc_wire::decode(msg)?)),
            Err(e) if e.kind() == ErrorKind::Timeout => Ok(None),
            Err(e) => Err(e),
        }
    }
}

impl<S, R> Drop for Connection<S, R> {
    fn drop(&mut self) {
        if self.writer.has_pending() {
            // Without waiting: a peer that does not read must not hang a drop.
            let _ = self.writer.flush(self.sock.as_fd(), Some(Instant::now()));
        }
        mproc_sys::untrack_owned_fd(self.sock.as_fd());
    }
}

impl<S, R> AsFd for Connection<S, R> {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.sock.as_fd()
    }
}

/// How a connection travels inside a message: its fd (beside the bytes) and settings.
#[derive(Serialize)]
struct WireRef<'a> {
    sock: FdRef<'a>,
    transport: Transport,
    max_message: u64,
}

#[derive(Deserialize)]
struct WireOwned {
    sock: Fd,
    transport: Transport,
    max_message: u64,
}

impl<S, R> Serialize for Connection<S, R> {
    fn serialize<Z: Serializer>(&self, s: Z) -> std::result::Result<Z::Ok, Z::Error> {
        // Handed over by fork, the buffers go along in the child's copy of memory.
        let by_fork = mproc_wire::handing_over().is_some();
        if !by_fork && (self.reader.in_frame() || self.writer.has_pending()) {
            return Err(Z::Error::custom(
                "cannot transfer a connection in the middle of receiving or sending a message",
            ));
        }
        WireRef {
            sock: FdRef(self.sock.as_fd()),
            transport: self.transport,
            max_message: self.limits.max_message,
        }
        .serialize(s)
    }
}

impl<'de, S, R> Deserialize<'de> for Connection<S, R> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let w = WireOwned::deserialize(d)?;
        let mut conn = Connection::from_fd(w.sock.into_owned(), w.transport);
        conn.set_max_message(w.max_message);
        Ok(conn)
    }
}

/// The sending end of a one-way pipe (Python's `Pipe(duplex=False)`, whose second end).
///
/// ```
/// let (mut tx, mut rx) = mproc_pipe::channel::<u64>()?;
/// tx.send(&42)?;
/// assert_eq!(rx.recv()?, 42);
/// # Ok::<(), mproc_pipe::Error>(())
/// ```
#[derive(Debug, Serialize, Deserialize)]
#[serde(bound = "")]
pub struct Sender<T>(Connection<T, ()>);

/// The receiving end of a one-way pipe (Python's `Pipe(duplex=False)`, whose first end).
#[derive(Debug, Serialize, Deserialize)]
#[serde(bound = "")]
pub struct Receiver<T>(Connection<(), T>);

/// Makes a one-way pipe: a [`Sender`] and a [`Receiver`] of `T`. Python's
/// `r, w = Pipe(duplex=False)` returns them the other way round.
///
/// # Errors
///
/// [`ErrorKind::Io`] when the OS cannot make the socket pair.
///
/// ```
/// let (mut tx, mut rx) = mproc_pipe::channel::<String>()?;
/// tx.send(&"one way".to_string())?;
/// assert_eq!(rx.recv()?, "one way");
/// # Ok::<(), mproc_pipe::Error>(())
/// ```
pub fn channel<T>() -> Result<(Sender<T>, Receiver<T>)> {
    let (a, b) = duplex::<T, ()>()?;
    Ok((Sender(a), Receiver(b)))
}

impl<T: Serialize> Sender<T> {
    /// Sends a value; see [`Connection::send`].
    pub fn send(&mut self, value: &T) -> Result<()> {
        self.0.send(value)
    }

    /// Sends a value with a deadline; see [`Connection::send_timeout`].
    pub fn send_timeout(&mut self, value: &T, timeout: Duration) -> Result<()> {
        self.0.send_timeout(value, timeout)
    }
}

impl<T> Sender<T> {
    /// Sends raw bytes; see [`Connection::send_bytes`].
    pub fn send_bytes(&mut self, bytes: &[u8]) -> Result<()> {
        self.0.send_bytes(bytes)
    }

    /// Sends raw bytes with a deadline; see [`Connection::send_bytes_timeout`].
    pub fn send_bytes_timeout(&mut self, bytes: &[u8], timeout: Duration) -> Result<()> {
        self.0.send_bytes_timeout(bytes, timeout)
    }

    /// Pushes out the rest of a committed message; see [`Connection::flush_timeout`].
    pub fn flush_timeout(&mut self, timeout: Duration) -> Result<()> {
        self.0.flush_timeout(timeout)
    }

    /// Sets the largest message; see [`Connection::set_max_message`].
    pub fn set_max_message(&mut self, bytes: u64) {
        self.0.set_max_message(bytes)
    }

    /// Closes this end; see [`Connection::close`].
    ///
    /// # Errors
    ///
    /// As [`Connection::close`].
    pub fn close(self) -> Result<()> {
        self.0.close()
    }

    /// Closes this end with a deadline; see [`Connection::close_timeout`].
    pub fn close_timeout(self, timeout: Duration) -> Result<()> {
        self.0.close_timeout(timeout)
    }
}

impl<T: DeserializeOwned> Receiver<T> {
    /// Receives a value; see [`Connection::recv`].
    pub fn recv(&mut self) -> Result<T> {
        self.0.recv()
    }

    /// Receives with a deadline; see [`Connection::recv_timeout`].
    pub fn recv_timeout(&mut self, timeout: Duration) -> Result<T> {
        self.0.recv_timeout(timeout)
    }

    /// Receives without waiting; see [`Connection::try_recv`].
    pub fn try_recv(&mut self) -> Result<Option<T>> {
        self.0.try_recv()
    }
}

impl<T> Receiver<T> {
    /// Waits for a message; see [`Connection::poll`].
    pub fn poll(&self, timeout: Option<Duration>) -> Result<bool> {
        self.0.poll(timeout)
    }

    /// Returns whether a whole message is already buffered; see
    /// [`Connection::has_buffered_message`].
    pub fn has_buffered_message(&self) -> bool {
        self.0.has_buffered_message()
    }

    /// Receives raw bytes; see [`Connection::recv_bytes`].
    pub fn recv_bytes(&mut self) -> Result<Vec<u8>> {
        self.0.recv_bytes()
    }

    /// Receives raw bytes into a buffer; see [`Connection::recv_bytes_into`].
    pub fn recv_bytes_into(&mut self, buf: &mut [u8]) -> Result<usize> {
        self.0.recv_bytes_into(buf)
    }

    /// Receives raw bytes with a deadline; see [`Connection::recv_bytes_timeout`].
    pub fn recv_bytes_timeout(&mut self, timeout: Duration) -> Result<Vec<u8>> {
        self.0.recv_bytes_timeout(timeout)
    }

    /// Receives raw bytes into a buffer with a deadline; see
    /// [`Connection::recv_bytes_into_timeout`].
    pub fn recv_bytes_into_timeout(&mut self, buf: &mut [u8], timeout: Duration) -> Result<usize> {
        self.0.recv_bytes_into_timeout(buf, timeout)
    }

    /// Sets the largest message; see [`Connection::set_max_message`].
    pub fn set_max_message(&mut self, bytes: u64) {
        self.0.set_max_message(bytes)
    }

    /// Closes this end; see [`Connection::close`].
    ///
    /// # Errors
    ///
    /// As [`Connection::close`].
    pub fn close(self) -> Result<()> {
        self.0.close()
    }
}

impl<T> AsFd for Sender<T> {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.0.as_fd()
    }
}

impl<T> AsFd for Receiver<T> {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.0.as_fd()
    }
}

impl From<OwnedFd> for Connection<(), ()> {
    /// Wraps a connected Unix stream socket (for example one end of a socketpair made
    /// elsewhere) as an untyped connection.
    fn from(sock: OwnedFd) -> Self {
        Connection::from_fd(sock, Transport::Unix)
    }
}
