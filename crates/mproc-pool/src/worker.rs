//! The worker process: runs the initializer, then tasks from its own queue until the queue
//! closes or its quota of tasks is done, reporting each outcome on the pool's event queue.

use std::sync::atomic::{AtomicU64, Ordering};

use mproc_queue::{GetError, PutError, Queue};
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

    /// Records that task `seq` starts (task 0 is the initializer), and when, if `timed`.
    fn start(&self, seq: u64, timed: bool) {
        if timed {
            self.since.store(0, Ordering::Release);
        }
        self.started.store(seq, Ordering::Release);
        if timed {
            let now = mproc_sys::monotonic_ns().clamp(1, KILLING - 1);
            self.since.store(now, Ordering::Release);
        }
    }

    /// Records that the task ended. Returns `false` when the watcher has already claimed it
    /// for running past the timeout: the kill is on its way, and nothing more may start.
    fn finish(&self, timed: bool) -> bool {
        !timed || self.since.swap(0, Ordering::AcqRel) != KILLING
    }

    /// Returns the task running now and when it started, or `None` between tasks. The
    /// start time is read on both sides of the task number, so the two belong together.
    pub(crate) fn running(&self) -> Option<(u64, u64)> {
        let before = self.since.load(Ordering::Acquire);
        let seq = self.started.load(Ordering::Acquire);
        let after = self.since.load(Ordering::Acquire);
        (before != 0 && before != KILLING && before == after).then_some((seq, before))
    }

    /// For the watcher: claims the task that started at `since` for a kill. Fails when the
    /// worker has moved on meanwhile (finished it, or started another): that task is not
    /// killed, and a task started just now is never killed for its predecessor's time.
    pub(crate) fn claim(&self, since: u64) -> bool {
        self.since
            .compare_exchange(since, KILLING, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
    }
}

/// The `since` word of a task the watcher is killing.
const KILLING: u64 = u64::MAX;

/// Waits for the watcher's SIGKILL (the worker's task was claimed for its timeout).
fn await_kill() -> ! {
    loop {
        std::thread::sleep(std::time::Duration::from_secs(1));
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
    if let Some((call, payload)) = initializer {
        progress.start(0, timed);
        let outcome = initialize(call, payload);
        if !progress.finish(timed) {
            await_kill();
        }
        if let Err(message) = outcome {
            let _ = events.put(Event::InitFailed {
                worker: index,
                message,
            });
            return;
        }
    }
    let mut ran = 0u64;
    let mut last = 0u64;
    while max_tasks.is_none_or(|max| ran < max) {
        let task = match tasks.get() {
            Ok(task) => task,
            // A closed queue is the pool's way of saying there is no more work.
            Err(GetError::Closed) => break,
            // The pool's process is gone: nobody will send more work.
            Err(GetError::Disconnected) => break,
            Err(GetError::Empty) => continue,
            Err(GetError::Failed(e)) => {
                // A task that cannot be read is lost; the pool fails it (the one after
                // `last` in this worker's queue) and this worker goes on.
                let lost = Event::Unreadable {
                    worker: index,
                    after: last,
                    message: mproc_sys::with_causes(&e),
                };
                if events.put(lost).is_err() {
                    break;
                }
                continue;
            }
        };
        let seq = task.seq;
        progress.start(seq, timed);
        let outcome = run(task);
        if !progress.finish(timed) {
            // Too late: the task ran past the timeout and the watcher is killing us. Its
            // result is thrown away with the process, as the timeout says.
            await_kill();
        }
        last = seq;
        if !report(&events, index, seq, outcome) {
            break;
        }
        ran += 1;
    }
    // The pool reads a worker's exit status, never its reply: end here, without the
    // reply and the teardown of what this process holds (the pool waits for this exit).
    mproc_sys::exit_now(0)
}

/// Puts a task's outcome on the event queue. An outcome that cannot be put (more fds
/// than a message carries, no memory for a large result) is replaced by its error.
/// Returns `false` when not even that could be put.
fn report(events: &Queue<Event>, worker: u32, seq: u64, outcome: ChunkOutcome) -> bool {
    match events.put(Event::Done {
        worker,
        seq,
        outcome,
    }) {
        Ok(()) => true,
        Err(PutError::Failed(_, e)) => {
            let failure = ChunkFailure::Unsendable(format!(
                "the task's results could not be sent back from the worker: {}",
                mproc_sys::with_causes(&e)
            ));
            events
                .put(Event::Done {
                    worker,
                    seq,
                    outcome: ChunkOutcome::Failed(failure),
                })
                .is_ok()
        }
        Err(_) => false,
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
    // of their start, or in memory by fork); no process outside the pool's own holds it. A task relayed by `Pool::relay` (mproc-mpi) came
    // from rank 0 of the same MPI job, over the job's own communicator, which only the
    // processes started together by the job's launcher can use; its rank checked at start-up
    // that every rank runs this build. The pool built the parts with
    // `ChunkToken::for_fn(..).to_parts()` (`Call::new`), and `from_parts` checks that this
    // process runs the same build.
    unsafe { ChunkToken::from_parts(call.fingerprint, call.thunk, call.func) }
}
