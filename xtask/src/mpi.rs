//! MPI for `cargo xtask`: `install` makes sure MPICH is there, `job` runs under `mpiexec`,
//! `example` runs the MPI example there.
//!
//! rsmpi (the `mpi` crate that `mproc-mpi` builds on) finds MPICH through `pkg-config` and
//! generates its bindings with bindgen, which loads libclang; `mpiexec` (MPICH's hydra)
//! launches the ranks. On Debian these are the packages `mpich`, `libmpich-dev`,
//! `libclang-dev` and `pkg-config`.

mod example;
mod install;
mod job;

pub use example::{EXAMPLES, run_examples};
pub use install::ensure_installed;
pub use job::run;
