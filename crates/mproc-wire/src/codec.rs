//! Values to messages and back: postcard bytes plus the side table of fds found inside.

use std::cell::RefCell;
use std::fmt;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

use serde::de::{DeserializeOwned, Error as _};
use serde::ser::Error as _;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::error::{Error, ErrorKind};

/// One value on the wire: its postcard bytes and the fds that were inside it.
#[derive(Debug, Default)]
pub struct Message {
    pub(crate) bytes: Vec<u8>,
    pub(crate) fds: Vec<OwnedFd>,
}

impl Message {
    /// Makes a message of raw bytes and no fds.
    pub fn from_bytes(bytes: Vec<u8>) -> Self {
        Self {
            bytes,
            fds: Vec::new(),
        }
    }

    /// Makes a message of raw bytes and fds.
    pub fn from_parts(bytes: Vec<u8>, fds: Vec<OwnedFd>) -> Self {
        Self { bytes, fds }
    }

    /// Returns the bytes.
    pub fn bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// Returns the number of fds carried.
    pub fn fd_count(&self) -> usize {
        self.fds.len()
    }

    /// Splits the message into its bytes and fds.
    pub fn into_parts(self) -> (Vec<u8>, Vec<OwnedFd>) {
        (self.bytes, self.fds)
    }
}

/// A file descriptor inside a serde value: it travels beside the bytes of the message.
///
/// Serializing an `Fd` (only possible inside [`encode`]) duplicates it into the message's
/// side table; deserializing it (inside [`decode`]) takes the received copy back out. Each
/// process owns its own copy and closes it on drop. This is how pipe ends, queues, locks and
/// shared memory become transferable.
///
/// ```
/// use mproc_wire::{Fd, decode, encode};
/// let (a, _b) = mproc_sys::socketpair()?;
/// let msg = encode(&Fd::from(a))?;
/// assert_eq!(msg.fd_count(), 1);
/// let back: Fd = decode(msg)?;
/// # drop(back);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug)]
pub struct Fd(OwnedFd);

impl Fd {
    /// Returns the owned fd.
    pub fn into_owned(self) -> OwnedFd {
        self.0
    }
}

impl From<OwnedFd> for Fd {
    fn from(fd: OwnedFd) -> Self {
        Fd(fd)
    }
}

impl AsFd for Fd {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.0.as_fd()
    }
}

enum Table {
    Encoding(Vec<OwnedFd>),
    Decoding(Vec<Option<OwnedFd>>),
}

thread_local! {
    static TABLE: RefCell<Option<Table>> = const { RefCell::new(None) };
}

/// Runs `f` with `table` installed for this thread, and returns the table afterwards.
/// Nested calls (a value encoding another value) keep their own tables, and a panic in a
/// user's `Serialize` or `Deserialize` still puts the outer table back.
fn with_table<R>(table: Table, f: impl FnOnce() -> R) -> (R, Table) {
    struct Restore(Option<Option<Table>>);
    impl Drop for Restore {
        fn drop(&mut self) {
            if let Some(outer) = self.0.take() {
                // Unwinding: drop our table (closing its fds) and reinstate the outer one.
                TABLE.with(|t| *t.borrow_mut() = outer);
            }
        }
    }
    let mut restore = Restore(Some(TABLE.with(|t| t.borrow_mut().replace(table))));
    let r = f();
    let outer = restore.0.take().expect("set above");
    let table = TABLE.with(|t| std::mem::replace(&mut *t.borrow_mut(), outer));
    (
        r,
        table.expect("side table present for the duration of the call"),
    )
}

impl Serialize for Fd {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        FdRef(self.0.as_fd()).serialize(s)
    }
}

/// A borrowed fd inside a serde value: serializes exactly as an [`Fd`] (a duplicate goes
/// into the message's side table) and deserializes on the other side as an [`Fd`]. For
/// types that own their fd and want to be transferable without giving it up.
///
/// ```
/// use std::os::fd::AsFd;
/// let (a, _b) = mproc_sys::socketpair()?;
/// let msg = mproc_wire::encode(&mproc_wire::FdRef(a.as_fd()))?;
/// let copy: mproc_wire::Fd = mproc_wire::decode(msg)?;
/// # drop(copy);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, Copy, Debug)]
pub struct FdRef<'a>(pub BorrowedFd<'a>);

impl Serialize for FdRef<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let index = TABLE.with(|t| match &mut *t.borrow_mut() {
            Some(Table::Encoding(fds)) => {
                let dup = self
                    .0
                    .try_clone_to_owned()
                    .map_err(|e| format!("cannot duplicate fd: {e}"))?;
                fds.push(dup);
                Ok(fds.len() as u32 - 1)
            }
            _ => Err("an fd can only be serialized by mproc_wire::encode".to_string()),
        });
        index.map_err(S::Error::custom)?.serialize(s)
    }
}

impl<'de> Deserialize<'de> for Fd {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let index = u32::deserialize(d)? as usize;
        let fd = TABLE.with(|t| match &mut *t.borrow_mut() {
            Some(Table::Decoding(fds)) => fds
                .get_mut(index)
                .and_then(Option::take)
                .ok_or_else(|| format!("message refers to fd #{index}, which it does not carry")),
            _ => Err("an fd can only be deserialized by mproc_wire::decode".to_string()),
        });
        fd.map(Fd).map_err(D::Error::custom)
    }
}

/// Serializes `value` into a [`Message`], taking the fds inside it into the side table.
///
/// # Errors
///
/// [`ErrorKind::Encode`] when serde fails (a map with non-string keys is fine; a type whose
/// `Serialize` returns an error, or an `Fd` that cannot be duplicated, is not).
///
/// ```
/// let msg = mproc_wire::encode(&vec![1u8, 2, 3])?;
/// assert_eq!(msg.bytes(), [3, 1, 2, 3]);
/// # Ok::<(), mproc_wire::Error>(())
/// ```
pub fn encode<T: Serialize + ?Sized>(value: &T) -> Result<Message, Error> {
    let (bytes, table) = with_table(Table::Encoding(Vec::new()), || postcard::to_stdvec(value));
    let fds = match table {
        Table::Encoding(fds) => fds,
        Table::Decoding(_) => Vec::new(),
    };
    let bytes =
        bytes.map_err(|e| Error::new(ErrorKind::Encode, format!("cannot serialize: {e}")))?;
    Ok(Message { bytes, fds })
}

/// Serializes `value` into `buf` (no heap allocation when the value holds no fd), taking
/// the fds inside it into the side table. Returns the bytes written and the fds.
///
/// # Errors
///
/// [`ErrorKind::Encode`] when serde fails or `buf` is too small (then use [`encode`]).
///
/// ```
/// let mut buf = [0u8; 16];
/// let (bytes, fds) = mproc_wire::encode_to_slice(&(7u8, true), &mut buf)?;
/// assert_eq!(bytes, [7, 1]);
/// assert!(fds.is_empty());
/// # Ok::<(), mproc_wire::Error>(())
/// ```
pub fn encode_to_slice<'b, T: Serialize + ?Sized>(
    value: &T,
    buf: &'b mut [u8],
) -> Result<(&'b [u8], Vec<OwnedFd>), Error> {
    let (bytes, table) = with_table(Table::Encoding(Vec::new()), || {
        postcard::to_slice(value, buf)
    });
    let fds = match table {
        Table::Encoding(fds) => fds,
        Table::Decoding(_) => Vec::new(),
    };
    let bytes =
        bytes.map_err(|e| Error::new(ErrorKind::Encode, format!("cannot serialize: {e}")))?;
    Ok((&*bytes, fds))
}

/// Deserializes a [`Message`] into a `T`, putting its fds back where they were.
///
/// Fds the value does not claim are closed. Trailing bytes are an error.
///
/// # Errors
///
/// [`ErrorKind::Decode`] when the bytes are not a `T` (garbage, truncated, trailing bytes,
/// an fd index the message does not carry).
///
/// ```
/// let v: Vec<u8> = mproc_wire::decode(mproc_wire::encode(&vec![7u8])?)?;
/// assert_eq!(v, [7]);
/// # Ok::<(), mproc_wire::Error>(())
/// ```
pub fn decode<T: DeserializeOwned>(msg: Message) -> Result<T, Error> {
    let Message { bytes, fds } = msg;
    let table = Table::Decoding(fds.into_iter().map(Some).collect());
    let (result, _rest) = with_table(table, || postcard::take_from_bytes::<T>(&bytes));
    match result {
        Ok((value, [])) => Ok(value),
        Ok((_, rest)) => Err(Error::new(
            ErrorKind::Decode,
            format!("{} trailing bytes after the value", rest.len()),
        )),
        Err(e) => Err(Error::new(
            ErrorKind::Decode,
            format!("cannot deserialize {}: {e}", std::any::type_name::<T>()),
        )),
    }
}

impl fmt::Display for Fd {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use std::os::fd::AsRawFd;
        write!(f, "fd {}", self.0.as_raw_fd())
    }
}
