//! The pool's bookkeeping and its manager thread: which chunk each worker has, sending
//! chunks out, taking results in, and replacing workers that die.
//!
//! Every worker has a task queue of its own, so the pool always knows which chunks a worker
//! holds. When a worker dies, the chunks still in its queue go back to the pending list,
//! the chunk it was running (named by its [`Progress`]) fails, and a chunk it had taken
//! but not started goes back too. One event queue carries the workers' results and the
//! watcher's news of ended workers, in order: a worker's last results always come before
//! its end.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, mpsc};
use std::time::{Duration, Instant};

use mproc_process::{Child, ForkServer, StartMethod};
use mproc_queue::{GetError, PutError, Queue};

use crate::error::{Error, ErrorKind, Result};
use crate::result::{Delivery, Sink, Span};
use crate::task::{Call, ChunkFailure, ChunkOutcome, Event, Payload, SharedPayload, Task};
use crate::watcher::{Watched, Watcher};
use crate::worker::{Progress, WorkerArgs, worker_main};

/// The ring of a worker's task queue: chunks up to a quarter of it (1 MiB, some 250k small
/// items) are copied through it; larger ones travel beside it in sealed memfds. Pages are
/// touched only as the ring fills.
const TASK_RING_BYTES: usize = 4 << 20;
/// At most this many chunks wait in one worker's queue (plus the one it runs).
const MAX_DEPTH: usize = 256;
/// How much queued work keeps a worker busy without starving the others: the depth is
/// chosen so that a worker's queue holds about this much, by the chunks' measured time.
const QUEUED_WORK: Duration = Duration::from_micros(200);

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

/// The error of waiting, in a callback, for the pool that runs the callback.
pub(crate) fn reentrant_wait() -> Error {
    Error::new(
        ErrorKind::InvalidState,
        "a callback (or a drop on the pool's result thread) cannot wait for its own pool: \
         that thread is the one that delivers the results",
    )
}

/// Consecutive failed starts, with no worker alive, after which the pool gives up.
const GIVE_UP_AFTER: u32 = 5;

/// Worker starts that failed, to try again with a growing delay (from 50 ms to 2 s).
#[derive(Default)]
struct Retry {
    slots: Vec<usize>,
    at: Option<Instant>,
    failures: u32,
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
    fn due_in(&self) -> Option<Duration> {
        self.at
            .map(|at| at.saturating_duration_since(Instant::now()))
    }

    fn take_due(&mut self) -> Vec<usize> {
        match self.at {
            Some(at) if Instant::now() >= at => {
                self.at = None;
                std::mem::take(&mut self.slots)
            }
            _ => Vec::new(),
        }
    }

    fn clear(&mut self) {
        self.slots.clear();
        self.at = None;
    }
}

/// A chunk running longer than this (or twice the usual, if more) holds no chunks queued
/// behind it.
const LONG_CHUNK: Duration = Duration::from_millis(1);

/// What the pool was built with.
#[derive(Debug)]
pub(crate) struct Config {
    pub processes: usize,
    pub initializer: Option<(Call, Payload)>,
    pub max_tasks: Option<u64>,
    pub method: StartMethod,
    /// For the fork method: the pool's own fork server, forked when the pool was built,
    /// which forks every worker (the manager thread cannot fork a threaded parent).
    /// Taken (and so ended) when the pool ends.
    pub server: Mutex<Option<Arc<ForkServer>>>,
    pub prefix: String,
    pub task_timeout: Option<Duration>,
    /// Workers start when work needs them (none at first), up to `processes`, rather
    /// than all when the pool is built: an executor's way.
    pub on_demand: bool,
}

/// Everything the pool's handles, its manager and its watcher share.
pub(crate) struct Shared {
    pub state: Mutex<State>,
    /// Signalled when the manager has ended (every worker reaped).
    pub ended: Condvar,
    pub events: Queue<Event>,
    pub config: Config,
    pub watcher: Arc<Watcher>,
    started: AtomicUsize,
}

/// A chunk of a call on its way to a worker.
pub(crate) struct Chunk {
    pub sink: Arc<dyn Sink>,
    pub span: Span,
    pub call: Call,
    pub args: Arc<Payload>,
}

struct InFlight {
    seq: u64,
    chunk: Chunk,
    sent: Instant,
}

/// One worker's place in the pool: the process in it now, its queue, what it holds.
#[derive(Default)]
struct Slot {
    generation: u64,
    child: Option<Child<()>>,
    tasks: Option<Queue<Task>>,
    progress: Option<Progress>,
    in_flight: VecDeque<InFlight>,
    /// Tasks it may still be given before it ends (`max_tasks_per_child`).
    quota: Option<u64>,
    last_done: Option<Instant>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Phase {
    Running,
    /// No new work; the workers finish what there is, then end.
    Closed,
    /// Work is failed, workers killed.
    Terminating,
    /// Every worker has ended and been reaped; the manager is gone.
    Ended,
}

pub(crate) struct State {
    slots: Vec<Slot>,
    pending: VecDeque<Chunk>,
    next_seq: u64,
    pub phase: Phase,
    /// Set when the pool cannot run tasks (the initializer failed, no worker starts):
    /// every chunk fails with it.
    broken: Option<Error>,
    /// Whether the pool ended by `terminate` (rather than `close`): what a late call is told.
    terminated: bool,
    /// Smoothed time a chunk takes, in ns, for the queue depth.
    chunk_ns: f64,
}

/// Outcomes to hand to jobs once the pool's lock is released (a job's decoding and
/// callbacks never run under it).
pub(crate) type Deliveries = Vec<(Arc<dyn Sink>, Span, Delivery)>;

/// Hands each outcome to its job. The job runs the user's `Deserialize` (and `Drop`) of
/// the results: a panic there fails that chunk's items, never the pool or the other jobs.
pub(crate) fn deliver(deliveries: Deliveries) {
    for (sink, span, d) in deliveries {
        if let Err(message) = mproc_process::catch_panic(|| sink.deliver(span, d)) {
            let e = Error::panicked(message);
            let _ = mproc_process::catch_panic(|| sink.deliver(span, Delivery::Failed(e)));
        }
    }
}

/// Fails every item of `chunks` with `e`.
fn fail_all(chunks: impl IntoIterator<Item = Chunk>, e: &Error, deliveries: &mut Deliveries) {
    for c in chunks {
        deliveries.push((c.sink, c.span, Delivery::Failed(e.clone())));
    }
}

impl Shared {
    pub(crate) fn new(config: Config) -> Result<Arc<Self>> {
        let slots = (0..config.processes).map(|_| Slot::default()).collect();
        let watcher = Watcher::new().map_err(|e| {
            Error::new(ErrorKind::Io, "cannot make the watcher's socket").with_source(e)
        })?;
        Ok(Arc::new(Shared {
            state: Mutex::new(State {
                slots,
                pending: VecDeque::new(),
                next_seq: 1,
                phase: Phase::Running,
                broken: None,
                terminated: false,
                chunk_ns: 0.0,
            }),
            ended: Condvar::new(),
            // The watcher thread of this process puts on it too, after every worker is
            // gone: a wait on it must not end for want of other processes.
            events: mproc_queue::Builder::new().watch_peers(false).build()?,
            config,
            watcher,
            started: AtomicUsize::new(0),
        }))
    }

    pub(crate) fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Starts a worker in slot `index`. On failure the slot stays empty (the manager tries
    /// again later).
    pub(crate) fn start_worker(&self, index: usize) -> Result<()> {
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

    /// A worker's start argument, its task queue and its progress words.
    fn worker_args(&self, index: usize) -> Result<(WorkerArgs, Queue<Task>, Progress)> {
        let tasks = mproc_queue::Builder::new()
            .max_bytes(TASK_RING_BYTES)
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
            if finished {
                // The fork server of a fork pool goes with its last worker.
                drop(self.config.server.lock().map(|mut s| s.take()));
                self.watcher.stop();
                self.ended.notify_all();
                return;
            }
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
    }

    /// Whether the manager thread, rather than the caller, starts the first workers: with
    /// the spawn method, whose children get a parent-death signal that follows the
    /// *thread* that started them (a pool built on a short-lived thread would lose them).
    /// The other methods start them on the caller's thread, one thread hop sooner.
    pub(crate) fn starts_first_workers(&self) -> bool {
        self.config.method == StartMethod::Spawn && !self.config.on_demand
    }

    /// Identifies this pool (for telling its manager thread from others).
    pub(crate) fn id(self: &Arc<Self>) -> usize {
        Arc::as_ptr(self) as usize
    }

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
        crate::result::wait_until(&self.ended, st, deadline, |st| st.phase == Phase::Ended).1
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

    fn handle(
        &mut self,
        ev: Event,
        config: &Config,
        deliveries: &mut Deliveries,
        restart: &mut Vec<usize>,
    ) {
        match ev {
            Event::Done {
                worker,
                seq,
                outcome,
            } => self.done(worker as usize, seq, outcome, deliveries),
            Event::InitFailed { message, .. } => {
                if self.broken.is_none() {
                    self.broken = Some(Error::new(
                        ErrorKind::Initializer,
                        format!("the pool's initializer failed in a worker: {message}"),
                    ));
                }
            }
            Event::Exited {
                worker,
                generation,
                timed_out,
            } => {
                let index = worker as usize;
                if timed_out == Some(0) && self.broken.is_none() {
                    // Task 0 is the initializer.
                    let limit = config.task_timeout.unwrap_or_default();
                    self.broken = Some(Error::new(
                        ErrorKind::Initializer,
                        format!("the pool's initializer ran past the task timeout of {limit:?}"),
                    ));
                }
                if self
                    .slots
                    .get(index)
                    .is_some_and(|s| s.generation == generation)
                {
                    self.exited(index, timed_out, config, deliveries);
                    if self.wants_worker() && !config.on_demand {
                        restart.push(index);
                    }
                }
            }
            Event::Unreadable {
                worker,
                after,
                message,
            } => {
                let Some(slot) = self.slots.get_mut(worker as usize) else {
                    return;
                };
                if let Some(pos) = slot.in_flight.iter().position(|f| f.seq > after)
                    && let Some(lost) = slot.in_flight.remove(pos)
                {
                    let e = Error::new(
                        ErrorKind::Decode,
                        format!("the task could not be read by its worker: {message}"),
                    );
                    deliveries.push((lost.chunk.sink, lost.chunk.span, Delivery::Failed(e)));
                }
            }
            Event::Wake => {}
            Event::Resync => {
                // An event may have been lost: a worker that ended is found by its pidfd.
                for index in 0..self.slots.len() {
                    let slot = &self.slots[index];
                    if slot.child.as_ref().is_some_and(|c| !c.is_alive()) {
                        self.exited(index, None, config, deliveries);
                        if self.wants_worker() && !config.on_demand {
                            restart.push(index);
                        }
                    }
                }
            }
        }
    }

    fn done(
        &mut self,
        worker: usize,
        seq: u64,
        outcome: ChunkOutcome,
        deliveries: &mut Deliveries,
    ) {
        let Some(slot) = self.slots.get_mut(worker) else {
            return;
        };
        let Some(pos) = slot.in_flight.iter().position(|f| f.seq == seq) else {
            return; // a chunk already failed (terminate) or not ours
        };
        // A worker runs its queue in order: chunks before this one whose results never
        // came were lost on the way (an event queue failure): they fail, not wait.
        for lost in slot.in_flight.drain(..pos) {
            let e = Error::new(ErrorKind::Io, "the task's result was lost on its way back");
            deliveries.push((lost.chunk.sink, lost.chunk.span, Delivery::Failed(e)));
        }
        let Some(f) = slot.in_flight.pop_front() else {
            return;
        };
        let now = Instant::now();
        let since = slot.last_done.map_or(f.sent, |t| t.max(f.sent));
        slot.last_done = Some(now);
        let ns = now.duration_since(since).as_nanos() as f64;
        self.chunk_ns = if self.chunk_ns == 0.0 {
            ns
        } else {
            self.chunk_ns * 0.875 + ns * 0.125
        };
        let delivery = match outcome {
            ChunkOutcome::Ran(p) => Delivery::Ran(p),
            ChunkOutcome::Failed(failure) => Delivery::Failed(match failure {
                ChunkFailure::Decode(m) => Error::new(ErrorKind::Decode, m),
                ChunkFailure::Panicked(m) => Error::panicked(m),
                ChunkFailure::Unsendable(m) => Error::new(ErrorKind::Encode, m),
                f @ ChunkFailure::BuildMismatch => Error::new(ErrorKind::Start, f.to_string()),
            }),
        };
        deliveries.push((f.chunk.sink, f.chunk.span, delivery));
    }

    /// A worker's process ended: reap it, give back the chunks it never started, fail the
    /// one it was running.
    fn exited(
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
    fn starts_wanted(&self, failures: u32) -> Vec<usize> {
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

    /// Whether a slot whose worker ended should get a new one.
    fn wants_worker(&self) -> bool {
        self.broken.is_none()
            && match self.phase {
                Phase::Running => true,
                Phase::Closed => !self.pending.is_empty(),
                Phase::Terminating | Phase::Ended => false,
            }
    }

    /// How many chunks a worker's queue may hold: enough queued work to keep it busy
    /// between two visits of the manager, little enough that a long chunk does not keep
    /// others waiting behind it while another worker is idle.
    fn depth(&self) -> usize {
        if self.chunk_ns == 0.0 {
            return 1; // nothing measured yet: queue behind nothing
        }
        let per = QUEUED_WORK.as_nanos() as f64 / self.chunk_ns;
        (1.0 + per).clamp(2.0, MAX_DEPTH as f64) as usize
    }

    /// Moves work along: fails everything when the pool is broken, otherwise sends what
    /// is pending and, once nothing is, lets idle workers take back queued chunks.
    fn dispatch(&mut self, deliveries: &mut Deliveries) {
        if let Some(e) = &self.broken {
            for c in self.pending.drain(..) {
                deliveries.push((c.sink, c.span, Delivery::Failed(e.clone())));
            }
            for slot in &mut self.slots {
                for f in slot.in_flight.drain(..) {
                    deliveries.push((f.chunk.sink, f.chunk.span, Delivery::Failed(e.clone())));
                }
            }
            return;
        }
        if self.phase == Phase::Terminating {
            return;
        }
        self.send_pending(deliveries);
        if self.pending.is_empty() && self.steal(deliveries) {
            self.send_pending(deliveries);
        }
    }

    /// Takes back, for each idle worker, one chunk still waiting in the queue of the
    /// worker with the most queued, into the pending list: at the end of a call, an idle
    /// worker never watches chunks wait behind another's long one. Returns whether it took
    /// any. A chunk the owner took first is simply not there to take.
    fn steal(&mut self, deliveries: &mut Deliveries) -> bool {
        let idle = self
            .slots
            .iter()
            .filter(|s| s.child.is_some() && s.in_flight.is_empty() && s.quota != Some(0))
            .count();
        let mut took = false;
        for _ in 0..idle {
            let victim = self
                .slots
                .iter_mut()
                .filter(|s| s.in_flight.len() >= 2)
                .max_by_key(|s| s.in_flight.len());
            let Some(victim) = victim else { break };
            let task = match victim.tasks.as_ref().map(|q| q.try_get()) {
                Some(Ok(task)) => task,
                Some(Err(GetError::Failed(_))) => {
                    // The oldest queued record was unreadable and is gone: the first chunk
                    // the victim has not started is the one lost.
                    let started = victim
                        .progress
                        .as_ref()
                        .map_or(0, |p| p.started.load(std::sync::atomic::Ordering::Acquire));
                    if let Some(pos) = victim.in_flight.iter().position(|f| f.seq > started)
                        && let Some(lost) = victim.in_flight.remove(pos)
                    {
                        let e = Error::new(ErrorKind::Io, "the task was lost in its queue");
                        deliveries.push((lost.chunk.sink, lost.chunk.span, Delivery::Failed(e)));
                    }
                    break;
                }
                _ => break,
            };
            let pos = victim.in_flight.iter().position(|f| f.seq == task.seq);
            if let Some(f) = pos.and_then(|pos| victim.in_flight.remove(pos)) {
                victim.quota = victim.quota.map(|q| q + 1);
                self.pending.push_back(f.chunk);
                took = true;
            }
        }
        took
    }

    /// Sends pending chunks to the workers with the least work, as far as their queues
    /// have room.
    fn send_pending(&mut self, deliveries: &mut Deliveries) {
        let depth = self.depth();
        let mut full = vec![false; self.slots.len()];
        let now = Instant::now();
        // A worker whose oldest chunk has run much longer than chunks usually take gets no
        // more queued behind it: the pending chunks wait for whichever worker frees first.
        let long = Duration::from_nanos((2.0 * self.chunk_ns) as u64).max(LONG_CHUNK);
        let busy_long = |s: &Slot| {
            s.in_flight.front().is_some_and(|f| {
                let running_since = s.last_done.map_or(f.sent, |t| t.max(f.sent));
                now - running_since > long
            })
        };
        while !self.pending.is_empty() {
            let pick = self
                .slots
                .iter()
                .enumerate()
                .filter(|(i, s)| {
                    !full[*i]
                        && s.child.is_some()
                        && s.quota != Some(0)
                        && s.in_flight.len() < depth
                        && !busy_long(s)
                })
                .min_by_key(|(_, s)| s.in_flight.len())
                .map(|(i, _)| i);
            let Some(i) = pick else { break };
            let Some(chunk) = self.pending.pop_front() else {
                break;
            };
            if !chunk.sink.begin() {
                continue;
            }
            let seq = self.next_seq;
            let slot = &mut self.slots[i];
            let Some(q) = &slot.tasks else {
                full[i] = true;
                chunk.sink.unbegin();
                self.pending.push_front(chunk);
                continue;
            };
            let task = Task {
                seq,
                call: chunk.call,
                args: SharedPayload(chunk.args.clone()),
            };
            match q.try_put(task) {
                Ok(()) => {
                    self.next_seq += 1;
                    slot.quota = slot.quota.map(|q| q - 1);
                    slot.in_flight.push_back(InFlight {
                        seq,
                        chunk,
                        sent: now,
                    });
                }
                // A try_put never waits, so never finds the worker gone: its pidfd says so.
                Err(PutError::Full(_) | PutError::Closed(_) | PutError::Disconnected(_)) => {
                    full[i] = true;
                    chunk.sink.unbegin();
                    self.pending.push_front(chunk);
                }
                Err(PutError::Failed(_, e)) => {
                    let e = Error::new(ErrorKind::Encode, "the task could not be sent to a worker")
                        .with_source(e);
                    deliveries.push((chunk.sink, chunk.span, Delivery::Failed(e)));
                }
            }
        }
    }

    /// In a closed pool with no work left, closes the workers' queues so that they end.
    fn wind_down(&mut self) {
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

    fn all_gone(&self) -> bool {
        self.slots.iter().all(|s| s.child.is_none())
    }
}
