//! The pool's bookkeeping: which chunks each worker holds, shared by every thread of the
//! pool (its handles' callers, its manager thread, its watcher).
//!
//! Every worker has a task queue of its own, so the pool always knows which chunks a worker
//! holds. When a worker dies, the chunks still in its queue go back to the pending list,
//! the chunk it was running (named by its [`Progress`]) fails, and a chunk it had taken
//! but not started goes back too. One event queue carries the workers' results and the
//! watcher's news of ended workers, in order: a worker's last results always come before
//! its end.
//!
//! This file holds the state. The manager thread's loop is in `thread.rs`; it takes events
//! in (`events.rs`), sends chunks out (`dispatch.rs`) and keeps the workers' slots filled
//! (`slots.rs`). The pool's handles act on the state through `control.rs`.

mod control;
mod dispatch;
mod events;
mod slots;
mod thread;

use std::collections::VecDeque;
use std::sync::atomic::AtomicUsize;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use mproc_process::{Child, ForkServer, StartMethod};
use mproc_queue::Queue;

use crate::error::{Error, ErrorKind, Result};
use crate::sink::{Delivery, Sink, Span};
use crate::task::{Call, Event, Payload, Task};
use crate::watcher::Watcher;
use crate::worker::Progress;

pub(crate) use thread::{become_manager_of, on_manager_of, reentrant_wait};

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
            events: mproc_queue::Builder::new()
                .watch_peers(false)
                .async_waits(false)
                .build()?,
            config,
            watcher,
            started: AtomicUsize::new(0),
        }))
    }

    pub(crate) fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Identifies this pool (for telling its manager thread from others).
    pub(crate) fn id(self: &Arc<Self>) -> usize {
        Arc::as_ptr(self) as usize
    }
}

impl State {
    /// Whether a slot whose worker ended should get a new one.
    fn wants_worker(&self) -> bool {
        self.broken.is_none()
            && match self.phase {
                Phase::Running => true,
                Phase::Closed => !self.pending.is_empty(),
                Phase::Terminating | Phase::Ended => false,
            }
    }

    fn all_gone(&self) -> bool {
        self.slots.iter().all(|s| s.child.is_none())
    }
}
