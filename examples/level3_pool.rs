//! Level 3: a pool of worker processes maps a function over a range, faster than a serial
//! loop; and a worker that dies mid-task costs that task only (Python's `Pool.map` would
//! hang for ever). Then Python's `concurrent.futures` on the same pool: `submit` returns a
//! handle, `as_completed` yields the handles as their tasks finish, and one task's dead
//! worker does not break the executor (Python's `BrokenProcessPool`).
//!
//! `cargo run --release --example level3_pool`

use std::time::{Duration, Instant};

/// A deliberately CPU-heavy function: how many primes lie below `n`, by trial division.
fn primes_below(n: u64) -> u64 {
    (2..n)
        .filter(|&k| (2..).take_while(|d| d * d <= k).all(|d| k % d != 0))
        .count() as u64
}

/// Sleeps `ms` and returns the worker's pid; 0 aborts the worker mid-task.
fn nap_or_die(ms: u64) -> u32 {
    if ms == 0 {
        std::process::abort();
    }
    std::thread::sleep(Duration::from_millis(ms));
    std::process::id()
}

/// Sleeps `ms` and returns it.
fn nap(ms: u64) -> u64 {
    std::thread::sleep(Duration::from_millis(ms));
    ms
}

/// Runs level 3 and checks what it shows.
pub fn run() -> mproc::Result<()> {
    mproc_examples::heading(3, "a pool with map");
    let inputs: Vec<u64> = (0..16).map(|i| 100_000 + i * 1_000).collect();

    let t0 = Instant::now();
    let serial: Vec<u64> = inputs.iter().map(|&n| primes_below(n)).collect();
    let serial_time = t0.elapsed();

    let workers = mproc::cpu_count().max(2);
    let pool = mproc::Pool::new(workers)?;
    let t0 = Instant::now();
    let parallel = pool.map(primes_below, inputs.clone())?;
    let pool_time = t0.elapsed();
    assert_eq!(parallel, serial, "the pool computes what the loop computes");
    println!(
        "  Pool({workers}).map over {} inputs: {:.0} ms; the serial loop: {:.0} ms ({:.1}x)",
        inputs.len(),
        pool_time.as_secs_f64() * 1e3,
        serial_time.as_secs_f64() * 1e3,
        serial_time.as_secs_f64() / pool_time.as_secs_f64()
    );
    println!("  primes below 100000: {}", parallel[0]);

    let outcomes: Vec<String> = pool
        .imap(nap_or_die, [20, 0, 20, 20])
        .map(|r| match r {
            Ok(_) => "ok".to_string(),
            Err(e) => format!("{:?}", e.kind()),
        })
        .collect();
    println!(
        "  the second task aborts its worker: [{}]",
        outcomes.join(", ")
    );
    println!(
        "  the pool goes on: {:?}",
        pool.map(primes_below, [10, 20, 30])?
    );
    pool.close();
    pool.join()?;
    println!("  pool closed and joined: every worker ended");

    let executor = mproc::pool::Executor::new(2)?;
    let tasks = [
        executor.submit(nap, 600)?,
        executor.submit(nap, 20)?,
        executor.submit(nap, 150)?,
    ];
    let mut finished = Vec::new();
    for task in mproc::pool::as_completed(&tasks, Some(Duration::from_secs(60))) {
        finished.push(task?.result()?);
    }
    println!("  Executor(2): submit naps of 600, 20, 150 ms; as_completed yields {finished:?}");
    assert_eq!(finished, [20, 150, 600]);
    let dead = executor.submit(nap_or_die, 0)?.result().unwrap_err();
    let after = executor.submit(nap, 1)?.result()?;
    println!(
        "  a task whose worker aborts fails alone ({:?}); the next submit returns {after}",
        dead.kind()
    );
    let in_order: Vec<u64> = executor
        .map(nap, [30, 10, 20], None, 1)
        .collect::<Result<_, _>>()?;
    println!("  executor.map keeps the order: {in_order:?}");
    println!("  async: an AsyncResult is a Future; see `cargo run --example async_pool`");
    assert_eq!(in_order, [30, 10, 20]);
    executor.shutdown(true, false)?;
    Ok(())
}

#[allow(dead_code)]
fn main() -> mproc::Result<()> {
    mproc::init();
    run()
}
