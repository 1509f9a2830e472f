//! mproc's pool over MPI ranks.
