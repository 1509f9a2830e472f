//! The pool benchmarks: `Pool(2).map` of a trivial function (default chunks, and one item
//! per task), a CPU-bound map against a serial loop in the parent, a pool's start-to-join
//! time, and how fast a worker's SIGKILL becomes its task's error with a replacement
//! serving.

use std::hint::black_box;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use mproc::{Pool, SharedAtomic};

fn ident(x: u64) -> u64 {
    x
}

/// The CPU-bound task of the speed-up figures: `n` steps of a multiply-xorshift chain (as
/// Python's `cpu_task` is `n` steps of a sum of squares), kept in registers.
///
/// A loop that goes through memory each step (`black_box(i)` stores and reloads `i` on the
/// stack) runs at a speed that depends on where each process's stack happens to sit: the
/// same loop was measured here at 14 ms in a pool worker and 22 ms in the parent, or the
/// reverse, which moved the speed-up between 1.5 and 3.2 from one build to the next. The
/// chain below depends on nothing but registers, so every process runs it at the same
/// speed (two copies in parallel here: 1.95-2.0 × one, as two bare C loops).
pub fn cpu_task(n: u64) -> u64 {
    let mut x = black_box(n);
    for i in 0..n {
        x ^= x >> 29;
        x = x.wrapping_mul(0xbf58_476d_1ce4_e5b9).wrapping_add(i);
    }
    x
}

/// Steps per task of the speed-up figures (16 tasks): about half a second of serial work
/// here, long enough that a task's trip and a scheduling hiccup are small beside it.
pub const CPU_WORK: u64 = 16_000_000;
/// The same with `--quick`.
pub const CPU_WORK_QUICK: u64 = 4_000_000;

fn pid(_: u64) -> u32 {
    std::process::id()
}

/// Reports the worker's pid in `started`, then sleeps `ms`.
fn report_then_sleep((started, ms): (SharedAtomic<AtomicU64>, u64)) -> u64 {
    started.store(u64::from(std::process::id()), Ordering::SeqCst);
    std::thread::sleep(Duration::from_millis(ms));
    ms
}

/// A warm `Pool(2)`, as Python's bench uses one `with Pool(2)` for its map figures. Warm
/// means two maps of the measured size first: the first maps of a pool touch the pages of
/// its rings (4 MiB per worker, 8 MiB back) and grow the workers' heaps for the first time
/// (a cold first map of 1M items runs at about half the steady rate here).
pub fn warm_pool() -> Pool {
    let pool = Pool::new(2).expect("pool");
    for _ in 0..2 {
        pool.map(ident, 0..1_000_000).expect("warm-up");
    }
    pool
}

/// `pool.map(ident, 0..n)` (chunksize `None`: Python's rule): tasks per second, and
/// whether every result came back right.
pub fn map_rate(pool: &Pool, n: u64, chunksize: Option<usize>) -> (f64, bool) {
    let t0 = Instant::now();
    let out = match chunksize {
        Some(c) => pool.map_chunked(ident, 0..n, c),
        None => pool.map(ident, 0..n),
    }
    .expect("map");
    let s = t0.elapsed().as_secs_f64();
    let ok = out.len() as u64 == n && out.iter().enumerate().all(|(i, &v)| v == i as u64);
    (n as f64 / s, ok)
}

/// A CPU-bound map of 16 equal inputs on `pool` against the same loop in the parent:
/// returns the speed-up, and whether the results agree.
pub fn cpu_speedup(pool: &Pool, work: u64) -> (f64, bool) {
    speedup_over_serial(work, |inputs| pool.map(cpu_task, inputs).expect("map"))
}

/// 16 tasks of `work` steps: the serial loop's time over `parallel`'s, and whether their
/// results agree. The serial time is the best of two runs (the first also warms the
/// core): a serial run slowed by something else on the machine would flatter the pool,
/// never the reverse. The local pool's and the MPI pool's figures both come from here.
pub fn speedup_over_serial(work: u64, parallel: impl FnOnce(Vec<u64>) -> Vec<u64>) -> (f64, bool) {
    let inputs = vec![work; 16];
    let mut t_serial = Duration::MAX;
    let mut serial = Vec::new();
    for _ in 0..2 {
        let t0 = Instant::now();
        serial = inputs.iter().map(|&n| black_box(cpu_task(n))).collect();
        t_serial = t_serial.min(t0.elapsed());
    }
    let t0 = Instant::now();
    let par = parallel(inputs);
    let t_pool = t0.elapsed();
    (t_serial.as_secs_f64() / t_pool.as_secs_f64(), serial == par)
}

/// `Pool(2)` created, one task run, closed and joined: µs.
pub fn start_us() -> (f64, bool) {
    let t0 = Instant::now();
    let pool = Pool::new(2).expect("pool");
    let ok = pool.apply(ident, 7).expect("apply") == 7;
    pool.close();
    pool.join().expect("join");
    (t0.elapsed().as_secs_f64() * 1e6, ok)
}

/// From a worker's SIGKILL mid-task to that task's error in the parent *and* a task served
/// by the replacement worker (the other worker is busy, so only the replacement can
/// serve it): ms.
pub fn recover_ms() -> (f64, bool) {
    let pool = Pool::new(2).expect("pool");
    let started = SharedAtomic::<AtomicU64>::new().expect("atomic");
    let victim = pool
        .apply_async(report_then_sleep, (started.clone(), 60_000))
        .expect("victim");
    let wait_start = |started: &SharedAtomic<AtomicU64>| loop {
        let p = started.swap(0, Ordering::SeqCst);
        if p != 0 {
            break p as u32;
        }
        std::thread::yield_now();
    };
    let victim_pid = wait_start(&started);
    let blocker = pool
        .apply_async(report_then_sleep, (started.clone(), 60_000))
        .expect("blocker");
    let blocker_pid = wait_start(&started);
    let pidfd = mproc_sys::pidfd_open(victim_pid).expect("pidfd");
    let t0 = Instant::now();
    mproc_sys::pidfd_send_signal(std::os::fd::AsFd::as_fd(&pidfd), mproc_sys::SIGKILL)
        .expect("kill");
    let died = victim
        .get()
        .is_err_and(|e| e.kind() == mproc::pool::ErrorKind::WorkerDied);
    let served_by = pool.apply(pid, 0).expect("replacement serves");
    let ms = t0.elapsed().as_secs_f64() * 1e3;
    let ok = died && served_by != victim_pid && served_by != blocker_pid;
    drop(pool);
    let _ = blocker.get();
    (ms, ok)
}
