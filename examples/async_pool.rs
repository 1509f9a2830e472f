//! An async server that pushes the CPU part of each request to a process pool and
//! `.await`s it: Python's `await loop.run_in_executor(ProcessPoolExecutor(), f, x)`.
//!
//! A tokio runtime with a single thread serves a TCP port on 127.0.0.1; a few client tasks
//! of the same program connect and ask "how many primes below N?". Each answer is a
//! CPU-heavy count, run in the pool's worker processes; while they compute, the runtime's
//! only thread keeps serving (a heartbeat task counts its ticks), since awaiting a pool
//! result blocks no thread: the pool's own result thread wakes the task.
//!
//! `cargo run --release --example async_pool`

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};

/// The CPU part of a request: how many primes lie below `n`, by trial division.
fn primes_below(n: u64) -> u64 {
    (2..n)
        .filter(|&k| (2..).take_while(|d| d * d <= k).all(|d| k % d != 0))
        .count() as u64
}

const CLIENTS: u64 = 4;
const REQUESTS_PER_CLIENT: u64 = 3;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

fn main() -> Result<(), BoxError> {
    mproc::init();
    let workers = mproc::cpu_count().max(2);
    let pool = Arc::new(mproc::Pool::new(workers)?);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let answers = runtime.block_on(run(pool, workers))?;
    // The same counts, computed here, outside the runtime (a loop this long would stall it).
    let all_match = answers.iter().all(|&(n, count)| primes_below(n) == count);
    println!("every answer matches the serial count: {all_match}");
    Ok(())
}

/// Serves the clients' requests and returns their answers, as `(n, count)`.
async fn run(pool: Arc<mproc::Pool>, workers: usize) -> Result<Vec<(u64, u64)>, BoxError> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    println!("a tokio server (one runtime thread) on {addr}; the counting runs in Pool({workers})");

    tokio::spawn(serve(listener, pool.clone()));
    let ticks = Arc::new(AtomicU64::new(0));
    let heartbeat = tokio::spawn(heartbeat(ticks.clone()));

    let t0 = Instant::now();
    let clients: Vec<_> = (0..CLIENTS)
        .map(|c| tokio::spawn(client(addr, c)))
        .collect();
    let mut answers = Vec::new();
    for c in clients {
        answers.extend(c.await??);
    }
    let elapsed = t0.elapsed();
    heartbeat.abort();

    println!(
        "served {} requests from {CLIENTS} clients in {:.0} ms",
        answers.len(),
        elapsed.as_secs_f64() * 1e3
    );
    println!(
        "meanwhile the runtime's only thread stayed free: the heartbeat ticked {} times",
        ticks.load(Ordering::Relaxed)
    );
    Ok(answers)
}

/// Accepts connections, one task each.
async fn serve(listener: TcpListener, pool: Arc<mproc::Pool>) {
    loop {
        let Ok((socket, _)) = listener.accept().await else {
            return;
        };
        tokio::spawn(answer(socket, pool.clone()));
    }
}

/// Answers each line "N" of one connection with "N COUNT", the count computed in the pool.
async fn answer(socket: TcpStream, pool: Arc<mproc::Pool>) -> Result<(), BoxError> {
    let (read, mut write) = socket.into_split();
    let mut lines = BufReader::new(read).lines();
    while let Some(line) = lines.next_line().await? {
        let n: u64 = line.trim().parse()?;
        // The CPU part goes to a worker process; this task sleeps until the pool wakes it.
        let count = pool.apply_async(primes_below, n)?.await?;
        write.write_all(format!("{n} {count}\n").as_bytes()).await?;
    }
    Ok(())
}

/// Connects, asks its questions one after another, and returns the answers.
async fn client(addr: std::net::SocketAddr, id: u64) -> Result<Vec<(u64, u64)>, BoxError> {
    let (read, mut write) = TcpStream::connect(addr).await?.into_split();
    let mut lines = BufReader::new(read).lines();
    let mut answers = Vec::new();
    for r in 0..REQUESTS_PER_CLIENT {
        let n = 50_000 + 15_000 * (id * REQUESTS_PER_CLIENT + r);
        write.write_all(format!("{n}\n").as_bytes()).await?;
        let reply = lines.next_line().await?.ok_or("the server hung up")?;
        let (echoed, count) = reply.split_once(' ').ok_or("a malformed reply")?;
        if echoed.parse::<u64>()? != n {
            return Err("the reply answers another question".into());
        }
        let count: u64 = count.parse()?;
        println!("  client {id}: primes below {n}: {count}");
        answers.push((n, count));
    }
    Ok(answers)
}

/// Counts ticks every millisecond: it runs only when the runtime's thread is free.
async fn heartbeat(ticks: Arc<AtomicU64>) {
    let mut every = tokio::time::interval(Duration::from_millis(1));
    loop {
        every.tick().await;
        ticks.fetch_add(1, Ordering::Relaxed);
    }
}
