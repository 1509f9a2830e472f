//! The objects a server holds and the operations on each, one object's mutex held for the
//! whole of an operation.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Condvar, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use super::{Caller, describe};
use crate::protocol::{Bytes, Fault, Init, Kind, Op, Out, Owner, Reply, Wait};
use crate::registry::Erased;

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

/// A dict that keeps its keys in insertion order, as Python's does.
#[derive(Default)]
pub(crate) struct Dict {
    entries: HashMap<Bytes, Entry>,
    order: BTreeMap<u64, Bytes>,
    /// Numbers both positions and versions: every write takes the next.
    clock: u64,
}

struct Entry {
    value: Bytes,
    /// When the value was last written.
    version: u64,
    /// Where the key sits in the order.
    position: u64,
}

#[derive(Default)]
pub(crate) struct LockState {
    holder: Option<Owner>,
    /// Acquisitions by the holder (an `RLock` counts them).
    count: u64,
    /// Conditions: the tickets of waiting callers, in order, and those notified.
    waiters: VecDeque<u64>,
    notified: Vec<u64>,
    next_ticket: u64,
}

pub(crate) struct BarrierState {
    parties: u64,
    count: u64,
    generation: u64,
    resets: u64,
    broken: bool,
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
            (Kind::Barrier, Init::Count(parties)) => State::Barrier(BarrierState {
                parties,
                count: 0,
                generation: 0,
                resets: 0,
                broken: false,
            }),
            (kind, _) => {
                return Err(fault(
                    Fault::InvalidInput,
                    format!("not an initial value for a {kind:?}"),
                ));
            }
        })
    }
}

/// Python's index: negative counts from the end.
fn index(i: i64, len: usize) -> Result<usize, Failure> {
    let len_i = len as i64;
    let at = if i < 0 { i + len_i } else { i };
    if (0..len_i).contains(&at) {
        Ok(at as usize)
    } else {
        Err(fault(
            Fault::IndexOutOfRange,
            format!("index {i} is out of range for length {len}"),
        ))
    }
}

/// Python's slice bound: negative counts from the end, then clamped to the sequence.
fn bound(i: i64, len: usize) -> usize {
    let len_i = len as i64;
    let at = if i < 0 { i + len_i } else { i };
    at.clamp(0, len_i) as usize
}

impl Dict {
    fn tick(&mut self) -> u64 {
        self.clock += 1;
        self.clock
    }

    fn insert(&mut self, key: Bytes, value: Bytes) -> Option<Bytes> {
        let version = self.tick();
        if let Some(e) = self.entries.get_mut(&key) {
            e.version = version;
            return Some(std::mem::replace(&mut e.value, value));
        }
        self.order.insert(version, key.clone());
        self.entries.insert(
            key,
            Entry {
                value,
                version,
                position: version,
            },
        );
        None
    }

    fn remove(&mut self, key: &Bytes) -> Option<Bytes> {
        let e = self.entries.remove(key)?;
        self.order.remove(&e.position);
        self.tick();
        Some(e.value)
    }

    fn extend(&mut self, pairs: Vec<(Bytes, Bytes)>) {
        for (k, v) in pairs {
            self.insert(k, v);
        }
    }

    fn in_order(&self) -> impl Iterator<Item = (&Bytes, &Entry)> {
        self.order.values().map(|k| (k, &self.entries[k]))
    }

    fn clear(&mut self) {
        self.entries.clear();
        self.order.clear();
        self.tick();
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

    /// Releases the locks that `session` holds: its process is gone.
    pub(crate) fn release_session(&self, session: u64) {
        let mut g = lock(&self.state);
        if let State::Lock(l) = &mut *g
            && l.holder.is_some_and(|h| h.session == session)
        {
            l.holder = None;
            l.count = 0;
            self.changed.notify_all();
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

    fn seq(&self, mut g: MutexGuard<'_, State>, op: Op, growable: bool) -> Reply {
        let State::Seq { items, version } = &mut *g else {
            return Err(self.wrong(&op));
        };
        let reply = match op {
            Op::Len => Out::Num(items.len() as u64),
            Op::Get(i) => Out::Bytes(items[index(i, items.len())?].clone()),
            Op::Set(i, v) => {
                let at = index(i, items.len())?;
                items[at] = v;
                *version += 1;
                Out::Unit
            }
            Op::Index(v) => match items.iter().position(|x| *x == v) {
                Some(at) => Out::Num(at as u64),
                None => return Err(fault(Fault::ValueNotFound, "the value is not in the list")),
            },
            Op::Count(v) => Out::Num(items.iter().filter(|x| **x == v).count() as u64),
            Op::Contains(v) => Out::Bool(items.contains(&v)),
            Op::ToVec => Out::Many(items.clone()),
            Op::Slice(a, b) => {
                let (a, b) = (bound(a, items.len()), bound(b, items.len()));
                Out::Many(items.get(a..b.max(a)).unwrap_or_default().to_vec())
            }
            Op::Snapshot => Out::Snapshot(*version, items.clone()),
            Op::ReplaceIf(expected, new) => {
                if *version != expected || (!growable && new.len() != items.len()) {
                    Out::Bool(false)
                } else {
                    *items = new;
                    *version += 1;
                    Out::Bool(true)
                }
            }
            op if !growable => return Err(self.wrong(&op)),
            Op::Push(v) => {
                items.push(v);
                *version += 1;
                Out::Unit
            }
            Op::Extend(vs) => {
                items.extend(vs);
                *version += 1;
                Out::Unit
            }
            Op::Pop(None) => {
                let last = items.pop();
                *version += 1;
                Out::Maybe(last)
            }
            Op::Pop(Some(i)) => {
                let at = index(i, items.len())?;
                *version += 1;
                Out::Bytes(items.remove(at))
            }
            Op::Insert(i, v) => {
                items.insert(bound(i, items.len()), v);
                *version += 1;
                Out::Unit
            }
            Op::Remove(v) => match items.iter().position(|x| *x == v) {
                Some(at) => {
                    items.remove(at);
                    *version += 1;
                    Out::Unit
                }
                None => return Err(fault(Fault::ValueNotFound, "the value is not in the list")),
            },
            Op::Clear => {
                items.clear();
                *version += 1;
                Out::Unit
            }
            Op::Reverse => {
                items.reverse();
                *version += 1;
                Out::Unit
            }
            op => return Err(self.wrong(&op)),
        };
        Ok(reply)
    }

    fn dict(&self, mut g: MutexGuard<'_, State>, op: Op) -> Reply {
        let State::Dict(d) = &mut *g else {
            return Err(self.wrong(&op));
        };
        Ok(match op {
            Op::Len => Out::Num(d.entries.len() as u64),
            Op::DictGet(k) => Out::Maybe(d.entries.get(&k).map(|e| e.value.clone())),
            Op::DictInsert(k, v) => Out::Maybe(d.insert(k, v)),
            Op::DictRemove(k) => Out::Maybe(d.remove(&k)),
            Op::DictContains(k) => Out::Bool(d.entries.contains_key(&k)),
            Op::Keys => Out::Many(d.in_order().map(|(k, _)| k.clone()).collect()),
            Op::Values => Out::Many(d.in_order().map(|(_, e)| e.value.clone()).collect()),
            Op::Items => Out::Pairs(
                d.in_order()
                    .map(|(k, e)| (k.clone(), e.value.clone()))
                    .collect(),
            ),
            Op::Clear => {
                d.clear();
                Out::Unit
            }
            Op::DictExtend(pairs) => {
                d.extend(pairs);
                Out::Unit
            }
            Op::SetDefault(k, v) => match d.entries.get(&k) {
                Some(e) => Out::Bytes(e.value.clone()),
                None => {
                    d.insert(k, v.clone());
                    Out::Bytes(v)
                }
            },
            Op::PopItem => match d.order.last_key_value().map(|(_, k)| k.clone()) {
                Some(k) => {
                    let v = d.remove(&k).unwrap_or_default();
                    Out::Pairs(vec![(k, v)])
                }
                None => Out::Pairs(Vec::new()),
            },
            Op::DictGetVersioned(k) => match d.entries.get(&k) {
                Some(e) => Out::Versioned(Some(e.version), Some(e.value.clone())),
                None => Out::Versioned(None, None),
            },
            Op::DictSetIf(k, expected, new) => {
                if d.entries.get(&k).map(|e| e.version) != expected {
                    Out::Bool(false)
                } else {
                    match new {
                        Some(v) => {
                            d.insert(k, v);
                        }
                        None => {
                            d.remove(&k);
                        }
                    }
                    Out::Bool(true)
                }
            }
            op => return Err(self.wrong(&op)),
        })
    }

    fn value(&self, mut g: MutexGuard<'_, State>, op: Op) -> Reply {
        let State::Value { bytes, version } = &mut *g else {
            return Err(self.wrong(&op));
        };
        Ok(match op {
            Op::Load => Out::Bytes(bytes.clone()),
            Op::Store(b) => {
                *bytes = b;
                *version += 1;
                Out::Unit
            }
            Op::LoadVersioned => Out::Versioned(Some(*version), Some(bytes.clone())),
            Op::StoreIf(expected, b) => {
                if *version == expected {
                    *bytes = b;
                    *version += 1;
                    Out::Bool(true)
                } else {
                    Out::Bool(false)
                }
            }
            op => return Err(self.wrong(&op)),
        })
    }

    fn namespace(&self, mut g: MutexGuard<'_, State>, op: Op) -> Reply {
        let State::Namespace(fields) = &mut *g else {
            return Err(self.wrong(&op));
        };
        let missing = |name: &str| {
            fault(
                Fault::KeyNotFound,
                format!("the namespace has no field {name:?}"),
            )
        };
        Ok(match op {
            Op::Field(name) => {
                Out::Bytes(fields.get(&name).cloned().ok_or_else(|| missing(&name))?)
            }
            Op::SetField(name, b) => {
                fields.insert(name, b);
                Out::Unit
            }
            Op::DelField(name) => {
                fields.remove(&name).ok_or_else(|| missing(&name))?;
                Out::Unit
            }
            Op::Fields => Out::Names(fields.keys().cloned().collect()),
            op => return Err(self.wrong(&op)),
        })
    }

    fn queue(&self, g: MutexGuard<'_, State>, op: Op, caller: &Caller<'_>) -> Reply {
        let joinable = self.kind == Kind::JoinableQueue;
        match op {
            Op::Len | Op::Full => {
                let mut g = g;
                let State::Queue { items, max, .. } = &mut *g else {
                    return Err(self.wrong(&op));
                };
                Ok(match op {
                    Op::Len => Out::Num(items.len() as u64),
                    _ => Out::Bool(*max != 0 && items.len() as u64 >= *max),
                })
            }
            Op::Put(item, wait) => {
                let has_room = |s: &mut State| matches!(s, State::Queue { items, max, .. } if *max == 0 || (items.len() as u64) < *max);
                let (mut g, ended) = self.wait_until(g, wait, caller, has_room);
                match ended {
                    Ended::Ready => {}
                    Ended::TimedOut => return Err(fault(Fault::Full, "the queue is full")),
                    Ended::Gone => return Err(gone()),
                }
                if let State::Queue {
                    items, unfinished, ..
                } = &mut *g
                {
                    items.push_back(item);
                    *unfinished += 1;
                }
                self.changed.notify_all();
                Ok(Out::Unit)
            }
            Op::Take(wait) => {
                let has_item =
                    |s: &mut State| matches!(s, State::Queue { items, .. } if !items.is_empty());
                let (mut g, ended) = self.wait_until(g, wait, caller, has_item);
                match ended {
                    Ended::Ready => {}
                    Ended::TimedOut => return Err(fault(Fault::Empty, "the queue is empty")),
                    Ended::Gone => return Err(gone()),
                }
                let State::Queue { items, .. } = &mut *g else {
                    return Err(self.wrong(&Op::Len));
                };
                let item = items.pop_front().unwrap_or_default();
                self.changed.notify_all();
                Ok(Out::Bytes(item))
            }
            Op::TaskDone if joinable => {
                let mut g = g;
                let State::Queue { unfinished, .. } = &mut *g else {
                    return Err(self.wrong(&op));
                };
                if *unfinished == 0 {
                    return Err(fault(
                        Fault::NotOwner,
                        "task_done called more times than items were put",
                    ));
                }
                *unfinished -= 1;
                if *unfinished == 0 {
                    self.changed.notify_all();
                }
                Ok(Out::Unit)
            }
            Op::Join(wait) if joinable => {
                let all_done = |s: &mut State| matches!(s, State::Queue { unfinished: 0, .. });
                match self.wait_until(g, wait, caller, all_done).1 {
                    Ended::Ready => Ok(Out::Unit),
                    Ended::TimedOut => Err(fault(Fault::Timeout, "items are still unfinished")),
                    Ended::Gone => Err(gone()),
                }
            }
            op => Err(self.wrong(&op)),
        }
    }

    fn lock_op(&self, g: MutexGuard<'_, State>, op: Op, caller: &Caller<'_>) -> Reply {
        let recursive = self.kind != Kind::Lock;
        match op {
            Op::Acquire(owner, wait) => {
                let (mut g, ended) = self.wait_until(g, wait, caller, |s| {
                    matches!(s, State::Lock(l) if l.holder.is_none() || (recursive && l.holder == Some(owner)))
                });
                if !matches!(ended, Ended::Ready) {
                    return Ok(Out::Bool(false));
                }
                let State::Lock(l) = &mut *g else {
                    return Err(self.wrong(&Op::Locked));
                };
                l.holder = Some(owner);
                l.count += 1;
                Ok(Out::Bool(true))
            }
            Op::Release(owner) => {
                let mut g = g;
                let State::Lock(l) = &mut *g else {
                    return Err(self.wrong(&op));
                };
                match l.holder {
                    None => return Err(fault(Fault::NotOwner, "release of an unlocked lock")),
                    Some(h) if recursive && h != owner => {
                        return Err(fault(
                            Fault::NotOwner,
                            format!("the lock is held by {}, not by the caller", describe(&h)),
                        ));
                    }
                    Some(_) => {}
                }
                l.count -= 1;
                if l.count == 0 || !recursive {
                    l.holder = None;
                    l.count = 0;
                    self.changed.notify_all();
                }
                Ok(Out::Unit)
            }
            Op::Locked => {
                let mut g = g;
                let State::Lock(l) = &mut *g else {
                    return Err(self.wrong(&op));
                };
                Ok(Out::Bool(l.holder.is_some()))
            }
            Op::CondWait(owner, wait) if self.kind == Kind::Condition => {
                self.condition_wait(g, owner, wait, caller)
            }
            Op::Notify(owner, n) if self.kind == Kind::Condition => {
                let mut g = g;
                let State::Lock(l) = &mut *g else {
                    return Err(self.wrong(&op));
                };
                if l.holder != Some(owner) {
                    return Err(fault(
                        Fault::NotOwner,
                        "notify on a condition the caller does not hold",
                    ));
                }
                let n = (n as usize).min(l.waiters.len());
                let woken: Vec<u64> = l.waiters.drain(..n).collect();
                l.notified.extend(woken);
                self.changed.notify_all();
                Ok(Out::Unit)
            }
            op => Err(self.wrong(&op)),
        }
    }

    /// Releases the condition's lock, waits to be notified, and takes the lock back.
    fn condition_wait(
        &self,
        mut g: MutexGuard<'_, State>,
        owner: Owner,
        wait: Wait,
        caller: &Caller<'_>,
    ) -> Reply {
        let State::Lock(l) = &mut *g else {
            return Err(fault(Fault::WrongType, "not a condition"));
        };
        if l.holder != Some(owner) {
            return Err(fault(
                Fault::NotOwner,
                "wait on a condition the caller does not hold",
            ));
        }
        let ticket = l.next_ticket;
        l.next_ticket += 1;
        l.waiters.push_back(ticket);
        let saved = std::mem::take(&mut l.count);
        l.holder = None;
        self.changed.notify_all();
        let (mut g, ended) = self.wait_until(
            g,
            wait,
            caller,
            |s| matches!(s, State::Lock(l) if l.notified.contains(&ticket)),
        );
        let State::Lock(l) = &mut *g else {
            return Err(fault(Fault::WrongType, "not a condition"));
        };
        l.waiters.retain(|t| *t != ticket);
        let notified = l.notified.contains(&ticket);
        l.notified.retain(|t| *t != ticket);
        if matches!(ended, Ended::Gone) {
            if notified {
                self.pass_on(l);
            }
            return Err(gone());
        }
        // Take the lock back, however long it takes (Python does too).
        let (mut g, ended) = self.wait_until(
            g,
            Wait::Forever,
            caller,
            |s| matches!(s, State::Lock(l) if l.holder.is_none()),
        );
        if matches!(ended, Ended::Gone) {
            if let (true, State::Lock(l)) = (notified, &mut *g) {
                self.pass_on(l);
            }
            return Err(gone());
        }
        if let State::Lock(l) = &mut *g {
            l.holder = Some(owner);
            l.count = saved;
        }
        Ok(Out::Bool(notified))
    }

    /// Hands a notification that reached a waiter who went away to the next one in line, so
    /// that no live waiter sleeps through it.
    fn pass_on(&self, l: &mut LockState) {
        if let Some(next) = l.waiters.pop_front() {
            l.notified.push(next);
            self.changed.notify_all();
        }
    }

    fn semaphore(&self, g: MutexGuard<'_, State>, op: Op, caller: &Caller<'_>) -> Reply {
        match op {
            Op::Acquire(_, wait) => {
                let (mut g, ended) = self.wait_until(
                    g,
                    wait,
                    caller,
                    |s| matches!(s, State::Semaphore { value, .. } if *value > 0),
                );
                if !matches!(ended, Ended::Ready) {
                    return Ok(Out::Bool(false));
                }
                if let State::Semaphore { value, .. } = &mut *g {
                    *value -= 1;
                }
                Ok(Out::Bool(true))
            }
            Op::Release(_) => {
                let mut g = g;
                let State::Semaphore { value, bound } = &mut *g else {
                    return Err(self.wrong(&op));
                };
                if bound.is_some_and(|b| *value >= b) || *value == u64::MAX {
                    return Err(fault(
                        Fault::NotOwner,
                        "a semaphore released above its bound",
                    ));
                }
                *value += 1;
                self.changed.notify_all();
                Ok(Out::Unit)
            }
            Op::SemValue => {
                let mut g = g;
                let State::Semaphore { value, .. } = &mut *g else {
                    return Err(self.wrong(&op));
                };
                Ok(Out::Num(*value))
            }
            op => Err(self.wrong(&op)),
        }
    }

    fn event(&self, mut g: MutexGuard<'_, State>, op: Op, caller: &Caller<'_>) -> Reply {
        match op {
            Op::EventWait(wait) => {
                let State::Event { sets: before, .. } = *g else {
                    return Err(self.wrong(&op));
                };
                let (g, _) = self.wait_until(
                    g,
                    wait,
                    caller,
                    |s| matches!(s, State::Event { set, sets } if *set || *sets != before),
                );
                Ok(Out::Bool(
                    matches!(*g, State::Event { set, sets } if set || sets != before),
                ))
            }
            op => {
                let State::Event { set: flag, sets } = &mut *g else {
                    return Err(self.wrong(&op));
                };
                match op {
                    Op::EventSet => {
                        *flag = true;
                        *sets += 1;
                        self.changed.notify_all();
                        Ok(Out::Unit)
                    }
                    Op::EventClear => {
                        *flag = false;
                        Ok(Out::Unit)
                    }
                    Op::IsSet => Ok(Out::Bool(*flag)),
                    op => Err(self.wrong(&op)),
                }
            }
        }
    }

    fn barrier(&self, mut g: MutexGuard<'_, State>, op: Op, caller: &Caller<'_>) -> Reply {
        let broken = || fault(Fault::BrokenBarrier, "the barrier is broken");
        let State::Barrier(b) = &mut *g else {
            return Err(self.wrong(&op));
        };
        match op {
            Op::BarrierWait(_, wait) => {
                if b.broken {
                    return Err(broken());
                }
                let arrived = b.count;
                b.count += 1;
                if b.count == b.parties {
                    b.count = 0;
                    b.generation += 1;
                    self.changed.notify_all();
                    return Ok(Out::Num(arrived));
                }
                let (generation, resets) = (b.generation, b.resets);
                let (mut g, ended) = self.wait_until(g, wait, caller, |s| {
                    matches!(s, State::Barrier(b) if b.generation != generation || b.broken || b.resets != resets)
                });
                let State::Barrier(b) = &mut *g else {
                    return Err(broken());
                };
                if b.generation != generation {
                    return Ok(Out::Num(arrived));
                }
                if b.resets == resets && !matches!(ended, Ended::Ready) {
                    // A party that times out or goes away breaks the barrier for all, as in
                    // Python: the others must not wait for it for ever.
                    b.broken = true;
                    b.count = b.count.saturating_sub(1);
                    self.changed.notify_all();
                }
                Err(broken())
            }
            Op::Abort => {
                b.broken = true;
                self.changed.notify_all();
                Ok(Out::Unit)
            }
            Op::Reset => {
                b.count = 0;
                b.broken = false;
                b.resets += 1;
                self.changed.notify_all();
                Ok(Out::Unit)
            }
            Op::Parties => Ok(Out::Num(b.parties)),
            Op::Waiting => Ok(Out::Num(if b.broken { 0 } else { b.count })),
            Op::Broken => Ok(Out::Bool(b.broken)),
            op => Err(self.wrong(&op)),
        }
    }

    fn custom(&self, mut g: MutexGuard<'_, State>, op: Op) -> Reply {
        let State::Custom(object) = &mut *g else {
            return Err(self.wrong(&op));
        };
        match op {
            Op::Custom(request) => {
                let outcome = mproc_process::catch_panic(std::panic::AssertUnwindSafe(|| {
                    object.call(&request)
                }));
                match outcome {
                    Ok(Ok(reply)) => Ok(Out::Bytes(Bytes::from(reply))),
                    Ok(Err(message)) => Err(fault(Fault::InvalidInput, message)),
                    Err(panic) => Err(fault(
                        Fault::Handler,
                        format!("the shared object's handler panicked: {panic}"),
                    )),
                }
            }
            op => Err(self.wrong(&op)),
        }
    }
}

fn gone() -> Failure {
    fault(Fault::Busy, "the caller went away")
}
