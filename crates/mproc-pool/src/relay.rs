//! The pool's entry for another transport (mproc-mpi): a task as token parts and bytes in,
//! run by a local pool; a call's chunks handed to the transport, their outcomes completed
//! into the same [`AsyncResult`] a local pool returns.
//!
//! This module is for mproc-mpi and is outside mproc's semver promise. A task is the
//! parts of a function token of this build (checked again by the worker that runs it),
//! its items serialized as a local pool's chunk is, and the number of items; its outcome
//! is the bytes of the chunk's results or a [`RelayError`], both serializable.

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::callbacks::Callbacks;
use crate::chunk;
use crate::error::{Error, ErrorKind, Result};
use crate::handle::{TaskHandle, TaskJob};
use crate::imap::{self, IMAP_CHUNKS_PER_WORKER, Imap};
use crate::manager::{
    Chunk, Deliveries, become_manager_of, deliver, on_manager_of, reentrant_wait,
};
use crate::pool::Pool;
use crate::result::{AsyncResult, Collect};
use crate::sink::{Delivery, Sink, Span};
use crate::task::{Call, Payload};

pub use crate::task::TaskFn;

/// A chunk of a call in transport form.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct RelayTask {
    /// The function token's parts: [`mproc_sys::build_fingerprint`], thunk, function.
    pub token: (u64, i64, i64),
    /// How many items the chunk holds.
    pub items: u32,
    /// The items, serialized as a local pool serializes a chunk.
    #[serde(with = "serde_bytes")]
    pub args: Vec<u8>,
}

/// What became of a [`RelayTask`]: its results' bytes, or why it failed as a whole.
pub type RelayOutcome = std::result::Result<Vec<u8>, RelayError>;

/// A pool [`Error`] in transport form (kind, message, panic message, exit status).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct RelayError {
    kind: u8,
    message: String,
    panic: Option<String>,
    /// `(false, code)` for an exit code, `(true, signal)` for a signal.
    status: Option<(bool, i32)>,
}

/// The kinds an error keeps across the transport, by their number there.
const KINDS: [ErrorKind; 14] = [
    ErrorKind::Io,
    ErrorKind::Panicked,
    ErrorKind::WorkerDied,
    ErrorKind::Timeout,
    ErrorKind::Encode,
    ErrorKind::Decode,
    ErrorKind::Closed,
    ErrorKind::Terminated,
    ErrorKind::Initializer,
    ErrorKind::Start,
    ErrorKind::AlreadyTaken,
    ErrorKind::InvalidState,
    ErrorKind::InvalidInput,
    ErrorKind::Cancelled,
];

impl RelayError {
    /// Makes an error of `kind` with `message` (for the transport's own failures).
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        RelayError {
            kind: KINDS.iter().position(|k| *k == kind).unwrap_or(0) as u8,
            message: message.into(),
            panic: None,
            status: None,
        }
    }
}

impl From<&Error> for RelayError {
    fn from(e: &Error) -> Self {
        let mut r = RelayError::new(e.kind(), e.to_string());
        r.panic = e.panic_message().map(str::to_string);
        if r.panic.is_some() {
            // The message is made again from the panic message on the other side.
            r.message = "the task panicked".into();
        }
        r.status = e.exit_status().map(|s| match s {
            mproc_sys::ExitStatus::Code(c) => (false, c),
            mproc_sys::ExitStatus::Signal(s) => (true, s),
        });
        r
    }
}

impl From<RelayError> for Error {
    fn from(r: RelayError) -> Self {
        let kind = KINDS.get(r.kind as usize).copied().unwrap_or(ErrorKind::Io);
        match (kind, r.panic, r.status) {
            (ErrorKind::Panicked, Some(p), _) => Error::panicked(p),
            (ErrorKind::WorkerDied, _, Some((signal, n))) => Error::worker_died(Some(if signal {
                mproc_sys::ExitStatus::Signal(n)
            } else {
                mproc_sys::ExitStatus::Code(n)
            })),
            _ => Error::new(kind, r.message),
        }
    }
}

/// Where a relayed task's outcome goes, on the worker's side.
struct Done(std::sync::Mutex<Option<OnDone>>);

type OnDone = Box<dyn FnOnce(RelayOutcome) + Send>;

impl Sink for Done {
    fn deliver(&self, _span: Span, delivery: Delivery) {
        let outcome = match delivery {
            Delivery::Ran(payload) => payload.into_bytes().ok_or_else(|| {
                RelayError::new(
                    ErrorKind::Encode,
                    "the task's results hold fds, which cannot travel to another host",
                )
            }),
            Delivery::Failed(e) => Err(RelayError::from(&e)),
        };
        let done = self.0.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(done) = done {
            done(outcome);
        }
    }

    fn is_cancelled(&self) -> bool {
        false
    }
}

impl Pool {
    /// Runs a task that came from another transport in this pool's workers; `done` gets
    /// its outcome exactly once (on the pool's result thread, or here when the pool is
    /// closed). For mproc-mpi's worker ranks.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Closed`] or [`ErrorKind::Terminated`] when the pool takes no work
    /// (`done` has then had that error too).
    pub fn relay(
        &self,
        task: RelayTask,
        done: impl FnOnce(RelayOutcome) + Send + 'static,
    ) -> Result<()> {
        let (fingerprint, thunk, func) = task.token;
        let chunk = Chunk {
            sink: Arc::new(Done(std::sync::Mutex::new(Some(Box::new(done))))),
            span: Span {
                start: 0,
                len: task.items as usize,
            },
            call: Call {
                fingerprint,
                thunk,
                func,
            },
            args: Arc::new(Payload::from_bytes(task.args)),
        };
        self.shared().submit(vec![chunk])
    }
}

/// A relayed chunk on rank 0: the task to carry, and where its outcome goes.
pub struct RelayJob {
    /// The task to carry to a worker.
    pub task: RelayTask,
    sink: Arc<dyn Sink>,
    span: Span,
}

impl std::fmt::Debug for RelayJob {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RelayJob")
            .field("items", &self.task.items)
            .finish()
    }
}

impl RelayJob {
    /// Completes the job with its outcome (the results are checked and decoded as a local
    /// pool's are: bytes that do not fit fail the chunk's items, never panic).
    pub fn complete(self, outcome: RelayOutcome) {
        let delivery = match outcome {
            Ok(bytes) => Delivery::Ran(Payload::from_bytes(bytes)),
            Err(e) => Delivery::Failed(Error::from(e)),
        };
        deliver(vec![(self.sink, self.span, delivery)]);
    }

    /// Returns whether the call no longer needs this chunk (it failed already, or its
    /// reader is gone): the transport may complete it without sending it.
    pub fn is_cancelled(&self) -> bool {
        self.sink.is_cancelled()
    }

    /// Cancels the job if it is one a caller can cancel (a task of `submit` not yet
    /// running, whose handle then reports `Cancelled`); afterwards
    /// [`is_cancelled`](Self::is_cancelled) says whether it was. An executor's
    /// `shutdown(cancel_futures)`.
    pub fn cancel_pending(&self) {
        self.sink.cancel_pending();
    }

    /// Marks the job as handed to a worker, just before the transport sends it: `false`
    /// when the call no longer needs it (drop it: its outcome is settled already). From
    /// then on a [`TaskHandle`]'s `cancel` fails and its `running` is `true`.
    pub fn begin(&self) -> bool {
        self.sink.begin()
    }
}

/// What carries a [`RelayFront`]'s jobs to workers.
pub trait RelayTransport: Send + Sync + 'static {
    /// Returns how many workers there are (for the default chunk size).
    fn workers(&self) -> usize;
    /// Takes jobs to carry; each must be completed once. A transport that takes no more
    /// work hands them back with why.
    fn send(&self, jobs: Vec<RelayJob>) -> std::result::Result<(), (RelayError, Vec<RelayJob>)>;
}

/// Marks the calling thread as the one that completes the jobs of the fronts made with
/// `result_thread`: a callback that waits there for a result of theirs fails at once
/// ([`ErrorKind::InvalidState`]) rather than waiting for itself.
pub fn mark_result_thread(result_thread: usize) {
    become_manager_of(result_thread);
}

/// Returns whether the calling thread is the one marked with
/// [`mark_result_thread`]`(result_thread)`: a pool's `join` or `terminate` called there (from
/// a callback) must not wait for the thread it runs on.
pub fn on_result_thread(result_thread: usize) -> bool {
    on_manager_of(result_thread)
}

/// The error of a wait, on the result thread, for results only that thread delivers
/// ([`ErrorKind::InvalidState`]), as a local pool's `join` from its own callback fails.
pub fn reentrant_wait_error() -> Error {
    reentrant_wait()
}

/// The calls of a pool over a [`RelayTransport`]: chunks made and results gathered as a
/// local [`Pool`] makes and gathers them, into the same [`AsyncResult`].
pub struct RelayFront {
    transport: Arc<dyn RelayTransport>,
    /// The number of the thread that completes its jobs (see [`mark_result_thread`]).
    result_thread: usize,
}

impl std::fmt::Debug for RelayFront {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RelayFront")
            .field("workers", &self.transport.workers())
            .finish()
    }
}

impl RelayFront {
    /// Makes the front of `transport`, whose jobs are completed on the thread marked
    /// with [`mark_result_thread`]`(result_thread)` (a number not 0, unique to that thread,
    /// such as the address of something it owns; fronts completed there share it).
    pub fn new(transport: Arc<dyn RelayTransport>, result_thread: usize) -> Self {
        RelayFront {
            transport,
            result_thread,
        }
    }

    /// Starts `f` over `items` in chunks of `chunksize` (Python's rule when `None`); the
    /// results are gathered in order by `gather`, the callbacks run on completion.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::InvalidInput`] for a chunk size of 0; the transport's error when it
    /// takes no work.
    pub fn collect<F: TaskFn, T: Send + 'static>(
        &self,
        f: F,
        items: Vec<F::Args>,
        chunksize: Option<usize>,
        gather: fn(Vec<F::Output>) -> T,
        callbacks: Callbacks<T>,
    ) -> Result<AsyncResult<T>> {
        let chunksize = match chunksize {
            Some(0) => {
                return Err(Error::new(
                    ErrorKind::InvalidInput,
                    "chunksize must be at least 1",
                ));
            }
            Some(n) => n,
            None => chunk::default_chunksize(items.len(), self.transport.workers()),
        };
        let job = Collect::<F::Output, T>::new(self.result_thread, items.len(), gather, callbacks);
        let sink: Arc<dyn Sink> = job.clone();
        let mut failed = Deliveries::new();
        let submitted = chunk::encode_streaming(
            &items,
            0,
            chunksize,
            Call::new(f),
            &sink,
            &mut failed,
            |chunks| send(&*self.transport, chunks),
        );
        drop(items);
        deliver(failed);
        submitted?;
        Ok(AsyncResult::new(job))
    }

    /// Applies `f` to `items` lazily, `chunksize` items to a task (0 counts as 1), with a
    /// bounded number of items in flight: the [`Imap`] of `Pool::imap` (`ordered`) or
    /// `Pool::imap_unordered`.
    pub fn stream<'a, F: TaskFn>(
        &self,
        f: F,
        items: impl IntoIterator<Item = F::Args> + 'a,
        chunksize: usize,
        ordered: bool,
    ) -> Imap<'a, F::Output> {
        let chunksize = chunksize.max(1);
        let feed = imap::feed(f, items, chunksize);
        let window = chunksize
            .saturating_mul(IMAP_CHUNKS_PER_WORKER)
            .saturating_mul(self.transport.workers());
        let transport = self.transport.clone();
        Imap::new(
            Box::new(move |chunks| send(&*transport, chunks)),
            self.result_thread,
            ordered,
            window,
            feed,
        )
    }

    /// Starts `f(arg)` as one task and returns its [`TaskHandle`] (an executor's
    /// `submit`). An argument that does not serialize fails the task, not the call.
    ///
    /// # Errors
    ///
    /// The transport's error when it takes no work (the handle would hold it too).
    pub fn submit<F: TaskFn>(&self, f: F, arg: F::Args) -> Result<TaskHandle<F::Output>> {
        let job = TaskJob::<F::Output>::new(self.result_thread);
        let sink: Arc<dyn Sink> = job.clone();
        let items = [arg];
        let mut failed = Deliveries::new();
        let submitted =
            chunk::encode_streaming(&items, 0, 1, Call::new(f), &sink, &mut failed, |chunks| {
                send(&*self.transport, chunks)
            });
        drop(items);
        deliver(failed);
        submitted?;
        Ok(TaskHandle::new(job))
    }
}

/// Hands chunks to `transport`; a chunk that cannot travel (fds inside) fails alone.
fn send(transport: &dyn RelayTransport, chunks: Vec<Chunk>) -> Result<()> {
    let mut failed = Deliveries::new();
    let mut jobs = Vec::with_capacity(chunks.len());
    for chunk in chunks {
        let Chunk {
            sink,
            span,
            call,
            args,
        } = chunk;
        let bytes = Arc::try_unwrap(args)
            .ok()
            .and_then(Payload::into_bytes)
            .ok_or_else(|| {
                Error::new(
                    ErrorKind::Encode,
                    "the task's argument holds fds, which cannot travel to another host",
                )
            });
        match bytes {
            Ok(args) => jobs.push(RelayJob {
                task: RelayTask {
                    token: (call.fingerprint, call.thunk, call.func),
                    items: span.len as u32,
                    args,
                },
                sink,
                span,
            }),
            Err(e) => failed.push((sink, span, Delivery::Failed(e))),
        }
    }
    deliver(failed);
    transport.send(jobs).map_err(|(e, jobs)| {
        let e = Error::from(e);
        let refused = jobs
            .into_iter()
            .map(|j| (j.sink, j.span, Delivery::Failed(e.clone())))
            .collect();
        deliver(refused);
        e
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_keep_their_kind_panic_and_status_across_the_transport() {
        let died = Error::worker_died(Some(mproc_sys::ExitStatus::Signal(11)));
        let back = Error::from(RelayError::from(&died));
        assert_eq!(back.kind(), ErrorKind::WorkerDied);
        assert_eq!(back.exit_status(), Some(mproc_sys::ExitStatus::Signal(11)));
        let panicked = Error::panicked("boom at x.rs:1".into());
        let back = Error::from(RelayError::from(&panicked));
        assert_eq!(back.kind(), ErrorKind::Panicked);
        assert_eq!(back.panic_message(), Some("boom at x.rs:1"));
        for kind in KINDS {
            assert_eq!(Error::from(RelayError::new(kind, "m")).kind(), kind);
        }
        // A kind number no build sends decodes as an I/O error, never a panic.
        let odd = RelayError {
            kind: 200,
            message: "?".into(),
            panic: None,
            status: None,
        };
        assert_eq!(Error::from(odd).kind(), ErrorKind::Io);
    }
}
