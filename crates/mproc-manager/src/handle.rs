//! What every proxy holds: the manager's endpoint and the object's id, how a proxy travels
//! to another process, and the encoding of the values it carries.

use std::borrow::Borrow;
use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_bytes::ByteBuf;

use crate::client::{self, Endpoint, deadline_after};
use crate::error::{Error, ErrorKind, Result};
use crate::protocol::{Bytes, Kind, Op, Out, Request, Wait};

/// How much longer than a blocking operation's own timeout a caller waits for the server's
/// answer before it gives up on the server.
const GRACE: Duration = Duration::from_secs(5);

/// A reference to one object in one manager.
#[derive(Clone)]
pub struct Handle {
    endpoint: Arc<Endpoint>,
    id: u64,
    /// The longest a call may wait for the server (beyond a blocking operation's own wait).
    timeout: Option<Duration>,
}

impl fmt::Debug for Handle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}#{}", self.endpoint.address(), self.id)
    }
}

impl Handle {
    pub(crate) fn new(endpoint: Arc<Endpoint>, id: u64) -> Self {
        Self {
            endpoint,
            id,
            timeout: None,
        }
    }

    pub(crate) fn timeout(&self) -> Option<Duration> {
        self.timeout
    }

    pub(crate) fn set_timeout(&mut self, timeout: Option<Duration>) {
        self.timeout = timeout;
    }

    pub(crate) fn id(&self) -> u64 {
        self.id
    }

    pub(crate) fn endpoint(&self) -> &Arc<Endpoint> {
        &self.endpoint
    }

    /// Runs an operation that does not wait in the server.
    pub(crate) fn op(&self, op: Op) -> Result<Out> {
        self.call(op, self.timeout.and_then(deadline_after), true)
    }

    /// Runs the operation `make` builds for a wait in the server, as `wait` says.
    ///
    /// The proxy's deadline bounds a wait that has none of its own: the server is told to give
    /// up by then, so that it takes nothing (no item, no lock) for a caller that stopped
    /// waiting. The caller waits for the answer that long plus the proxy's deadline (or 5 s
    /// without one); `unbounded_after` (a condition, which must take its lock back however
    /// long that takes) waits for it without a bound unless the proxy has a deadline.
    pub(crate) fn op_waiting(
        &self,
        wait: Wait,
        unbounded_after: bool,
        make: impl FnOnce(Wait) -> Op,
    ) -> Result<Out> {
        let wait = match (wait, self.timeout) {
            (Wait::Forever, Some(t)) => Wait::For(t),
            (w, _) => w,
        };
        let waited = match wait {
            Wait::No => Duration::ZERO,
            Wait::For(d) => d,
            Wait::Forever => return self.call(make(wait), None, false),
        };
        let after = match (self.timeout, unbounded_after) {
            (Some(t), _) => Some(t),
            (None, false) => Some(GRACE),
            (None, true) => None,
        };
        let deadline = after.and_then(|a| deadline_after(waited.saturating_add(a)));
        self.call(make(wait), deadline, matches!(wait, Wait::No))
    }

    /// The error of a wait without a timeout of its own that the proxy's deadline ended.
    pub(crate) fn timed_out(&self) -> Error {
        Error::new(
            ErrorKind::Timeout,
            format!(
                "the proxy's deadline of {:?} passed while waiting",
                self.timeout.unwrap_or_default()
            ),
        )
    }

    fn call(&self, op: Op, deadline: Option<Instant>, quick: bool) -> Result<Out> {
        let request = Request::Op { id: self.id, op };
        self.endpoint.call_with(&request, deadline, quick)
    }
}

/// How a proxy travels: where its manager is, the key, and the object.
#[derive(Serialize, Deserialize)]
struct WireHandle {
    address: String,
    authkey: ByteBuf,
    id: u64,
    timeout: Option<Duration>,
}

impl Serialize for Handle {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        WireHandle {
            address: self.endpoint.address().to_string(),
            authkey: ByteBuf::from(self.endpoint.authkey().to_vec()),
            id: self.id,
            timeout: self.timeout,
        }
        .serialize(s)
    }
}

impl<'de> Deserialize<'de> for Handle {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let w = WireHandle::deserialize(d)?;
        let address = w
            .address
            .parse()
            .map_err(|_| serde::de::Error::custom("a manager proxy with an unreadable address"))?;
        Ok(Handle {
            endpoint: client::endpoint(&address, &w.authkey),
            id: w.id,
            timeout: w.timeout,
        })
    }
}

/// The crate-private side of [`Proxy`](crate::Proxy).
pub trait Sealed: Sized {
    /// The object kind the proxy works on.
    fn kind() -> Kind;
    /// The proxy's type without module paths, checked when a published object is looked
    /// up.
    fn type_name() -> String;
    fn from_handle(handle: Handle) -> Self;
    fn handle(&self) -> &Handle;
}

/// A type's name without module paths (`List<Job>` for `mproc_manager::List<app::Job>`):
/// what `lookup` compares, so that two programs that each define the item type agree.
pub(crate) fn short_type_name(full: &str) -> String {
    let mut out = String::with_capacity(full.len());
    let mut word = String::new();
    let mut chars = full.chars().peekable();
    while let Some(c) = chars.next() {
        if c.is_alphanumeric() || c == '_' {
            word.push(c);
        } else if c == ':' && chars.peek() == Some(&':') {
            chars.next();
            word.clear(); // a module path segment
        } else {
            out.push_str(&word);
            word.clear();
            out.push(c);
        }
    }
    out.push_str(&word);
    out
}

/// Encodes a value as the server stores it.
pub(crate) fn enc<T: Serialize + ?Sized>(value: &T) -> Result<Bytes> {
    postcard::to_allocvec(value)
        .map(ByteBuf::from)
        .map_err(Error::encode)
}

/// Decodes a stored value.
pub(crate) fn dec<T: DeserializeOwned>(bytes: &[u8]) -> Result<T> {
    postcard::from_bytes(bytes).map_err(Error::decode)
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

/// The parts every proxy type shares: `Clone`, `Debug`, travel through serde, the per-proxy
/// deadline, and its `Proxy` identity.
macro_rules! proxy_common {
    ($name:ident $(< $($t:ident $(: $bound:path)?),* >)?, $kind:expr) => {
        impl<$($($t $(: $bound)?),*)?> Clone for $name<$($($t),*)?> {
            fn clone(&self) -> Self {
                Self { handle: self.handle.clone(), _types: std::marker::PhantomData }
            }
        }
        impl<$($($t $(: $bound)?),*)?> std::fmt::Debug for $name<$($($t),*)?> {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                write!(f, concat!(stringify!($name), "({:?})"), self.handle)
            }
        }
        impl<$($($t $(: $bound)?),*)?> serde::Serialize for $name<$($($t),*)?> {
            fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
                self.handle.serialize(s)
            }
        }
        impl<'de, $($($t $(: $bound)?),*)?> serde::Deserialize<'de> for $name<$($($t),*)?> {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
                Ok(Self { handle: crate::handle::Handle::deserialize(d)?, _types: std::marker::PhantomData })
            }
        }
        impl<$($($t $(: $bound)?),*)?> crate::handle::Sealed for $name<$($($t),*)?> {
            fn kind() -> crate::protocol::Kind {
                $kind
            }
            fn type_name() -> String {
                crate::handle::short_type_name(std::any::type_name::<Self>())
            }
            fn from_handle(handle: crate::handle::Handle) -> Self {
                Self { handle, _types: std::marker::PhantomData }
            }
            fn handle(&self) -> &crate::handle::Handle {
                &self.handle
            }
        }
        impl<$($($t $(: $bound)?),*)?> crate::Proxy for $name<$($($t),*)?> {}
        impl<$($($t $(: $bound)?),*)?> $name<$($($t),*)?> {
            /// Sets the longest this proxy waits for the server to answer a call (beyond
            /// the wait a blocking operation asks for); `None`, the default, waits as long
            /// as the server is alive. A call past it fails with
            /// [`ErrorKind::Timeout`](crate::ErrorKind::Timeout). A blocking call without
            /// a timeout of its own (`get`, `acquire`, `wait`) waits at most this long, and
            /// fails as its `*_timeout` form would (`Empty`, `Full`, `BrokenBarrier`, or
            /// `Timeout`); the server gives up at the same time and takes nothing for it.
            /// Copies made after this (clones, or this proxy sent to another process) keep
            /// the setting.
            pub fn set_timeout(&mut self, timeout: Option<std::time::Duration>) {
                self.handle.set_timeout(timeout);
            }

            /// This proxy with [`set_timeout`](Self::set_timeout) applied.
            pub fn with_timeout(mut self, timeout: std::time::Duration) -> Self {
                self.handle.set_timeout(Some(timeout));
                self
            }

            /// The deadline set with [`set_timeout`](Self::set_timeout).
            pub fn timeout(&self) -> Option<std::time::Duration> {
                self.handle.timeout()
            }
        }
    };
}
pub(crate) use proxy_common;

#[cfg(test)]
mod tests {
    use super::short_type_name;

    #[test]
    fn type_names_lose_their_module_paths() {
        assert_eq!(
            short_type_name("mproc_manager::proxy::dict::Dict<alloc::string::String, app::Job>"),
            "Dict<String, Job>"
        );
        assert_eq!(
            short_type_name("List<(u32, [u8; 4])>"),
            "List<(u32, [u8; 4])>"
        );
        assert_eq!(short_type_name("Lock"), "Lock");
    }
}
