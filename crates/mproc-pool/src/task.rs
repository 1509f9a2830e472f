//! What travels between the pool and its workers: tasks out (a function, named for this
//! build, with a chunk of arguments), events back.

use std::os::fd::{AsFd, OwnedFd};
use std::sync::Arc;

use mproc_process::catch_panic;
use mproc_sys::{FnAt, FnPtr, FnToken};
use mproc_wire::{Fd, FdRef, Message};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Serialized values: postcard bytes and the fds that were inside them.
#[derive(Debug, Default)]
pub(crate) struct Payload {
    bytes: Vec<u8>,
    fds: Vec<OwnedFd>,
}

impl Payload {
    pub(crate) fn encode<T: Serialize + ?Sized>(value: &T) -> Result<Self, mproc_wire::Error> {
        let (bytes, fds) = mproc_wire::encode(value)?.into_parts();
        Ok(Payload { bytes, fds })
    }

    /// Like [`encode`](Self::encode), into a buffer of `hint` bytes to start with (no
    /// regrowth, and no copy, when the value fits).
    pub(crate) fn encode_sized<T: Serialize + ?Sized>(
        value: &T,
        hint: usize,
    ) -> Result<Self, mproc_wire::Error> {
        let mut bytes = Vec::with_capacity(hint);
        let fds = mproc_wire::encode_into(value, &mut bytes)?;
        Ok(Payload { bytes, fds })
    }

    /// Makes a payload of bytes alone (no fds), as another transport carried them.
    pub(crate) fn from_bytes(bytes: Vec<u8>) -> Self {
        Payload {
            bytes,
            fds: Vec::new(),
        }
    }

    /// Returns the bytes, or `None` when fds travel with them.
    pub(crate) fn into_bytes(self) -> Option<Vec<u8>> {
        self.fds.is_empty().then_some(self.bytes)
    }

    /// Returns the number of bytes.
    pub(crate) fn len(&self) -> usize {
        self.bytes.len()
    }

    pub(crate) fn decode<T: DeserializeOwned>(self) -> Result<T, mproc_wire::Error> {
        mproc_wire::decode(Message::from_parts(self.bytes, self.fds))
    }

    /// Duplicates the payload (its fds too), for a task sent again after its worker died.
    pub(crate) fn try_clone(&self) -> std::io::Result<Self> {
        Ok(Payload {
            bytes: self.bytes.clone(),
            fds: self
                .fds
                .iter()
                .map(|f| f.try_clone())
                .collect::<std::io::Result<_>>()?,
        })
    }
}

impl Serialize for Payload {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeTuple;
        let mut t = s.serialize_tuple(2)?;
        t.serialize_element(serde_bytes::Bytes::new(&self.bytes))?;
        t.serialize_element(&FdList(&self.fds))?;
        t.end()
    }
}

struct FdList<'a>(&'a [OwnedFd]);

impl Serialize for FdList<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(self.0.iter().map(|f| FdRef(f.as_fd())))
    }
}

impl<'de> Deserialize<'de> for Payload {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let (bytes, fds) = <(serde_bytes::ByteBuf, Vec<Fd>)>::deserialize(d)?;
        Ok(Payload {
            bytes: bytes.into_vec(),
            fds: fds.into_iter().map(Fd::into_owned).collect(),
        })
    }
}

/// A payload shared by the task on its way to a worker and the pool's record of it, so
/// that a task whose worker died before starting it can be sent again.
#[derive(Debug, Clone)]
pub(crate) struct SharedPayload(pub Arc<Payload>);

impl SharedPayload {
    /// Returns the payload, cloning it only when the record still holds it too.
    fn into_payload(self) -> std::io::Result<Payload> {
        Arc::try_unwrap(self.0).or_else(|shared| shared.try_clone())
    }
}

impl Serialize for SharedPayload {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.0.serialize(s)
    }
}

impl<'de> Deserialize<'de> for SharedPayload {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Payload::deserialize(d).map(|p| SharedPayload(Arc::new(p)))
    }
}

/// A function of this build and the thunk that runs a chunk of its arguments, as parts
/// that a worker of the same build turns back into a [`FnToken`].
#[derive(Clone, Copy, Debug, Serialize, Deserialize)]
pub(crate) struct Call {
    pub fingerprint: u64,
    pub thunk: i64,
    pub func: i64,
}

/// The token type of every pool call: a chunk of arguments in, its outcome out.
pub(crate) type ChunkToken = FnToken<Payload, ChunkOutcome>;

impl Call {
    pub(crate) fn new<F: TaskFn>(f: F) -> Call {
        let (fingerprint, thunk, func) = ChunkToken::for_fn(run_chunk::<F>, f).to_parts();
        Call {
            fingerprint,
            thunk,
            func,
        }
    }
}

/// One task: a chunk of one call's arguments, numbered by the pool.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct Task {
    pub seq: u64,
    pub call: Call,
    pub args: SharedPayload,
}

impl Task {
    /// Returns the call and its arguments, for the worker.
    pub(crate) fn into_parts(self) -> (Call, std::io::Result<Payload>) {
        (self.call, self.args.into_payload())
    }
}

/// What the pool's manager hears: from workers, from the watcher of workers, from the
/// pool's own handles.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) enum Event {
    /// A worker finished task `seq`.
    Done {
        worker: u32,
        seq: u64,
        outcome: ChunkOutcome,
    },
    /// A worker's initializer failed; the worker has ended.
    InitFailed { worker: u32, message: String },
    /// A worker could not read the task after task `after` in its queue: that task is
    /// lost (and failed); the worker goes on with the next.
    Unreadable {
        worker: u32,
        after: u64,
        message: String,
    },
    /// A worker's process ended; `timed_out` names the task it was killed for, if the
    /// watcher killed it for running past the task timeout.
    Exited {
        worker: u32,
        generation: u64,
        timed_out: Option<u64>,
    },
    /// Something changed that the manager should look at (termination, a close).
    Wake,
    /// The event queue failed (an event may be lost): the manager checks its workers.
    /// Made by the manager itself, never sent.
    Resync,
}

/// How a chunk went, as a whole.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) enum ChunkOutcome {
    /// Every item ran: a `Vec<Result<R, ItemFailure>>`, serialized.
    Ran(Payload),
    /// No item ran.
    Failed(ChunkFailure),
}

/// Why a whole chunk failed in the worker.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) enum ChunkFailure {
    /// The arguments could not be deserialized.
    Decode(String),
    /// The worker does not run the same build as the pool.
    BuildMismatch,
    /// The thunk itself panicked (a result's `Drop`, say).
    Panicked(String),
    /// The results could not be sent back (too many fds, no memory for a large one).
    Unsendable(String),
}

impl std::fmt::Display for ChunkFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ChunkFailure::Decode(m) => f.write_str(m),
            ChunkFailure::BuildMismatch => f.write_str(
                "the worker runs a different build of the executable; do not replace the \
                 binary while the pool runs",
            ),
            ChunkFailure::Panicked(m) => write!(f, "the task panicked: {m}"),
            ChunkFailure::Unsendable(m) => f.write_str(m),
        }
    }
}

/// Why one item failed in the worker.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) enum ItemFailure {
    Panicked(String),
    Encode(String),
}

impl std::fmt::Display for ItemFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ItemFailure::Panicked(m) => write!(f, "panicked: {m}"),
            ItemFailure::Encode(m) => f.write_str(m),
        }
    }
}

/// A function a pool can run: a function pointer of one to four arguments, whose
/// arguments travel as one value (a tuple for several). Public (hidden) for mproc-mpi's
/// relay front only; implemented for `fn` pointers and nothing else.
pub trait TaskFn: FnPtr + Send + Sync + 'static {
    /// The arguments as one value.
    type Args: Serialize + DeserializeOwned + 'static;
    /// The function's result.
    type Output: Serialize + DeserializeOwned + Send + 'static;
    /// Calls the function.
    fn call(self, args: Self::Args) -> Self::Output;
}

impl<A, R> TaskFn for fn(A) -> R
where
    A: Serialize + DeserializeOwned + 'static,
    R: Serialize + DeserializeOwned + Send + 'static,
{
    type Args = A;
    type Output = R;
    fn call(self, a: A) -> R {
        self(a)
    }
}

macro_rules! star_fn {
    ($($arg:ident),+) => {
        impl<$($arg,)+ R> TaskFn for fn($($arg),+) -> R
        where
            $($arg: Serialize + DeserializeOwned + 'static,)+
            R: Serialize + DeserializeOwned + Send + 'static,
        {
            type Args = ($($arg,)+);
            type Output = R;
            #[allow(non_snake_case)]
            fn call(self, ($($arg,)+): Self::Args) -> R {
                self($($arg),+)
            }
        }
    };
}
star_fn!(A, B);
star_fn!(A, B, C);
star_fn!(A, B, C, D);

/// A chunk's results on the wire: the failed items (by position in the chunk) and the
/// values of the others, in order. With no failure (the common case) this is a plain
/// `Vec<R>` after one empty list: no tag per item, one allocation on each side.
pub(crate) type ChunkResults<R> = (Vec<(u32, ItemFailure)>, Vec<R>);

/// The thunk a worker calls for a chunk of `f`'s arguments: a panic fails its item only
/// (the chunk goes on with the next one), and results that cannot be serialized fail
/// alone too.
fn run_chunk<F: TaskFn>(f: FnAt<F>, args: Payload) -> ChunkOutcome {
    let items: Vec<F::Args> = match args.decode() {
        Ok(items) => items,
        Err(e) => {
            return ChunkOutcome::Failed(ChunkFailure::Decode(format!(
                "the task's argument could not be deserialized in the worker: {e}"
            )));
        }
    };
    let f = f.get();
    let n = items.len();
    let mut values: Vec<F::Output> = Vec::with_capacity(n);
    let mut failures: Vec<(u32, ItemFailure)> = Vec::new();
    let mut items = items.into_iter();
    // One `catch_panic` for the whole chunk while nothing panics; after a panic, the
    // chunk resumes with the next item.
    while values.len() + failures.len() < n {
        let done = mproc_process::catch_panic(|| {
            for a in items.by_ref() {
                values.push(f.call(a));
            }
        });
        if let Err(message) = done {
            let at = (values.len() + failures.len()) as u32;
            failures.push((at, ItemFailure::Panicked(message)));
        }
    }
    let hint = 16 + n * size_of::<F::Output>();
    let results: ChunkResults<F::Output> = (failures, values);
    match catch_panic(|| Payload::encode_sized(&results, hint)) {
        Ok(Ok(p)) => ChunkOutcome::Ran(p),
        _ => ChunkOutcome::Ran(encode_each(results)),
    }
}

/// Serializes results one by one, turning each value that cannot be serialized into the
/// failure of its item.
#[cold]
fn encode_each<R: Serialize>((mut failures, values): ChunkResults<R>) -> Payload {
    let mut kept = Vec::with_capacity(values.len());
    // Positions of the values: the chunk's positions, less those that already failed.
    let failed: Vec<u32> = failures.iter().map(|(i, _)| *i).collect();
    let mut positions = (0u32..).filter(|i| !failed.contains(i));
    for v in values {
        let at = positions.next().unwrap_or(u32::MAX);
        match catch_panic(|| mproc_wire::encode(&v)) {
            Ok(Ok(_)) => kept.push(v),
            Ok(Err(e)) => failures.push((
                at,
                ItemFailure::Encode(format!("the task's result could not be serialized: {e}")),
            )),
            Err(p) => failures.push((
                at,
                ItemFailure::Encode(format!(
                    "the task's result panicked while being serialized: {p}"
                )),
            )),
        }
    }
    failures.sort_by_key(|(i, _)| *i);
    // Every kept value serialized alone, so the whole serializes too.
    Payload::encode(&(failures, kept)).unwrap_or_default()
}
