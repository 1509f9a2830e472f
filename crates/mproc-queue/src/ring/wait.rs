//! How each side of the ring waits for the other: adaptive spinning, then a futex sleep
//! announced by a flag that the other side checks after every move.

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use crate::ring::Waited;
use crate::ring::layout::{
    CONSUMERS_ASLEEP, CONSUMERS_AWAIT, JOINERS_ASLEEP, JOINERS_AWAIT, PRODUCERS_ASLEEP,
    PRODUCERS_AWAIT,
};
use crate::ring::protocol::Core;
use crate::ring::shared::{Shared, Word};

/// The longest a waiter sleeps before looking again by itself. A process killed between
/// publishing and waking (or between `task_done`'s count and its wake) leaves sleepers
/// that nobody will wake; they notice within this long.
pub(super) const MAX_NAP: Duration = Duration::from_millis(100);

pub(super) const SPIN_MIN: u32 = 64;
pub(super) const SPIN_MAX: u32 = 1 << 15;
const SPIN_START: u32 = 2048;
/// The longest gap between looks, in pauses.
pub(super) const GAP_MAX: u32 = 32;
/// A first look that finds fewer than this many messages (or freed records) waits
/// longer next time; more than `BATCH_HIGH`, shorter.
const BATCH_LOW: u32 = 8;
const BATCH_HIGH: u32 = 32;

/// When a sleep should end: the deadline or `MAX_NAP` from now, whichever is first, and
/// whether that is the deadline.
pub(crate) fn nap_until(deadline: Option<Instant>) -> (Option<Instant>, bool) {
    let nap = Instant::now() + MAX_NAP;
    match deadline {
        Some(d) if d <= nap => (Some(d), true),
        _ => (Some(nap), false),
    }
}

/// This process's pacing of its waits, adapted to how they have been ending.
pub(crate) struct Pacing {
    /// How long to spin before sleeping, in pauses.
    pub(super) spin: AtomicU32,
    /// The pauses before a waiting consumer's first look.
    consumer_first_look: AtomicU32,
    /// The pauses before a waiting producer's first look.
    producer_first_look: AtomicU32,
}

impl Default for Pacing {
    fn default() -> Self {
        Pacing {
            spin: AtomicU32::new(SPIN_START),
            consumer_first_look: AtomicU32::new(1),
            producer_first_look: AtomicU32::new(1),
        }
    }
}

/// Who waits: each side sleeps on its own wake word and raises its own flag.
#[derive(Clone, Copy)]
pub(crate) enum Waiter {
    /// A consumer, for a message.
    Consumer,
    /// A producer, for room.
    Producer,
}

impl<S: Shared> Core<S> {
    /// Waits until `ready()` reports progress (a count above 0: messages waiting, for a
    /// consumer; records freed, for a producer): spins a while, then sleeps on its wake
    /// word after raising its flag. Ends when the deadline passes, or when a nap ends with
    /// no progress and nobody else is left to make any (see `holders`).
    ///
    /// Every look at the other side's line takes that line away from the side writing it,
    /// and that side pays for it at its next locked instruction (the store has to reach
    /// this core first). A consumer that looks as soon as it has caught up finds one
    /// message per look and costs the producer a stall per message. So the first look
    /// comes after a pause of the waiter's adaptive first-look length, which adapts: when
    /// the first look already finds progress but little of it, the other side is
    /// streaming, and the next wait looks later (up to `GAP_MAX` pauses), so that it finds
    /// a batch; when it finds a large batch, sooner; when the first look finds nothing,
    /// the other side was idle (a request and its answer, say), and the next wait looks at
    /// once again. Later looks come 1, 2, 4 ... `GAP_MAX` pauses apart.
    pub(crate) fn wait(
        &self,
        waiter: Waiter,
        deadline: Option<Instant>,
        ready: impl Fn() -> u32,
    ) -> Waited {
        let h = self.shared.header();
        let (first, ev, flag_word, flag) = match waiter {
            Waiter::Consumer => (
                &self.pacing.consumer_first_look,
                &h.producer.consumer_wake,
                &h.producer.flags,
                CONSUMERS_ASLEEP,
            ),
            Waiter::Producer => (
                &self.pacing.producer_first_look,
                &h.consumer.producer_wake,
                &h.consumer.flags,
                PRODUCERS_ASLEEP,
            ),
        };
        if deadline.is_some_and(|d| Instant::now() >= d) {
            // `try_*`, or out of time already: one look, no spinning.
            return Waited::from_ready(ready());
        }
        if S::SPINS
            && let Some(spun) = self.spin(first, deadline, &ready)
        {
            return spun;
        }
        loop {
            let seen = ev.load(Ordering::SeqCst);
            flag_word.fetch_or(flag, Ordering::SeqCst);
            // The other half of the fence in `wake`: the flag's store is ordered before
            // the look at what was published (free on x86_64, where the read-modify-write
            // already is a full barrier; a model checker needs it spelled out).
            self.shared.full_fence_after_rmw();
            if ready() > 0 {
                return Waited::Ready;
            }
            let (until, last) = nap_until(deadline);
            let napped = self.shared.futex_wait(ev, seen, until);
            if ready() > 0 {
                return Waited::Ready;
            }
            if napped {
                if last {
                    return Waited::TimedOut;
                }
                if self.shared.others_gone() {
                    return Waited::Alone;
                }
            }
        }
    }

    /// The spinning part of [`wait`](Core::wait): `Ready` when `ready()` reported
    /// progress within the spin budget (which then grows), `TimedOut` when the deadline
    /// passed, `None` when the budget ran out (it then shrinks) and the waiter should sleep.
    fn spin(
        &self,
        first: &AtomicU32,
        deadline: Option<Instant>,
        ready: &impl Fn() -> u32,
    ) -> Option<Waited> {
        let budget = self.pacing.spin.load(Ordering::Relaxed);
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
                self.pacing
                    .spin
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
                return Some(Waited::Ready);
            }
            gap = if looks == 1 {
                1
            } else {
                (gap * 2).min(GAP_MAX)
            };
            if looks.is_multiple_of(64) {
                if deadline.is_some_and(|d| Instant::now() >= d) {
                    return Some(Waited::TimedOut);
                }
                // On a machine with fewer cores than busy processes, let the one we are
                // waiting for run.
                std::thread::yield_now();
            }
        }
        first.store(1, Ordering::Relaxed);
        self.pacing
            .spin
            .store((budget / 2).max(SPIN_MIN), Ordering::Relaxed);
        None
    }

    /// Wakes the sleepers announced by `flag` in `flag_word`, and the async waiters
    /// announced by `awaited` in the same word (see `wait_async`). Called right after a
    /// locked read-modify-write (the unlock that follows a publishing store, or the update
    /// of a count), which must be ordered before the flags' load: a waiter sets its flag,
    /// then re-checks what was published (see [`wait`](Core::wait)). With nobody waiting
    /// this is one load and one test, as it was before async waiters existed.
    #[inline]
    fn wake(&self, ev: &S::U32, flag_word: &S::U32, flag: u32, awaited: u32) {
        self.shared.full_fence_after_rmw();
        let flags = flag_word.load(Ordering::Relaxed);
        if flags & (flag | awaited) != 0 {
            flag_word.fetch_and(!(flag | awaited), Ordering::SeqCst);
            if flags & flag != 0 {
                ev.fetch_add(1, Ordering::SeqCst);
                self.shared.futex_wake_all(ev);
            }
            // After the flag is cleared: a waiter that raises it again from here on either
            // sees what was published or is woken by this signal (see `wait_async`).
            if flags & awaited != 0 {
                self.shared.signal_async();
            }
        }
    }

    #[inline]
    pub(crate) fn wake_consumers(&self) {
        let p = &self.shared.header().producer;
        self.wake(
            &p.consumer_wake,
            &p.flags,
            CONSUMERS_ASLEEP,
            CONSUMERS_AWAIT,
        );
    }

    #[inline]
    pub(crate) fn wake_producers(&self) {
        let c = &self.shared.header().consumer;
        self.wake(
            &c.producer_wake,
            &c.flags,
            PRODUCERS_ASLEEP,
            PRODUCERS_AWAIT,
        );
    }

    pub(crate) fn wake_joiners(&self) {
        let j = &self.shared.header().join;
        self.wake(&j.wake, &j.flags, JOINERS_ASLEEP, JOINERS_AWAIT);
    }
}
