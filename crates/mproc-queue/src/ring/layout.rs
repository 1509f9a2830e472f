//! Where everything sits in the queue's shared memory: the header's three lines, the words
//! on each, and the format of a record in the ring.
//!
//! The header (a block of the arena) has three lines 128 bytes apart, so that the
//! producers' line, the consumers' line and the join line never share a cache line (nor an
//! adjacent-line prefetch pair). The holders' table follows them (see `holders`).
//!
//! A record is an 8-byte header (`len: u32`, `meta: u32` = kind | side sequence << 2) and
//! `len` payload bytes, padded to 8. Positions are u32 byte counters that wrap; the offset
//! in the ring is `pos & (cap - 1)`.

use std::sync::atomic::{AtomicU32, AtomicU64};

use mproc_shm::Block;
use mproc_sys::Pinned;

use crate::error::Result;
use crate::holders;

/// The header's length, holders' table included.
pub(crate) const HEADER_LEN: usize = holders::HEADER_END;

/// Offsets of the producers' line.
mod producer_at {
    pub(super) const TAIL: usize = 0;
    pub(super) const FLAGS: usize = 8;
    pub(super) const CONSUMER_WAKE: usize = 12;
    pub(super) const SIDE_SEQ: usize = 16;
    pub(super) const TAIL_LAPS: usize = 20;
}

/// Offsets of the consumers' line.
mod consumer_at {
    pub(super) const HEAD: usize = 128;
    pub(super) const FLAGS: usize = 136;
    pub(super) const PRODUCER_WAKE: usize = 140;
    pub(super) const HEAD_LAPS: usize = 144;
}

/// Offsets of the join line.
mod join_at {
    pub(super) const UNFINISHED: usize = 256;
    pub(super) const WAKE: usize = 260;
    pub(super) const FLAGS: usize = 264;
    pub(super) const TARGET: usize = 268;
}

/// `ProducerLine::flags`: a consumer is (about to be) asleep on `consumer_wake`.
pub(crate) const CONSUMERS_ASLEEP: u32 = 1;
/// `ProducerLine::flags`: the queue is closed.
pub(crate) const CLOSED: u32 = 2;
/// `ConsumerLine::flags`: a producer is (about to be) asleep on `producer_wake`.
pub(crate) const PRODUCERS_ASLEEP: u32 = 1;
/// `JoinLine::flags`: a joiner is (about to be) asleep on `wake`.
pub(crate) const JOINERS_ASLEEP: u32 = 1;
/// `ProducerLine::flags`: a consumer awaits (async) a message: a wake also signals the
/// queue's eventfd (see `wait_async`). In the word the waker already reads, so that no
/// async waiter costs nothing more.
pub(crate) const CONSUMERS_AWAIT: u32 = 4;
/// `ConsumerLine::flags`: a producer awaits (async) room.
pub(crate) const PRODUCERS_AWAIT: u32 = 2;
/// `JoinLine::flags`: a joiner awaits (async) the last `task_done`.
pub(crate) const JOINERS_AWAIT: u32 = 2;

/// `tail_laps` (`head_laps`) counts the tail's (head's) crossings of a multiple of this
/// many bytes. A process's cached head (tail) is trusted only while the other side's lap
/// count is within one of what it was when cached: the position then moved less than
/// 2 × `LAP` bytes, so its u32 arithmetic cannot have wrapped around.
pub(crate) const LAP_SHIFT: u32 = 29;

/// `JoinLine::unfinished`: a put has counted its item and not yet published it.
pub(crate) const PENDING: u32 = 0x8000_0000;
/// `JoinLine::unfinished`: the count of items put and not yet marked done.
pub(crate) const COUNT: u32 = !PENDING;

/// The producers' line: written by producers under their lock, read by consumers.
pub(crate) struct ProducerLine<W32, W64> {
    /// The tail byte position (low half) and the count of puts (high half), published
    /// together by one store.
    pub(crate) tail: W64,
    /// `CONSUMERS_ASLEEP`, `CLOSED` and `CONSUMERS_AWAIT`.
    pub(crate) flags: W32,
    /// Bumped to wake sleeping consumers.
    pub(crate) consumer_wake: W32,
    /// The side sequence of the last record that sent a side datagram.
    pub(crate) side_seq: W32,
    /// The tail's laps (see `LAP_SHIFT`).
    pub(crate) tail_laps: W32,
}

/// The consumers' line: written by consumers under their lock, read by producers.
pub(crate) struct ConsumerLine<W32, W64> {
    /// The head byte position (low half) and the count of gets (high half), freed
    /// together by one store.
    pub(crate) head: W64,
    /// `PRODUCERS_ASLEEP` and `PRODUCERS_AWAIT`.
    pub(crate) flags: W32,
    /// Bumped to wake sleeping producers.
    pub(crate) producer_wake: W32,
    /// The head's laps (see `LAP_SHIFT`).
    pub(crate) head_laps: W32,
}

/// The join line of a `JoinableQueue`.
pub(crate) struct JoinLine<W32> {
    /// Items put and not yet marked done (`COUNT`), and `PENDING` while a put is between
    /// counting and publishing.
    pub(crate) unfinished: W32,
    /// Bumped to wake sleeping joiners.
    pub(crate) wake: W32,
    /// `JOINERS_ASLEEP` and `JOINERS_AWAIT`.
    pub(crate) flags: W32,
    /// The tail the put being counted publishes (for repair after a producer's death).
    pub(crate) target: W32,
}

/// The queue's header lines.
pub(crate) struct Header<W32, W64> {
    pub(crate) producer: ProducerLine<W32, W64>,
    pub(crate) consumer: ConsumerLine<W32, W64>,
    pub(crate) join: JoinLine<W32>,
}

/// The header's words, pinned in the block that holds them.
pub(crate) type PinnedHeader = Header<Pinned<AtomicU32>, Pinned<AtomicU64>>;

impl PinnedHeader {
    /// Pins every word of the header in `block`.
    pub(crate) fn pin(block: &Block) -> Result<PinnedHeader> {
        Ok(Header {
            producer: ProducerLine {
                tail: block.pin(producer_at::TAIL)?,
                flags: block.pin(producer_at::FLAGS)?,
                consumer_wake: block.pin(producer_at::CONSUMER_WAKE)?,
                side_seq: block.pin(producer_at::SIDE_SEQ)?,
                tail_laps: block.pin(producer_at::TAIL_LAPS)?,
            },
            consumer: ConsumerLine {
                head: block.pin(consumer_at::HEAD)?,
                flags: block.pin(consumer_at::FLAGS)?,
                producer_wake: block.pin(consumer_at::PRODUCER_WAKE)?,
                head_laps: block.pin(consumer_at::HEAD_LAPS)?,
            },
            join: JoinLine {
                unfinished: block.pin(join_at::UNFINISHED)?,
                wake: block.pin(join_at::WAKE)?,
                flags: block.pin(join_at::FLAGS)?,
                target: block.pin(join_at::TARGET)?,
            },
        })
    }
}

/// A byte position and a count packed in one u64 word (the tail and the puts, or the head
/// and the gets), so that both move with one store.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct End {
    /// The byte position (wrapping).
    pub(crate) pos: u32,
    /// How many records have passed it (wrapping).
    pub(crate) count: u32,
}

impl End {
    #[inline]
    pub(crate) fn unpack(word: u64) -> End {
        End {
            pos: word as u32,
            count: (word >> 32) as u32,
        }
    }

    #[inline]
    pub(crate) fn pack(self) -> u64 {
        (u64::from(self.count) << 32) | u64::from(self.pos)
    }

    /// This end after one more record of `len` bytes.
    #[inline]
    pub(crate) fn after(self, len: u32) -> End {
        End {
            pos: self.pos.wrapping_add(len),
            count: self.count.wrapping_add(1),
        }
    }

    /// Whether moving to `next` crosses a lap boundary (see `LAP_SHIFT`).
    #[inline]
    pub(crate) fn laps_to(self, next: u32) -> bool {
        (next >> LAP_SHIFT) != (self.pos >> LAP_SHIFT)
    }
}

/// The record kinds (the low two bits of `meta`).
pub(crate) mod kind {
    /// Payload in the ring.
    pub(crate) const INLINE: u32 = 1;
    /// Payload in the ring, file descriptors in a side datagram.
    pub(crate) const WITH_FDS: u32 = 2;
    /// Payload in a memfd (the first fd of the side datagram); the ring holds its size
    /// and how it travels (see [`large`](super::large)).
    pub(crate) const LARGE: u32 = 3;
}

/// The payload length of a `LARGE` record: the message's size, then how it travels
/// (each a little-endian u64).
pub(crate) const LARGE_LEN: usize = 16;

/// How a large message travels.
pub(crate) mod large {
    /// In a fresh sealed memfd of its own.
    pub(crate) const SEALED: u64 = 0;
    /// In a segment its producer reuses, freed by the consumer once copied out (see
    /// `spill`).
    pub(crate) const SEGMENT: u64 = 1;
}

/// A record's header length.
pub(crate) const REC_HEADER: usize = 8;
/// Side sequences are 30-bit counters.
pub(crate) const SEQ_MASK: u32 = (1 << 30) - 1;

/// A record's header: its payload length, its kind and its side sequence.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct RecordHeader {
    pub(crate) len: u32,
    pub(crate) meta: u32,
}

impl RecordHeader {
    #[inline]
    pub(crate) fn new(len: u32, kind: u32, side_seq: u32) -> RecordHeader {
        RecordHeader {
            len,
            meta: kind | (side_seq & SEQ_MASK) << 2,
        }
    }

    #[inline]
    pub(crate) fn kind(self) -> u32 {
        self.meta & 3
    }

    #[inline]
    pub(crate) fn side_seq(self) -> u32 {
        self.meta >> 2
    }

    /// The bytes of a whole record with this header: header, payload, padding.
    #[inline]
    pub(crate) fn record_len(self) -> usize {
        pad8(REC_HEADER.saturating_add(self.len as usize))
    }

    #[inline]
    pub(crate) fn to_bytes(self) -> [u8; REC_HEADER] {
        let mut b = [0u8; REC_HEADER];
        b[..4].copy_from_slice(&self.len.to_le_bytes());
        b[4..].copy_from_slice(&self.meta.to_le_bytes());
        b
    }

    /// Reads a header stored as one little-endian u64 word (len in the low half).
    #[inline]
    pub(crate) fn from_word(word: u64) -> RecordHeader {
        let word = word.to_le();
        RecordHeader {
            len: word as u32,
            meta: (word >> 32) as u32,
        }
    }
}

/// `n` rounded up to a multiple of 8.
#[inline]
pub(crate) fn pad8(n: usize) -> usize {
    n.saturating_add(7) & !7
}

/// Whether side sequence `a` comes before `b` (30-bit wrapping).
pub(crate) fn seq_before(a: u32, b: u32) -> bool {
    let d = b.wrapping_sub(a) & SEQ_MASK;
    d != 0 && d < (1 << 29)
}
