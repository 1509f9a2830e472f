//! The messages between rank 0 and the worker ranks, and how they are encoded (postcard).
//!
//! The first variant of each enum never changes (`Stop`, `Hello`): a rank of another
//! build still reads it, so a build mismatch ends in order.

use std::time::Duration;

use mproc_pool::relay::{RelayOutcome, RelayTask};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

/// From rank 0 to a worker rank.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) enum ToWorker {
    /// End: drop every local pool, say `Bye`, finalize MPI and exit.
    Stop,
    /// Start local pool `pool` of `processes` children (with a task timeout).
    Open {
        pool: u32,
        processes: u32,
        task_timeout: Option<Duration>,
    },
    /// Run `task` in local pool `pool`; answer `Done { id }`.
    Task { pool: u32, id: u64, task: RelayTask },
    /// End local pool `pool` (its tasks are done, or no longer wanted).
    ClosePool { pool: u32 },
}

/// From a worker rank to rank 0.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) enum ToRoot {
    /// The first message of a worker: which build it runs, on which host.
    Hello { fingerprint: u64, host: String },
    /// Task `id` ended so.
    Done { id: u64, outcome: RelayOutcome },
    /// The last message of a worker, after `Stop`.
    Bye,
}

pub(crate) fn encode<T: Serialize>(message: &T) -> Vec<u8> {
    // Every message is plain data (no fds, no maps with odd keys): postcard cannot fail on
    // it short of running out of memory, which aborts anyway.
    postcard::to_stdvec(message).unwrap_or_default()
}

/// Decodes a message from another rank; `None` for bytes that are not one.
pub(crate) fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Option<T> {
    postcard::from_bytes(bytes).ok()
}
