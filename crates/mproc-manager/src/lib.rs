#![doc = include_str!("../README.md")]
#![warn(missing_docs)]

mod client;
mod error;
mod handle;
mod manager;
mod protocol;
mod proxy;
mod registry;
mod server;
mod spin;
mod values;

pub use error::{Error, ErrorKind, Result};
pub use manager::Manager;
pub use manager::builder::Builder;
pub use mproc_pipe::Address;
pub use proxy::{
    Array, Barrier, Condition, Dict, Event, JoinableQueue, List, Lock, LockGuard, Namespace, Queue,
    RLock, Semaphore, Set, Value,
};
pub use registry::{Registry, Shared, SharedObject};

#[cfg(fuzzing)]
#[doc(hidden)]
pub use server::fuzz;

/// A proxy to a manager object: what [`Manager::publish`] and [`Manager::lookup`] take.
/// Implemented by every proxy type of this crate.
pub trait Proxy: proxy::common::Sealed {}

#[cfg(test)]
mod tests {
    /// A manager and its proxies are shared between threads (the doc examples start
    /// servers; this only checks the types).
    #[test]
    fn managers_and_proxies_are_send_and_sync() {
        fn both<T: Send + Sync>() {}
        both::<crate::Manager>();
        both::<crate::List<String>>();
        both::<crate::Dict<String, Vec<u8>>>();
        both::<crate::Queue<u64>>();
        both::<crate::Lock>();
        both::<crate::Condition>();
        both::<crate::Error>();
    }
}
