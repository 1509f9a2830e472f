#![doc = include_str!("../README.md")]
#![warn(missing_docs)]

#[cfg(not(target_os = "linux"))]
compile_error!("mproc currently supports Linux only; see the README's platform section");

mod alloc;
#[cfg(feature = "tokio")]
mod async_fd;
mod build_id;
mod causes;
mod children;
mod clock;
mod eventfd;
mod fd;
mod fn_token;
mod fork;
mod fork_lock;
pub mod fork_order;
mod futex;
mod lock_word;
mod memfd;
mod peers;
mod process;
mod random;
mod raw_mutex;
mod readiness;
mod retire;
mod robust_list;
mod sealed;
mod shm;
mod socket;
mod socket_io;
mod spawn_self;
mod stack;
mod tracker;

pub use alloc::keep_freed_memory;
#[cfg(feature = "tokio")]
pub use async_fd::{ReactorFd, register_async};
pub use causes::with_causes;
pub use children::{
    ECHILD, ExitStatus, SIGKILL, SIGTERM, kill_pid, pidfd_open, pidfd_send_signal, wait_pid,
    wait_pidfd,
};
pub use clock::{deadline_after, monotonic_ns};
pub use eventfd::{eventfd, eventfd_read, eventfd_signal, is_eventfd};
pub use fd::{
    FdKind, fd_kind, file_identity, file_size, open_fd_count, set_cloexec, take_inherited_socket,
};
pub use fn_token::{FnAt, FnPtr, FnRef, FnToken, Thunk, build_fingerprint};
pub use fork::{ForkOutcome, ForkPermit, at_fork, exit_now, fork};
pub use fork_lock::{ForkLock, ForkLockGuard};
pub use futex::{FutexWait, futex_wait, futex_wake};
pub use memfd::{is_memfd, is_size_sealed, memfd_create, seal_size};
pub use peers::{
    current_identity, is_hung_up, is_running, open_pipe_writer, pid_namespace, pipe,
    process_identity,
};
pub use process::{
    Pid, at_exit, getpid, getppid, set_cpu_affinity, set_env_var, set_parent_death_signal,
    stdin_from_null, take_env_var, thread_count,
};
pub use random::random_bytes;
pub use raw_mutex::{LockStatus, NotOwner, RawMutex};
pub use readiness::{poll_readable, wait_readable, wait_writable};
pub use retire::{retire_owned_fds_except, track_owned_fd, untrack_owned_fd};
pub use robust_list::{robust_locks_supported, thread_id};
pub use sealed::{SealedBytes, SealedWriter};
pub use shm::markers::{ShmAtomic, ShmSafe};
pub use shm::named::{
    shm_create, shm_open_existing, shm_rename_noreplace, shm_temporary_name, shm_unlink,
};
pub use shm::pinned::{Pinned, PinnedPlain};
pub use shm::region::{LOCK_SLOT, LockSlot, Region};
pub use socket::{
    peer_pid, send_buffer_size, seqpacket_pair, set_send_buffer, set_tcp_keepalive, socketpair,
};
pub use socket_io::{
    FdsNotReceived, MAX_FDS_PER_MSG, fds_not_received, peek, recv_append, recv_append_slice,
    recv_with_at_most_fds, recv_with_fds, send_vectored_with_fds, send_with_fds,
};
pub use spawn_self::SpawnSelf;
pub use stack::stack_bounds;
#[cfg(fuzzing)]
#[doc(hidden)]
pub use tracker::fuzz_requests as fuzz_tracker_requests;
pub use tracker::{FileId, Tracker};
