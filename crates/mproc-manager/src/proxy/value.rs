//! `Value<T>`, `Array<T>`, `Namespace`: a single value, a fixed-length array, named fields,
//! each held by the manager.

use std::borrow::Borrow;
use std::marker::PhantomData;

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::error::{Error, Result};
use crate::handle::Handle;
use crate::protocol::{Kind, Op, Out};
use crate::proxy::common::proxy_common;
use crate::proxy::list::sequence_calls;
use crate::values::{OutExt, dec, dec_all, enc, enc_all};

/// One value held by the manager: Python's `manager.Value(typecode, value)`, for any serde
/// type.
///
/// ```
/// # mproc_process::init();
/// let manager = mproc_manager::Manager::start()?;
/// let total = manager.value(0u64)?;
/// total.set(5)?;
/// total.update(|n| n + 1)?;
/// assert_eq!(total.get()?, 6);
/// # Ok::<(), mproc_manager::Error>(())
/// ```
pub struct Value<T> {
    handle: Handle,
    _types: PhantomData<fn() -> T>,
}

proxy_common!(Value<T>, Kind::Value);

impl<T: Serialize + DeserializeOwned> Value<T> {
    /// The value (Python's `.value` or `get()`).
    pub fn get(&self) -> Result<T> {
        dec(&self.handle.op(Op::Load).bytes()?)
    }

    /// Replaces the value (Python's `.value = x` or `set(x)`).
    pub fn set(&self, value: impl Borrow<T>) -> Result<()> {
        self.handle.op(Op::Store(enc(value.borrow())?)).unit()
    }

    /// Sets the value to `f` of it, atomically: `f` runs here and runs again when another
    /// caller wrote the value meanwhile. Returns the value kept.
    pub fn update(&self, mut f: impl FnMut(&T) -> T) -> Result<T> {
        loop {
            let (version, old) = match self.handle.op(Op::LoadVersioned)? {
                Out::Versioned(Some(v), Some(b)) => (v, dec(&b)?),
                _ => return Err(Error::unexpected()),
            };
            let new = f(&old);
            if self.handle.op(Op::StoreIf(version, enc(&new)?)).boolean()? {
                return Ok(new);
            }
        }
    }
}

/// A fixed-length array held by the manager: Python's `manager.Array(typecode, sequence)`,
/// for any serde type. Indices are Python's: negative ones count from the end.
///
/// ```
/// # mproc_process::init();
/// let manager = mproc_manager::Manager::start()?;
/// let a = manager.array(vec![1.5f64, 2.5, 3.5])?;
/// a.set(-1, 0.0)?;
/// assert_eq!(a.to_vec()?, [1.5, 2.5, 0.0]);
/// assert_eq!(a.len()?, 3);
/// # Ok::<(), mproc_manager::Error>(())
/// ```
pub struct Array<T> {
    handle: Handle,
    _types: PhantomData<fn() -> T>,
}

proxy_common!(Array<T>, Kind::Array);

impl<T: Serialize + DeserializeOwned> Array<T> {
    sequence_calls!();

    /// Replaces every item at once; `items` must have the array's length.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::InvalidInput`](crate::ErrorKind::InvalidInput) for another length.
    pub fn set_all(&self, items: &[T]) -> Result<()> {
        let len = self.len()?;
        if items.len() != len {
            return Err(Error::new(
                crate::ErrorKind::InvalidInput,
                format!("{} items for an array of {len}", items.len()),
            ));
        }
        let new = enc_all::<T>(items)?;
        loop {
            let version = match self.handle.op(Op::Snapshot)? {
                Out::Snapshot(v, _) => v,
                _ => return Err(Error::unexpected()),
            };
            if self
                .handle
                .op(Op::ReplaceIf(version, new.clone()))
                .boolean()?
            {
                return Ok(());
            }
        }
    }
}

/// Named fields held by the manager: Python's `manager.Namespace()`, where `ns.x = 1` becomes
/// `ns.set("x", &1)` and each field has its own type.
///
/// ```
/// # mproc_process::init();
/// let manager = mproc_manager::Manager::start()?;
/// let ns = manager.namespace()?;
/// ns.set("name", "run-7")?;
/// ns.set("epochs", 12u32)?;
/// assert_eq!(ns.get::<u32>("epochs")?, 12);
/// assert_eq!(ns.fields()?, ["epochs", "name"]);
/// assert_eq!(ns.get::<u32>("missing").unwrap_err().kind(), mproc_manager::ErrorKind::KeyNotFound);
/// # Ok::<(), mproc_manager::Error>(())
/// ```
pub struct Namespace {
    handle: Handle,
    _types: PhantomData<()>,
}

proxy_common!(Namespace, Kind::Namespace);

impl Namespace {
    /// The field `name`, read as a `T`.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::KeyNotFound`](crate::ErrorKind::KeyNotFound) (Python's
    /// `AttributeError`); [`ErrorKind::Decode`](crate::ErrorKind::Decode) when it was set as
    /// another type.
    pub fn get<T: DeserializeOwned>(&self, name: &str) -> Result<T> {
        dec(&self.handle.op(Op::Field(name.into())).bytes()?)
    }

    /// Sets the field `name` to a value of any serde type (or a reference to one); a field
    /// may change type. A `&str` is read back as a `String`.
    pub fn set<T: Serialize>(&self, name: &str, value: T) -> Result<()> {
        self.handle
            .op(Op::SetField(name.into(), enc(&value)?))
            .unit()
    }

    /// Removes the field `name` (Python's `del ns.name`).
    ///
    /// # Errors
    ///
    /// [`ErrorKind::KeyNotFound`](crate::ErrorKind::KeyNotFound) when it is not there.
    pub fn remove(&self, name: &str) -> Result<()> {
        self.handle.op(Op::DelField(name.into())).unit()
    }

    /// The names of the fields, sorted.
    pub fn fields(&self) -> Result<Vec<String>> {
        match self.handle.op(Op::Fields)? {
            Out::Names(names) => Ok(names),
            _ => Err(Error::unexpected()),
        }
    }

    /// Whether the field `name` is set (Python's `hasattr`).
    pub fn contains(&self, name: &str) -> Result<bool> {
        Ok(self.fields()?.iter().any(|f| f == name))
    }
}
