//! Python's `multiprocessing` for Rust: child processes that run a function, typed with
//! serde, fast, and free of the hangs Python users suffer when a process dies.
//!
//! This is the facade: each part of mproc is its own crate, re-exported here as a module
//! behind a cargo feature (all on by default), with the names Python users reach for most
//! also at the top level.
//!
//! ```
//! fn square(x: u64) -> u64 { x * x }
//!
//! fn main() -> mproc::Result<()> {
//!     mproc::init(); // first line of main: a spawned child runs its function here
//!     let mut child = mproc::spawn(square, 7)?;
//!     assert_eq!(child.join()?, 49);
//!     Ok(())
//! }
//! ```
//!
//! # From Python to Rust
//!
//! | Python `multiprocessing` | mproc |
//! | --- | --- |
//! | `if __name__ == "__main__":` guard | `mproc::init()` as the first line of `main` |
//! | `Process(target=f, args=(x,)).start()` | `mproc::spawn(f, x)?` (one argument: use a tuple for several) |
//! | `Process(name=..., daemon=True)` | `mproc::Builder::new().name(..).daemon(true).spawn(f, x)?` |
//! | `p.join()` then read a result from a queue | `child.join()?` returns `f`'s result |
//! | `p.join(timeout)` | `child.join_timeout(d)` (`ErrorKind::Timeout`; joinable again) or `child.wait_timeout(d)` |
//! | `p.exitcode` | `child.exit_status()`: `Some(ExitStatus::Code(n))` / `Some(ExitStatus::Signal(n))` / `None` |
//! | `p.is_alive()`, `p.pid`, `p.name`, `p.daemon` | `child.is_alive()`, `child.pid()`, `child.name()`, `child.is_daemon()` |
//! | `p.terminate()`, `p.kill()` | `child.terminate()?`, `child.kill()?` (through a pidfd: never the wrong process) |
//! | `p.sentinel` + `connection.wait([...])` | `child.sentinel()` + `mproc::wait_any(&[...], timeout)?` |
//! | an exception in the child (exitcode 1) | `Err(e)` with `e.kind() == ErrorKind::Panicked` and `e.panic_message()` |
//! | `set_start_method("spawn")`, `get_context("fork")` | `mproc::set_start_method(StartMethod::Spawn)`, `Builder::start_method(..)` |
//! | `set_executable(path)` | `Builder::executable(path)` (same build only) |
//! | `current_process()`, `parent_process()`, `active_children()`, `cpu_count()` | the same names |
//! | `os.process_cpu_count()` | `mproc::process_cpu_count()` |
//! | `a, b = Pipe()` | `let (a, b) = mproc::pipe::<T>()?` (typed; `duplex::<A, B>()` for a type each way) |
//! | `r, w = Pipe(duplex=False)` | `let (w, r) = mproc::channel::<T>()?` (sender first, as in std) |
//! | `conn.send(obj)`, `conn.recv()` | `conn.send(&value)?`, `conn.recv()?` (`Disconnected` at once when the peer is gone) |
//! | `conn.poll(t)`, `conn.recv()` with a deadline | `conn.poll(Some(t))?`, `conn.recv_timeout(t)?`, `conn.try_recv()?` |
//! | (no send deadline in Python) | `conn.send_timeout(&v, t)?`: `Timeout` means not sent; `Ok` means committed |
//! | `send_bytes`, `recv_bytes`, `recv_bytes_into(buf)` | the same names; `BufferTooShort` carries the message |
//! | `connection.wait([conns, sentinels], timeout)` | `mproc::wait(&[&conn, &child.sentinel()], Some(t))?` |
//! | `Listener(address, authkey=k)`, `l.accept()` | `Listener::bind(address, k)?`, `l.accept::<S, R>()?` / `accept_timeout` |
//! | `Client(address, authkey=k)` | `Client::connect::<S, R>(&address, k)?` (mutual HMAC-SHA256) |
//!
//! Queues, pools, shared memory, locks and managers join this table as their crates land.
#![warn(missing_docs)]

#[cfg(feature = "pipe")]
#[doc(inline)]
pub use mproc_pipe as pipe;
#[cfg(feature = "process")]
#[doc(inline)]
pub use mproc_process as process;
#[doc(inline)]
pub use mproc_sys as sys;
#[cfg(feature = "wire")]
#[doc(inline)]
pub use mproc_wire as wire;

#[cfg(feature = "process")]
pub use mproc_process::{
    Builder, Child, ExitStatus, ForkPermit, ProcessInfo, StartMethod, active_children, cpu_count,
    current_process, get_start_method, init, init_before_main, parent_process, process_cpu_count,
    set_start_method, spawn, wait_any,
};

// `mproc::pipe` is both the module above and this function (they live in different
// namespaces): `mproc::pipe::<T>()` makes a pipe, `mproc::pipe::Listener` names a type.
#[cfg(feature = "pipe")]
pub use mproc_pipe::{
    Address, Client, Connection, Listener, Receiver, Sender, channel, duplex, pipe, wait,
};

mod error;
pub use error::{Error, Result};

/// The README's quick start, compiled and run as a doctest so that it stays true.
#[cfg(doctest)]
#[doc = include_str!("../../../README.md")]
mod readme {}
