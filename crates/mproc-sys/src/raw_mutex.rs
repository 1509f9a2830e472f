//! `RawMutex`: the process-shared, robust mutex every mproc lock is built on.
//!
//! It is a mutex word in the layout of the kernel's robust futexes: it holds its owner's
//! thread id, and while held it sits on the owning thread's robust list (the one glibc
//! registers for every thread), so when the owner dies, even by SIGKILL, the kernel marks the
//! word `OWNER_DIED` and wakes a waiter.

use std::sync::atomic::{AtomicU32, AtomicUsize, Ordering, compiler_fence};
use std::time::Instant;

use crate::robust_list::{
    FUTEX_OFFSET, RobustHead, ThreadState, held_contains, held_push, held_take, thread_state,
};

use crate::lock_word::{self, OWNER_DIED, TID_MASK};

/// What a lock attempt on a [`RawMutex`] gave.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LockStatus {
    /// The lock is ours and the previous owner released it.
    Acquired,
    /// The lock is ours, but the previous owner died holding it (or released it while
    /// marking the data inconsistent). What it protects may be half-updated.
    OwnerDied,
    /// The lock was held and the deadline passed (at once, for `try_lock`).
    WouldBlock,
}

/// Returned by [`RawMutex::unlock`] when the calling thread does not hold the lock.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NotOwner;

impl std::fmt::Display for NotOwner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("the lock is not held by this thread")
    }
}

impl std::error::Error for NotOwner {}

/// A process-shared, robust mutex word, living in a lock region's [`LockSlot`](crate::LockSlot)
/// (see [`Region::anonymous_locks_with_fd`](crate::Region::anonymous_locks_with_fd)).
///
/// While held, its `prev`/`next` fields are links of the owning thread's robust list, and
/// unlocking writes through them. So a `RawMutex` cannot be made on the stack or the heap
/// (it could be moved or freed while held), and no other view of its bytes is ever lent:
/// lock regions are reachable only through their slots, and a lock region's mapping is kept
/// (leaked) rather than unmapped while one of this process's threads holds one of its locks.
/// Processes that share a lock trust each other with it, as with glibc's process-shared
/// robust mutexes: one that scribbles on a held lock's links can corrupt its holder.
///
/// The word holds the owner's thread id, so the lock is owned by a thread: only the thread
/// that locked it can unlock it. While held it is linked into the owning thread's robust
/// list, so the kernel hands it to the next locker with [`LockStatus::OwnerDied`] if the
/// owner dies. It spins briefly, then sleeps in the kernel. All zero bytes is an unlocked
/// mutex, and any bytes are safe to lock (garbage in the word reads as a held lock whose
/// owner, once known dead, the kernel cannot release: lock with a deadline).
///
/// ```
/// use mproc_sys::{LockStatus, Region};
/// let (region, _fd) = Region::anonymous_locks_with_fd(4096)?;
/// let m = region.lock_slot(0)?.mutex();
/// assert_eq!(m.lock(None), LockStatus::Acquired);
/// assert_eq!(m.try_lock(), LockStatus::WouldBlock);
/// m.unlock()?;
/// assert!(m.unlock().is_err());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[repr(C, align(8))]
#[derive(Debug)]
pub struct RawMutex {
    word: AtomicU32,
    /// Owner-only state for the layers above (an `RLock`'s recursion count).
    aux: AtomicU32,
    _reserved: [AtomicU32; 4],
    /// The robust list entry: `prev` then `next`, as in glibc's `__pthread_list_t`.
    prev: AtomicUsize,
    next: AtomicUsize,
}

const _: () = {
    assert!(std::mem::offset_of!(RawMutex, next) as libc::c_long == -FUTEX_OFFSET);
    assert!(std::mem::offset_of!(RawMutex, prev) + 8 == std::mem::offset_of!(RawMutex, next));
};

impl RawMutex {
    #[inline]
    fn entry(&self) -> usize {
        &self.next as *const AtomicUsize as usize
    }

    /// Locks, sleeping until the lock is free or `deadline` passes.
    #[inline]
    pub fn lock(&self, deadline: Option<Instant>) -> LockStatus {
        let me = thread_state();
        self.set_pending(me, self.entry());
        let status = if lock_word::acquire_unmarked(&self.word, me.tid) {
            LockStatus::Acquired
        } else {
            lock_word::acquire_slow(&self.word, me.tid, deadline)
        };
        self.acquired(me, status)
    }

    /// Locks if that needs no waiting.
    #[inline]
    pub fn try_lock(&self) -> LockStatus {
        let me = thread_state();
        self.set_pending(me, self.entry());
        let status = lock_word::try_acquire(&self.word, me.tid);
        self.acquired(me, status)
    }

    /// Ends an acquisition begun with the pending marker set: links a lock we got into
    /// the thread's robust list (or its held set), and clears the marker.
    #[inline]
    fn acquired(&self, me: ThreadState, status: LockStatus) -> LockStatus {
        if status != LockStatus::WouldBlock {
            self.enqueue(me);
            if me.head == 0 {
                held_push(self.entry()); // no robust list to prove ownership with
            }
        }
        self.set_pending(me, 0);
        status
    }

    /// Unlocks. A lock taken with [`LockStatus::OwnerDied`] and not marked consistent
    /// ([`mark_consistent`](RawMutex::mark_consistent)) stays marked, so the next locker
    /// gets `OwnerDied` too (the data it protects still needs repair).
    ///
    /// # Errors
    ///
    /// [`NotOwner`] when the calling thread does not hold the lock; nothing changes.
    #[inline]
    pub fn unlock(&self) -> Result<(), NotOwner> {
        let me = thread_state();
        let mine = if me.head != 0 {
            self.on_my_list(me)
        } else {
            held_take(self.entry())
        };
        if !mine {
            return Err(NotOwner);
        }
        self.set_pending(me, self.entry());
        self.dequeue(me);
        lock_word::release(&self.word);
        self.set_pending(me, 0);
        Ok(())
    }

    /// Declares the data repaired after [`LockStatus::OwnerDied`]: the lock is released
    /// normally from now on.
    ///
    /// # Errors
    ///
    /// [`NotOwner`] when the calling thread does not hold the lock.
    pub fn mark_consistent(&self) -> Result<(), NotOwner> {
        if !self.is_owned_by_current_thread() {
            return Err(NotOwner);
        }
        self.word.fetch_and(!OWNER_DIED, Ordering::Relaxed);
        Ok(())
    }

    /// Returns whether the lock is consistent: not marked by a holder's death (or repaired
    /// since).
    pub fn is_consistent(&self) -> bool {
        self.word.load(Ordering::Relaxed) & OWNER_DIED == 0
    }

    /// Returns whether the lock is held (by anyone, in any process).
    pub fn is_locked(&self) -> bool {
        self.word.load(Ordering::Relaxed) & TID_MASK != 0
    }

    /// Returns whether the calling thread holds the lock (it locked it, and has not
    /// unlocked it).
    pub fn is_owned_by_current_thread(&self) -> bool {
        let me = thread_state();
        self.word.load(Ordering::Relaxed) & TID_MASK == me.tid
            && if me.head != 0 {
                self.on_my_list(me)
            } else {
                held_contains(self.entry())
            }
    }

    /// Returns the owner's thread id, if the lock is held.
    pub fn owner(&self) -> Option<u32> {
        let tid = self.word.load(Ordering::Relaxed) & TID_MASK;
        (tid != 0).then_some(tid)
    }

    /// A word of state that only the lock's owner should read or write (an `RLock`'s
    /// recursion count, say). It is not reset when an owner dies.
    pub fn owner_word(&self) -> &AtomicU32 {
        &self.aux
    }

    /// Returns whether this mutex is on the calling thread's robust list: ownership
    /// proved from the thread's own records, never from the shared word alone, which a
    /// peer could forge. Locks are usually released newest first: then the mutex is the
    /// list's first entry, read from the head in this thread's private memory.
    #[inline]
    fn on_my_list(&self, me: ThreadState) -> bool {
        // SAFETY: `me.head` is this thread's registered head (private memory).
        let first = unsafe { (*(me.head as *const RobustHead)).list } & !1;
        first == self.entry() || (first != me.head && self.deeper_on_my_list(me, first))
    }

    /// The rest of the walk, through the links of the entries ahead (in shared memory,
    /// or glibc's): read with `process_vm_readv` on ourselves, which fails cleanly on a
    /// bad address instead of faulting, so a corrupt link can only make the answer "no".
    #[cold]
    fn deeper_on_my_list(&self, me: ThreadState, first: usize) -> bool {
        let entry = self.entry();
        let mut cur = first;
        // Far more than anyone holds at once; it only stops a corrupt cycle.
        for _ in 0..(1 << 20) {
            if cur == entry {
                return true;
            }
            if cur == me.head || cur == 0 {
                return false;
            }
            // SAFETY: `cur` is an entry of this thread's robust list, valid while held
            // (ours, in a lock region kept mapped; or glibc's) - the trust every robust
            // list relies on; the read itself fails cleanly where it can.
            match unsafe { read_own_word(cur) } {
                Some(next) => cur = next & !1,
                None => return false,
            }
        }
        false
    }

    #[inline]
    fn set_pending(&self, me: ThreadState, entry: usize) {
        if me.head == 0 {
            return;
        }
        compiler_fence(Ordering::SeqCst);
        // SAFETY: `me.head` is this thread's registered robust list head (see
        // `init_thread_state`), valid for the thread's lifetime and only written by this
        // thread (the kernel reads it once the thread is dead).
        unsafe { (*(me.head as *mut RobustHead)).list_op_pending = entry };
        compiler_fence(Ordering::SeqCst);
    }

    /// Links this (now owned) mutex at the front of the thread's robust list, as glibc's
    /// `ENQUEUE_MUTEX` does, so that glibc's own list operations stay valid around it.
    #[inline]
    fn enqueue(&self, me: ThreadState) {
        if me.head == 0 {
            return;
        }
        let head = me.head as *mut RobustHead;
        // SAFETY: this thread owns the list (see `set_pending`). Every entry on it is a
        // `next` field preceded by its `prev` field: glibc's robust mutexes and ours have
        // that layout, and so do the heads (ours: `OwnHead::prev_slot`; glibc's:
        // `robust_prev`). So `first - 8` is the first entry's `prev`, or the head's slot.
        unsafe {
            let first = (*head).list;
            *(((first & !1) - 8) as *mut usize) = self.entry();
            self.next.store(first, Ordering::Relaxed);
            self.prev.store(head as usize, Ordering::Relaxed);
            compiler_fence(Ordering::SeqCst);
            (*head).list = self.entry();
        }
    }

    /// Unlinks this mutex from the thread's robust list (glibc's `DEQUEUE_MUTEX`).
    #[inline]
    fn dequeue(&self, me: ThreadState) {
        if me.head == 0 {
            return;
        }
        let next = self.next.load(Ordering::Relaxed);
        let prev = self.prev.load(Ordering::Relaxed);
        // SAFETY: we own the lock, so `enqueue` linked it into this thread's list and the
        // neighbours' fields are kept in glibc's layout (see `enqueue`): `next - 8` is the
        // next entry's `prev` field and `prev` points at the previous entry's `next` field
        // (or the head's `list` field, its first word).
        unsafe {
            *(((next & !1) - 8) as *mut usize) = prev;
            *((prev & !1) as *mut usize) = next;
        }
    }
}

/// Reads a word of this process's own memory at `addr` without faulting: `None` if the
/// address is not mapped readable (`process_vm_readv` on ourselves). Where a sandbox
/// forbids that call, the word is read directly.
///
/// # Safety
///
/// `addr` must be readable for a word whenever `process_vm_readv` is unavailable.
unsafe fn read_own_word(addr: usize) -> Option<usize> {
    let mut word: usize = 0;
    let local = libc::iovec {
        iov_base: (&mut word as *mut usize).cast(),
        iov_len: std::mem::size_of::<usize>(),
    };
    let remote = libc::iovec {
        iov_base: addr as *mut libc::c_void,
        iov_len: std::mem::size_of::<usize>(),
    };
    // SAFETY: `local` describes our own stack variable; the kernel checks `remote` and
    // reports a bad address as an error instead of touching it from here.
    let n = unsafe { libc::process_vm_readv(libc::getpid(), &local, 1, &remote, 1, 0) };
    if n == std::mem::size_of::<usize>() as isize {
        return Some(word);
    }
    match std::io::Error::last_os_error().raw_os_error() {
        Some(libc::EFAULT) | None => None,
        // EPERM or ENOSYS (a seccomp filter): read it directly.
        _ if addr.is_multiple_of(std::mem::align_of::<usize>()) && addr != 0 => {
            // SAFETY: the caller guarantees `addr` is readable; it is aligned and non-null.
            Some(unsafe { (addr as *const usize).read_volatile() })
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::robust_list::{THREAD, thread_id};
    use std::time::Duration;

    fn shared_mutex() -> crate::Region {
        crate::Region::anonymous_locks_with_fd(4096).unwrap().0
    }

    fn at(region: &crate::Region, slot: usize) -> &RawMutex {
        region.lock_slot(slot * 64).unwrap().mutex()
    }

    #[test]
    fn owner_death_is_reported_to_the_next_locker() {
        let region = shared_mutex();
        let m = at(&region, 1);
        // SAFETY: the child only locks (atomics and syscalls) and exits without unwinding.
        match unsafe { libc::fork() } {
            0 => {
                let _ = m.lock(None);
                // SAFETY: immediate exit, holding the lock.
                unsafe { libc::_exit(0) };
            }
            pid => {
                let mut status = 0;
                // SAFETY: waiting for our own child.
                unsafe { libc::waitpid(pid, &mut status, 0) };
            }
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        assert_eq!(m.lock(Some(deadline)), LockStatus::OwnerDied);
        assert!(!m.is_consistent());
        m.unlock().unwrap();
        assert_eq!(
            m.lock(Some(deadline)),
            LockStatus::OwnerDied,
            "still inconsistent"
        );
        m.mark_consistent().unwrap();
        m.unlock().unwrap();
        assert_eq!(m.lock(Some(deadline)), LockStatus::Acquired);
        m.unlock().unwrap();
    }

    #[test]
    fn a_dying_thread_releases_its_locks_and_others_stay_linked() {
        let region = shared_mutex();
        let (a, b, c) = (at(&region, 0), at(&region, 1), at(&region, 2));
        std::thread::scope(|s| {
            s.spawn(|| {
                assert_eq!(a.lock(None), LockStatus::Acquired);
                assert_eq!(b.lock(None), LockStatus::Acquired);
                assert_eq!(c.lock(None), LockStatus::Acquired);
                // Out of order: the list must stay intact.
                b.unlock().unwrap();
            });
        });
        // The kernel releases them as the thread exits, just after the scope saw it end.
        let deadline = Some(Instant::now() + Duration::from_secs(10));
        assert_eq!(a.lock(deadline), LockStatus::OwnerDied);
        assert_eq!(b.try_lock(), LockStatus::Acquired);
        assert_eq!(c.lock(deadline), LockStatus::OwnerDied);
        for m in [a, b, c] {
            let _ = m.mark_consistent();
            m.unlock().unwrap();
        }
    }

    #[test]
    fn without_a_robust_list_ownership_comes_from_the_held_set() {
        let region = crate::Region::anonymous_locks_with_fd(64 * 40).unwrap().0;
        std::thread::scope(|s| {
            s.spawn(|| {
                // As on a thread whose robust list could not be found.
                let tid = thread_state().tid;
                THREAD.with(|t| t.set(ThreadState { tid, head: 0 }));
                let locks: Vec<&RawMutex> = (0..20).map(|i| at(&region, i)).collect();
                for m in &locks {
                    assert_eq!(m.lock(None), LockStatus::Acquired);
                }
                // Past the 16 kept inline, released out of order.
                for i in [
                    3, 19, 0, 17, 16, 8, 1, 2, 4, 5, 6, 7, 9, 10, 11, 12, 13, 14, 15, 18,
                ] {
                    assert!(locks[i].is_owned_by_current_thread());
                    locks[i].unlock().unwrap();
                    assert_eq!(locks[i].unlock(), Err(NotOwner));
                }
                let forged = at(&region, 25);
                forged.word.store(tid, Ordering::Relaxed);
                assert_eq!(forged.unlock(), Err(NotOwner));
                forged.word.store(0, Ordering::Relaxed);
            });
        });
    }

    #[test]
    fn locks_deeper_than_the_kernels_walk_are_still_ours() {
        let n = 2100; // more than the 2048 entries the kernel walks at a thread's death
        let region = crate::Region::anonymous_locks_with_fd(64 * n).unwrap().0;
        std::thread::scope(|s| {
            s.spawn(|| {
                let locks: Vec<&RawMutex> = (0..n).map(|i| at(&region, i)).collect();
                for m in &locks {
                    assert_eq!(m.lock(None), LockStatus::Acquired);
                }
                // The oldest are the deepest on the list.
                for m in &locks[..5] {
                    assert!(m.is_owned_by_current_thread());
                    m.unlock().unwrap();
                    assert!(!m.is_owned_by_current_thread());
                }
                for m in locks[5..].iter().rev() {
                    m.unlock().unwrap();
                }
            });
        });
    }

    #[test]
    fn a_forged_owner_word_does_not_make_us_the_owner() {
        let region = shared_mutex();
        let m = at(&region, 0);
        // A peer writes our thread id (and garbage links) into a lock it shares with us.
        m.word.store(thread_id(), Ordering::Relaxed);
        m.next.store(0x1000, Ordering::Relaxed);
        m.prev.store(0x2000, Ordering::Relaxed);
        assert!(!m.is_owned_by_current_thread());
        assert_eq!(m.unlock(), Err(NotOwner));
        assert_eq!(m.mark_consistent(), Err(NotOwner));
        m.word.store(0, Ordering::Relaxed);
        assert_eq!(m.lock(None), LockStatus::Acquired);
        assert!(m.is_owned_by_current_thread());
        m.unlock().unwrap();
    }

    #[test]
    fn a_waiter_is_woken_when_the_owner_dies_and_timeouts_expire() {
        let region = shared_mutex();
        let m = at(&region, 0);
        std::thread::scope(|s| {
            let (tx, rx) = std::sync::mpsc::channel();
            let h = s.spawn(move || {
                assert_eq!(m.lock(None), LockStatus::Acquired);
                tx.send(()).unwrap();
                std::thread::sleep(Duration::from_millis(100));
                // the thread ends holding the lock
            });
            rx.recv().unwrap();
            let t0 = Instant::now();
            assert_eq!(
                m.lock(Some(t0 + Duration::from_millis(20))),
                LockStatus::WouldBlock
            );
            assert!(t0.elapsed() >= Duration::from_millis(20));
            assert_eq!(m.lock(None), LockStatus::OwnerDied);
            h.join().unwrap();
        });
        m.mark_consistent().unwrap();
        assert!(m.unlock().is_ok());
    }
}
