//! Encoding straight into memory that is not a `Vec`: a value's size first, then its bytes
//! written piece by piece at increasing offsets (a queue's ring or a shared segment), so
//! that a large value is copied once, from itself to where it travels.
//!
//! A value whose bytes are mostly small pieces (numbers, short strings) costs less encoded
//! into a buffer and copied once than walked twice; [`encode_into_unless_bulk`] tells the
//! two apart on the way, stopping at the first large piece.

use std::cell::Cell;
use std::os::fd::OwnedFd;

use serde::Serialize;

use crate::codec::{encode_error, encoding};
use crate::error::{Error, ErrorKind};

/// Like [`encode_into`](crate::encode_into), unless the value holds a piece of at least
/// `bulk` bytes (a byte string, a string): then it stops there, leaves `buf` as it was and
/// returns `None`, saying the value is better written straight where it goes with
/// [`encoded_len`] and [`encode_to_sink`].
///
/// # Errors
///
/// As [`encode_into`](crate::encode_into).
///
/// ```
/// let mut buf = Vec::new();
/// let small = mproc_wire::encode_into_unless_bulk(&(7u8, "hi"), &mut buf, 1024)?;
/// assert!(small.is_some_and(|fds| fds.is_empty()));
/// assert_eq!(buf, [7, 2, b'h', b'i']);
/// let big = "x".repeat(4096);
/// assert!(mproc_wire::encode_into_unless_bulk(&big, &mut buf, 1024)?.is_none());
/// assert_eq!(buf, [7, 2, b'h', b'i']);
/// # Ok::<(), mproc_wire::Error>(())
/// ```
pub fn encode_into_unless_bulk<T: Serialize + ?Sized>(
    value: &T,
    buf: &mut Vec<u8>,
    bulk: usize,
) -> Result<Option<Vec<OwnedFd>>, Error> {
    let start = buf.len();
    let mut fds = Vec::new();
    let r = encoding(&mut fds, || {
        postcard::serialize_with_flavor(
            value,
            AppendUnlessBulk {
                buf: &mut *buf,
                bulk,
            },
        )
    });
    match r {
        Ok(()) => Ok(Some(fds)),
        // Only the flavor says the buffer is full: here, a bulk piece was found.
        Err(postcard::Error::SerializeBufferFull) => {
            buf.truncate(start);
            Ok(None)
        }
        Err(e) => {
            buf.truncate(start);
            Err(encode_error(e))
        }
    }
}

/// The number of bytes `value` encodes to (the fds inside it are duplicated and closed on
/// the way, as an encode would take them).
///
/// # Errors
///
/// As [`encode`](crate::encode).
///
/// ```
/// assert_eq!(mproc_wire::encoded_len(&(7u8, "hi"))?, 4);
/// assert_eq!(mproc_wire::encoded_len(&"x".repeat(1000))?, 1002);
/// # Ok::<(), mproc_wire::Error>(())
/// ```
pub fn encoded_len<T: Serialize + ?Sized>(value: &T) -> Result<usize, Error> {
    let mut fds = Vec::new();
    encoding(&mut fds, || {
        postcard::serialize_with_flavor(value, Count(0))
    })
    .map_err(encode_error)
}

/// Where [`encode_to_sink`] writes: pieces of the encoded bytes, each at its offset from
/// the start, in increasing order and without gaps.
pub trait Sink {
    /// Writes `data` at `offset` bytes from the start.
    ///
    /// # Errors
    ///
    /// Whatever stops the write (the encode then fails with
    /// [`ErrorKind::Io`]).
    fn write_at(&mut self, offset: usize, data: &[u8]) -> std::io::Result<()>;
}

/// Serializes `value` into `sink`, at most `limit` bytes (its [`encoded_len`], when known),
/// taking the fds inside it into the side table. Returns the bytes written and the fds.
/// Small pieces are gathered and written together; large ones go straight from the value
/// to the sink.
///
/// # Errors
///
/// [`ErrorKind::Encode`] when serde fails, or when the value encodes to more than `limit`
/// bytes (a `Serialize` that writes something else each time); [`ErrorKind::Io`] when the
/// sink refuses a write. What was written by then is the caller's to discard.
///
/// ```
/// struct Into(Vec<u8>);
/// impl mproc_wire::Sink for Into {
///     fn write_at(&mut self, offset: usize, data: &[u8]) -> std::io::Result<()> {
///         self.0[offset..offset + data.len()].copy_from_slice(data);
///         Ok(())
///     }
/// }
/// let value = (7u8, "x".repeat(300));
/// let len = mproc_wire::encoded_len(&value)?;
/// let mut sink = Into(vec![0; len]);
/// let (written, fds) = mproc_wire::encode_to_sink(&value, &mut sink, len)?;
/// assert_eq!((written, fds.len()), (len, 0));
/// assert_eq!(mproc_wire::decode_from::<(u8, String)>(&sink.0, fds)?, value);
/// # Ok::<(), mproc_wire::Error>(())
/// ```
pub fn encode_to_sink<T: Serialize + ?Sized, S: Sink + ?Sized>(
    value: &T,
    sink: &mut S,
    limit: usize,
) -> Result<(usize, Vec<OwnedFd>), Error> {
    let mut fds = Vec::new();
    let failed: Cell<Option<std::io::Error>> = Cell::new(None);
    let flavor = ToSink {
        sink,
        limit,
        at: 0,
        staged: [0; STAGE],
        staged_len: 0,
        failed: &failed,
    };
    match encoding(&mut fds, || postcard::serialize_with_flavor(value, flavor)) {
        Ok(written) => Ok((written, fds)),
        Err(e) => Err(match failed.take() {
            Some(io) => Error::io("writing an encoded value where it goes", io),
            None if matches!(e, postcard::Error::SerializeBufferFull) => Error::new(
                ErrorKind::Encode,
                format!(
                    "cannot serialize: the value encoded to more than the {limit} bytes \
                     it did a moment before"
                ),
            ),
            None => encode_error(e),
        }),
    }
}

/// Counts the bytes, writes none.
struct Count(usize);

impl postcard::ser_flavors::Flavor for Count {
    type Output = usize;

    #[inline]
    fn try_push(&mut self, _: u8) -> postcard::Result<()> {
        self.0 += 1;
        Ok(())
    }

    #[inline]
    fn try_extend(&mut self, data: &[u8]) -> postcard::Result<()> {
        self.0 += data.len();
        Ok(())
    }

    fn finalize(self) -> postcard::Result<usize> {
        Ok(self.0)
    }
}

/// `Append` (see `codec`) that gives up at the first piece of `bulk` bytes or more, with
/// `SerializeBufferFull` (which nothing else returns while appending to a `Vec`).
struct AppendUnlessBulk<'a> {
    buf: &'a mut Vec<u8>,
    bulk: usize,
}

impl postcard::ser_flavors::Flavor for AppendUnlessBulk<'_> {
    type Output = ();

    #[inline]
    fn try_push(&mut self, byte: u8) -> postcard::Result<()> {
        self.buf.push(byte);
        Ok(())
    }

    #[inline]
    fn try_extend(&mut self, data: &[u8]) -> postcard::Result<()> {
        if data.len() <= 16 {
            self.buf.reserve(data.len());
            for &b in data {
                self.buf.push(b);
            }
        } else if data.len() >= self.bulk {
            return Err(postcard::Error::SerializeBufferFull);
        } else {
            self.buf.extend_from_slice(data);
        }
        Ok(())
    }

    fn finalize(self) -> postcard::Result<()> {
        Ok(())
    }
}

/// How many small bytes [`ToSink`] gathers before it writes them.
const STAGE: usize = 256;

/// Writes into a [`Sink`], small pieces gathered first.
struct ToSink<'a, S: Sink + ?Sized> {
    sink: &'a mut S,
    limit: usize,
    /// Where the next write goes (gathered bytes not yet written included).
    at: usize,
    staged: [u8; STAGE],
    staged_len: usize,
    failed: &'a Cell<Option<std::io::Error>>,
}

impl<S: Sink + ?Sized> ToSink<'_, S> {
    fn flush(&mut self) -> postcard::Result<()> {
        if self.staged_len > 0 {
            let start = self.at - self.staged_len;
            let n = self.staged_len;
            self.staged_len = 0;
            if let Err(e) = self.sink.write_at(start, &self.staged[..n]) {
                self.failed.set(Some(e));
                return Err(postcard::Error::SerializeBufferFull);
            }
        }
        Ok(())
    }

    #[inline]
    fn room(&self, n: usize) -> postcard::Result<()> {
        match self.at.checked_add(n) {
            Some(end) if end <= self.limit => Ok(()),
            _ => Err(postcard::Error::SerializeBufferFull),
        }
    }
}

impl<S: Sink + ?Sized> postcard::ser_flavors::Flavor for ToSink<'_, S> {
    type Output = usize;

    #[inline]
    fn try_push(&mut self, byte: u8) -> postcard::Result<()> {
        self.room(1)?;
        if self.staged_len == STAGE {
            self.flush()?;
        }
        self.staged[self.staged_len] = byte;
        self.staged_len += 1;
        self.at += 1;
        Ok(())
    }

    #[inline]
    fn try_extend(&mut self, data: &[u8]) -> postcard::Result<()> {
        self.room(data.len())?;
        if data.len() <= STAGE - self.staged_len {
            self.staged[self.staged_len..self.staged_len + data.len()].copy_from_slice(data);
            self.staged_len += data.len();
            self.at += data.len();
            return Ok(());
        }
        self.flush()?;
        if data.len() < STAGE {
            self.staged[..data.len()].copy_from_slice(data);
            self.staged_len = data.len();
            self.at += data.len();
            return Ok(());
        }
        if let Err(e) = self.sink.write_at(self.at, data) {
            self.failed.set(Some(e));
            return Err(postcard::Error::SerializeBufferFull);
        }
        self.at += data.len();
        Ok(())
    }

    fn finalize(mut self) -> postcard::Result<usize> {
        self.flush()?;
        Ok(self.at)
    }
}
