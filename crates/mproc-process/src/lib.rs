#![doc = include_str!("../README.md")]
#![warn(missing_docs)]
#![deny(unsafe_code)] // one audited exception: the child's trust boundary in boot.rs

mod boot;
mod child;
mod diag;
mod error;
mod forkserver;
mod info;
mod spawn;

#[doc(hidden)]
pub use boot::__init_before_main;
pub use boot::{catch_panic, init};
pub use child::{Child, active_children, kill_all_children, wait_any};
pub use error::{Error, ErrorKind, Result};
pub use forkserver::{ForkServer, fork_server_pid};
pub use info::{
    ParentProcess, ProcessInfo, cpu_count, current_process, parent_process, process_cpu_count,
};
pub use mproc_sys::{ExitStatus, ForkPermit};
pub use spawn::{
    Builder, StartMethod, UnknownStartMethod, get_start_method, set_start_method, spawn,
};
