//! Entry points of the fuzz target (built with `cfg(fuzzing)` only): what a child reads
//! from its parent, what a parent reads from its child, what the fork server and its
//! parent read from each other, each from a socket whose peer sent any bytes and fds.

use std::os::fd::BorrowedFd;
use std::time::Instant;

use mproc_wire::{Fd, FrameReader};

use crate::protocol::{Request, limits, open_envelope};

/// Which side of which socket reads.
#[derive(Clone, Copy, Debug)]
pub enum Reader {
    /// A child reading its parent's request (spawn, or a fork server's child).
    ChildRequest,
    /// A parent reading its child's reply (`Child::join`).
    ChildReply,
    /// The fork server reading a fork request.
    ForkRequest,
    /// A parent reading the fork server's reply.
    ForkReply,
}

/// Reads one message from `sock` (whose peer has sent everything and closed) as `reader`
/// does, and decodes it; the child's function is never called, and nothing is forked.
///
/// # Errors
///
/// The error the reading side gets: a frame that is garbage, too large or cut short, or
/// bytes that do not decode; as text.
pub fn read(reader: Reader, sock: BorrowedFd<'_>) -> Result<(), String> {
    match reader {
        Reader::ChildRequest => {
            let msg = FrameReader::new()
                .read(sock, &limits(), Some(Instant::now()))
                .map_err(|e| text(&e))?;
            let (req, fds): (Request, _) = open_envelope(msg).map_err(|e| text(&e))?;
            drop((req, fds));
        }
        Reader::ChildReply => {
            let msg = FrameReader::new()
                .read(sock, &limits(), Some(Instant::now()))
                .map_err(|e| text(&e))?;
            let value: (String, Vec<Option<Fd>>, i64) =
                crate::child::decode_reply(msg).map_err(|e| text(&e))?;
            drop(value);
        }
        Reader::ForkRequest => {
            crate::forkserver::fuzz::request(sock).map_err(|e| text(&e))?;
        }
        Reader::ForkReply => {
            crate::forkserver::fuzz::reply(sock).map_err(|e| text(&e))?;
        }
    }
    Ok(())
}

/// An error's text with its causes.
fn text(e: &(dyn std::error::Error + 'static)) -> String {
    mproc_sys::with_causes(e)
}
