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
    if bytes.len() as u64 > limits.max_message {
        return Err(Error::new(
            ErrorKind::TooLarge,
            format!(
                "message of {} bytes exceeds the limit of {} bytes",
                bytes.len(),
                limits.max_message
            ),
        ));
    }
    if fds.len() as u64 > limits.max_fds as u64 {
        return Err(Error::new(
            ErrorKind::TooLarge,
            format!(
                "message carries {} fds; the limit is {}",
                fds.len(),
                limits.max_fds
            ),
        ));
    }
    let mut flags = 0;
    let nfds = fds.len() as u32;
    let inline = bytes.len() <= limits.inline_max;
    let mut all_fds: Vec<BorrowedFd<'_>> = fds.to_vec();
    let body_file = if inline {
        None
    } else {
        let mut file =
            File::from(mproc_sys::memfd_create("mproc-frame").map_err(io_err("memfd_create"))?);
        file.write_all(bytes)
            .map_err(io_err("writing a large frame body"))?;
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
    header[4..8].copy_from_slice(&nfds.to_le_bytes());
    header[8..16].copy_from_slice(&(bytes.len() as u64).to_le_bytes());
    let body: &[u8] = if inline { bytes } else { &[] };
    let total = HEADER_LEN + body.len();
    // Header and body go out in one sendmsg, without copying them together; the fds ride
    // with the first byte. A short send continues where it stopped.
    let mut sent = 0;
    while sent < total {
        let iov = if sent < HEADER_LEN {
            [IoSlice::new(&header[sent..]), IoSlice::new(body)]
        } else {
            [IoSlice::new(&body[sent - HEADER_LEN..]), IoSlice::new(&[])]
        };
        let with = if sent == 0 { &all_fds[..] } else { &[] };
        sent += mproc_sys::send_vectored_with_fds(sock, &iov, with)
            .map_err(io_err("sending a frame"))?;
    }
    Ok(())
}

#[derive(Debug, Default)]
enum State {
    /// Reading the header.
    #[default]
    Header,
    /// Reading an inline body of the given length.
    Body,
    /// Throwing away the body of an oversized inline frame, this many bytes still to go.
    Discard(u64),
    /// The stream held garbage; nothing after it can be trusted.
    Poisoned,
}

/// Reads frames from a socket, one message at a time, and survives timeouts.
///
/// A read that times out keeps what it has read so far; the next call resumes there, so a
/// deadline never desynchronises the stream. An inline frame larger than the limits is
/// reported as [`ErrorKind::TooLarge`] as soon as its header arrives; the next read skips its
/// body without allocating and goes on with the frames after it. Garbage (a bad header) poisons the reader: every later read reports
/// [`ErrorKind::Corrupt`].
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
    header: [u8; HEADER_LEN],
    header_got: usize,
    fds: Vec<OwnedFd>,
    body: Vec<u8>,
    /// How much of `body` (sized to the frame) has arrived.
    body_got: usize,
    /// The length of the inline body being read.
    pending_len: usize,
}

impl FrameReader {
    /// Makes a reader at a frame boundary.
    pub fn new() -> Self {
        Self::default()
    }

    /// Returns whether a frame has been partly read (a later read will finish it).
    pub fn in_frame(&self) -> bool {
        !matches!(self.state, State::Header) || self.header_got > 0
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
                    self.fill_header(sock, deadline)?;
                    if let Some(msg) = self.parse_header(limits)? {
                        return Ok(msg);
                    }
                }
                State::Body => {
                    // Receive straight into the body: no bounce buffer, whose pages would
                    // each be touched (and, in a freshly forked process, copied) per read.
                    let mut body = std::mem::take(&mut self.body);
                    if body.len() != self.pending_len {
                        body = vec![0u8; self.pending_len];
                    }
                    while self.body_got < body.len() {
                        match self.recv(sock, &mut body[self.body_got..], deadline) {
                            Ok(n) => self.body_got += n,
                            Err(e) => {
                                self.body = body;
                                return Err(e);
                            }
                        }
                    }
                    self.state = State::Header;
                    self.body_got = 0;
                    return Ok(Message::from_parts(body, std::mem::take(&mut self.fds)));
                }
                State::Discard(left) => {
                    let mut left = left;
                    while left > 0 {
                        let mut chunk = [0u8; 4096];
                        let want = left.min(chunk.len() as u64) as usize;
                        let n = self.recv(sock, &mut chunk[..want], deadline);
                        match n {
                            Ok(n) => left -= n as u64,
                            Err(e) => {
                                self.state = State::Discard(left);
                                return Err(e);
                            }
                        }
                    }
                    // The oversized frame is gone; go on with the next one.
                    self.state = State::Header;
                }
            }
        }
    }

    /// Reads the rest of the header, waiting until `deadline`.
    fn fill_header(
        &mut self,
        sock: BorrowedFd<'_>,
        deadline: Option<Instant>,
    ) -> Result<(), Error> {
        while self.header_got < HEADER_LEN {
            let mut buf = [0u8; HEADER_LEN];
            let want = HEADER_LEN - self.header_got;
            let n = self.recv(sock, &mut buf[..want], deadline)?;
            self.header[self.header_got..self.header_got + n].copy_from_slice(&buf[..n]);
            self.header_got += n;
        }
        Ok(())
    }

    /// Reads the next message's bytes into `buf`, blocking, without an intermediate buffer
    /// when the body travels on the stream. Returns `Ok(Ok(len))` when it fit, and
    /// `Ok(Err(message))` with the whole message when `buf` was too short (nothing is lost).
    /// Fds that came with the message are closed.
    ///
    /// # Errors
    ///
    /// As [`read`](Self::read).
    ///
    /// ```
    /// use std::os::fd::AsFd;
    /// let (a, b) = mproc_sys::socketpair()?;
    /// let limits = mproc_wire::Limits::default();
    /// mproc_wire::write_frame(a.as_fd(), b"12345", &[], &limits)?;
    /// mproc_wire::write_frame(a.as_fd(), b"123456789", &[], &limits)?;
    /// let mut reader = mproc_wire::FrameReader::new();
    /// let mut buf = [0u8; 8];
    /// assert_eq!(reader.read_into(b.as_fd(), &limits, &mut buf)?.unwrap(), 5);
    /// let too_long = reader.read_into(b.as_fd(), &limits, &mut buf)?.unwrap_err();
    /// assert_eq!(too_long.bytes(), b"123456789");
    /// # Ok::<(), mproc_wire::Error>(())
    /// ```
    pub fn read_into(
        &mut self,
        sock: BorrowedFd<'_>,
        limits: &Limits,
        buf: &mut [u8],
    ) -> Result<Result<usize, Message>, Error> {
        if !self.in_frame() {
            self.fill_header(sock, None)?;
            if let Some(msg) = self.parse_header(limits)? {
                return Ok(fit(msg, buf));
            }
            if matches!(self.state, State::Body) && self.pending_len <= buf.len() {
                let dst = &mut buf[..self.pending_len];
                let mut got = 0;
                while got < dst.len() {
                    got += self.recv(sock, &mut dst[got..], None)?;
                }
                self.state = State::Header;
                self.fds.clear();
                return Ok(Ok(got));
            }
        }
        let msg = self.read(sock, limits, None)?;
        Ok(fit(msg, buf))
    }

    /// Interprets a complete header. Returns a message when the frame is complete already.
    fn parse_header(&mut self, limits: &Limits) -> Result<Option<Message>, Error> {
        let h = self.header;
        self.header_got = 0;
        if h[0..2] != MAGIC || h[2] != VERSION || h[3] & !FLAG_BODY_IN_FD != 0 {
            self.fds.clear();
            self.state = State::Poisoned;
            return Err(Error::new(
                ErrorKind::Corrupt,
                "received bytes that are not an mproc frame",
            ));
        }
        let in_fd = h[3] & FLAG_BODY_IN_FD != 0;
        let nfds = u32::from_le_bytes([h[4], h[5], h[6], h[7]]);
        let len = u64::from_le_bytes([h[8], h[9], h[10], h[11], h[12], h[13], h[14], h[15]]);
        let expected_fds = nfds as usize + usize::from(in_fd);
        if nfds > limits.max_fds || self.fds.len() != expected_fds {
            let got = self.fds.len();
            self.fds.clear();
            self.state = State::Poisoned;
            return Err(Error::new(
                ErrorKind::Corrupt,
                format!(
                    "frame announces {expected_fds} fds but carried {got} (limit {})",
                    limits.max_fds
                ),
            ));
        }
        if len > limits.max_message || (!in_fd && len > limits.inline_max as u64) {
            self.fds.clear();
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
            let body_fd = self.fds.pop().expect("counted above");
            let fds = std::mem::take(&mut self.fds);
            self.state = State::Header;
            let bytes = read_body_fd(body_fd, len)?;
            return Ok(Some(Message::from_parts(bytes, fds)));
        }
        self.body_got = 0;
        self.body = Vec::new(); // allocated when the body is read (read_into may not need it)
        self.pending_len = len as usize;
        self.state = State::Body;
        Ok(None)
    }

    /// Receives up to `buf.len()` bytes, waiting until `deadline`. Never returns 0.
    fn recv(
        &mut self,
        sock: BorrowedFd<'_>,
        buf: &mut [u8],
        deadline: Option<Instant>,
    ) -> Result<usize, Error> {
        loop {
            let before = self.fds.len();
            match mproc_sys::recv_with_fds(sock, buf, &mut self.fds, true) {
                Ok(0) => {
                    let mid = self.in_frame() || !self.fds.is_empty();
                    self.fds.clear();
                    self.reset();
                    return Err(if mid {
                        Error::new(
                            ErrorKind::Truncated,
                            "the peer closed the connection in the middle of a message",
                        )
                    } else {
                        Error::new(ErrorKind::Disconnected, "the peer closed the connection")
                    });
                }
                Ok(n) => {
                    let fds_only_with_header =
                        matches!(self.state, State::Header) && self.header_got == 0;
                    if self.fds.len() != before && !fds_only_with_header {
                        self.fds.clear();
                        self.state = State::Poisoned;
                        return Err(Error::new(
                            ErrorKind::Corrupt,
                            "fds arrived in the middle of a frame",
                        ));
                    }
                    return Ok(n);
                }
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
                    self.fds.clear();
                    self.state = State::Poisoned;
                    return Err(Error::io("receiving a frame", e));
                }
                Err(e) => return Err(Error::io("receiving a frame", e)),
            }
        }
    }

    fn reset(&mut self) {
        self.state = State::Header;
        self.header_got = 0;
        self.body = Vec::new();
        self.body_got = 0;
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
