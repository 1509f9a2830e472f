//! The robust mutex word's protocol (acquire, sleep, give up, release) over any
//! [`FutexWord`], so that a model checker can run it on its own atomics.
//!
//! The word holds the owner's thread id (`TID_MASK`), `WAITERS` once someone sleeps on it,
//! and `OWNER_DIED` once the kernel found its owner dead (robust futexes: it then sets the
//! bit, clears the id, keeps `WAITERS`, and wakes one sleeper).

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Instant;

use crate::futex::{FutexWait, futex_wait, futex_wake};
use crate::raw_mutex::LockStatus;

pub(crate) const TID_MASK: u32 = 0x3fff_ffff;
pub(crate) const OWNER_DIED: u32 = 0x4000_0000;
pub(crate) const WAITERS: u32 = 0x8000_0000;

/// A word threads and processes sleep on: the atomic operations and futex calls the lock
/// word's protocol uses, with the meaning of `AtomicU32`'s and the kernel's.
pub(crate) trait FutexWord {
    /// How many spin-loop hints a locker spends looking again before it sleeps (about
    /// 25 µs where a hint takes 25 ns, as on AMD Zen 4).
    const SPINS: u32 = 1000;

    fn load(&self, order: Ordering) -> u32;
    fn compare_exchange(
        &self,
        current: u32,
        new: u32,
        success: Ordering,
        failure: Ordering,
    ) -> Result<u32, u32>;
    fn swap(&self, value: u32, order: Ordering) -> u32;
    fn fetch_or(&self, value: u32, order: Ordering) -> u32;
    /// Sleeps while the word holds `expected`, until woken or `deadline`.
    fn wait(&self, expected: u32, deadline: Option<Instant>) -> FutexWait;
    /// Wakes one sleeper.
    fn wake_one(&self);

    /// Whether `deadline` has passed.
    fn deadline_passed(&self, deadline: Option<Instant>) -> bool {
        deadline.is_some_and(|d| Instant::now() >= d)
    }
}

impl FutexWord for AtomicU32 {
    #[inline]
    fn load(&self, order: Ordering) -> u32 {
        AtomicU32::load(self, order)
    }

    #[inline]
    fn compare_exchange(
        &self,
        current: u32,
        new: u32,
        success: Ordering,
        failure: Ordering,
    ) -> Result<u32, u32> {
        AtomicU32::compare_exchange(self, current, new, success, failure)
    }

    #[inline]
    fn swap(&self, value: u32, order: Ordering) -> u32 {
        AtomicU32::swap(self, value, order)
    }

    #[inline]
    fn fetch_or(&self, value: u32, order: Ordering) -> u32 {
        AtomicU32::fetch_or(self, value, order)
    }

    fn wait(&self, expected: u32, deadline: Option<Instant>) -> FutexWait {
        futex_wait(self, expected, deadline)
    }

    fn wake_one(&self) {
        futex_wake(self, 1);
    }
}

/// The fast path: takes a free word that nobody has marked (`0`) for `tid`.
#[inline]
pub(crate) fn acquire_unmarked<W: FutexWord>(word: &W, tid: u32) -> bool {
    word.compare_exchange(0, tid, Ordering::Acquire, Ordering::Relaxed)
        .is_ok()
}

/// Takes the word for `tid` if that needs no waiting (a dead owner's lock included).
#[inline]
pub(crate) fn try_acquire<W: FutexWord>(word: &W, tid: u32) -> LockStatus {
    let v = word.load(Ordering::Relaxed);
    if v & TID_MASK == 0
        && word
            .compare_exchange(
                v,
                tid | (v & (WAITERS | OWNER_DIED)),
                Ordering::Acquire,
                Ordering::Relaxed,
            )
            .is_ok()
    {
        if v & OWNER_DIED != 0 {
            LockStatus::OwnerDied
        } else {
            LockStatus::Acquired
        }
    } else {
        LockStatus::WouldBlock
    }
}

/// Takes the word for `tid`, spinning a while, then sleeping until it is free or
/// `deadline` passes.
#[cold]
pub(crate) fn acquire_slow<W: FutexWord>(
    word: &W,
    tid: u32,
    deadline: Option<Instant>,
) -> LockStatus {
    let mut spins = 0;
    let mut backoff = 1;
    let mut slept = false;
    loop {
        let v = word.load(Ordering::Relaxed);
        if v & TID_MASK == 0 {
            // Free, perhaps after its owner died. Once we have slept, others may be
            // sleeping too, so keep the waiters bit for the unlock to see.
            // An inconsistent lock stays marked while held, until `mark_consistent`.
            let new = tid | (v & (WAITERS | OWNER_DIED)) | if slept { WAITERS } else { 0 };
            if word
                .compare_exchange(v, new, Ordering::Acquire, Ordering::Relaxed)
                .is_ok()
            {
                return if v & OWNER_DIED != 0 {
                    LockStatus::OwnerDied
                } else {
                    LockStatus::Acquired
                };
            }
            continue;
        }
        if spins < W::SPINS && v & WAITERS == 0 {
            // Look again after twice as long each time, up to 64 hints: a spinner that
            // reads the word at every hint pulls its cache line away from the holder at
            // every turn, and each of the holder's next writes waits for it to come back
            // (two processes hammering a `Value` on two CPUs, 1000 hints either way: 22M
            // op/s looking after every hint, 62M with this back-off).
            let hints = backoff.min(W::SPINS - spins);
            for _ in 0..hints {
                std::hint::spin_loop();
            }
            spins += hints;
            backoff = (backoff * 2).min(64);
            continue;
        }
        if word.deadline_passed(deadline) {
            return give_up(word, slept);
        }
        if v & WAITERS == 0
            && word
                .compare_exchange(v, v | WAITERS, Ordering::Relaxed, Ordering::Relaxed)
                .is_err()
        {
            continue;
        }
        slept = true;
        if word.wait(v | WAITERS, deadline) == FutexWait::TimedOut {
            return give_up(word, slept);
        }
    }
}

/// Leaves the wait at a deadline. A waiter that slept may have been the one an unlock
/// woke (and cleared the waiters bit for): re-mark the lock contended so the next unlock
/// wakes the sleepers that remain, or wake one now if it is free.
#[cold]
fn give_up<W: FutexWord>(word: &W, slept: bool) -> LockStatus {
    if slept {
        let v = word.fetch_or(WAITERS, Ordering::Relaxed);
        if v & TID_MASK == 0 {
            word.wake_one();
        }
    }
    LockStatus::WouldBlock
}

/// Releases a word its caller holds, keeping `OWNER_DIED` (a lock not marked consistent
/// stays marked), and wakes one sleeper if any.
#[inline]
pub(crate) fn release<W: FutexWord>(word: &W) {
    // While we hold the lock nobody else changes its OWNER_DIED bit.
    let v = word.load(Ordering::Relaxed);
    let old = word.swap(v & OWNER_DIED, Ordering::Release);
    if old & WAITERS != 0 {
        word.wake_one();
    }
}

/// The lock word's protocol under the loom model checker: every interleaving up to a
/// preemption bound (`LOOM_MAX_PREEMPTIONS`, 2 unless set), with lockers that sleep at
/// once and a futex that never times out by itself, so that a lost wake-up shows as a
/// deadlock and a missing Acquire/Release as a data race on the guarded value.
///
/// Run with `RUSTFLAGS="--cfg loom" cargo test -p mproc-sys --release --lib loom`
/// (`cargo xtask test` does, in a target directory of its own).
#[cfg(all(test, loom))]
mod loom_models {
    use super::*;
    use loom::cell::UnsafeCell;
    use loom::sync::atomic::{AtomicBool, AtomicU32 as ModelAtomic};
    use loom::sync::{Arc, Condvar, Mutex};

    /// The word on loom's atomics, with a model of the kernel's futex queue (FIFO; a wake
    /// marks the first sleeper not yet woken) and a timer: once it has fired, every
    /// locker with a deadline finds its deadline passed.
    struct ModelWord {
        word: ModelAtomic,
        /// The sleepers: (ticket, woken), and the next ticket.
        queue: Mutex<(Vec<(u32, bool)>, u32)>,
        changed: Condvar,
        timer_fired: AtomicBool,
    }

    impl ModelWord {
        fn new() -> ModelWord {
            ModelWord {
                word: ModelAtomic::new(0),
                queue: Mutex::new((Vec::new(), 0)),
                changed: Condvar::new(),
                timer_fired: AtomicBool::new(false),
            }
        }

        /// What the kernel does when the thread `tid` dies holding the word (its robust
        /// list walk): mark it `OWNER_DIED`, clear the owner, keep `WAITERS`, wake one.
        fn owner_dies(&self, tid: u32) {
            loop {
                let v = self.word.load(Ordering::SeqCst);
                if v & TID_MASK != tid {
                    return;
                }
                let new = (v & WAITERS) | OWNER_DIED;
                if self
                    .word
                    .compare_exchange(v, new, Ordering::SeqCst, Ordering::SeqCst)
                    .is_ok()
                {
                    if v & WAITERS != 0 {
                        self.wake_one();
                    }
                    return;
                }
            }
        }

        /// The timer of every locker with a deadline fires.
        fn fire_timer(&self) {
            self.timer_fired.store(true, Ordering::SeqCst);
            let _q = self.queue.lock().unwrap();
            self.changed.notify_all();
        }
    }

    impl FutexWord for ModelWord {
        const SPINS: u32 = 0;

        fn load(&self, order: Ordering) -> u32 {
            self.word.load(order)
        }

        fn compare_exchange(
            &self,
            current: u32,
            new: u32,
            success: Ordering,
            failure: Ordering,
        ) -> Result<u32, u32> {
            self.word.compare_exchange(current, new, success, failure)
        }

        fn swap(&self, value: u32, order: Ordering) -> u32 {
            self.word.swap(value, order)
        }

        fn fetch_or(&self, value: u32, order: Ordering) -> u32 {
            self.word.fetch_or(value, order)
        }

        fn wait(&self, expected: u32, deadline: Option<Instant>) -> FutexWait {
            let timed = deadline.is_some();
            let mut q = self.queue.lock().unwrap();
            if self.word.load(Ordering::SeqCst) != expected {
                return FutexWait::Changed;
            }
            if self.deadline_passed(deadline) {
                return FutexWait::TimedOut;
            }
            let ticket = q.1;
            q.1 += 1;
            q.0.push((ticket, false));
            loop {
                q = self.changed.wait(q).unwrap();
                let at = q.0.iter().position(|e| e.0 == ticket).unwrap();
                // A wake that arrived wins over the timer, as in the kernel.
                if q.0[at].1 {
                    q.0.remove(at);
                    return FutexWait::Woken;
                }
                if timed && self.timer_fired.load(Ordering::SeqCst) {
                    q.0.remove(at);
                    return FutexWait::TimedOut;
                }
            }
        }

        fn wake_one(&self) {
            let mut q = self.queue.lock().unwrap();
            if let Some(e) = q.0.iter_mut().find(|e| !e.1) {
                e.1 = true;
            }
            self.changed.notify_all();
        }

        fn deadline_passed(&self, deadline: Option<Instant>) -> bool {
            deadline.is_some() && self.timer_fired.load(Ordering::SeqCst)
        }
    }

    fn model(f: impl Fn() + Sync + Send + 'static) {
        let mut b = loom::model::Builder::new();
        if b.preemption_bound.is_none() {
            b.preemption_bound = Some(2);
        }
        b.check(f);
    }

    fn lock(word: &ModelWord, tid: u32, deadline: Option<Instant>) -> LockStatus {
        if acquire_unmarked(word, tid) {
            LockStatus::Acquired
        } else {
            acquire_slow(word, tid, deadline)
        }
    }

    /// A deadline that only the model's timer ends.
    fn far() -> Option<Instant> {
        Some(Instant::now() + std::time::Duration::from_secs(3600))
    }

    /// Mutual exclusion with the Acquire/Release it owes (loom reports a data race on the
    /// guarded value otherwise), and no lost wake-up among three contending lockers.
    #[test]
    fn three_lockers_exclude_each_other_and_all_get_in() {
        model(|| {
            let word = Arc::new(ModelWord::new());
            let value = Arc::new(UnsafeCell::new(0u32));
            let threads: Vec<_> = (1..=3u32)
                .map(|tid| {
                    let (word, value) = (Arc::clone(&word), Arc::clone(&value));
                    loom::thread::spawn(move || {
                        assert_eq!(lock(&word, tid, None), LockStatus::Acquired);
                        // SAFETY: the lock is held, so no other thread touches the value
                        // (which is what the model checks).
                        value.with_mut(|v| unsafe { *v += 1 });
                        release(&*word);
                    })
                })
                .collect();
            for t in threads {
                t.join().unwrap();
            }
            // SAFETY: every locker has been joined.
            assert_eq!(value.with(|v| unsafe { *v }), 3);
            assert_eq!(word.word.load(Ordering::SeqCst) & TID_MASK, 0);
        });
    }

    /// A sleeper woken by an unlock whose deadline then passes while a barging locker
    /// took the word must put the waiters bit back, or the other sleeper is stranded.
    #[test]
    fn a_timed_out_sleeper_leaves_no_other_sleeper_stranded() {
        model(|| {
            let word = Arc::new(ModelWord::new());
            assert_eq!(lock(&word, 1, None), LockStatus::Acquired);
            let locker = |tid: u32, deadline: Option<Instant>| {
                let word = Arc::clone(&word);
                loom::thread::spawn(move || {
                    let got = lock(&word, tid, deadline);
                    if got == LockStatus::Acquired {
                        release(&*word);
                    }
                    got
                })
            };
            let timed = locker(2, far());
            let patient = locker(3, None);
            let barging = locker(4, None);
            let timer = {
                let word = Arc::clone(&word);
                loom::thread::spawn(move || word.fire_timer())
            };
            release(&*word);
            timer.join().unwrap();
            assert_eq!(patient.join().unwrap(), LockStatus::Acquired);
            assert_eq!(barging.join().unwrap(), LockStatus::Acquired);
            assert_ne!(timed.join().unwrap(), LockStatus::OwnerDied);
        });
    }

    /// The owner dies holding the word: a sleeping locker gets it with `OwnerDied`, and
    /// the mark stays for the next locker until the data is declared repaired.
    #[test]
    fn a_dead_owners_word_goes_to_a_sleeper_as_owner_died() {
        model(|| {
            let word = Arc::new(ModelWord::new());
            assert_eq!(lock(&word, 1, None), LockStatus::Acquired);
            let waiter = {
                let word = Arc::clone(&word);
                loom::thread::spawn(move || {
                    let got = lock(&word, 2, None);
                    release(&*word);
                    got
                })
            };
            word.owner_dies(1);
            assert_eq!(waiter.join().unwrap(), LockStatus::OwnerDied);
            assert_eq!(try_acquire(&*word, 3), LockStatus::OwnerDied);
        });
    }
}
