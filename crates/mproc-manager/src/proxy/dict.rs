//! `Dict<K, V>`: Python's `DictProxy`, typed.

use std::borrow::Borrow;
use std::marker::PhantomData;

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::error::{Error, ErrorKind, Result};
use crate::handle::Handle;
use crate::protocol::{Kind, Op, Out};
use crate::proxy::common::proxy_common;
use crate::values::{OutExt, dec, dec_all, enc, enc_pairs};

/// A dict held by the manager: Python's `manager.dict()`.
///
/// Keys keep their insertion order, as in Python. Every method is one atomic operation in
/// the server; [`update`](Self::update) makes a read-modify-write of one key atomic too, so
/// counters bumped by many processes lose nothing. Keys are told apart by their serialized
/// bytes, which agrees with `Eq` for every type whose serialization is canonical (integers,
/// strings, and tuples, structs and enums of them).
///
/// ```
/// # mproc_process::init();
/// let manager = mproc_manager::Manager::start()?;
/// let hits = manager.dict::<String, u64>()?;
/// hits.insert("home".to_string(), 1)?;
/// hits.update("home", |n| n.unwrap_or(0) + 1)?;
/// hits.update("about", |n| n.unwrap_or(0) + 1)?;
/// assert_eq!(hits.get("home")?, Some(2));
/// assert_eq!(hits.keys()?, ["home", "about"]);
/// # Ok::<(), mproc_manager::Error>(())
/// ```
pub struct Dict<K, V> {
    handle: Handle,
    _types: PhantomData<fn() -> (K, V)>,
}

proxy_common!(Dict<K, V>, Kind::Dict);

impl<K, V> Dict<K, V>
where
    K: Serialize + DeserializeOwned,
    V: Serialize + DeserializeOwned,
{
    /// The value of `key`, if it is there (Python's `get`).
    pub fn get<Q: Serialize + ?Sized>(&self, key: &Q) -> Result<Option<V>>
    where
        K: Borrow<Q>,
    {
        self.handle
            .op(Op::DictGet(enc(key)?))
            .maybe()?
            .map(|b| dec(&b))
            .transpose()
    }

    /// Sets `key` to `value` (Python's `d[k] = v`); returns the value it replaced.
    pub fn insert(&self, key: impl Borrow<K>, value: impl Borrow<V>) -> Result<Option<V>> {
        self.handle
            .op(Op::DictInsert(enc(key.borrow())?, enc(value.borrow())?))
            .maybe()?
            .map(|b| dec(&b))
            .transpose()
    }

    /// Removes `key`; returns its value if it was there.
    pub fn remove<Q: Serialize + ?Sized>(&self, key: &Q) -> Result<Option<V>>
    where
        K: Borrow<Q>,
    {
        self.handle
            .op(Op::DictRemove(enc(key)?))
            .maybe()?
            .map(|b| dec(&b))
            .transpose()
    }

    /// Removes `key` and returns its value (Python's `pop`).
    ///
    /// # Errors
    ///
    /// [`ErrorKind::KeyNotFound`] when it is not there.
    pub fn pop<Q: Serialize + ?Sized>(&self, key: &Q) -> Result<V>
    where
        K: Borrow<Q>,
    {
        self.remove(key)?
            .ok_or_else(|| Error::new(ErrorKind::KeyNotFound, "the key is not in the dict"))
    }

    /// Removes and returns the last inserted pair (Python's `popitem`); `None` when empty.
    pub fn pop_item(&self) -> Result<Option<(K, V)>> {
        match self.handle.op(Op::PopItem)? {
            Out::Pairs(mut pairs) => match pairs.pop() {
                Some((k, v)) => Ok(Some((dec(&k)?, dec(&v)?))),
                None => Ok(None),
            },
            _ => Err(Error::unexpected()),
        }
    }

    /// Whether `key` is there (Python's `k in d`).
    pub fn contains_key<Q: Serialize + ?Sized>(&self, key: &Q) -> Result<bool>
    where
        K: Borrow<Q>,
    {
        self.handle.op(Op::DictContains(enc(key)?)).boolean()
    }

    /// The number of keys.
    pub fn len(&self) -> Result<usize> {
        Ok(self.handle.op(Op::Len).num()? as usize)
    }

    /// Whether the dict is empty.
    pub fn is_empty(&self) -> Result<bool> {
        Ok(self.len()? == 0)
    }

    /// The keys, in insertion order.
    pub fn keys(&self) -> Result<Vec<K>> {
        dec_all(self.handle.op(Op::Keys).many()?)
    }

    /// The values, in insertion order of their keys.
    pub fn values(&self) -> Result<Vec<V>> {
        dec_all(self.handle.op(Op::Values).many()?)
    }

    /// The pairs, in insertion order (Python's `items`, or `dict(d)`).
    pub fn items(&self) -> Result<Vec<(K, V)>> {
        match self.handle.op(Op::Items)? {
            Out::Pairs(pairs) => pairs.iter().map(|(k, v)| Ok((dec(k)?, dec(v)?))).collect(),
            _ => Err(Error::unexpected()),
        }
    }

    /// Removes every key.
    pub fn clear(&self) -> Result<()> {
        self.handle.op(Op::Clear).unit()
    }

    /// Sets every pair (a `Vec<(K, V)>`, a slice of pairs, a `HashMap<K, V>`...), in one
    /// atomic operation (Python's `d.update(other)`).
    pub fn extend(&self, pairs: impl IntoIterator<Item: Borrow<(K, V)>>) -> Result<()> {
        self.handle
            .op(Op::DictExtend(enc_pairs::<K, V>(pairs)?))
            .unit()
    }

    /// The value of `key`, set to `default` first if it is not there (Python's
    /// `setdefault`).
    pub fn setdefault(&self, key: impl Borrow<K>, default: impl Borrow<V>) -> Result<V> {
        let (key, default) = (key.borrow(), default.borrow());
        dec(&self
            .handle
            .op(Op::SetDefault(enc(key)?, enc(default)?))
            .bytes()?)
    }

    /// Sets `key` to `f` of its value (`None` when absent), atomically: `f` runs here and
    /// runs again when another caller wrote the key meanwhile. Returns the value kept.
    pub fn update<Q: Serialize + ?Sized>(
        &self,
        key: &Q,
        mut f: impl FnMut(Option<V>) -> V,
    ) -> Result<V>
    where
        K: Borrow<Q>,
    {
        let k = enc(key)?;
        loop {
            let (version, old) = match self.handle.op(Op::DictGetVersioned(k.clone()))? {
                Out::Versioned(version, old) => (version, old),
                _ => return Err(Error::unexpected()),
            };
            let old = old.map(|b| dec(&b)).transpose()?;
            let new = f(old);
            let write = Op::DictSetIf(k.clone(), version, Some(enc(&new)?));
            if self.handle.op(write).boolean()? {
                return Ok(new);
            }
        }
    }
}
