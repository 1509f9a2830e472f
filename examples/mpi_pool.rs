//! Level 3's pool work spread over the ranks of an MPI job: a CPU-heavy map, a task that
//! aborts its worker, one that panics and one past its timeout, each failing alone while
//! the ranks serve on. Every task says which rank and host ran it.
//!
//! ```sh
//! cargo build --release --features mpi --example mpi_pool
//! mpiexec -n 3 target/release/examples/mpi_pool     # rank 0 and two worker ranks
//! ```
//!
//! Run without `mpiexec`, it says how to run it and exits with status 2.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use mproc::MpiPool;

/// How many primes lie below `n`, by trial division (level 3's CPU-heavy function).
fn primes_below(n: u64) -> u64 {
    (2..n)
        .filter(|&k| (2..).take_while(|d| d * d <= k).all(|d| k % d != 0))
        .count() as u64
}

/// This process's MPI rank: `mpiexec` sets `PMI_RANK` in each rank's environment, and a
/// rank's local pool workers inherit it.
fn rank() -> u32 {
    std::env::var("PMI_RANK")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(0)
}

/// This host's name.
fn host() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_else(|_| "(unknown host)".into())
}

/// `primes_below(n)`, with the rank and host that computed it.
fn primes_where(n: u64) -> (u32, String, u64) {
    (rank(), host(), primes_below(n))
}

/// Sleeps `ms` and returns it; 0 aborts the worker process mid-task.
fn nap_or_die(ms: u64) -> u64 {
    if ms == 0 {
        std::process::abort();
    }
    std::thread::sleep(Duration::from_millis(ms));
    ms
}

/// Panics on 13, returns other numbers doubled.
fn double_but_not_13(x: u32) -> u32 {
    assert!(x != 13, "13 is unlucky");
    2 * x
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    mproc::init();
    // Every rank runs the code above this line; the worker ranks serve tasks inside init
    // and exit there, so the rest of main runs on rank 0 only.
    let mpi = mproc::mpi::init()?;
    if mpi.workers() == 0 {
        eprintln!(
            "mpi_pool needs worker ranks: run it under MPI's launcher, e.g.\n  \
             mpiexec -n 3 target/release/examples/mpi_pool"
        );
        std::process::exit(2);
    }
    println!(
        "== MPI: {} ranks (rank 0 on {} and {} worker ranks) ==",
        mpi.size(),
        mpi.host(),
        mpi.workers()
    );
    primes_on_ranks(&mpi)?;
    failures_alone(&mpi)?;
    Ok(())
}

/// Maps the primes over the worker ranks, against a serial loop on rank 0.
fn primes_on_ranks(mpi: &mproc::mpi::Mpi) -> Result<(), Box<dyn std::error::Error>> {
    let inputs: Vec<u64> = (0..16).map(|i| 100_000 + i * 1_000).collect();
    let t0 = Instant::now();
    let serial: Vec<u64> = inputs.iter().map(|&n| primes_below(n)).collect();
    let serial_time = t0.elapsed();

    let pool = MpiPool::new(mpi)?;
    // A first small map: each worker rank starts its local pool's process for it.
    pool.map(primes_below, [10, 10])?;
    let t0 = Instant::now();
    let spread = pool.map(primes_where, inputs.clone())?;
    let pool_time = t0.elapsed();
    let counts: Vec<u64> = spread.iter().map(|(_, _, c)| *c).collect();
    assert_eq!(counts, serial, "the ranks compute what the loop computes");
    println!(
        "  MpiPool.map over {} inputs: {:.0} ms; the serial loop on rank 0: {:.0} ms ({:.1}x)",
        inputs.len(),
        pool_time.as_secs_f64() * 1e3,
        serial_time.as_secs_f64() * 1e3,
        serial_time.as_secs_f64() / pool_time.as_secs_f64()
    );
    println!("  primes below 100000: {}", counts[0]);
    let mut per_rank: BTreeMap<(u32, String), usize> = BTreeMap::new();
    for (rank, host, _) in &spread {
        *per_rank.entry((*rank, host.clone())).or_default() += 1;
    }
    for ((rank, host), n) in &per_rank {
        println!("  rank {rank} on {host} ran {n} tasks");
    }
    let ranks: Vec<u32> = per_rank.keys().map(|(r, _)| *r).collect();
    println!("  ranks that ran tasks: {ranks:?}");
    pool.close();
    pool.join()?;
    Ok(())
}

/// Tasks that abort, panic or run too long fail alone; the ranks serve on.
fn failures_alone(mpi: &mproc::mpi::Mpi) -> Result<(), Box<dyn std::error::Error>> {
    let pool = MpiPool::builder()
        .task_timeout(Duration::from_secs(2))
        .build(mpi)?;
    let started: Vec<_> = [20, 0, 20, 20]
        .into_iter()
        .map(|ms| pool.apply_async(nap_or_die, ms))
        .collect::<Result<_, _>>()?;
    let outcomes: Vec<String> = started
        .into_iter()
        .map(|r| match r.get() {
            Ok(_) => "ok".to_string(),
            Err(e) => format!("{:?}", e.kind()),
        })
        .collect();
    println!(
        "  the second task aborts its worker: [{}]",
        outcomes.join(", ")
    );
    let e = pool
        .map_chunked(double_but_not_13, 10..16, 1)
        .expect_err("item 13 panics");
    println!(
        "  a task panics: {:?} at item {:?} ({})",
        e.kind(),
        e.index(),
        e.panic_message().unwrap_or_default()
    );
    let e = pool
        .apply(nap_or_die, 60_000)
        .expect_err("past the timeout");
    println!("  a task past its 2 s timeout: {:?}", e.kind());
    println!(
        "  the pool goes on: {:?}",
        pool.map(primes_below, [10, 20, 30])?
    );
    pool.close();
    pool.join()?;
    println!("  pool closed and joined; the worker ranks stop when rank 0 ends");
    Ok(())
}
