//! MPI for `cargo xtask`: `install` makes sure MPICH is there, `job` runs under `mpiexec`.
//!
//! rsmpi (the `mpi` crate that `mproc-mpi` builds on) finds MPICH through `pkg-config` and
//! generates its bindings with bindgen, which loads libclang; `mpiexec` (MPICH's hydra)
//! launches the ranks. On Debian these are the packages `mpich`, `libmpich-dev`,
//! `libclang-dev` and `pkg-config`.

mod install;
// Used by the run of `examples/mpi_pool.rs` under `mpiexec -n 3` (issue 19); tested here.
#[allow(dead_code)]
mod job;

pub use install::ensure_installed;
#[allow(unused_imports)]
pub use job::run;
