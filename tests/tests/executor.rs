//! Executors under the start method named by `MPROC_START_METHOD`: Python's
//! `concurrent.futures.ProcessPoolExecutor` (task handles, `as_completed`, `wait`, `map`,
//! `shutdown`), and the cases of CPython's `test_deadlock.py`, after each of which the
//! executor serves on. Every test runs inside a deadline that kills its children.
//!
//! Tasks that must stay running while a test looks at them wait at a [`Gate`] (a file the
//! test creates), so that no assertion depends on how long anything takes.

use std::collections::HashSet;
use std::os::fd::AsFd;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, mpsc};
use std::time::{Duration, Instant};

use mproc::ExitStatus;
use mproc::pool::{Error, ErrorKind, Executor, ReturnWhen, TaskHandle, as_completed, wait};
use mproc_tests::{deadline, executor_builder, wait_gone, zombies_of};

mproc::init_before_main!();

const LIMIT: Duration = Duration::from_secs(120);
/// How long a task held at a gate waits for it at most (a failed test's gates open when
/// dropped, so this is only the last resort).
const HOLD_CAP: Duration = Duration::from_secs(60);
/// A liveness limit for waits that should end at once.
const LIVENESS: Duration = Duration::from_secs(30);
const SIGABRT: i32 = 6;
const SIGSEGV: i32 = 11;

// ---- scratch files and gates ------------------------------------------------------------

static NEXT_SCRATCH: AtomicU64 = AtomicU64::new(0);

/// A directory of the test's own in the temp dir, removed when dropped.
struct Scratch(PathBuf);

impl Scratch {
    fn new(tag: &str) -> Scratch {
        let n = NEXT_SCRATCH.fetch_add(1, Ordering::Relaxed);
        let dir =
            std::env::temp_dir().join(format!("mproc-executor-{}-{n}-{tag}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        Scratch(dir)
    }

    fn path(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }

    /// Makes a gate in this directory. Declare it after the executor: it then opens (when
    /// dropped) before the executor's drop waits for the tasks held at it.
    fn gate(&self, name: &str) -> Gate {
        Gate(self.path(name))
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A file that [`hold`] tasks wait for. It opens by [`open`](Gate::open), or when dropped.
struct Gate(PathBuf);

impl Gate {
    fn path(&self) -> PathBuf {
        self.0.clone()
    }

    fn open(&self) {
        std::fs::write(&self.0, b"open").unwrap();
    }

    /// Waits until a task held at this gate runs, and returns its worker's pid.
    fn started(&self) -> u32 {
        let pid_file = self.0.with_extension("pid");
        let t0 = Instant::now();
        loop {
            if let Ok(pid) = std::fs::read_to_string(&pid_file) {
                return pid.parse().unwrap();
            }
            assert!(t0.elapsed() < LIVENESS, "no task started at {:?}", self.0);
            std::thread::sleep(Duration::from_millis(2));
        }
    }
}

impl Drop for Gate {
    fn drop(&mut self) {
        let _ = std::fs::write(&self.0, b"open");
    }
}

/// Waits until `task` is done (without taking its outcome).
fn until_done<R>(task: &TaskHandle<R>) {
    let t0 = Instant::now();
    while !task.done() {
        assert!(t0.elapsed() < LIVENESS, "the task never finished");
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// Submits one more task and checks its result: the executor serves on.
fn serves_on(executor: &Executor) {
    let task = executor.submit(square, 12).unwrap();
    assert_eq!(task.result().unwrap(), 144);
}

// ---- task functions ---------------------------------------------------------------------

fn square(x: u64) -> u64 {
    x * x
}

fn pid(_: ()) -> u32 {
    std::process::id()
}

/// Sleeps `ms`, then returns the worker's pid.
fn nap(ms: u64) -> u32 {
    std::thread::sleep(Duration::from_millis(ms));
    std::process::id()
}

/// Writes the worker's pid beside `gate` (as `.pid`), waits until the gate opens (or
/// [`HOLD_CAP`] passes), then returns the pid.
fn hold(gate: PathBuf) -> u32 {
    let me = std::process::id();
    let tmp = gate.with_extension("pid-tmp");
    std::fs::write(&tmp, me.to_string()).unwrap();
    std::fs::rename(&tmp, gate.with_extension("pid")).unwrap();
    let t0 = Instant::now();
    while !gate.exists() && t0.elapsed() < HOLD_CAP {
        std::thread::sleep(Duration::from_millis(2));
    }
    me
}

/// Creates `marker`, and returns the worker's pid: a task that leaves a trace if it runs.
fn touch(marker: PathBuf) -> u32 {
    std::fs::write(&marker, b"ran").unwrap();
    std::process::id()
}

/// Sleeps `ms`, then creates `marker`.
fn nap_then_touch((marker, ms): (PathBuf, u64)) -> u32 {
    std::thread::sleep(Duration::from_millis(ms));
    touch(marker)
}

fn fail_on_three(x: u64) -> u64 {
    assert!(x != 3, "three is not allowed");
    x
}

fn panics(_: PathBuf) -> u32 {
    panic!("the task panics on purpose")
}

fn exit_99(_: ()) -> u32 {
    std::process::exit(99)
}

fn abort(_: ()) -> u32 {
    std::process::abort()
}

/// Raises SIGSEGV until it ends the process (Rust's runtime handles the first one of a
/// thread that has its stack-overflow handler: it restores the default and returns).
fn segfault(_: ()) -> u32 {
    loop {
        let _ = mproc_sys::kill_pid(std::process::id(), SIGSEGV);
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// The initializer: a worker is single-threaded, where mproc's checked setter works.
fn set_var(value: String) {
    mproc_sys::set_env_var("MPROC_EXECUTOR_TEST_INIT".as_ref(), Some(value.as_ref())).unwrap();
}

fn bad_init(_: ()) {
    panic!("initializer refuses");
}

/// Holds at `gate`, then returns the worker's pid and what the initializer set.
fn hold_then_read(gate: PathBuf) -> (u32, Option<String>) {
    let me = hold(gate);
    (me, std::env::var("MPROC_EXECUTOR_TEST_INIT").ok())
}

/// A value whose `Serialize` fails.
#[derive(Debug)]
struct Unsendable;

impl serde::Serialize for Unsendable {
    fn serialize<S: serde::Serializer>(&self, _: S) -> Result<S::Ok, S::Error> {
        Err(serde::ser::Error::custom(
            "this value refuses to be serialized",
        ))
    }
}

impl<'de> serde::Deserialize<'de> for Unsendable {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        <()>::deserialize(d).map(|()| Unsendable)
    }
}

/// A value that serializes, but whose `Deserialize` fails.
#[derive(Debug)]
struct Unreadable;

impl serde::Serialize for Unreadable {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_unit()
    }
}

impl<'de> serde::Deserialize<'de> for Unreadable {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        <()>::deserialize(d)?;
        Err(serde::de::Error::custom(
            "this value refuses to be deserialized",
        ))
    }
}

/// A value whose `Deserialize` panics.
#[derive(Debug)]
struct Fragile;

impl serde::Serialize for Fragile {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_unit()
    }
}

impl<'de> serde::Deserialize<'de> for Fragile {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        <()>::deserialize(d)?;
        panic!("fragile refuses to be read")
    }
}

/// A value whose `Deserialize` ends the process with exit code 98.
#[derive(Debug)]
struct ExitOnRead;

impl serde::Serialize for ExitOnRead {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_unit()
    }
}

impl<'de> serde::Deserialize<'de> for ExitOnRead {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        <()>::deserialize(d)?;
        std::process::exit(98)
    }
}

fn take_unsendable(_: Unsendable) -> u32 {
    std::process::id()
}

fn take_unreadable(_: Unreadable) -> u32 {
    std::process::id()
}

fn take_exit_on_read(_: ExitOnRead) -> u32 {
    std::process::id()
}

fn give_unsendable(_: ()) -> Unsendable {
    Unsendable
}

fn give_unreadable(_: ()) -> Unreadable {
    Unreadable
}

fn give_fragile(_: ()) -> Fragile {
    Fragile
}

// ---- workers ----------------------------------------------------------------------------

#[test]
fn workers_start_on_demand_and_an_idle_one_is_reused() {
    deadline(LIMIT, || {
        let executor = executor_builder(2).build().unwrap();
        assert_eq!(executor.max_workers(), 2);
        assert_eq!(executor.workers(), 0, "no worker before the first submit");
        let pids: Vec<u32> = (0..3)
            .map(|_| executor.submit(pid, ()).unwrap().result().unwrap())
            .collect();
        assert!(pids.iter().all(|&p| p == pids[0]), "{pids:?}");
        assert_ne!(pids[0], std::process::id());
        assert_eq!(executor.workers(), 1, "an idle worker serves the next task");
    });
}

#[test]
fn blocking_tasks_use_exactly_max_workers() {
    deadline(LIMIT, || {
        let executor = executor_builder(2).build().unwrap();
        let tasks: Vec<_> = (0..15 * 2)
            .map(|_| executor.submit(nap, 200).unwrap())
            .collect();
        let pids: HashSet<u32> = tasks.iter().map(|t| t.result().unwrap()).collect();
        assert_eq!(pids.len(), 2, "{pids:?}");
        assert_eq!(executor.workers(), 2);
    });
}

#[test]
fn zero_max_workers_is_invalid_input() {
    deadline(LIMIT, || {
        let err = Executor::new(0).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidInput);
        // The facade's flat name is the same type.
        let err: mproc::pool::Error = mproc::Executor::new(0).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidInput);
        let err = executor_builder(0).build().unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidInput);
    });
}

#[test]
fn the_initializer_runs_in_each_worker() {
    deadline(LIMIT, || {
        let scratch = Scratch::new("init");
        let executor = executor_builder(2)
            .initializer(set_var, "ready".to_string())
            .build()
            .unwrap();
        let (a, b) = (scratch.gate("a"), scratch.gate("b"));
        // Two held tasks: two workers.
        let tasks = [
            executor.submit(hold_then_read, a.path()).unwrap(),
            executor.submit(hold_then_read, b.path()).unwrap(),
        ];
        let pids: HashSet<u32> = [a.started(), b.started()].into();
        assert_eq!(pids.len(), 2);
        a.open();
        b.open();
        for t in &tasks {
            let (worker, var) = t.result().unwrap();
            assert!(pids.contains(&worker));
            assert_eq!(var.as_deref(), Some("ready"));
        }
    });
}

#[test]
fn a_failing_initializer_fails_the_tasks_instead_of_looping() {
    deadline(LIMIT, || {
        let executor = executor_builder(2)
            .initializer(bad_init, ())
            .build()
            .unwrap();
        let err = executor.submit(square, 2).unwrap().result().unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Initializer, "{err}");
        assert!(err.to_string().contains("initializer refuses"), "{err}");
        let err = executor.submit(square, 3).unwrap().result().unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Initializer, "{err}");
        // The drop that follows does not wait for ever.
    });
}

#[test]
fn max_tasks_per_child_replaces_the_worker_after_its_tasks() {
    deadline(LIMIT, || {
        let executor = executor_builder(1).max_tasks_per_child(3).build().unwrap();
        let pids: Vec<u32> = (0..4)
            .map(|_| executor.submit(pid, ()).unwrap().result().unwrap())
            .collect();
        assert!(pids[..3].iter().all(|&p| p == pids[0]), "{pids:?}");
        assert_ne!(pids[3], pids[0], "{pids:?}");
    });
}

#[test]
fn max_tasks_per_child_goes_through_a_backlog() {
    // CPython's gh-115634: a backlog larger than max_tasks_per_child hung the executor.
    deadline(LIMIT, || {
        let executor = executor_builder(1).max_tasks_per_child(3).build().unwrap();
        let tasks: Vec<_> = (0..10).map(|_| executor.submit(nap, 5).unwrap()).collect();
        let pids: Vec<u32> = tasks.iter().map(|t| t.result().unwrap()).collect();
        // One worker at a time, three tasks each: 3 + 3 + 3 + 1.
        for run in pids.chunks(3) {
            assert!(run.iter().all(|&p| p == run[0]), "{pids:?}");
        }
        let distinct: HashSet<u32> = pids.iter().copied().collect();
        assert_eq!(distinct.len(), 4, "{pids:?}");
        serves_on(&executor);
    });
}

#[test]
fn a_backlog_of_200k_tasks_behind_a_busy_worker_is_taken_and_served() {
    // Each submit once walked the whole backlog (quadratic: minutes for 200k).
    deadline(LIMIT, || {
        let scratch = Scratch::new("backlog");
        let executor = executor_builder(1).build().unwrap();
        let gate = scratch.gate("gate");
        let held = executor.submit(hold, gate.path()).unwrap();
        gate.started();
        let tasks: Vec<_> = (0..200_000)
            .map(|x| executor.submit(square, x).unwrap())
            .collect();
        gate.open();
        held.result().unwrap();
        let sum: u64 = tasks.iter().map(|t| t.result().unwrap()).sum();
        assert_eq!(sum, (0..200_000u64).map(|x| x * x).sum());
    });
}

#[test]
fn a_task_past_the_task_timeout_fails_and_the_executor_serves_on() {
    deadline(LIMIT, || {
        let executor = executor_builder(1)
            .task_timeout(Duration::from_millis(300))
            .build()
            .unwrap();
        let t0 = Instant::now();
        let err = executor.submit(nap, 60_000).unwrap().result().unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Timeout, "{err}");
        assert!(t0.elapsed() >= Duration::from_millis(250));
        serves_on(&executor);
    });
}

// ---- task handles -----------------------------------------------------------------------

#[test]
fn result_waits_times_out_and_hands_the_value_out_once() {
    deadline(LIMIT, || {
        let scratch = Scratch::new("result");
        let executor = executor_builder(1).build().unwrap();
        let gate = scratch.gate("gate");
        let task = executor.submit(hold, gate.path()).unwrap();
        let worker = gate.started();
        assert!(task.running() && !task.done() && !task.cancelled());
        let t0 = Instant::now();
        let early = task.result_timeout(Duration::from_millis(50)).unwrap_err();
        assert_eq!(early.kind(), ErrorKind::Timeout);
        assert!(t0.elapsed() >= Duration::from_millis(50));
        assert!(!task.done(), "a timed-out wait leaves the task running");
        gate.open();
        assert_eq!(task.result_timeout(LIVENESS).unwrap(), worker);
        assert!(task.done() && !task.running() && !task.cancelled());
        assert!(!task.cancel(), "a finished task cannot be cancelled");
        assert_eq!(task.result().unwrap_err().kind(), ErrorKind::AlreadyTaken);
        assert_eq!(
            task.result_timeout(Duration::from_millis(1))
                .unwrap_err()
                .kind(),
            ErrorKind::AlreadyTaken
        );
        // An error reads any number of times.
        let failed = executor.submit(panics, gate.path()).unwrap();
        for _ in 0..2 {
            let err = failed.result().unwrap_err();
            assert_eq!(err.kind(), ErrorKind::Panicked);
            assert!(err.panic_message().unwrap().contains("on purpose"), "{err}");
        }
        assert!(failed.done() && !failed.cancelled());
    });
}

#[test]
fn cancel_succeeds_while_pending_fails_while_running_and_a_cancelled_task_never_runs() {
    deadline(LIMIT, || {
        let scratch = Scratch::new("cancel");
        let executor = executor_builder(1).build().unwrap();
        let gate = scratch.gate("gate");
        let marker = scratch.path("cancelled-ran");
        let first = executor.submit(hold, gate.path()).unwrap();
        let second = executor.submit(touch, marker.clone()).unwrap();
        let worker = gate.started();
        // The only worker is busy: the second task waits in the executor.
        assert!(first.running() && !first.done());
        assert!(!second.running() && !second.done());
        assert!(!first.cancel(), "a running task cannot be cancelled");
        assert!(second.cancel());
        assert!(second.cancel(), "cancelling again still says cancelled");
        assert!(second.cancelled() && second.done() && !second.running());
        assert_eq!(second.result().unwrap_err().kind(), ErrorKind::Cancelled);
        gate.open();
        assert_eq!(first.result().unwrap(), worker);
        assert!(!first.cancelled());
        // The worker's next task runs; the cancelled one never did.
        let third = scratch.path("third-ran");
        assert_eq!(
            executor
                .submit(touch, third.clone())
                .unwrap()
                .result()
                .unwrap(),
            worker
        );
        executor.shutdown(true, false).unwrap();
        assert!(third.exists());
        assert!(!marker.exists(), "the cancelled task ran");
    });
}

#[test]
fn done_callbacks_run_in_the_parent_before_and_after_completion() {
    deadline(LIMIT, || {
        let scratch = Scratch::new("callbacks");
        let me = std::process::id();
        let executor = executor_builder(1).build().unwrap();
        let gate = scratch.gate("gate");
        let task = executor.submit(hold, gate.path()).unwrap();
        let (tx, rx) = mpsc::channel();
        for n in 0..3 {
            let tx = tx.clone();
            task.add_done_callback(move |r| {
                let value = r.as_ref().ok().copied();
                tx.send((n, std::process::id(), value)).unwrap();
            });
        }
        let worker = gate.started();
        assert!(
            rx.try_recv().is_err(),
            "a callback ran before the task was done"
        );
        gate.open();
        assert_eq!(task.result().unwrap(), worker);
        // The callbacks ran, in the order added and in this process, before result returned.
        let got: Vec<_> = rx.try_iter().collect();
        assert_eq!(
            got,
            [
                (0, me, Some(worker)),
                (1, me, Some(worker)),
                (2, me, Some(worker))
            ]
        );

        // Added to a task that is done: it runs at once, on this thread, with the outcome,
        // which stays there for result().
        let done = executor.submit(pid, ()).unwrap();
        until_done(&done);
        let here = std::thread::current().id();
        let tx2 = tx.clone();
        done.add_done_callback(move |r| {
            let on_this_thread = std::thread::current().id() == here;
            tx2.send((
                3,
                std::process::id(),
                r.as_ref().ok().copied().filter(|_| on_this_thread),
            ))
            .unwrap();
        });
        assert_eq!(rx.try_recv().unwrap(), (3, me, Some(worker)));
        assert_eq!(done.result().unwrap(), worker);
        // After result took the value, a callback is told so.
        let (etx, erx) = mpsc::channel();
        done.add_done_callback(move |r| etx.send(r.as_ref().err().map(Error::kind)).unwrap());
        assert_eq!(erx.try_recv().unwrap(), Some(ErrorKind::AlreadyTaken));

        // A failed task's callback gets its error.
        let failed = executor.submit(panics, gate.path()).unwrap();
        let (ftx, frx) = mpsc::channel();
        failed.add_done_callback(move |r| {
            let e = r.as_ref().unwrap_err();
            ftx.send((
                std::process::id(),
                e.kind(),
                e.panic_message().map(str::to_string),
            ))
            .unwrap();
        });
        let (in_pid, kind, message) = frx.recv_timeout(LIVENESS).unwrap();
        assert_eq!((in_pid, kind), (me, ErrorKind::Panicked));
        assert!(message.unwrap().contains("on purpose"));
        assert_eq!(failed.result().unwrap_err().kind(), ErrorKind::Panicked);
    });
}

#[test]
fn a_cancelled_task_runs_its_callbacks_with_cancelled() {
    deadline(LIMIT, || {
        let scratch = Scratch::new("cancel-callback");
        let executor = executor_builder(1).build().unwrap();
        let gate = scratch.gate("gate");
        let busy = executor.submit(hold, gate.path()).unwrap();
        let pending = executor.submit(touch, scratch.path("never")).unwrap();
        gate.started();
        let (tx, rx) = mpsc::channel();
        pending.add_done_callback(move |r| tx.send(r.as_ref().err().map(Error::kind)).unwrap());
        assert!(rx.try_recv().is_err());
        assert!(pending.cancel());
        assert_eq!(rx.try_recv().unwrap(), Some(ErrorKind::Cancelled));
        gate.open();
        busy.result().unwrap();
    });
}

#[test]
fn callbacks_and_waiters_added_while_callbacks_run_are_not_lost() {
    deadline(LIMIT, || {
        let executor = executor_builder(1).build().unwrap();
        let (entered_tx, entered_rx) = mpsc::channel();
        let (go_tx, go_rx) = mpsc::channel::<()>();
        let task = executor.submit(square, 4).unwrap();
        task.add_done_callback(move |_| {
            entered_tx.send(()).unwrap();
            let _ = go_rx.recv_timeout(LIVENESS);
        });
        // The first callback runs (on the executor's thread) and waits for `go`.
        entered_rx.recv_timeout(LIVENESS).unwrap();
        assert!(task.done());
        let (tx, rx) = mpsc::channel();
        task.add_done_callback(move |r| tx.send(r.as_ref().ok().copied()).unwrap());
        let mut completed = as_completed(std::slice::from_ref(&task), Some(LIVENESS));
        go_tx.send(()).unwrap();
        assert_eq!(rx.recv_timeout(LIVENESS).unwrap(), Some(16));
        assert!(std::ptr::eq(completed.next().unwrap().unwrap(), &task));
        assert_eq!(task.result().unwrap(), 16);
    });
}

#[test]
fn a_callback_may_submit_but_not_wait_and_may_drop_the_last_executor() {
    deadline(LIMIT, || {
        let scratch = Scratch::new("callback-drop");
        let executor = Arc::new(executor_builder(2).build().unwrap());
        let (first_gate, other_gate) = (scratch.gate("first"), scratch.gate("other"));
        let other = executor.submit(hold, other_gate.path()).unwrap();
        let first = executor.submit(hold, first_gate.path()).unwrap();
        let inner = executor.clone();
        let (tx, rx) = mpsc::channel();
        first.add_done_callback(move |_| {
            // Submitting works; waiting for this executor, on its own thread, does not hang.
            let more = inner.submit(square, 3).unwrap();
            let waited = more.result().map_err(|e| e.kind());
            let shut = inner.shutdown(true, false).map_err(|e| e.kind());
            tx.send((more, waited, shut)).unwrap();
            // `inner`, the last handle of the executor, is dropped here, on its own thread.
        });
        first_gate.started();
        other_gate.started();
        drop(executor);
        first_gate.open();
        first.result().unwrap();
        let (more, waited, shut) = rx.recv_timeout(LIVENESS).unwrap();
        assert_eq!(waited, Err(ErrorKind::InvalidState));
        assert_eq!(shut, Err(ErrorKind::InvalidState));
        // The drop shut the executor down as a drop does (waiting, though not on that
        // thread): the work submitted before it still completes.
        other_gate.open();
        assert_eq!(other.result().unwrap(), other_gate.started());
        assert_eq!(more.result().unwrap(), 9);
    });
}

// ---- as_completed and wait ----------------------------------------------------------------

#[test]
fn as_completed_yields_tasks_in_the_order_they_complete() {
    deadline(LIMIT, || {
        let scratch = Scratch::new("as-completed");
        let executor = executor_builder(2).build().unwrap();
        let (a, b) = (scratch.gate("a"), scratch.gate("b"));
        let tasks = [
            executor.submit(hold, a.path()).unwrap(),
            executor.submit(hold, b.path()).unwrap(),
        ];
        let (pa, pb) = (a.started(), b.started());
        let mut completed = as_completed(&tasks, None);
        b.open();
        let first = completed.next().unwrap().unwrap();
        assert!(std::ptr::eq(first, &tasks[1]));
        assert_eq!(first.result().unwrap(), pb);
        a.open();
        let second = completed.next().unwrap().unwrap();
        assert!(std::ptr::eq(second, &tasks[0]));
        assert_eq!(second.result().unwrap(), pa);
        assert!(completed.next().is_none());
        // Tasks done already come at once; no task, no item.
        assert_eq!(as_completed(&tasks, Some(LIVENESS)).count(), 2);
        assert_eq!(as_completed::<u32>(&[], None).count(), 0);
    });
}

#[test]
fn as_completed_times_out_once_and_ends() {
    deadline(LIMIT, || {
        let scratch = Scratch::new("as-completed-timeout");
        let executor = executor_builder(2).build().unwrap();
        let gate = scratch.gate("gate");
        let tasks = [
            executor.submit(nap, 0).unwrap(),
            executor.submit(hold, gate.path()).unwrap(),
        ];
        until_done(&tasks[0]);
        let got: Vec<_> = as_completed(&tasks, Some(Duration::from_millis(200))).collect();
        assert_eq!(got.len(), 2, "{got:?}");
        assert!(std::ptr::eq(*got[0].as_ref().unwrap(), &tasks[0]));
        assert_eq!(got[1].as_ref().unwrap_err().kind(), ErrorKind::Timeout);
        // The held task goes on.
        assert!(!tasks[1].done());
        gate.open();
        tasks[1].result().unwrap();
    });
}

#[test]
fn wait_returns_when_its_condition_holds() {
    deadline(LIMIT, || {
        let scratch = Scratch::new("wait");
        let executor = executor_builder(2).build().unwrap();
        let (a, b) = (scratch.gate("a"), scratch.gate("b"));
        let tasks = [
            executor.submit(hold, a.path()).unwrap(),
            executor.submit(hold, b.path()).unwrap(),
        ];
        a.started();
        b.started();
        // A timeout with nothing done: everything is not done.
        let r = wait(
            &tasks,
            Some(Duration::from_millis(100)),
            ReturnWhen::AllCompleted,
        );
        assert_eq!((r.done.len(), r.not_done.len()), (0, 2));
        b.open();
        let r = wait(&tasks, None, ReturnWhen::FirstCompleted);
        assert_eq!((r.done.len(), r.not_done.len()), (1, 1));
        assert!(std::ptr::eq(r.done[0], &tasks[1]));
        assert!(std::ptr::eq(r.not_done[0], &tasks[0]));
        a.open();
        let r = wait(&tasks, None, ReturnWhen::AllCompleted);
        assert_eq!((r.done.len(), r.not_done.len()), (2, 0));
        // Without an error, FirstException waits for all.
        let ok = [
            executor.submit(square, 2).unwrap(),
            executor.submit(square, 3).unwrap(),
        ];
        let r = wait(&ok, None, ReturnWhen::FirstException);
        assert_eq!((r.done.len(), r.not_done.len()), (2, 0));
    });
}

#[test]
fn wait_first_exception_returns_at_the_first_failure() {
    deadline(LIMIT, || {
        let scratch = Scratch::new("wait-exception");
        let executor = executor_builder(2).build().unwrap();
        let (a, b) = (scratch.gate("a"), scratch.gate("b"));
        let tasks = [
            executor.submit(hold, a.path()).unwrap(),
            executor.submit(panics, b.path()).unwrap(),
            executor.submit(hold, b.path()).unwrap(),
        ];
        a.started();
        let r = wait(&tasks, None, ReturnWhen::FirstException);
        assert_eq!(r.done.len(), 1, "{:?}", r.done);
        assert!(std::ptr::eq(r.done[0], &tasks[1]));
        assert_eq!(r.not_done.len(), 2);
        assert_eq!(tasks[1].result().unwrap_err().kind(), ErrorKind::Panicked);
        a.open();
        b.open();
        let r = wait(&tasks, None, ReturnWhen::AllCompleted);
        assert_eq!(r.done.len(), 3);
    });
}

// ---- map ----------------------------------------------------------------------------------

#[test]
fn map_yields_results_in_order() {
    deadline(LIMIT, || {
        let executor = executor_builder(2).build().unwrap();
        let want: Vec<u64> = (0..500).map(|x| x * x).collect();
        for chunksize in [0, 1, 7, 1000] {
            let got: Vec<u64> = executor
                .map(square, 0..500, None, chunksize)
                .collect::<Result<_, _>>()
                .unwrap();
            assert_eq!(got, want, "chunksize {chunksize}");
        }
        assert_eq!(executor.map(square, Vec::new(), None, 1).count(), 0);
    });
}

#[test]
fn map_times_out_once_and_ends() {
    deadline(LIMIT, || {
        let scratch = Scratch::new("map-timeout");
        let executor = executor_builder(1).build().unwrap();
        let gate = scratch.gate("gate");
        let mut results = executor.map(
            hold,
            vec![gate.path(), gate.path()],
            Some(Duration::from_millis(200)),
            1,
        );
        assert_eq!(
            results.next().unwrap().unwrap_err().kind(),
            ErrorKind::Timeout
        );
        assert!(results.next().is_none());
        assert!(results.next().is_none());
        drop(results);
        gate.open();
        serves_on(&executor);
    });
}

#[test]
fn a_panic_in_map_is_that_items_error_only() {
    deadline(LIMIT, || {
        let executor = executor_builder(2).build().unwrap();
        for chunksize in [1, 3] {
            let got: Vec<_> = executor.map(fail_on_three, 0..8, None, chunksize).collect();
            assert_eq!(got.len(), 8);
            for (i, r) in got.into_iter().enumerate() {
                if i == 3 {
                    let err = r.unwrap_err();
                    assert_eq!(err.kind(), ErrorKind::Panicked);
                    assert!(err.panic_message().unwrap().contains("three"), "{err}");
                } else {
                    assert_eq!(r.unwrap(), i as u64, "chunksize {chunksize}");
                }
            }
        }
        serves_on(&executor);
    });
}

// ---- CPython's test_deadlock.py: each failure is one task's, the executor serves on ------

/// Runs `f` on a one-worker executor, checks the task's error with `check`, then that the
/// executor serves on.
fn fails_alone<A, R>(f: fn(A) -> R, arg: A, check: impl FnOnce(&Error))
where
    A: serde::Serialize + serde::de::DeserializeOwned + 'static,
    R: serde::Serialize + serde::de::DeserializeOwned + Send + std::fmt::Debug + 'static,
{
    let executor = executor_builder(1).build().unwrap();
    let err = executor.submit(f, arg).unwrap().result().unwrap_err();
    check(&err);
    serves_on(&executor);
    serves_on(&executor);
}

#[test]
fn deadlock_an_argument_that_fails_to_serialize() {
    deadline(LIMIT, || {
        fails_alone(take_unsendable, Unsendable, |e| {
            assert_eq!(e.kind(), ErrorKind::Encode, "{e}");
        });
    });
}

#[test]
fn deadlock_an_argument_that_fails_to_deserialize_in_the_worker() {
    deadline(LIMIT, || {
        fails_alone(take_unreadable, Unreadable, |e| {
            assert_eq!(e.kind(), ErrorKind::Decode, "{e}");
        });
    });
}

#[test]
fn deadlock_an_argument_whose_deserialize_exits_the_worker() {
    deadline(LIMIT, || {
        fails_alone(take_exit_on_read, ExitOnRead, |e| {
            assert_eq!(e.kind(), ErrorKind::WorkerDied, "{e}");
            assert_eq!(e.exit_status(), Some(ExitStatus::Code(98)), "{e}");
        });
    });
}

#[test]
fn deadlock_a_panicking_function() {
    deadline(LIMIT, || {
        fails_alone(panics, PathBuf::new(), |e| {
            assert_eq!(e.kind(), ErrorKind::Panicked, "{e}");
            assert!(e.panic_message().unwrap().contains("on purpose"), "{e}");
        });
    });
}

#[test]
fn deadlock_a_function_that_exits() {
    deadline(LIMIT, || {
        fails_alone(exit_99, (), |e| {
            assert_eq!(e.kind(), ErrorKind::WorkerDied, "{e}");
            assert_eq!(e.exit_status(), Some(ExitStatus::Code(99)), "{e}");
        });
    });
}

#[test]
fn deadlock_a_function_that_aborts() {
    deadline(LIMIT, || {
        fails_alone(abort, (), |e| {
            assert_eq!(e.kind(), ErrorKind::WorkerDied, "{e}");
            assert_eq!(e.exit_status(), Some(ExitStatus::Signal(SIGABRT)), "{e}");
        });
    });
}

#[test]
fn deadlock_a_function_that_segfaults() {
    deadline(LIMIT, || {
        fails_alone(segfault, (), |e| {
            assert_eq!(e.kind(), ErrorKind::WorkerDied, "{e}");
            assert_eq!(e.exit_status(), Some(ExitStatus::Signal(SIGSEGV)), "{e}");
        });
    });
}

#[test]
fn deadlock_a_result_that_fails_to_serialize_in_the_worker() {
    deadline(LIMIT, || {
        fails_alone(give_unsendable, (), |e| {
            assert_eq!(e.kind(), ErrorKind::Encode, "{e}");
        });
    });
}

#[test]
fn deadlock_a_result_that_fails_to_deserialize_in_the_parent() {
    deadline(LIMIT, || {
        fails_alone(give_unreadable, (), |e| {
            assert_eq!(e.kind(), ErrorKind::Decode, "{e}");
        });
    });
}

#[test]
fn deadlock_a_result_whose_deserialize_panics_in_the_parent() {
    deadline(LIMIT, || {
        fails_alone(give_fragile, (), |e| {
            assert_eq!(e.kind(), ErrorKind::Panicked, "{e}");
            assert!(e.panic_message().unwrap().contains("fragile"), "{e}");
        });
    });
}

#[test]
fn deadlock_an_idle_worker_sigkilled() {
    deadline(LIMIT, || {
        let executor = executor_builder(1).build().unwrap();
        let worker = executor.submit(pid, ()).unwrap().result().unwrap();
        let pidfd = mproc_sys::pidfd_open(worker).unwrap();
        mproc_sys::pidfd_send_signal(pidfd.as_fd(), mproc_sys::SIGKILL).unwrap();
        assert!(wait_gone(pidfd.as_fd(), LIVENESS));
        let next = executor.submit(pid, ()).unwrap().result().unwrap();
        assert_ne!(next, worker);
        serves_on(&executor);
    });
}

#[test]
fn deadlock_a_worker_sigkilled_mid_task() {
    deadline(LIMIT, || {
        let scratch = Scratch::new("sigkill");
        let executor = executor_builder(1).build().unwrap();
        let gate = scratch.gate("gate");
        let victim = executor.submit(hold, gate.path()).unwrap();
        let queued = executor.submit(square, 5).unwrap();
        let worker = gate.started();
        let pidfd = mproc_sys::pidfd_open(worker).unwrap();
        mproc_sys::pidfd_send_signal(pidfd.as_fd(), mproc_sys::SIGKILL).unwrap();
        let err = victim.result().unwrap_err();
        assert_eq!(err.kind(), ErrorKind::WorkerDied, "{err}");
        assert_eq!(err.exit_status(), Some(ExitStatus::Signal(9)), "{err}");
        // The task queued behind it runs in the replacement.
        assert_eq!(queued.result().unwrap(), 25);
        assert_ne!(executor.submit(pid, ()).unwrap().result().unwrap(), worker);
        serves_on(&executor);
    });
}

// ---- shutdown ---------------------------------------------------------------------------

#[test]
fn shutdown_with_wait_waits_and_later_submits_are_closed() {
    deadline(LIMIT, || {
        let executor = executor_builder(2).build().unwrap();
        let tasks: Vec<_> = (0..6).map(|_| executor.submit(nap, 100).unwrap()).collect();
        executor.shutdown(true, false).unwrap();
        assert!(tasks.iter().all(TaskHandle::done));
        assert!(tasks.iter().all(|t| t.result().is_ok()));
        assert_eq!(executor.workers(), 0, "every worker ended");
        let err = executor.submit(square, 1).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Closed);
        let mapped: Vec<_> = executor.map(square, 0..3, None, 1).collect();
        assert!(!mapped.is_empty());
        assert!(
            mapped
                .iter()
                .all(|r| r.as_ref().unwrap_err().kind() == ErrorKind::Closed),
            "{mapped:?}"
        );
        // Again: harmless.
        executor.shutdown(true, false).unwrap();
        executor.shutdown(false, true).unwrap();
    });
}

#[test]
fn shutdown_with_cancel_futures_cancels_the_pending_and_the_running_finish() {
    deadline(LIMIT, || {
        let scratch = Scratch::new("cancel-futures");
        let executor = executor_builder(1).build().unwrap();
        let gate = scratch.gate("gate");
        let running = executor.submit(hold, gate.path()).unwrap();
        let markers: Vec<PathBuf> = (0..5).map(|i| scratch.path(&format!("m{i}"))).collect();
        let pending: Vec<_> = markers
            .iter()
            .map(|m| executor.submit(touch, m.clone()).unwrap())
            .collect();
        let worker = gate.started();
        executor.shutdown(false, true).unwrap();
        assert!(!running.done() && !running.cancelled());
        for p in &pending {
            assert!(p.cancelled());
            assert_eq!(p.result().unwrap_err().kind(), ErrorKind::Cancelled);
        }
        assert_eq!(
            executor.submit(square, 1).unwrap_err().kind(),
            ErrorKind::Closed
        );
        gate.open();
        assert_eq!(running.result().unwrap(), worker);
        executor.shutdown(true, false).unwrap();
        assert!(markers.iter().all(|m| !m.exists()), "a cancelled task ran");
    });
}

#[test]
fn shutdown_with_cancel_futures_does_not_strand_a_map() {
    deadline(LIMIT, || {
        let scratch = Scratch::new("cancel-futures-map");
        let executor = executor_builder(1).build().unwrap();
        let gates = [scratch.gate("a"), scratch.gate("b"), scratch.gate("c")];
        gates[1].open();
        gates[2].open();
        let mut results = executor.map(
            hold,
            gates.iter().map(Gate::path).collect::<Vec<_>>(),
            Some(LIVENESS),
            1,
        );
        // The first item holds the only worker; the other two wait in the executor.
        let worker = gates[0].started();
        let task = executor.submit(touch, scratch.path("never")).unwrap();
        // The task's callback runs while shutdown cancels: it lets the first item finish
        // meanwhile, so that the worker is idle when the map's items are left pending.
        let first = gates[0].path();
        task.add_done_callback(move |_| {
            std::fs::write(&first, b"open").unwrap();
            std::thread::sleep(Duration::from_millis(300));
        });
        executor.shutdown(false, true).unwrap();
        assert!(task.cancelled());
        assert_eq!(results.next().unwrap().unwrap(), worker);
        // The map's other items were not the executor's to cancel (or were): either way
        // they end, rather than wait for a worker that nothing wakes.
        for r in results {
            match r {
                Ok(pid) => assert_eq!(pid, worker),
                Err(e) => assert_eq!(e.kind(), ErrorKind::Cancelled, "{e}"),
            }
        }
    });
}

#[test]
fn dropping_the_executor_waits_for_the_pending_work() {
    deadline(LIMIT, || {
        let scratch = Scratch::new("drop-waits");
        let markers: Vec<PathBuf> = (0..6).map(|i| scratch.path(&format!("m{i}"))).collect();
        let tasks: Vec<_> = {
            let executor = executor_builder(2).build().unwrap();
            markers
                .iter()
                .map(|m| executor.submit(nap_then_touch, (m.clone(), 100)).unwrap())
                .collect()
        };
        assert!(tasks.iter().all(TaskHandle::done));
        assert!(tasks.iter().all(|t| t.result().is_ok()));
        assert!(markers.iter().all(|m| m.exists()));
    });
}

#[test]
fn shutdown_without_wait_then_drop_returns_and_the_work_still_finishes() {
    deadline(LIMIT, || {
        let scratch = Scratch::new("no-wait");
        let executor = executor_builder(1).build().unwrap();
        let gate = scratch.gate("gate");
        let held = executor.submit(hold, gate.path()).unwrap();
        let queued = executor.submit(square, 7).unwrap();
        let worker = gate.started();
        let pidfd = mproc_sys::pidfd_open(worker).unwrap();
        executor.shutdown(false, false).unwrap();
        assert!(!held.done());
        drop(executor);
        // The drop returned with the gate still closed: it did not wait.
        assert!(!held.done());
        gate.open();
        assert_eq!(held.result().unwrap(), worker);
        assert_eq!(queued.result().unwrap(), 49);
        assert!(
            wait_gone(pidfd.as_fd(), LIVENESS),
            "the worker outlived the work"
        );
    });
}

#[test]
fn terminate_and_kill_workers_fail_the_running_and_cancel_the_pending() {
    deadline(LIMIT, || {
        for kill in [false, true] {
            let scratch = Scratch::new("terminate");
            let executor = executor_builder(1).build().unwrap();
            let gate = scratch.gate("gate");
            let running = executor.submit(hold, gate.path()).unwrap();
            let markers: Vec<PathBuf> = (0..3).map(|i| scratch.path(&format!("m{i}"))).collect();
            let pending: Vec<_> = markers
                .iter()
                .map(|m| executor.submit(touch, m.clone()).unwrap())
                .collect();
            let worker = gate.started();
            let pidfd = mproc_sys::pidfd_open(worker).unwrap();
            if kill {
                executor.kill_workers();
            } else {
                executor.terminate_workers();
            }
            // With the gate closed, the task would hold for a minute: it is the signal that
            // ends it.
            let err = running.result().unwrap_err();
            assert_eq!(err.kind(), ErrorKind::Terminated, "kill {kill}: {err}");
            for p in &pending {
                assert_eq!(p.result().unwrap_err().kind(), ErrorKind::Cancelled);
            }
            assert_eq!(
                executor.submit(square, 1).unwrap_err().kind(),
                ErrorKind::Terminated
            );
            assert!(
                wait_gone(pidfd.as_fd(), LIVENESS),
                "kill {kill}: the worker outlived terminate"
            );
            drop(executor);
            assert!(
                mproc_tests::proc_state(worker).is_none_or(|(_, pp)| pp != std::process::id()),
                "kill {kill}: the worker was not reaped"
            );
            assert!(markers.iter().all(|m| !m.exists()), "a cancelled task ran");
            assert_eq!(zombies_of(std::process::id()), 0);
        }
    });
}
