//! Pools under the start method named by `MPROC_START_METHOD`: every call of Python's
//! `Pool`, and workers that die, panic or overrun their time. Every test runs inside a
//! deadline that kills its children.

use std::collections::HashSet;
use std::os::fd::AsFd;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant};

use mproc::pool::{Callbacks, ErrorKind};
use mproc::{ExitStatus, SharedAtomic};
use mproc_tests::{
    deadline, finish_helper, method, pool_builder, read_tagged_line, wait_gone, zombies_of,
};

mproc::init_before_main!();

const LIMIT: Duration = Duration::from_secs(120);
const HELPER: &str = env!("CARGO_BIN_EXE_mproc-helper");

// ---- task functions -------------------------------------------------------------------

fn square(x: u64) -> u64 {
    x * x
}

fn add(a: u64, b: u64) -> u64 {
    a + b
}

fn add3(a: u64, b: u64, c: String) -> String {
    format!("{}{c}", a + b)
}

fn add4(a: u8, b: u16, c: u32, d: u64) -> u64 {
    u64::from(a) + u64::from(b) + u64::from(c) + d
}

fn pid(_: u64) -> u32 {
    std::process::id()
}

/// Sleeps `ms`, then returns the worker's pid.
fn nap(ms: u64) -> u32 {
    std::thread::sleep(Duration::from_millis(ms));
    std::process::id()
}

/// Sleeps a random-ish few ms so that results finish out of order.
fn jitter(x: u64) -> u64 {
    std::thread::sleep(Duration::from_micros((x * 7919) % 3000));
    x
}

fn fail_on_three(x: u64) -> u64 {
    assert!(x != 3, "three is not allowed");
    x
}

/// Reports its pid on `started` and then waits to be killed (or `x` ms).
fn report_then_wait((started, x): (SharedAtomic<AtomicU64>, u64)) -> u64 {
    started.store(u64::from(std::process::id()), Ordering::SeqCst);
    std::thread::sleep(Duration::from_millis(x));
    x
}

/// The initializer: a worker is single-threaded, where mproc's checked setter works.
fn set_var(value: String) {
    mproc_sys::set_env_var("MPROC_POOL_TEST_INIT".as_ref(), Some(value.as_ref())).unwrap();
}

fn read_var(_: u64) -> Option<String> {
    std::env::var("MPROC_POOL_TEST_INIT").ok()
}

fn bad_init(_: ()) {
    panic!("initializer refuses");
}

/// A value whose serialization fails for 13.
#[derive(Debug)]
struct Picky(u64);

impl serde::Serialize for Picky {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        if self.0 == 13 {
            return Err(serde::ser::Error::custom("13 cannot be serialized"));
        }
        s.serialize_u64(self.0)
    }
}

impl<'de> serde::Deserialize<'de> for Picky {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        u64::deserialize(d).map(Picky)
    }
}

fn picky_double(p: Picky) -> u64 {
    p.0 * 2
}

fn picky_result(x: u64) -> Picky {
    Picky(x)
}

// ---- calls ----------------------------------------------------------------------------

#[test]
fn map_returns_results_in_order() {
    deadline(LIMIT, || {
        let pool = pool_builder(2).build().unwrap();
        let want: Vec<u64> = (0..1000).map(|x| x * x).collect();
        assert_eq!(pool.map(square, 0..1000).unwrap(), want);
        assert_eq!(pool.map_chunked(square, 0..1000, 1).unwrap(), want);
        assert_eq!(pool.map_chunked(square, 0..1000, 333).unwrap(), want);
        assert_eq!(
            pool.map(jitter, 0..200).unwrap(),
            (0..200).collect::<Vec<_>>()
        );
        let err = pool.map_chunked(square, 0..10, 0).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidInput);
    });
}

#[test]
fn an_empty_input_gives_empty_results() {
    deadline(LIMIT, || {
        let pool = pool_builder(2).build().unwrap();
        assert!(pool.map(square, Vec::new()).unwrap().is_empty());
        assert!(pool.starmap(add, Vec::new()).unwrap().is_empty());
        assert_eq!(pool.imap(square, Vec::new()).count(), 0);
        assert_eq!(pool.imap_unordered(square, Vec::new()).count(), 0);
        let (tx, rx) = mpsc::channel();
        let cb = Callbacks::new().on_success(move |v: &Vec<u64>| tx.send(v.len()).unwrap());
        let r = pool.map_async_with(square, Vec::new(), None, cb).unwrap();
        assert!(r.ready());
        assert_eq!(r.get().unwrap(), Vec::<u64>::new());
        assert_eq!(rx.recv_timeout(Duration::from_secs(10)).unwrap(), 0);
    });
}

#[test]
fn maps_of_100k_items() {
    deadline(LIMIT, || {
        let pool = pool_builder(2).build().unwrap();
        let got = pool.map(square, 0..100_000).unwrap();
        assert_eq!(got.len(), 100_000);
        assert!(
            got.iter()
                .enumerate()
                .all(|(i, &v)| v == (i as u64) * (i as u64))
        );
        let got = pool.map_chunked(square, 0..100_000, 1).unwrap();
        assert_eq!(
            got.iter().sum::<u64>(),
            (0..100_000u64).map(|x| x * x).sum()
        );
    });
}

#[test]
fn imap_is_ordered_and_imap_unordered_is_complete() {
    deadline(LIMIT, || {
        let pool = pool_builder(2).build().unwrap();
        let ordered: Vec<u64> = pool.imap(jitter, 0..300).map(Result::unwrap).collect();
        assert_eq!(ordered, (0..300).collect::<Vec<_>>());
        let chunked: Vec<u64> = pool
            .imap_chunked(jitter, 0..300, 7)
            .map(Result::unwrap)
            .collect();
        assert_eq!(chunked, (0..300).collect::<Vec<_>>());
        for chunksize in [1, 5] {
            let mut got: Vec<u64> = pool
                .imap_unordered_chunked(jitter, 0..300, chunksize)
                .map(Result::unwrap)
                .collect();
            got.sort();
            assert_eq!(got, (0..300).collect::<Vec<_>>());
        }
    });
}

#[test]
fn imap_over_an_endless_iterator_takes_only_what_it_needs() {
    deadline(LIMIT, || {
        let pool = pool_builder(2).build().unwrap();
        let pulled = Arc::new(AtomicU64::new(0));
        let counter = pulled.clone();
        let source = (0u64..).inspect(move |_| {
            counter.fetch_add(1, Ordering::Relaxed);
        });
        let firsts: Vec<u64> = pool
            .imap(square, source)
            .take(1000)
            .map(Result::unwrap)
            .collect();
        assert_eq!(firsts, (0..1000u64).map(|x| x * x).collect::<Vec<_>>());
        // Only a bounded window beyond what was taken was ever pulled from the input.
        let n = pulled.load(Ordering::Relaxed);
        assert!((1000..1000 + 10_000).contains(&n), "pulled {n}");
        // The pool is free for other work afterwards.
        assert_eq!(pool.apply(square, 9).unwrap(), 81);
    });
}

#[test]
fn imap_next_timeout_gives_up_and_can_be_retried() {
    deadline(LIMIT, || {
        let pool = pool_builder(1).build().unwrap();
        let mut it = pool.imap(nap, [300, 0]);
        let early = it
            .next_timeout(Duration::from_millis(20))
            .unwrap()
            .unwrap_err();
        assert_eq!(early.kind(), ErrorKind::Timeout);
        assert_eq!(early.index(), None);
        assert!(it.next_timeout(Duration::from_secs(30)).unwrap().is_ok());
        assert!(it.next().unwrap().is_ok());
        assert!(it.next().is_none());
    });
}

#[test]
fn starmap_takes_two_three_and_four_arguments() {
    deadline(LIMIT, || {
        let pool = pool_builder(2).build().unwrap();
        assert_eq!(
            pool.starmap(add, [(1, 2), (3, 4), (5, 6)]).unwrap(),
            [3, 7, 11]
        );
        assert_eq!(
            pool.starmap3(add3, [(1, 2, "a".to_string()), (3, 4, "b".to_string())])
                .unwrap(),
            ["3a", "7b"]
        );
        assert_eq!(pool.starmap4(add4, [(1, 2, 3, 4)]).unwrap(), [10]);
        let r = pool.starmap_async(add, (0..100).map(|i| (i, i))).unwrap();
        assert_eq!(
            r.get().unwrap(),
            (0..100).map(|i| 2 * i).collect::<Vec<_>>()
        );
    });
}

#[test]
fn apply_async_runs_both_callbacks_in_the_parent() {
    deadline(LIMIT, || {
        let pool = pool_builder(2).build().unwrap();
        let me = std::process::id();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let (s1, s2) = (seen.clone(), seen.clone());
        let ok = Callbacks::new()
            .on_success(move |v: &u64| {
                s1.lock()
                    .unwrap()
                    .push(format!("ok {v} in {}", std::process::id()))
            })
            .on_error(|_| panic!("no error expected"));
        let bad = Callbacks::new()
            .on_success(|_: &u64| panic!("no success expected"))
            .on_error(move |e| {
                s2.lock()
                    .unwrap()
                    .push(format!("err {:?} in {}", e.kind(), std::process::id()))
            });
        let a = pool.apply_async_with(square, 12, ok).unwrap();
        let b = pool.apply_async_with(fail_on_three, 3, bad).unwrap();
        assert_eq!(a.get().unwrap(), 144);
        let err = b.get().unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Panicked);
        assert!(
            err.panic_message()
                .unwrap()
                .contains("three is not allowed")
        );
        // Callbacks run before get returns, in this process.
        let mut seen = seen.lock().unwrap().clone();
        seen.sort();
        assert_eq!(
            seen,
            [format!("err Panicked in {me}"), format!("ok 144 in {me}")]
        );
        assert_eq!(a.successful(), Some(true));
        assert_eq!(b.successful(), Some(false));
        assert_eq!(a.get().unwrap_err().kind(), ErrorKind::AlreadyTaken);
        assert_eq!(
            b.get().unwrap_err().kind(),
            ErrorKind::Panicked,
            "an error reads again"
        );
    });
}

#[test]
fn async_results_wait_and_time_out() {
    deadline(LIMIT, || {
        let pool = pool_builder(1).build().unwrap();
        let r = pool.apply_async(nap, 300).unwrap();
        assert!(!r.ready());
        assert_eq!(r.successful(), None);
        let t0 = Instant::now();
        assert_eq!(
            r.get_timeout(Duration::from_millis(50)).unwrap_err().kind(),
            ErrorKind::Timeout
        );
        assert!(t0.elapsed() >= Duration::from_millis(50));
        assert!(!r.wait_timeout(Duration::from_millis(1)));
        r.wait();
        assert!(r.ready());
        assert!(r.get_timeout(Duration::from_secs(10)).is_ok());
    });
}

#[test]
fn a_panicking_task_fails_alone_and_map_names_its_index() {
    deadline(LIMIT, || {
        let pool = pool_builder(2).build().unwrap();
        for chunksize in [1, 4, 100] {
            let err = pool
                .map_chunked(fail_on_three, 0..10, chunksize)
                .unwrap_err();
            assert_eq!(err.kind(), ErrorKind::Panicked);
            assert_eq!(err.index(), Some(3));
            assert!(err.to_string().contains("three is not allowed"), "{err}");
        }
        // In imap the other items still come through.
        let got: Vec<Result<u64, _>> = pool.imap(fail_on_three, 0..6).collect();
        assert_eq!(got.iter().filter(|r| r.is_ok()).count(), 5);
        assert_eq!(got[3].as_ref().unwrap_err().index(), Some(3));
        // The pool is unharmed.
        assert_eq!(pool.apply(square, 5).unwrap(), 25);
    });
}

#[test]
fn arguments_and_results_that_do_not_serialize_fail_alone() {
    deadline(LIMIT, || {
        let pool = pool_builder(2).build().unwrap();
        let args: Vec<Picky> = (10..16).map(Picky).collect();
        let got: Vec<Result<u64, _>> = pool.imap(picky_double, args).collect();
        for (i, r) in got.iter().enumerate() {
            if i == 3 {
                let e = r.as_ref().unwrap_err();
                assert_eq!(e.kind(), ErrorKind::Encode);
                assert_eq!(e.index(), Some(3));
            } else {
                assert_eq!(*r.as_ref().unwrap(), (10 + i as u64) * 2);
            }
        }
        let err = pool.map_chunked(picky_result, 10..16, 6).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Encode);
        assert_eq!(err.index(), Some(3));
        let ok: Vec<u64> = pool
            .map(picky_result, 0..5)
            .unwrap()
            .into_iter()
            .map(|p| p.0)
            .collect();
        assert_eq!(ok, [0, 1, 2, 3, 4]);
    });
}

// ---- workers ----------------------------------------------------------------------------

#[test]
fn the_initializer_runs_in_every_worker_before_tasks() {
    deadline(LIMIT, || {
        let pool = pool_builder(2)
            .initializer(set_var, "ready".to_string())
            .build()
            .unwrap();
        let got = pool.map_chunked(read_var, 0..50, 1).unwrap();
        assert!(got.iter().all(|v| v.as_deref() == Some("ready")), "{got:?}");
    });
}

#[test]
fn a_failing_initializer_fails_the_calls_instead_of_looping() {
    deadline(LIMIT, || {
        let pool = pool_builder(2).initializer(bad_init, ()).build().unwrap();
        let err = pool.map(square, 0..10).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Initializer);
        assert!(err.to_string().contains("initializer refuses"), "{err}");
        assert_eq!(
            pool.apply(square, 1).unwrap_err().kind(),
            ErrorKind::Initializer
        );
        // A pool whose workers all ended still closes and joins.
        pool.close();
        pool.join_timeout(Duration::from_secs(60)).unwrap();
    });
}

#[test]
fn max_tasks_per_child_replaces_workers() {
    deadline(LIMIT, || {
        let pool = pool_builder(2).max_tasks_per_child(3).build().unwrap();
        let pids: HashSet<u32> = pool
            .map_chunked(pid, 0..30, 1)
            .unwrap()
            .into_iter()
            .collect();
        // 30 tasks, at most 3 per worker: at least 10 distinct workers.
        assert!(pids.len() >= 10, "{} distinct pids", pids.len());
        assert!(!pids.contains(&std::process::id()));
    });
}

#[test]
fn a_worker_killed_mid_task_fails_that_task_and_the_rest_completes() {
    deadline(LIMIT, || {
        let pool = pool_builder(2).build().unwrap();
        let started = SharedAtomic::<AtomicU64>::new().unwrap();
        let victim = pool
            .apply_async(report_then_wait, (started.clone(), 60_000))
            .unwrap();
        let others = pool.map_async(nap, vec![30; 20]).unwrap();
        let t0 = Instant::now();
        let pid = loop {
            let p = started.load(Ordering::SeqCst);
            if p != 0 {
                break p as u32;
            }
            assert!(
                t0.elapsed() < Duration::from_secs(30),
                "the task never started"
            );
            std::thread::sleep(Duration::from_millis(1));
        };
        let pidfd = mproc_sys::pidfd_open(pid).unwrap();
        mproc_sys::pidfd_send_signal(pidfd.as_fd(), mproc_sys::SIGKILL).unwrap();
        let err = victim.get().unwrap_err();
        assert_eq!(err.kind(), ErrorKind::WorkerDied, "{err}");
        assert_eq!(err.exit_status(), Some(ExitStatus::Signal(9)));
        assert_eq!(err.index(), Some(0));
        assert_eq!(others.get().unwrap().len(), 20);
        // A fresh worker serves: two concurrent naps land on two live workers.
        let pids: HashSet<u32> = pool
            .map_chunked(nap, vec![100, 100], 1)
            .unwrap()
            .into_iter()
            .collect();
        assert_eq!(pids.len(), 2);
        assert!(!pids.contains(&pid));
    });
}

#[test]
fn a_task_past_the_task_timeout_fails_and_its_worker_is_replaced() {
    deadline(LIMIT, || {
        let pool = pool_builder(2)
            .task_timeout(Duration::from_millis(300))
            .build()
            .unwrap();
        let slow = pool.apply_async(nap, 60_000).unwrap();
        let fast = pool.map_async(nap, vec![10; 10]).unwrap();
        let t0 = Instant::now();
        let err = slow.get().unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Timeout, "{err}");
        assert_eq!(err.index(), Some(0));
        assert!(t0.elapsed() >= Duration::from_millis(250));
        assert_eq!(fast.get().unwrap().len(), 10);
        assert_eq!(pool.apply(square, 7).unwrap(), 49);
    });
}

#[test]
fn terminate_fails_running_work_and_reaps_every_worker() {
    deadline(LIMIT, || {
        let pool = pool_builder(2).build().unwrap();
        let long = pool.map_async(nap, vec![60_000; 4]).unwrap();
        std::thread::sleep(Duration::from_millis(100));
        pool.terminate();
        assert_eq!(long.get().unwrap_err().kind(), ErrorKind::Terminated);
        assert_eq!(
            pool.apply(square, 1).unwrap_err().kind(),
            ErrorKind::Terminated
        );
        pool.join().unwrap();
        assert_eq!(zombies_of(std::process::id()), 0);
    });
}

#[test]
fn close_then_join_lets_the_work_finish() {
    deadline(LIMIT, || {
        let pool = pool_builder(2).build().unwrap();
        assert_eq!(pool.join().unwrap_err().kind(), ErrorKind::InvalidState);
        let r = pool.map_async(nap, vec![20; 10]).unwrap();
        pool.close();
        assert_eq!(pool.apply(square, 1).unwrap_err().kind(), ErrorKind::Closed);
        pool.join().unwrap();
        assert_eq!(r.get().unwrap().len(), 10);
        pool.join_timeout(Duration::from_secs(1)).unwrap();
    });
}

#[test]
fn join_timeout_gives_up_while_work_runs() {
    deadline(LIMIT, || {
        let pool = pool_builder(1).build().unwrap();
        let r = pool.apply_async(nap, 500).unwrap();
        pool.close();
        assert_eq!(
            pool.join_timeout(Duration::from_millis(20))
                .unwrap_err()
                .kind(),
            ErrorKind::Timeout
        );
        pool.join_timeout(Duration::from_secs(60)).unwrap();
        assert!(r.get().is_ok());
    });
}

#[test]
fn dropping_a_pool_with_work_in_flight_leaves_nothing_behind() {
    deadline(LIMIT, || {
        let started = SharedAtomic::<AtomicU64>::new().unwrap();
        let pool = pool_builder(2).build().unwrap();
        let r = pool
            .apply_async(report_then_wait, (started.clone(), 60_000))
            .unwrap();
        let _more = pool.map_async(nap, vec![60_000; 8]).unwrap();
        let t0 = Instant::now();
        while started.load(Ordering::SeqCst) == 0 {
            assert!(t0.elapsed() < Duration::from_secs(30));
            std::thread::sleep(Duration::from_millis(1));
        }
        let worker = started.load(Ordering::SeqCst) as u32;
        let pidfd = mproc_sys::pidfd_open(worker).unwrap();
        drop(pool);
        assert_eq!(r.get().unwrap_err().kind(), ErrorKind::Terminated);
        assert!(
            wait_gone(pidfd.as_fd(), Duration::ZERO),
            "the worker outlived the pool"
        );
        assert_eq!(zombies_of(std::process::id()), 0);
    });
}

#[test]
fn two_hundred_pool_lifetimes_leave_no_zombie_or_worker() {
    deadline(Duration::from_secs(300), || {
        let me = std::process::id();
        let mut workers = Vec::new();
        for i in 0..200u64 {
            let pool = pool_builder(2).build().unwrap();
            if i % 2 == 0 {
                assert_eq!(pool.apply(square, i).unwrap(), i * i);
                pool.close();
                pool.join().unwrap();
            } else {
                let p = pool.apply(pid, 0).unwrap();
                workers.push(mproc_sys::pidfd_open(p).unwrap());
            }
        }
        assert_eq!(zombies_of(me), 0);
        for w in &workers {
            assert!(
                wait_gone(w.as_fd(), Duration::ZERO),
                "a worker outlived its pool"
            );
        }
        let kids =
            std::fs::read_to_string(format!("/proc/{me}/task/{me}/children")).unwrap_or_default();
        let server = mproc::process::fork_server_pid().map(|p| p.to_string());
        let stray: Vec<&str> = kids
            .split_whitespace()
            .filter(|p| Some(p.to_string()) != server)
            .collect();
        assert!(stray.is_empty(), "children left: {stray:?}");
    });
}

#[test]
fn workers_die_with_a_sigkilled_parent() {
    deadline(LIMIT, || {
        let mut parent = Command::new(HELPER)
            .arg("pool-parent")
            .env("MPROC_START_METHOD", method().as_str())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let line = read_tagged_line(&mut parent, "workers ");
        let pids: Vec<u32> = line.split(' ').map(|p| p.parse().unwrap()).collect();
        assert_eq!(pids.len(), 2, "{line}");
        let pidfds: Vec<_> = pids
            .iter()
            .map(|&p| mproc_sys::pidfd_open(p).unwrap())
            .collect();
        parent.kill().unwrap();
        parent.wait().unwrap();
        for (p, fd) in pids.iter().zip(&pidfds) {
            assert!(
                wait_gone(fd.as_fd(), Duration::from_secs(20)),
                "worker {p} outlived its parent"
            );
        }
    });
}

#[test]
fn pools_are_refused_without_processes() {
    deadline(LIMIT, || {
        let err = pool_builder(0).build().unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidInput);
        let err = pool_builder(1).max_tasks_per_child(0).build().unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidInput);
    });
}

// ---- found by a second reading --------------------------------------------------------

/// A result whose `Deserialize` panics in the parent for 3.
#[derive(Debug)]
struct Fragile(u64);

impl serde::Serialize for Fragile {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(self.0)
    }
}

impl<'de> serde::Deserialize<'de> for Fragile {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let v = u64::deserialize(d)?;
        assert!(v != 3, "fragile 3 refuses to be read");
        Ok(Fragile(v))
    }
}

fn fragile(x: u64) -> Fragile {
    Fragile(x)
}

fn nap_forever(_: ()) {
    std::thread::sleep(Duration::from_secs(60));
}

#[test]
fn imap_on_a_closed_pool_yields_errors_instead_of_hanging() {
    deadline(LIMIT, || {
        let pool = pool_builder(2).build().unwrap();
        let started = pool.imap(square, 0..10_000);
        pool.close();
        let errors = pool
            .imap(square, 0..3)
            .map(|r| r.unwrap_err().kind())
            .collect::<Vec<_>>();
        assert!(!errors.is_empty());
        assert!(errors.iter().all(|k| *k == ErrorKind::Closed), "{errors:?}");
        // An imap started before close gives what it had sent, then Closed errors, then
        // ends: it never waits for items it could not send.
        let got: Vec<_> = started.collect();
        assert!(got.iter().any(Result::is_ok));
        for (i, r) in got.iter().enumerate() {
            match r {
                Ok(v) => assert_eq!(*v, (i as u64) * (i as u64)),
                Err(e) => assert_eq!(e.kind(), ErrorKind::Closed),
            }
        }
        pool.join().unwrap();
    });
}

#[test]
fn a_result_that_panics_while_being_read_fails_alone() {
    deadline(LIMIT, || {
        let pool = pool_builder(2).build().unwrap();
        let got: Vec<_> = pool.imap(fragile, 0..6).collect();
        assert_eq!(got[3].as_ref().unwrap_err().kind(), ErrorKind::Panicked);
        assert_eq!(got.iter().filter(|r| r.is_ok()).count(), 5);
        assert_eq!(pool.apply(square, 6).unwrap(), 36);
    });
}

#[test]
fn callbacks_may_submit_but_not_wait_and_may_drop_the_last_pool() {
    deadline(LIMIT, || {
        let pool = Arc::new(pool_builder(2).build().unwrap());
        let (tx, rx) = mpsc::channel();
        let inner = pool.clone();
        let cb = Callbacks::new().on_success(move |v: &u64| {
            // Submitting from a callback works; waiting on the same pool does not hang.
            let more = inner.apply_async(square, *v).unwrap();
            let waited = more.get().map_err(|e| e.kind());
            let blocking = inner.map(square, [1, 2]).map_err(|e| e.kind());
            tx.send((waited, blocking)).unwrap();
            // `inner` (perhaps the last handle of the pool) is dropped here.
        });
        let r = pool.apply_async_with(square, 3, cb).unwrap();
        drop(pool);
        let (waited, blocking) = rx.recv_timeout(Duration::from_secs(60)).unwrap();
        // The callback ran before the pool was dropped or after: either way, no hang.
        assert!(
            matches!(waited, Err(ErrorKind::InvalidState | ErrorKind::Terminated)),
            "{waited:?}"
        );
        assert!(
            matches!(
                blocking,
                Err(ErrorKind::InvalidState | ErrorKind::Terminated)
            ),
            "{blocking:?}"
        );
        let _ = r.get();
    });
}

#[test]
fn workers_outlive_the_thread_that_built_the_pool() {
    deadline(LIMIT, || {
        let pool = std::thread::spawn(|| pool_builder(2).build().unwrap())
            .join()
            .unwrap();
        std::thread::sleep(Duration::from_millis(200));
        let pids: HashSet<u32> = pool
            .map_chunked(nap, vec![100, 100], 1)
            .unwrap()
            .into_iter()
            .collect();
        assert_eq!(pids.len(), 2);
        // Both are the first workers: none had to be replaced.
        let again: HashSet<u32> = pool
            .map_chunked(nap, vec![100, 100], 1)
            .unwrap()
            .into_iter()
            .collect();
        assert_eq!(pids, again);
    });
}

#[test]
fn an_initializer_past_the_task_timeout_breaks_the_pool_instead_of_hanging() {
    deadline(LIMIT, || {
        let pool = pool_builder(1)
            .initializer(nap_forever, ())
            .task_timeout(Duration::from_millis(300))
            .build()
            .unwrap();
        let err = pool.apply(square, 2).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Initializer, "{err}");
        assert!(err.to_string().contains("task timeout"), "{err}");
    });
}

#[test]
fn a_pool_without_init_fails_with_a_clear_error_instead_of_hanging() {
    deadline(LIMIT, || {
        let child = Command::new(HELPER)
            .arg("pool-no-init")
            .env("MPROC_START_METHOD", method().as_str())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let out = finish_helper(
            child,
            Duration::from_secs(30),
            "building a pool without init did not return",
        );
        let out = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.contains("pool error: a worker process could not be started"),
            "{out}"
        );
    });
}
