//! What the pool's handles do to its bookkeeping: submit work, cancel it, close the pool,
//! terminate it, wait for its end.

use std::time::{Duration, Instant};

use super::{Chunk, Deliveries, Phase, Shared, State, deliver};
use crate::error::{Error, Result};
use crate::sink::Delivery;
use crate::task::Event;

/// Fails every item of `chunks` with `e`.
fn fail_all(chunks: impl IntoIterator<Item = Chunk>, e: &Error, deliveries: &mut Deliveries) {
    for c in chunks {
        deliveries.push((c.sink, c.span, Delivery::Failed(e.clone())));
    }
}

impl Shared {
    /// Adds chunks of work and sends out what the workers have room for. A pool that
    /// takes no more work fails the chunks (each item gets the error) and returns it.
    pub(crate) fn submit(&self, chunks: Vec<Chunk>) -> Result<()> {
        let mut deliveries = Deliveries::new();
        let mut st = self.lock();
        if let Err(e) = st.check_running() {
            drop(st);
            fail_all(chunks, &e, &mut deliveries);
            deliver(deliveries);
            return Err(e);
        }
        st.pending.extend(chunks);
        st.dispatch(&mut deliveries);
        // Workers on demand are started by the manager thread: wake it when this work
        // needs one.
        let wake = self.config.on_demand && !st.starts_wanted(0).is_empty();
        drop(st);
        deliver(deliveries);
        if wake {
            let _ = self.events.try_put(Event::Wake);
        }
        Ok(())
    }

    /// Cancels the jobs none of whose chunks was sent yet, and drops their chunks: Python's
    /// `shutdown(cancel_futures=True)`.
    pub(crate) fn cancel_pending(&self) {
        let mut st = self.lock();
        let pending: Vec<Chunk> = st.pending.drain(..).collect();
        drop(st);
        for chunk in &pending {
            chunk.sink.cancel_pending();
        }
        // The chunks of jobs that could not be cancelled (a map partly sent) go back.
        let mut st = self.lock();
        for chunk in pending.into_iter().rev() {
            if !chunk.sink.is_cancelled() {
                st.pending.push_front(chunk);
            }
        }
        drop(st);
        // While they were out (the cancelled tasks' callbacks ran meanwhile), a worker may
        // have gone idle with nothing pending to take: the manager sends them out now (and
        // ends a closed pool that has nothing left).
        let _ = self.events.try_put(Event::Wake);
    }

    /// How many workers are running now.
    pub(crate) fn live_workers(&self) -> usize {
        self.lock()
            .slots
            .iter()
            .filter(|s| s.child.is_some())
            .count()
    }

    /// Returns an error unless the pool takes work.
    pub(crate) fn check_running(&self) -> Result<()> {
        self.lock().check_running()
    }

    /// Kills and reaps every worker and marks the pool ended: the last resort when the
    /// manager cannot run (its thread did not start, or panicked).
    pub(crate) fn reap_all(&self) {
        let mut st = self.lock();
        for slot in &mut st.slots {
            if let Some(mut c) = slot.child.take() {
                let _ = c.kill();
                let _ = c.wait_timeout(Duration::from_secs(5));
            }
        }
        st.phase = Phase::Ended;
        drop(st);
        self.watcher.stop();
        self.ended.notify_all();
    }

    /// Stops taking work; the workers end once what was submitted is done.
    pub(crate) fn close(&self) {
        let mut st = self.lock();
        if st.phase == Phase::Running {
            st.phase = Phase::Closed;
            // An idle pool's workers can be told at once; otherwise the manager tells
            // them when the last chunk is done. Either way their results and ends wake
            // the manager; only a pool without a worker needs a wake-up to end.
            st.wind_down();
            let nobody = st.all_gone();
            drop(st);
            if nobody {
                // Never wait for room here: the manager itself may be the caller (from a
                // callback), and a full event queue wakes it anyway.
                let _ = self.events.try_put(Event::Wake);
            }
        }
    }

    /// Fails all outstanding work with `Terminated` and kills every worker.
    pub(crate) fn terminate(&self) {
        self.terminate_with(true);
    }

    /// Fails all outstanding work with `Terminated` and sends every worker SIGKILL
    /// (`kill`) or SIGTERM.
    pub(crate) fn terminate_with(&self, kill: bool) {
        let mut deliveries = Deliveries::new();
        let mut st = self.lock();
        if matches!(st.phase, Phase::Terminating | Phase::Ended) {
            return;
        }
        st.phase = Phase::Terminating;
        st.terminated = true;
        let failed = Error::terminated();
        for chunk in st.pending.drain(..) {
            deliveries.push((chunk.sink, chunk.span, Delivery::Failed(failed.clone())));
        }
        for slot in &mut st.slots {
            for f in slot.in_flight.drain(..) {
                deliveries.push((f.chunk.sink, f.chunk.span, Delivery::Failed(failed.clone())));
            }
            if let Some(q) = &slot.tasks {
                q.close();
            }
            if let Some(c) = &slot.child {
                let _ = if kill { c.kill() } else { c.terminate() };
            }
        }
        drop(st);
        deliver(deliveries);
        let _ = self.events.try_put(Event::Wake);
    }

    /// Waits until the manager has ended (every worker reaped) or `deadline` passes.
    pub(crate) fn wait_ended(&self, deadline: Option<Instant>) -> bool {
        let st = self.lock();
        crate::condvar::wait_until(&self.ended, st, deadline, |st| st.phase == Phase::Ended).1
    }
}

impl State {
    fn check_running(&self) -> Result<()> {
        match self.phase {
            Phase::Running => Ok(()),
            Phase::Closed => Err(Error::closed()),
            Phase::Ended if !self.terminated => Err(Error::closed()),
            Phase::Terminating | Phase::Ended => Err(Error::terminated()),
        }
    }

    /// In a closed pool with no work left, closes the workers' queues so that they end.
    pub(super) fn wind_down(&mut self) {
        let idle = self.pending.is_empty() && self.slots.iter().all(|s| s.in_flight.is_empty());
        if self.phase == Phase::Terminating
            || (self.phase == Phase::Closed && idle)
            || self.broken.is_some() && self.phase != Phase::Running
        {
            for s in &self.slots {
                if let Some(q) = &s.tasks {
                    q.close();
                }
            }
        }
    }
}
