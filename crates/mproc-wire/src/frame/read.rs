//! The receiving side of frames: a reader that resumes after a timeout without losing its place.

use std::fs::File;
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::fs::FileExt;
use std::time::Instant;

use super::{HEADER_LEN, Header, Limits};
use crate::codec::Message;
use crate::error::{Error, ErrorKind};

/// Where a reader is in the stream.
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
/// its body without allocating and goes on with the frames after it. Garbage (a bad header,
/// or a body fd that is not what its header says) poisons the reader: every later read
/// reports [`ErrorKind::Corrupt`].
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
    /// Why the fds of this receive could not be installed (this process had no fd free):
    /// the frame they belong to is dropped, and the stream goes on.
    lost: Option<io::Error>,
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

    /// Returns whether the reader holds received fds not handed out yet (a process that
    /// must not keep them, a freshly forked child say, drops the reader rather than
    /// forgetting it).
    ///
    /// ```
    /// assert!(!mproc_wire::FrameReader::new().holds_fds());
    /// ```
    pub fn holds_fds(&self) -> bool {
        !self.fds.is_empty() || !self.frame_fds.is_empty()
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
        let h: &[u8; HEADER_LEN] = self.rbuf[at..at + HEADER_LEN].try_into().expect("16 bytes");
        let Some(header) = Header::parse(h) else {
            return true; // garbage: the read reports it at once
        };
        header.body_in_fd()
            || (HEADER_LEN as u64).saturating_add(header.len) <= (self.rlen - at) as u64
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
            let mut lost = None;
            let got = recv_with(sock, deadline, |nb| {
                let mut fds = Vec::new();
                match mproc_sys::recv_with_at_most_fds(
                    sock,
                    &mut rbuf[rlen..],
                    &mut fds,
                    max_fds,
                    nb,
                ) {
                    Ok(n) => Ok((n, fds)),
                    Err(e) => {
                        let (n, cause) = bytes_without_fds(e)?;
                        lost = Some(cause);
                        Ok((n, Vec::new()))
                    }
                }
            });
            match got {
                Ok((k, fds)) => {
                    let start = self.received;
                    self.received += k as u64;
                    self.rlen += k;
                    self.note_fds(start, k, fds, lost)?;
                }
                Err(e) => return Err(self.fail(e)),
            }
        }
        Ok(())
    }

    /// Queues fds that came with the `k` bytes at stream offset `start` (or, with `lost`,
    /// could not be installed).
    fn note_fds(
        &mut self,
        start: u64,
        k: usize,
        fds: Vec<OwnedFd>,
        lost: Option<io::Error>,
    ) -> Result<(), Error> {
        if fds.is_empty() && lost.is_none() {
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
            lost,
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
        let Some(header) = Header::parse(&h).filter(|h| !h.has_unknown_flags()) else {
            self.poison();
            return Err(Error::new(
                ErrorKind::Corrupt,
                "received bytes that are not an mproc frame",
            ));
        };
        let (in_fd, nfds, len) = (header.body_in_fd(), header.fds, header.len);
        let wanted = nfds as usize + usize::from(in_fd);
        match self.claim_fds(at, len, in_fd) {
            Some(FdBatch {
                lost: Some(cause), ..
            }) => {
                // Its fds are gone: the frame is dropped (an inline body is skipped by the
                // next read, as an oversized one is), and the stream stays in sync.
                self.state = if in_fd {
                    State::Header
                } else {
                    State::Discard(len)
                };
                return Err(Error::io(
                    "a message arrived whose fds could not be received (no fd was free); \
                     it was dropped",
                    cause,
                ));
            }
            Some(FdBatch { fds, .. }) if fds.len() == wanted && nfds <= limits.max_fds => {
                self.frame_fds = fds
            }
            claimed => {
                let got = claimed.map_or(0, |b| b.fds.len());
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
            // A body fd that is not what the header says is a lying peer: poisoned, as
            // for any garbage.
            let bytes = read_body_fd(body_fd, len).map_err(|e| self.fail(e))?;
            return Ok(Some(Message::from_parts(bytes, fds)));
        }
        self.body = Vec::new();
        self.state = State::Body(len as usize);
        Ok(None)
    }

    /// Takes the fds of the frame whose header starts at stream offset `at`: the batch
    /// whose receive brought that first byte, unless a later header starts in the same
    /// receive (then the batch is that frame's); an empty batch when none is this frame's.
    /// Returns `None` when fds were sent that no frame claims.
    fn claim_fds(&mut self, at: u64, len: u64, in_fd: bool) -> Option<FdBatch> {
        if self.fds.front().is_some_and(|b| b.end <= at) {
            return None; // fds that came before this frame and were not claimed
        }
        let next = (at + HEADER_LEN as u64).saturating_add(if in_fd { 0 } else { len });
        match self.fds.front() {
            Some(b) if b.start <= at && next >= b.end => self.fds.pop_front(),
            _ => Some(FdBatch {
                start: at,
                end: at,
                fds: Vec::new(),
                lost: None,
            }),
        }
    }
}

/// Splits the error of a receive whose bytes arrived without their fds (this process had
/// no fd free) into the bytes received and why; any other error is returned as it is.
fn bytes_without_fds(e: io::Error) -> io::Result<(usize, io::Error)> {
    if mproc_sys::fds_not_received(&e).is_none() {
        return Err(e);
    }
    match e
        .into_inner()
        .map(|inner| inner.downcast::<mproc_sys::FdsNotReceived>())
    {
        Some(Ok(lost)) => Ok((lost.bytes, lost.cause)),
        _ => Err(io::Error::other("a receive failed in a way it cannot have")),
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

fn io_err(context: &'static str) -> impl FnOnce(io::Error) -> Error {
    move |e| Error::io(context, e)
}
