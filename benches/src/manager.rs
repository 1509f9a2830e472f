//! The manager benchmarks: a child process calling a manager's list and dict one operation
//! at a time, as Python's `manager.list().append(i)` and `d[i] = v; d.get(i)` do. The child
//! times its own loop (after one untimed call that opens its connection) and returns its
//! rate, so neither the child's start nor the server's is charged to the calls.
//!
//! A call is one round trip between the child and the server, so it is placed as
//! `pipe_rtt_us` places its two ends: the server on CPU 0, the calling child on CPU 1.

use std::time::Instant;

use mproc::manager::{Dict, List};
use nix::sched::{CpuSet, sched_setaffinity};
use nix::unistd::Pid;

/// Items appended, and keys set and read, per round (Python's bench uses the same).
pub const N: u64 = 20_000;

/// The value the dict child stores under key `i`.
fn value_of(i: u64) -> u64 {
    i.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 7
}

/// Starts a manager (under the default start method) whose server runs on CPU 0: every
/// thread it has now, and so every connection thread it starts later, is pinned there.
pub fn start_pinned() -> mproc::Manager {
    let manager = mproc::Manager::start().expect("manager");
    if mproc::cpu_count() > 1 {
        let pid = manager.pid().expect("the owner knows its server");
        let mut cpus = CpuSet::new();
        cpus.set(0).expect("CPU 0");
        for task in std::fs::read_dir(format!("/proc/{pid}/task")).expect("the server's threads") {
            let tid: i32 = task
                .expect("a thread")
                .file_name()
                .to_string_lossy()
                .parse()
                .expect("a thread id");
            sched_setaffinity(Pid::from_raw(tid), &cpus).expect("pinning the server");
        }
    }
    manager
}

/// The list child: `n` appends, one call each; returns calls per second.
fn append_child((list, n): (List<u64>, u64)) -> f64 {
    super::pin(1);
    // Untimed: opens this process's connection to the server.
    assert!(list.is_empty().expect("len"));
    let t0 = Instant::now();
    for i in 0..n {
        list.push(i).expect("push");
    }
    n as f64 / t0.elapsed().as_secs_f64()
}

/// The dict child: sets keys `0..n`, then gets each. One op is one call, an `insert` or a
/// `get`, each a round trip to the server: `2n` of them. Returns calls per second, and
/// whether every insert found its key new and every get returned the value set.
fn set_get_child((dict, n): (Dict<u64, u64>, u64)) -> (f64, bool) {
    super::pin(1);
    assert!(dict.is_empty().expect("len"));
    let mut ok = true;
    let t0 = Instant::now();
    for i in 0..n {
        ok &= dict.insert(i, value_of(i)).expect("insert").is_none();
    }
    for i in 0..n {
        ok &= dict.get(&i).expect("get") == Some(value_of(i));
    }
    (2.0 * n as f64 / t0.elapsed().as_secs_f64(), ok)
}

/// One round on `manager`: (list calls/s, dict calls/s, whether both came out right: the
/// list holds exactly `0..N` in order, and every dict get returned the value set). Each
/// child is started under the default start method.
pub fn round(manager: &mproc::Manager) -> (f64, f64, bool) {
    let list = manager.list::<u64>().expect("list");
    let mut child = mproc::spawn(append_child, (list.clone(), N)).expect("spawn");
    let list_rate = child.join().expect("list child");
    let items = list.to_vec().expect("to_vec");
    let list_ok = items.len() as u64 == N && items.iter().enumerate().all(|(i, &x)| x == i as u64);

    let dict = manager.dict::<u64, u64>().expect("dict");
    let mut child = mproc::spawn(set_get_child, (dict.clone(), N)).expect("spawn");
    let (dict_rate, child_ok) = child.join().expect("dict child");
    let dict_ok = child_ok && dict.len().expect("len") as u64 == N;
    (list_rate, dict_rate, list_ok && dict_ok)
}
