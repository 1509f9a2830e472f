//! What travels on a child's socket: the parent's request, the child's reply, the envelope
//! that carries their fds.

use std::os::fd::OwnedFd;

use mproc_wire::{Limits, Message};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::info::ProcessInfo;

/// Environment marker of a spawned child: `MPROC_CHILD=<fd>:<parent pid>`.
pub(crate) const CHILD_ENV: &str = "MPROC_CHILD";
/// The fd number a spawned child finds its socket at (or the next one; see `spawn`).
pub(crate) const CHILD_FD: i32 = 3;

/// What a parent sends its child on the child's socket.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct Request {
    pub fingerprint: u64,
    pub thunk: i64,
    pub func: i64,
    pub me: ProcessInfo,
    pub parent: ProcessInfo,
    /// The argument: postcard bytes; its fds are the message's fds.
    pub args: Vec<u8>,
}

/// What a child sends back.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) enum Reply {
    /// The result: postcard bytes; its fds are the message's fds.
    Ok(Vec<u8>),
    Panicked(String),
    BuildMismatch,
    Encode(String),
    Decode(String),
}

/// `Reply` with borrowed contents: the same bytes on the wire, without a heap allocation.
#[derive(Serialize)]
pub(crate) enum ReplyRef<'a> {
    Ok(&'a [u8]),
}

/// The thunk's output: the reply and the fds of the result.
pub(crate) type Outcome = (Reply, Vec<OwnedFd>);

/// Limits on a child's socket. Replies above `inline_max` travel by memfd; the ones below
/// fit the socket's send buffer, so a child never blocks on its reply (see `Child::wait`).
pub(crate) fn limits() -> Limits {
    Limits {
        inline_max: 32 << 10,
        ..Limits::default()
    }
}

/// The socket buffer a child's end gets: room for an inline reply several times over.
pub(crate) const CHILD_SNDBUF: usize = 256 << 10;

/// Wraps a value's message in an envelope: postcard of the envelope, the value's fds beside.
pub(crate) fn envelope<E: Serialize>(
    make: impl FnOnce(Vec<u8>) -> E,
    inner: Message,
) -> Result<Message, mproc_wire::Error> {
    let (bytes, fds) = inner.into_parts();
    let (outer, _) = mproc_wire::encode(&make(bytes))?.into_parts();
    Ok(Message::from_parts(outer, fds))
}

/// Opens an envelope: the envelope itself, and the fds that belong to the value inside it.
pub(crate) fn open_envelope<E: DeserializeOwned>(
    msg: Message,
) -> Result<(E, Vec<OwnedFd>), mproc_wire::Error> {
    let (bytes, fds) = msg.into_parts();
    Ok((mproc_wire::decode(Message::from_bytes(bytes))?, fds))
}
