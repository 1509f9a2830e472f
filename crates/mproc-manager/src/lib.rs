//! Managers for mproc: Python's `multiprocessing.Manager()`, typed.
//!
//! A [`Manager`] starts a server process that holds shared objects — lists, dicts, values,
//! arrays, namespaces, queues, locks, semaphores, conditions, events, barriers, and types of
//! your own — and hands out typed proxies to them. Every proxy call is one request to the
//! server and one atomic operation there. Proxies travel to other processes (as spawn
//! arguments, through pipes and queues, inside other manager objects), and a manager served
//! on a TCP address reaches other programs and machines.
//!
//! ```
//! mproc_process::init(); // the first line of `main`: the server is a child process
//! let manager = mproc_manager::Manager::start()?;
//! let stack = manager.list::<u32>()?;
//! let mut children = Vec::new();
//! for i in 0..3 {
//!     children.push(mproc_process::spawn(
//!         |(stack, i): (mproc_manager::List<u32>, u32)| stack.push(&i).unwrap(),
//!         (stack.clone(), i),
//!     )?);
//! }
//! for mut c in children {
//!     c.join().unwrap();
//! }
//! let mut popped = Vec::new();
//! while let Some(x) = stack.pop()? {
//!     popped.push(x);
//! }
//! popped.sort();
//! assert_eq!(popped, [0, 1, 2]);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # From Python
//!
//! | Python | mproc |
//! | --- | --- |
//! | `Manager()` / `with Manager() as m:` | [`Manager::start`]; dropping it stops the server |
//! | `m.list()`, `m.dict()`, `m.set()` | [`Manager::list`], [`Manager::dict`], [`Manager::set`] (typed: `list::<T>()`) |
//! | `m.Value('i', 0)`, `m.Array('d', xs)` | [`Manager::value`], [`Manager::array`] |
//! | `m.Namespace()`; `ns.x = 1` | [`Manager::namespace`]; `ns.set("x", &1)` |
//! | `m.Queue()`, `m.JoinableQueue()` | [`Manager::queue`], [`Manager::joinable_queue`] |
//! | `m.Lock()`, `m.RLock()`, `m.Semaphore(n)` | [`Manager::lock`], [`Manager::rlock`], [`Manager::semaphore`] |
//! | `m.Condition()`, `m.Event()`, `m.Barrier(n)` | [`Manager::condition`], [`Manager::event`], [`Manager::barrier`] |
//! | `d[k] = d.get(k, 0) + 1` (racy) | [`Dict::update`]`(&k, \|v\| v.unwrap_or(0) + 1)` (atomic) |
//! | `d.update(other)` | [`Dict::extend`] |
//! | `BaseManager.register('Tickets', Tickets)` | [`Builder::register`]`::<(Tickets,)>()` and [`SharedObject`] |
//! | `BaseManager(address, authkey).start()` | [`Manager::serve`] |
//! | `BaseManager(address, authkey).connect()` | [`Manager::connect`] |
//! | `register('get_queue', callable=...)` | [`Manager::publish`] and [`Manager::lookup`] |
//! | `m.shutdown()` | [`Manager::shutdown`] |
//!
//! # What is better than Python's
//!
//! - **No code from the wire.** Python's managers exchange pickles: any peer that has the
//!   key can make the server run code. Here a request names an operation and carries
//!   values as bytes; the server stores and compares the bytes and runs only the handlers
//!   of the types it was started with.
//! - **Nothing hangs on the dead.** A call whose server died returns
//!   [`ErrorKind::Disconnected`] at once. A process that dies holding a manager lock
//!   releases it (once its last connection closes); one that dies waiting in a queue's `get`
//!   takes no item; one that dies waiting at a barrier breaks it for the others. Every
//!   blocking call has a `*_timeout` form, and [`List::set_timeout`] (on every proxy) bounds
//!   how long any call waits for the server.
//! - **Atomic read-modify-write.** `update` on a dict key, a value or a list item runs the
//!   closure here and commits it only if nobody wrote in between (it runs again otherwise).
//! - **Bounded.** A server accepts at most 1024 connections and 64 MiB per request or reply
//!   by default ([`Builder::max_connections`], [`Builder::max_message`]); a client over the
//!   frame limit, or one that sends garbage or stalls its handshake, is dropped while the
//!   others go on.
//!
//! # Connections
//!
//! Each process opens its own connections on first use, one per thread calling at the same
//! time, and reuses them: a blocking call (a lock's `acquire`) holds up no other thread. A
//! child made by fork opens its own.
//!
//! A proxy travels with its manager's address and key, so that the process that receives
//! it can connect (Python sends the key only to the children it spawns and otherwise uses
//! the receiving process's own key). Send proxies of a manager served on TCP only to
//! processes you would give its key: a proxy stored in another manager's object, or sent
//! over an unencrypted TCP connection, shows the key to whoever reads it there.

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

pub use error::{Error, ErrorKind, Result};
pub use manager::{Builder, Manager};
pub use mproc_pipe::Address;
pub use proxy::{
    Array, Barrier, Condition, Dict, Event, JoinableQueue, List, Lock, LockGuard, Namespace, Queue,
    RLock, Semaphore, Set, Value,
};
pub use registry::{Registry, Shared, SharedObject};

/// A proxy to a manager object: what [`Manager::publish`] and [`Manager::lookup`] take.
/// Implemented by every proxy type of this crate.
pub trait Proxy: handle::Sealed {}

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
