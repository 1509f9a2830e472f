#![doc = include_str!("../README.md")]
#![warn(missing_docs)]
#![deny(unsafe_code)] // one audited exception: a worker's trust boundary in worker.rs

mod callbacks;
mod chunk;
mod condvar;
mod error;
pub mod executor;
mod handle;
mod imap;
mod manager;
mod pool;
#[doc(hidden)]
pub mod relay;
mod result;
mod sink;
mod task;
mod task_pool;
mod waker;
mod watcher;
mod worker;

pub use callbacks::Callbacks;
pub use error::{Error, ErrorKind, Result};
pub use executor::{Executor, ExecutorMap};
pub use handle::TaskHandle;
pub use handle::wait::{AsCompleted, DoneAndNotDone, ReturnWhen, as_completed, wait};
pub use imap::Imap;
pub use pool::Pool;
pub use pool::builder::Builder;
pub use result::AsyncResult;
pub use task_pool::TaskPool;

// For `impl_task_pool_by_inherent_methods!`, expanded in other crates of mproc.
#[doc(hidden)]
pub use serde as __serde;
