//! Run a Rust function in a child process, with a typed argument and a typed result, as
//! easily as `std::thread::spawn`: Python's `multiprocessing.Process`, without its hangs.
//!
//! [`spawn`] starts `f(arg)` in a child and returns a [`Child<R>`]; [`Child::join`] returns
//! the function's result, or an [`Error`] that says how the child failed: a panic (with its
//! message), an exit code, a signal. Every wait has a deadline variant, and a child that dies
//! is always noticed. Children start by one of three [`StartMethod`]s: `ForkServer` (the
//! default), `Spawn` and `Fork`.
//!
//! Call [`init()`] as the first line of `main` (a spawned child runs its function there), or
//! write [`init_before_main!()`](init_before_main) once in a test binary.
//!
//! Whatever the start method, a child starts with its parent's environment and working
//! directory as they are when it is spawned, plus the [`Builder`]'s `env` overrides. (A fork
//! server's children would otherwise see the server's, the parent's of when the server
//! started: Python's forkserver children do.) The shared fork server that died, even one
//! SIGKILLed just before a spawn, is replaced, and the spawn goes to the new one; a server
//! that dies in the middle of forking a child fails that spawn (the child may exist), and
//! one that dies under a [`Builder::spawn_batch`] fails the batch, with
//! [`ErrorKind::ForkServer`], never a hang. (A [`ForkServer`] of your own is not replaced:
//! its snapshot of this process is gone.)
//!
//! When this process exits (`main` returns, or `std::process::exit`), it waits for its
//! non-daemonic children and sends SIGTERM to its daemonic ones, as Python does at
//! interpreter exit (see [`Builder::join_at_exit`] for the exceptions: test binaries,
//! children dropped by a panic). A child started with [`Builder::join_at_exit(false)`](Builder::join_at_exit)
//! may outlive it; [`parent_process()`]'s [`join`](ParentProcess::join) lets a child wait
//! for its parent's end.
//!
//! ```
//! fn square(x: u64) -> u64 { x * x }
//!
//! fn main() -> Result<(), mproc_process::Error> {
//!     mproc_process::init();
//!     let mut child = mproc_process::spawn(square, 7)?;
//!     assert_eq!(child.join()?, 49);
//!     Ok(())
//! }
//! ```
#![warn(missing_docs)]
#![deny(unsafe_code)] // one audited exception: the child's trust boundary in boot.rs

mod boot;
mod child;
mod error;
mod forkserver;
mod info;
mod spawn;

#[doc(hidden)]
pub use boot::__init_before_main;
pub use boot::{catch_panic, init};
pub use child::{Child, active_children, kill_all_children, wait_any};
pub use error::{Error, ErrorKind, Result};
pub use forkserver::{ForkServer, fork_server_pid};
pub use info::{
    ParentProcess, ProcessInfo, cpu_count, current_process, parent_process, process_cpu_count,
};
pub use mproc_sys::{ExitStatus, ForkPermit};
pub use spawn::{
    Builder, StartMethod, UnknownStartMethod, get_start_method, set_start_method, spawn,
};
