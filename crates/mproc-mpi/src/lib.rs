//! mproc's pool over the ranks of an MPI job: Python's `mpi4py.futures`, with
//! [`mproc_pool::Pool`]'s calls and the isolation of a local pool on every rank.
//!
//! Start the program with `mpiexec -n N ./prog` (or `srun`): call [`init`] right after
//! `mproc::init()` at the top of `main`. Rank 0 goes on with the program; ranks 1 to N-1
//! stay inside `init`, run the tasks of rank 0's [`MpiPool`]s (each in a child of a local
//! pool, so a task that crashes fails alone) and exit when rank 0 drops its [`Mpi`].
//!
//! ```no_run
//! // no_run: needs `mpiexec -n 3 ./prog`.
//! fn square(x: u64) -> u64 { x * x }
//! fn main() -> Result<(), Box<dyn std::error::Error>> {
//!     mproc_process::init();
//!     let mpi = mproc_mpi::init()?; // worker ranks serve here and exit
//!     let pool = mproc_mpi::MpiPool::new(&mpi)?;
//!     assert_eq!(pool.map(square, 0..10)?.iter().sum::<u64>(), 285);
//!     Ok(())
//! }
//! ```
//!
//! # When something dies
//!
//! - **A task** that panics, aborts, segfaults or passes the pool's `task_timeout` fails
//!   alone, with the local pool's error kinds (`Panicked`, `WorkerDied`, `Timeout`): it ran
//!   in a child of its rank's local pool, which replaces the child, and the rank serves on.
//!   (In `mpi4py.futures` such a task takes its worker, and with it the job.)
//! - **A whole rank** (SIGKILL, the OOM killer, a lost host) is MPI's to handle: the
//!   launcher (`mpiexec`, `srun`) ends the whole job, rank 0 included, and exits non-zero
//!   (MPICH: within tens of milliseconds, status 9; tested). No wait of mproc's can outlive
//!   it, and rank 0's own waits (the workers' hello, their goodbye) have deadlines, after
//!   which it aborts the job with a message rather than hang.
//! - **Rank 0's `Mpi` dropped** (the end of `main`): work still outstanding fails with
//!   `Terminated`, the worker ranks end their local pools and exit, and MPI is finalized.
//!
//! # Start methods
//!
//! `init` starts mproc's fork server before MPI is initialised (MPI libraries dislike
//! `fork` after their init) and refuses the fork start method from then on
//! (`mproc_process::refuse_fork`): a worker rank's local pool starts its children through
//! the fork server (or by spawn, if that is the method set), and a fork spawn on rank 0
//! fails with `ForkRefused`.
#![warn(missing_docs)]
#![deny(unsafe_code)]

mod comm;
mod error;
mod init;
mod lazy;
mod pool;
mod protocol;
mod root;
mod task_pool;
mod worker;

pub use error::{Error, ErrorKind};
pub use init::{Mpi, init};
pub use pool::{MpiPool, MpiPoolBuilder};
