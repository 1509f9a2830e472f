//! The executor benchmarks: trivial tasks through `Executor(2)`, each submitted alone and
//! then gathered, by `result` in submission order and by `as_completed`.

use std::time::Instant;

use mproc::pool::{Executor, as_completed};

fn ident(x: u64) -> u64 {
    x
}

/// A warm `Executor(2)`, as the pool's figures use a warm pool: a first round of `n`
/// tasks starts both workers (they start on demand) and touches the pages of their rings.
pub fn warm_executor(n: u64) -> Executor {
    let executor = Executor::new(2).expect("executor");
    for _ in 0..2 {
        submit_rate(&executor, n);
    }
    executor
}

/// `submit(ident, x)` for `x` in `0..n`, then `result()` of each in order: tasks per
/// second, and whether every result came back right.
///
/// The goal reads "submit + result of a trivial task ... ≥ the pool's chunksize1 × 0.8":
/// taken as all submitted first, then every result taken, which is what
/// `pool_map_tasks_per_s.chunksize1` does (one task per item, all sent before any result
/// is read). One submit-then-result at a time would measure a round trip instead.
pub fn submit_rate(executor: &Executor, n: u64) -> (f64, bool) {
    let t0 = Instant::now();
    let tasks: Vec<_> = (0..n)
        .map(|x| executor.submit(ident, x).expect("submit"))
        .collect();
    let values: Vec<u64> = tasks.iter().map(|t| t.result().expect("result")).collect();
    let s = t0.elapsed().as_secs_f64();
    let ok = values.len() as u64 == n && values.iter().enumerate().all(|(i, &v)| v == i as u64);
    (n as f64 / s, ok)
}

/// `submit(ident, x)` for `x` in `0..n`, then the results taken as `as_completed` yields
/// the tasks: tasks per second, and whether every result came back right.
pub fn as_completed_rate(executor: &Executor, n: u64) -> (f64, bool) {
    let t0 = Instant::now();
    let tasks: Vec<_> = (0..n)
        .map(|x| executor.submit(ident, x).expect("submit"))
        .collect();
    let (mut count, mut sum) = (0u64, 0u64);
    for task in as_completed(&tasks, None) {
        sum += task.expect("as_completed").result().expect("result");
        count += 1;
    }
    let s = t0.elapsed().as_secs_f64();
    (n as f64 / s, count == n && sum == n * (n - 1) / 2)
}
