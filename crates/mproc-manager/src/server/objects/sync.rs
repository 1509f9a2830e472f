//! Synchronisation objects: locks, `RLock`s, conditions, semaphores, events, barriers.

use std::collections::VecDeque;
use std::sync::MutexGuard;

use super::{Ended, Object, State, fault, gone, lock};
use crate::protocol::{Fault, Kind, Op, Out, Owner, Reply, Wait};
use crate::server::{Caller, describe};

#[derive(Default)]
pub(crate) struct LockState {
    holder: Option<Owner>,
    /// Acquisitions by the holder (an `RLock` counts them).
    count: u64,
    /// Conditions: the tickets of waiting callers, in order, and those notified.
    waiters: VecDeque<u64>,
    notified: Vec<u64>,
    next_ticket: u64,
}

pub(crate) struct BarrierState {
    parties: u64,
    count: u64,
    generation: u64,
    resets: u64,
    broken: bool,
}

impl BarrierState {
    /// Makes a barrier for `parties` parties (at least one), none waiting.
    pub(super) fn new(parties: u64) -> Self {
        Self {
            parties,
            count: 0,
            generation: 0,
            resets: 0,
            broken: false,
        }
    }
}

impl Object {
    /// Releases the locks that `session` holds: its process is gone.
    pub(crate) fn release_session(&self, session: u64) {
        let mut g = lock(&self.state);
        if let State::Lock(l) = &mut *g
            && l.holder.is_some_and(|h| h.session == session)
        {
            l.holder = None;
            l.count = 0;
            self.changed.notify_all();
        }
    }

    pub(super) fn lock_op(&self, g: MutexGuard<'_, State>, op: Op, caller: &Caller<'_>) -> Reply {
        let recursive = self.kind != Kind::Lock;
        match op {
            Op::Acquire(owner, wait) => {
                let (mut g, ended) = self.wait_until(g, wait, caller, |s| {
                    matches!(s, State::Lock(l) if l.holder.is_none() || (recursive && l.holder == Some(owner)))
                });
                if !matches!(ended, Ended::Ready) {
                    return Ok(Out::Bool(false));
                }
                let State::Lock(l) = &mut *g else {
                    return Err(self.wrong(&Op::Locked));
                };
                l.holder = Some(owner);
                l.count += 1;
                Ok(Out::Bool(true))
            }
            Op::Release(owner) => {
                let mut g = g;
                let State::Lock(l) = &mut *g else {
                    return Err(self.wrong(&op));
                };
                match l.holder {
                    None => return Err(fault(Fault::NotOwner, "release of an unlocked lock")),
                    Some(h) if recursive && h != owner => {
                        return Err(fault(
                            Fault::NotOwner,
                            format!("the lock is held by {}, not by the caller", describe(&h)),
                        ));
                    }
                    Some(_) => {}
                }
                l.count -= 1;
                if l.count == 0 || !recursive {
                    l.holder = None;
                    l.count = 0;
                    self.changed.notify_all();
                }
                Ok(Out::Unit)
            }
            Op::Locked => {
                let mut g = g;
                let State::Lock(l) = &mut *g else {
                    return Err(self.wrong(&op));
                };
                Ok(Out::Bool(l.holder.is_some()))
            }
            Op::CondWait(owner, wait) if self.kind == Kind::Condition => {
                self.condition_wait(g, owner, wait, caller)
            }
            Op::Notify(owner, n) if self.kind == Kind::Condition => {
                let mut g = g;
                let State::Lock(l) = &mut *g else {
                    return Err(self.wrong(&op));
                };
                if l.holder != Some(owner) {
                    return Err(fault(
                        Fault::NotOwner,
                        "notify on a condition the caller does not hold",
                    ));
                }
                let n = (n as usize).min(l.waiters.len());
                let woken: Vec<u64> = l.waiters.drain(..n).collect();
                l.notified.extend(woken);
                self.changed.notify_all();
                Ok(Out::Unit)
            }
            op => Err(self.wrong(&op)),
        }
    }

    /// Releases the condition's lock, waits to be notified, and takes the lock back.
    fn condition_wait(
        &self,
        mut g: MutexGuard<'_, State>,
        owner: Owner,
        wait: Wait,
        caller: &Caller<'_>,
    ) -> Reply {
        let State::Lock(l) = &mut *g else {
            return Err(fault(Fault::WrongType, "not a condition"));
        };
        if l.holder != Some(owner) {
            return Err(fault(
                Fault::NotOwner,
                "wait on a condition the caller does not hold",
            ));
        }
        let ticket = l.next_ticket;
        l.next_ticket += 1;
        l.waiters.push_back(ticket);
        let saved = std::mem::take(&mut l.count);
        l.holder = None;
        self.changed.notify_all();
        let (mut g, ended) = self.wait_until(
            g,
            wait,
            caller,
            |s| matches!(s, State::Lock(l) if l.notified.contains(&ticket)),
        );
        let State::Lock(l) = &mut *g else {
            return Err(fault(Fault::WrongType, "not a condition"));
        };
        l.waiters.retain(|t| *t != ticket);
        let notified = l.notified.contains(&ticket);
        l.notified.retain(|t| *t != ticket);
        if matches!(ended, Ended::Gone) {
            if notified {
                self.pass_on(l);
            }
            return Err(gone());
        }
        // Take the lock back, however long it takes (Python does too).
        let (mut g, ended) = self.wait_until(
            g,
            Wait::Forever,
            caller,
            |s| matches!(s, State::Lock(l) if l.holder.is_none()),
        );
        if matches!(ended, Ended::Gone) {
            if let (true, State::Lock(l)) = (notified, &mut *g) {
                self.pass_on(l);
            }
            return Err(gone());
        }
        if let State::Lock(l) = &mut *g {
            l.holder = Some(owner);
            l.count = saved;
        }
        Ok(Out::Bool(notified))
    }

    /// Hands a notification that reached a waiter who went away to the next one in line, so
    /// that no live waiter sleeps through it.
    fn pass_on(&self, l: &mut LockState) {
        if let Some(next) = l.waiters.pop_front() {
            l.notified.push(next);
            self.changed.notify_all();
        }
    }

    pub(super) fn semaphore(&self, g: MutexGuard<'_, State>, op: Op, caller: &Caller<'_>) -> Reply {
        match op {
            Op::Acquire(_, wait) => {
                let (mut g, ended) = self.wait_until(
                    g,
                    wait,
                    caller,
                    |s| matches!(s, State::Semaphore { value, .. } if *value > 0),
                );
                if !matches!(ended, Ended::Ready) {
                    return Ok(Out::Bool(false));
                }
                if let State::Semaphore { value, .. } = &mut *g {
                    *value -= 1;
                }
                Ok(Out::Bool(true))
            }
            Op::Release(_) => {
                let mut g = g;
                let State::Semaphore { value, bound } = &mut *g else {
                    return Err(self.wrong(&op));
                };
                if bound.is_some_and(|b| *value >= b) || *value == u64::MAX {
                    return Err(fault(
                        Fault::NotOwner,
                        "a semaphore released above its bound",
                    ));
                }
                *value += 1;
                self.changed.notify_all();
                Ok(Out::Unit)
            }
            Op::SemValue => {
                let mut g = g;
                let State::Semaphore { value, .. } = &mut *g else {
                    return Err(self.wrong(&op));
                };
                Ok(Out::Num(*value))
            }
            op => Err(self.wrong(&op)),
        }
    }

    pub(super) fn event(&self, mut g: MutexGuard<'_, State>, op: Op, caller: &Caller<'_>) -> Reply {
        match op {
            Op::EventWait(wait) => {
                let State::Event { sets: before, .. } = *g else {
                    return Err(self.wrong(&op));
                };
                let (g, _) = self.wait_until(
                    g,
                    wait,
                    caller,
                    |s| matches!(s, State::Event { set, sets } if *set || *sets != before),
                );
                Ok(Out::Bool(
                    matches!(*g, State::Event { set, sets } if set || sets != before),
                ))
            }
            op => {
                let State::Event { set: flag, sets } = &mut *g else {
                    return Err(self.wrong(&op));
                };
                match op {
                    Op::EventSet => {
                        *flag = true;
                        *sets += 1;
                        self.changed.notify_all();
                        Ok(Out::Unit)
                    }
                    Op::EventClear => {
                        *flag = false;
                        Ok(Out::Unit)
                    }
                    Op::IsSet => Ok(Out::Bool(*flag)),
                    op => Err(self.wrong(&op)),
                }
            }
        }
    }

    pub(super) fn barrier(
        &self,
        mut g: MutexGuard<'_, State>,
        op: Op,
        caller: &Caller<'_>,
    ) -> Reply {
        let broken = || fault(Fault::BrokenBarrier, "the barrier is broken");
        let State::Barrier(b) = &mut *g else {
            return Err(self.wrong(&op));
        };
        match op {
            Op::BarrierWait(_, wait) => {
                if b.broken {
                    return Err(broken());
                }
                let arrived = b.count;
                b.count += 1;
                if b.count == b.parties {
                    b.count = 0;
                    b.generation += 1;
                    self.changed.notify_all();
                    return Ok(Out::Num(arrived));
                }
                let (generation, resets) = (b.generation, b.resets);
                let (mut g, ended) = self.wait_until(g, wait, caller, |s| {
                    matches!(s, State::Barrier(b) if b.generation != generation || b.broken || b.resets != resets)
                });
                let State::Barrier(b) = &mut *g else {
                    return Err(broken());
                };
                if b.generation != generation {
                    return Ok(Out::Num(arrived));
                }
                if b.resets == resets && !matches!(ended, Ended::Ready) {
                    // A party that times out or goes away breaks the barrier for all, as in
                    // Python: the others must not wait for it for ever.
                    b.broken = true;
                    b.count = b.count.saturating_sub(1);
                    self.changed.notify_all();
                }
                Err(broken())
            }
            Op::Abort => {
                b.broken = true;
                self.changed.notify_all();
                Ok(Out::Unit)
            }
            Op::Reset => {
                b.count = 0;
                b.broken = false;
                b.resets += 1;
                self.changed.notify_all();
                Ok(Out::Unit)
            }
            Op::Parties => Ok(Out::Num(b.parties)),
            Op::Waiting => Ok(Out::Num(if b.broken { 0 } else { b.count })),
            Op::Broken => Ok(Out::Bool(b.broken)),
            op => Err(self.wrong(&op)),
        }
    }
}
