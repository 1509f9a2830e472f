//! Robust locks and friends shared between processes: `Lock`, `RLock`, `Semaphore`,
//! `BoundedSemaphore`, `Condition`, `Event`, `Barrier`, and the locked `Value` and
//! `Array`. Python: `multiprocessing.Lock` and the rest of `multiprocessing.synchronize`,
//! `Value`, `Array`.
//!
//! Every primitive lives in shared memory (the arena of `mproc-shm`), travels as a spawn
//! argument or through a pipe, and is inherited by fork. Waiting sleeps in the kernel on a
//! futex after a short spin; every blocking call has `try_*` and `*_timeout` forms.
//!
//! The locks are robust, which Python's are not: when a process (or thread) dies holding
//! one, even by SIGKILL, the kernel hands the lock to the next locker with [`OwnerDied`]
//! carrying the guard, so nobody waits forever and the data can be repaired.
//!
//! ```
//! use mproc_sync::{Lock, Value};
//!
//! let counter = Value::new(0u64)?;
//! *counter.lock()? += 1;                // read-modify-write under the value's own lock
//! let lock = Lock::new()?;
//! {
//!     let _held = lock.lock()?;         // released when the guard drops
//! }
//! assert_eq!(counter.get()?, 1);
//! # Ok::<(), mproc_sync::Error>(())
//! ```
//!
//! # Which primitives are robust where
//!
//! | primitive | holder dies | how |
//! | --- | --- | --- |
//! | `Lock`, `RLock`, `Value`, `Array`, `Condition` (its lock) | next locker gets `OwnerDied` | the kernel's robust futex list (Linux) |
//! | `Barrier` | the barrier breaks (`BrokenBarrier`) if the party died updating it | the same lock inside |
//! | `Semaphore`, `BoundedSemaphore`, `Event` | nothing is held: no owner to lose | atomics and futexes only |
//!
//! A `Condition` waiter or `Barrier` party that dies *while waiting* (not holding the lock)
//! is still counted: give waits a timeout when that can happen. Robustness needs the
//! thread's robust list ([`mproc_sys::robust_locks_supported`]): true on Linux with glibc.
//! mproc supports Linux only today; other platforms will get the same API, with the
//! robustness each OS offers documented here.
#![warn(missing_docs)]
#![deny(unsafe_code)]

mod barrier;
mod condition;
mod error;
mod event;
mod lock;
mod semaphore;
mod value;

pub use barrier::Barrier;
pub use condition::{Condition, ConditionGuard};
pub use error::{Error, ErrorKind, LockResult, OwnerDied, Result, TryLockError, TryLockResult};
pub use event::Event;
pub use lock::{Lock, LockGuard, RLock, RLockGuard};
pub use semaphore::{BoundedSemaphore, Permit, Semaphore};
pub use value::{Array, ArrayGuard, Value, ValueGuard};
