//! `kill_notice_ms.<role>`: how long after a process in a role is SIGKILLed the party
//! waiting on it hears of it (the kill matrix in `tests/tests/kill_matrix.rs` checks
//! *that* it does; this measures how soon). Each round kills at a different point of the
//! waiter's naps, and the figure is the median.
//!
//! | role | killed | the party that notices, and how |
//! | --- | --- | --- |
//! | `queue_producer` | a producer mid-put | a consumer's `get`: `Disconnected` (after what was put) |
//! | `queue_consumer` | a consumer mid-get | a producer waiting for room: `Disconnected` |
//! | `lock_holder` | a `Lock`'s holder | a thread asleep in `lock()`: `OwnerDied` |
//! | `pool_worker` | a worker mid-task | the task's `AsyncResult::get`: `WorkerDied` |
//! | `manager_client` | a client holding a manager `Lock` | another client's `acquire` returns |
//! | `manager_server` | the manager's server | a client waiting in a queue `get`: `Disconnected` |
//! | `child_reply` | a child before its result | `join`: `Died` |

use std::os::fd::AsFd;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use mproc::{Builder, Lock, Pool, Queue, SharedAtomic};

/// Every role measured, with its key in the report.
pub const ROLES: [(&str, &str); 7] = [
    ("queue_producer", "kill_notice_ms.queue_producer"),
    ("queue_consumer", "kill_notice_ms.queue_consumer"),
    ("lock_holder", "kill_notice_ms.lock_holder"),
    ("pool_worker", "kill_notice_ms.pool_worker"),
    ("manager_client", "kill_notice_ms.manager_client"),
    ("manager_server", "kill_notice_ms.manager_server"),
    ("child_reply", "kill_notice_ms.child_reply"),
];

/// Milliseconds from each of `rounds` kills of a process in `role` to the other party's
/// notice, and whether every notice was the typed one.
pub fn notice_ms(role: &str, rounds: usize) -> (Vec<f64>, bool) {
    let mut out = Vec::new();
    let mut ok = true;
    let pool = (role == "pool_worker").then(|| Pool::new(2).expect("pool"));
    let manager = (role == "manager_client").then(|| mproc::Manager::start().expect("manager"));
    for round in 0..rounds {
        // Killed at a different point of the waiter's 100 ms naps each round.
        let settle = Duration::from_millis(30 + (round as u64 * 37) % 100);
        let (ms, typed) = match role {
            "queue_producer" => queue_producer(settle),
            "queue_consumer" => queue_consumer(settle),
            "lock_holder" => lock_holder(settle),
            "pool_worker" => pool_worker(pool.as_ref().expect("pool"), settle),
            "manager_client" => manager_client(manager.as_ref().expect("manager"), settle),
            "manager_server" => manager_server(settle),
            "child_reply" => child_reply(settle),
            other => panic!("no kill role {other}"),
        };
        out.push(ms);
        ok &= typed;
    }
    if let Some(m) = manager {
        ok &= m.shutdown().is_ok();
    }
    (out, ok)
}

fn ms_since(t0: Instant, t1: Instant) -> f64 {
    t1.saturating_duration_since(t0).as_secs_f64() * 1e3
}

/// Kills `child` after `settle`, then waits for `waiter`; returns the notice in ms and
/// what the waiter reported.
fn kill_then<R: serde::de::DeserializeOwned>(
    child: &mut mproc::Child<R>,
    settle: Duration,
    waiter: std::thread::JoinHandle<(Instant, bool)>,
) -> (f64, bool) {
    std::thread::sleep(settle);
    let t0 = Instant::now();
    child.kill().expect("kill");
    let (t1, typed) = waiter.join().expect("waiter");
    let _ = child.wait();
    (ms_since(t0, t1), typed)
}

fn produce_forever(q: Queue<u64>) {
    for i in 0.. {
        q.put(i).expect("put");
    }
}

fn consume_forever(q: Queue<u64>) {
    loop {
        q.get().expect("get");
    }
}

// A child killed before it has taken its handle out of its argument never held the
// queue, and a queue no other process ever held waits as before (the documented rule):
// each queue role waits until its child has used the queue before it kills.

fn queue_producer(settle: Duration) -> (f64, bool) {
    let q = Queue::<u64>::bounded(64).expect("queue");
    let mut child = Builder::new()
        .spawn(produce_forever, q.clone())
        .expect("spawn");
    q.get().expect("the producer's first message");
    let waiter = std::thread::spawn(move || {
        loop {
            if let Err(e) = q.get() {
                return (Instant::now(), e.is_disconnected());
            }
        }
    });
    kill_then(&mut child, settle, waiter)
}

fn queue_consumer(settle: Duration) -> (f64, bool) {
    let q = Queue::<u64>::bounded(64).expect("queue");
    let mut child = Builder::new()
        .spawn(consume_forever, q.clone())
        .expect("spawn");
    q.put(0).expect("put");
    while !q.is_empty() {
        std::thread::yield_now(); // until the consumer took it
    }
    let waiter = std::thread::spawn(move || {
        for i in 0.. {
            if let Err(e) = q.put(i) {
                return (Instant::now(), e.is_disconnected());
            }
        }
        unreachable!()
    });
    kill_then(&mut child, settle, waiter)
}

fn hold_lock((lock, held): (Lock, SharedAtomic<AtomicU64>)) {
    let _g = lock.lock().expect("lock");
    held.store(1, Ordering::SeqCst);
    std::thread::sleep(Duration::from_secs(600));
}

fn lock_holder(settle: Duration) -> (f64, bool) {
    let lock = Lock::new().expect("lock");
    let held = SharedAtomic::<AtomicU64>::new().expect("atomic");
    let mut child = Builder::new()
        .spawn(hold_lock, (lock.clone(), held.clone()))
        .expect("spawn");
    while held.load(Ordering::SeqCst) == 0 {
        std::thread::yield_now();
    }
    let waiter = std::thread::spawn(move || {
        let died = lock.lock().is_err();
        (Instant::now(), died)
    });
    kill_then(&mut child, settle, waiter)
}

/// Says which worker runs it, then sleeps until killed.
fn report_then_sleep(running: SharedAtomic<AtomicU64>) {
    running.store(u64::from(std::process::id()), Ordering::SeqCst);
    std::thread::sleep(Duration::from_secs(600));
}

fn pool_worker(pool: &Pool, settle: Duration) -> (f64, bool) {
    let running = SharedAtomic::<AtomicU64>::new().expect("atomic");
    let task = pool
        .apply_async(report_then_sleep, running.clone())
        .expect("apply_async");
    let pid = loop {
        match running.load(Ordering::SeqCst) {
            0 => std::thread::yield_now(),
            p => break p as u32,
        }
    };
    let pidfd = mproc_sys::pidfd_open(pid).expect("pidfd");
    std::thread::sleep(settle);
    let t0 = Instant::now();
    mproc_sys::pidfd_send_signal(pidfd.as_fd(), mproc_sys::SIGKILL).expect("kill");
    let died = task
        .get()
        .is_err_and(|e| e.kind() == mproc::pool::ErrorKind::WorkerDied);
    (ms_since(t0, Instant::now()), died)
}

fn hold_manager_lock((lock, held): (mproc::manager::Lock, SharedAtomic<AtomicU64>)) {
    lock.acquire().expect("acquire");
    held.store(1, Ordering::SeqCst);
    std::thread::sleep(Duration::from_secs(600));
}

fn manager_client(manager: &mproc::Manager, settle: Duration) -> (f64, bool) {
    let lock = manager.lock().expect("lock");
    let held = SharedAtomic::<AtomicU64>::new().expect("atomic");
    let mut child = Builder::new()
        .spawn(hold_manager_lock, (lock.clone(), held.clone()))
        .expect("spawn");
    while held.load(Ordering::SeqCst) == 0 {
        std::thread::yield_now();
    }
    let waiter = std::thread::spawn(move || {
        let got = lock.acquire().is_ok();
        let t1 = Instant::now();
        (t1, got && lock.release().is_ok())
    });
    kill_then(&mut child, settle, waiter)
}

fn manager_server(settle: Duration) -> (f64, bool) {
    let manager = mproc::Manager::start().expect("manager");
    let q = manager.queue::<u64>().expect("queue");
    let waiter = std::thread::spawn(move || {
        let r = q.get();
        let disconnected = r.is_err_and(|e| e.kind() == mproc::manager::ErrorKind::Disconnected);
        (Instant::now(), disconnected)
    });
    std::thread::sleep(settle);
    let t0 = Instant::now();
    mproc_sys::kill_pid(manager.pid().expect("the server"), mproc_sys::SIGKILL).expect("kill");
    let (t1, typed) = waiter.join().expect("waiter");
    drop(manager);
    (ms_since(t0, t1), typed)
}

/// Sleeps until killed (its result never comes).
fn never_replies(_: ()) -> u64 {
    std::thread::sleep(Duration::from_secs(600));
    0
}

fn child_reply(settle: Duration) -> (f64, bool) {
    let mut child = Builder::new().spawn(never_replies, ()).expect("spawn");
    let pidfd = mproc_sys::pidfd_open(child.pid()).expect("pidfd");
    let waiter = std::thread::spawn(move || {
        let died = child
            .join()
            .is_err_and(|e| e.kind() == mproc::process::ErrorKind::Died);
        (Instant::now(), died)
    });
    std::thread::sleep(settle);
    let t0 = Instant::now();
    mproc_sys::pidfd_send_signal(pidfd.as_fd(), mproc_sys::SIGKILL).expect("kill");
    let (t1, typed) = waiter.join().expect("waiter");
    (ms_since(t0, t1), typed)
}
