//! The interface the ring's protocol runs on: atomic words, futex waits, record bytes,
//! robust locks.
//!
//! The queue runs the protocol on shared memory ([`Shm`]); a model checker can run the
//! same code on ordinary memory with instrumented atomics, by implementing these traits
//! for its own types (its atomics cannot live in an mmap). A process's death is then a
//! thread that stops at a chosen step.

use std::os::fd::{AsFd, OwnedFd};
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::Instant;

use mproc_shm::{Block, LockBlock, SharedMemory};
use mproc_sys::{FutexWait, LockStatus, Pinned};

use crate::error::Result;
use crate::holders;
use crate::ring::layout::PinnedHeader;

/// An atomic word of the header: the operations the protocol uses, with the meaning of
/// `std::sync::atomic`'s.
pub(crate) trait Word<T> {
    fn load(&self, order: Ordering) -> T;
    fn store(&self, value: T, order: Ordering);
    fn fetch_add(&self, value: T, order: Ordering) -> T;
    fn fetch_sub(&self, value: T, order: Ordering) -> T;
    fn fetch_or(&self, value: T, order: Ordering) -> T;
    fn fetch_and(&self, value: T, order: Ordering) -> T;
    fn fetch_update(
        &self,
        set: Ordering,
        fetch: Ordering,
        f: impl FnMut(T) -> Option<T>,
    ) -> std::result::Result<T, T>;
}

/// Implements [`Word`] for `$word`, which is (or derefs to) the atomic `$atomic`.
macro_rules! impl_word {
    ($word:ty, $atomic:ty, $t:ty) => {
        impl Word<$t> for $word {
            #[inline]
            fn load(&self, order: Ordering) -> $t {
                <$atomic>::load(self, order)
            }
            #[inline]
            fn store(&self, value: $t, order: Ordering) {
                <$atomic>::store(self, value, order)
            }
            #[inline]
            fn fetch_add(&self, value: $t, order: Ordering) -> $t {
                <$atomic>::fetch_add(self, value, order)
            }
            #[inline]
            fn fetch_sub(&self, value: $t, order: Ordering) -> $t {
                <$atomic>::fetch_sub(self, value, order)
            }
            #[inline]
            fn fetch_or(&self, value: $t, order: Ordering) -> $t {
                <$atomic>::fetch_or(self, value, order)
            }
            #[inline]
            fn fetch_and(&self, value: $t, order: Ordering) -> $t {
                <$atomic>::fetch_and(self, value, order)
            }
            #[inline]
            fn fetch_update(
                &self,
                set: Ordering,
                fetch: Ordering,
                f: impl FnMut($t) -> Option<$t>,
            ) -> std::result::Result<$t, $t> {
                <$atomic>::fetch_update(self, set, fetch, f)
            }
        }
    };
}

impl_word!(Pinned<AtomicU32>, AtomicU32, u32);
impl_word!(Pinned<AtomicU64>, AtomicU64, u64);
#[cfg(all(test, not(loom)))]
impl_word!(AtomicU32, AtomicU32, u32);
#[cfg(all(test, not(loom)))]
impl_word!(AtomicU64, AtomicU64, u64);
#[cfg(all(test, loom))]
impl_word!(
    loom::sync::atomic::AtomicU32,
    loom::sync::atomic::AtomicU32,
    u32
);
#[cfg(all(test, loom))]
impl_word!(
    loom::sync::atomic::AtomicU64,
    loom::sync::atomic::AtomicU64,
    u64
);

/// A robust lock: its holder's death hands it over with `LockStatus::OwnerDied`.
pub(crate) trait RobustLock {
    /// Takes the lock until `deadline`; `WouldBlock` when the deadline passed.
    fn lock(&self, deadline: Option<Instant>) -> LockStatus;
    /// Takes the lock if it is free now.
    fn try_lock(&self) -> LockStatus;
    /// Releases the lock; must be an atomic read-modify-write (see `full_fence_after_rmw`).
    fn unlock(&self);
    /// After `OwnerDied` and a repair: the state it guards is whole again.
    fn mark_consistent(&self);
    /// Whether a live thread holds the lock now (a moment's look; async waits only).
    #[cfg_attr(not(feature = "tokio"), allow(dead_code))]
    fn is_locked(&self) -> bool;
}

impl RobustLock for LockBlock {
    #[inline]
    fn lock(&self, deadline: Option<Instant>) -> LockStatus {
        self.slot().mutex().lock(deadline)
    }

    #[inline]
    fn try_lock(&self) -> LockStatus {
        self.slot().mutex().try_lock()
    }

    #[inline]
    fn unlock(&self) {
        let _ = self.slot().mutex().unlock();
    }

    #[inline]
    fn mark_consistent(&self) {
        let _ = self.slot().mutex().mark_consistent();
    }

    fn is_locked(&self) -> bool {
        self.slot().mutex().is_locked()
    }
}

/// Everything the ring's protocol touches that other processes share, and how to sleep
/// until one of them moves.
pub(crate) trait Shared {
    /// Whether a waiter spins before it sleeps (a model checker's memory says no: it
    /// explores every interleaving of every look, and sleeping is what it checks).
    const SPINS: bool = true;

    type U32: Word<u32>;
    type U64: Word<u64>;
    type Lock: RobustLock;

    fn header(&self) -> &crate::ring::layout::Header<Self::U32, Self::U64>;
    /// The producers' lock.
    fn producers(&self) -> &Self::Lock;
    /// The consumers' lock.
    fn consumers(&self) -> &Self::Lock;
    /// The ring's size in bytes (a power of two).
    fn ring_len(&self) -> usize;
    /// Copies `data` into the ring at byte offset `off` (`off + data.len()` within it).
    fn write(&self, off: usize, data: &[u8]) -> Result<()>;
    /// Copies the ring's bytes at `off` into `buf`.
    fn read(&self, off: usize, buf: &mut [u8]) -> Result<()>;
    /// Reads the aligned u64 at `off` in one access.
    fn read_u64(&self, off: usize) -> Result<u64>;
    /// Sleeps while `word` holds `expected`, until woken or `until`; `true` when `until`
    /// passed.
    fn futex_wait(&self, word: &Self::U32, expected: u32, until: Option<Instant>) -> bool;
    /// Wakes every sleeper on `word`.
    fn futex_wake_all(&self, word: &Self::U32);
    /// Wakes every async waiter, in every process (signals the queue's eventfd; see
    /// `wait_async`).
    fn signal_async(&self);
    /// Whether nobody but this process is left to make progress (see `holders`).
    fn others_gone(&self) -> bool;
    /// A full fence (store-load ordering) right after an atomic read-modify-write.
    fn full_fence_after_rmw(&self);
}

/// The queue's shared memory: its two locks, its header, its ring, and the presence pipe
/// that says whether anyone else is left.
pub(crate) struct Shm {
    pub(crate) producers: LockBlock,
    pub(crate) consumers: LockBlock,
    pub(crate) header_block: Block,
    pub(crate) header: PinnedHeader,
    pub(crate) ring: SharedMemory,
    /// The read end of the presence pipe (see `holders`).
    pub(crate) presence: OwnedFd,
    /// The eventfd that wakes async waiters, shared by every holder and never read (see
    /// `wait_async`); `None` in a build without the `tokio` feature.
    pub(crate) wake_fd: Option<OwnedFd>,
}

/// The eventfd that wakes async waiters (see `wait_async`), made only in a build where
/// they can exist, for a queue that asked for it.
pub(crate) fn new_wake_fd(wanted: bool) -> Result<Option<OwnedFd>> {
    if !cfg!(feature = "tokio") || !wanted {
        return Ok(None);
    }
    mproc_sys::eventfd()
        .map(Some)
        .map_err(|e| crate::error::Error::io("creating a queue's eventfd", e))
}

impl Shared for Shm {
    type U32 = Pinned<AtomicU32>;
    type U64 = Pinned<AtomicU64>;
    type Lock = LockBlock;

    #[inline]
    fn header(&self) -> &PinnedHeader {
        &self.header
    }

    #[inline]
    fn producers(&self) -> &LockBlock {
        &self.producers
    }

    #[inline]
    fn consumers(&self) -> &LockBlock {
        &self.consumers
    }

    #[inline]
    fn ring_len(&self) -> usize {
        self.ring.len()
    }

    #[inline]
    fn write(&self, off: usize, data: &[u8]) -> Result<()> {
        Ok(self.ring.write_at(off, data)?)
    }

    #[inline]
    fn read(&self, off: usize, buf: &mut [u8]) -> Result<()> {
        Ok(self.ring.read_at(off, buf)?)
    }

    #[inline]
    fn read_u64(&self, off: usize) -> Result<u64> {
        Ok(self.ring.read::<u64>(off)?)
    }

    #[inline]
    fn futex_wait(&self, word: &Pinned<AtomicU32>, expected: u32, until: Option<Instant>) -> bool {
        mproc_sys::futex_wait(word, expected, until) == FutexWait::TimedOut
    }

    #[inline]
    fn futex_wake_all(&self, word: &Pinned<AtomicU32>) {
        mproc_sys::futex_wake(word, u32::MAX);
    }

    #[cold]
    fn signal_async(&self) {
        if let Some(fd) = &self.wake_fd {
            // Fails only if the fd is not an eventfd, which `Ring::assemble` checked.
            let _ = mproc_sys::eventfd_signal(fd.as_fd());
        }
    }

    fn others_gone(&self) -> bool {
        holders::others_gone(&self.header_block, self.presence.as_fd())
    }

    /// On x86_64 every read-modify-write is a locked instruction, which the hardware
    /// already orders as a full fence, so only the compiler needs holding back; an
    /// `mfence` there would cost a few nanoseconds per message for nothing. Elsewhere, a
    /// real fence. This leans on `RobustLock::unlock` being an atomic swap (it must stay a
    /// read-modify-write) and on the unlock actually running: a `Held` exists only for a
    /// lock we hold. (A model checker's memory gives the portable fence.)
    #[inline]
    fn full_fence_after_rmw(&self) {
        #[cfg(target_arch = "x86_64")]
        std::sync::atomic::compiler_fence(Ordering::SeqCst);
        #[cfg(not(target_arch = "x86_64"))]
        std::sync::atomic::fence(Ordering::SeqCst);
    }
}
