#![doc = include_str!("../README.md")]
#![warn(missing_docs)]
#![forbid(unsafe_code)]
#![cfg_attr(docsrs, feature(doc_cfg))]

mod auth;
mod connection;
mod error;
#[cfg(fuzzing)]
#[doc(hidden)]
pub mod fuzz;
mod listener;
mod wait;

#[cfg(feature = "tokio")]
#[cfg_attr(docsrs, doc(cfg(feature = "tokio")))]
pub use connection::async_io::AsyncConnection;
pub use connection::iter::Iter;
pub use connection::{Connection, Receiver, Sender, channel, duplex, pipe};
pub use error::{Error, ErrorKind, Result};
pub use listener::{Address, Client, Listener};
pub use wait::{Waitable, wait};
