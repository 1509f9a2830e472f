//! `List<T>`: Python's `ListProxy`, typed.

use std::borrow::Borrow;
use std::marker::PhantomData;

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::error::{Error, Result};
use crate::handle::Handle;
use crate::protocol::{Kind, Op, Out};
use crate::proxy::common::proxy_common;
use crate::values::{OutExt, dec, dec_all, enc, enc_all};

/// The calls a list and an array share: reading, replacing, and their length.
macro_rules! sequence_calls {
    () => {
        /// The item at `index` (Python's `seq[i]`; negative counts from the end).
        ///
        /// # Errors
        ///
        /// [`ErrorKind::IndexOutOfRange`](crate::ErrorKind::IndexOutOfRange).
        pub fn get(&self, index: isize) -> Result<T> {
            dec(&self.handle.op(Op::Get(index as i64)).bytes()?)
        }

        /// Replaces the item at `index` (Python's `seq[i] = x`).
        pub fn set(&self, index: isize, item: impl Borrow<T>) -> Result<()> {
            self.handle
                .op(Op::Set(index as i64, enc(item.borrow())?))
                .unit()
        }

        /// The number of items.
        pub fn len(&self) -> Result<usize> {
            Ok(self.handle.op(Op::Len).num()? as usize)
        }

        /// Whether there are no items.
        pub fn is_empty(&self) -> Result<bool> {
            Ok(self.len()? == 0)
        }

        /// A copy of every item (Python's `seq[:]`).
        pub fn to_vec(&self) -> Result<Vec<T>> {
            dec_all(self.handle.op(Op::ToVec).many()?)
        }

        /// A copy of the items in `range` (Python's `seq[a:b]`, clamped to the sequence).
        pub fn slice(&self, range: std::ops::Range<usize>) -> Result<Vec<T>> {
            let end = |i: usize| i64::try_from(i).unwrap_or(i64::MAX);
            let op = Op::Slice(end(range.start), end(range.end));
            dec_all(self.handle.op(op).many()?)
        }
    };
}
pub(crate) use sequence_calls;

/// A list held by the manager: Python's `manager.list()`.
///
/// Every method is one atomic operation in the server, so a list used as a stack or a
/// queue by many processes loses and duplicates nothing. Indices are Python's: negative ones
/// count from the end. Items are compared (by [`remove`](Self::remove),
/// [`index`](Self::index), [`count`](Self::count), [`contains`](Self::contains)) by their
/// serialized bytes, which agrees with `==` for every type whose serialization is canonical
/// (integers, strings, and tuples, structs, enums and vectors of them); floats differ only in
/// `0.0 == -0.0` and `NaN`.
///
/// ```
/// # mproc_process::init();
/// let manager = mproc_manager::Manager::start()?;
/// let stack = manager.list::<String>()?;
/// stack.push("a".to_string())?;
/// stack.extend(["b".to_string(), "c".to_string()])?;
/// assert!(stack.contains("b")?);
/// assert_eq!(stack.pop()?, Some("c".to_string()));
/// assert_eq!(stack.get(-1)?, "b");
/// assert_eq!(stack.to_vec()?, ["a", "b"]);
/// # Ok::<(), mproc_manager::Error>(())
/// ```
pub struct List<T> {
    handle: Handle,
    _types: PhantomData<fn() -> T>,
}

proxy_common!(List<T>, Kind::List);

impl<T: Serialize + DeserializeOwned> List<T> {
    /// Appends an item (Python's `append`).
    pub fn push(&self, item: impl Borrow<T>) -> Result<()> {
        self.handle.op(Op::Push(enc(item.borrow())?)).unit()
    }

    /// Python's name for [`push`](Self::push).
    pub fn append(&self, item: impl Borrow<T>) -> Result<()> {
        self.push(item)
    }

    /// Appends every item (values or references), in one atomic operation.
    pub fn extend(&self, items: impl IntoIterator<Item: Borrow<T>>) -> Result<()> {
        self.handle.op(Op::Extend(enc_all::<T>(items)?)).unit()
    }

    /// Removes and returns the last item; `None` when the list is empty.
    pub fn pop(&self) -> Result<Option<T>> {
        self.handle
            .op(Op::Pop(None))
            .maybe()?
            .map(|b| dec(&b))
            .transpose()
    }

    /// Removes and returns the item at `index` (Python's `pop(i)`).
    ///
    /// # Errors
    ///
    /// [`ErrorKind::IndexOutOfRange`](crate::ErrorKind::IndexOutOfRange).
    pub fn pop_at(&self, index: isize) -> Result<T> {
        dec(&self.handle.op(Op::Pop(Some(index as i64))).bytes()?)
    }

    /// Inserts `item` before `index`; an index past either end inserts at that end, as in
    /// Python.
    pub fn insert(&self, index: isize, item: impl Borrow<T>) -> Result<()> {
        self.handle
            .op(Op::Insert(index as i64, enc(item.borrow())?))
            .unit()
    }

    sequence_calls!();

    /// Removes the first item equal to `item`.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::ValueNotFound`](crate::ErrorKind::ValueNotFound) when there is none.
    pub fn remove<Q: Serialize + ?Sized>(&self, item: &Q) -> Result<()>
    where
        T: Borrow<Q>,
    {
        self.handle.op(Op::Remove(enc(item)?)).unit()
    }

    /// The position of the first item equal to `item`.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::ValueNotFound`](crate::ErrorKind::ValueNotFound) when there is none.
    pub fn index<Q: Serialize + ?Sized>(&self, item: &Q) -> Result<usize>
    where
        T: Borrow<Q>,
    {
        Ok(self.handle.op(Op::Index(enc(item)?)).num()? as usize)
    }

    /// How many items equal `item`.
    pub fn count<Q: Serialize + ?Sized>(&self, item: &Q) -> Result<usize>
    where
        T: Borrow<Q>,
    {
        Ok(self.handle.op(Op::Count(enc(item)?)).num()? as usize)
    }

    /// Whether an item equals `item` (Python's `x in list`).
    pub fn contains<Q: Serialize + ?Sized>(&self, item: &Q) -> Result<bool>
    where
        T: Borrow<Q>,
    {
        self.handle.op(Op::Contains(enc(item)?)).boolean()
    }

    /// Removes every item.
    pub fn clear(&self) -> Result<()> {
        self.handle.op(Op::Clear).unit()
    }

    /// Reverses the list in place.
    pub fn reverse(&self) -> Result<()> {
        self.handle.op(Op::Reverse).unit()
    }

    /// Replaces every item with `f` of the items, atomically: `f` runs here, on a copy, and
    /// runs again on a fresh copy when another caller changed the list meanwhile. Returns
    /// what `f` returned the time its change was kept.
    pub fn modify<R>(&self, mut f: impl FnMut(&mut Vec<T>) -> R) -> Result<R> {
        loop {
            let (version, items) = match self.handle.op(Op::Snapshot)? {
                Out::Snapshot(v, items) => (v, items),
                _ => return Err(Error::unexpected()),
            };
            let mut items: Vec<T> = dec_all(items)?;
            let r = f(&mut items);
            if self
                .handle
                .op(Op::ReplaceIf(version, enc_all::<T>(&items)?))
                .boolean()?
            {
                return Ok(r);
            }
        }
    }

    /// Sorts the list, atomically (see [`modify`](Self::modify)).
    pub fn sort(&self) -> Result<()>
    where
        T: Ord,
    {
        self.modify(|items| items.sort())
    }

    /// Sorts the list by a key, atomically (Python's `sort(key=...)`).
    pub fn sort_by_key<K: Ord>(&self, mut key: impl FnMut(&T) -> K) -> Result<()> {
        self.modify(|items| items.sort_by_key(&mut key))
    }

    /// Replaces the item at `index` with `f` of it, atomically; returns the new item.
    pub fn update(&self, index: isize, mut f: impl FnMut(&T) -> T) -> Result<T>
    where
        T: Clone,
    {
        let mut failed = None;
        let new = self.modify(|items| {
            let len = items.len() as isize;
            let at = if index < 0 { index + len } else { index };
            match items.get_mut(at as usize).filter(|_| at >= 0) {
                Some(item) => {
                    *item = f(item);
                    failed = None;
                    Some(item.clone())
                }
                None => {
                    failed = Some(len);
                    None
                }
            }
        })?;
        new.ok_or_else(|| {
            Error::new(
                crate::ErrorKind::IndexOutOfRange,
                format!(
                    "index {index} is out of range for length {}",
                    failed.unwrap_or_default()
                ),
            )
        })
    }
}
