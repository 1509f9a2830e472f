//! The shared core of every queue: a ring of variable-length records in shared memory,
//! with a robust lock for each side and futex words to sleep on.
//!
//! - `layout`: where everything sits (the header's lines, a record's format);
//! - `shared`: the interface the protocol runs on (atomic words, futexes, record bytes,
//!   robust locks), and its implementation on the queue's shared memory;
//! - `protocol`: a put's phases (reserve room, publish) and a get's (take, free);
//! - `wait`: how each side waits for the other, and wakes it;
//! - `joinable`: a `JoinableQueue`'s count of unfinished items;
//! - `side`: the socket that carries a record's file descriptors;
//! - `spill`: the segments a producer reuses for large messages, freed by their consumers;
//! - `direct`: a put that encodes a value made of large pieces straight into shared memory;
//! - `align`: where a large payload goes in a consumer's buffer;
//! - `travel`: how a handle travels to another process (its fds, and its holder's mark);
//! - `fuzz` (`cfg(fuzzing)` only): the fuzz target's entry point;
//! - this file: a queue handle as each process holds it, and a message's way in (spilled
//!   to a segment when large) and out, one by one or in batches.

mod align;
mod direct;
#[cfg(fuzzing)]
pub mod fuzz;
#[cfg(test)]
mod heap;
mod joinable;
mod layout;
mod protocol;
mod shared;
mod side;
pub(crate) mod spill;
mod travel;
mod wait;
#[cfg(feature = "tokio")]
pub(crate) mod wait_async;

use std::os::fd::{AsFd, OwnedFd};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use mproc_shm::{Block, LockBlock, SharedMemory};
use mproc_sys::SealedBytes;

use crate::error::{Error, ErrorKind, Result};
use crate::holders;
use direct::check_fd_count;
pub(crate) use layout::REC_HEADER;
use layout::{HEADER_LEN, PinnedHeader, RecordHeader, kind};
use protocol::Core;
use shared::{Shared, Shm};
use side::Side;
use spill::{Mapped, Spills};

/// Finishes the record that starts at `start` (8-aligned) in `buf` and runs to its end, its
/// first `REC_HEADER` bytes left as room for its header: writes an `INLINE` header there
/// and pads the record to 8 bytes. A batch's record, ready for [`Ring::put_span`].
pub(crate) fn inline_header(buf: &mut Vec<u8>, start: usize) {
    let len = buf.len() - start - REC_HEADER;
    let header = RecordHeader::new(len as u32, kind::INLINE, 0);
    buf[start..start + REC_HEADER].copy_from_slice(&header.to_bytes());
    buf.resize(start + layout::pad8(buf.len() - start), 0);
}

/// The smallest ring, in bytes.
pub(crate) const MIN_BYTES: usize = 4096;
/// The largest ring, in bytes (positions are u32 counters: the ring must be well under 4 GiB).
pub(crate) const MAX_BYTES: usize = 1 << 30;
/// The ring size when none is asked for.
pub(crate) const DEFAULT_BYTES: usize = 8 << 20;

/// A message taken out of the ring, ready to decode.
pub(crate) enum Payload {
    /// In the caller's buffer (the common case: kept small, as it is returned per message).
    Inline,
    /// In the caller's buffer, with the fds that travelled beside it.
    WithFds(Vec<OwnedFd>),
    /// In a sealed memfd (one larger than a pooled segment), with the other fds that
    /// travelled beside it.
    Sealed(Box<(SealedBytes, Vec<OwnedFd>)>),
    /// In one of its producer's segments, freed when dropped, with the other fds.
    Segment(Box<(spill::Lent, Vec<OwnedFd>)>),
    /// Consumed, but unreadable (a large message whose memfd is not what it should be).
    Bad(Error),
}

/// How a wait ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Waited {
    Ready,
    TimedOut,
    /// No progress, and nobody else is left to make any (see `holders`).
    Alone,
}

impl Waited {
    fn from_ready(n: u32) -> Waited {
        if n > 0 {
            Waited::Ready
        } else {
            Waited::TimedOut
        }
    }

    /// `Ok` when ready, else why not.
    fn or_refuse(self) -> std::result::Result<(), Refused> {
        match self {
            Waited::Ready => Ok(()),
            Waited::TimedOut => Err(Refused::Timeout),
            Waited::Alone => Err(Refused::Disconnected),
        }
    }
}

/// Why a put or get could not complete now.
pub(crate) enum Refused {
    /// Full (put) or empty (get) until the deadline.
    Timeout,
    Closed,
    /// Nobody else is left to make progress (see `holders`).
    Disconnected,
    Failed(Error),
}

impl From<Error> for Refused {
    fn from(e: Error) -> Self {
        Refused::Failed(e)
    }
}

fn corrupt(what: &str) -> Error {
    Error::new(
        ErrorKind::Corrupt,
        format!("the queue's shared memory is corrupt: {what}"),
    )
}

/// A queue handle as one process holds it: the protocol over the queue's shared memory,
/// the side socket, and this handle's place in the holders' table.
pub(crate) struct Ring {
    core: Core<Shm>,
    side: Side,
    /// The segments this handle's large messages are put in, reused.
    spills: Spills,
    /// The segments of others' large messages this handle has received, kept mapped.
    mapped: Mapped,
    /// The process this handle is registered under in the holders' table (0: none; a
    /// copy inherited by fork keeps its parent's, which it must not unregister).
    registered: AtomicU64,
}

impl std::fmt::Debug for Ring {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ring")
            .field("bytes", &self.core.cap)
            .field("max_messages", &self.core.max_messages)
            .field("joinable", &self.core.joinable)
            .finish_non_exhaustive()
    }
}

impl Ring {
    /// Makes a ring of at least `bytes` bytes (rounded up to a power of two) holding at
    /// most `max_messages` records; `wake_async`: with an eventfd for async waiters (in a
    /// build with the `tokio` feature).
    pub(crate) fn new(
        bytes: usize,
        max_messages: usize,
        joinable: bool,
        watch_peers: bool,
        wake_async: bool,
    ) -> Result<Ring> {
        if bytes > MAX_BYTES {
            return Err(Error::new(
                ErrorKind::InvalidInput,
                format!("a queue holds at most {MAX_BYTES} bytes; {bytes} were asked for"),
            ));
        }
        if max_messages == 0 {
            return Err(Error::new(
                ErrorKind::InvalidInput,
                "a bounded queue must hold at least one message",
            ));
        }
        let cap = bytes.max(MIN_BYTES).next_power_of_two();
        let max_messages = u32::try_from(max_messages)
            .unwrap_or(u32::MAX)
            .min(layout::COUNT);
        let (tx, rx) = mproc_sys::seqpacket_pair()
            .map_err(|e| Error::io("creating a queue's side socket", e))?;
        let (presence, _writer) =
            mproc_sys::pipe().map_err(|e| Error::io("creating a queue's presence pipe", e))?;
        let ring = Self::assemble(
            LockBlock::alloc()?,
            LockBlock::alloc()?,
            Block::alloc(HEADER_LEN)?,
            SharedMemory::create(cap)?,
            ([tx, rx, presence], shared::new_wake_fd(wake_async)?),
            max_messages,
            joinable,
        )?;
        if !watch_peers {
            holders::unwatch(&ring.core.shared.header_block);
        }
        ring.register_here(false);
        Ok(ring)
    }

    /// Registers this process as holding this handle; `received` when it did not create
    /// it (the queue is then shared).
    fn register_here(&self, received: bool) {
        let me = mproc_sys::current_identity();
        holders::register(&self.core.shared.header_block, me, received);
        self.registered.store(me, Ordering::SeqCst);
    }

    /// A write end of the presence pipe for a copy of this handle on its way to another
    /// process (see `holders`); `None` (and no more `Disconnected` for this queue) when it
    /// cannot be opened.
    fn open_in_flight(&self) -> Option<OwnedFd> {
        let shm = &self.core.shared;
        holders::bump(&shm.header_block);
        let w = mproc_sys::open_pipe_writer(shm.presence.as_fd());
        if w.is_err() {
            holders::mark_untracked(&shm.header_block);
        }
        w.ok()
    }

    fn assemble(
        producers: LockBlock,
        consumers: LockBlock,
        header_block: Block,
        ring: SharedMemory,
        ([tx, rx, presence], wake_fd): ([OwnedFd; 3], Option<OwnedFd>),
        max_messages: u32,
        joinable: bool,
    ) -> Result<Ring> {
        let cap = ring.len();
        if !(MIN_BYTES..=MAX_BYTES).contains(&cap) || !cap.is_power_of_two() {
            return Err(corrupt("the ring's size is not a power of two in range"));
        }
        if header_block.len() < HEADER_LEN || max_messages == 0 || max_messages > layout::COUNT {
            return Err(corrupt("the queue's header is too short or its bound is 0"));
        }
        // Written to by every wake that an async waiter asked for: an eventfd, or nothing.
        if wake_fd
            .as_ref()
            .is_some_and(|fd| !mproc_sys::is_eventfd(fd.as_fd()))
        {
            return Err(corrupt("the queue's wake-up fd is not an eventfd"));
        }
        // A child made by fork closes these unless the queue is in its argument.
        for fd in [&tx, &rx, &presence].into_iter().chain(&wake_fd) {
            mproc_sys::track_owned_fd(fd.as_fd());
        }
        let shm = Shm {
            header: PinnedHeader::pin(&header_block)?,
            producers,
            consumers,
            header_block,
            ring,
            presence,
            wake_fd,
        };
        Ok(Ring {
            core: Core::new(shm, max_messages, joinable),
            side: Side { tx, rx },
            spills: Spills::default(),
            mapped: Mapped::default(),
            registered: AtomicU64::new(0),
        })
    }

    pub(crate) fn capacity_bytes(&self) -> usize {
        self.core.cap as usize
    }

    pub(crate) fn max_messages(&self) -> usize {
        self.core.max_messages as usize
    }

    /// The largest payload copied into the ring; larger ones travel in their own memfd.
    #[inline]
    pub(crate) fn inline_max(&self) -> usize {
        self.core.cap as usize / 4 - REC_HEADER
    }

    /// Messages waiting (approximate while others work).
    pub(crate) fn len(&self) -> usize {
        self.core.len()
    }

    pub(crate) fn is_full(&self) -> bool {
        self.core.is_full()
    }

    pub(crate) fn is_closed(&self) -> bool {
        self.core.is_closed()
    }

    /// Enqueues the record in `buf[REC_HEADER..]` (the first `REC_HEADER` bytes are room
    /// for its header), with `fds` beside it: spills a large payload to a segment of this
    /// handle's (or its own sealed memfd), reserves room, sends the fds, publishes.
    #[inline]
    pub(crate) fn put(
        &self,
        buf: &mut [u8],
        mut fds: Vec<OwnedFd>,
        deadline: Option<Instant>,
    ) -> std::result::Result<(), Refused> {
        self.refuse_if_filling()?;
        if buf.len() - REC_HEADER > self.inline_max() {
            let payload = &buf[REC_HEADER..];
            let (how, claimed) = match self.claim_segment(payload.len(), deadline)? {
                Some(mut segment) => {
                    segment
                        .write_at(0, payload)
                        .map_err(|e| Error::io("copying a large message into its segment", e))?;
                    fds.insert(0, segment.fd()?);
                    (layout::large::SEGMENT, Some(segment))
                }
                None => {
                    fds.insert(
                        0,
                        direct::sealed(payload.len(), |w| w.write_at(0, payload))?,
                    );
                    (layout::large::SEALED, None)
                }
            };
            return self.put_large(payload.len(), how, fds, claimed, deadline);
        }
        let kind = if fds.is_empty() {
            kind::INLINE
        } else {
            kind::WITH_FDS
        };
        self.put_record(kind, buf, fds, None, deadline)
    }

    /// Enqueues `record` (its first `REC_HEADER` bytes are room for its header) of `kind`,
    /// with `fds` beside it: reserves room, sends the fds, publishes.
    #[inline]
    fn put_record(
        &self,
        kind: u32,
        record: &mut [u8],
        fds: Vec<OwnedFd>,
        claimed: Option<spill::Claimed>,
        deadline: Option<Instant>,
    ) -> std::result::Result<(), Refused> {
        check_fd_count(&fds)?;
        let len = (record.len() - REC_HEADER) as u32;
        let rec = layout::pad8(record.len());
        if rec > self.core.cap as usize {
            return Err(Refused::Failed(corrupt("record larger than the ring")));
        }
        let room = self.core.reserve(rec, deadline)?;
        let mut side_seq = 0;
        if kind != kind::INLINE {
            side_seq = room.next_side_seq();
            self.side
                .send(side_seq, &fds, deadline, || self.core.shared.others_gone())?;
        }
        room.publish(record, RecordHeader::new(len, kind, side_seq))?;
        if let Some(segment) = claimed {
            segment.handed_over();
        }
        Ok(())
    }

    /// The most bytes of records one batch moves at once (put or got).
    #[inline]
    pub(crate) fn batch_max_bytes(&self) -> usize {
        self.core.cap as usize / 4
    }

    /// Whether this is a `JoinableQueue`'s ring (which counts one item per put, so takes no
    /// batch).
    pub(crate) fn is_joinable(&self) -> bool {
        self.core.joinable
    }

    /// Enqueues a batch: `span` holds whole `INLINE` records (headers in place, each
    /// padded to 8), `recs` their lengths. Waits until the first fits, then publishes it
    /// and as many of the next as fit now with one store of the tail, under one hold of
    /// the producers' lock, waking consumers once. Returns how many were put.
    pub(crate) fn put_span(
        &self,
        span: &[u8],
        recs: &[usize],
        deadline: Option<Instant>,
    ) -> std::result::Result<usize, Refused> {
        debug_assert!(!self.core.joinable && !recs.is_empty());
        self.refuse_if_filling()?;
        let first = recs[0];
        if first > self.core.cap as usize {
            return Err(Refused::Failed(corrupt("record larger than the ring")));
        }
        let room = self.core.reserve(first, deadline)?;
        let (more, bytes) = room.more_fitting(first, &recs[1..]);
        room.publish_span(&span[..first + bytes], more as u32 + 1)?;
        Ok(more + 1)
    }

    /// Takes up to `max` (≥ 1) messages, waiting until `deadline` for the first. When the
    /// first carries fds or is large, it alone is taken and returned as a payload (in
    /// `buf`, as [`get`](Ring::get) returns it); otherwise the run of small messages after
    /// it is copied out with one hold of the consumers' lock, each message's bytes handed
    /// to `each` (under the lock: a message that `each` refuses stays in the queue,
    /// unless it is the first, which is consumed and its error returned), and freed with
    /// one store of the head.
    pub(crate) fn get_many(
        &self,
        buf: &mut Vec<u8>,
        max: usize,
        deadline: Option<Instant>,
        mut each: impl FnMut(&[u8]) -> Result<()>,
    ) -> std::result::Result<Option<Payload>, Refused> {
        let taken = loop {
            let taken = self.core.take(deadline)?;
            if taken.header().kind() == kind::INLINE {
                break taken;
            }
            match self.read_message(&taken, buf, false) {
                Ok(Some((payload, _))) => {
                    taken.free();
                    return Ok(Some(payload));
                }
                Ok(None) => taken.free(),
                Err(e) => {
                    taken.skip_all();
                    return Err(Refused::Failed(e));
                }
            }
        };
        let (n, bytes) = taken.inline_run(max, self.batch_max_bytes());
        buf.resize(bytes, 0);
        if let Err(e) = taken.read_span(buf) {
            taken.skip_all();
            return Err(Refused::Failed(e));
        }
        // The bytes and the count of the records `each` took.
        let (mut at, mut count) = (0, 0);
        for i in 0..n {
            let mut word = [0u8; REC_HEADER];
            word.copy_from_slice(&buf[at..at + REC_HEADER]);
            let header = RecordHeader::from_word(u64::from_le_bytes(word));
            let rec = header.record_len();
            let body = buf.get(at + REC_HEADER..at + REC_HEADER + header.len as usize);
            let done = match body {
                Some(body) if at + rec <= bytes => each(body),
                // Changed under the lock: nothing after it can be trusted.
                _ => {
                    taken.skip_all();
                    return Err(Refused::Failed(corrupt("a record changed while read")));
                }
            };
            if let Err(e) = done {
                if i == 0 {
                    taken.free();
                    return Err(Refused::Failed(e));
                }
                break;
            }
            at += rec;
            count += 1;
        }
        taken.free_span(at, count);
        Ok(None)
    }

    /// Takes the next message into `buf` (or a sealed memfd), waiting until `deadline`.
    /// (The queue's own get is [`get_at`](Ring::get_at); this is the tests' and the fuzz
    /// target's, and any caller's that wants the payload at 0.)
    #[inline]
    #[cfg_attr(not(any(test, fuzzing)), allow(dead_code))]
    pub(crate) fn get(
        &self,
        buf: &mut Vec<u8>,
        deadline: Option<Instant>,
    ) -> std::result::Result<Payload, Refused> {
        let (payload, _) = self.get_at(buf, deadline, false)?;
        payload.into_buffer(buf).map_err(Refused::Failed)
    }

    /// Like [`get`](Ring::get), with a large payload placed in `buf` at the start returned
    /// (see [`align::lead`]) rather than at 0.
    #[inline]
    pub(crate) fn get_at(
        &self,
        buf: &mut Vec<u8>,
        deadline: Option<Instant>,
        align: bool,
    ) -> std::result::Result<(Payload, usize), Refused> {
        loop {
            let taken = self.core.take(deadline)?;
            match self.read_message(&taken, buf, align) {
                Ok(Some(payload)) => {
                    taken.free();
                    return Ok(payload);
                }
                // Its side datagram was taken by a consumer that died: lost.
                Ok(None) => taken.free(),
                Err(e) => {
                    // No record boundary can be trusted.
                    taken.skip_all();
                    return Err(Refused::Failed(e));
                }
            }
        }
    }

    /// Reads the message of a taken record: its payload (at the start returned: 0 unless
    /// `align`), and its side datagram's fds (`None` when they are gone).
    #[inline]
    fn read_message(
        &self,
        taken: &protocol::Taken<'_, Shm>,
        buf: &mut Vec<u8>,
        align: bool,
    ) -> Result<Option<(Payload, usize)>> {
        let header = taken.header();
        let len = header.len as usize;
        match header.kind() {
            kind::INLINE | kind::WITH_FDS => {
                let start = if align {
                    align::lead(buf, len, |head| taken.read_payload(head))?
                } else {
                    0
                };
                // Not cleared first: the copy overwrites every byte kept (a buffer reused
                // for messages of one size is never zeroed again).
                buf.resize(start + len, 0);
                taken.read_payload(&mut buf[start..])?;
                if header.kind() == kind::INLINE {
                    return Ok(Some((Payload::Inline, start)));
                }
                Ok(self
                    .side
                    .take(header.side_seq())?
                    .map(|fds| (Payload::WithFds(fds), start)))
            }
            kind::LARGE => self.read_large(taken, header.side_seq(), len),
            _ => Err(corrupt("a record of unknown kind")),
        }
    }

    /// Reads a large record: its message's size and kind, and the memfd beside it. Out of
    /// line, so that the small messages' path stays short.
    #[cold]
    #[inline(never)]
    fn read_large(
        &self,
        taken: &protocol::Taken<'_, Shm>,
        side_seq: u32,
        len: usize,
    ) -> Result<Option<(Payload, usize)>> {
        if len != layout::LARGE_LEN {
            return Err(corrupt("a large record of the wrong length"));
        }
        let mut meta = [0u8; layout::LARGE_LEN];
        taken.read_payload(&mut meta)?;
        let Some(mut fds) = self.side.take(side_seq)? else {
            return Ok(None);
        };
        if fds.is_empty() {
            return Err(corrupt("a large message came without its memfd"));
        }
        let [size, how] =
            [&meta[..8], &meta[8..]].map(|w| u64::from_le_bytes(w.try_into().unwrap_or_default()));
        let Ok(size) = usize::try_from(size) else {
            return Ok(Some((Payload::Bad(corrupt("a large message's size")), 0)));
        };
        let memfd = fds.remove(0);
        // A bad memfd costs this message only: the record is consumed either way.
        Ok(Some(match how {
            layout::large::SEGMENT => match self.mapped.lend(&memfd, size) {
                Ok(lent) => (Payload::Segment(Box::new((lent, fds))), 0),
                Err(e) => (Payload::Bad(e), 0),
            },
            layout::large::SEALED => match SealedBytes::map(memfd, size) {
                Ok(bytes) => (Payload::Sealed(Box::new((bytes, fds))), 0),
                Err(e) => (Payload::Bad(Error::io("mapping a large message", e)), 0),
            },
            _ => (Payload::Bad(corrupt("a large message of unknown kind")), 0),
        }))
    }

    /// Closes the queue: later puts fail, gets drain what is left and then fail.
    pub(crate) fn close(&self) {
        self.core.close();
    }

    pub(crate) fn unfinished(&self) -> usize {
        self.core.unfinished()
    }

    pub(crate) fn task_done(&self) -> Result<()> {
        self.core.task_done()
    }

    /// Waits until every item put has been marked done, until `deadline`, or until
    /// nobody else is left to mark any (see `holders`).
    pub(crate) fn join(&self, deadline: Option<Instant>) -> Waited {
        self.core.join(deadline)
    }
}

/// Unregisters this process, unless the handle is a copy inherited by fork that its
/// process never took as its own.
impl Drop for Ring {
    fn drop(&mut self) {
        let id = *self.registered.get_mut();
        if id != 0 && id == mproc_sys::current_identity() {
            holders::unregister(&self.core.shared.header_block, id);
        }
        let shm = &self.core.shared;
        for fd in [&self.side.tx, &self.side.rx, &shm.presence]
            .into_iter()
            .chain(&shm.wake_fd)
        {
            mproc_sys::untrack_owned_fd(fd.as_fd());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::layout::{CONSUMERS_ASLEEP, COUNT, LAP_SHIFT, PENDING};
    use super::*;
    use std::sync::Arc;

    fn header(ring: &Ring) -> &PinnedHeader {
        &ring.core.shared.header
    }

    fn put_bytes(ring: &Ring, payload: &[u8]) {
        let mut buf = vec![0u8; REC_HEADER];
        buf.extend_from_slice(payload);
        assert!(ring.put(&mut buf, Vec::new(), None).is_ok());
    }

    fn get_bytes(ring: &Ring) -> std::result::Result<Vec<u8>, Refused> {
        let mut buf = Vec::new();
        match ring.get(&mut buf, Some(Instant::now()))? {
            Payload::Inline | Payload::WithFds(_) => Ok(buf),
            Payload::Sealed(b) => Ok(b.0.as_slice().to_vec()),
            Payload::Segment(_) => unreachable!("get copies a segment's message out"),
            Payload::Bad(e) => Err(Refused::Failed(e)),
        }
    }

    #[test]
    fn records_wrap_around_the_ring_intact() {
        let ring = Ring::new(MIN_BYTES, usize::MAX, false, true, true).unwrap();
        for round in 0..50u8 {
            let payload: Vec<u8> = (0..(round as usize * 37 % 700))
                .map(|i| i as u8 ^ round)
                .collect();
            put_bytes(&ring, &payload);
            put_bytes(&ring, &[round]);
            assert!(get_bytes(&ring).ok() == Some(payload));
            assert!(get_bytes(&ring).ok() == Some(vec![round]));
        }
        assert!(matches!(get_bytes(&ring), Err(Refused::Timeout)));
    }

    #[test]
    fn a_scribbled_header_is_reported_and_the_queue_goes_on() {
        let ring = Ring::new(MIN_BYTES, usize::MAX, false, true, true).unwrap();
        for garbage in [
            [0xffu8; 8],
            [8, 0, 0, 0, 0, 0, 0, 0],
            [4, 0, 0, 0, 3, 0, 0, 0],
        ] {
            put_bytes(&ring, b"first");
            put_bytes(&ring, b"second");
            let head = header(&ring).consumer.head.load(Ordering::SeqCst) as u32;
            ring.core.ring_write(head, &garbage).unwrap();
            match get_bytes(&ring) {
                Err(Refused::Failed(e)) => assert_eq!(e.kind(), ErrorKind::Corrupt),
                _ => panic!("garbage {garbage:?} was not reported"),
            }
            // What was waiting is dropped; what comes next is delivered.
            put_bytes(&ring, b"after");
            assert!(get_bytes(&ring).ok().as_deref() == Some(&b"after"[..]));
        }
    }

    #[test]
    fn a_record_whose_side_datagram_is_gone_is_skipped() {
        let ring = Ring::new(MIN_BYTES, usize::MAX, false, true, true).unwrap();
        let (fd, _other) = mproc_sys::socketpair().unwrap();
        let mut buf = vec![0u8; REC_HEADER + 3];
        assert!(ring.put(&mut buf, vec![fd], None).is_ok());
        put_bytes(&ring, b"next");
        // A consumer took the datagram and died before freeing the record.
        let mut fds = Vec::new();
        mproc_sys::recv_with_fds(ring.side.rx.as_fd(), &mut [0u8; 4], &mut fds, true).unwrap();
        assert!(get_bytes(&ring).ok().as_deref() == Some(&b"next"[..]));
    }

    #[test]
    fn large_messages_travel_in_reused_segments_then_in_sealed_memfds() {
        let ring = Ring::new(MIN_BYTES, usize::MAX, false, true, true).unwrap();
        let payload =
            |n: usize| -> Vec<u8> { (0..3 * MIN_BYTES).map(|i| (i % 13 + n) as u8).collect() };
        // One more than the pool while none is taken: the last goes in a sealed memfd.
        for n in 0..=spill::POOL {
            put_bytes(&ring, &payload(n));
        }
        let mut buf = Vec::new();
        for n in 0..=spill::POOL {
            match ring.get(&mut buf, None) {
                Ok(Payload::Inline) if n < spill::POOL => assert!(buf == payload(n)),
                Ok(Payload::Sealed(sealed)) if n == spill::POOL => {
                    assert!(sealed.0.as_slice() == payload(n).as_slice());
                    assert!(sealed.1.is_empty());
                }
                _ => panic!("message {n} did not travel as it should"),
            }
        }
        // Every segment was freed: reused.
        put_bytes(&ring, &payload(9));
        assert!(matches!(ring.get(&mut buf, None), Ok(Payload::Inline)) && buf == payload(9));
    }

    /// Moves the shared state as if other processes had put and got `bytes` more bytes
    /// (as `n` messages) while this process's caches sat unused.
    fn others_moved(ring: &Ring, bytes: u64, n: u32, tail_extra: u32) {
        let h = header(ring);
        let hg = h.consumer.head.load(Ordering::SeqCst);
        let head = (hg as u32).wrapping_add(bytes as u32);
        let gets = ((hg >> 32) as u32).wrapping_add(n);
        let laps = (bytes >> LAP_SHIFT) as u32 + 1;
        h.consumer.head_laps.fetch_add(laps, Ordering::SeqCst);
        h.producer.tail_laps.fetch_add(laps, Ordering::SeqCst);
        h.consumer
            .head
            .store((u64::from(gets) << 32) | u64::from(head), Ordering::SeqCst);
        let tail = head.wrapping_add(tail_extra);
        h.producer.tail.store(
            (u64::from(gets.wrapping_add(tail_extra / 16)) << 32) | u64::from(tail),
            Ordering::SeqCst,
        );
    }

    #[test]
    fn a_consumer_cache_a_whole_wrap_old_is_not_trusted() {
        let ring = Ring::new(MIN_BYTES, usize::MAX, false, true, true).unwrap();
        put_bytes(&ring, b"old");
        put_bytes(&ring, b"old");
        assert!(get_bytes(&ring).ok().as_deref() == Some(&b"old"[..]));
        // This process cached tail 32 with head at 16. Others then moved the head almost
        // 4 GiB, to 16 bytes short of the cached tail (mod 2^32), and the queue is empty:
        // the cached tail, trusted, would hand out the old record again.
        others_moved(&ring, (1 << 32) - 16, 1 << 20, 0);
        assert!(matches!(get_bytes(&ring), Err(Refused::Timeout)));
    }

    #[test]
    fn a_producer_cache_a_whole_wrap_old_is_not_trusted() {
        let ring = Ring::new(MIN_BYTES, usize::MAX, false, true, true).unwrap();
        put_bytes(&ring, b"x");
        assert!(get_bytes(&ring).is_ok());
        put_bytes(&ring, b"y"); // caches head 16
        assert!(get_bytes(&ring).is_ok());
        // Others moved on almost 4 GiB and filled the ring: the tail is now 32 bytes past
        // the cached head (mod 2^32), which, trusted, would say the ring is nearly empty.
        others_moved(
            &ring,
            (1 << 32) + 32 - MIN_BYTES as u64,
            1 << 20,
            MIN_BYTES as u32,
        );
        let mut buf = vec![0u8; REC_HEADER + 1];
        assert!(matches!(
            ring.put(&mut buf, Vec::new(), Some(Instant::now())),
            Err(Refused::Timeout)
        ));
    }

    #[test]
    fn a_sleeper_nobody_wakes_looks_again_by_itself() {
        // A producer that died between publishing and waking, played by hand.
        let ring = Arc::new(Ring::new(MIN_BYTES, usize::MAX, false, true, true).unwrap());
        let (tx, rx) = std::sync::mpsc::channel();
        let r = Arc::clone(&ring);
        std::thread::spawn(move || {
            let _ = tx.send(get_bytes_blocking(&r));
        });
        while header(&ring).producer.flags.load(Ordering::SeqCst) & CONSUMERS_ASLEEP == 0 {
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
        let tp = header(&ring).producer.tail.load(Ordering::SeqCst);
        let record = [4, 0, 0, 0, kind::INLINE as u8, 0, 0, 0, 1, 2, 3, 4];
        ring.core.ring_write(tp as u32, &record).unwrap();
        header(&ring).producer.tail.store(
            (((tp >> 32) + 1) << 32) | u64::from((tp as u32).wrapping_add(16)),
            Ordering::SeqCst,
        );
        let got = rx.recv_timeout(std::time::Duration::from_secs(30));
        assert!(got.ok().and_then(|r| r.ok()).as_deref() == Some(&[1u8, 2, 3, 4][..]));
    }

    fn get_bytes_blocking(ring: &Ring) -> std::result::Result<Vec<u8>, Refused> {
        let mut buf = Vec::new();
        match ring.get(&mut buf, None)? {
            Payload::Inline => Ok(buf),
            _ => Err(Refused::Closed),
        }
    }

    #[test]
    fn join_repairs_a_put_whose_producer_died_counted_but_unpublished() {
        let ring = Arc::new(Ring::new(MIN_BYTES, usize::MAX, true, true, true).unwrap());
        let r = Arc::clone(&ring);
        // A producer thread counts its put and dies holding the lock, before publishing.
        std::thread::spawn(move || {
            let m = r.core.shared.producers.slot().mutex();
            assert_eq!(m.lock(None), mproc_sys::LockStatus::Acquired);
            header(&r).join.target.store(999, Ordering::SeqCst);
            header(&r)
                .join
                .unfinished
                .fetch_add(1 | PENDING, Ordering::SeqCst);
        })
        .join()
        .unwrap();
        assert_eq!(ring.unfinished(), 1);
        // No producer comes again; join repairs by itself.
        assert_eq!(
            ring.join(Some(Instant::now() + std::time::Duration::from_secs(30))),
            Waited::Ready
        );
        assert_eq!(ring.unfinished(), 0);
    }

    #[test]
    fn a_joinable_count_at_its_limit_refuses_puts_until_task_done() {
        let ring = Ring::new(MIN_BYTES, usize::MAX, true, true, true).unwrap();
        header(&ring).join.unfinished.store(COUNT, Ordering::SeqCst);
        let mut buf = vec![0u8; REC_HEADER + 1];
        match ring.put(&mut buf, Vec::new(), None) {
            Err(Refused::Failed(e)) => assert_eq!(e.kind(), ErrorKind::Full),
            _ => panic!("a put past the joinable limit was taken"),
        }
        assert_eq!(ring.unfinished(), COUNT as usize);
        ring.task_done().unwrap();
        let mut buf = vec![0u8; REC_HEADER + 1];
        assert!(ring.put(&mut buf, Vec::new(), None).is_ok());
        assert_eq!(ring.unfinished(), COUNT as usize);
    }

    mod against_a_model {
        use super::super::*;
        use proptest::prelude::*;
        use std::collections::VecDeque;

        #[derive(Clone, Debug)]
        enum Op {
            /// A put of this many bytes (each the op's index, so messages differ).
            Put(usize),
            Get,
        }

        fn ops() -> impl Strategy<Value = Vec<Op>> {
            // Small messages mostly, some past a quarter of the ring (the memfd path).
            let size = prop_oneof![8 => 0usize..200, 2 => 200usize..1100, 1 => 1100usize..5000];
            prop::collection::vec(
                prop_oneof![3 => size.prop_map(Op::Put), 2 => Just(Op::Get)],
                1..300,
            )
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(256))]

            /// Every record's layout and every wrap-around, against a `VecDeque` and a byte
            /// count: a put succeeds exactly when the model says it fits, a get returns the
            /// model's front, and `len`/`is_full` agree.
            #[test]
            fn the_ring_behaves_as_a_bounded_fifo(ops in ops(), max_messages in 1usize..40) {
                let ring = Ring::new(MIN_BYTES, max_messages, false, true, true).unwrap();
                let cap = ring.capacity_bytes();
                let mut model: VecDeque<Vec<u8>> = VecDeque::new();
                let mut used = 0usize;
                let record_len = |len: usize| {
                    if len > ring.inline_max() {
                        layout::pad8(REC_HEADER + layout::LARGE_LEN)
                    } else {
                        layout::pad8(REC_HEADER + len)
                    }
                };
                for (i, op) in ops.into_iter().enumerate() {
                    match op {
                        Op::Put(len) => {
                            let payload = vec![i as u8; len];
                            let fits = used + record_len(len) <= cap && model.len() < max_messages;
                            let mut buf = vec![0u8; REC_HEADER];
                            buf.extend_from_slice(&payload);
                            match ring.put(&mut buf, Vec::new(), Some(Instant::now())) {
                                Ok(()) => {
                                    prop_assert!(fits, "put {len} bytes accepted, model says full");
                                    used += record_len(len);
                                    model.push_back(payload);
                                }
                                Err(Refused::Timeout) => prop_assert!(!fits, "put {len} refused, model says it fits"),
                                Err(_) => prop_assert!(false, "put {len} failed"),
                            }
                        }
                        Op::Get => {
                            let mut buf = Vec::new();
                            match ring.get(&mut buf, Some(Instant::now())) {
                                Ok(payload) => {
                                    let got = match payload {
                                        Payload::Inline => buf,
                                        Payload::Sealed(s) => s.0.as_slice().to_vec(),
                                        _ => Vec::new(),
                                    };
                                    let want = model.pop_front();
                                    prop_assert!(want.is_some(), "a get from an empty model");
                                    let want = want.unwrap();
                                    used -= record_len(want.len());
                                    prop_assert_eq!(got, want);
                                }
                                Err(Refused::Timeout) => prop_assert!(model.is_empty()),
                                Err(_) => prop_assert!(false, "get failed"),
                            }
                        }
                    }
                    prop_assert_eq!(ring.len(), model.len());
                    let full = model.len() >= max_messages || used + REC_HEADER + 8 > cap;
                    prop_assert_eq!(ring.is_full(), full);
                }
            }
        }
    }
}
