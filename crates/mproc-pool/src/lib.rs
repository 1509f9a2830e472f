#![doc = include_str!("../README.md")]
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
pub use pool::Pool;
pub use pool::builder::Builder;
pub use result::{AsyncResult, Callbacks};
