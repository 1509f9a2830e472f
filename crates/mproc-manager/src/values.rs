//! A proxy's values on the wire: arguments encoded as the server stores them, replies read back
//! in the shape each operation gives.

use std::borrow::Borrow;

use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_bytes::ByteBuf;

use crate::error::{Error, Result};
use crate::protocol::{Bytes, Out};

/// Encodes a value as the server stores it.
pub(crate) fn enc<T: Serialize + ?Sized>(value: &T) -> Result<Bytes> {
    postcard::to_allocvec(value)
        .map(ByteBuf::from)
        .map_err(Error::encode)
}

/// Decodes a stored value (a value nested deeper than the thread's stack can hold is an
/// error, not a stack overflow).
pub(crate) fn dec<T: DeserializeOwned>(bytes: &[u8]) -> Result<T> {
    mproc_wire::decode_from(bytes, Vec::new()).map_err(Error::decode)
}

pub(crate) fn dec_all<T: DeserializeOwned>(items: Vec<Bytes>) -> Result<Vec<T>> {
    items.iter().map(|b| dec(b)).collect()
}

pub(crate) fn enc_all<T: Serialize>(
    items: impl IntoIterator<Item: Borrow<T>>,
) -> Result<Vec<Bytes>> {
    items.into_iter().map(|i| enc(i.borrow())).collect()
}

/// Encodes key-value pairs as the server stores them.
pub(crate) fn enc_pairs<K: Serialize, V: Serialize>(
    pairs: impl IntoIterator<Item: Borrow<(K, V)>>,
) -> Result<Vec<(Bytes, Bytes)>> {
    pairs
        .into_iter()
        .map(|p| {
            let (k, v) = p.borrow();
            Ok((enc(k)?, enc(v)?))
        })
        .collect()
}

/// The reply shapes, each with the error a proxy reports for anything else.
pub(crate) trait OutExt {
    fn unit(self) -> Result<()>;
    fn boolean(self) -> Result<bool>;
    fn num(self) -> Result<u64>;
    fn bytes(self) -> Result<Bytes>;
    fn maybe(self) -> Result<Option<Bytes>>;
    fn many(self) -> Result<Vec<Bytes>>;
}

impl OutExt for Result<Out> {
    fn unit(self) -> Result<()> {
        match self? {
            Out::Unit => Ok(()),
            _ => Err(Error::unexpected()),
        }
    }
    fn boolean(self) -> Result<bool> {
        match self? {
            Out::Bool(b) => Ok(b),
            _ => Err(Error::unexpected()),
        }
    }
    fn num(self) -> Result<u64> {
        match self? {
            Out::Num(n) => Ok(n),
            _ => Err(Error::unexpected()),
        }
    }
    fn bytes(self) -> Result<Bytes> {
        match self? {
            Out::Bytes(b) => Ok(b),
            _ => Err(Error::unexpected()),
        }
    }
    fn maybe(self) -> Result<Option<Bytes>> {
        match self? {
            Out::Maybe(b) => Ok(b),
            _ => Err(Error::unexpected()),
        }
    }
    fn many(self) -> Result<Vec<Bytes>> {
        match self? {
            Out::Many(v) => Ok(v),
            _ => Err(Error::unexpected()),
        }
    }
}
