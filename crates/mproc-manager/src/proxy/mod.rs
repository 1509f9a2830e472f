//! The proxies of the built-in shared types.

pub(crate) mod common;
mod dict;
mod list;
mod queue;
mod set;
mod sync;
mod value;

pub use dict::Dict;
pub use list::List;
pub use queue::{JoinableQueue, Queue};
pub use set::Set;
pub use sync::{Barrier, Condition, Event, Lock, LockGuard, RLock, Semaphore};
pub use value::{Array, Namespace, Value};
