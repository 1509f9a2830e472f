//! The shared core of every queue: a ring of variable-length records in shared memory,
//! one robust lock for the producers and one for the consumers, and futex "event" words
//! to sleep on.
//!
//! # Layout
//!
//! - `header` (a block of the arena), three lines 128 bytes apart so that the producers'
//!   line, the consumers' line and the joinable counters never share a cache line (nor
//!   an adjacent-line prefetch pair):
//!   - producers' line: `TAILPUTS` (u64: tail byte position in the low half, puts count
//!     in the high half, published together by one store), `FLAGS` (consumers asleep,
//!     closed), `EV_C` (bumped to wake consumers), `SIDE_SEQ` (the last side record sent),
//!     `TAIL_LAPS` (see `LAP_SHIFT`);
//!   - consumers' line: `HEADGETS` (u64, as `TAILPUTS`), `PFLAGS` (producers asleep),
//!     `EV_P` (bumped to wake producers), `HEAD_LAPS`;
//!   - joinable line: `UNFINISHED` (count, and `PENDING` while a put is between counting
//!     and publishing), `JOIN_EV`, `JOIN_SLEEP`, `TARGET` (the tail that put publishes).
//! - `ring` (a memfd segment of `cap` bytes, a power of two): records of an 8-byte header
//!   (`len: u32`, `meta: u32` = kind | side sequence << 2) and `len` payload bytes, padded
//!   to 8. Positions are u32 byte counters that wrap; the offset is `pos & (cap - 1)`.
//! - `side`: a SOCK_SEQPACKET pair shared by every holder. A record that carries file
//!   descriptors (a large message's sealed memfd, or handles inside the value) sends them
//!   as one datagram tagged with the record's side sequence, *before* publishing the
//!   record, both under the producers' lock; a consumer takes the datagram under the
//!   consumers' lock. Both sides thus see the same order.
//!
//! # Robustness
//!
//! A producer writes its record, then publishes it with one store of `TAILPUTS`; a
//! consumer copies a record out, then frees it with one store of `HEADGETS`. Both run
//! under robust locks, so a process killed in the middle leaves the ring as it was before
//! its operation: the next locker gets `OwnerDied` and goes on. A killed producer's message
//! is lost; a killed consumer's message stays in the ring unless the consumer had already
//! taken its datagram, in which case the record is skipped (lost) when its datagram is
//! found missing.

use std::os::fd::{AsFd, OwnedFd};
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::Instant;

use mproc_shm::{Block, LockBlock, SharedMemory};
use mproc_sys::{FutexWait, LockStatus, Pinned, RawMutex, SealedBytes, SealedWriter};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::error::{Error, ErrorKind, Result};
use crate::holders;

/// The smallest ring, in bytes.
pub(crate) const MIN_BYTES: usize = 4096;
/// The largest ring, in bytes (positions are u32 counters: the ring must be well under 4 GiB).
pub(crate) const MAX_BYTES: usize = 1 << 30;
/// The ring size when none is asked for.
pub(crate) const DEFAULT_BYTES: usize = 8 << 20;

const HEADER_LEN: usize = holders::HEADER_END;
// Producers' line.
const TAILPUTS: usize = 0;
const FLAGS: usize = 8;
const EV_C: usize = 12;
const SIDE_SEQ: usize = 16;
const TAIL_LAPS: usize = 20;
// Consumers' line.
const HEADGETS: usize = 128;
const PFLAGS: usize = 136;
const EV_P: usize = 140;
const HEAD_LAPS: usize = 144;
// Joinable line.
const UNFINISHED: usize = 256;
const JOIN_EV: usize = 260;
const JOIN_SLEEP: usize = 264;
const TARGET: usize = 268;

/// `FLAGS`: a consumer is (about to be) asleep on `EV_C`.
const CONSUMERS_ASLEEP: u32 = 1;
/// `FLAGS`: the queue is closed.
const CLOSED: u32 = 2;
/// `PFLAGS`: a producer is (about to be) asleep on `EV_P`.
const PRODUCERS_ASLEEP: u32 = 1;
/// `TAIL_LAPS` (`HEAD_LAPS`) counts the tail's (head's) crossings of a multiple of this
/// many bytes. A process's cached head (tail) is trusted only while the other side's lap
/// count is within one of what it was when cached: the position then moved less than
/// 2 × `LAP` bytes, so its u32 arithmetic cannot have wrapped around (see `Ring::put`).
const LAP_SHIFT: u32 = 29;
/// `UNFINISHED`: a put has counted its item and not yet published it.
const PENDING: u32 = 0x8000_0000;
const COUNT: u32 = !PENDING;

/// Record kinds (the low two bits of `meta`).
const INLINE: u32 = 1;
/// Payload in the ring, file descriptors in a side datagram.
const WITH_FDS: u32 = 2;
/// Payload in a sealed memfd (the first fd of the side datagram); the ring holds its size.
const LARGE: u32 = 3;
/// Side sequences are 30-bit counters.
const SEQ_MASK: u32 = (1 << 30) - 1;
pub(crate) const REC_HEADER: usize = 8;

/// A message taken out of the ring, ready to decode.
pub(crate) enum Payload {
    /// In the caller's buffer (the common case: kept small, as it is returned per message).
    Inline,
    /// In the caller's buffer, with the fds that travelled beside it.
    WithFds(Vec<OwnedFd>),
    /// In a sealed memfd, with the other fds that travelled beside it.
    Sealed(Box<(SealedBytes, Vec<OwnedFd>)>),
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

/// The queue as every handle in every process sees it, plus this process's caches.
pub(crate) struct Ring {
    producers: LockBlock,
    consumers: LockBlock,
    header: Block,
    ring: SharedMemory,
    side_tx: OwnedFd,
    side_rx: OwnedFd,
    /// The read end of the presence pipe (see `holders`).
    presence: OwnedFd,
    /// The process this handle is registered under in the holders' table (0: none; a
    /// copy inherited by fork keeps its parent's, which it must not unregister).
    registered: AtomicU64,
    cap: u32,
    max_messages: u32,
    joinable: bool,
    tailputs: Pinned<AtomicU64>,
    flags: Pinned<AtomicU32>,
    ev_c: Pinned<AtomicU32>,
    side_seq: Pinned<AtomicU32>,
    tail_laps: Pinned<AtomicU32>,
    headgets: Pinned<AtomicU64>,
    head_laps: Pinned<AtomicU32>,
    pflags: Pinned<AtomicU32>,
    ev_p: Pinned<AtomicU32>,
    unfinished: Pinned<AtomicU32>,
    join_ev: Pinned<AtomicU32>,
    join_sleep: Pinned<AtomicU32>,
    target: Pinned<AtomicU32>,
    /// The last `HEADGETS` a producer of this process read, and `TAIL_LAPS` then. Stale
    /// is safe (the head only moves forward, so a stale one
    /// underestimates the room) as long as the tail has not moved so far since that the
    /// u32 difference wraps: the lap count bounds that.
    head_seen: AtomicU64,
    head_seen_laps: AtomicU32,
    /// The last tail a consumer of this process read, and `HEAD_LAPS` then (likewise).
    tail_seen: AtomicU32,
    tail_seen_laps: AtomicU32,
    /// How long to spin before sleeping, adapted to how waits have been ending.
    spin: AtomicU32,
    /// The pauses before a waiting consumer's (producer's) first look (see `wait`).
    first_c: AtomicU32,
    first_p: AtomicU32,
}

impl std::fmt::Debug for Ring {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ring")
            .field("bytes", &self.cap)
            .field("max_messages", &self.max_messages)
            .field("joinable", &self.joinable)
            .finish_non_exhaustive()
    }
}

/// A held robust lock, released on drop.
struct Held<'a>(&'a RawMutex);

impl Drop for Held<'_> {
    fn drop(&mut self) {
        let _ = self.0.unlock();
    }
}

/// Takes `m` until `deadline`; `Ok(true)` when its previous holder died holding it (the
/// caller repairs, then the lock is marked consistent).
fn lock(m: &RawMutex, deadline: Option<Instant>) -> Option<(Held<'_>, bool)> {
    match m.lock(deadline) {
        LockStatus::Acquired => Some((Held(m), false)),
        LockStatus::OwnerDied => Some((Held(m), true)),
        LockStatus::WouldBlock => None,
    }
}

/// The longest a waiter sleeps before looking again by itself. A process killed between
/// publishing and waking (or between `task_done`'s count and its wake) leaves sleepers
/// that nobody will wake; they notice within this long.
const MAX_NAP: std::time::Duration = std::time::Duration::from_millis(100);

/// When a sleep should end: the deadline or `MAX_NAP` from now, whichever is first, and
/// whether that is the deadline.
fn nap_until(deadline: Option<Instant>) -> (Option<Instant>, bool) {
    let nap = Instant::now() + MAX_NAP;
    match deadline {
        Some(d) if d <= nap => (Some(d), true),
        _ => (Some(nap), false),
    }
}

/// A full fence (store-load ordering) right after an atomic read-modify-write.
///
/// On x86_64 every read-modify-write is a locked instruction, which the hardware already
/// orders as a full fence, so only the compiler needs holding back; an `mfence` there
/// would cost a few nanoseconds per message for nothing. Elsewhere, a real fence. This
/// leans on `RawMutex::unlock` being an atomic swap (it must stay a read-modify-write)
/// and on the unlock actually running: a `Held` exists only for a lock we hold.
#[inline]
fn full_fence_after_rmw() {
    #[cfg(target_arch = "x86_64")]
    std::sync::atomic::compiler_fence(Ordering::SeqCst);
    #[cfg(not(target_arch = "x86_64"))]
    std::sync::atomic::fence(Ordering::SeqCst);
}

fn pad8(n: usize) -> usize {
    n.saturating_add(7) & !7
}

fn corrupt(what: &str) -> Error {
    Error::new(
        ErrorKind::Corrupt,
        format!("the queue's shared memory is corrupt: {what}"),
    )
}

/// Whether side sequence `a` comes before `b` (30-bit wrapping).
fn seq_before(a: u32, b: u32) -> bool {
    let d = b.wrapping_sub(a) & SEQ_MASK;
    d != 0 && d < (1 << 29)
}

const SPIN_MIN: u32 = 64;
/// The longest gap between looks, in pauses.
const GAP_MAX: u32 = 32;
/// A first look that finds fewer than this many messages (or freed records) waits
/// longer next time; more than `BATCH_HIGH`, shorter.
const BATCH_LOW: u32 = 8;
const BATCH_HIGH: u32 = 32;
const SPIN_MAX: u32 = 1 << 15;
const SPIN_START: u32 = 2048;

impl Ring {
    /// Makes a ring of at least `bytes` bytes (rounded up to a power of two) holding at
    /// most `max_messages` records.
    pub(crate) fn new(
        bytes: usize,
        max_messages: usize,
        joinable: bool,
        watch_peers: bool,
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
        let max_messages = u32::try_from(max_messages).unwrap_or(u32::MAX).min(COUNT);
        let (tx, rx) = mproc_sys::seqpacket_pair()
            .map_err(|e| Error::io("creating a queue's side socket", e))?;
        let (presence, _writer) =
            mproc_sys::pipe().map_err(|e| Error::io("creating a queue's presence pipe", e))?;
        let ring = Self::assemble(
            LockBlock::alloc()?,
            LockBlock::alloc()?,
            Block::alloc(HEADER_LEN)?,
            SharedMemory::create(cap)?,
            [tx, rx, presence],
            max_messages,
            joinable,
        )?;
        if !watch_peers {
            holders::unwatch(&ring.header);
        }
        ring.register_here(false);
        Ok(ring)
    }

    /// Registers this process as holding this handle; `received` when it did not create
    /// it (the queue is then shared).
    fn register_here(&self, received: bool) {
        let me = mproc_sys::current_identity();
        holders::register(&self.header, me, received);
        self.registered.store(me, Ordering::SeqCst);
    }

    /// A write end of the presence pipe for a copy of this handle on its way to another
    /// process (see `holders`); `None` (and no more `Disconnected` for this queue) when it
    /// cannot be opened.
    fn open_in_flight(&self) -> Option<OwnedFd> {
        holders::bump(&self.header);
        let w = mproc_sys::open_pipe_writer(self.presence.as_fd());
        if w.is_err() {
            holders::mark_untracked(&self.header);
        }
        w.ok()
    }

    /// Whether nobody but this process is left to make progress (see `holders`).
    fn others_gone(&self) -> bool {
        holders::others_gone(&self.header, self.presence.as_fd())
    }

    fn assemble(
        producers: LockBlock,
        consumers: LockBlock,
        header: Block,
        ring: SharedMemory,
        [side_tx, side_rx, presence]: [OwnedFd; 3],
        max_messages: u32,
        joinable: bool,
    ) -> Result<Ring> {
        let cap = ring.len();
        if !(MIN_BYTES..=MAX_BYTES).contains(&cap) || !cap.is_power_of_two() {
            return Err(corrupt("the ring's size is not a power of two in range"));
        }
        if header.len() < HEADER_LEN || max_messages == 0 || max_messages > COUNT {
            return Err(corrupt("the queue's header is too short or its bound is 0"));
        }
        // A child made by fork closes these unless the queue is in its argument.
        for fd in [&side_tx, &side_rx, &presence] {
            mproc_sys::track_owned_fd(fd.as_fd());
        }
        Ok(Ring {
            tailputs: header.pin(TAILPUTS)?,
            flags: header.pin(FLAGS)?,
            ev_c: header.pin(EV_C)?,
            side_seq: header.pin(SIDE_SEQ)?,
            headgets: header.pin(HEADGETS)?,
            pflags: header.pin(PFLAGS)?,
            ev_p: header.pin(EV_P)?,
            unfinished: header.pin(UNFINISHED)?,
            join_ev: header.pin(JOIN_EV)?,
            join_sleep: header.pin(JOIN_SLEEP)?,
            target: header.pin(TARGET)?,
            tail_laps: header.pin(TAIL_LAPS)?,
            head_laps: header.pin(HEAD_LAPS)?,
            head_seen: AtomicU64::new(0),
            head_seen_laps: AtomicU32::new(0),
            tail_seen: AtomicU32::new(0),
            tail_seen_laps: AtomicU32::new(0),
            spin: AtomicU32::new(SPIN_START),
            first_c: AtomicU32::new(1),
            first_p: AtomicU32::new(1),
            producers,
            consumers,
            header,
            ring,
            side_tx,
            side_rx,
            presence,
            registered: AtomicU64::new(0),
            cap: cap as u32,
            max_messages,
            joinable,
        })
    }

    pub(crate) fn capacity_bytes(&self) -> usize {
        self.cap as usize
    }

    pub(crate) fn max_messages(&self) -> usize {
        self.max_messages as usize
    }

    /// The largest payload copied into the ring; larger ones travel in their own memfd.
    pub(crate) fn inline_max(&self) -> usize {
        self.cap as usize / 4 - REC_HEADER
    }

    /// Messages waiting (approximate while others work).
    pub(crate) fn len(&self) -> usize {
        let gets = (self.headgets.load(Ordering::Acquire) >> 32) as u32;
        let puts = (self.tailputs.load(Ordering::Acquire) >> 32) as u32;
        (puts.wrapping_sub(gets) as i32).max(0) as usize
    }

    pub(crate) fn is_full(&self) -> bool {
        let hg = self.headgets.load(Ordering::Acquire);
        let tp = self.tailputs.load(Ordering::Acquire);
        let count = ((tp >> 32) as u32).wrapping_sub((hg >> 32) as u32);
        let used = (tp as u32).wrapping_sub(hg as u32) as usize;
        count >= self.max_messages || used + REC_HEADER + 8 > self.cap as usize
    }

    pub(crate) fn is_closed(&self) -> bool {
        self.flags.load(Ordering::Acquire) & CLOSED != 0
    }

    fn ring_write(&self, pos: u32, data: &[u8]) -> Result<()> {
        let off = (pos & (self.cap - 1)) as usize;
        let first = data.len().min(self.cap as usize - off);
        self.ring.write_at(off, &data[..first])?;
        if first < data.len() {
            self.ring.write_at(0, &data[first..])?;
        }
        Ok(())
    }

    fn ring_read(&self, pos: u32, buf: &mut [u8]) -> Result<()> {
        let off = (pos & (self.cap - 1)) as usize;
        let first = buf.len().min(self.cap as usize - off);
        let (a, b) = buf.split_at_mut(first);
        self.ring.read_at(off, a)?;
        if !b.is_empty() {
            self.ring.read_at(0, b)?;
        }
        Ok(())
    }

    // ---- waiting ----

    /// Waits until `ready()` reports progress (a count above 0: messages waiting, for a
    /// consumer; records freed, for a producer): spins a while, then sleeps on `ev` after
    /// announcing itself in `flag_word`. `first` is this side's adaptive first gap (see
    /// below). Ends when the deadline passes, or when a nap ends with no progress and
    /// nobody else is left to make any (see `holders`).
    ///
    /// Every look at the other side's line takes that line away from the side writing it,
    /// and that side pays for it at its next locked instruction (the store has to reach
    /// this core first). A consumer that looks as soon as it has caught up finds one
    /// message per look and costs the producer a stall per message. So the first look
    /// comes after `first` pauses, and `first` adapts: when the first look already finds
    /// progress but little of it, the other side is streaming, and the next wait looks
    /// later (up to `GAP_MAX` pauses), so that it finds a batch; when it finds a large
    /// batch, sooner; when the first look finds nothing, the other side was idle (a
    /// request and its answer, say), and the next wait looks at once again. Later looks
    /// come 1, 2, 4 ... `GAP_MAX` pauses apart.
    fn wait(
        &self,
        first: &AtomicU32,
        ev: &AtomicU32,
        flag_word: &AtomicU32,
        flag: u32,
        deadline: Option<Instant>,
        ready: impl Fn() -> u32,
    ) -> Waited {
        if deadline.is_some_and(|d| Instant::now() >= d) {
            // `try_*`, or out of time already: one look, no spinning.
            return Waited::from_ready(ready());
        }
        let budget = self.spin.load(Ordering::Relaxed);
        let gap0 = first.load(Ordering::Relaxed).clamp(1, GAP_MAX);
        let mut gap = gap0;
        let mut spent = 0;
        let mut looks = 0u32;
        while spent < budget {
            for _ in 0..gap {
                std::hint::spin_loop();
            }
            spent += gap;
            looks += 1;
            let n = ready();
            if n > 0 {
                self.spin
                    .store((budget * 2).min(SPIN_MAX), Ordering::Relaxed);
                let next = if looks > 1 {
                    1
                } else if n < BATCH_LOW {
                    gap0 * 2
                } else if n > BATCH_HIGH {
                    gap0 / 2
                } else {
                    gap0
                };
                first.store(next.clamp(1, GAP_MAX), Ordering::Relaxed);
                return Waited::Ready;
            }
            gap = if looks == 1 {
                1
            } else {
                (gap * 2).min(GAP_MAX)
            };
            if looks.is_multiple_of(64) {
                if deadline.is_some_and(|d| Instant::now() >= d) {
                    return Waited::TimedOut;
                }
                // On a machine with fewer cores than busy processes, let the one we are
                // waiting for run.
                std::thread::yield_now();
            }
        }
        first.store(1, Ordering::Relaxed);
        self.spin
            .store((budget / 2).max(SPIN_MIN), Ordering::Relaxed);
        loop {
            let seen = ev.load(Ordering::SeqCst);
            flag_word.fetch_or(flag, Ordering::SeqCst);
            if ready() > 0 {
                return Waited::Ready;
            }
            let (until, last) = nap_until(deadline);
            let napped = mproc_sys::futex_wait(ev, seen, until) == FutexWait::TimedOut;
            if ready() > 0 {
                return Waited::Ready;
            }
            if napped {
                if last {
                    return Waited::TimedOut;
                }
                if self.others_gone() {
                    return Waited::Alone;
                }
            }
        }
    }

    /// Wakes the sleepers announced by `flag` in `flag_word`. Called right after a locked
    /// read-modify-write (the unlock that follows a publishing store, or the update of a
    /// count), which must be ordered before the flag's load: a sleeper sets its flag, then
    /// re-checks what was published (see [`wait`](Ring::wait)).
    fn wake(ev: &AtomicU32, flag_word: &AtomicU32, flag: u32) {
        full_fence_after_rmw();
        if flag_word.load(Ordering::Relaxed) & flag != 0 {
            flag_word.fetch_and(!flag, Ordering::SeqCst);
            ev.fetch_add(1, Ordering::SeqCst);
            mproc_sys::futex_wake(ev, u32::MAX);
        }
    }

    fn wake_consumers(&self) {
        Self::wake(&self.ev_c, &self.flags, CONSUMERS_ASLEEP);
    }

    fn wake_producers(&self) {
        Self::wake(&self.ev_p, &self.pflags, PRODUCERS_ASLEEP);
    }

    // ---- producing ----

    /// Whether a record of `rec` bytes fits, by the head `hg`.
    fn fits(&self, tp: u64, hg: u64, rec: usize) -> bool {
        let used = (tp as u32).wrapping_sub(hg as u32) as usize;
        let count = ((tp >> 32) as u32).wrapping_sub((hg >> 32) as u32);
        used.saturating_add(rec) <= self.cap as usize && count < self.max_messages
    }

    /// Enqueues the record in `buf[REC_HEADER..]` (the first `REC_HEADER` bytes are room
    /// for its header), with `fds` beside it.
    pub(crate) fn put(
        &self,
        buf: &mut [u8],
        mut fds: Vec<OwnedFd>,
        deadline: Option<Instant>,
    ) -> std::result::Result<(), Refused> {
        let payload = buf.len() - REC_HEADER;
        let mut large = [0u8; REC_HEADER + 8];
        let (kind, record): (u32, &mut [u8]) = if payload > self.inline_max() {
            let sealed = SealedWriter::new("mproc-queue-message", payload)
                .and_then(|w| {
                    w.write_at(0, &buf[REC_HEADER..])?;
                    w.seal()
                })
                .map_err(|e| Error::io("putting a large message in its own memfd", e))?;
            fds.insert(0, sealed);
            large[REC_HEADER..].copy_from_slice(&(payload as u64).to_le_bytes());
            (LARGE, &mut large[..])
        } else if fds.is_empty() {
            (INLINE, buf)
        } else {
            (WITH_FDS, buf)
        };
        if fds.len() > mproc_sys::MAX_FDS_PER_MSG {
            return Err(Refused::Failed(Error::new(
                ErrorKind::Encode,
                format!(
                    "a message carries at most {} file descriptors",
                    mproc_sys::MAX_FDS_PER_MSG - 1
                ),
            )));
        }
        let len = (record.len() - REC_HEADER) as u32;
        let rec = pad8(record.len());
        if rec > self.cap as usize {
            return Err(Refused::Failed(corrupt("record larger than the ring")));
        }
        loop {
            let Some((held, died)) = lock(self.producers.slot().mutex(), deadline) else {
                return Err(Refused::Timeout);
            };
            if died {
                self.repair_producers();
                let _ = held.0.mark_consistent();
            }
            if self.flags.load(Ordering::Acquire) & CLOSED != 0 {
                return Err(Refused::Closed);
            }
            if self.joinable && self.unfinished.load(Ordering::Relaxed) & COUNT == COUNT {
                // One more would carry into `PENDING`.
                return Err(Refused::Failed(Error::new(
                    ErrorKind::Full,
                    format!(
                        "a JoinableQueue counts at most {COUNT} unfinished items: \
                         call task_done() for some"
                    ),
                )));
            }
            let tp = self.tailputs.load(Ordering::Relaxed);
            if !(tp as u32).is_multiple_of(8) {
                return Err(Refused::Failed(corrupt(
                    "the tail is not at a record boundary",
                )));
            }
            let laps = self.tail_laps.load(Ordering::Relaxed);
            let mut hg = self.head_seen.load(Ordering::Relaxed);
            let cached = laps.wrapping_sub(self.head_seen_laps.load(Ordering::Relaxed)) <= 1;
            if !cached || !self.fits(tp, hg, rec) {
                hg = self.headgets.load(Ordering::Acquire);
                self.head_seen.store(hg, Ordering::Relaxed);
                self.head_seen_laps.store(laps, Ordering::Relaxed);
                let used = (tp as u32).wrapping_sub(hg as u32);
                if used > self.cap {
                    return Err(Refused::Failed(corrupt("head and tail are too far apart")));
                }
                if !self.fits(tp, hg, rec) {
                    drop(held);
                    // Both ends afresh (other producers may have moved the tail since, and
                    // the head may be past the tail we read). Progress: the records
                    // consumers freed since, once this one fits.
                    let gets = (hg >> 32) as u32;
                    let ready = || {
                        let tp = self.tailputs.load(Ordering::SeqCst);
                        let hg = self.headgets.load(Ordering::SeqCst);
                        if self.is_closed() {
                            1
                        } else if self.fits(tp, hg, rec) {
                            ((hg >> 32) as u32).wrapping_sub(gets).max(1)
                        } else {
                            0
                        }
                    };
                    self.wait(
                        &self.first_p,
                        &self.ev_p,
                        &self.pflags,
                        PRODUCERS_ASLEEP,
                        deadline,
                        ready,
                    )
                    .or_refuse()?;
                    continue;
                }
            }
            let tail = tp as u32;
            let puts = (tp >> 32) as u32;
            let mut meta = kind;
            if kind != INLINE {
                let seq = self.side_seq.load(Ordering::Relaxed).wrapping_add(1) & SEQ_MASK;
                self.side_seq.store(seq, Ordering::Relaxed);
                self.send_side(seq, &fds, deadline)?;
                meta |= seq << 2;
            }
            record[..4].copy_from_slice(&len.to_le_bytes());
            record[4..8].copy_from_slice(&meta.to_le_bytes());
            let new_tail = tail.wrapping_add(rec as u32);
            // Unseen until published; a failure here leaves nothing to undo.
            self.ring_write(tail, record)?;
            if (new_tail >> LAP_SHIFT) != (tail >> LAP_SHIFT) {
                // Before publishing: a lap counted early only makes caches reload.
                self.tail_laps.fetch_add(1, Ordering::Relaxed);
            }
            if self.joinable {
                self.target.store(new_tail, Ordering::Relaxed);
                self.unfinished.fetch_add(1 | PENDING, Ordering::SeqCst);
            }
            let next = (u64::from(puts.wrapping_add(1)) << 32) | u64::from(new_tail);
            self.tailputs.store(next, Ordering::Release);
            if self.joinable {
                self.unfinished.fetch_sub(PENDING, Ordering::SeqCst);
            }
            drop(held);
            self.wake_consumers();
            return Ok(());
        }
    }

    /// Sends a record's side datagram (its sequence, then its fds), waiting for room in
    /// the socket until `deadline`.
    fn send_side(
        &self,
        seq: u32,
        fds: &[OwnedFd],
        deadline: Option<Instant>,
    ) -> std::result::Result<(), Refused> {
        let borrowed: Vec<_> = fds.iter().map(|f| f.as_fd()).collect();
        let tag = seq.to_le_bytes();
        loop {
            match mproc_sys::send_vectored_with_fds(
                self.side_tx.as_fd(),
                &[std::io::IoSlice::new(&tag)],
                &borrowed,
                true,
            ) {
                Ok(_) => return Ok(()),
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    match mproc_sys::wait_writable(self.side_tx.as_fd(), deadline) {
                        Ok(true) => continue,
                        Ok(false) => return Err(Refused::Timeout),
                        Err(e) => {
                            return Err(Refused::Failed(Error::io(
                                "waiting on the side socket",
                                e,
                            )));
                        }
                    }
                }
                Err(e) => {
                    return Err(Refused::Failed(Error::io(
                        "sending a message's file descriptors",
                        e,
                    )));
                }
            }
        }
    }

    /// Runs under the producers' lock taken from a producer that died holding it: undoes
    /// the count of a put that never published its record.
    fn repair_producers(&self) {
        if !self.joinable {
            return;
        }
        let u = self.unfinished.load(Ordering::SeqCst);
        if u & PENDING == 0 {
            return;
        }
        let published =
            self.tailputs.load(Ordering::SeqCst) as u32 == self.target.load(Ordering::SeqCst);
        let _ = self
            .unfinished
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |u| {
                let count = u & COUNT;
                Some(if published {
                    count
                } else {
                    count.saturating_sub(1)
                })
            });
        self.wake_joiners();
    }

    // ---- consuming ----

    /// Takes the next message into `buf` (or a sealed memfd), waiting until `deadline`.
    pub(crate) fn get(
        &self,
        buf: &mut Vec<u8>,
        deadline: Option<Instant>,
    ) -> std::result::Result<Payload, Refused> {
        loop {
            let Some((held, died)) = lock(self.consumers.slot().mutex(), deadline) else {
                return Err(Refused::Timeout);
            };
            if died {
                // Nothing to repair: a consumer frees its record only once done with it.
                let _ = held.0.mark_consistent();
            }
            let hg = self.headgets.load(Ordering::Relaxed);
            let head = hg as u32;
            let laps = self.head_laps.load(Ordering::Relaxed);
            let mut tail = self.tail_seen.load(Ordering::Relaxed);
            let mut closed = false;
            // Other consumers may have taken the head past the cached tail; within a lap
            // that shows as a difference above `cap` (see `LAP_SHIFT`).
            if tail == head
                || tail.wrapping_sub(head) > self.cap
                || laps.wrapping_sub(self.tail_seen_laps.load(Ordering::Relaxed)) > 1
            {
                // Closed is read only with the tail (they share the producers' line), and
                // before it: a close comes after the last put's tail.
                closed = self.is_closed();
                tail = self.tailputs.load(Ordering::Acquire) as u32;
                self.tail_seen.store(tail, Ordering::Relaxed);
                self.tail_seen_laps.store(laps, Ordering::Relaxed);
            }
            if tail == head {
                drop(held);
                if closed {
                    return Err(Refused::Closed);
                }
                // Progress: the messages waiting.
                let gets = (hg >> 32) as u32;
                let ready = || {
                    let tp = self.tailputs.load(Ordering::SeqCst);
                    if tp as u32 != head {
                        ((tp >> 32) as u32).wrapping_sub(gets).max(1)
                    } else {
                        u32::from(self.is_closed())
                    }
                };
                self.wait(
                    &self.first_c,
                    &self.ev_c,
                    &self.flags,
                    CONSUMERS_ASLEEP,
                    deadline,
                    ready,
                )
                .or_refuse()?;
                continue;
            }
            match self.take(head, tail, buf) {
                Ok((taken, next_head)) => {
                    if (next_head >> LAP_SHIFT) != (head >> LAP_SHIFT) {
                        self.head_laps.fetch_add(1, Ordering::Relaxed);
                    }
                    let gets = ((hg >> 32) as u32).wrapping_add(1);
                    self.headgets.store(
                        (u64::from(gets) << 32) | u64::from(next_head),
                        Ordering::Release,
                    );
                    drop(held);
                    self.wake_producers();
                    match taken {
                        Some(p) => return Ok(p),
                        // Its side datagram was taken by a consumer that died: lost.
                        None => continue,
                    }
                }
                Err(e) => {
                    // Skip everything published so far: no record boundary can be trusted.
                    let tp = self.tailputs.load(Ordering::Acquire);
                    // The head may jump far: count laps generously (a lap too many only
                    // makes caches reload).
                    self.head_laps.fetch_add(2, Ordering::Relaxed);
                    self.headgets.store(tp, Ordering::SeqCst);
                    self.tail_seen.store(tp as u32, Ordering::Relaxed);
                    self.tail_seen_laps
                        .store(laps.wrapping_add(2), Ordering::Relaxed);
                    drop(held);
                    self.wake_producers();
                    return Err(Refused::Failed(e));
                }
            }
        }
    }

    /// Reads the record at `head` (under the consumers' lock). Returns the payload (`None`
    /// when its side datagram is gone) and the position after the record.
    fn take(&self, head: u32, tail: u32, buf: &mut Vec<u8>) -> Result<(Option<Payload>, u32)> {
        let avail = tail.wrapping_sub(head) as usize;
        if avail > self.cap as usize || avail < REC_HEADER || !head.is_multiple_of(8) {
            return Err(corrupt(
                "head and tail are not a whole number of records apart",
            ));
        }
        // Records start 8-aligned, so a header never wraps: one aligned read.
        let header = self
            .ring
            .read::<u64>((head & (self.cap - 1)) as usize)?
            .to_le();
        let len = header as u32 as usize;
        let meta = (header >> 32) as u32;
        let rec = pad8(REC_HEADER.saturating_add(len));
        if rec > avail {
            return Err(corrupt("a record runs past the tail"));
        }
        let next = head.wrapping_add(rec as u32);
        let kind = meta & 3;
        buf.clear();
        let body = head.wrapping_add(REC_HEADER as u32);
        if kind == INLINE {
            buf.resize(len, 0);
            self.ring_read(body, buf)?;
            return Ok((Some(Payload::Inline), next));
        }
        if kind != WITH_FDS && kind != LARGE {
            return Err(corrupt("a record of unknown kind"));
        }
        let mut size = [0u8; 8];
        if kind == LARGE {
            if len != 8 {
                return Err(corrupt("a large record of the wrong length"));
            }
            self.ring_read(body, &mut size)?;
        } else {
            buf.resize(len, 0);
            self.ring_read(body, buf)?;
        }
        let Some(mut fds) = self.take_side(meta >> 2)? else {
            return Ok((None, next));
        };
        if kind == WITH_FDS {
            return Ok((Some(Payload::WithFds(fds)), next));
        }
        if fds.is_empty() {
            return Err(corrupt("a large message came without its memfd"));
        }
        let size = usize::try_from(u64::from_le_bytes(size))
            .map_err(|_| corrupt("a large message's size"))?;
        let memfd = fds.remove(0);
        // A bad memfd costs this message only: the record is consumed either way.
        let payload = match SealedBytes::map(memfd, size) {
            Ok(bytes) => Payload::Sealed(Box::new((bytes, fds))),
            Err(e) => Payload::Bad(Error::io("mapping a large message", e)),
        };
        Ok((Some(payload), next))
    }

    /// Receives the side datagram tagged `seq`, dropping older ones (left by producers
    /// that died before publishing). `None` when it is gone (taken by a consumer that
    /// died before freeing its record).
    fn take_side(&self, seq: u32) -> Result<Option<Vec<OwnedFd>>> {
        loop {
            let mut tag = [0u8; 4];
            match mproc_sys::peek(self.side_rx.as_fd(), &mut tag) {
                Ok(4) => {}
                Ok(_) => return Err(corrupt("a side datagram without its tag")),
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return Ok(None),
                Err(e) => return Err(Error::io("reading the side socket", e)),
            }
            let found = u32::from_le_bytes(tag);
            if found != seq && !seq_before(found, seq) {
                return Ok(None);
            }
            let mut fds = Vec::new();
            mproc_sys::recv_with_fds(self.side_rx.as_fd(), &mut tag, &mut fds, true)
                .map_err(|e| Error::io("receiving a message's file descriptors", e))?;
            if found == seq {
                return Ok(Some(fds));
            }
        }
    }

    // ---- closing and joining ----

    /// Closes the queue: later puts fail, gets drain what is left and then fail.
    pub(crate) fn close(&self) {
        if let Some((held, died)) = lock(self.producers.slot().mutex(), None) {
            if died {
                self.repair_producers();
                let _ = held.0.mark_consistent();
            }
            self.flags.fetch_or(CLOSED, Ordering::SeqCst);
        }
        for ev in [&self.ev_c, &self.ev_p] {
            ev.fetch_add(1, Ordering::SeqCst);
            mproc_sys::futex_wake(ev, u32::MAX);
        }
    }

    pub(crate) fn unfinished(&self) -> usize {
        (self.unfinished.load(Ordering::Acquire) & COUNT) as usize
    }

    pub(crate) fn task_done(&self) -> Result<()> {
        let r = self
            .unfinished
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |u| {
                (u & COUNT != 0).then(|| u - 1)
            });
        match r {
            Ok(u) if u & COUNT == 1 => {
                self.wake_joiners();
                Ok(())
            }
            Ok(_) => Ok(()),
            Err(_) => Err(Error::new(
                ErrorKind::TooManyTaskDone,
                "task_done() called more times than items were put",
            )),
        }
    }

    fn wake_joiners(&self) {
        Self::wake(&self.join_ev, &self.join_sleep, 1);
    }

    /// Waits until every item put has been marked done, until `deadline`, or until
    /// nobody else is left to mark any (see `holders`).
    pub(crate) fn join(&self, deadline: Option<Instant>) -> Waited {
        loop {
            let u = self.unfinished.load(Ordering::SeqCst);
            if u & COUNT == 0 {
                return Waited::Ready;
            }
            if u & PENDING != 0 {
                self.repair_if_a_producer_died();
            }
            let seen = self.join_ev.load(Ordering::SeqCst);
            self.join_sleep.fetch_or(1, Ordering::SeqCst);
            if self.unfinished.load(Ordering::SeqCst) & COUNT == 0 {
                return Waited::Ready;
            }
            let (until, last) = nap_until(deadline);
            if mproc_sys::futex_wait(&self.join_ev, seen, until) == FutexWait::TimedOut {
                if self.unfinished() == 0 {
                    return Waited::Ready;
                }
                if last {
                    return Waited::TimedOut;
                }
                if self.others_gone() {
                    return Waited::Alone;
                }
            }
        }
    }

    /// A put counted but not published: if its producer died holding the lock, and no
    /// other producer has come since to repair, repair now (a `join` would otherwise wait
    /// for a put that will never finish). A live producer keeps the lock: nothing to do.
    fn repair_if_a_producer_died(&self) {
        let m = self.producers.slot().mutex();
        match m.try_lock() {
            LockStatus::OwnerDied => {
                let held = Held(m);
                self.repair_producers();
                let _ = held.0.mark_consistent();
            }
            LockStatus::Acquired => drop(Held(m)),
            LockStatus::WouldBlock => {}
        }
    }
}

/// Sent as its locks, header, ring, side socket and presence pipe (all by fd), its bounds,
/// and a write end of the presence pipe of its own that says "a handle is in flight" until
/// the receiver has registered (see `holders`).
impl Serialize for Ring {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        let in_flight = match mproc_wire::handing_over() {
            None => self.open_in_flight(),
            // A fork is about to copy this handle: the copy is in flight, as in a message,
            // until the child has registered.
            Some(mproc_wire::Handover::BeforeFork) => {
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
        (
            &self.producers,
            &self.consumers,
            &self.header,
            &self.ring,
            [
                mproc_wire::FdRef(self.side_tx.as_fd()),
                mproc_wire::FdRef(self.side_rx.as_fd()),
                mproc_wire::FdRef(self.presence.as_fd()),
            ],
            in_flight.as_ref().map(|w| mproc_wire::FdRef(w.as_fd())),
            self.max_messages,
            self.joinable,
        )
            .serialize(s)
    }
}

/// Unregisters this process, unless the handle is a copy inherited by fork that its
/// process never took as its own.
impl Drop for Ring {
    fn drop(&mut self) {
        let id = *self.registered.get_mut();
        if id != 0 && id == mproc_sys::current_identity() {
            holders::unregister(&self.header, id);
        }
        for fd in [&self.side_tx, &self.side_rx, &self.presence] {
            mproc_sys::untrack_owned_fd(fd.as_fd());
        }
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
        ): (
            LockBlock,
            LockBlock,
            Block,
            SharedMemory,
            [mproc_wire::Fd; 3],
            Option<mproc_wire::Fd>,
            u32,
            bool,
        ) = Deserialize::deserialize(d)?;
        let ring = Ring::assemble(
            producers,
            consumers,
            header,
            ring,
            [tx.into_owned(), rx.into_owned(), presence.into_owned()],
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

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
            Payload::Bad(e) => Err(Refused::Failed(e)),
        }
    }

    #[test]
    fn records_wrap_around_the_ring_intact() {
        let ring = Ring::new(MIN_BYTES, usize::MAX, false, true).unwrap();
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
        let ring = Ring::new(MIN_BYTES, usize::MAX, false, true).unwrap();
        for garbage in [
            [0xffu8; 8],
            [8, 0, 0, 0, 0, 0, 0, 0],
            [4, 0, 0, 0, 3, 0, 0, 0],
        ] {
            put_bytes(&ring, b"first");
            put_bytes(&ring, b"second");
            let head = ring.headgets.load(Ordering::SeqCst) as u32;
            ring.ring_write(head, &garbage).unwrap();
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
        let ring = Ring::new(MIN_BYTES, usize::MAX, false, true).unwrap();
        let (fd, _other) = mproc_sys::socketpair().unwrap();
        let mut buf = vec![0u8; REC_HEADER + 3];
        assert!(ring.put(&mut buf, vec![fd], None).is_ok());
        put_bytes(&ring, b"next");
        // A consumer took the datagram and died before freeing the record.
        let mut fds = Vec::new();
        mproc_sys::recv_with_fds(ring.side_rx.as_fd(), &mut [0u8; 4], &mut fds, true).unwrap();
        assert!(get_bytes(&ring).ok().as_deref() == Some(&b"next"[..]));
    }

    #[test]
    fn a_large_message_travels_in_a_sealed_memfd() {
        let ring = Ring::new(MIN_BYTES, usize::MAX, false, true).unwrap();
        let payload: Vec<u8> = (0..3 * MIN_BYTES).map(|i| (i % 13) as u8).collect();
        put_bytes(&ring, &payload);
        let mut buf = Vec::new();
        match ring.get(&mut buf, None) {
            Ok(Payload::Sealed(sealed)) => {
                assert!(sealed.0.as_slice() == payload.as_slice());
                assert!(sealed.1.is_empty());
            }
            _ => panic!("not a sealed payload"),
        }
    }

    /// Moves the shared state as if other processes had put and got `bytes` more bytes
    /// (as `n` messages) while this process's caches sat unused.
    fn others_moved(ring: &Ring, bytes: u64, n: u32, tail_extra: u32) {
        let hg = ring.headgets.load(Ordering::SeqCst);
        let head = (hg as u32).wrapping_add(bytes as u32);
        let gets = ((hg >> 32) as u32).wrapping_add(n);
        let laps = (bytes >> LAP_SHIFT) as u32 + 1;
        ring.head_laps.fetch_add(laps, Ordering::SeqCst);
        ring.tail_laps.fetch_add(laps, Ordering::SeqCst);
        ring.headgets
            .store((u64::from(gets) << 32) | u64::from(head), Ordering::SeqCst);
        let tail = head.wrapping_add(tail_extra);
        ring.tailputs.store(
            (u64::from(gets.wrapping_add(tail_extra / 16)) << 32) | u64::from(tail),
            Ordering::SeqCst,
        );
    }

    #[test]
    fn a_consumer_cache_a_whole_wrap_old_is_not_trusted() {
        let ring = Ring::new(MIN_BYTES, usize::MAX, false, true).unwrap();
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
        let ring = Ring::new(MIN_BYTES, usize::MAX, false, true).unwrap();
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
        let ring = Arc::new(Ring::new(MIN_BYTES, usize::MAX, false, true).unwrap());
        let (tx, rx) = std::sync::mpsc::channel();
        let r = Arc::clone(&ring);
        std::thread::spawn(move || {
            let _ = tx.send(get_bytes_blocking(&r));
        });
        while ring.flags.load(Ordering::SeqCst) & CONSUMERS_ASLEEP == 0 {
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
        let tp = ring.tailputs.load(Ordering::SeqCst);
        ring.ring_write(tp as u32, &[4, 0, 0, 0, INLINE as u8, 0, 0, 0, 1, 2, 3, 4])
            .unwrap();
        ring.tailputs.store(
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
        let ring = Arc::new(Ring::new(MIN_BYTES, usize::MAX, true, true).unwrap());
        let r = Arc::clone(&ring);
        // A producer thread counts its put and dies holding the lock, before publishing.
        std::thread::spawn(move || {
            let m = r.producers.slot().mutex();
            assert_eq!(m.lock(None), LockStatus::Acquired);
            r.target.store(999, Ordering::SeqCst);
            r.unfinished.fetch_add(1 | PENDING, Ordering::SeqCst);
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
        let ring = Ring::new(MIN_BYTES, usize::MAX, true, true).unwrap();
        ring.unfinished.store(COUNT, Ordering::SeqCst);
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
}
