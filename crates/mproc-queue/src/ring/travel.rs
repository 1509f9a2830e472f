//! How a queue handle travels to another process: as its locks, header, ring, side socket
//! and presence pipe (all by fd), its bounds, and a mark that it is in flight until the
//! receiver has registered as a holder (see `holders`).

use std::os::fd::AsFd;

use mproc_shm::{Block, LockBlock, SharedMemory};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::Ring;
use crate::holders;

/// Sent as its locks, header, ring, side socket and presence pipe (all by fd), its bounds,
/// and a write end of the presence pipe of its own that says "a handle is in flight" until
/// the receiver has registered (see `holders`).
impl Serialize for Ring {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        let in_flight = match mproc_wire::handing_over() {
            None => {
                if mproc_wire::encoding_for_child() {
                    // A child is being started with this handle: the queue is shared from
                    // now on, so that a child that dies before it registers still ends
                    // the waits of the processes left (it is in flight until then).
                    holders::mark_shared(&self.core.shared.header_block);
                }
                self.open_in_flight()
            }
            // A fork is about to copy this handle: the queue is shared (as above), and the
            // copy is in flight, as in a message, until the child has registered.
            Some(mproc_wire::Handover::BeforeFork) => {
                holders::mark_shared(&self.core.shared.header_block);
                if let Some(w) = self.open_in_flight() {
                    mproc_wire::hold_across_fork(w);
                }
                None
            }
            Some(mproc_wire::Handover::Child) => {
                self.register_here(true);
                None
            }
        };
        let shm = &self.core.shared;
        (
            &shm.producers,
            &shm.consumers,
            &shm.header_block,
            &shm.ring,
            [
                mproc_wire::FdRef(self.side.tx.as_fd()),
                mproc_wire::FdRef(self.side.rx.as_fd()),
                mproc_wire::FdRef(shm.presence.as_fd()),
            ],
            in_flight.as_ref().map(|w| mproc_wire::FdRef(w.as_fd())),
            self.core.max_messages,
            self.core.joinable,
            shm.wake_fd.as_ref().map(|fd| mproc_wire::FdRef(fd.as_fd())),
        )
            .serialize(s)
    }
}

impl<'de> Deserialize<'de> for Ring {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        use serde::de::Error as _;
        #[allow(clippy::type_complexity)]
        let (
            producers,
            consumers,
            header,
            ring,
            [tx, rx, presence],
            in_flight,
            max_messages,
            joinable,
            wake_fd,
        ): (
            LockBlock,
            LockBlock,
            Block,
            SharedMemory,
            [mproc_wire::Fd; 3],
            Option<mproc_wire::Fd>,
            u32,
            bool,
            Option<mproc_wire::Fd>,
        ) = Deserialize::deserialize(d)?;
        let ring = Ring::assemble(
            producers,
            consumers,
            header,
            ring,
            (
                [tx.into_owned(), rx.into_owned(), presence.into_owned()],
                wake_fd.map(mproc_wire::Fd::into_owned),
            ),
            max_messages,
            joinable,
        )
        .map_err(|e| {
            D::Error::custom(format!(
                "received a bad queue: {}",
                mproc_sys::with_causes(&e)
            ))
        })?;
        // Registered first, then no longer in flight: a waiter sees it in one place or the
        // other (it looks at the pipe before the table).
        ring.register_here(true);
        drop(in_flight);
        Ok(ring)
    }
}
