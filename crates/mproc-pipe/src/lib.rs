#![doc = include_str!("../README.md")]
#![warn(missing_docs)]
#![forbid(unsafe_code)]

mod auth;
mod connection;
mod error;
#[cfg(fuzzing)]
#[doc(hidden)]
pub mod fuzz;
mod listener;
mod wait;

pub use connection::{Connection, Receiver, Sender, channel, duplex, pipe};
pub use error::{Error, ErrorKind, Result};
pub use listener::{Address, Client, Listener};
pub use wait::{Waitable, wait};
