//! The ring's protocol over any [`Shared`] memory: a put reserves room, then publishes its
//! record under the producers' lock; a get takes a record, then frees it, under the
//! consumers' lock.
//!
//! # Robustness
//!
//! A producer writes its record, then publishes it with one store of the producers'
//! `tail`; a consumer copies a record out, then frees it with one store of the consumers'
//! `head`. Both run under robust locks, so a process killed in the middle leaves the ring
//! as it was before its operation: the next locker gets `OwnerDied` and goes on. A killed
//! producer's message is lost; a killed consumer's message stays in the ring unless the
//! consumer had already taken its side datagram, in which case the record is skipped
//! (lost) when its datagram is found missing.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::Instant;

use mproc_sys::LockStatus;

use crate::error::{Error, ErrorKind, Result};
use crate::ring::layout::{CLOSED, COUNT, End, REC_HEADER, RecordHeader, SEQ_MASK, pad8};
use crate::ring::shared::{RobustLock, Shared, Word};
use crate::ring::{Refused, Waited, corrupt};

/// A held robust lock, released on drop.
pub(crate) struct Held<'a, L: RobustLock>(&'a L);

impl<L: RobustLock> Drop for Held<'_, L> {
    #[inline]
    fn drop(&mut self) {
        self.0.unlock();
    }
}

impl<'a, L: RobustLock> Held<'a, L> {
    /// Takes `lock` until `deadline`, with whether its previous holder died holding it
    /// (the caller repairs, then calls `mark_consistent`).
    #[inline]
    pub(crate) fn take(lock: &'a L, deadline: Option<Instant>) -> Option<(Held<'a, L>, bool)> {
        Self::from_status(lock, lock.lock(deadline))
    }

    /// Takes `lock` if it is free now (see [`take`](Held::take)).
    #[inline]
    pub(crate) fn try_take(lock: &'a L) -> Option<(Held<'a, L>, bool)> {
        Self::from_status(lock, lock.try_lock())
    }

    #[inline]
    fn from_status(lock: &'a L, status: LockStatus) -> Option<(Held<'a, L>, bool)> {
        match status {
            LockStatus::Acquired => Some((Held(lock), false)),
            LockStatus::OwnerDied => Some((Held(lock), true)),
            LockStatus::WouldBlock => None,
        }
    }

    #[inline]
    pub(crate) fn mark_consistent(&self) {
        self.0.mark_consistent();
    }
}

/// The last position of the other side this process read, and this side's lap count then.
/// Stale is safe (the other side only moves forward, so a stale position underestimates
/// what it allows) as long as this side has not moved so far since that the u32
/// difference wraps: the lap count bounds that (see `LAP_SHIFT`).
#[derive(Default)]
struct Seen {
    /// The consumers' `head` word, as a producer of this process last read it.
    head: AtomicU64,
    /// `tail_laps` when `head` was read.
    head_at_tail_laps: AtomicU32,
    /// The tail position, as a consumer of this process last read it.
    tail: AtomicU32,
    /// `head_laps` when `tail` was read.
    tail_at_head_laps: AtomicU32,
}

/// The protocol over memory `S`, with this process's caches.
pub(crate) struct Core<S: Shared> {
    pub(crate) shared: S,
    pub(crate) cap: u32,
    pub(crate) max_messages: u32,
    pub(crate) joinable: bool,
    seen: Seen,
    pub(super) pacing: crate::ring::wait::Pacing,
}

/// Room for one record at the tail, with the producers' lock held: a put between waiting
/// for room and publishing.
pub(crate) struct Reserved<'a, S: Shared> {
    core: &'a Core<S>,
    held: Held<'a, S::Lock>,
    tail: End,
}

/// The record at the head, with the consumers' lock held: a get between taking the record
/// and freeing it.
pub(crate) struct Taken<'a, S: Shared> {
    core: &'a Core<S>,
    held: Held<'a, S::Lock>,
    head: End,
    head_laps: u32,
    header: RecordHeader,
    /// The tail as seen when taking (records up to it are published).
    tail: u32,
}

impl<S: Shared> Core<S> {
    /// The protocol over `shared`, whose ring must be a power of two of at most 2 GiB.
    pub(crate) fn new(shared: S, max_messages: u32, joinable: bool) -> Core<S> {
        let cap = shared.ring_len() as u32;
        Core {
            shared,
            cap,
            max_messages,
            joinable,
            seen: Seen::default(),
            pacing: crate::ring::wait::Pacing::default(),
        }
    }

    #[inline]
    /// Forgets this process's caches, as a handle fresh from `new` has none: the fuzz
    /// target reuses one ring for many inputs (`cfg(fuzzing)` only).
    #[cfg(fuzzing)]
    pub(crate) fn forget_caches(&mut self) {
        self.seen = Seen::default();
        self.pacing = crate::ring::wait::Pacing::default();
    }

    fn producer_end(&self, order: Ordering) -> End {
        End::unpack(self.shared.header().producer.tail.load(order))
    }

    #[inline]
    fn consumer_end(&self, order: Ordering) -> End {
        End::unpack(self.shared.header().consumer.head.load(order))
    }

    /// The consumers' count of messages taken (wrapping).
    #[inline]
    pub(crate) fn gets(&self) -> u32 {
        self.consumer_end(Ordering::Relaxed).count
    }

    /// Messages waiting (approximate while others work).
    pub(crate) fn len(&self) -> usize {
        let gets = self.consumer_end(Ordering::Acquire).count;
        let puts = self.producer_end(Ordering::Acquire).count;
        (puts.wrapping_sub(gets) as i32).max(0) as usize
    }

    pub(crate) fn is_full(&self) -> bool {
        let head = self.consumer_end(Ordering::Acquire);
        let tail = self.producer_end(Ordering::Acquire);
        let count = tail.count.wrapping_sub(head.count);
        let used = tail.pos.wrapping_sub(head.pos) as usize;
        count >= self.max_messages || used + REC_HEADER + 8 > self.cap as usize
    }

    pub(crate) fn is_closed(&self) -> bool {
        self.shared.header().producer.flags.load(Ordering::Acquire) & CLOSED != 0
    }

    /// Whether a record of `rec` bytes fits between `tail` and `head`.
    #[inline]
    fn fits(&self, tail: End, head: End, rec: usize) -> bool {
        let used = tail.pos.wrapping_sub(head.pos) as usize;
        let count = tail.count.wrapping_sub(head.count);
        used.saturating_add(rec) <= self.cap as usize && count < self.max_messages
    }

    /// Writes `data` at ring position `pos`, wrapping at the end of the ring.
    #[inline]
    pub(crate) fn ring_write(&self, pos: u32, data: &[u8]) -> Result<()> {
        let off = (pos & (self.cap - 1)) as usize;
        let first = data.len().min(self.cap as usize - off);
        self.shared.write(off, &data[..first])?;
        if first < data.len() {
            self.shared.write(0, &data[first..])?;
        }
        Ok(())
    }

    /// Reads `buf.len()` bytes at ring position `pos`, wrapping at the end of the ring.
    #[inline]
    pub(crate) fn ring_read(&self, pos: u32, buf: &mut [u8]) -> Result<()> {
        let off = (pos & (self.cap - 1)) as usize;
        let first = buf.len().min(self.cap as usize - off);
        let (a, b) = buf.split_at_mut(first);
        self.shared.read(off, a)?;
        if !b.is_empty() {
            self.shared.read(0, b)?;
        }
        Ok(())
    }

    /// Takes the producers' lock until `deadline`, repairing after a producer that died
    /// holding it.
    #[inline]
    pub(crate) fn lock_producers(&self, deadline: Option<Instant>) -> Option<Held<'_, S::Lock>> {
        let (held, died) = Held::take(self.shared.producers(), deadline)?;
        if died {
            self.repair_producers();
            held.mark_consistent();
        }
        Some(held)
    }

    // ---- producing ----

    /// The first phase of a put: waits until a record of `rec` bytes fits, and returns
    /// the room with the producers' lock held.
    #[inline]
    pub(crate) fn reserve(
        &self,
        rec: usize,
        deadline: Option<Instant>,
    ) -> std::result::Result<Reserved<'_, S>, Refused> {
        let p = &self.shared.header().producer;
        loop {
            let Some(held) = self.lock_producers(deadline) else {
                return Err(Refused::Timeout);
            };
            if self.is_closed() {
                return Err(Refused::Closed);
            }
            self.check_join_count()?;
            let tail = self.producer_end(Ordering::Relaxed);
            if !tail.pos.is_multiple_of(8) {
                return Err(Refused::Failed(corrupt(
                    "the tail is not at a record boundary",
                )));
            }
            let laps = p.tail_laps.load(Ordering::Relaxed);
            let mut head = End::unpack(self.seen.head.load(Ordering::Relaxed));
            let cached =
                laps.wrapping_sub(self.seen.head_at_tail_laps.load(Ordering::Relaxed)) <= 1;
            if cached && self.fits(tail, head, rec) {
                return Ok(Reserved {
                    core: self,
                    held,
                    tail,
                });
            }
            let word = self.shared.header().consumer.head.load(Ordering::Acquire);
            head = End::unpack(word);
            self.seen.head.store(word, Ordering::Relaxed);
            self.seen.head_at_tail_laps.store(laps, Ordering::Relaxed);
            if tail.pos.wrapping_sub(head.pos) > self.cap {
                return Err(Refused::Failed(corrupt("head and tail are too far apart")));
            }
            if self.fits(tail, head, rec) {
                return Ok(Reserved {
                    core: self,
                    held,
                    tail,
                });
            }
            drop(held);
            self.wait_for_room(rec, head.count, deadline).or_refuse()?;
        }
    }

    /// Waits (without the lock) until a record of `rec` bytes fits, the queue closes, or
    /// the deadline passes. Progress: the records consumers freed since `gets`.
    fn wait_for_room(&self, rec: usize, gets: u32, deadline: Option<Instant>) -> Waited {
        // Both ends afresh: other producers may have moved the tail since, and the head
        // may be past the tail we read.
        let ready = || {
            let tail = self.producer_end(Ordering::SeqCst);
            let head = self.consumer_end(Ordering::SeqCst);
            if self.is_closed() {
                1
            } else if self.fits(tail, head, rec) {
                head.count.wrapping_sub(gets).max(1)
            } else {
                0
            }
        };
        self.wait(crate::ring::wait::Waiter::Producer, deadline, ready)
    }

    // ---- consuming ----

    /// The first phase of a get: waits until a record is published, checks its header,
    /// and returns it with the consumers' lock held.
    #[inline]
    pub(crate) fn take(
        &self,
        deadline: Option<Instant>,
    ) -> std::result::Result<Taken<'_, S>, Refused> {
        let c = &self.shared.header().consumer;
        loop {
            let Some((held, died)) = Held::take(self.shared.consumers(), deadline) else {
                return Err(Refused::Timeout);
            };
            if died {
                // Nothing to repair: a consumer frees its record only once done with it.
                held.mark_consistent();
            }
            let head = self.consumer_end(Ordering::Relaxed);
            let head_laps = c.head_laps.load(Ordering::Relaxed);
            let mut tail = self.seen.tail.load(Ordering::Relaxed);
            let mut closed = false;
            // Other consumers may have taken the head past the cached tail; within a lap
            // that shows as a difference above `cap` (see `LAP_SHIFT`).
            if tail == head.pos
                || tail.wrapping_sub(head.pos) > self.cap
                || head_laps.wrapping_sub(self.seen.tail_at_head_laps.load(Ordering::Relaxed)) > 1
            {
                // Closed is read only with the tail (they share the producers' line), and
                // before it: a close comes after the last put's tail.
                closed = self.is_closed();
                tail = self.producer_end(Ordering::Acquire).pos;
                self.seen.tail.store(tail, Ordering::Relaxed);
                self.seen
                    .tail_at_head_laps
                    .store(head_laps, Ordering::Relaxed);
            }
            if tail == head.pos {
                drop(held);
                if closed {
                    return Err(Refused::Closed);
                }
                self.wait_for_message(head, deadline).or_refuse()?;
                continue;
            }
            let mut taken = Taken {
                core: self,
                held,
                head,
                head_laps,
                header: RecordHeader { len: 0, meta: 0 },
                tail,
            };
            match self.read_header(head.pos, tail) {
                Ok(header) => {
                    taken.header = header;
                    return Ok(taken);
                }
                Err(e) => {
                    taken.skip_all();
                    return Err(Refused::Failed(e));
                }
            }
        }
    }

    /// Waits (without the lock) until a record is published past `head`, the queue
    /// closes, or the deadline passes. Progress: the messages waiting.
    fn wait_for_message(&self, head: End, deadline: Option<Instant>) -> Waited {
        let ready = || {
            let tail = self.producer_end(Ordering::SeqCst);
            if tail.pos != head.pos {
                tail.count.wrapping_sub(head.count).max(1)
            } else {
                u32::from(self.is_closed())
            }
        };
        self.wait(crate::ring::wait::Waiter::Consumer, deadline, ready)
    }

    /// Reads and checks the header of the record at `head`, published up to `tail`.
    #[inline]
    fn read_header(&self, head: u32, tail: u32) -> Result<RecordHeader> {
        let avail = tail.wrapping_sub(head) as usize;
        if avail > self.cap as usize || avail < REC_HEADER || !head.is_multiple_of(8) {
            return Err(corrupt(
                "head and tail are not a whole number of records apart",
            ));
        }
        // Records start 8-aligned, so a header never wraps: one aligned read.
        let header =
            RecordHeader::from_word(self.shared.read_u64((head & (self.cap - 1)) as usize)?);
        if header.record_len() > avail {
            return Err(corrupt("a record runs past the tail"));
        }
        Ok(header)
    }

    // ---- closing ----

    /// Closes the queue: later puts fail, gets drain what is left and then fail.
    pub(crate) fn close(&self) {
        let h = self.shared.header();
        if let Some(_held) = self.lock_producers(None) {
            h.producer.flags.fetch_or(CLOSED, Ordering::SeqCst);
        }
        for ev in [&h.producer.consumer_wake, &h.consumer.producer_wake] {
            ev.fetch_add(1, Ordering::SeqCst);
            self.shared.futex_wake_all(ev);
        }
        self.shared.signal_async();
    }

    /// Refuses a put that would carry a `JoinableQueue`'s count into `PENDING`.
    #[inline]
    fn check_join_count(&self) -> std::result::Result<(), Refused> {
        let unfinished = &self.shared.header().join.unfinished;
        if self.joinable && unfinished.load(Ordering::Relaxed) & COUNT == COUNT {
            return Err(Refused::Failed(Error::new(
                ErrorKind::Full,
                format!(
                    "a JoinableQueue counts at most {COUNT} unfinished items: \
                     call task_done() for some"
                ),
            )));
        }
        Ok(())
    }
}

impl<'a, S: Shared> Reserved<'a, S> {
    /// Numbers a record whose file descriptors travel in a side datagram.
    #[inline]
    pub(crate) fn next_side_seq(&self) -> u32 {
        let side_seq = &self.core.shared.header().producer.side_seq;
        let seq = side_seq.load(Ordering::Relaxed).wrapping_add(1) & SEQ_MASK;
        side_seq.store(seq, Ordering::Relaxed);
        seq
    }

    /// How many of the records whose lengths `recs` gives (each padded, header included)
    /// fit after this one of `first` bytes, and their bytes: a batch's room, taken with
    /// one look at the consumers' head.
    #[inline]
    pub(crate) fn more_fitting(&self, first: usize, recs: &[usize]) -> (usize, usize) {
        let head = self.core.consumer_end(Ordering::Acquire);
        let used = self.tail.pos.wrapping_sub(head.pos) as usize + first;
        let count = self.tail.count.wrapping_sub(head.count).wrapping_add(1);
        let room = (self.core.cap as usize).saturating_sub(used);
        let slots = self.core.max_messages.saturating_sub(count) as usize;
        let (mut n, mut bytes) = (0, 0);
        for &rec in recs.iter().take(slots) {
            if bytes + rec > room {
                break;
            }
            bytes += rec;
            n += 1;
        }
        (n, bytes)
    }

    /// The last phases of a batch's put: writes `span`, `n` whole records whose headers
    /// are in place, at the tail, publishes them with one store, and wakes sleeping
    /// consumers. Not for a `JoinableQueue` (it counts one item per put).
    #[inline]
    pub(crate) fn publish_span(self, span: &[u8], n: u32) -> Result<()> {
        debug_assert!(!self.core.joinable && span.len().is_multiple_of(8));
        self.core.ring_write(self.tail.pos, span)?;
        let next = End {
            pos: self.tail.pos.wrapping_add(span.len() as u32),
            count: self.tail.count.wrapping_add(n),
        };
        self.written_up_to(next).publish();
        Ok(())
    }

    /// The last phases of a put: writes `record` (whose first `REC_HEADER` bytes become
    /// `header`) at the tail, publishes it, and wakes sleeping consumers.
    #[inline]
    pub(crate) fn publish(self, record: &mut [u8], header: RecordHeader) -> Result<()> {
        self.write(record, header)?.publish();
        Ok(())
    }

    /// Writes `data` at `at` bytes into the payload of the record being put, past the
    /// tail, where nobody looks until it is published (the caller keeps within the room
    /// it reserved; the ring's bounds are checked either way).
    #[inline]
    pub(crate) fn write_body(&self, at: usize, data: &[u8]) -> Result<()> {
        let pos = self.tail.pos.wrapping_add((REC_HEADER + at) as u32);
        self.core.ring_write(pos, data)
    }

    /// The last phases of a put whose payload [`write_body`](Reserved::write_body) wrote:
    /// writes `header` in front of it, publishes the record, and wakes sleeping consumers.
    #[inline]
    pub(crate) fn publish_body(self, header: RecordHeader) -> Result<()> {
        self.core.ring_write(self.tail.pos, &header.to_bytes())?;
        let next = self.tail.after(header.record_len() as u32);
        self.written_up_to(next).publish();
        Ok(())
    }

    /// Writes `record` (whose first `REC_HEADER` bytes become `header`) past the tail,
    /// where nobody looks until it is published: a failure here leaves nothing to undo.
    #[inline]
    pub(crate) fn write(self, record: &mut [u8], header: RecordHeader) -> Result<Written<'a, S>> {
        record[..REC_HEADER].copy_from_slice(&header.to_bytes());
        let next = self.tail.after(pad8(record.len()) as u32);
        self.core.ring_write(self.tail.pos, record)?;
        Ok(self.written_up_to(next))
    }

    /// The record between the tail and `next` is written: what is left is to publish it.
    #[inline]
    fn written_up_to(self, next: End) -> Written<'a, S> {
        let Reserved { core, held, tail } = self;
        Written {
            core,
            held,
            tail,
            next,
        }
    }
}

/// A record written past the tail, with the producers' lock held: a put between writing
/// and publishing.
pub(crate) struct Written<'a, S: Shared> {
    core: &'a Core<S>,
    held: Held<'a, S::Lock>,
    tail: End,
    next: End,
}

impl<S: Shared> Written<'_, S> {
    /// Makes the record visible with one store of the tail (a `JoinableQueue` counts it
    /// first, marked pending until the store).
    #[inline]
    pub(crate) fn store_tail(&self) {
        let p = &self.core.shared.header().producer;
        if self.tail.laps_to(self.next.pos) {
            // Before publishing: a lap counted early only makes caches reload.
            p.tail_laps.fetch_add(1, Ordering::Relaxed);
        }
        self.core.count_pending(self.next.pos);
        p.tail.store(self.next.pack(), Ordering::Release);
        self.core.uncount_pending();
    }

    /// Publishes the record, releases the producers' lock and wakes sleeping consumers.
    #[inline]
    pub(crate) fn publish(self) {
        self.store_tail();
        let Written { core, held, .. } = self;
        drop(held);
        core.wake_consumers();
    }
}

impl<S: Shared> Taken<'_, S> {
    #[inline]
    pub(crate) fn header(&self) -> RecordHeader {
        self.header
    }

    /// Copies the start of the record's payload into `buf` (at most its length).
    #[inline]
    pub(crate) fn read_payload(&self, buf: &mut [u8]) -> Result<()> {
        debug_assert!(buf.len() <= self.header.len as usize);
        let body = self.head.pos.wrapping_add(REC_HEADER as u32);
        self.core.ring_read(body, buf)
    }

    /// The records after this one, up to `max` more and `max_bytes` bytes in all, that
    /// are published, in the ring, and carry no file descriptor: their count and bytes
    /// (this one's included). A header that does not look right ends the run (the get
    /// that reaches it reports it).
    #[inline]
    pub(crate) fn inline_run(&self, max: usize, max_bytes: usize) -> (usize, usize) {
        let mut bytes = self.header.record_len();
        let mut n = 1;
        while n < max {
            let pos = self.head.pos.wrapping_add(bytes as u32);
            let avail = self.tail.wrapping_sub(pos) as usize;
            if avail < REC_HEADER || avail > self.core.cap as usize {
                break;
            }
            let Ok(word) = self
                .core
                .shared
                .read_u64((pos & (self.core.cap - 1)) as usize)
            else {
                break;
            };
            let header = RecordHeader::from_word(word);
            let rec = header.record_len();
            if header.kind() != crate::ring::layout::kind::INLINE
                || rec > avail
                || bytes + rec > max_bytes
            {
                break;
            }
            bytes += rec;
            n += 1;
        }
        (n, bytes)
    }

    /// Copies `buf.len()` bytes of whole records, headers included, from this one on.
    #[inline]
    pub(crate) fn read_span(&self, buf: &mut [u8]) -> Result<()> {
        self.core.ring_read(self.head.pos, buf)
    }

    /// The last phase of a batch's get: frees `n` records of `bytes` bytes from this one
    /// on (as [`inline_run`](Taken::inline_run) found them) and wakes sleeping producers.
    #[inline]
    pub(crate) fn free_span(self, bytes: usize, n: u32) {
        let next = End {
            pos: self.head.pos.wrapping_add(bytes as u32),
            count: self.head.count.wrapping_add(n),
        };
        self.free_to(next);
    }

    /// The last phase of a get: frees the record and wakes sleeping producers.
    #[inline]
    pub(crate) fn free(self) {
        let next = self.head.after(self.header.record_len() as u32);
        self.free_to(next);
    }

    #[inline]
    fn free_to(self, next: End) {
        let Taken {
            core, held, head, ..
        } = self;
        let c = &core.shared.header().consumer;
        if head.laps_to(next.pos) {
            c.head_laps.fetch_add(1, Ordering::Relaxed);
        }
        c.head.store(next.pack(), Ordering::Release);
        drop(held);
        core.wake_producers();
    }

    /// Skips every record published so far, when no record boundary can be trusted (a
    /// header or payload found corrupt), and wakes sleeping producers.
    pub(crate) fn skip_all(self) {
        let Taken {
            core,
            held,
            head_laps,
            ..
        } = self;
        let c = &core.shared.header().consumer;
        let tail = core.shared.header().producer.tail.load(Ordering::Acquire);
        // The head may jump far: count laps generously (a lap too many only makes caches
        // reload).
        c.head_laps.fetch_add(2, Ordering::Relaxed);
        c.head.store(tail, Ordering::SeqCst);
        core.seen.tail.store(tail as u32, Ordering::Relaxed);
        core.seen
            .tail_at_head_laps
            .store(head_laps.wrapping_add(2), Ordering::Relaxed);
        drop(held);
        core.wake_producers();
    }
}
