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

/// Writes a message of `len` bytes into a sealed memfd of its own with `write`, and seals
/// it. A seal refused as busy (`EBUSY`: the kernel saw the pages still referenced; seen
/// under load) is tried again, with a fresh memfd, up to twice.
pub(crate) fn sealed(
    len: usize,
    mut write: impl FnMut(&SealedWriter) -> std::io::Result<()>,
) -> crate::error::Result<OwnedFd> {
    let mut tries = 0;
    loop {
        let r = SealedWriter::new("mproc-queue-message", len).and_then(|w| {
            write(&w)?;
            w.seal()
        });
        match r {
            Err(e) if e.raw_os_error() == Some(16) && tries < 2 => tries += 1,
            Err(e) => {
                // An encode's own error comes back as itself.
                return Err(match e.downcast::<Error>() {
                    Ok(inner) => inner,
                    Err(e) => Error::io("putting a large message in its own memfd", e),
                });
            }
            Ok(fd) => return Ok(fd),
        }
    }
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

    /// Enqueues a `LARGE` record for a message of `size` bytes that travels `how`, in the
    /// segment or memfd that is the first of `fds` (`claimed`: this handle's segment, handed
    /// over once published).
    pub(crate) fn put_large(
        &self,
        size: usize,
        how: u64,
        fds: Vec<OwnedFd>,
        claimed: Option<crate::ring::spill::Claimed>,
        deadline: Option<Instant>,
    ) -> std::result::Result<(), Refused> {
        let mut large = [0u8; REC_HEADER + layout::LARGE_LEN];
        large[REC_HEADER..REC_HEADER + 8].copy_from_slice(&(size as u64).to_le_bytes());
        large[REC_HEADER + 8..].copy_from_slice(&how.to_le_bytes());
        self.put_record(kind::LARGE, &mut large, fds, claimed, deadline)
    }

    /// Claims one of this handle's segments for a message of `len` bytes, waiting a little
    /// for one to be freed when all are busy (see `Spills::wait_for_free`); `None`: the
    /// message goes in a sealed memfd of its own.
    pub(crate) fn claim_segment(
        &self,
        len: usize,
        deadline: Option<Instant>,
    ) -> crate::error::Result<Option<crate::ring::spill::Claimed>> {
        loop {
            if let Some(claimed) = self.spills.claim_for(len)? {
                return Ok(Some(claimed));
            }
            if !self.spills.worth_waiting(len)
                || !self.spills.wait_for_free(deadline, || self.core.gets())
            {
                return Ok(None);
            }
        }
    }

    /// Enqueues `value`, of `len` bytes encoded, larger than the ring takes: encoded into a
    /// free segment of this handle's, or else into a sealed memfd of its own.
    fn put_value_large<T: Serialize + ?Sized>(
        &self,
        value: &T,
        len: usize,
        deadline: Option<Instant>,
    ) -> std::result::Result<(), Refused> {
        let (written, mut fds, fd, how, claimed) = match self.claim_segment(len, deadline)? {
            Some(mut segment) => {
                let (written, fds) =
                    mproc_wire::encode_to_sink(value, &mut segment, len).map_err(Error::from)?;
                let fd = segment.fd()?;
                (written, fds, fd, layout::large::SEGMENT, Some(segment))
            }
            None => {
                let mut out = (0, Vec::new());
                let fd = sealed(len, |memfd| {
                    out = mproc_wire::encode_to_sink(value, &mut InMemfd(memfd), len)
                        .map_err(|e| std::io::Error::other(Error::from(e)))?;
                    Ok(())
                })?;
                (out.0, out.1, fd, layout::large::SEALED, None)
            }
        };
        check_len(written, len)?;
        fds.insert(0, fd);
        self.put_large(written, how, fds, claimed, deadline)
    }
}

#[cfg(test)]
mod tests {
    use std::cell::Cell;
    use std::os::fd::AsFd;

    use serde::{Deserialize, Serialize, Serializer};
    use serde_bytes::ByteBuf;

    use crate::ring::spill;
    use crate::{Builder, ErrorKind, Queue};

    fn bytes(n: usize, seed: u8) -> ByteBuf {
        ByteBuf::from(
            (0..n)
                .map(|i| (i as u8).wrapping_mul(31) ^ seed)
                .collect::<Vec<_>>(),
        )
    }

    #[test]
    fn large_pieces_travel_inline_wrapping_in_segments_and_in_memfds() {
        // A 64 KiB ring: up to 16 KiB inline (wrapping around the ring's end), larger
        // ones in segments, and past the pool in sealed memfds.
        let q: Queue<(u32, ByteBuf, String)> = Builder::new().max_bytes(64 << 10).build().unwrap();
        let sizes = [
            9 << 10,
            13 << 10,
            15 << 10,
            100 << 10,
            11 << 10,
            9 << 10,
            300 << 10,
        ];
        for round in 0..6u8 {
            for (i, &n) in sizes.iter().enumerate() {
                let v = (i as u32, bytes(n, round), "s".repeat(n / 2));
                q.put(v.clone()).unwrap();
                assert!(
                    q.get().unwrap() == v,
                    "round {round}, message {i} ({n} bytes)"
                );
            }
        }
        // More large messages than the pool while none is taken: the last in a memfd.
        let all: Vec<_> = (0..=spill::POOL as u8)
            .map(|i| (u32::from(i), bytes(200 << 10, i), String::new()))
            .collect();
        for v in &all {
            q.put(v.clone()).unwrap();
        }
        for v in &all {
            assert!(&q.get().unwrap() == v);
        }
    }

    #[test]
    fn a_large_value_with_an_fd_arrives_with_it() {
        let q: Queue<(ByteBuf, mproc_wire::Fd)> = Queue::new().unwrap();
        for n in [64 << 10, 3 << 20] {
            let (a, b) = mproc_sys::socketpair().unwrap();
            q.put((bytes(n, 1), mproc_wire::Fd::from(a))).unwrap();
            let (got, fd) = q.get().unwrap();
            assert!(got == bytes(n, 1));
            mproc_sys::send_vectored_with_fds(
                fd.as_fd(),
                &[std::io::IoSlice::new(b"x")],
                &[],
                false,
            )
            .unwrap();
            let mut buf = [0u8; 1];
            assert_eq!(mproc_sys::peek(b.as_fd(), &mut buf).unwrap(), 1);
        }
    }

    /// Serializes as a byte string of a length that grows by one each time it is asked.
    #[derive(Deserialize)]
    struct Growing(#[serde(with = "serde_bytes")] Vec<u8>);

    thread_local! {
        static GROWN: Cell<usize> = const { Cell::new(0) };
    }

    impl Serialize for Growing {
        fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
            let n = GROWN.replace(GROWN.get() + 1);
            s.serialize_bytes(&vec![7u8; self.0.len() + n])
        }
    }

    #[test]
    fn a_value_that_encodes_to_another_size_each_time_is_refused() {
        let q: Queue<Growing> = Builder::new().max_bytes(64 << 10).build().unwrap();
        // Inline, in a segment, in a memfd (the pool taken by messages left waiting).
        for n in [10 << 10, 100 << 10] {
            let e = q.put(Growing(vec![0; n])).unwrap_err();
            assert!(matches!(&e, crate::PutError::Failed(_, e) if e.kind() == ErrorKind::Encode));
        }
        assert!(q.is_empty());
        let q2: Queue<ByteBuf> = Builder::new().max_bytes(64 << 10).build().unwrap();
        q2.put(bytes(20 << 10, 3)).unwrap();
        assert!(q2.get().unwrap() == bytes(20 << 10, 3));
    }

    /// Puts into its queue on its third walk (the first two: the try into the scratch
    /// buffer and the count; the third: the encode under the producers' lock), and says
    /// whether that put was taken.
    struct PutsIntoItself {
        queue: Queue<PutsIntoItself>,
        walks: Cell<u32>,
        nested: std::rc::Rc<Cell<Option<bool>>>,
    }

    impl Serialize for PutsIntoItself {
        fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
            self.walks.set(self.walks.get() + 1);
            if self.walks.get() == 3 {
                let inner = PutsIntoItself {
                    queue: self.queue.clone(),
                    walks: Cell::new(100),
                    nested: std::rc::Rc::default(),
                };
                self.nested.set(Some(self.queue.put(inner).is_ok()));
            }
            s.serialize_bytes(&[1u8; 20 << 10])
        }
    }

    impl<'de> Deserialize<'de> for PutsIntoItself {
        fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            let _ = ByteBuf::deserialize(d)?;
            Err(serde::de::Error::custom("not made on this side"))
        }
    }

    #[test]
    fn a_value_that_puts_into_its_own_queue_while_encoded_is_refused_not_deadlocked() {
        let q: Queue<PutsIntoItself> = Queue::new().unwrap();
        let nested = std::rc::Rc::default();
        let v = PutsIntoItself {
            queue: q.clone(),
            walks: Cell::new(0),
            nested: std::rc::Rc::clone(&nested),
        };
        assert!(q.put(v).is_ok());
        assert_eq!(nested.get(), Some(false));
        assert_eq!(q.len(), 1);
    }
}
