//! Manager roles: a client killed mid-call, and the server killed while clients call.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use mproc::manager::{Builder, Dict, ErrorKind, List, Lock, Manager};
use mproc::{ForkPermit, SharedAtomic, StartMethod};
use mproc_tests::{builder, deadline, method};

use crate::harness::{PATIENCE, Rng, Role, kill_and_reap, limit, pause, wait_until};

fn manager_builder() -> Builder {
    let b = Manager::builder().start_method(method());
    if method() == StartMethod::Fork {
        // SAFETY: the other threads are the harness's and the watchdogs', which hold none of
        // mproc's locks; the forked server runs only the manager's code.
        b.fork_permit(unsafe { ForkPermit::other_threads_are_idle() })
    } else {
        b
    }
}

/// This process's values in the list start here; the victim's are its sequence numbers.
const OURS: u64 = 1 << 40;

/// Pushes 0, 1, 2, ... on the list, acknowledging each once the call returned; every
/// fourth, updates the counter under the manager's lock. Until killed.
fn client_calls(
    (list, lock, counts, acked, seed): (
        List<u64>,
        Lock,
        Dict<String, u64>,
        SharedAtomic<AtomicU64>,
        u64,
    ),
) {
    let mut rng = Rng::new(seed);
    for seq in 0.. {
        list.push(seq).expect("push");
        acked.store(seq + 1, Ordering::SeqCst);
        if seq % 4 == 0 {
            assert!(lock.acquire_timeout(PATIENCE).expect("acquire"));
            counts
                .update("victim", |n| n.unwrap_or(0) + 1)
                .expect("update");
            pause(Duration::from_micros(rng.below(300)));
            lock.release().expect("release");
        }
    }
}

#[test]
fn a_manager_client_killed_mid_call() {
    let role = Role::start("manager_client", 60);
    deadline(limit(role.rounds), || {
        let manager = manager_builder().start().unwrap();
        for round in 0..role.rounds {
            let (at, mut rng) = (role.at(round), role.rng(round));
            let list = manager.list::<u64>().unwrap();
            let lock = manager.lock().unwrap();
            let counts = manager.dict::<String, u64>().unwrap();
            let acked = SharedAtomic::<AtomicU64>::new().unwrap();
            let mut victim = builder()
                .spawn(
                    client_calls,
                    (
                        list.clone(),
                        lock.clone(),
                        counts.clone(),
                        acked.clone(),
                        rng.next_u64(),
                    ),
                )
                .unwrap();
            let stop = AtomicBool::new(false);
            let ours = AtomicU64::new(0);
            std::thread::scope(|s| {
                // Another client, in this process, on the same objects.
                s.spawn(|| {
                    while !stop.load(Ordering::SeqCst) {
                        let got = lock.acquire_timeout(PATIENCE).unwrap();
                        assert!(got, "{at}: the lock was not released within {PATIENCE:?}");
                        counts.update("ours", |n| n.unwrap_or(0) + 1).unwrap();
                        lock.release().unwrap();
                        list.push(OURS + ours.fetch_add(1, Ordering::SeqCst))
                            .unwrap();
                    }
                });
                wait_until(&at, "the victim's first calls", || {
                    acked.load(Ordering::SeqCst) > 4
                });
                pause(rng.delay(Duration::from_millis(10)));
                kill_and_reap(&at, &mut victim);
                let after = ours.load(Ordering::SeqCst) + 3;
                wait_until(&at, "our calls after the kill", || {
                    ours.load(Ordering::SeqCst) >= after
                });
                stop.store(true, Ordering::SeqCst);
            });
            // The victim's pushes are there once each, in order, all it was told were
            // done and at most the one in flight; ours are all there.
            let acked = acked.load(Ordering::SeqCst);
            let all = list.to_vec().unwrap();
            let theirs: Vec<u64> = all.iter().copied().filter(|v| *v < OURS).collect();
            let mine: Vec<u64> = all.iter().copied().filter(|v| *v >= OURS).collect();
            assert!(
                theirs.iter().enumerate().all(|(i, v)| *v == i as u64),
                "{at}: the victim's pushes out of order or repeated"
            );
            let n = theirs.len() as u64;
            assert!(
                n == acked || n == acked + 1,
                "{at}: {acked} pushes acknowledged, {n} in the list"
            );
            let pushed = ours.load(Ordering::SeqCst);
            assert_eq!(mine, (OURS..OURS + pushed).collect::<Vec<_>>(), "{at}");
            // Each of our updates counted once; the victim's count is whole.
            assert_eq!(counts.get("ours").unwrap(), Some(pushed), "{at}");
            let victim_updates = counts.get("victim").unwrap().unwrap_or(0);
            assert!(
                victim_updates <= acked.div_ceil(4) + 1,
                "{at}: {victim_updates}"
            );
            // The lock is free.
            assert!(lock.acquire_timeout(PATIENCE).unwrap(), "{at}");
            lock.release().unwrap();
        }
        manager.shutdown().unwrap();
    });
    role.finish();
}

/// Pushes until the server is gone; returns how many pushes returned `Ok` and how the
/// first failure was reported.
fn push_until_gone(list: List<u64>) -> (u64, String) {
    for seq in 0.. {
        if let Err(e) = list.push(seq) {
            return (seq, format!("{:?}: {e}", e.kind()));
        }
    }
    unreachable!()
}

#[test]
fn the_manager_server_killed_mid_call() {
    let role = Role::start("manager_server", 40);
    deadline(limit(role.rounds), || {
        for round in 0..role.rounds {
            let (at, mut rng) = (role.at(round), role.rng(round));
            let manager = manager_builder().start().unwrap();
            let list = manager.list::<u64>().unwrap();
            let queue = manager.queue::<u64>().unwrap();
            let mut client = builder().spawn(push_until_gone, list.clone()).unwrap();
            let (waited, noticed, killed) = std::thread::scope(|s| {
                // A call that waits in the server (a get on an empty queue, no timeout).
                let waiter = s.spawn(|| {
                    let r = queue.get();
                    (r, Instant::now())
                });
                wait_until(&at, "the client's first pushes", || {
                    list.len().is_ok_and(|n| n > 3)
                });
                pause(rng.delay(Duration::from_millis(10)));
                let server = manager.pid().expect("the server's pid");
                mproc_sys::kill_pid(server, mproc_sys::SIGKILL).unwrap();
                let killed = Instant::now();
                let (waited, noticed) = waiter.join().expect("waiter");
                (waited, noticed, killed)
            });
            let e = waited.expect_err("a get on a dead server");
            assert_eq!(e.kind(), ErrorKind::Disconnected, "{at}: {e}");
            let (pushed, how) = client
                .join_timeout(PATIENCE)
                .unwrap_or_else(|e| panic!("{at}: the client: {e}"));
            assert!(
                how.starts_with("Disconnected:"),
                "{at}: after {pushed} pushes: {how}"
            );
            // Every later call says so at once, and shutting the manager down too.
            assert_eq!(
                list.len().unwrap_err().kind(),
                ErrorKind::Disconnected,
                "{at}"
            );
            if let Err(e) = manager.shutdown() {
                assert_eq!(e.kind(), ErrorKind::Disconnected, "{at}: {e}");
            }
            eprintln!(
                "{at}: {pushed} pushes; the waiting get heard of it {:.1} ms after the kill",
                noticed.duration_since(killed).as_secs_f64() * 1e3
            );
        }
    });
    role.finish();
}
