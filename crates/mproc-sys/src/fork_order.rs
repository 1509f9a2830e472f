//! The order in which every `fork` of the process takes the [`ForkLock`](crate::ForkLock)s:
//! their ranks, lowest first, written down once for every crate of mproc.
//!
//! A fork takes every fork lock this process has used, lowest rank first, and waits for each.
//! So a thread that holds two fork locks at once must have taken them in this order too, or
//! it and a forking thread could each wait for the other's lock. Two locks of one rank are
//! never held at once.
//!
//! Before any of these, mproc-process takes its own locks around the forks it makes itself,
//! not in a fork handler (`ForkGuards` in `mproc-process/src/spawn/fork.rs`): the fork server
//! connection, the child registry, the current process and the reply socket. So none of
//! those may be taken while a fork lock is held.
//!
//! ```
//! use mproc_sys::fork_order;
//! assert!(fork_order::ARENA_CURSORS < fork_order::ARENA_CHUNKS);
//! assert!(fork_order::ARENA_CHUNKS < fork_order::MAPPED_FILES);
//! ```

/// mproc-shm: the arena's cursors (the chunk that blocks, and the one that locks, are
/// carved from next). A new chunk is made, and recorded in the chunk cache, while they are
/// held.
pub const ARENA_CURSORS: u32 = 10;

/// mproc-shm: the arena's chunk cache (the chunks mapped in this process, by file
/// identity). A received chunk is mapped while it is held.
pub const ARENA_CHUNKS: u32 = 20;

/// mproc-sys: the registry of mapped files (whether each is mapped as locks or as data),
/// taken by every mapping and unmapping of a file.
pub const MAPPED_FILES: u32 = 30;

/// mproc-shm: the tracker of named segments and the names registered with it.
pub const SEGMENT_TRACKING: u32 = 40;
