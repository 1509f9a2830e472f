//! mproc's wire format: typed messages as postcard frames over Unix stream sockets, with
//! OS handles (file descriptors) travelling beside the bytes.
//!
//! A [`Message`] is the bytes of one value plus the fds found inside it. [`encode`] turns a
//! serde value into a message: every [`Fd`] inside it is taken out into a side table while
//! serializing, and [`decode`] puts them back. [`write_message`] and [`FrameReader`] move
//! messages over a socket as length-prefixed frames, sending the fds with SCM_RIGHTS. Large
//! bodies travel in an in-memory file (a memfd) sent beside the header, so a writer never
//! waits for its reader.
//!
//! Every frame size is checked against [`Limits`] *before* anything is allocated, and bad
//! input (garbage, truncation, a huge length prefix, a peer gone mid-frame) is an [`Error`],
//! never a panic.
//!
//! ```
//! use std::os::fd::AsFd;
//! use mproc_wire::{FrameReader, Limits, decode, encode, write_message};
//!
//! let (a, b) = mproc_sys::socketpair()?;
//! write_message(a.as_fd(), encode(&("hello", 42u32))?, &Limits::default())?;
//! let msg = FrameReader::new().read(b.as_fd(), &Limits::default(), None)?;
//! let (text, n): (String, u32) = decode(msg)?;
//! assert_eq!((text.as_str(), n), ("hello", 42));
//! # Ok::<(), mproc_wire::Error>(())
//! ```
#![warn(missing_docs)]

mod codec;
mod error;
mod frame;

pub use codec::{
    Fd, FdRef, Handover, Message, decode, decode_from, encode, encode_into, encode_to_slice,
    handing_over, handover, hold_across_fork, release_held,
};
pub use error::{Error, ErrorKind};
pub use frame::{FrameReader, FrameWriter, HEADER_LEN, Limits, write_frame, write_message};

#[cfg(test)]
mod tests;
