//! Instruction counts of the hot paths under `valgrind --tool=callgrind` (`--instructions`):
//! the one figure that a noisy machine does not move.
//!
//! The bench re-runs itself as `valgrind --tool=callgrind <bench> --instr <path> <n>`: that
//! process sets the path up, then runs `n` operations inside [`measured_ops`], the only
//! function callgrind collects in (`--collect-atstart=no --toggle-collect`), so process
//! start and setup are left out. It runs twice, with `n` and `2n` operations, and the
//! figure is `(count(2n) - count(n)) / n`: whatever `measured_ops` does once (its call, a
//! buffer's first growth) cancels out. Only user-space instructions are counted; a system
//! call's kernel side is not (the pipe's figure counts the code around `sendmsg`/`recvmsg`).

use std::hint::black_box;
use std::path::Path;
use std::process::Command;

use mproc::{Lock, Queue, Value};

use crate::sync::FutexMutex;

/// The flag of the process that valgrind runs: `--instr <path> <n>`.
pub const FLAG: &str = "--instr";

/// The operations per run: the second run does twice as many.
const OPS: u64 = 10_000;

/// The hot paths, as the keys their counts go under: `instructions.<path>`.
pub const KEYS: [&str; 6] = [
    "instructions.lock_unlock",
    "instructions.value_lock_unlock",
    "instructions.floor_futex_lock_unlock",
    "instructions.queue_put_get_small",
    "instructions.pipe_send_recv_small",
    "instructions.encode_small",
];

/// A small struct, as a message of a few fields is.
#[derive(serde::Serialize)]
struct Small {
    id: u64,
    x: f64,
    ok: bool,
    tag: [u8; 4],
}

/// The value every operation moves: the same each time (a loop index would grow from a
/// one-byte varint to a three-byte one, and the run of `2n` would cost more per operation
/// than the run of `n`).
const SMALL: u64 = 42;

/// Runs `op` `n` times on [`SMALL`]: the function callgrind collects in, and nothing else.
/// Not inlined, so that its name is in the binary for `--toggle-collect`.
#[inline(never)]
fn measured_ops<F: FnMut(u64)>(n: u64, mut op: F) {
    for _ in 0..n {
        op(black_box(SMALL));
    }
}

/// The process under valgrind (`args`: `--instr <path> <n>`): sets up `path`, then runs
/// `n` of its operations in [`measured_ops`]. Returns whether the path was known and every
/// result right.
pub fn child_main(args: &[String]) -> bool {
    let (Some(path), Some(Ok(n))) = (args.get(2), args.get(3).map(|n| n.parse::<u64>())) else {
        return false;
    };
    match path.as_str() {
        // What `lock_uncontended_ns` times: a `Lock`'s guard taken and dropped.
        "lock_unlock" => {
            let lock = Lock::new().expect("lock");
            measured_ops(n, |_| drop(black_box(lock.lock().expect("lock"))));
            !lock.is_locked()
        }
        // What `lock_value_ops_per_s` does per increment, without a rival.
        "value_lock_unlock" => {
            let v = Value::new(0u64).expect("value");
            measured_ops(n, |_| *v.lock().expect("lock") += 1);
            v.get().expect("get") == n
        }
        // The floor of both: a bare futex mutex (`floor.futex_lock_ns`).
        "floor_futex_lock_unlock" => {
            let m = FutexMutex::new();
            measured_ops(n, |_| {
                m.lock();
                black_box(&m);
                m.unlock();
            });
            true
        }
        // One process, both sides: a u64 put, then got.
        "queue_put_get_small" => {
            let q = Queue::<u64>::new().expect("queue");
            let mut ok = true;
            measured_ops(n, |x| {
                q.put(x).expect("put");
                ok &= q.get().expect("get") == x;
            });
            ok
        }
        // A connected pair in one process: the message `pipe_rtt_us` sends, one way.
        "pipe_send_recv_small" => {
            let (mut a, mut b) = mproc::pipe::<Option<u64>>().expect("pipe");
            let mut ok = true;
            measured_ops(n, |x| {
                a.send(&Some(x)).expect("send");
                ok &= b.recv().expect("recv") == Some(x);
            });
            ok
        }
        // A small struct serialized into a reused buffer.
        "encode_small" => {
            let mut buf = Vec::new();
            let mut ok = true;
            measured_ops(n, |x| {
                buf.clear();
                let value = Small {
                    id: x,
                    x: 1.5,
                    ok: true,
                    tag: *b"mprc",
                };
                let fds = mproc::wire::encode_into(black_box(&value), &mut buf).expect("encode");
                ok &= fds.is_empty() && !black_box(&buf).is_empty();
            });
            ok
        }
        _ => false,
    }
}

/// Whether valgrind can be run here.
pub fn available() -> bool {
    Command::new("valgrind")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
}

/// Counts the instructions per operation of each of `KEYS`, in order: `None` where a run
/// failed (its error is printed).
pub fn measure() -> Vec<(&'static str, Option<f64>)> {
    let exe = std::env::current_exe().expect("the bench's own path");
    KEYS.iter()
        .map(|&key| {
            let path = key.trim_start_matches("instructions.");
            let per_op = count(&exe, path, OPS).and_then(|once| {
                let twice = count(&exe, path, 2 * OPS)?;
                Ok((twice as f64 - once as f64) / OPS as f64)
            });
            match per_op {
                Ok(x) => (key, Some(x)),
                Err(e) => {
                    eprintln!("{key}: {e}");
                    (key, None)
                }
            }
        })
        .collect()
}

/// The instructions callgrind counted inside `measured_ops` in one run of `n` operations.
fn count(exe: &Path, path: &str, n: u64) -> Result<u64, String> {
    let out_file = std::env::temp_dir().join(format!(
        "mproc-bench-callgrind-{}-{path}-{n}.out",
        std::process::id()
    ));
    // The same environment every run (only PATH): its size moves the stack, and with it
    // the constant part of a count.
    let out = Command::new("valgrind")
        .env_clear()
        .envs(std::env::var_os("PATH").map(|p| ("PATH", p)))
        .arg("--tool=callgrind")
        .arg(format!("--callgrind-out-file={}", out_file.display()))
        .arg("--collect-atstart=no")
        .arg("--toggle-collect=*instructions::measured_ops*")
        .arg(exe)
        .args([FLAG, path, &n.to_string()])
        .output()
        .map_err(|e| format!("cannot run valgrind: {e}"))?;
    let text = std::fs::read_to_string(&out_file);
    let _ = std::fs::remove_file(&out_file);
    if !out.status.success() {
        return Err(format!(
            "valgrind failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    let text = text.map_err(|e| format!("no callgrind output: {e}"))?;
    // `totals:` (or, in older versions, `summary:`) holds the events collected: Ir only.
    let total = text
        .lines()
        .find_map(|l| {
            l.strip_prefix("totals:")
                .or_else(|| l.strip_prefix("summary:"))
        })
        .and_then(|v| v.trim().parse::<u64>().ok())
        .ok_or("no totals in callgrind's output")?;
    if total == 0 {
        return Err("callgrind collected nothing (was measured_ops renamed?)".into());
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(path: &str, n: &str) -> Vec<String> {
        ["mproc-bench", FLAG, path, n].map(String::from).to_vec()
    }

    /// Every path runs and gets its results right, without valgrind (quick: 100 operations).
    #[test]
    fn every_path_runs_and_checks_its_results() {
        for key in KEYS {
            let path = key.trim_start_matches("instructions.");
            assert!(child_main(&args(path, "100")), "{path}");
        }
    }

    #[test]
    fn an_unknown_path_or_a_bad_count_fails() {
        assert!(!child_main(&args("no_such_path", "100")));
        assert!(!child_main(&args("lock_unlock", "many")));
        assert!(!child_main(&args("lock_unlock", "")[..3]));
    }
}
