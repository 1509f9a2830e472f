//! A `JoinableQueue`'s count of unfinished items, kept right when a producer dies between
//! counting its item and publishing it.

use std::sync::atomic::Ordering;
use std::time::Instant;

use crate::error::{Error, ErrorKind, Result};
use crate::ring::Waited;
use crate::ring::layout::{COUNT, JOINERS_ASLEEP, PENDING};
use crate::ring::protocol::{Core, Held};
use crate::ring::shared::{Shared, Word};
use crate::ring::wait::nap_until;

impl<S: Shared> Core<S> {
    /// Counts the item a put is about to publish at `target`, marked `PENDING` until
    /// [`uncount_pending`](Core::uncount_pending) (under the producers' lock).
    #[inline]
    pub(crate) fn count_pending(&self, target: u32) {
        if self.joinable {
            let j = &self.shared.header().join;
            j.target.store(target, Ordering::Relaxed);
            j.unfinished.fetch_add(1 | PENDING, Ordering::SeqCst);
        }
    }

    /// The put counted by [`count_pending`](Core::count_pending) is published.
    #[inline]
    pub(crate) fn uncount_pending(&self) {
        if self.joinable {
            let j = &self.shared.header().join;
            j.unfinished.fetch_sub(PENDING, Ordering::SeqCst);
        }
    }

    pub(crate) fn unfinished(&self) -> usize {
        (self.shared.header().join.unfinished.load(Ordering::Acquire) & COUNT) as usize
    }

    pub(crate) fn task_done(&self) -> Result<()> {
        let r = self.shared.header().join.unfinished.fetch_update(
            Ordering::SeqCst,
            Ordering::SeqCst,
            |u| (u & COUNT != 0).then(|| u - 1),
        );
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

    /// Waits until every item put has been marked done, until `deadline`, or until
    /// nobody else is left to mark any (see `holders`).
    pub(crate) fn join(&self, deadline: Option<Instant>) -> Waited {
        let j = &self.shared.header().join;
        loop {
            let u = j.unfinished.load(Ordering::SeqCst);
            if u & COUNT == 0 {
                return Waited::Ready;
            }
            if u & PENDING != 0 {
                self.repair_if_a_producer_died();
            }
            let seen = j.wake.load(Ordering::SeqCst);
            j.flags.fetch_or(JOINERS_ASLEEP, Ordering::SeqCst);
            self.shared.full_fence_after_rmw();
            if j.unfinished.load(Ordering::SeqCst) & COUNT == 0 {
                return Waited::Ready;
            }
            let (until, last) = nap_until(deadline);
            if self.shared.futex_wait(&j.wake, seen, until) {
                if self.unfinished() == 0 {
                    return Waited::Ready;
                }
                if last {
                    return Waited::TimedOut;
                }
                if self.shared.others_gone() {
                    return Waited::Alone;
                }
            }
        }
    }

    /// Runs under the producers' lock taken from a producer that died holding it: undoes
    /// the count of a put that never published its record.
    pub(crate) fn repair_producers(&self) {
        if !self.joinable {
            return;
        }
        let h = self.shared.header();
        let u = h.join.unfinished.load(Ordering::SeqCst);
        if u & PENDING == 0 {
            return;
        }
        let published =
            h.producer.tail.load(Ordering::SeqCst) as u32 == h.join.target.load(Ordering::SeqCst);
        let _ = h
            .join
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

    /// A put counted but not published: if its producer died holding the lock, and no
    /// other producer has come since to repair, repair now (a `join` would otherwise wait
    /// for a put that will never finish). A live producer keeps the lock: nothing to do.
    pub(super) fn repair_if_a_producer_died(&self) {
        if let Some((held, true)) = Held::try_take(self.shared.producers()) {
            self.repair_producers();
            held.mark_consistent();
        }
    }
}
