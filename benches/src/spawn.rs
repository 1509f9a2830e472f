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
