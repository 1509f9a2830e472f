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
