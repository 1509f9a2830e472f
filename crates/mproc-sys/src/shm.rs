//! Memory shared between processes, one job per file:
//!
//! - [`region`]: `Region`, a mapping of a whole memfd or `/dev/shm` file, and the
//!   `LockSlot`s of a lock region;
//! - [`markers`]: `ShmSafe` and `ShmAtomic`, the types that may be copied in and out of a
//!   region or lent from it by reference;
//! - [`mapped_files`]: the registry that keeps a file from being mapped both as locks and
//!   as data;
//! - [`pinned`]: `Pinned`, one value lent together with its mapping;
//! - [`named`]: creating, opening and unlinking `/dev/shm` segments by name.

pub(crate) mod mapped_files;
pub(crate) mod markers;
pub(crate) mod named;
pub(crate) mod pinned;
pub(crate) mod region;
