//! `Set<T>`: Python's `manager.set()` (3.14), typed.

use std::borrow::Borrow;
use std::marker::PhantomData;

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::error::{Error, Result};
use crate::handle::Handle;
use crate::protocol::{Bytes, Kind, Op, Out};
use crate::proxy::common::proxy_common;
use crate::values::{OutExt, dec, dec_all, enc, enc_all};

/// A set held by the manager: Python's `manager.set()`.
///
/// Items keep their insertion order; they are told apart by their serialized bytes, as a
/// [`Dict`](crate::Dict)'s keys are. Every method is one atomic operation in the server, so
/// [`insert`](Self::insert) tells exactly one of many processes that it added an item first.
///
/// ```
/// # mproc_process::init();
/// let manager = mproc_manager::Manager::start()?;
/// let seen = manager.set::<String>()?;
/// assert!(seen.insert("a".to_string())?);
/// assert!(!seen.insert("a".to_string())?); // already there
/// assert!(seen.contains("a")?);
/// assert_eq!(seen.len()?, 1);
/// # Ok::<(), mproc_manager::Error>(())
/// ```
pub struct Set<T> {
    handle: Handle,
    _types: PhantomData<fn() -> T>,
}

proxy_common!(Set<T>, Kind::Set);

/// The value stored beside each item of a set: nothing.
fn unit() -> Bytes {
    Bytes::new()
}

impl<T: Serialize + DeserializeOwned> Set<T> {
    /// Adds `item`; returns whether it was new (Python's `add`, which does not tell).
    pub fn insert(&self, item: impl Borrow<T>) -> Result<bool> {
        let op = Op::DictInsert(enc(item.borrow())?, unit());
        // The answer is the value replaced: none when the item is new.
        Ok(self.handle.op(op).maybe()?.is_none())
    }

    /// Removes `item`; returns whether it was there (Python's `discard`; `remove` raises).
    pub fn remove<Q: Serialize + ?Sized>(&self, item: &Q) -> Result<bool>
    where
        T: Borrow<Q>,
    {
        Ok(self
            .handle
            .op(Op::DictRemove(enc(item)?))
            .maybe()?
            .is_some())
    }

    /// Whether `item` is there (Python's `x in s`).
    pub fn contains<Q: Serialize + ?Sized>(&self, item: &Q) -> Result<bool>
    where
        T: Borrow<Q>,
    {
        self.handle.op(Op::DictContains(enc(item)?)).boolean()
    }

    /// Adds every item, in one atomic operation (Python's `update`).
    pub fn extend(&self, items: impl IntoIterator<Item: Borrow<T>>) -> Result<()> {
        let pairs = enc_all::<T>(items)?
            .into_iter()
            .map(|k| (k, unit()))
            .collect();
        self.handle.op(Op::DictExtend(pairs)).unit()
    }

    /// Removes and returns the last added item; `None` when empty.
    pub fn pop(&self) -> Result<Option<T>> {
        match self.handle.op(Op::PopItem)? {
            Out::Pairs(mut pairs) => pairs.pop().map(|(k, _)| dec(&k)).transpose(),
            _ => Err(Error::unexpected()),
        }
    }

    /// The number of items.
    pub fn len(&self) -> Result<usize> {
        Ok(self.handle.op(Op::Len).num()? as usize)
    }

    /// Whether the set is empty.
    pub fn is_empty(&self) -> Result<bool> {
        Ok(self.len()? == 0)
    }

    /// Removes every item.
    pub fn clear(&self) -> Result<()> {
        self.handle.op(Op::Clear).unit()
    }

    /// A copy of the items, in insertion order.
    pub fn to_vec(&self) -> Result<Vec<T>> {
        dec_all(self.handle.op(Op::Keys).many()?)
    }
}
