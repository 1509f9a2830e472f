//! The spawn method: this executable run again, the child's socket at a fixed fd.

use std::os::fd::{AsFd, AsRawFd, OwnedFd};

use super::Builder;
use crate::error::{Error, Result};
use crate::protocol;

impl Builder {
    /// The spawn method: `posix_spawn` of our executable with the socket at a fixed fd.
    pub(super) fn exec_self(&self, theirs: &OwnedFd) -> Result<(u32, OwnedFd)> {
        // dup2 onto the same number would keep close-on-exec, so pick another one.
        let target = if theirs.as_raw_fd() == protocol::CHILD_FD {
            protocol::CHILD_FD + 1
        } else {
            protocol::CHILD_FD
        };
        let mut cmd = mproc_sys::SpawnSelf::new()
            .env(
                protocol::CHILD_ENV,
                format!("{target}:{}", std::process::id()),
            )
            .pass_fd(theirs.as_fd(), target);
        if let Some(exe) = &self.executable {
            cmd = cmd.executable(exe);
        }
        for (k, v) in &self.env {
            cmd = match v {
                Some(v) => cmd.env(k, v),
                None => cmd.env_remove(k),
            };
        }
        let pid = cmd
            .spawn()
            .map_err(|e| Error::io("starting a child process", e))?;
        let pidfd = mproc_sys::pidfd_open(pid).map_err(|e| Error::io("opening a pidfd", e))?;
        Ok((pid, pidfd))
    }
}
