//! The spawn benchmarks' parts: a child started with each start method, beside the floors of
//! `posix_spawn` (our own executable) or `fork`, each waited for.

use mproc::{Builder, StartMethod};
use mproc_sys::{ForkOutcome, SpawnSelf};

/// Set in the environment of the floor's child: it exits at the top of `main`.
pub const FLOOR_ENV: &str = "MPROC_BENCH_FLOOR";

fn ident(x: u64) -> u64 {
    x
}

/// The floor of spawn: `posix_spawn` of our own executable, which exits at once, and wait.
pub fn exec_self_floor() {
    let pid = SpawnSelf::new()
        .env(FLOOR_ENV, "1")
        .spawn()
        .expect("posix_spawn");
    let st = mproc_sys::wait_pid(pid, true).expect("waitpid");
    assert_eq!(st, Some(mproc::ExitStatus::Code(0)));
}

/// The floor of fork: fork, `_exit(0)` in the child, waitpid in the parent.
pub fn fork_wait_floor() {
    match mproc_sys::fork(None).expect("fork") {
        ForkOutcome::Child => mproc_sys::exit_now(0),
        ForkOutcome::Parent(pid) => {
            mproc_sys::wait_pid(pid, true).expect("waitpid");
        }
    }
}

/// Starts a child with `method` running `ident`, joins it, checks the result.
pub fn spawn_join(method: StartMethod, x: u64) -> bool {
    let mut c = Builder::new()
        .start_method(method)
        .spawn(ident, x)
        .expect("spawn");
    c.join().expect("join") == x
}

/// The floor of a fork server: a process forked from this one that, for each byte it reads
/// on its socket, forks a child that `_exit(0)`s at once, waits for it, and writes the byte
/// back. A request, a fork of a process as small as mproc's server (both are copies of this
/// bench), an exit, and the answer: what any fork server costs before it does any work of
/// its own.
pub struct ForkServerFloor {
    socket: std::os::unix::net::UnixStream,
    pid: u32,
}

impl ForkServerFloor {
    /// Forks the server (call it while this process has one thread).
    pub fn start() -> Self {
        let (ours, theirs) = mproc_sys::socketpair().expect("socketpair");
        match mproc_sys::fork(None).expect("fork") {
            ForkOutcome::Child => {
                drop(ours);
                serve_floor(theirs.into())
            }
            ForkOutcome::Parent(pid) => ForkServerFloor {
                socket: ours.into(),
                pid,
            },
        }
    }

    /// One start and join: a byte there, the byte back once the server's child has ended.
    pub fn round(&mut self) {
        use std::io::{Read, Write};
        let mut b = [1u8];
        self.socket.write_all(&b).expect("fork server floor: write");
        self.socket
            .read_exact(&mut b)
            .expect("fork server floor: read");
    }
}

impl Drop for ForkServerFloor {
    fn drop(&mut self) {
        let _ = self.socket.shutdown(std::net::Shutdown::Both);
        let _ = mproc_sys::wait_pid(self.pid, true);
    }
}

/// The floor server's loop; exits when the bench closes its socket.
fn serve_floor(mut socket: std::os::unix::net::UnixStream) -> ! {
    use std::io::{Read, Write};
    let mut b = [0u8];
    while socket.read_exact(&mut b).is_ok() {
        match mproc_sys::fork(None) {
            Ok(ForkOutcome::Child) => mproc_sys::exit_now(0),
            Ok(ForkOutcome::Parent(pid)) => {
                let _ = mproc_sys::wait_pid(pid, true);
            }
            Err(_) => b[0] = 0,
        }
        if socket.write_all(&b).is_err() {
            break;
        }
    }
    mproc_sys::exit_now(0)
}
