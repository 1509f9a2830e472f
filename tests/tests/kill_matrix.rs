//! The kill matrix: every role of mproc SIGKILLed at seeded random points of its
//! operation, round after round, under the start method named by `MPROC_START_METHOD`.
//! Every other party must get a typed error (or carry on) within a generous bound, with
//! nothing acknowledged lost, nothing delivered twice, and no fd, zombie or `/dev/shm`
//! name left behind.
//!
//! - `MPROC_KILL_SEED=<n>` replays a run (each role prints the seed it drew, and every
//!   assertion message names the seed and the round).
//! - `MPROC_KILL_ROUNDS=<n>` sets the rounds per role (`cargo xtask soak` runs hundreds).
//!
//! The roles run one at a time (each holds a lock while it runs), so that the fd count
//! each checks is its own.

mproc::init_before_main!();

// The roles live in `kill_matrix/`, one file per family (a crate root's modules are
// found beside it, hence the paths).
#[path = "kill_matrix/child.rs"]
mod child;
#[path = "kill_matrix/harness.rs"]
mod harness;
#[path = "kill_matrix/manager.rs"]
mod manager;
#[path = "kill_matrix/pool.rs"]
mod pool;
#[path = "kill_matrix/process.rs"]
mod process;
#[path = "kill_matrix/queue.rs"]
mod queue;
#[path = "kill_matrix/segment.rs"]
mod segment;
#[path = "kill_matrix/sync.rs"]
mod sync;
