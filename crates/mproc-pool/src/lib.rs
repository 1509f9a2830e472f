//! Process pools: Python's `multiprocessing.Pool` (`map`, `imap`, `imap_unordered`,
//! `starmap`, `apply`, `apply_async`, `map_async`), where a worker that dies costs one
//! task, never the pool.
//!
//! A [`Pool`] runs plain `fn` items in worker processes, with serde arguments and results
//! that travel through queues in shared memory. When a worker dies in the middle of a task
//! (SIGKILL, abort, the OOM killer), that task fails with [`ErrorKind::WorkerDied`] within
//! milliseconds, a fresh worker takes its place and the rest of the work completes: Python's
//! `Pool.map` hangs for ever there, and its `ProcessPoolExecutor` breaks as a whole. A task
//! that runs too long can be given a [`task_timeout`](Builder::task_timeout).
//!
//! ```
//! fn square(x: u64) -> u64 { x * x }
//!
//! fn main() -> Result<(), mproc_pool::Error> {
//!     mproc_process::init(); // first line of main: a worker runs here
//!     let pool = mproc_pool::Pool::new(2)?;
//!     assert_eq!(pool.map(square, 0..10)?.iter().sum::<u64>(), 285);
//!     let pending = pool.apply_async(square, 12)?;
//!     assert_eq!(pending.get()?, 144);
//!     Ok(())
//! }
//! ```
//!
//! # How work moves
//!
//! Each worker has a queue of its own; the pool sends it chunks of items (Python's
//! chunking) and keeps a few queued, about 200 µs of work by the chunks' measured time, so
//! that short tasks stream without a round trip each and long ones do not wait behind each
//! other. Results come back on one queue, read by the pool's manager thread, which also
//! replaces workers that end; a watcher thread waits on the workers' pidfds and enforces the
//! task timeout. Because the pool knows which chunk each worker holds, a dead worker's
//! queued chunks are sent again and only the chunk it was running fails.
#![warn(missing_docs)]
#![deny(unsafe_code)] // one audited exception: a worker's trust boundary in worker.rs

mod chunk;
mod error;
pub mod executor;
mod handle;
mod imap;
mod manager;
mod pool;
mod result;
mod task;
mod watcher;
mod worker;

pub use error::{Error, ErrorKind, Result};
pub use executor::{Executor, ExecutorMap};
pub use handle::{AsCompleted, DoneAndNotDone, ReturnWhen, TaskHandle, as_completed, wait};
pub use imap::Imap;
pub use pool::{Builder, Pool};
pub use result::{AsyncResult, Callbacks};
