//! Queues shared between processes: [`Queue`], [`SimpleQueue`] and [`JoinableQueue`].
//! Python: `multiprocessing.Queue`, `SimpleQueue`, `JoinableQueue`.
//!
//! Any number of producer and consumer processes (and threads) share one queue of a serde
//! type `T`. Messages are serialized with postcard and copied once into a ring in shared
//! memory; there is no pipe, no feeder thread and no syscall per message while the other
//! side is awake. Waiting spins briefly, then sleeps on a futex; the side that makes
//! progress wakes only those asleep. Every blocking call has `try_*` and `*_timeout` forms.
//!
//! ```
//! use mproc_queue::Queue;
//!
//! let q = Queue::<String>::bounded(16)?;
//! let producer = q.clone(); // or pass it to a child process
//! producer.put("hello".to_string())?;
//! assert_eq!(q.get()?, "hello");
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # Sizes and copies
//!
//! A message up to a quarter of the ring (2 MiB of the default 8 MiB) is copied into the
//! ring by the producer and out of it by the consumer. A larger one is written into a
//! memfd of its own, sealed read-only and passed by fd, and the consumer deserializes
//! straight from that mapping: a 1 GiB message costs one copy in and one copy out, and no
//! ring space. For byte payloads use `serde_bytes::ByteBuf` (or `#[serde(with =
//! "serde_bytes")]`): serde encodes a plain `Vec<u8>` one element at a time.
//!
//! # Robustness
//!
//! A process killed (even by SIGKILL) in the middle of `put` or `get` does not corrupt the
//! queue or block the others: the locks inside are robust, and the ring changes by single
//! stores once a record is complete. At most the message that process was moving is lost.
//! See [`Queue`] for bounds, backpressure and how this differs from Python.
#![warn(missing_docs)]
#![deny(unsafe_code)]

mod error;
mod holders;
mod queue;
mod ring;

pub use error::{Error, ErrorKind, GetError, PutError, Result};
pub use queue::{Builder, JoinableQueue, Queue, SimpleQueue};
