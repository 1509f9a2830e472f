//! Typed duplex pipes between processes, waiting on many of them, and authenticated
//! listeners: Python's `Pipe`, `Connection`, `connection.wait` and `Listener`/`Client`.
//!
//! [`pipe`] makes two connected ends that send and receive the same type; [`duplex`] one
//! type each way (requests and responses); [`channel`] a one-way [`Sender`]/[`Receiver`]
//! (Python's `Pipe(duplex=False)`). Every end is transferable: pass it to a child as (part
//! of) its spawn argument, or send it through another pipe, and it works there. A receive
//! whose peer closed, dropped or died returns [`ErrorKind::Disconnected`] at once; every
//! receive has a deadline variant. [`wait`] tells which of several ends (or child sentinels)
//! are ready. [`Listener`] and [`Client`] connect unrelated processes over a local socket or
//! TCP, after a mutual HMAC-SHA256 challenge.
//!
//! ```
//! let (mut a, mut b) = mproc_pipe::pipe::<String>()?;
//! a.send(&"ping".to_string())?;
//! assert_eq!(b.recv()?, "ping");
//! b.send(&"pong".to_string())?;
//! assert_eq!(a.recv()?, "pong");
//! # Ok::<(), mproc_pipe::Error>(())
//! ```
#![warn(missing_docs)]
#![forbid(unsafe_code)]

mod auth;
mod connection;
mod error;
mod listener;
mod wait;

pub use connection::{Connection, Receiver, Sender, channel, duplex, pipe};
pub use error::{Error, ErrorKind, Result};
pub use listener::{Address, Client, Listener};
pub use wait::{Waitable, wait};
