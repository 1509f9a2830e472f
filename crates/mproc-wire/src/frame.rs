//! Frames on a Unix stream socket: a 16-byte header, then the body, with the message's fds
//! sent beside the header's first byte.
//!
//! Header (little endian): magic `b"MP"`, version `1`, flags, fd count (`u32`), body length
//! (`u64`). Flag bit 0 says the body travels in an extra, last fd (a memfd) instead of on
//! the stream: bodies above [`Limits::inline_max`] go that way, so the writer never blocks
//! on a slow reader for them and a 1 GiB body costs one copy on each side.

use std::fs::File;
use std::io::{self, IoSlice, Write};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::fs::FileExt;
use std::time::Instant;

use crate::codec::Message;
use crate::error::{Error, ErrorKind};

/// Size of a frame header in bytes.
pub const HEADER_LEN: usize = 16;
const MAGIC: [u8; 2] = *b"MP";
const VERSION: u8 = 1;
const FLAG_BODY_IN_FD: u8 = 1;

/// Size limits of a connection, checked on both sides before anything is allocated.
///
/// ```
/// let limits = mproc_wire::Limits { max_message: 1 << 20, ..Default::default() };
/// assert!(limits.inline_max <= limits.max_message as usize);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// The largest body a message may have (sender refuses, receiver rejects).
    pub max_message: u64,
    /// Bodies up to this size travel on the stream; larger ones in a memfd.
    pub inline_max: usize,
    /// The most fds one message may carry.
    pub max_fds: u32,
}

impl Default for Limits {
    /// 4 GiB messages, bodies above 64 KiB by memfd, 64 fds.
    fn default() -> Self {
        Self {
            max_message: 4 << 30,
            inline_max: 64 << 10,
            max_fds: 64,
        }
    }
}

fn io_err(context: &'static str) -> impl FnOnce(io::Error) -> Error {
    move |e| Error::io(context, e)
}

/// Sends `msg` as one frame on the socket `sock`.
///
/// Blocks until the frame is handed to the kernel; a closed peer is an error (never
/// SIGPIPE). Bodies above [`Limits::inline_max`] are written to a memfd first, so that
/// sending them never waits for the reader.
///
/// # Errors
///
/// [`ErrorKind::TooLarge`] for a body above `max_message` or more than `max_fds` fds (nothing
/// is sent); [`ErrorKind::Io`] when the socket fails, e.g. the peer is gone.
///
/// ```
/// use std::os::fd::AsFd;
/// let (a, b) = mproc_sys::socketpair()?;
/// let limits = mproc_wire::Limits::default();
/// mproc_wire::write_message(a.as_fd(), mproc_wire::encode(&1u8)?, &limits)?;
/// # Ok::<(), mproc_wire::Error>(())
/// ```
pub fn write_message(sock: BorrowedFd<'_>, msg: Message, limits: &Limits) -> Result<(), Error> {
    let Message { bytes, fds } = msg;
    let borrowed: Vec<BorrowedFd<'_>> = fds.iter().map(|f| f.as_fd()).collect();
    write_frame(sock, &bytes, &borrowed, limits)
}

/// Sends `bytes` and `fds` as one frame, like [`write_message`], without taking ownership:
/// nothing is copied before the kernel copies it.
///
/// # Errors
///
/// As [`write_message`].
///
/// ```
/// use std::os::fd::AsFd;
/// let (a, b) = mproc_sys::socketpair()?;
/// let limits = mproc_wire::Limits::default();
/// mproc_wire::write_frame(a.as_fd(), b"raw bytes", &[], &limits)?;
/// let msg = mproc_wire::FrameReader::new().read(b.as_fd(), &limits, None)?;
/// assert_eq!(msg.bytes(), b"raw bytes");
/// # Ok::<(), mproc_wire::Error>(())
/// ```
pub fn write_frame(
    sock: BorrowedFd<'_>,
    bytes: &[u8],
    fds: &[BorrowedFd<'_>],
    limits: &Limits,
) -> Result<(), Error> {
    send_frame(sock, bytes, fds, limits, None).map_err(|f| f.error)
}

/// A send that did not complete.
struct SendFailure {
    error: Error,
    /// Whether part of the frame went out (the stream is then mid-frame).
    partial: bool,
    /// For a deadline that passed mid-frame: the bytes of the frame still to send.
    rest: Vec<u8>,
}

/// Checks the limits, then sends one frame: header and body in one `sendmsg` (no copy to
/// join them), the fds with its first byte, a short send continued where it stopped. With a
/// deadline the sends do not block and the waits end at it; a frame that went out in part
/// by then is returned as `rest` (copied once). Without one, only the peer going away ends
/// the send.
fn send_frame(
    sock: BorrowedFd<'_>,
    bytes: &[u8],
    fds: &[BorrowedFd<'_>],
    limits: &Limits,
    deadline: Option<Instant>,
) -> Result<(), SendFailure> {
    let fail = |error| SendFailure {
        error,
        partial: false,
        rest: Vec::new(),
    };
    if bytes.len() as u64 > limits.max_message {
        return Err(fail(Error::new(
            ErrorKind::TooLarge,
            format!(
                "message of {} bytes exceeds the limit of {} bytes",
                bytes.len(),
                limits.max_message
            ),
        )));
    }
    if fds.len() as u64 > limits.max_fds as u64 {
        return Err(fail(Error::new(
            ErrorKind::TooLarge,
            format!(
                "message carries {} fds; the limit is {}",
                fds.len(),
                limits.max_fds
            ),
        )));
    }
    let mut flags = 0;
    let inline = bytes.len() <= limits.inline_max;
    let mut all_fds: Vec<BorrowedFd<'_>> = fds.to_vec();
    let body_file = if inline {
        None
    } else {
        let mut file = File::from(
            mproc_sys::memfd_create("mproc-frame")
                .map_err(|e| fail(Error::io("memfd_create", e)))?,
        );
        file.write_all(bytes)
            .map_err(|e| fail(Error::io("writing a large frame body", e)))?;
        flags |= FLAG_BODY_IN_FD;
        Some(file)
    };
    if let Some(file) = &body_file {
        all_fds.push(file.as_fd());
    }
    let mut header = [0u8; HEADER_LEN];
    header[0..2].copy_from_slice(&MAGIC);
    header[2] = VERSION;
    header[3] = flags;
    header[4..8].copy_from_slice(&(fds.len() as u32).to_le_bytes());
    header[8..16].copy_from_slice(&(bytes.len() as u64).to_le_bytes());
    let body: &[u8] = if inline { bytes } else { &[] };
    let parts = [&header[..], body];
    send_parts(sock, &parts, &all_fds, deadline).map_err(|(error, sent)| {
        let rest = if sent > 0 && error.kind() == ErrorKind::Timeout {
            let mut rest = Vec::with_capacity(HEADER_LEN + body.len() - sent);
            rest.extend_from_slice(&header[sent.min(HEADER_LEN)..]);
            rest.extend_from_slice(&body[sent.saturating_sub(HEADER_LEN)..]);
            rest
        } else {
            Vec::new()
        };
        SendFailure {
            error,
            partial: sent > 0,
            rest,
        }
    })
}

/// Sends `parts` (at most two) in order, fds with the first byte. On failure, returns the
/// error and how many bytes went out. See [`send_frame`].
fn send_parts(
    sock: BorrowedFd<'_>,
    parts: &[&[u8]],
    fds: &[BorrowedFd<'_>],
    deadline: Option<Instant>,
) -> Result<(), (Error, usize)> {
    let total: usize = parts.iter().map(|p| p.len()).sum();
    let mut sent = 0;
    while sent < total {
        // The slices still to send, the first one cut where the last send stopped; on the
        // stack, this being every message's path.
        let mut iov = [IoSlice::new(&[]); 2];
        let mut count = 0;
        let mut skip = sent;
        for p in parts {
            if skip >= p.len() {
                skip -= p.len();
            } else if count < iov.len() {
                iov[count] = IoSlice::new(&p[skip..]);
                skip = 0;
                count += 1;
            }
        }
        let with = if sent == 0 { fds } else { &[] };
        match mproc_sys::send_vectored_with_fds(sock, &iov[..count], with, deadline.is_some()) {
            Ok(n) => sent += n,
            // No room (a deadline, or a socket someone made non-blocking): wait for some.
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                match mproc_sys::wait_writable(sock, deadline) {
                    Ok(true) => {}
                    Ok(false) => {
                        return Err((
                            Error::new(ErrorKind::Timeout, "timed out waiting to send"),
                            sent,
                        ));
                    }
                    Err(e) => return Err((Error::io("waiting to send", e), sent)),
                }
            }
            Err(e) => return Err((Error::io("sending a frame", e), sent)),
        }
    }
    Ok(())
}

/// Sends frames with deadlines, keeping a frame's unsent rest when a deadline passes
/// after part of it went out, so that the stream never loses its place.
///
/// [`write`](Self::write) returns [`ErrorKind::Timeout`] only when no byte of the message
/// went out (sending it again is correct); once part of it has gone, the message is
/// committed, and its rest goes out before the next message or on
/// [`flush`](Self::flush).
///
/// ```
/// use std::os::fd::AsFd;
/// use std::time::{Duration, Instant};
/// let (a, b) = mproc_sys::socketpair()?;
/// let limits = mproc_wire::Limits::default();
/// let mut writer = mproc_wire::FrameWriter::new();
/// writer.write(a.as_fd(), b"hello", &[], &limits, Some(Instant::now() + Duration::from_secs(1)))?;
/// assert!(!writer.has_pending());
/// let msg = mproc_wire::FrameReader::new().read(b.as_fd(), &limits, None)?;
/// assert_eq!(msg.bytes(), b"hello");
/// # Ok::<(), mproc_wire::Error>(())
/// ```
#[derive(Debug, Default)]
pub struct FrameWriter {
    /// The committed rest of a frame: `pending[at..]` is still to go.
    pending: Vec<u8>,
    at: usize,
    /// A send failed in the middle of a frame: the stream has lost its place.
    broken: bool,
}

impl FrameWriter {
    /// Makes a writer with nothing pending.
    pub fn new() -> Self {
        Self::default()
    }

    /// Returns whether part of a committed frame is still to be sent.
    pub fn has_pending(&self) -> bool {
        self.at < self.pending.len()
    }

    fn check(&self) -> Result<(), Error> {
        if self.broken {
            return Err(Error::new(
                ErrorKind::Io,
                "an earlier send failed in the middle of a message; the connection cannot be used to send",
            ));
        }
        Ok(())
    }

    /// Sends what is pending, waiting at most until `deadline`.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Timeout`] when some is still pending then (call again), another kind
    /// when the socket fails (the peer is gone, say; the writer is then broken).
    pub fn flush(&mut self, sock: BorrowedFd<'_>, deadline: Option<Instant>) -> Result<(), Error> {
        self.check()?;
        if !self.has_pending() {
            return Ok(());
        }
        match send_parts(sock, &[&self.pending[self.at..]], &[], deadline) {
            Ok(()) => {
                self.pending = Vec::new();
                self.at = 0;
                Ok(())
            }
            Err((error, sent)) => {
                self.at += sent;
                if error.kind() != ErrorKind::Timeout {
                    self.broken = true;
                }
                Err(error)
            }
        }
    }

    /// Sends one frame, after what is pending, waiting at most until `deadline`.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Timeout`] when the deadline passed before any of this message went out
    /// (it was not sent); otherwise as [`write_frame`]. A failure in the middle of a frame
    /// breaks the writer: every later write reports it, rather than corrupt the stream.
    pub fn write(
        &mut self,
        sock: BorrowedFd<'_>,
        bytes: &[u8],
        fds: &[BorrowedFd<'_>],
        limits: &Limits,
        deadline: Option<Instant>,
    ) -> Result<(), Error> {
        self.flush(sock, deadline)?;
        match send_frame(sock, bytes, fds, limits, deadline) {
            Ok(()) => Ok(()),
            Err(f) if f.partial && f.error.kind() == ErrorKind::Timeout => {
                // Part of it went out: it is committed; the rest follows later.
                self.pending = f.rest;
                self.at = 0;
                Ok(())
            }
            Err(f) => {
                self.broken |= f.partial;
                Err(f.error)
            }
        }
    }
}

#[derive(Debug, Default)]
enum State {
    /// Between frames: the next bytes are a header.
    #[default]
    Header,
    /// Reading an inline body of this many bytes (collected in `body`).
    Body(usize),
    /// Throwing away the body of an oversized inline frame, this many bytes still to go.
    Discard(u64),
    /// The stream held garbage; nothing after it can be trusted.
    Poisoned,
}

/// The read buffer: one receive usually brings a whole small frame (header and body). One
/// page: a reader is made per connection and per child, often right after a fork, where
/// every page touched is a page copied.
const RBUF: usize = 4 << 10;
/// Bodies with at least this much still to come are received straight into their own
/// buffer rather than through the read buffer.
const DIRECT: usize = 2 << 10;

/// Reads frames from a socket, one message at a time, and survives timeouts.
///
/// A read that times out keeps what it has read so far; the next call resumes there, so a
/// deadline never desynchronises the stream. An inline frame larger than the limits is
/// reported as [`ErrorKind::TooLarge`] as soon as its header arrives; the next read skips
/// its body without allocating and goes on with the frames after it. Garbage (a bad header)
/// poisons the reader: every later read reports [`ErrorKind::Corrupt`].
///
/// Small frames are read whole with one receive into a buffer, which may also take the
/// start of the next frame; [`has_buffered_message`](Self::has_buffered_message) tells a
/// poller that a message is ready although the socket is not readable. Fds travel with the
/// first byte of their frame (the kernel ends a receive right after them), so they are
/// queued in arrival order and claimed by the header that announces them.
///
/// ```
/// use std::os::fd::AsFd;
/// use std::time::Instant;
/// let (a, b) = mproc_sys::socketpair()?;
/// let limits = mproc_wire::Limits::default();
/// let mut reader = mproc_wire::FrameReader::new();
/// let err = reader.read(b.as_fd(), &limits, Some(Instant::now())).unwrap_err();
/// assert_eq!(err.kind(), mproc_wire::ErrorKind::Timeout);
/// drop(a);
/// let err = reader.read(b.as_fd(), &limits, None).unwrap_err();
/// assert_eq!(err.kind(), mproc_wire::ErrorKind::Disconnected);
/// # Ok::<(), std::io::Error>(())
/// ```
#[derive(Debug, Default)]
pub struct FrameReader {
    state: State,
    /// Received bytes not yet consumed are `rbuf[rpos..rlen]`.
    rbuf: Vec<u8>,
    rpos: usize,
    rlen: usize,
    /// The stream offset of the next byte to come from the socket.
    received: u64,
    /// Fds received and not yet claimed, with the stream range of the receive that
    /// brought them.
    fds: std::collections::VecDeque<FdBatch>,
    /// The fds of the frame being read.
    frame_fds: Vec<OwnedFd>,
    body: Vec<u8>,
}

/// Fds that came with the bytes `start..end` of the stream. They belong to the last frame
/// whose header starts in that range: the kernel hands a frame's fds over with its first
/// byte and ends the receive right after the segment that carried them.
#[derive(Debug)]
struct FdBatch {
    start: u64,
    end: u64,
    fds: Vec<OwnedFd>,
}

/// A body grows with the bytes that really arrived, never by what a header announces: a
/// peer must send about as much as it makes us allocate.
const GROW_MIN: usize = 1 << 20;

impl FrameReader {
    /// Makes a reader at a frame boundary.
    pub fn new() -> Self {
        Self::default()
    }

    /// Returns whether part of a frame has been received (a later read will finish it), or
    /// bytes of a later frame are buffered.
    pub fn in_frame(&self) -> bool {
        !matches!(self.state, State::Header) || self.rlen > self.rpos
    }

    /// Returns whether a read would return at once without waiting for the socket (which
    /// may not be readable): a whole message, or an error, is already buffered.
    pub fn has_buffered_message(&self) -> bool {
        let buffered = self.rlen - self.rpos;
        match self.state {
            State::Poisoned => true,
            State::Header => self.frame_buffered_at(self.rpos),
            State::Body(len) => self.body.len() + buffered >= len,
            State::Discard(left) => {
                left <= buffered as u64 && self.frame_buffered_at(self.rpos + left as usize)
            }
        }
    }

    /// Whether the buffered frame starting at `at` can be read (or refused) at once.
    fn frame_buffered_at(&self, at: usize) -> bool {
        if at + HEADER_LEN > self.rlen {
            return false;
        }
        let h = &self.rbuf[at..at + HEADER_LEN];
        if h[0..2] != MAGIC || h[2] != VERSION {
            return true; // garbage: the read reports it at once
        }
        let len = u64::from_le_bytes(h[8..16].try_into().expect("8 bytes"));
        h[3] & FLAG_BODY_IN_FD != 0
            || (HEADER_LEN as u64).saturating_add(len) <= (self.rlen - at) as u64
    }

    /// Reads the next message, waiting at most until `deadline` (`None`: no deadline).
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Disconnected`] when the peer closed at a frame boundary,
    /// [`ErrorKind::Truncated`] when it closed mid-frame, [`ErrorKind::Timeout`] when the
    /// deadline passed (call again to resume), [`ErrorKind::TooLarge`] for a frame over the
    /// limits (skipped), [`ErrorKind::Corrupt`] for garbage, [`ErrorKind::Io`] otherwise.
    pub fn read(
        &mut self,
        sock: BorrowedFd<'_>,
        limits: &Limits,
        deadline: Option<Instant>,
    ) -> Result<Message, Error> {
        loop {
            match self.state {
                State::Poisoned => {
                    return Err(Error::new(
                        ErrorKind::Corrupt,
                        "the stream held garbage earlier; it cannot be read further",
                    ));
                }
                State::Header => {
                    self.fill_to(sock, limits, HEADER_LEN, deadline)?;
                    if let Some(msg) = self.parse_header(limits)? {
                        return Ok(msg);
                    }
                }
                State::Body(len) => {
                    self.take_buffered_body(len);
                    while self.body.len() < len {
                        let rest = len - self.body.len();
                        if rest >= DIRECT {
                            // Straight from the socket into the body, never past its end.
                            let want = rest.min(self.body.len().max(GROW_MIN));
                            let body = &mut self.body;
                            let got = recv_with(sock, deadline, |nb| {
                                mproc_sys::recv_append(sock, body, want, nb)
                                    .map(|n| (n, Vec::new()))
                            });
                            match got {
                                Ok((n, _)) => self.received += n as u64,
                                Err(e) => return Err(self.fail(e)),
                            }
                        } else {
                            self.fill_to(sock, limits, 1, deadline)?;
                            self.take_buffered_body(len);
                        }
                    }
                    self.state = State::Header;
                    let fds = std::mem::take(&mut self.frame_fds);
                    return Ok(Message::from_parts(std::mem::take(&mut self.body), fds));
                }
                State::Discard(left) => {
                    let buffered =
                        (self.rlen - self.rpos).min(usize::try_from(left).unwrap_or(usize::MAX));
                    self.rpos += buffered;
                    let mut left = left - buffered as u64;
                    while left > 0 {
                        let mut scratch = Vec::new();
                        let want = left.min(RBUF as u64) as usize;
                        let got = recv_with(sock, deadline, |nb| {
                            mproc_sys::recv_append(sock, &mut scratch, want, nb)
                                .map(|n| (n, Vec::new()))
                        });
                        match got {
                            Ok((n, _)) => {
                                left -= n as u64;
                                self.received += n as u64;
                            }
                            Err(e) => {
                                self.state = State::Discard(left);
                                return Err(self.fail(e));
                            }
                        }
                    }
                    // The oversized frame is gone; go on with the next one.
                    self.state = State::Header;
                }
            }
        }
    }

    /// Moves buffered bytes of the current body into `body`.
    fn take_buffered_body(&mut self, len: usize) {
        let n = (len - self.body.len()).min(self.rlen - self.rpos);
        self.body
            .extend_from_slice(&self.rbuf[self.rpos..self.rpos + n]);
        self.rpos += n;
    }

    /// Receives until at least `n` bytes are buffered (`n` ≤ the buffer's size).
    fn fill_to(
        &mut self,
        sock: BorrowedFd<'_>,
        limits: &Limits,
        n: usize,
        deadline: Option<Instant>,
    ) -> Result<(), Error> {
        if self.rbuf.is_empty() {
            self.rbuf = vec![0u8; RBUF];
        }
        while self.rlen - self.rpos < n {
            if self.rpos > 0 {
                // Move what is left to the front, to make room.
                self.rbuf.copy_within(self.rpos..self.rlen, 0);
                self.rlen -= self.rpos;
                self.rpos = 0;
            }
            let (rbuf, rlen) = (&mut self.rbuf, self.rlen);
            // At most one frame's fds (and its body's memfd) come in one receive.
            let max_fds = limits.max_fds as usize + 1;
            let got = recv_with(sock, deadline, |nb| {
                let mut fds = Vec::new();
                mproc_sys::recv_with_at_most_fds(sock, &mut rbuf[rlen..], &mut fds, max_fds, nb)
                    .map(|n| (n, fds))
            });
            match got {
                Ok((k, fds)) => {
                    let start = self.received;
                    self.received += k as u64;
                    self.rlen += k;
                    self.note_fds(start, k, fds)?;
                }
                Err(e) => return Err(self.fail(e)),
            }
        }
        Ok(())
    }

    /// Queues fds that came with the `k` bytes at stream offset `start`.
    fn note_fds(&mut self, start: u64, k: usize, fds: Vec<OwnedFd>) -> Result<(), Error> {
        if fds.is_empty() {
            return Ok(());
        }
        // Claimed fds leave the queue as their header is read; more than two unclaimed
        // batches cannot come from an honest peer (the frame being started and the next).
        if self.fds.len() >= 2 {
            self.poison();
            return Err(Error::new(
                ErrorKind::Corrupt,
                "the peer sent fds that no frame claims",
            ));
        }
        self.fds.push_back(FdBatch {
            start,
            end: start + k as u64,
            fds,
        });
        Ok(())
    }

    /// Turns a receive error into the reader's error, resetting or poisoning as it calls for.
    fn fail(&mut self, e: Error) -> Error {
        match e.kind() {
            ErrorKind::Disconnected | ErrorKind::Truncated => {
                let mid = self.in_frame() || !self.fds.is_empty();
                *self = Self {
                    rbuf: std::mem::take(&mut self.rbuf),
                    ..Self::default()
                };
                if mid {
                    Error::new(
                        ErrorKind::Truncated,
                        "the peer closed the connection in the middle of a message",
                    )
                } else {
                    e
                }
            }
            ErrorKind::Corrupt => {
                self.poison();
                e
            }
            _ => e,
        }
    }

    fn poison(&mut self) {
        self.fds.clear();
        self.frame_fds.clear();
        self.state = State::Poisoned;
    }

    /// Reads the next message's bytes into `buf`, waiting at most until `deadline`,
    /// straight from the socket when the body travels on the stream. Returns `Ok(Ok(len))` when it fit, and
    /// `Ok(Err(message))` with the whole message when `buf` was too short (nothing is lost).
    /// Fds that came with the message are closed.
    ///
    /// # Errors
    ///
    /// As [`read`](Self::read); after a timeout, what arrived is kept for the next read.
    ///
    /// ```
    /// use std::os::fd::AsFd;
    /// let (a, b) = mproc_sys::socketpair()?;
    /// let limits = mproc_wire::Limits::default();
    /// mproc_wire::write_frame(a.as_fd(), b"12345", &[], &limits)?;
    /// mproc_wire::write_frame(a.as_fd(), b"123456789", &[], &limits)?;
    /// let mut reader = mproc_wire::FrameReader::new();
    /// let mut buf = [0u8; 8];
    /// assert_eq!(reader.read_into(b.as_fd(), &limits, &mut buf, None)?.unwrap(), 5);
    /// let too_long = reader.read_into(b.as_fd(), &limits, &mut buf, None)?.unwrap_err();
    /// assert_eq!(too_long.bytes(), b"123456789");
    /// # Ok::<(), mproc_wire::Error>(())
    /// ```
    pub fn read_into(
        &mut self,
        sock: BorrowedFd<'_>,
        limits: &Limits,
        buf: &mut [u8],
        deadline: Option<Instant>,
    ) -> Result<Result<usize, Message>, Error> {
        if matches!(self.state, State::Header) {
            self.fill_to(sock, limits, HEADER_LEN, deadline)?;
            if let Some(msg) = self.parse_header(limits)? {
                return Ok(fit(msg, buf));
            }
            if let State::Body(len) = self.state
                && len <= buf.len()
            {
                let n = (self.rlen - self.rpos).min(len);
                buf[..n].copy_from_slice(&self.rbuf[self.rpos..self.rpos + n]);
                self.rpos += n;
                let mut got = n;
                while got < len {
                    let dst = &mut buf[got..len];
                    match recv_with(sock, deadline, |nb| {
                        mproc_sys::recv_append_slice(sock, dst, nb).map(|n| (n, Vec::new()))
                    }) {
                        Ok((k, _)) => {
                            got += k;
                            self.received += k as u64;
                        }
                        Err(e) => {
                            // Keep what arrived (a timeout, say), so that a later read goes
                            // on from there.
                            self.body = buf[..got].to_vec();
                            return Err(self.fail(e));
                        }
                    }
                }
                self.state = State::Header;
                self.frame_fds.clear();
                return Ok(Ok(len));
            }
        }
        let msg = self.read(sock, limits, deadline)?;
        Ok(fit(msg, buf))
    }

    /// Interprets the buffered header. Returns a message when the frame is complete already.
    fn parse_header(&mut self, limits: &Limits) -> Result<Option<Message>, Error> {
        let at = self.received - (self.rlen - self.rpos) as u64;
        let h: [u8; HEADER_LEN] = self.rbuf[self.rpos..self.rpos + HEADER_LEN]
            .try_into()
            .expect("16 bytes");
        self.rpos += HEADER_LEN;
        if h[0..2] != MAGIC || h[2] != VERSION || h[3] & !FLAG_BODY_IN_FD != 0 {
            self.poison();
            return Err(Error::new(
                ErrorKind::Corrupt,
                "received bytes that are not an mproc frame",
            ));
        }
        let in_fd = h[3] & FLAG_BODY_IN_FD != 0;
        let nfds = u32::from_le_bytes(h[4..8].try_into().expect("4 bytes"));
        let len = u64::from_le_bytes(h[8..16].try_into().expect("8 bytes"));
        let wanted = nfds as usize + usize::from(in_fd);
        match self.claim_fds(at, len, in_fd) {
            Some(fds) if fds.len() == wanted && nfds <= limits.max_fds => self.frame_fds = fds,
            claimed => {
                let got = claimed.map_or(0, |f| f.len());
                self.poison();
                return Err(Error::new(
                    ErrorKind::Corrupt,
                    format!(
                        "frame announces {wanted} fds but carried {got} (limit {})",
                        limits.max_fds
                    ),
                ));
            }
        }
        if len > limits.max_message || (!in_fd && len > limits.inline_max as u64) {
            self.frame_fds.clear();
            // An inline body is skipped by the next read (without allocating), so the stream
            // stays in sync; the error is reported now, not after the whole body went by.
            self.state = if in_fd {
                State::Header
            } else {
                State::Discard(len)
            };
            return Err(Error::new(
                ErrorKind::TooLarge,
                format!(
                    "frame of {len} bytes exceeds the receive limit of {} bytes",
                    limits.max_message
                ),
            ));
        }
        if in_fd {
            let body_fd = self.frame_fds.pop().expect("counted above");
            let fds = std::mem::take(&mut self.frame_fds);
            let bytes = read_body_fd(body_fd, len)?;
            return Ok(Some(Message::from_parts(bytes, fds)));
        }
        self.body = Vec::new();
        self.state = State::Body(len as usize);
        Ok(None)
    }

    /// Takes the fds of the frame whose header starts at stream offset `at`: those of the
    /// batch whose receive brought that first byte, unless a later header starts in the
    /// same receive (then the batch is that frame's). Returns `None` when fds were sent that
    /// no frame claims.
    fn claim_fds(&mut self, at: u64, len: u64, in_fd: bool) -> Option<Vec<OwnedFd>> {
        if self.fds.front().is_some_and(|b| b.end <= at) {
            return None; // fds that came before this frame and were not claimed
        }
        let next = (at + HEADER_LEN as u64).saturating_add(if in_fd { 0 } else { len });
        match self.fds.front() {
            Some(b) if b.start <= at && next >= b.end => self.fds.pop_front().map(|b| b.fds),
            _ => Some(Vec::new()),
        }
    }
}

/// Runs one receive `op(nonblocking)`, which returns the bytes it got and any fds, until
/// it yields bytes. With a deadline, the receive does not block and the wait is a `poll`
/// that ends at the deadline; without one, the receive blocks in the kernel (and a socket
/// someone made non-blocking is polled). Never returns 0 bytes: the peer closing is
/// [`ErrorKind::Disconnected`], and the reader decides whether that was mid-frame.
fn recv_with(
    sock: BorrowedFd<'_>,
    deadline: Option<Instant>,
    mut op: impl FnMut(bool) -> io::Result<(usize, Vec<OwnedFd>)>,
) -> Result<(usize, Vec<OwnedFd>), Error> {
    loop {
        match op(deadline.is_some()) {
            Ok((0, _)) => {
                return Err(Error::new(
                    ErrorKind::Disconnected,
                    "the peer closed the connection",
                ));
            }
            Ok(got) => return Ok(got),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                if !mproc_sys::wait_readable(sock, deadline)
                    .map_err(io_err("waiting for a frame"))?
                {
                    return Err(Error::new(
                        ErrorKind::Timeout,
                        "timed out waiting for a message",
                    ));
                }
            }
            Err(e) if e.kind() == io::ErrorKind::InvalidData => {
                return Err(Error::new(
                    ErrorKind::Corrupt,
                    "a message carried more fds than allowed",
                )
                .with_source(e));
            }
            Err(e) => return Err(Error::io("receiving a frame", e)),
        }
    }
}

/// Copies a message into `buf` when it fits.
fn fit(msg: Message, buf: &mut [u8]) -> Result<usize, Message> {
    let n = msg.bytes().len();
    match buf.get_mut(..n) {
        Some(dst) => {
            dst.copy_from_slice(msg.bytes());
            Ok(n)
        }
        None => Err(msg),
    }
}

/// Reads a body of `len` bytes from the memfd that carried it, after checking that it is a
/// regular in-memory file whose pages really hold that many bytes: a lying sender cannot make
/// us allocate more than it stored (a sparse file of holes is refused), nor block our read
/// on some other kind of file.
fn read_body_fd(fd: OwnedFd, len: u64) -> Result<Vec<u8>, Error> {
    use std::os::unix::fs::MetadataExt;
    if !mproc_sys::is_memfd(fd.as_fd()) {
        return Err(Error::new(
            ErrorKind::Corrupt,
            "a frame body came in a file that is not a memfd",
        ));
    }
    let file = File::from(fd);
    let meta = file.metadata().map_err(io_err("inspecting a frame body"))?;
    let stored = meta.blocks().saturating_mul(512);
    if !meta.file_type().is_file() || meta.len() < len || stored < len {
        return Err(Error::new(
            ErrorKind::Corrupt,
            format!(
                "frame body file holds {} bytes ({stored} stored) but the frame announces {len}",
                meta.len()
            ),
        ));
    }
    let mut bytes = vec![0u8; len as usize];
    file.read_exact_at(&mut bytes, 0)
        .map_err(io_err("reading a frame body"))?;
    Ok(bytes)
}
