//! The sending side of frames: a whole frame per call, its unsent rest kept past a deadline.

use std::fs::File;
use std::io::{self, IoSlice, Write};
use std::os::fd::{AsFd, BorrowedFd};
use std::time::Instant;

use super::{HEADER_LEN, Header, Limits};
use crate::codec::Message;
use crate::error::{Error, ErrorKind};

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
        Some(file)
    };
    if let Some(file) = &body_file {
        all_fds.push(file.as_fd());
    }
    let header = Header::new(bytes.len() as u64, fds.len() as u32, !inline).to_bytes();
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
