//! Shared memory for mproc: byte segments, typed values and lists that several processes
//! map at once. Python: `multiprocessing.shared_memory`, `RawValue`, `RawArray`.
//!
//! Everything here is transferable as a spawn argument and through a pipe (the memory goes
//! by fd, beside the message), and a forked child inherits it. Anonymous segments (the
//! default) leave nothing in `/dev/shm`, whatever happens; named ones are reserved up front
//! and unlinked when the process tree that created them ends, even by SIGKILL.
//!
//! ```
//! use std::sync::atomic::{AtomicU64, Ordering};
//! use mproc_shm::{RawArray, SharedAtomic, SharedMemory};
//!
//! let shm = SharedMemory::create(1 << 20)?;
//! shm.fill(0, shm.len(), 0xab)?;
//! let squares = RawArray::from_slice(&[0u64, 1, 4, 9])?;
//! let hits = SharedAtomic::<AtomicU64>::new()?;
//! hits.fetch_add(1, Ordering::Relaxed);
//! assert_eq!((shm.read::<u8>(77)?, squares.get(3), hits.load(Ordering::Relaxed)), (0xab, Some(9), 1));
//! # Ok::<(), mproc_shm::Error>(())
//! ```
//!
//! Values that more than one process writes want a lock: `mproc_sync::Value` and
//! `mproc_sync::Array` carry their own.
#![warn(missing_docs)]
#![deny(unsafe_code)]

mod arena;
mod error;
mod fork;
mod list;
mod raw;
mod segment;

pub use arena::{BLOCK_ALIGN, Block, CHUNK_SIZE, LockBlock};
pub use error::{Error, ErrorKind, Result};
pub use list::{Item, ShareableList};
pub use mproc_sys::{ShmAtomic, ShmSafe};
pub use raw::{RawArray, RawValue, SharedAtomic};
pub use segment::SharedMemory;
