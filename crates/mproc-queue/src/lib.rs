#![doc = include_str!("../README.md")]
#![warn(missing_docs)]
#![deny(unsafe_code)]

mod error;
mod holders;
mod queue;
mod ring;

pub use error::{Error, ErrorKind, GetError, PutError, Result};
pub use queue::{Builder, JoinableQueue, Queue, SimpleQueue};
