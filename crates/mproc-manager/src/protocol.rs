//! The manager's wire protocol: the requests a proxy sends, the replies the server gives.
//!
//! Everything here is data. Values travel as the postcard bytes of the proxy's type, which
//! the server stores and compares without decoding; a request names an operation, never
//! code, so a peer that knows the key can change shared objects but cannot run anything.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_bytes::ByteBuf;

/// A value's encoded bytes, as the server stores them.
pub(crate) type Bytes = ByteBuf;

/// Who holds a lock: a client process (its session) and one of its threads.
#[derive(Serialize, Deserialize, Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub(crate) struct Owner {
    pub(crate) session: u64,
    pub(crate) thread: u64,
}

/// How long a blocking operation may wait in the server.
#[derive(Serialize, Deserialize, Clone, Copy, Debug)]
pub(crate) enum Wait {
    /// Not at all: Python's `block=False`.
    No,
    /// Up to this long.
    For(Duration),
    /// As long as it takes (the server still gives up when the caller goes away).
    Forever,
}

/// What kind of object a proxy stands for (public only inside the crate's private modules).
#[derive(Serialize, Deserialize, Clone, PartialEq, Eq, Debug)]
pub enum Kind {
    List,
    Dict,
    Set,
    Value,
    Array,
    Namespace,
    Queue,
    JoinableQueue,
    Lock,
    RLock,
    Semaphore,
    BoundedSemaphore,
    Condition,
    Event,
    Barrier,
    /// A registered user type, by its name.
    Custom(String),
}

/// The initial contents of a new object.
#[derive(Serialize, Deserialize, Debug)]
pub(crate) enum Init {
    Empty,
    Items(Vec<Bytes>),
    Pairs(Vec<(Bytes, Bytes)>),
    One(Bytes),
    Count(u64),
    Custom(Bytes),
}

/// A request, one per round trip.
#[derive(Serialize, Deserialize, Debug)]
pub(crate) enum Request {
    /// The first message on a connection: the client process's session.
    Hello {
        session: u64,
    },
    Create {
        kind: Kind,
        type_name: String,
        init: Init,
    },
    Publish {
        name: String,
        id: u64,
    },
    Lookup {
        name: String,
        kind: Kind,
        type_name: String,
    },
    Unpublish {
        name: String,
    },
    Op {
        id: u64,
        op: Op,
    },
    Stats,
    /// Stops the server; only the owner knows the token.
    Shutdown {
        token: u64,
    },
}

/// An operation on one object. Indices are Python's: negative counts from the end.
#[derive(Serialize, Deserialize, Debug)]
pub(crate) enum Op {
    // Sequences (lists; arrays have the ones that keep the length).
    Len,
    Get(i64),
    Set(i64, Bytes),
    Push(Bytes),
    Extend(Vec<Bytes>),
    Pop(Option<i64>),
    Insert(i64, Bytes),
    Remove(Bytes),
    Index(Bytes),
    Count(Bytes),
    Contains(Bytes),
    Clear,
    ToVec,
    Slice(i64, i64),
    Reverse,
    /// The items and the object's version, for a change made by the caller.
    Snapshot,
    /// Replaces every item if the version is still the one given.
    ReplaceIf(u64, Vec<Bytes>),
    // Dicts.
    DictGet(Bytes),
    DictInsert(Bytes, Bytes),
    DictRemove(Bytes),
    DictContains(Bytes),
    Keys,
    Values,
    Items,
    DictExtend(Vec<(Bytes, Bytes)>),
    SetDefault(Bytes, Bytes),
    PopItem,
    /// A key's value and the version of its last write.
    DictGetVersioned(Bytes),
    /// Writes (or removes, with `None`) a key if its version is still the one given (`None`:
    /// still absent).
    DictSetIf(Bytes, Option<u64>, Option<Bytes>),
    // Values.
    Load,
    Store(Bytes),
    LoadVersioned,
    StoreIf(u64, Bytes),
    // Namespaces.
    Field(String),
    SetField(String, Bytes),
    DelField(String),
    Fields,
    // Queues.
    Put(Bytes, Wait),
    Take(Wait),
    Full,
    TaskDone,
    Join(Wait),
    // Locks, semaphores and conditions.
    Acquire(Owner, Wait),
    Release(Owner),
    Locked,
    SemValue,
    CondWait(Owner, Wait),
    Notify(Owner, u64),
    // Events.
    EventSet,
    EventClear,
    IsSet,
    EventWait(Wait),
    // Barriers.
    BarrierWait(Owner, Wait),
    Abort,
    Reset,
    Parties,
    Waiting,
    Broken,
    // Registered types.
    Custom(Bytes),
}

/// What an operation returns.
#[derive(Serialize, Deserialize, Debug)]
pub(crate) enum Out {
    Unit,
    Bool(bool),
    Num(u64),
    Id(u64),
    Bytes(Bytes),
    Maybe(Option<Bytes>),
    Many(Vec<Bytes>),
    Pairs(Vec<(Bytes, Bytes)>),
    Versioned(Option<u64>, Option<Bytes>),
    Snapshot(u64, Vec<Bytes>),
    Names(Vec<String>),
    Stats { objects: u64, connections: u64 },
}

/// Why the server refused an operation.
#[derive(Serialize, Deserialize, Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum Fault {
    NoSuchObject,
    WrongType,
    IndexOutOfRange,
    KeyNotFound,
    ValueNotFound,
    Empty,
    Full,
    Timeout,
    NotOwner,
    BrokenBarrier,
    NotRegistered,
    InvalidInput,
    Busy,
    Handler,
    TooLarge,
}

/// The server's answer to one request.
pub(crate) type Reply = Result<Out, (Fault, String)>;
