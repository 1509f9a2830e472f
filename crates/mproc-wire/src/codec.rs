//! The codec: a value as a message (postcard bytes plus the side table of fds found inside),
//! both ways.

use std::cell::{Cell, RefCell};
use std::fmt;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};

use serde::de::{DeserializeOwned, Error as _};
use serde::ser::Error as _;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::error::{Error, ErrorKind};
use crate::stack_guard::{self, Guarded};

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

thread_local! {
    /// The fds of the values being encoded on this thread: a stack shared by nested
    /// encodes, each owning the part from its start.
    static ENC_FDS: RefCell<Vec<OwnedFd>> = const { RefCell::new(Vec::new()) };
    /// Where the innermost running encode's fds start (`None`: no encode is running).
    static ENC_BASE: Cell<Option<usize>> = const { Cell::new(None) };
    /// `ENC_FDS.len()`, kept beside it so that an encode without fds never touches the
    /// stack (a `Cell` read is cheaper than a `RefCell` borrow with a destructor).
    static ENC_LEN: Cell<usize> = const { Cell::new(0) };
    /// The fds of the message being decoded, when it carries any (or when decodes nest).
    static DEC_FDS: Cell<Option<Vec<Option<OwnedFd>>>> = const { Cell::new(None) };
    static DEC_DEPTH: Cell<u32> = const { Cell::new(0) };
    /// The walk [`handover`] is making on this thread, and the fds it found.
    static HANDOVER: Cell<Option<Handover>> = const { Cell::new(None) };
    static HANDOVER_FDS: RefCell<Vec<RawFd>> = const { RefCell::new(Vec::new()) };
    /// Fds held across a fork (see [`hold_across_fork`]).
    static HELD: RefCell<Vec<OwnedFd>> = const { RefCell::new(Vec::new()) };
    /// Whether the encode running on this thread is a new child's argument (see
    /// [`encode_for_child`]).
    static FOR_CHILD: Cell<bool> = const { Cell::new(false) };
    /// Why an `Fd` could not be duplicated during this thread's last failed encode: serde
    /// errors keep no cause (postcard's keep not even the message), so the OS's error
    /// waits here for [`encode_error`].
    static ENC_IO_ERROR: Cell<Option<std::io::Error>> = const { Cell::new(None) };
}

/// A value handed to a child made by `fork`, which gets it as a copy of memory rather than
/// as a message: what [`handover`] is walking it for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Handover {
    /// In the parent, just before the fork: a shared object may
    /// [`hold_across_fork`] what says "a copy of me is on its way" until the child has
    /// taken it as its own.
    BeforeFork,
    /// In the child, before it runs anything else: the copy becomes the child's.
    Child,
}

/// During a [`Handover::BeforeFork`] walk: keeps `fd` open across the fork, in the parent
/// until [`release_held`] right after the fork, and in the child until its own walk is
/// done (its `release_held`). What a message in flight holds, a fork holds this way.
pub fn hold_across_fork(fd: OwnedFd) {
    HELD.with(|h| h.borrow_mut().push(fd));
}

/// Closes the fds this thread holds across a fork (see [`hold_across_fork`]).
///
/// ```
/// mproc_wire::release_held();
/// ```
pub fn release_held() {
    let held = HELD.with(|h| std::mem::take(&mut *h.borrow_mut()));
    drop(held);
}

/// Walks `value` as [`encode`] would, without writing or duplicating anything, and returns
/// the raw fds its [`Fd`]s and [`FdRef`]s refer to. While it runs, [`handing_over`] tells
/// the value's `Serialize` impls why, so that an object shared between processes can note
/// that one more process now holds it (mproc's queues do).
///
/// # Errors
///
/// [`ErrorKind::Encode`] when the value's `Serialize` fails (as it would for the other
/// start methods).
///
/// ```
/// use std::os::fd::{AsFd, AsRawFd};
/// let (a, _b) = mproc_sys::socketpair()?;
/// let fds = mproc_wire::handover(&(1u8, mproc_wire::FdRef(a.as_fd())), mproc_wire::Handover::Child)?;
/// assert_eq!(fds, [a.as_raw_fd()]);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn handover<T: Serialize + ?Sized>(value: &T, how: Handover) -> Result<Vec<RawFd>, Error> {
    struct Discard;
    impl postcard::ser_flavors::Flavor for Discard {
        type Output = ();
        fn try_push(&mut self, _: u8) -> postcard::Result<()> {
            Ok(())
        }
        fn try_extend(&mut self, _: &[u8]) -> postcard::Result<()> {
            Ok(())
        }
        fn finalize(self) -> postcard::Result<()> {
            Ok(())
        }
    }
    struct Restore(Option<Handover>, Option<usize>);
    impl Drop for Restore {
        fn drop(&mut self) {
            HANDOVER.set(self.0);
            ENC_BASE.set(self.1);
        }
    }
    let _restore = Restore(HANDOVER.replace(Some(how)), ENC_BASE.replace(None));
    let start = HANDOVER_FDS.with(|v| v.borrow().len());
    let walked = postcard::serialize_with_flavor(value, Discard);
    let fds = HANDOVER_FDS.with(|v| v.borrow_mut().split_off(start));
    walked.map_err(encode_error)?;
    Ok(fds)
}

/// Why the value being serialized on this thread is walked, when [`handover`] walks it;
/// `None` during an [`encode`] or any other serialization.
///
/// ```
/// assert_eq!(mproc_wire::handing_over(), None);
/// ```
pub fn handing_over() -> Option<Handover> {
    HANDOVER.get()
}

/// Runs the encode `f` with a frame of the fd stack of its own, and puts the fds the
/// value put there in `fds` (an out parameter: returning them beside `f`'s result made
/// the compiler shuffle the pair through the stack, a store-forwarding stall per call). A panic in a user's `Serialize` still restores the outer frame.
pub(crate) fn encoding<R>(fds: &mut Vec<OwnedFd>, f: impl FnOnce() -> R) -> R {
    struct Restore {
        outer: Option<usize>,
        start: usize,
    }
    impl Drop for Restore {
        fn drop(&mut self) {
            ENC_BASE.set(self.outer);
            // Closes what an unwinding encode left (a no-op after a normal one).
            if ENC_LEN.get() > self.start {
                ENC_FDS.with(|v| v.borrow_mut().truncate(self.start));
                ENC_LEN.set(self.start);
            }
        }
    }
    let start = ENC_LEN.get();
    let _restore = Restore {
        outer: ENC_BASE.replace(Some(start)),
        start,
    };
    let r = f();
    if ENC_LEN.get() > start {
        ENC_LEN.set(start);
        *fds = ENC_FDS.with(|v| v.borrow_mut().split_off(start));
    }
    r
}

/// Runs the decode `f` with `fds` installed for the `Fd`s inside the value. A message
/// without fds installs nothing (the common case costs nothing), unless decodes nest.
pub(crate) fn decoding<R>(fds: Vec<OwnedFd>, f: impl FnOnce() -> R) -> R {
    if fds.is_empty() && DEC_DEPTH.get() == 0 {
        return f();
    }
    struct Restore(Option<Vec<Option<OwnedFd>>>);
    impl Drop for Restore {
        fn drop(&mut self) {
            // Drops (closes) the fds the value did not claim, and reinstates the outer ones.
            drop(DEC_FDS.replace(self.0.take()));
            DEC_DEPTH.set(DEC_DEPTH.get() - 1);
        }
    }
    DEC_DEPTH.set(DEC_DEPTH.get() + 1);
    let _restore = Restore(DEC_FDS.replace(Some(fds.into_iter().map(Some).collect())));
    f()
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
        let Some(base) = ENC_BASE.get() else {
            if HANDOVER.get().is_some() {
                HANDOVER_FDS.with(|v| v.borrow_mut().push(self.0.as_raw_fd()));
                return 0u32.serialize(s);
            }
            return Err(S::Error::custom(
                "an fd can only be serialized by mproc_wire::encode",
            ));
        };
        let dup = self.0.try_clone_to_owned().map_err(|e| {
            let message = format!("cannot duplicate fd: {e}");
            ENC_IO_ERROR.set(Some(e));
            S::Error::custom(message)
        })?;
        let index = ENC_FDS.with(|v| {
            let mut v = v.borrow_mut();
            v.push(dup);
            ENC_LEN.set(v.len());
            (v.len() - 1 - base) as u32
        });
        index.serialize(s)
    }
}

impl<'de> Deserialize<'de> for Fd {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let index = u32::deserialize(d)? as usize;
        let mut table = DEC_FDS.take();
        let fd = table.as_mut().and_then(|fds| fds.get_mut(index)?.take());
        DEC_FDS.set(table);
        let fd = fd.ok_or_else(|| {
            format!(
                "message refers to fd #{index}, which it does not carry (fds travel only \
                 through mproc_wire::encode and decode)"
            )
        });
        fd.map(Fd).map_err(D::Error::custom)
    }
}

/// Serializes `value` into a [`Message`], taking the fds inside it into the side table.
///
/// # Errors
///
/// [`ErrorKind::Encode`] when serde fails (a map with non-string keys is fine; a type whose
/// `Serialize` returns an error is not); [`ErrorKind::Io`] when an `Fd` inside cannot be
/// duplicated (the fd table is full, say), with the OS's error as its `source()`.
///
/// ```
/// let msg = mproc_wire::encode(&vec![1u8, 2, 3])?;
/// assert_eq!(msg.bytes(), [3, 1, 2, 3]);
/// # Ok::<(), mproc_wire::Error>(())
/// ```
pub fn encode<T: Serialize + ?Sized>(value: &T) -> Result<Message, Error> {
    let mut fds = Vec::new();
    let bytes = encoding(&mut fds, || postcard::to_stdvec(value)).map_err(encode_error)?;
    Ok(Message { bytes, fds })
}

/// Like [`encode`], for the argument of a child being started: while it runs,
/// [`encoding_for_child`] says so, so that an object shared between processes can note that
/// another process will hold it (mproc's queues then count as shared at once, even if the
/// child dies before it takes its copy).
///
/// # Errors
///
/// As [`encode`].
///
/// ```
/// let msg = mproc_wire::encode_for_child(&7u8)?;
/// assert_eq!(msg.bytes(), [7]);
/// # Ok::<(), mproc_wire::Error>(())
/// ```
pub fn encode_for_child<T: Serialize + ?Sized>(value: &T) -> Result<Message, Error> {
    struct Restore(bool);
    impl Drop for Restore {
        fn drop(&mut self) {
            FOR_CHILD.set(self.0);
        }
    }
    let _restore = Restore(FOR_CHILD.replace(true));
    encode(value)
}

/// Whether the value being serialized on this thread is a new child's argument (see
/// [`encode_for_child`]).
///
/// ```
/// assert!(!mproc_wire::encoding_for_child());
/// ```
pub fn encoding_for_child() -> bool {
    FOR_CHILD.get()
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
    let mut fds = Vec::new();
    let bytes = encoding(&mut fds, || postcard::to_slice(value, buf)).map_err(encode_error)?;
    Ok((&*bytes, fds))
}

/// Serializes `value` onto the end of `buf` (reused: no allocation once it is large
/// enough), taking the fds inside it into the side table, which it returns.
///
/// # Errors
///
/// [`ErrorKind::Encode`] when serde fails; `buf` then holds what was written before.
///
/// ```
/// let mut buf = Vec::new();
/// let fds = mproc_wire::encode_into(&(7u8, true), &mut buf)?;
/// assert_eq!(buf, [7, 1]);
/// assert!(fds.is_empty());
/// # Ok::<(), mproc_wire::Error>(())
/// ```
pub fn encode_into<T: Serialize + ?Sized>(
    value: &T,
    buf: &mut Vec<u8>,
) -> Result<Vec<OwnedFd>, Error> {
    let start = buf.len();
    let mut fds = Vec::new();
    match encoding(&mut fds, || {
        postcard::serialize_with_flavor(value, Append(buf))
    }) {
        Ok(()) => Ok(fds),
        Err(e) => {
            buf.truncate(start);
            Err(encode_error(e))
        }
    }
}

#[cold]
pub(crate) fn encode_error(e: postcard::Error) -> Error {
    // An fd that could not be duplicated (the fd table full, say) is the OS's failure,
    // not the value's: say so, with the OS's error as the cause.
    match (e, ENC_IO_ERROR.take()) {
        (postcard::Error::SerdeSerCustom, Some(io)) => {
            Error::io("duplicating a file descriptor to send it", io)
        }
        (e, _) => Error::new(ErrorKind::Encode, format!("cannot serialize: {e}")),
    }
}

/// A postcard flavor appending to a borrowed `Vec`. Short pieces (varints, small
/// fields) are pushed inline, byte by byte, rather than through a `memmove` call: for
/// small messages that call is most of the cost.
struct Append<'a>(&'a mut Vec<u8>);

impl postcard::ser_flavors::Flavor for Append<'_> {
    type Output = ();

    #[inline]
    fn try_push(&mut self, byte: u8) -> postcard::Result<()> {
        self.0.push(byte);
        Ok(())
    }

    #[inline]
    fn try_extend(&mut self, data: &[u8]) -> postcard::Result<()> {
        if data.len() <= 16 {
            self.0.reserve(data.len());
            for &b in data {
                self.0.push(b);
            }
        } else {
            self.0.extend_from_slice(data);
        }
        Ok(())
    }

    fn finalize(self) -> postcard::Result<()> {
        Ok(())
    }
}

/// Deserializes `bytes` (with the fds that travelled beside them) into a `T`, like
/// [`decode`] without owning the bytes.
///
/// # Errors
///
/// As [`decode`].
///
/// ```
/// let v: (u8, bool) = mproc_wire::decode_from(&[7, 1], Vec::new())?;
/// assert_eq!(v, (7, true));
/// assert!(mproc_wire::decode_from::<u8>(&[7, 1], Vec::new()).is_err());
/// # Ok::<(), mproc_wire::Error>(())
/// ```
pub fn decode_from<T: DeserializeOwned>(bytes: &[u8], fds: Vec<OwnedFd>) -> Result<T, Error> {
    let too_deep = Cell::new(false);
    let limit = stack_guard::stack_limit();
    let result = decoding(fds, || {
        let mut de = postcard::Deserializer::from_flavor(Guarded::new(bytes, limit, &too_deep));
        T::deserialize(&mut de).and_then(|value| Ok((value, de.finalize()?)))
    });
    match result {
        Ok((value, [])) => Ok(value),
        Ok((_, rest)) => Err(Error::new(
            ErrorKind::Decode,
            format!("{} trailing bytes after the value", rest.len()),
        )),
        Err(_) if too_deep.get() => Err(Error::new(
            ErrorKind::Decode,
            format!(
                "cannot deserialize {}: the value nests too deeply for this thread's stack",
                std::any::type_name::<T>()
            ),
        )),
        Err(e) => Err(Error::new(
            ErrorKind::Decode,
            format!("cannot deserialize {}: {e}", std::any::type_name::<T>()),
        )),
    }
}

/// Deserializes a [`Message`] into a `T`, putting its fds back where they were.
///
/// Fds the value does not claim are closed. Trailing bytes are an error.
///
/// # Errors
///
/// [`ErrorKind::Decode`] when the bytes are not a `T` (garbage, truncated, trailing bytes,
/// an fd index the message does not carry), or nest deeper than this thread's stack can
/// hold (a decode stops 64 KiB short of the end of the stack rather than overflow it).
///
/// ```
/// let v: Vec<u8> = mproc_wire::decode(mproc_wire::encode(&vec![7u8])?)?;
/// assert_eq!(v, [7]);
/// # Ok::<(), mproc_wire::Error>(())
/// ```
pub fn decode<T: DeserializeOwned>(msg: Message) -> Result<T, Error> {
    let Message { bytes, fds } = msg;
    decode_from(&bytes, fds)
}

impl fmt::Display for Fd {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use std::os::fd::AsRawFd;
        write!(f, "fd {}", self.0.as_raw_fd())
    }
}
