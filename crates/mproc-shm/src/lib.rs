#![doc = include_str!("../README.md")]
#![warn(missing_docs)]
#![deny(unsafe_code)]

mod arena;
mod error;
mod list;
mod raw;
mod segment;

pub use arena::{BLOCK_ALIGN, Block, CHUNK_SIZE, LockBlock};
pub use error::{Error, ErrorKind, Result};
pub use list::{Item, ShareableList};
pub use mproc_sys::{ShmAtomic, ShmSafe};
pub use raw::{RawArray, RawValue, SharedAtomic};
pub use segment::SharedMemory;
