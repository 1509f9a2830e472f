//! What travels between a parent and its fork server: the fork request, the server's reply.

use std::ffi::OsString;

use mproc_wire::{Fd, Limits};
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize)]
pub(super) struct ForkRequest {
    pub(super) daemon: bool,
    /// What changed in the parent's environment since the server started, and its working
    /// directory if that changed too: the child starts with the parent's present, not with
    /// the server's (the parent's of when the server started).
    pub(super) changes: Vec<(OsString, Option<OsString>)>,
    pub(super) cwd: Option<OsString>,
    /// The `Builder`'s overrides, applied after.
    pub(super) env: Vec<(OsString, Option<OsString>)>,
    pub(super) data: Fd,
    pub(super) status: Fd,
    /// The child's request (the bytes and fds of its message), handed over with the fork.
    pub(super) request: Vec<u8>,
    pub(super) request_fds: Vec<Fd>,
}

/// The borrowed form of `ForkRequest` that the parent serializes (same wire shape: an
/// `Fd` travels as its index among the frame's fds). The fds go out borrowed, beside the
/// bytes, in index order: the data socket, the status socket, then the request's own, so
/// none is duplicated on the way.
#[derive(Serialize)]
pub(super) struct ForkRequestRef<'a> {
    pub(super) daemon: bool,
    pub(super) changes: Vec<(OsString, Option<OsString>)>,
    pub(super) cwd: Option<OsString>,
    pub(super) env: &'a [(OsString, Option<OsString>)],
    pub(super) data: u32,
    pub(super) status: u32,
    pub(super) request: &'a [u8],
    pub(super) request_fds: &'a [u32],
}

#[derive(Serialize, Deserialize)]
pub(super) enum ForkReply {
    Forked { pid: u32, pidfd: Fd },
    Failed(String),
}

/// `ForkReply::Forked` as the server sends it: the same wire shape, the pidfd as its index
/// among the frame's fds.
#[derive(Serialize)]
pub(super) enum ForkedRef {
    Forked { pid: u32, pidfd: u32 },
}

/// The limits of the server's socket.
pub(super) fn limits() -> Limits {
    Limits::default()
}
