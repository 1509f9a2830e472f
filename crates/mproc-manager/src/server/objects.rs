//! The objects a server holds: each one's state behind its own mutex, held for the whole of
//! an operation.
//!
//! [`Object::apply`] hands an operation to the file of the object's family: `seq` (lists,
//! arrays), `dict` (dicts, sets), `value` (values, namespaces), `queue`, `sync` (locks,
//! conditions, semaphores, events, barriers), `custom` (registered types).

mod custom;
mod dict;
mod queue;
mod seq;
mod sync;
mod value;

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Condvar, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use super::Caller;
use crate::protocol::{Bytes, Fault, Init, Kind, Op, Reply, Wait};
use crate::registry::Erased;
use dict::Dict;
use sync::{BarrierState, LockState};

/// How often a waiting operation looks whether its caller is still there.
const CHECK_EVERY: Duration = Duration::from_millis(100);

type Failure = (Fault, String);

pub(crate) struct Object {
    pub(crate) kind: Kind,
    pub(crate) type_name: String,
    state: Mutex<State>,
    /// Signalled on every change that may end a wait.
    changed: Condvar,
}

pub(crate) enum State {
    /// A list or an array, and a count of its changes.
    Seq {
        items: Vec<Bytes>,
        version: u64,
    },
    Dict(Dict),
    Value {
        bytes: Bytes,
        version: u64,
    },
    Namespace(BTreeMap<String, Bytes>),
    Queue {
        items: VecDeque<Bytes>,
        /// 0: unbounded.
        max: u64,
        /// Items put and not yet marked done (joinable queues).
        unfinished: u64,
    },
    /// A lock, an `RLock`, or a condition (an `RLock` with waiters).
    Lock(LockState),
    Semaphore {
        value: u64,
        bound: Option<u64>,
    },
    /// An event's flag, and how many times it was set (a waiter present at a `set` wakes
    /// even if the flag is cleared before it runs, as in Python).
    Event {
        set: bool,
        sets: u64,
    },
    Barrier(BarrierState),
    Custom(Box<dyn Erased>),
}

enum Ended {
    Ready,
    TimedOut,
    /// The caller's connection closed while it waited.
    Gone,
}

fn fault(kind: Fault, message: impl Into<String>) -> Failure {
    (kind, message.into())
}

impl State {
    pub(crate) fn new(kind: &Kind, init: Init) -> Result<State, Failure> {
        Ok(match (kind, init) {
            (Kind::List, Init::Empty) => State::Seq {
                items: Vec::new(),
                version: 0,
            },
            (Kind::List | Kind::Array, Init::Items(items)) => State::Seq { items, version: 0 },
            (Kind::Dict | Kind::Set, Init::Empty) => State::Dict(Dict::default()),
            (Kind::Dict | Kind::Set, Init::Pairs(pairs)) => {
                let mut d = Dict::default();
                d.extend(pairs);
                State::Dict(d)
            }
            (Kind::Value, Init::One(bytes)) => State::Value { bytes, version: 0 },
            (Kind::Namespace, Init::Empty) => State::Namespace(BTreeMap::new()),
            (Kind::Queue | Kind::JoinableQueue, Init::Count(max)) => State::Queue {
                items: VecDeque::new(),
                max,
                unfinished: 0,
            },
            (Kind::Lock | Kind::RLock | Kind::Condition, Init::Empty) => {
                State::Lock(LockState::default())
            }
            (Kind::Semaphore, Init::Count(value)) => State::Semaphore { value, bound: None },
            (Kind::BoundedSemaphore, Init::Count(value)) => State::Semaphore {
                value,
                bound: Some(value),
            },
            (Kind::Event, Init::Empty) => State::Event {
                set: false,
                sets: 0,
            },
            (Kind::Barrier, Init::Count(0)) => {
                return Err(fault(
                    Fault::InvalidInput,
                    "a barrier needs at least one party",
                ));
            }
            (Kind::Barrier, Init::Count(parties)) => State::Barrier(BarrierState::new(parties)),
            (kind, _) => {
                return Err(fault(
                    Fault::InvalidInput,
                    format!("not an initial value for a {kind:?}"),
                ));
            }
        })
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Object {
    pub(crate) fn new(kind: Kind, type_name: String, state: State) -> Self {
        Self {
            kind,
            type_name,
            state: Mutex::new(state),
            changed: Condvar::new(),
        }
    }

    /// Waits, with the state's mutex released, until `ready` holds, `wait` runs out, or the
    /// caller goes away.
    fn wait_until<'a>(
        &'a self,
        mut g: MutexGuard<'a, State>,
        wait: Wait,
        caller: &Caller<'_>,
        mut ready: impl FnMut(&mut State) -> bool,
    ) -> (MutexGuard<'a, State>, Ended) {
        let deadline: Option<Instant> = match wait {
            Wait::For(d) => mproc_sys::deadline_after(d),
            _ => None,
        };
        let mut waited = false;
        let mut checked = Instant::now();
        loop {
            if ready(&mut g) {
                // A caller that died while it waited must not take the item or the lock.
                if waited && !caller.alive() {
                    return (g, Ended::Gone);
                }
                return (g, Ended::Ready);
            }
            let slice = match (wait, deadline) {
                (Wait::No, _) => return (g, Ended::TimedOut),
                (Wait::For(_), Some(d)) => {
                    let left = d.saturating_duration_since(Instant::now());
                    if left.is_zero() {
                        return (g, Ended::TimedOut);
                    }
                    left.min(CHECK_EVERY)
                }
                _ => CHECK_EVERY,
            };
            let (next, outcome) = self
                .changed
                .wait_timeout(g, slice)
                .unwrap_or_else(PoisonError::into_inner);
            g = next;
            waited = true;
            // Every slice, whatever woke us: on a busy object, wake-ups that find nothing
            // ready could otherwise come faster than the slices end.
            if outcome.timed_out() || checked.elapsed() >= CHECK_EVERY {
                if !caller.alive() {
                    return (g, Ended::Gone);
                }
                checked = Instant::now();
            }
        }
    }

    pub(crate) fn apply(&self, op: Op, caller: &Caller<'_>) -> Reply {
        let g = lock(&self.state);
        match &self.kind {
            Kind::List | Kind::Array => self.seq(g, op, self.kind == Kind::List),
            Kind::Dict | Kind::Set => self.dict(g, op),
            Kind::Value => self.value(g, op),
            Kind::Namespace => self.namespace(g, op),
            Kind::Queue | Kind::JoinableQueue => self.queue(g, op, caller),
            Kind::Lock | Kind::RLock | Kind::Condition => self.lock_op(g, op, caller),
            Kind::Semaphore | Kind::BoundedSemaphore => self.semaphore(g, op, caller),
            Kind::Event => self.event(g, op, caller),
            Kind::Barrier => self.barrier(g, op, caller),
            Kind::Custom(_) => self.custom(g, op),
        }
    }

    fn wrong(&self, op: &Op) -> Failure {
        let name = format!("{op:?}");
        let name = name.split(['(', ' ']).next().unwrap_or_default();
        fault(
            Fault::WrongType,
            format!("a {:?} has no operation {name}", self.kind),
        )
    }
}

fn gone() -> Failure {
    fault(Fault::Busy, "the caller went away")
}
