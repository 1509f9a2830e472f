//! The manager thread's loop: takes events, hands results to their jobs, sends out chunks,
//! replaces dead workers; ends when the pool has.

use std::sync::{Arc, mpsc};

use mproc_process::StartMethod;
use mproc_queue::GetError;

use super::slots::Retry;
use super::{Deliveries, Phase, Shared, deliver};
use crate::error::{Error, ErrorKind, Result};
use crate::task::Event;

thread_local! {
    /// The pool whose manager thread this is (0 elsewhere): what runs there (callbacks,
    /// the drop of results) must not wait for that pool.
    static MANAGER: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}

/// Returns whether the calling thread is the manager thread of pool `id`, which must not
/// wait for its own pool (a callback that does would wait for itself).
pub(crate) fn on_manager_of(id: usize) -> bool {
    MANAGER.get() == id
}

/// Marks the calling thread as the one that delivers the results of `id` (a pool, or a
/// relay front), so that waiting there for them fails at once instead of hanging.
pub(crate) fn become_manager_of(id: usize) {
    MANAGER.set(id);
}

/// The error of waiting, in a callback, for the pool that runs the callback.
pub(crate) fn reentrant_wait() -> Error {
    Error::new(
        ErrorKind::InvalidState,
        "a callback (or a drop on the pool's result thread) cannot wait for its own pool: \
         that thread is the one that delivers the results",
    )
}

impl Shared {
    /// The manager thread: takes events, hands results to their jobs, sends out chunks,
    /// replaces dead workers; ends when the pool is closed and idle, or terminated, and
    /// every worker has been reaped.
    /// With `start_first`, the manager starts the first workers itself and reports how
    /// that went on `ready` (see [`Shared::starts_first_workers`]).
    pub(crate) fn run_manager(
        self: &Arc<Self>,
        start_first: bool,
        ready: mpsc::Sender<Result<()>>,
    ) {
        MANAGER.set(self.id());
        let first = if start_first {
            self.start_first_workers()
        } else {
            Ok(())
        };
        let first_failed = first.is_err();
        let _ = ready.send(first);
        if first_failed {
            self.terminate();
        }
        let mut retry = Retry::default();
        let mut batch = Vec::new();
        loop {
            self.next_events(&retry, &mut batch);
            let Some(restart) = self.advance(&mut batch, &mut retry) else {
                self.end();
                return;
            };
            self.restart_workers(restart, &mut retry);
        }
    }

    /// Waits for the next event (or until a start is due for a retry), then takes the
    /// events queued behind it, up to a batch.
    fn next_events(&self, retry: &Retry, batch: &mut Vec<Event>) {
        let got = match retry.due_in() {
            None => self.events.get(),
            Some(wait) => self.events.get_timeout(wait),
        };
        match got {
            Ok(ev) => batch.push(ev),
            Err(GetError::Empty) => {} // time to retry a start
            Err(e) => {
                // What was lost is found out: lost results by the next result of the
                // same worker, ended workers by their pidfds.
                eprintln!(
                    "mproc-pool: an event was lost: {}",
                    mproc_sys::with_causes(&e)
                );
                batch.push(Event::Resync);
            }
        }
        while batch.len() < 256 {
            match self.events.try_get() {
                Ok(ev) => batch.push(ev),
                Err(_) => break,
            }
        }
    }

    /// Handles a batch of events under the pool's lock, sends out chunks and hands the
    /// outcomes to their jobs. Returns the slots to start a worker in, or `None` once the
    /// pool has ended (closed and idle, or terminated, every worker reaped).
    fn advance(&self, batch: &mut Vec<Event>, retry: &mut Retry) -> Option<Vec<usize>> {
        let mut deliveries = Deliveries::new();
        let mut restart = Vec::new();
        let mut st = self.lock();
        for ev in batch.drain(..) {
            st.handle(ev, &self.config, &mut deliveries, &mut restart);
        }
        if st.wants_worker() {
            restart.extend(retry.take_due());
        } else {
            retry.clear();
        }
        st.dispatch(&mut deliveries);
        if self.config.on_demand {
            for index in st.starts_wanted(retry.failures) {
                if !restart.contains(&index) && !retry.slots.contains(&index) {
                    restart.push(index);
                }
            }
        }
        st.wind_down();
        let finished = restart.is_empty() && st.all_gone() && st.phase != Phase::Running;
        if finished {
            st.phase = Phase::Ended;
        }
        drop(st);
        deliver(deliveries);
        (!finished).then_some(restart)
    }

    /// Ends the manager: the pool's fork server and watcher stop, joins return.
    fn end(&self) {
        // The fork server of a fork pool goes with its last worker.
        drop(self.config.server.lock().map(|mut s| s.take()));
        self.watcher.stop();
        self.ended.notify_all();
    }

    /// Whether the manager thread, rather than the caller, starts the first workers: with
    /// the spawn method, whose children get a parent-death signal that follows the
    /// *thread* that started them (a pool built on a short-lived thread would lose them).
    /// The other methods start them on the caller's thread, one thread hop sooner.
    pub(crate) fn starts_first_workers(&self) -> bool {
        self.config.method == StartMethod::Spawn && !self.config.on_demand
    }
}
