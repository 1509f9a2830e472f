//! Large messages' segments: each producer handle keeps a few memfds and reuses them; a
//! consumer hands one back by marking it free, in the segment itself, once it has read the
//! message out (decoded straight from the segment by copies, see [`Lent`]).
//!
//! # Ownership
//!
//! A segment's first word says who may touch its bytes: `FREE` (its producer may claim
//! it) or `BUSY` (one message lives there: its producer wrote it and nobody else may
//! write it). A producer claims a segment with a compare-and-swap `FREE → BUSY`, copies
//! the message in, and sends the segment's fd beside the record (the side socket, as
//! every fd of a record travels). The consumer that takes the record reads the message
//! out and stores `FREE` (Release: its reads of the bytes come before). A producer
//! therefore never rewrites bytes a consumer may still read, and a consumer never reads
//! a segment while it is being written: it only receives one after the record is
//! published, and the record is published after the copy in.
//!
//! # Deaths
//!
//! A producer killed mid-copy leaves its segment `BUSY` and unpublished: nobody reads it,
//! the queue goes on, and only that message is lost (its side datagram, if sent, is
//! dropped as stale by the next consumer). A consumer killed between taking a record and
//! freeing the segment leaves the segment `BUSY` for ever: its producer stops using it and
//! makes another, up to [`POOL`] segments. When all are busy, a put waits a little for
//! consumers that are taking messages to free one (see [`Spills::wait_for_free`]); past
//! that, a message travels in a fresh sealed memfd, as one larger than
//! [`POOL_MAX_BYTES`] always does.
//!
//! A segment's size is sealed, so a consumer's copy out never touches a page that is not
//! there (no SIGBUS), whatever its producer does.

use std::os::fd::{AsFd, IntoRawFd, OwnedFd};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use mproc_sys::Region;

use crate::error::{Error, Result};
use crate::ring::corrupt;

/// The segment's state word.
const STATE: usize = 0;
/// Where the message starts (a cache line past the state word).
const DATA: usize = 64;
const FREE: u32 = 0;
const BUSY: u32 = 1;
/// The segments each producer handle keeps.
pub(crate) const POOL: usize = 4;
/// The largest segment kept for reuse: a message larger than this (less `DATA`) travels
/// in a fresh sealed memfd. With [`POOL`], a producer handle keeps at most 128 MiB.
pub(crate) const POOL_MAX_BYTES: usize = 32 << 20;
/// The smallest segment made.
const MIN_BYTES: usize = 1 << 20;
/// The segments each consumer handle keeps mapped.
const MAPPED: usize = 8;

/// One reusable segment: its mapping, its fd, and the process that made it.
struct Segment {
    region: Region,
    /// Closed on drop only in `owner`: in a copy of the handle that a fork child
    /// inherited, it is not this process's (a child made by fork closes it, as the
    /// queue's other fds, and its number may name another file there).
    fd: Option<OwnedFd>,
    owner: u64,
}

impl Segment {
    /// Makes a segment (zeroed: `FREE`) with room for at least `len` bytes of message.
    fn new(len: usize) -> Result<Segment> {
        let size = (len + DATA).next_power_of_two().max(MIN_BYTES);
        let (region, fd) = Region::anonymous_with_fd("mproc-queue-spill", size)
            .map_err(|e| Error::io("making a segment for large messages", e))?;
        // A child made by fork closes it, as the queue's other fds.
        mproc_sys::track_owned_fd(fd.as_fd());
        Ok(Segment {
            region,
            fd: Some(fd),
            owner: mproc_sys::current_identity(),
        })
    }

    fn room(&self) -> usize {
        self.region.len() - DATA
    }

    fn state(&self) -> Result<&AtomicU32> {
        state(&self.region)
    }
}

impl Drop for Segment {
    fn drop(&mut self) {
        let Some(fd) = self.fd.take() else { return };
        if self.owner == mproc_sys::current_identity() {
            mproc_sys::untrack_owned_fd(fd.as_fd());
        } else {
            // Not ours to close.
            let _ = fd.into_raw_fd();
        }
    }
}

fn state(region: &Region) -> Result<&AtomicU32> {
    region
        .get::<AtomicU32>(STATE)
        .map_err(|_| corrupt("a large message's segment is too short"))
}

/// A segment claimed for one message: released (`FREE` again) on drop unless
/// [`handed_over`](Claimed::handed_over), when the message was published and its consumer
/// will release it.
pub(crate) struct Claimed {
    segment: Arc<Segment>,
    published: bool,
}

impl Claimed {
    /// A copy of the segment's fd, to travel beside the record.
    pub(crate) fn fd(&self) -> Result<OwnedFd> {
        self.segment
            .fd
            .as_ref()
            .ok_or_else(|| corrupt("a segment without its fd"))?
            .try_clone()
            .map_err(|e| Error::io("duplicating a large message's segment", e))
    }

    /// Writes `data` at `offset` bytes into the message's room (the segment is claimed:
    /// nobody else reads or writes it until its record is published).
    pub(crate) fn write_at(&mut self, offset: usize, data: &[u8]) -> std::io::Result<()> {
        let at = offset
            .checked_add(DATA)
            .ok_or(std::io::ErrorKind::InvalidInput)?;
        self.segment.region.copy_from(at, data)
    }

    /// Says the record is published: the segment is its consumer's to free.
    pub(crate) fn handed_over(mut self) {
        self.published = true;
    }
}

/// A value encoded straight into its segment.
impl mproc_wire::Sink for Claimed {
    fn write_at(&mut self, offset: usize, data: &[u8]) -> std::io::Result<()> {
        Claimed::write_at(self, offset, data)
    }
}

impl Drop for Claimed {
    fn drop(&mut self) {
        if !self.published
            && let Ok(state) = self.segment.state()
        {
            state.store(FREE, Ordering::Release);
        }
    }
}

/// A producer handle's segments (a copy of the handle inherited by fork starts its own:
/// see [`Segment::fd`]).
#[derive(Default)]
pub(crate) struct Spills {
    segments: Mutex<Vec<Arc<Segment>>>,
    /// Set when a wait for a free segment gave up (see [`Spills::wait_for_free`]): later
    /// puts do not wait again until one of this handle's segments is seen free.
    gave_up: AtomicBool,
}

/// How long a wait for a free segment lasts without consumers taking any message.
const PATIENCE: Duration = Duration::from_millis(50);
/// How long a wait for a free segment lasts at most.
const MAX_WAIT: Duration = Duration::from_millis(250);

impl Spills {
    /// Copies `payload` into a free segment of this handle (made when none fits, up to
    /// [`POOL`]), and returns it claimed; `None` when the payload is too large to pool,
    /// or every segment is busy (the caller then uses a fresh sealed memfd).
    #[cfg(test)]
    pub(crate) fn fill(&self, payload: &[u8]) -> Result<Option<Claimed>> {
        let Some(mut claimed) = self.claim_for(payload.len())? else {
            return Ok(None);
        };
        claimed
            .write_at(0, payload)
            .map_err(|e| Error::io("copying a large message into its segment", e))?;
        Ok(Some(claimed))
    }

    /// Claims a free segment of this handle with room for a message of `len` bytes (made
    /// when none fits, up to [`POOL`]), for the caller to write the message in with
    /// [`Claimed::write_at`]; `None` when the message is too large to pool, or every
    /// segment is busy.
    pub(crate) fn claim_for(&self, len: usize) -> Result<Option<Claimed>> {
        if len > POOL_MAX_BYTES - DATA {
            return Ok(None);
        }
        Ok(self.claim(len)?.map(|segment| Claimed {
            segment,
            published: false,
        }))
    }

    /// Whether a message of `len` bytes waits for a segment of this handle's rather than
    /// going to a sealed memfd of its own: it fits a segment, all [`POOL`] of them are
    /// busy (or none would fit), and the last wait did not give up.
    pub(crate) fn worth_waiting(&self, len: usize) -> bool {
        len <= POOL_MAX_BYTES - DATA
            && !self.gave_up.load(Ordering::Relaxed)
            && self
                .segments
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .len()
                == POOL
    }

    /// Waits, in short naps, until one of this handle's segments is free, as long as
    /// `gets()` (the consumers' count of messages taken) moves at least every
    /// [`PATIENCE`], for at most [`MAX_WAIT`] and until `deadline`. A large message costs
    /// a segment one copy in and one out; a sealed memfd of its own costs a fresh file
    /// whose pages are allocated, zeroed and mapped on both sides, ten times as much: a
    /// producer a few segments ahead of its consumers waits for them, as it waits for room
    /// in the ring. Returns whether a segment is free (it may be claimed by another thread
    /// of this process first; the caller tries again).
    pub(crate) fn wait_for_free(&self, deadline: Option<Instant>, gets: impl Fn() -> u32) -> bool {
        let start = Instant::now();
        let (mut seen, mut moved) = (gets(), start);
        let mut nap = Duration::from_micros(20);
        loop {
            let free = {
                let segments = self.segments.lock().unwrap_or_else(|p| p.into_inner());
                segments
                    .iter()
                    .any(|s| s.state().is_ok_and(|w| w.load(Ordering::Relaxed) == FREE))
            };
            if free {
                self.gave_up.store(false, Ordering::Relaxed);
                return true;
            }
            let now = Instant::now();
            let g = gets();
            if g != seen {
                (seen, moved) = (g, now);
            }
            if now.duration_since(moved) > PATIENCE
                || now.duration_since(start) > MAX_WAIT
                || deadline.is_some_and(|d| now >= d)
            {
                self.gave_up.store(true, Ordering::Relaxed);
                return false;
            }
            std::thread::sleep(nap);
            nap = (nap * 2).min(Duration::from_micros(500));
        }
    }

    /// Claims a free segment with room for `len` bytes: one of this handle's, a larger one
    /// in place of a free one too small, or a new one.
    fn claim(&self, len: usize) -> Result<Option<Arc<Segment>>> {
        let mut segments = self.segments.lock().unwrap_or_else(|p| p.into_inner());
        let me = mproc_sys::current_identity();
        if segments.first().is_some_and(|s| s.owner != me) {
            // Inherited by fork: its maker's segments, not this process's.
            segments.clear();
        }
        let try_claim = |s: &Segment| {
            s.state().is_ok_and(|w| {
                w.compare_exchange(FREE, BUSY, Ordering::Acquire, Ordering::Relaxed)
                    .is_ok()
            })
        };
        if let Some(s) = segments.iter().find(|s| s.room() >= len && try_claim(s)) {
            self.gave_up.store(false, Ordering::Relaxed);
            return Ok(Some(Arc::clone(s)));
        }
        let slot = if segments.len() < POOL {
            None
        } else if let Some(i) = segments.iter().position(|s| try_claim(s)) {
            // Free but too small: replaced by a larger one.
            Some(i)
        } else {
            return Ok(None);
        };
        let segment = Arc::new(Segment::new(len)?);
        segment.state()?.store(BUSY, Ordering::Relaxed);
        match slot {
            Some(i) => segments[i] = Arc::clone(&segment),
            None => segments.push(Arc::clone(&segment)),
        }
        Ok(Some(segment))
    }
}

/// A segment a consumer handle keeps mapped: its file's identity and its mapping.
type Kept = ((u64, u64), Arc<Region>);

/// A consumer handle's mappings of the segments it has received, most recent last.
#[derive(Default)]
pub(crate) struct Mapped {
    segments: Mutex<Vec<Kept>>,
}

impl Mapped {
    /// Takes the `size`-byte message in the segment `fd`, to be read with
    /// [`Lent::read_at`] (as a `mproc_wire::Source`); the segment is freed for its
    /// producer when the [`Lent`] is dropped.
    ///
    /// # Errors
    ///
    /// `Corrupt` when `fd` is not a size-sealed memfd holding `size` bytes of message
    /// (nothing is freed then).
    pub(crate) fn lend(&self, fd: &OwnedFd, size: usize) -> Result<Lent> {
        // No producer makes a segment larger than this: a record that says otherwise is
        // refused before anything is mapped.
        if size > POOL_MAX_BYTES {
            return Err(corrupt("a large message is larger than any segment"));
        }
        let id = mproc_sys::file_identity(fd.as_fd())
            .map_err(|e| Error::io("looking at a large message's segment", e))?;
        let mut segments = self.segments.lock().unwrap_or_else(|p| p.into_inner());
        let at = match segments.iter().position(|(i, _)| *i == id) {
            Some(at) => at,
            None => {
                if !mproc_sys::is_size_sealed(fd.as_fd()) {
                    return Err(corrupt("a large message's segment is not size-sealed"));
                }
                let len = mproc_sys::file_size(fd.as_fd())
                    .ok()
                    .and_then(|l| usize::try_from(l).ok())
                    .filter(|&l| l <= DATA + POOL_MAX_BYTES)
                    .ok_or_else(|| {
                        corrupt("a large message's segment has no size, or a size no segment has")
                    })?;
                let region = Region::map(fd.as_fd(), len)
                    .map_err(|e| Error::io("mapping a large message's segment", e))?;
                // Checked before it is kept: a bad one does not push a good one out.
                state(&region)?;
                if segments.len() == MAPPED {
                    segments.remove(0);
                }
                segments.push((id, Arc::new(region)));
                segments.len() - 1
            }
        };
        let region = Arc::clone(&segments[at].1);
        if size > region.len().saturating_sub(DATA) {
            return Err(corrupt("a large message is larger than its segment"));
        }
        state(&region)?;
        Ok(Lent { region, size })
    }

    /// Copies the `size`-byte message out of the segment `fd` into `buf`, then frees the
    /// segment for its producer.
    ///
    /// # Errors
    ///
    /// As [`lend`](Mapped::lend).
    #[cfg(test)]
    pub(crate) fn copy_out(&self, fd: &OwnedFd, size: usize, buf: &mut Vec<u8>) -> Result<()> {
        self.lend(fd, size)?.copy_out(buf)
    }
}

/// A large message in its segment, taken by this consumer: read by copies out of shared
/// memory (never lent as a `&[u8]`: its producer's process can write there), and freed for
/// its producer on drop, once read (or when the decode reading it fails or panics).
pub(crate) struct Lent {
    region: Arc<Region>,
    size: usize,
}

impl Lent {
    /// Copies the message into `buf` (from its start), and frees the segment.
    pub(crate) fn copy_out(self, buf: &mut Vec<u8>) -> Result<()> {
        // Not cleared first: the copy overwrites every byte kept.
        buf.resize(self.size, 0);
        self.region
            .copy_to(DATA, buf)
            .map_err(|e| Error::io("copying a large message out of its segment", e))
    }
}

/// Decodes a message straight out of its segment (see `mproc_wire::decode_from_source`),
/// then frees the segment. Kept out of line: a large message is rare on the path a small one
/// takes, which it would otherwise slow (callgrind counted 44 more instructions per small
/// `put` + `get` with it inlined).
///
/// A decode from shared memory cannot lend the value a borrowed `&str` or `&[u8]`, which
/// postcard's decoder of a buffer does: a type whose `Deserialize` takes only borrowed ones
/// is refused there. So a message without fds that is refused is copied out and decoded as
/// a small one is, and gets the same value, or the same refusal, as it would in the ring.
/// (With fds, the first decode has taken them: its refusal stands.)
#[cold]
#[inline(never)]
pub(crate) fn decode<T: serde::de::DeserializeOwned>(
    (lent, fds): (Lent, Vec<OwnedFd>),
) -> std::result::Result<T, mproc_wire::Error> {
    if !fds.is_empty() {
        return mproc_wire::decode_from_source(&lent, fds);
    }
    let refused = match mproc_wire::decode_from_source(&lent, Vec::new()) {
        Ok(value) => return Ok(value),
        Err(e) => e,
    };
    let mut buf = Vec::new();
    match lent.copy_out(&mut buf) {
        Ok(()) => mproc_wire::decode_from(&buf, Vec::new()),
        Err(_) => Err(refused),
    }
}

/// A payload copied into the caller's buffer when it is still in its segment.
impl crate::ring::Payload {
    pub(crate) fn into_buffer(self, buf: &mut Vec<u8>) -> Result<crate::ring::Payload> {
        use crate::ring::Payload;
        Ok(match self {
            Payload::Segment(lent) => {
                let (lent, fds) = *lent;
                lent.copy_out(buf)?;
                if fds.is_empty() {
                    Payload::Inline
                } else {
                    Payload::WithFds(fds)
                }
            }
            other => other,
        })
    }
}

/// The message's bytes, for `mproc_wire::decode_from_source`: each read a copy out.
impl mproc_wire::Source for Lent {
    fn len(&self) -> usize {
        self.size
    }

    fn read_at(&self, offset: usize, buf: &mut [u8]) -> std::io::Result<()> {
        if offset
            .checked_add(buf.len())
            .is_none_or(|end| end > self.size)
        {
            return Err(std::io::ErrorKind::InvalidInput.into());
        }
        self.region.copy_to(DATA + offset, buf)
    }

    fn append_to(&self, offset: usize, len: usize, out: &mut Vec<u8>) -> std::io::Result<()> {
        if offset.checked_add(len).is_none_or(|end| end > self.size) {
            return Err(std::io::ErrorKind::InvalidInput.into());
        }
        self.region.append_to(DATA + offset, len, out)
    }
}

impl Drop for Lent {
    fn drop(&mut self) {
        // Release: the reads of the message come before. Only from BUSY: a memfd that a
        // peer passed off as a segment, in another state, is not written to.
        if let Ok(state) = state(&self.region) {
            let _ = state.compare_exchange(BUSY, FREE, Ordering::Release, Ordering::Relaxed);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn segment_of(spills: &Spills, claimed: &Claimed) -> usize {
        let segments = spills.segments.lock().unwrap();
        segments
            .iter()
            .position(|s| Arc::ptr_eq(s, &claimed.segment))
            .unwrap()
    }

    #[test]
    fn a_segment_is_reused_only_once_its_consumer_freed_it() {
        let (spills, mapped) = (Spills::default(), Mapped::default());
        let first = spills.fill(&[1u8; 5000]).unwrap().unwrap();
        let fd = first.fd().unwrap();
        let at = segment_of(&spills, &first);
        first.handed_over();
        // Busy: the next message goes elsewhere.
        let second = spills.fill(&[2u8; 5000]).unwrap().unwrap();
        assert_ne!(segment_of(&spills, &second), at);
        let mut buf = Vec::new();
        mapped.copy_out(&fd, 5000, &mut buf).unwrap();
        assert_eq!(buf, [1u8; 5000]);
        // Freed: reused.
        let third = spills.fill(&[3u8; 5000]).unwrap().unwrap();
        assert_eq!(segment_of(&spills, &third), at);
        mapped
            .copy_out(&third.fd().unwrap(), 5000, &mut buf)
            .unwrap();
        assert_eq!(buf, [3u8; 5000]);
        drop(second);
    }

    #[test]
    fn an_unpublished_claim_is_released() {
        let spills = Spills::default();
        let claimed = spills.fill(&[1u8; 100]).unwrap().unwrap();
        let at = segment_of(&spills, &claimed);
        drop(claimed);
        let again = spills.fill(&[1u8; 100]).unwrap().unwrap();
        assert_eq!(segment_of(&spills, &again), at);
    }

    #[test]
    fn the_pool_is_bounded_and_then_says_none() {
        let spills = Spills::default();
        let claims: Vec<_> = (0..POOL)
            .map(|_| spills.fill(&[0u8; 10]).unwrap().unwrap())
            .collect();
        assert!(spills.fill(&[0u8; 10]).unwrap().is_none());
        assert!(spills.fill(&vec![0u8; POOL_MAX_BYTES]).unwrap().is_none());
        drop(claims);
        // A free segment too small is replaced by a larger one.
        let big = spills.fill(&vec![7u8; 3 << 20]).unwrap().unwrap();
        assert!(big.segment.room() >= 3 << 20);
        assert_eq!(spills.segments.lock().unwrap().len(), POOL);
    }

    #[test]
    fn a_segment_whose_size_is_not_sealed_is_refused() {
        let file = std::fs::File::from(mproc_sys::memfd_create("not-sealed").unwrap());
        file.set_len(1 << 20).unwrap();
        let fd = OwnedFd::from(file);
        let e = Mapped::default()
            .copy_out(&fd, 10, &mut Vec::new())
            .unwrap_err();
        assert_eq!(e.kind(), crate::ErrorKind::Corrupt);
        let spills = Spills::default();
        let claimed = spills.fill(&[0u8; 10]).unwrap().unwrap();
        let e = Mapped::default()
            .copy_out(&claimed.fd().unwrap(), 2 << 20, &mut Vec::new())
            .unwrap_err();
        assert_eq!(e.kind(), crate::ErrorKind::Corrupt);
    }
}
