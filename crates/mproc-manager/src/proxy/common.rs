//! What every proxy type shares: the impls `proxy_common!` writes, its `Sealed` identity among
//! them.

use crate::handle::Handle;
use crate::protocol::Kind;

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
        impl<$($($t $(: $bound)?),*)?> crate::proxy::common::Sealed for $name<$($($t),*)?> {
            fn kind() -> crate::protocol::Kind {
                $kind
            }
            fn type_name() -> String {
                crate::proxy::common::short_type_name(std::any::type_name::<Self>())
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
