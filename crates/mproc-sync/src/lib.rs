#![doc = include_str!("../README.md")]
#![warn(missing_docs)]
#![deny(unsafe_code)]

mod array;
mod barrier;
mod condition;
mod diag;
mod error;
mod event;
mod lock;
mod semaphore;
mod value;

pub use array::{Array, ArrayGuard};
pub use barrier::Barrier;
pub use condition::{Condition, ConditionGuard};
pub use error::{Error, ErrorKind, LockResult, OwnerDied, Result, TryLockError, TryLockResult};
pub use event::Event;
pub use lock::{Lock, LockGuard, RLock, RLockGuard};
pub use semaphore::{BoundedSemaphore, Permit, Semaphore};
pub use value::{Value, ValueGuard};
