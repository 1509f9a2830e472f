//! The pool role: a worker killed mid-task.

use std::os::fd::AsFd;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use mproc::SharedAtomic;
use mproc::pool::ErrorKind;
use mproc_tests::{deadline, pool_builder};

use crate::harness::{PATIENCE, Role, limit, pause, wait_until};

/// Records which worker runs it, works for `spin_us`, and returns `i²` with its pid.
fn task((i, spin_us, running): (u64, u64, SharedAtomic<AtomicU64>)) -> (u64, u32) {
    running.store(u64::from(std::process::id()), Ordering::SeqCst);
    pause(Duration::from_micros(spin_us));
    (i * i, std::process::id())
}

fn square(x: u64) -> u64 {
    x * x
}

/// Tasks per round.
const TASKS: u64 = 12;

#[test]
fn a_pool_worker_killed_mid_task() {
    let role = Role::start("pool_worker", 60);
    deadline(limit(role.rounds), || {
        let pool = pool_builder(2).build().unwrap();
        let (mut died, mut done) = (0, 0);
        for round in 0..role.rounds {
            let (at, mut rng) = (role.at(round), role.rng(round));
            let running = SharedAtomic::<AtomicU64>::new().unwrap();
            let results: Vec<_> = (0..TASKS)
                .map(|i| {
                    let spin = 200 + rng.below(2_000);
                    pool.apply_async(task, (i, spin, running.clone())).unwrap()
                })
                .collect();
            wait_until(&at, "a first task", || running.load(Ordering::SeqCst) != 0);
            pause(rng.delay(Duration::from_millis(8)));
            let victim = running.load(Ordering::SeqCst) as u32;
            // The worker may have ended meanwhile (it does not, unless killed); a pidfd
            // names the process itself, never a successor with its pid.
            if let Ok(pidfd) = mproc_sys::pidfd_open(victim) {
                let _ = mproc_sys::pidfd_send_signal(pidfd.as_fd(), mproc_sys::SIGKILL);
            }
            let mut failed = 0;
            for (i, r) in results.iter().enumerate() {
                match r.get_timeout(PATIENCE) {
                    Ok((v, _)) => {
                        assert_eq!(v, (i * i) as u64, "{at}: task {i}");
                        done += 1;
                    }
                    Err(e) => {
                        assert_eq!(e.kind(), ErrorKind::WorkerDied, "{at}: task {i}: {e}");
                        failed += 1;
                    }
                }
            }
            // The killed worker cost at most its task in flight.
            assert!(failed <= 1, "{at}: {failed} tasks failed for one kill");
            died += failed;
            // And the pool serves on with its replacement.
            let squares = pool
                .map(square, 0..20u64)
                .unwrap_or_else(|e| panic!("{at}: {e}"));
            assert_eq!(squares, (0..20u64).map(square).collect::<Vec<_>>(), "{at}");
        }
        pool.close();
        pool.join_timeout(PATIENCE).expect("the pool ends");
        eprintln!("pool_worker: {done} tasks done, {died} failed with WorkerDied");
    });
    role.finish();
}
