#![doc = include_str!("../README.md")]
#![warn(missing_docs)]
#![deny(unsafe_code)] // one audited exception: the child's trust boundary in run.rs

mod child;
mod child_env;
mod cpu;
mod diag;
mod error;
mod forkserver;
#[cfg(fuzzing)]
#[doc(hidden)]
pub mod fuzz;
mod info;
mod init;
mod panic;
mod protocol;
mod run;
mod spawn;
mod start_method;
mod wait;

pub use child::Child;
pub use child::registry::{active_children, kill_all_children};
pub use cpu::{cpu_count, process_cpu_count};
pub use error::{Error, ErrorKind, Result};
pub use forkserver::global::{fork_server_pid, start_fork_server};
pub use forkserver::own::ForkServer;
pub use info::{ParentProcess, ProcessInfo, current_process, parent_process};
#[doc(hidden)]
pub use init::__init_before_main;
pub use init::init;
pub use mproc_sys::{ExitStatus, ForkPermit};
pub use panic::catch_panic;
pub use spawn::{Builder, spawn};
pub use start_method::{
    StartMethod, UnknownStartMethod, get_start_method, refuse_fork, set_start_method,
};
pub use wait::wait_sentinels;
