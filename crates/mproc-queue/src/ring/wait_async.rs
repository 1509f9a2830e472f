//! How a waiter on tokio's reactor is woken, when the queue's other waiters sleep on
//! futexes, which no reactor can poll (`tokio` feature).
//!
//! # The design
//!
//! Each queue has one **eventfd**, made with the queue and passed with its handle like its
//! other fds, so every holder has it. Nobody ever reads it: its counter only grows (2^64
//! signals away from its limit), and every write to it is a fresh `EPOLLIN` edge for every
//! epoll instance watching it, in every process. (Reading it would reset the counter, and
//! an epoll instance that had not yet collected the edge would then drop it: a lost
//! wake-up.)
//!
//! An async waiter raises an **await flag** (`CONSUMERS_AWAIT`, `PRODUCERS_AWAIT`,
//! `JOINERS_AWAIT`) in the same flags word as the futex sleepers' flag. The side that wakes
//! sleepers already loads that word after every move; it tests both flags with one mask, so
//! with no async waiter the hot path is the instructions it was. When the await flag is
//! up it clears it and writes the eventfd (one syscall, only then). A flag, not a count: a
//! waiter that is cancelled or killed leaves at most one spurious write behind, where a
//! count would leak and cost a write per message for ever.
//!
//! Each waiting future registers its **own duplicate** of the eventfd with the reactor
//! (an `AsyncFd`), so that its readiness is its own: a shared registration's readiness,
//! cleared by one waiter, could swallow the edge another waiter registered for. A future
//! that gets what it wants before it has to sleep makes no fd, no registration, no timer.
//!
//! # No lost wake-up
//!
//! A sleeping future, on each poll: (1) clears the readiness it has seen and registers its
//! waker (`poll_read_ready` until `Pending`); (2) raises its flag (a read-modify-write and a
//! full fence, as a futex sleeper does); (3) looks again (`async_ready`); only then returns
//! `Pending`. The waker publishes, fences, loads the flags, clears them, then writes. By the
//! fences, either the look in (3) sees what was published, or the waker's load sees the flag
//! of (2), and its write, which follows, sets a readiness that (1) did not clear and that
//! wakes the waker registered in (1). Readiness cleared in (1) came from writes that
//! happened before this look, whose changes (3) sees. Every retry comes after a clear, so
//! a wake-up that arrives while the future runs is kept for its next poll (tokio clears
//! only the readiness the guard saw).
//!
//! # Spinning, and the dead
//!
//! Before it sleeps, a waiter spins as a blocking one does, within the same adaptive
//! budget, looking at the other side's line with growing gaps; but every 64 looks it
//! yields to the runtime (and the thread to the OS), so other tasks run. A round trip
//! then costs what a blocking one does, and no syscall while the other side keeps up.
//!
//! Sleeping, a waiter also sets a 100 ms timer (tokio's), the blocking waiter's nap:
//! when it fires and the wait still cannot end, the holders are checked (`others_gone`),
//! and the wait ends `Disconnected` as a blocking one does. A producer killed between
//! publishing and signalling is noticed then too.
//!
//! # Cancellation
//!
//! Every attempt (a `get`, a `put`, `join`'s look) completes within one poll, so a future
//! dropped between polls has either done its work and returned it, or not started it.

use std::future::Future;
use std::os::fd::AsFd;
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::task::{Context, Poll};

use mproc_sys::ReactorFd;
use tokio::io::unix::AsyncFd;
use tokio::time::{Instant, Sleep};

use crate::error::{Error, ErrorKind};
use crate::ring::Ring;
use crate::ring::layout::{CONSUMERS_AWAIT, COUNT, End, JOINERS_AWAIT, PENDING, PRODUCERS_AWAIT};
use crate::ring::protocol::Core;
use crate::ring::shared::{RobustLock, Shared, Word};
use crate::ring::wait::{GAP_MAX, MAX_NAP, SPIN_MAX, SPIN_MIN};

/// Who awaits.
#[derive(Clone, Copy, Debug)]
pub(crate) enum AsyncWaiter {
    /// A consumer, for a message.
    Consumer,
    /// A producer, for room.
    Producer,
    /// A joiner, for the last `task_done`.
    Joiner,
}

/// Why an async wait ended without its attempt succeeding.
pub(crate) enum Stopped {
    /// Nobody else is left to make progress (see `holders`).
    Alone,
    /// The reactor refused the eventfd, or the handle has none.
    Failed(Error),
}

/// Looks, in pauses, between two yields to the runtime while spinning.
const LOOKS_PER_YIELD: u32 = 64;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    /// The first attempt of a wait.
    Start,
    /// Spinning: looks so far, the gap before the next, the pauses spent, the budget.
    Spin,
    /// Registered and announced; the next poll attempts first.
    Asleep,
    /// The nap ended: attempt, then check the holders.
    Napped,
}

/// The state of one async wait, kept between polls (a future's, or a stream's between
/// items: the registration is kept for the next item).
pub(crate) struct AsyncWait {
    phase: Phase,
    /// A producer's look at the consumers' `head` before its last attempt.
    mark: u64,
    looks: u32,
    gap: u32,
    spent: u32,
    budget: u32,
    fd: Option<AsyncFd<ReactorFd>>,
    nap: Option<Pin<Box<Sleep>>>,
}

impl Default for AsyncWait {
    fn default() -> Self {
        AsyncWait {
            phase: Phase::Start,
            mark: 0,
            looks: 0,
            gap: 1,
            spent: 0,
            budget: 0,
            fd: None,
            nap: None,
        }
    }
}

impl std::fmt::Debug for AsyncWait {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AsyncWait")
            .field("phase", &self.phase)
            .field("registered", &self.fd.is_some())
            .finish_non_exhaustive()
    }
}

impl AsyncWait {
    /// Polls the wait: runs `attempt` (which must not block: a `try_*`) until it returns
    /// `Some`, spinning, then sleeping on the queue's eventfd between attempts.
    pub(crate) fn poll<R>(
        &mut self,
        cx: &mut Context<'_>,
        ring: &Ring,
        waiter: AsyncWaiter,
        mut attempt: impl FnMut() -> Option<R>,
    ) -> Poll<Result<R, Stopped>> {
        let core = &ring.core;
        loop {
            match self.phase {
                Phase::Start => {
                    // A producer's first attempt goes without its mark (a look at the
                    // consumers' line, a cache miss per put): when it fails, the mark is
                    // taken, then a second attempt made, before any wait.
                    let first = match waiter {
                        AsyncWaiter::Producer => attempt(),
                        AsyncWaiter::Consumer | AsyncWaiter::Joiner => None,
                    };
                    if let Some(r) = first.or_else(|| self.attempt(core, waiter, &mut attempt)) {
                        self.phase = Phase::Start;
                        return Poll::Ready(Ok(r));
                    }
                    let budget = core.pacing.spin.load(Ordering::Relaxed);
                    (self.looks, self.gap, self.spent, self.budget) = (0, 1, 0, budget);
                    self.phase = Phase::Spin;
                }
                Phase::Spin => match self.spin(core, waiter, &mut attempt) {
                    Some(Ok(r)) => return Poll::Ready(Ok(r)),
                    Some(Err(())) => {
                        // Let the other tasks run (and, on a busy machine, the process
                        // this one waits for).
                        std::thread::yield_now();
                        cx.waker().wake_by_ref();
                        return Poll::Pending;
                    }
                    None => {
                        self.phase = Phase::Asleep;
                        let until = Instant::now() + MAX_NAP;
                        match &mut self.nap {
                            Some(nap) => nap.as_mut().reset(until),
                            None => self.nap = Some(Box::pin(tokio::time::sleep_until(until))),
                        }
                        if let Err(e) = self.sleep(cx, ring, waiter) {
                            return Poll::Ready(Err(Stopped::Failed(e)));
                        }
                        if self.phase == Phase::Asleep {
                            return Poll::Pending;
                        }
                    }
                },
                Phase::Asleep | Phase::Napped => {
                    if let Some(r) = self.attempt(core, waiter, &mut attempt) {
                        self.phase = Phase::Start;
                        return Poll::Ready(Ok(r));
                    }
                    if self.phase == Phase::Napped {
                        if core.shared.others_gone() {
                            self.phase = Phase::Start;
                            return Poll::Ready(Err(Stopped::Alone));
                        }
                        if let Some(nap) = &mut self.nap {
                            nap.as_mut().reset(Instant::now() + MAX_NAP);
                        }
                        self.phase = Phase::Asleep;
                    }
                    if let Err(e) = self.sleep(cx, ring, waiter) {
                        return Poll::Ready(Err(Stopped::Failed(e)));
                    }
                    if self.phase == Phase::Asleep {
                        return Poll::Pending;
                    }
                }
            }
        }
    }

    /// One attempt, after a look at what tells a producer's progress.
    fn attempt<S: Shared, R>(
        &mut self,
        core: &Core<S>,
        waiter: AsyncWaiter,
        attempt: &mut impl FnMut() -> Option<R>,
    ) -> Option<R> {
        // Before the attempt: a get freeing room between the two is then seen as progress.
        self.mark = core.async_mark(waiter);
        let r = attempt();
        if r.is_some() {
            self.phase = Phase::Start;
        }
        r
    }

    /// Spins for at most `LOOKS_PER_YIELD` looks: `Some(Ok)` when an attempt succeeded
    /// (the budget grows), `Some(Err)` when the runtime should have the thread back for a
    /// moment, `None` when the budget is spent (it shrinks) and the wait should sleep.
    fn spin<S: Shared, R>(
        &mut self,
        core: &Core<S>,
        waiter: AsyncWaiter,
        attempt: &mut impl FnMut() -> Option<R>,
    ) -> Option<Result<R, ()>> {
        let spin = &core.pacing.spin;
        for _ in 0..LOOKS_PER_YIELD {
            if self.spent >= self.budget {
                spin.store((self.budget / 2).max(SPIN_MIN), Ordering::Relaxed);
                return None;
            }
            for _ in 0..self.gap {
                std::hint::spin_loop();
            }
            self.spent += self.gap;
            self.looks += 1;
            self.gap = if self.looks == 1 {
                1
            } else {
                (self.gap * 2).min(GAP_MAX)
            };
            if core.async_ready(waiter, self.mark)
                && let Some(r) = self.attempt(core, waiter, attempt)
            {
                spin.store((self.budget * 2).min(SPIN_MAX), Ordering::Relaxed);
                return Some(Ok(r));
            }
        }
        Some(Err(()))
    }

    /// Goes to sleep, or finds it need not: leaves the phase `Asleep` when the future
    /// should return `Pending`, and sets `Napped` when the nap has ended. See the module's
    /// "No lost wake-up" for the order of the steps.
    fn sleep(
        &mut self,
        cx: &mut Context<'_>,
        ring: &Ring,
        waiter: AsyncWaiter,
    ) -> Result<(), Error> {
        let core = &ring.core;
        let fd = match &mut self.fd {
            Some(fd) => fd,
            None => self.fd.insert(register(ring)?),
        };
        // (1) Clear what this future has seen; register its waker for what comes next.
        loop {
            match fd.poll_read_ready(cx) {
                Poll::Ready(Ok(mut seen)) => seen.clear_ready(),
                Poll::Ready(Err(e)) => {
                    return Err(Error::io("waiting on the queue's eventfd", e));
                }
                Poll::Pending => break,
            }
        }
        // (2) Announce, (3) look again.
        core.announce_async(waiter);
        if core.async_ready(waiter, self.mark) {
            // Progress, or a lock held for a moment: attempt again, after the runtime's
            // other tasks (a lock held by another process is not waited for in place).
            cx.waker().wake_by_ref();
            return Ok(());
        }
        if let Some(nap) = &mut self.nap
            && nap.as_mut().poll(cx).is_ready()
        {
            self.phase = Phase::Napped;
        }
        Ok(())
    }
}

/// Registers a duplicate of the queue's eventfd with the current runtime's reactor.
fn register(ring: &Ring) -> Result<AsyncFd<ReactorFd>, Error> {
    let Some(fd) = &ring.core.shared.wake_fd else {
        return Err(Error::with_source(
            ErrorKind::Io,
            "this queue handle has no eventfd to await on: the queue was built with \
             `async_waits(false)`, or by a program built without mproc's tokio feature",
            std::io::Error::from(std::io::ErrorKind::Unsupported),
        ));
    };
    // A duplicate of its own per waiter (see the module's docs), closed by a forked child.
    mproc_sys::register_async(fd.as_fd())
        .map_err(|e| Error::io("registering the queue's eventfd with the runtime", e))
}

impl<S: Shared> Core<S> {
    /// What a producer's readiness is measured from: the consumers' `head` word.
    fn async_mark(&self, waiter: AsyncWaiter) -> u64 {
        match waiter {
            AsyncWaiter::Producer => self.shared.header().consumer.head.load(Ordering::SeqCst),
            AsyncWaiter::Consumer | AsyncWaiter::Joiner => 0,
        }
    }

    /// Whether an attempt may succeed now (a look, without any lock): a message is
    /// waiting, for a consumer; a get has freed room since `mark`, or another producer
    /// holds the lock for a moment, for a producer (the size of the message is not known
    /// here: it is the attempt's to fit); nothing is unfinished, or a put counted and
    /// unpublished, for a joiner. A closed queue is ready for all (the attempt says so).
    fn async_ready(&self, waiter: AsyncWaiter, mark: u64) -> bool {
        let h = self.shared.header();
        match waiter {
            AsyncWaiter::Consumer => {
                let tail = End::unpack(h.producer.tail.load(Ordering::SeqCst));
                let head = End::unpack(h.consumer.head.load(Ordering::SeqCst));
                tail.pos != head.pos || self.is_closed()
            }
            AsyncWaiter::Producer => {
                h.consumer.head.load(Ordering::SeqCst) != mark
                    || self.shared.producers().is_locked()
                    || self.is_closed()
            }
            AsyncWaiter::Joiner => {
                let u = h.join.unfinished.load(Ordering::SeqCst);
                u & COUNT == 0 || u & PENDING != 0
            }
        }
    }

    /// Raises the await flag of `waiter`, then fences, before the look that follows (the
    /// other half of the fence in `wake`).
    fn announce_async(&self, waiter: AsyncWaiter) {
        let h = self.shared.header();
        let (word, flag) = match waiter {
            AsyncWaiter::Consumer => (&h.producer.flags, CONSUMERS_AWAIT),
            AsyncWaiter::Producer => (&h.consumer.flags, PRODUCERS_AWAIT),
            AsyncWaiter::Joiner => (&h.join.flags, JOINERS_AWAIT),
        };
        word.fetch_or(flag, Ordering::SeqCst);
        self.shared.full_fence_after_rmw();
    }

    /// A joiner's attempt: whether nothing is unfinished; repairs after a producer that
    /// died between counting its put and publishing it, as a blocking `join` does.
    pub(crate) fn join_attempt(&self) -> bool {
        let u = self.shared.header().join.unfinished.load(Ordering::SeqCst);
        if u & COUNT == 0 {
            return true;
        }
        if u & PENDING != 0 {
            self.repair_if_a_producer_died();
        }
        self.unfinished() == 0
    }
}

impl Ring {
    /// A joiner's attempt (see [`Core::join_attempt`]).
    pub(crate) fn join_attempt(&self) -> bool {
        self.core.join_attempt()
    }
}

/// Waits as [`AsyncWait::poll`] does, as a future (for `join_async`).
pub(crate) struct Awaiting<'a, R, F: FnMut() -> Option<R>> {
    pub(crate) ring: &'a Ring,
    pub(crate) waiter: AsyncWaiter,
    pub(crate) wait: AsyncWait,
    pub(crate) attempt: F,
}

impl<R, F: FnMut() -> Option<R> + Unpin> Future for Awaiting<'_, R, F> {
    type Output = Result<R, Stopped>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = &mut *self;
        this.wait
            .poll(cx, this.ring, this.waiter, &mut this.attempt)
    }
}
