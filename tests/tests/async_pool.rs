//! Pool and executor results awaited, under the start method named by
//! `MPROC_START_METHOD`: on tokio's single-threaded runtime (a hidden blocking wait would
//! stall every other task, and the tests that count ticks would see none) and on a bare
//! `block_on` of a few lines, since the futures need no runtime. Every test runs inside a
//! deadline that kills its children.

use std::future::{Future, poll_fn};
use std::pin::{Pin, pin};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll, Wake, Waker};
use std::time::Duration;

use futures_core::Stream;
use mproc::ExitStatus;
use mproc::pool::{Callbacks, Error, ErrorKind};
use mproc_tests::{deadline, executor_builder, pool_builder};

mproc::init_before_main!();

const LIMIT: Duration = Duration::from_secs(120);

// ---- task functions -------------------------------------------------------------------

fn square(x: u64) -> u64 {
    x * x
}

fn add(a: u64, b: u64) -> u64 {
    a + b
}

/// Sleeps `ms`, then returns it.
fn nap(ms: u64) -> u64 {
    std::thread::sleep(Duration::from_millis(ms));
    ms
}

/// Sleeps `ms`, then aborts the worker (SIGABRT).
fn abort_after(ms: u64) -> u64 {
    std::thread::sleep(Duration::from_millis(ms));
    std::process::abort();
}

fn fail_on_three(x: u64) -> u64 {
    assert!(x != 3, "three is not allowed");
    x
}

// ---- executors --------------------------------------------------------------------------

/// Runs `f` on tokio's runtime with one thread (and its clock and I/O driver).
fn on_tokio<T>(f: impl Future<Output = T>) -> T {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
        .block_on(f)
}

/// The smallest executor: polls `f` on this thread, parking between polls; its waker
/// unparks the thread. No runtime, no reactor.
fn bare_block_on<F: Future>(f: F) -> F::Output {
    struct Unpark(std::thread::Thread);
    impl Wake for Unpark {
        fn wake(self: Arc<Self>) {
            self.0.unpark();
        }
    }
    let mut f = pin!(f);
    let waker = Waker::from(Arc::new(Unpark(std::thread::current())));
    let mut cx = Context::from_waker(&waker);
    loop {
        if let Poll::Ready(v) = f.as_mut().poll(&mut cx) {
            return v;
        }
        std::thread::park();
    }
}

/// The next item of a stream (futures-util's `StreamExt::next`, which mproc does not pull in).
async fn next<S: Stream + Unpin>(s: &mut S) -> Option<S::Item> {
    poll_fn(|cx| Pin::new(&mut *s).poll_next(cx)).await
}

/// A task on the current runtime that counts a tick every `every`: a runtime thread that
/// something blocks shows as missing ticks. Abort it when done.
fn ticker(every: Duration) -> (Arc<AtomicU64>, tokio::task::JoinHandle<()>) {
    let ticks = Arc::new(AtomicU64::new(0));
    let counter = ticks.clone();
    let task = tokio::spawn(async move {
        loop {
            tokio::time::sleep(every).await;
            counter.fetch_add(1, Ordering::SeqCst);
        }
    });
    (ticks, task)
}

// ---- tests ------------------------------------------------------------------------------

#[test]
fn a_pool_task_awaited_leaves_the_runtime_thread_to_other_tasks() {
    deadline(LIMIT, || {
        let pool = pool_builder(2).build().unwrap();
        on_tokio(async {
            let (ticks, ticker) = ticker(Duration::from_millis(10));
            let slept = pool.apply_async(nap, 300).unwrap().await.unwrap();
            let seen = ticks.load(Ordering::SeqCst);
            ticker.abort();
            assert_eq!(slept, 300);
            // The only thread of the runtime ran the ticker while the task ran: a
            // blocking wait would have left it at most its first, immediate tick.
            assert!(seen >= 5, "the ticker ticked {seen} times in 300 ms");
        });
    });
}

#[test]
fn a_thousand_results_awaited_at_once() {
    deadline(LIMIT, || {
        let pool = pool_builder(2).build().unwrap();
        on_tokio(async {
            let mut set = tokio::task::JoinSet::new();
            for x in 0..1000u64 {
                let result = pool.apply_async(square, x).unwrap();
                set.spawn(async move { (x, result.await) });
            }
            let mut seen = vec![false; 1000];
            while let Some(joined) = set.join_next().await {
                let (x, r) = joined.unwrap();
                assert_eq!(r.unwrap(), x * x);
                seen[x as usize] = true;
            }
            assert!(seen.iter().all(|s| *s));
        });
    });
}

#[test]
fn results_resolve_on_a_bare_executor_without_a_runtime() {
    deadline(LIMIT, || {
        let pool = pool_builder(2).build().unwrap();
        let (one, many, pairs) = bare_block_on(async {
            let one = pool.apply_async(nap, 100).unwrap().await.unwrap();
            let many = pool.map_async(square, 0..10u64).unwrap().await.unwrap();
            let pairs = pool
                .starmap_async(add, [(1u64, 2u64), (3, 4)])
                .unwrap()
                .await
                .unwrap();
            (one, many, pairs)
        });
        assert_eq!(one, 100);
        assert_eq!(many, (0..10u64).map(square).collect::<Vec<_>>());
        assert_eq!(pairs, [3, 7]);
        let executor = executor_builder(1).build().unwrap();
        let task = executor.submit(square, 12).unwrap();
        assert_eq!(bare_block_on(task).unwrap(), 144);
    });
}

#[test]
fn map_async_and_starmap_async_awaited() {
    deadline(LIMIT, || {
        let pool = pool_builder(2).build().unwrap();
        on_tokio(async {
            let squares = pool.map_async(square, 0..500u64).unwrap();
            let sums = pool
                .starmap_async(add, (0..100u64).map(|x| (x, 1)))
                .unwrap();
            let failed = pool.map_async(fail_on_three, 0..8u64).unwrap();
            assert_eq!(
                squares.await.unwrap(),
                (0..500u64).map(square).collect::<Vec<_>>()
            );
            assert_eq!(sums.await.unwrap(), (1..=100u64).collect::<Vec<_>>());
            let e = failed.await.unwrap_err();
            assert_eq!((e.kind(), e.index()), (ErrorKind::Panicked, Some(3)), "{e}");
            assert!(e.panic_message().unwrap().contains("three is not allowed"));
        });
    });
}

#[test]
fn a_future_dropped_midway_leaves_the_result_gettable_and_the_pool_serving() {
    deadline(LIMIT, || {
        let pool = pool_builder(2).build().unwrap();
        on_tokio(async {
            // Borrowed, timed out, then awaited again; then the value is gone.
            let mut result = pool.apply_async(nap, 300).unwrap();
            let early = tokio::time::timeout(Duration::from_millis(20), &mut result).await;
            assert!(early.is_err(), "a 300 ms task was ready after 20 ms");
            assert!(!result.ready());
            assert_eq!((&mut result).await.unwrap(), 300);
            assert_eq!(result.get().unwrap_err().kind(), ErrorKind::AlreadyTaken);

            // Dropped midway, then taken by a blocking get.
            let mut result = pool.apply_async(nap, 200).unwrap();
            tokio::select! {
                _ = &mut result => panic!("a 200 ms task was ready at once"),
                _ = tokio::time::sleep(Duration::from_millis(10)) => {}
            }
            assert_eq!(result.get_timeout(Duration::from_secs(60)).unwrap(), 200);

            // An owned future dropped midway (its result with it): the pool still serves.
            let dropped = pool.map_async(nap, vec![200; 4]).unwrap();
            let early = tokio::time::timeout(Duration::from_millis(10), dropped).await;
            assert!(early.is_err());
            assert_eq!(pool.apply_async(square, 9).unwrap().await.unwrap(), 81);

            // A stream's `next` dropped midway loses no item.
            let mut stream = pool.imap(nap, [150, 0, 0]);
            let early = tokio::time::timeout(Duration::from_millis(10), next(&mut stream)).await;
            assert!(early.is_err(), "the first item sleeps 150 ms");
            let mut rest = Vec::new();
            while let Some(r) = next(&mut stream).await {
                rest.push(r.unwrap());
            }
            assert_eq!(rest, [150, 0, 0]);

            // An executor task's future dropped midway; the handle still reads the result.
            let executor = executor_builder(1).build().unwrap();
            let mut task = executor.submit(nap, 200).unwrap();
            let early = tokio::time::timeout(Duration::from_millis(10), &mut task).await;
            assert!(early.is_err());
            assert_eq!(task.result().unwrap(), 200);
        });
    });
}

#[test]
fn a_worker_that_dies_while_awaited_fails_as_get_does() {
    deadline(LIMIT, || {
        let pool = pool_builder(2).build().unwrap();
        let blocking = pool
            .apply_async(abort_after, 50)
            .unwrap()
            .get()
            .unwrap_err();
        let awaited: Error = on_tokio(async {
            let (ticks, ticker) = ticker(Duration::from_millis(5));
            let e = pool
                .apply_async(abort_after, 200)
                .unwrap()
                .await
                .unwrap_err();
            ticker.abort();
            assert!(ticks.load(Ordering::SeqCst) > 0, "the runtime was blocked");
            e
        });
        assert_eq!(blocking.kind(), ErrorKind::WorkerDied, "{blocking}");
        assert_eq!(awaited.kind(), blocking.kind(), "{awaited}");
        assert_eq!(awaited.exit_status(), Some(ExitStatus::Signal(6)));
        assert_eq!(awaited.exit_status(), blocking.exit_status());
        assert_eq!(awaited.index(), blocking.index());
        // The dead worker was replaced.
        assert_eq!(
            on_tokio(async { pool.apply_async(square, 5).unwrap().await }).unwrap(),
            25
        );
    });
}

#[test]
fn terminate_while_awaited_fails_as_get_does() {
    deadline(LIMIT, || {
        let pool = pool_builder(2).build().unwrap();
        let blocked = pool.map_async(nap, vec![60_000; 2]).unwrap();
        let (awaited, stream_item) = on_tokio(async {
            let awaited = pool.map_async(nap, vec![60_000; 2]).unwrap();
            let mut stream = pool.imap_unordered(nap, [60_000]);
            let terminate = async {
                tokio::time::sleep(Duration::from_millis(100)).await;
                // Blocking, but brief (it reaps the killed workers), and it needs nothing of
                // the runtime.
                pool.terminate();
            };
            let (awaited, item, ()) = tokio::join!(awaited, next(&mut stream), terminate);
            (awaited.unwrap_err(), item.unwrap().unwrap_err())
        });
        let blocking = blocked.get().unwrap_err();
        assert_eq!(blocking.kind(), ErrorKind::Terminated, "{blocking}");
        assert_eq!(awaited.kind(), blocking.kind(), "{awaited}");
        assert_eq!(stream_item.kind(), ErrorKind::Terminated, "{stream_item}");
        let after = on_tokio(async { pool.apply_async(square, 1) });
        assert_eq!(after.unwrap_err().kind(), ErrorKind::Terminated);
    });
}

#[test]
fn executor_tasks_awaited() {
    deadline(LIMIT, || {
        let executor = executor_builder(1).build().unwrap();
        on_tokio(async {
            let first = executor.submit(nap, 300).unwrap();
            let second = executor.submit(square, 4).unwrap();
            let third = executor.submit(square, 5).unwrap();
            while !first.running() {
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
            assert!(third.cancel());
            let (ticks, ticker) = ticker(Duration::from_millis(5));
            assert_eq!(first.await.unwrap(), 300);
            ticker.abort();
            assert!(ticks.load(Ordering::SeqCst) > 0, "the runtime was blocked");
            assert_eq!(second.await.unwrap(), 16);
            assert_eq!(third.await.unwrap_err().kind(), ErrorKind::Cancelled);

            // Killed while awaited: the same error as `result()` (of a task also running).
            let executor = executor_builder(2).build().unwrap();
            let long = executor.submit(nap, 60_000).unwrap();
            let blocked = executor.submit(nap, 60_000).unwrap();
            while !(long.running() && blocked.running()) {
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
            let kill = async {
                tokio::time::sleep(Duration::from_millis(50)).await;
                executor.kill_workers();
            };
            let (awaited, ()) = tokio::join!(long, kill);
            let awaited = awaited.unwrap_err();
            let blocking = blocked.result().unwrap_err();
            assert_eq!(blocking.kind(), ErrorKind::Terminated, "{blocking}");
            assert_eq!(awaited.kind(), blocking.kind(), "{awaited}");
        });
    });
}

#[test]
fn awaiting_in_a_callback_of_the_same_pool_fails_as_get_does_instead_of_hanging() {
    deadline(LIMIT, || {
        let pool = Arc::new(pool_builder(2).build().unwrap());
        let (tx, rx) = std::sync::mpsc::channel();
        let inner = pool.clone();
        let cb = Callbacks::new().on_success(move |_: &u64| {
            // The callback runs on the thread that delivers results: a `block_on` there
            // would wait for itself. The future says so at once, as `get` does.
            let awaited = bare_block_on(inner.apply_async(nap, 200).unwrap());
            let got = inner.apply_async(nap, 200).unwrap().get();
            let mut stream = inner.imap(nap, [200]);
            let streamed = bare_block_on(next(&mut stream)).unwrap();
            let kinds = [awaited, got, streamed].map(|r| r.map_err(|e| e.kind()));
            tx.send(kinds).unwrap();
        });
        let r = pool.apply_async_with(square, 3, cb).unwrap();
        let kinds = rx.recv_timeout(Duration::from_secs(60)).unwrap();
        assert_eq!(kinds, [Err(ErrorKind::InvalidState); 3]);
        assert_eq!(r.get().unwrap(), 9);
        // Out of the callback, the pool serves on.
        assert_eq!(on_tokio(pool.apply_async(square, 4).unwrap()).unwrap(), 16);
    });
}

#[test]
fn imap_streams_yield_what_the_iterators_yield() {
    deadline(LIMIT, || {
        let pool = pool_builder(2).build().unwrap();
        on_tokio(async {
            let mut ordered = pool.imap(square, 0..200u64);
            let mut got = Vec::new();
            while let Some(r) = next(&mut ordered).await {
                got.push(r.unwrap());
            }
            assert_eq!(got, (0..200u64).map(square).collect::<Vec<_>>());

            let mut unordered = pool.imap_unordered(fail_on_three, 0..10u64);
            let (mut ok, mut failed) = (Vec::new(), Vec::new());
            while let Some(r) = next(&mut unordered).await {
                match r {
                    Ok(v) => ok.push(v),
                    Err(e) => failed.push(e.index()),
                }
            }
            ok.sort();
            assert_eq!(ok, [0, 1, 2, 4, 5, 6, 7, 8, 9]);
            assert_eq!(failed, [Some(3)]);
        });
    });
}
