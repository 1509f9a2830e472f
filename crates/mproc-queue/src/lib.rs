#![doc = include_str!("../README.md")]
#![warn(missing_docs)]
#![deny(unsafe_code)]

mod builder;
mod error;
mod holders;
mod joinable;
mod queue;
mod ring;
mod simple;

pub use builder::Builder;
pub use error::{Error, ErrorKind, GetError, PutError, Result};
pub use joinable::JoinableQueue;
pub use queue::{Iter, Queue};
pub use simple::SimpleQueue;

#[cfg(fuzzing)]
#[doc(hidden)]
pub use ring::fuzz;
