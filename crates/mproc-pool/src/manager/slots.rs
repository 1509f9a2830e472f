//! Filling the workers' slots: starting a worker, retrying a start that failed with a
//! growing delay, emptying the slot of a worker that ended.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use mproc_process::Child;
use mproc_queue::Queue;

use super::{Config, Deliveries, Phase, Shared, Slot, State, deliver};
use crate::error::{Error, ErrorKind, Result};
use crate::sink::Delivery;
use crate::task::Task;
use crate::watcher::Watched;
use crate::worker::{Progress, WorkerArgs, worker_main};

/// The ring of a worker's task queue: chunks up to a quarter of it (1 MiB, some 250k small
/// items) are copied through it; larger ones travel beside it in sealed memfds. Pages are
/// touched only as the ring fills.
const TASK_RING_BYTES: usize = 4 << 20;

/// Consecutive failed starts, with no worker alive, after which the pool gives up.
const GIVE_UP_AFTER: u32 = 5;

/// Worker starts that failed, to try again with a growing delay (from 50 ms to 2 s).
#[derive(Default)]
pub(super) struct Retry {
    /// The slots whose start failed, to try again.
    pub(super) slots: Vec<usize>,
    at: Option<Instant>,
    /// Failed starts in a row.
    pub(super) failures: u32,
}

impl Retry {
    fn failed(&mut self, index: usize) {
        self.failures += 1;
        if !self.slots.contains(&index) {
            self.slots.push(index);
        }
        let delay = Duration::from_millis(50) * 2u32.pow((self.failures - 1).min(6));
        self.at = Some(Instant::now() + delay.min(Duration::from_secs(2)));
    }

    fn succeeded(&mut self) {
        self.failures = 0;
    }

    /// How long until the next retry, if one is waiting.
    pub(super) fn due_in(&self) -> Option<Duration> {
        self.at
            .map(|at| at.saturating_duration_since(Instant::now()))
    }

    pub(super) fn take_due(&mut self) -> Vec<usize> {
        match self.at {
            Some(at) if Instant::now() >= at => {
                self.at = None;
                std::mem::take(&mut self.slots)
            }
            _ => Vec::new(),
        }
    }

    pub(super) fn clear(&mut self) {
        self.slots.clear();
        self.at = None;
    }
}

impl Shared {
    /// Starts a worker in slot `index`. On failure the slot stays empty (the manager tries
    /// again later).
    fn start_worker(&self, index: usize) -> Result<()> {
        let (args, tasks, progress) = self.worker_args(index)?;
        let number = self.started.fetch_add(1, Ordering::Relaxed) + 1;
        let child = self
            .worker_builder()
            .name(format!("{}-{number}", self.config.prefix))
            .spawn(worker_main, args)?;
        self.install(index, child, tasks, progress)
    }

    /// Starts the first workers together (through a fork server, the requests overlap).
    pub(crate) fn start_first_workers(&self) -> Result<()> {
        let n = self.config.processes;
        let mut parts = Vec::with_capacity(n);
        let mut args = Vec::with_capacity(n);
        for index in 0..n {
            let (a, tasks, progress) = self.worker_args(index)?;
            args.push(a);
            parts.push((index, tasks, progress));
        }
        self.started.fetch_add(n, Ordering::Relaxed);
        let children = self
            .worker_builder()
            .name(self.config.prefix.clone())
            .spawn_batch(worker_main, args)?;
        for ((index, tasks, progress), child) in parts.into_iter().zip(children) {
            self.install(index, child, tasks, progress)?;
        }
        Ok(())
    }

    /// Puts a started worker in slot `index` and starts watching it.
    fn install(
        &self,
        index: usize,
        child: Child<()>,
        tasks: Queue<Task>,
        progress: Progress,
    ) -> Result<()> {
        let mut deliveries = Deliveries::new();
        let mut st = self.lock();
        let pidfd = child.sentinel().try_clone_to_owned();
        let slot = &mut st.slots[index];
        slot.generation += 1;
        let generation = slot.generation;
        slot.quota = self.config.max_tasks;
        slot.last_done = None;
        slot.progress = Some(progress.clone());
        slot.tasks = Some(tasks);
        let outcome = match pidfd {
            Ok(pidfd) => {
                if st.phase == Phase::Terminating {
                    let _ = child.kill();
                }
                st.slots[index].child = Some(child);
                self.watcher.add(Watched {
                    worker: index as u32,
                    generation,
                    pidfd,
                    progress,
                    killed_for: None,
                });
                Ok(())
            }
            Err(e) => {
                // Unwatchable: never leave it running.
                let mut child = child;
                let _ = child.kill();
                let _ = child.wait_timeout(Duration::from_secs(5));
                st.slots[index].tasks = None;
                Err(Error::new(ErrorKind::Io, "cannot watch a worker").with_source(e))
            }
        };
        st.dispatch(&mut deliveries);
        drop(st);
        deliver(deliveries);
        outcome
    }

    /// Starts a worker in each of the slots `restart`; a start that fails is retried later,
    /// and when no worker is left and none will start, the pool breaks: its work fails
    /// rather than wait.
    pub(super) fn restart_workers(&self, restart: Vec<usize>, retry: &mut Retry) {
        for index in restart {
            match self.start_worker(index) {
                Ok(()) => retry.succeeded(),
                Err(e) => {
                    eprintln!(
                        "mproc-pool: could not start a worker (will retry): {}",
                        mproc_sys::with_causes(&e)
                    );
                    retry.failed(index);
                    let mut st = self.lock();
                    if st.all_gone() && retry.failures >= GIVE_UP_AFTER {
                        // No worker at all, and none can be started: fail the work
                        // rather than keep it waiting.
                        st.broken = Some(e);
                        let mut deliveries = Deliveries::new();
                        st.dispatch(&mut deliveries);
                        drop(st);
                        deliver(deliveries);
                    }
                }
            }
        }
    }

    /// A worker's start argument, its task queue and its progress words.
    fn worker_args(&self, index: usize) -> Result<(WorkerArgs, Queue<Task>, Progress)> {
        let tasks = mproc_queue::Builder::new()
            .max_bytes(TASK_RING_BYTES)
            .async_waits(false)
            .build::<Task>()?;
        let progress = Progress::new()?;
        let initializer = match &self.config.initializer {
            Some((call, payload)) => Some((
                *call,
                payload.try_clone().map_err(|e| {
                    Error::new(ErrorKind::Io, "cannot pass the initializer's argument")
                        .with_source(e)
                })?,
            )),
            None => None,
        };
        let args = WorkerArgs {
            index: index as u32,
            tasks: tasks.clone(),
            events: self.events.clone(),
            progress: progress.clone(),
            timed: self.config.task_timeout.is_some(),
            initializer,
            max_tasks: self.config.max_tasks,
        };
        Ok((args, tasks, progress))
    }

    /// How workers start: daemonic, by the pool's method (or its fork server).
    fn worker_builder(&self) -> mproc_process::Builder {
        let builder = mproc_process::Builder::new().daemon(true);
        let server = self.config.server.lock().ok().and_then(|s| s.clone());
        match server {
            Some(server) => builder.fork_server(server),
            None => builder.start_method(self.config.method),
        }
    }
}

impl State {
    /// A worker's process ended: reap it, give back the chunks it never started, fail the
    /// one it was running.
    pub(super) fn exited(
        &mut self,
        index: usize,
        timed_out: Option<u64>,
        config: &Config,
        deliveries: &mut Deliveries,
    ) {
        let slot = &mut self.slots[index];
        // Reap it. Its exit status matters only for the error of a chunk it was running;
        // a worker that ended with nothing in flight (its queue closed, its quota done) is
        // not waited for: a fork server's child is reaped by its server (whose report may
        // still be on its way), our own child is reaped here, its pidfd being ready.
        let status = slot.child.take().and_then(|mut c| {
            if slot.in_flight.is_empty() {
                c.exit_status()
            } else {
                c.wait_timeout(Duration::from_secs(1)).ok()
            }
        });
        // What is still in its queue was never taken: it goes back, in order.
        let mut unstarted: Vec<u64> = Vec::new();
        if let Some(q) = slot.tasks.take() {
            while let Ok(task) = q.try_get() {
                unstarted.push(task.seq);
            }
        }
        let running = slot
            .progress
            .take()
            .map(|p| p.started.load(std::sync::atomic::Ordering::Acquire));
        let mut back = Vec::new();
        for f in slot.in_flight.drain(..) {
            if running == Some(f.seq) && !unstarted.contains(&f.seq) {
                let e = if timed_out == Some(f.seq) {
                    let limit = config.task_timeout.unwrap_or_default();
                    Error::new(
                        ErrorKind::Timeout,
                        format!(
                            "the task ran past the pool's task timeout of {limit:?}; its worker was killed"
                        ),
                    )
                } else {
                    Error::worker_died(status)
                };
                deliveries.push((f.chunk.sink, f.chunk.span, Delivery::Failed(e)));
            } else {
                // Never started: in its queue, or taken by a worker that died before
                // starting it.
                back.push(f.chunk);
            }
        }
        for chunk in back.into_iter().rev() {
            self.pending.push_front(chunk);
        }
    }

    /// For a pool whose workers start on demand: the empty slots to start a worker in now,
    /// one per unit of work that no idle worker can take (a pending chunk, or a chunk
    /// queued behind another in a busy worker's queue, which the new worker will steal).
    /// None after `failures` failed starts in a row while a worker lives (the live ones
    /// carry on; the retry schedule handles the rest).
    pub(super) fn starts_wanted(&self, failures: u32) -> Vec<usize> {
        if !self.wants_worker() || (failures > 0 && !self.all_gone()) {
            return Vec::new();
        }
        let empty = self.slots.iter().filter(|s| s.child.is_none()).count();
        if empty == 0 {
            return Vec::new();
        }
        let live = |s: &&Slot| s.child.is_some() && s.quota != Some(0);
        let idle = self
            .slots
            .iter()
            .filter(live)
            .filter(|s| s.in_flight.is_empty())
            .count();
        // Counting stops where it no longer matters (every empty slot wanted): called on
        // every submit, it must not walk a long backlog each time.
        let waiting = self
            .pending
            .iter()
            .filter(|c| !c.sink.is_cancelled())
            .take(idle + empty)
            .count()
            + self
                .slots
                .iter()
                .filter(live)
                .map(|s| s.in_flight.len().saturating_sub(1))
                .sum::<usize>();
        let want = waiting.saturating_sub(idle);
        self.slots
            .iter()
            .enumerate()
            .filter(|(_, s)| s.child.is_none())
            .map(|(i, _)| i)
            .take(want)
            .collect()
    }
}
