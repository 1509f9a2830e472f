//! A put that encodes its value straight where the message travels: into the room
//! reserved at the ring's tail, into a segment of this handle's, or into a sealed memfd of
//! its own. A value made of large pieces (a byte string, a long string) is then copied
//! once, from itself to shared memory, instead of encoded into a buffer and copied again.
//!
//! The value's size comes first (a walk that counts bytes: cheap for large pieces), so
//! that the room is reserved before anything is written. A value that encodes to another
//! size than it counted (a `Serialize` that says something else each time) is refused,
//! with nothing published.
//!
//! Written into the ring, the value is encoded with the producers' lock held, as a copy
//! into the ring is: a producer killed mid-encode loses its own message only (the tail has
//! not moved; the next producer takes the lock with `OwnerDied`). A `Serialize` that puts
//! into the same queue handle it is being put into is refused rather than left waiting for
//! the lock its own thread holds.

use std::cell::Cell;
use std::os::fd::OwnedFd;
use std::time::Instant;

use mproc_sys::SealedWriter;
use serde::Serialize;

use crate::error::{Error, ErrorKind};
use crate::ring::layout::{self, REC_HEADER, RecordHeader, kind};
use crate::ring::protocol::Reserved;
use crate::ring::shared::{Shared, Shm};
use crate::ring::{Refused, Ring};

thread_local! {
    /// The ring this thread is encoding a value into with the producers' lock held (its
    /// address; 0: none).
    static FILLING: Cell<usize> = const { Cell::new(0) };
}

/// Refuses a message with more file descriptors than one side datagram carries.
#[inline]
pub(crate) fn check_fd_count(fds: &[OwnedFd]) -> std::result::Result<(), Refused> {
    if fds.len() > mproc_sys::MAX_FDS_PER_MSG {
        return Err(Refused::Failed(Error::new(
            ErrorKind::Encode,
            format!(
                "a message carries at most {} file descriptors",
                mproc_sys::MAX_FDS_PER_MSG - 1
            ),
        )));
    }
    Ok(())
}

/// Refuses a value that encoded to fewer bytes than it counted a moment before.
fn check_len(written: usize, len: usize) -> std::result::Result<(), Refused> {
    if written != len {
        return Err(Refused::Failed(Error::new(
            ErrorKind::Encode,
            format!(
                "cannot serialize: the value encoded to {written} bytes, and to {len} a \
                 moment before"
            ),
        )));
    }
    Ok(())
}

/// Marks this thread as encoding into a ring under its producers' lock, until dropped.
struct Filling(usize);

impl Filling {
    fn enter(ring: &Ring) -> Filling {
        Filling(FILLING.replace(ring as *const Ring as usize))
    }
}

impl Drop for Filling {
    fn drop(&mut self) {
        FILLING.set(self.0);
    }
}

/// The room reserved at the tail, as a place to encode into.
struct InRing<'r, 'a>(&'r Reserved<'a, Shm>);

impl mproc_wire::Sink for InRing<'_, '_> {
    fn write_at(&mut self, offset: usize, data: &[u8]) -> std::io::Result<()> {
        self.0
            .write_body(offset, data)
            .map_err(|e| std::io::Error::other(e.to_string()))
    }
}

/// A fresh memfd, as a place to encode into.
struct InMemfd<'a>(&'a SealedWriter);

impl mproc_wire::Sink for InMemfd<'_> {
    fn write_at(&mut self, offset: usize, data: &[u8]) -> std::io::Result<()> {
        self.0.write_at(offset, data)
    }
}

impl Ring {
    /// Refuses a put into this ring from inside the encode of a value being put into it
    /// (its thread holds the producers' lock).
    #[inline]
    pub(crate) fn refuse_if_filling(&self) -> std::result::Result<(), Refused> {
        if FILLING.get() == self as *const Ring as usize {
            return Err(Refused::Failed(Error::new(
                ErrorKind::Encode,
                "a value's Serialize put into the queue it was being put into",
            )));
        }
        Ok(())
    }

    /// Enqueues `value`, encoded straight where it travels (see the module's docs).
    pub(crate) fn put_value<T: Serialize + ?Sized>(
        &self,
        value: &T,
        deadline: Option<Instant>,
    ) -> std::result::Result<(), Refused> {
        self.refuse_if_filling()?;
        let len = mproc_wire::encoded_len(value).map_err(Error::from)?;
        if len > self.inline_max() {
            return self.put_value_large(value, len, deadline);
        }
        let room = self
            .core
            .reserve(layout::pad8(REC_HEADER + len), deadline)?;
        let (written, fds) = {
            let _filling = Filling::enter(self);
            mproc_wire::encode_to_sink(value, &mut InRing(&room), len).map_err(Error::from)?
        };
        check_len(written, len)?;
        check_fd_count(&fds)?;
        let (kind, mut side_seq) = (
            if fds.is_empty() {
                kind::INLINE
            } else {
                kind::WITH_FDS
            },
            0,
        );
        if kind != kind::INLINE {
            side_seq = room.next_side_seq();
            self.side
                .send(side_seq, &fds, deadline, || self.core.shared.others_gone())?;
        }
        room.publish_body(RecordHeader::new(written as u32, kind, side_seq))?;
        Ok(())
    }

    /// Enqueues `value`, of `len` bytes encoded, larger than the ring takes: encoded into a
    /// free segment of this handle's, or else into a sealed memfd of its own.
    fn put_value_large<T: Serialize + ?Sized>(
        &self,
        value: &T,
        len: usize,
        deadline: Option<Instant>,
    ) -> std::result::Result<(), Refused> {
        let (written, mut fds, fd, how, claimed) = match self.spills.claim_for(len)? {
            Some(mut segment) => {
                let (written, fds) =
                    mproc_wire::encode_to_sink(value, &mut segment, len).map_err(Error::from)?;
                let fd = segment.fd()?;
                (written, fds, fd, layout::large::SEGMENT, Some(segment))
            }
            None => {
                let memfd = SealedWriter::new("mproc-queue-message", len)
                    .map_err(|e| Error::io("putting a large message in its own memfd", e))?;
                let (written, fds) = mproc_wire::encode_to_sink(value, &mut InMemfd(&memfd), len)
                    .map_err(Error::from)?;
                let fd = memfd
                    .seal()
                    .map_err(|e| Error::io("putting a large message in its own memfd", e))?;
                (written, fds, fd, layout::large::SEALED, None)
            }
        };
        check_len(written, len)?;
        fds.insert(0, fd);
        self.put_large(written, how, fds, claimed, deadline)
    }
}
