//! How a `Manager` hands out proxies: a new object of each type, or one published by name.

use std::borrow::Borrow;
use std::sync::Arc;

use serde::Serialize;
use serde::de::DeserializeOwned;

use super::Manager;
use crate::Proxy;
use crate::error::{Error, ErrorKind, Result};
use crate::handle::Handle;
use crate::protocol::{Init, Kind, Out, Request};
use crate::proxy::common::Sealed;
use crate::proxy::{
    Array, Barrier, Condition, Dict, Event, JoinableQueue, List, Lock, Namespace, Queue, RLock,
    Semaphore, Set, Value,
};
use crate::registry::{Shared, SharedObject};
use crate::values::{enc, enc_all, enc_pairs};

impl Manager {
    fn create<P: Sealed>(&self, kind: Kind, init: Init) -> Result<P> {
        let request = Request::Create {
            kind,
            type_name: P::type_name(),
            init,
        };
        match self.request(request)? {
            Out::Id(id) => Ok(P::from_handle(Handle::new(Arc::clone(&self.endpoint), id))),
            _ => Err(Error::unexpected()),
        }
    }

    /// A new, empty list (Python's `manager.list()`).
    pub fn list<T: Serialize + DeserializeOwned>(&self) -> Result<List<T>> {
        self.create(Kind::List, Init::Empty)
    }

    /// A new list holding `items`, values or references (Python's `manager.list(sequence)`).
    pub fn list_from<T: Serialize + DeserializeOwned>(
        &self,
        items: impl IntoIterator<Item: Borrow<T>>,
    ) -> Result<List<T>> {
        self.create(Kind::List, Init::Items(enc_all::<T>(items)?))
    }

    /// A new, empty dict (Python's `manager.dict()`).
    pub fn dict<K, V>(&self) -> Result<Dict<K, V>>
    where
        K: Serialize + DeserializeOwned,
        V: Serialize + DeserializeOwned,
    {
        self.create(Kind::Dict, Init::Empty)
    }

    /// A new dict holding `pairs`: a `Vec<(K, V)>`, a slice of pairs, a `HashMap<K, V>`...
    /// (Python's `manager.dict(mapping)`).
    pub fn dict_from<K, V>(
        &self,
        pairs: impl IntoIterator<Item: Borrow<(K, V)>>,
    ) -> Result<Dict<K, V>>
    where
        K: Serialize + DeserializeOwned,
        V: Serialize + DeserializeOwned,
    {
        self.create(Kind::Dict, Init::Pairs(enc_pairs::<K, V>(pairs)?))
    }

    /// A new, empty set (Python's `manager.set()`).
    pub fn set<T: Serialize + DeserializeOwned>(&self) -> Result<Set<T>> {
        self.create(Kind::Set, Init::Empty)
    }

    /// A new value (Python's `manager.Value(typecode, value)`).
    pub fn value<T: Serialize + DeserializeOwned>(&self, value: T) -> Result<Value<T>> {
        self.create(Kind::Value, Init::One(enc(&value)?))
    }

    /// A new fixed-length array holding `items` (Python's `manager.Array(typecode, seq)`).
    pub fn array<T: Serialize + DeserializeOwned>(&self, items: Vec<T>) -> Result<Array<T>> {
        self.create(Kind::Array, Init::Items(enc_all::<T>(&items)?))
    }

    /// A new namespace with no fields (Python's `manager.Namespace()`).
    pub fn namespace(&self) -> Result<Namespace> {
        self.create(Kind::Namespace, Init::Empty)
    }

    /// A new unbounded queue (Python's `manager.Queue()`).
    pub fn queue<T: Serialize + DeserializeOwned>(&self) -> Result<Queue<T>> {
        self.create(Kind::Queue, Init::Count(0))
    }

    /// A new queue that holds at most `maxsize` items (Python's `manager.Queue(maxsize)`).
    ///
    /// # Errors
    ///
    /// [`ErrorKind::InvalidInput`] for 0 (Python's 0 means unbounded: use [`queue`](Self::queue)).
    pub fn bounded_queue<T: Serialize + DeserializeOwned>(
        &self,
        maxsize: usize,
    ) -> Result<Queue<T>> {
        self.create(
            Kind::Queue,
            Init::Count(positive(maxsize, "a bounded queue's size")?),
        )
    }

    /// A new unbounded joinable queue (Python's `manager.JoinableQueue()`).
    pub fn joinable_queue<T: Serialize + DeserializeOwned>(&self) -> Result<JoinableQueue<T>> {
        self.create(Kind::JoinableQueue, Init::Count(0))
    }

    /// A new joinable queue that holds at most `maxsize` items.
    pub fn bounded_joinable_queue<T: Serialize + DeserializeOwned>(
        &self,
        maxsize: usize,
    ) -> Result<JoinableQueue<T>> {
        let max = positive(maxsize, "a bounded queue's size")?;
        self.create(Kind::JoinableQueue, Init::Count(max))
    }

    /// A new lock (Python's `manager.Lock()`).
    pub fn lock(&self) -> Result<Lock> {
        self.create(Kind::Lock, Init::Empty)
    }

    /// A new reentrant lock (Python's `manager.RLock()`).
    pub fn rlock(&self) -> Result<RLock> {
        self.create(Kind::RLock, Init::Empty)
    }

    /// A new semaphore with `value` units (Python's `manager.Semaphore(value)`).
    pub fn semaphore(&self, value: u64) -> Result<Semaphore> {
        self.create(Kind::Semaphore, Init::Count(value))
    }

    /// A new semaphore that refuses a release above `value` (Python's
    /// `manager.BoundedSemaphore(value)`).
    pub fn bounded_semaphore(&self, value: u64) -> Result<Semaphore> {
        self.create(Kind::BoundedSemaphore, Init::Count(value))
    }

    /// A new condition with its own `RLock` (Python's `manager.Condition()`).
    pub fn condition(&self) -> Result<Condition> {
        self.create(Kind::Condition, Init::Empty)
    }

    /// A new event, not set (Python's `manager.Event()`).
    pub fn event(&self) -> Result<Event> {
        self.create(Kind::Event, Init::Empty)
    }

    /// A new barrier for `parties` parties (Python's `manager.Barrier(parties)`).
    ///
    /// # Errors
    ///
    /// [`ErrorKind::InvalidInput`] for 0 parties.
    pub fn barrier(&self, parties: usize) -> Result<Barrier> {
        self.create(
            Kind::Barrier,
            Init::Count(positive(parties, "a barrier's parties")?),
        )
    }

    /// A new object of a registered custom type, built in the server from `init`.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::NotRegistered`] when the server was not started with `T` (see
    /// [`Builder::register`](crate::Builder::register)).
    pub fn shared<T: SharedObject>(&self, init: T::Init) -> Result<Shared<T>> {
        self.create(Kind::Custom(T::NAME.to_string()), Init::Custom(enc(&init)?))
    }

    /// Makes `proxy`'s object findable by `name` from any client (a name used before now
    /// names this object).
    pub fn publish<P: Proxy>(&self, name: &str, proxy: &P) -> Result<()> {
        let id = proxy.handle().id();
        if !Arc::ptr_eq(proxy.handle().endpoint(), &self.endpoint) {
            return Err(Error::new(
                ErrorKind::InvalidInput,
                "the proxy belongs to another manager",
            ));
        }
        match self.request(Request::Publish {
            name: name.to_string(),
            id,
        })? {
            Out::Unit => Ok(()),
            _ => Err(Error::unexpected()),
        }
    }

    /// The object published under `name`, as a `P` (Python's registered `get_*` callables).
    ///
    /// # Errors
    ///
    /// [`ErrorKind::NoSuchObject`] when nothing is published under `name`,
    /// [`ErrorKind::WrongType`] when it is not a `P`.
    pub fn lookup<P: Proxy>(&self, name: &str) -> Result<P> {
        let request = Request::Lookup {
            name: name.to_string(),
            kind: P::kind(),
            type_name: P::type_name(),
        };
        match self.request(request)? {
            Out::Id(id) => Ok(P::from_handle(Handle::new(Arc::clone(&self.endpoint), id))),
            _ => Err(Error::unexpected()),
        }
    }

    /// Forgets the name `name`; returns whether it named an object.
    pub fn unpublish(&self, name: &str) -> Result<bool> {
        match self.request(Request::Unpublish {
            name: name.to_string(),
        })? {
            Out::Bool(b) => Ok(b),
            _ => Err(Error::unexpected()),
        }
    }
}

fn positive(n: usize, what: &str) -> Result<u64> {
    if n == 0 {
        return Err(Error::new(
            ErrorKind::InvalidInput,
            format!("{what} must be at least 1"),
        ));
    }
    Ok(n as u64)
}
