//! The worker process: runs the initializer, then tasks from its own queue until the queue
//! closes or its quota of tasks is done, reporting each outcome on the pool's event queue.

use std::sync::atomic::{AtomicU64, Ordering};

use mproc_queue::Queue;
use mproc_shm::SharedAtomic;
use serde::{Deserialize, Serialize};

use crate::task::{
    Call, ChunkFailure, ChunkOutcome, ChunkResults, ChunkToken, Event, Payload, Task,
};

/// Where a worker reports which task it runs, read by the pool when the worker dies (to
/// tell the task it was running from those it never started) and by the watcher (to time
/// a task against the pool's task timeout).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct Progress {
    /// The number of the task the worker last started.
    pub started: SharedAtomic<AtomicU64>,
    /// When that task started (CLOCK_MONOTONIC, ns); 0 while the worker is between tasks
    /// or moving to the next one. Written only when the pool has a task timeout.
    pub since: SharedAtomic<AtomicU64>,
}

impl Progress {
    pub(crate) fn new() -> Result<Self, mproc_shm::Error> {
        Ok(Progress {
            started: SharedAtomic::new()?,
            since: SharedAtomic::new()?,
        })
    }

    /// Returns the task running now and when it started, or `None` between tasks. The
    /// start time is read on both sides of the task number, so the two belong together.
    pub(crate) fn running(&self) -> Option<(u64, u64)> {
        let before = self.since.load(Ordering::Acquire);
        let seq = self.started.load(Ordering::Acquire);
        let after = self.since.load(Ordering::Acquire);
        (before != 0 && before == after).then_some((seq, before))
    }
}

/// How much freed memory a worker keeps for its next tasks.
const KEEP_FREED_BYTES: usize = 64 << 20;

/// What a worker is started with.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct WorkerArgs {
    pub index: u32,
    pub tasks: Queue<Task>,
    pub events: Queue<Event>,
    pub progress: Progress,
    /// Whether to time tasks (the pool has a task timeout).
    pub timed: bool,
    pub initializer: Option<(Call, Payload)>,
    /// How many tasks to run before ending (Python's `maxtasksperchild`).
    pub max_tasks: Option<u64>,
}

/// The worker's main function, started as a child process by the pool.
pub(crate) fn worker_main(args: WorkerArgs) {
    let WorkerArgs {
        index,
        tasks,
        events,
        progress,
        timed,
        initializer,
        max_tasks,
    } = args;
    // A worker allocates and frees buffers the size of a chunk for every task: keep them
    // for the next one rather than taking fresh pages (a fault each) every time.
    mproc_sys::keep_freed_memory(KEEP_FREED_BYTES);
    if let Some((call, payload)) = initializer
        && let Err(message) = initialize(call, payload)
    {
        let _ = events.put(Event::InitFailed {
            worker: index,
            message,
        });
        return;
    }
    let mut ran = 0u64;
    while max_tasks.is_none_or(|max| ran < max) {
        // A closed queue is the pool's way of saying there is no more work.
        let Ok(task) = tasks.get() else { break };
        if timed {
            progress.since.store(0, Ordering::Release);
        }
        progress.started.store(task.seq, Ordering::Release);
        if timed {
            progress
                .since
                .store(mproc_sys::monotonic_ns().max(1), Ordering::Release);
        }
        let seq = task.seq;
        let outcome = run(task);
        if timed {
            progress.since.store(0, Ordering::Release);
        }
        let done = Event::Done {
            worker: index,
            seq,
            outcome,
        };
        if events.put(done).is_err() {
            break;
        }
        ran += 1;
    }
}

/// Runs the initializer; returns why it failed.
fn initialize(call: Call, payload: Payload) -> Result<(), String> {
    match invoke(call, Ok(payload)) {
        ChunkOutcome::Ran(p) => match p.decode::<ChunkResults<()>>() {
            Ok((failures, ran)) => match (failures.into_iter().next(), ran.len()) {
                (Some((_, e)), _) => Err(e.to_string()),
                (None, 1) => Ok(()),
                (None, _) => Err("the initializer did not run".into()),
            },
            Err(e) => Err(e.to_string()),
        },
        ChunkOutcome::Failed(f) => Err(f.to_string()),
    }
}

fn run(task: Task) -> ChunkOutcome {
    let (call, args) = task.into_parts();
    invoke(call, args)
}

fn invoke(call: Call, args: std::io::Result<Payload>) -> ChunkOutcome {
    let args = match args {
        Ok(a) => a,
        Err(e) => {
            return ChunkOutcome::Failed(ChunkFailure::Decode(format!(
                "the task's fds could not be duplicated: {e}"
            )));
        }
    };
    let Some(token) = token_from(call) else {
        return ChunkOutcome::Failed(ChunkFailure::BuildMismatch);
    };
    mproc_process::catch_panic(|| token.invoke(args))
        .unwrap_or_else(|p| ChunkOutcome::Failed(ChunkFailure::Panicked(p)))
}

/// The trust boundary of a worker: the function named by a task.
#[allow(unsafe_code)]
fn token_from(call: Call) -> Option<ChunkToken> {
    // SAFETY: tasks reach a worker only through its task queue, a memfd ring that its pool
    // created and handed to its workers (as their start argument, over the private socket
    // of their start, or in memory by fork); no process outside the pool's own holds it. The pool built the parts with
    // `ChunkToken::for_fn(..).to_parts()` (`Call::new`), and `from_parts` checks that this
    // process runs the same build.
    unsafe { ChunkToken::from_parts(call.fingerprint, call.thunk, call.func) }
}
