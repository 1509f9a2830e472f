//! Queues awaited on a tokio runtime with a single thread (so that any hidden blocking
//! deadlocks the test rather than passing), against sync peers in other processes, under
//! the start method named by `MPROC_START_METHOD`. Every test runs inside a deadline that
//! kills its children.

use std::collections::HashMap;
use std::future::poll_fn;
use std::pin::pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use futures_core::Stream;
use mproc::queue::ErrorKind;
use mproc::{GetError, JoinableQueue, Queue, SimpleQueue};
use mproc_tests::{builder, deadline};

mproc::init_before_main!();

const LIMIT: Duration = Duration::from_secs(120);

/// A runtime with one thread: the test's own.
fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

// ---- children -------------------------------------------------------------------------

/// Puts `(id, 0..n)`, pausing now and then so that consumers catch up and sleep.
fn produce((q, id, n): (Queue<(u32, u64)>, u32, u64)) {
    for i in 0..n {
        q.put((id, i)).unwrap();
        if i % 64 == 0 {
            std::thread::sleep(Duration::from_millis(1));
        }
    }
}

/// Gets until `None`; returns how many it took and their sum.
fn consume(q: Queue<Option<u64>>) -> (u64, u64) {
    let (mut n, mut sum) = (0, 0);
    while let Some(v) = q.get().unwrap() {
        n += 1;
        sum += v;
    }
    (n, sum)
}

/// Puts `0..n` with a short pause between each (every eighth, 20 times as long), then
/// closes the queue.
fn trickle_then_close((q, n, micros): (Queue<u64>, u64, u64)) {
    for i in 0..n {
        q.put(i).unwrap();
        let pause = if i % 8 == 7 { 20 * micros } else { micros };
        std::thread::sleep(Duration::from_micros(pause));
    }
    q.close();
}

/// Puts `0..n` and ends (dropping its handle).
fn put_and_leave((q, n): (Queue<u64>, u64)) {
    for i in 0..n {
        q.put(i).unwrap();
    }
}

/// Puts `first`, then holds the queue until killed.
fn put_then_hold((q, first): (Queue<u8>, u8)) {
    q.put(first).unwrap();
    std::thread::sleep(Duration::from_secs(600));
}

/// Takes one message, then holds the queue until killed.
fn take_one_then_hold(q: Queue<u8>) {
    q.get().unwrap();
    std::thread::sleep(Duration::from_secs(600));
}

/// Takes every item and marks it done, slowly, until `None`.
fn work_slowly(q: JoinableQueue<Option<u32>>) {
    while let Some(_job) = q.get().unwrap() {
        std::thread::sleep(Duration::from_millis(5));
        q.task_done().unwrap();
    }
    q.task_done().unwrap();
}

/// Takes one item, marks it done, takes the next, and holds the queue until killed.
fn do_one_then_hold(q: JoinableQueue<u8>) {
    q.get().unwrap();
    q.task_done().unwrap();
    q.get().unwrap();
    std::thread::sleep(Duration::from_secs(600));
}

// ---- async consumers, sync producers --------------------------------------------------

#[test]
fn async_consumers_here_take_what_sync_producers_in_children_put_exactly_once() {
    deadline(LIMIT, || {
        const PRODUCERS: u32 = 3;
        const CONSUMERS: usize = 4;
        const N: u64 = 3000;
        let q = Queue::<(u32, u64)>::new().unwrap();
        let mut children: Vec<_> = (0..PRODUCERS)
            .map(|id| builder().spawn(produce, (q.clone(), id, N)).unwrap())
            .collect();
        let taken = Arc::new(AtomicU64::new(0));
        let ticks = Arc::new(AtomicU64::new(0));
        let per_consumer = runtime().block_on(async {
            // A task that must keep running while the consumers wait.
            let ticker = {
                let ticks = ticks.clone();
                tokio::spawn(async move {
                    loop {
                        tokio::time::sleep(Duration::from_millis(1)).await;
                        ticks.fetch_add(1, Ordering::Relaxed);
                    }
                })
            };
            let tasks: Vec<_> = (0..CONSUMERS)
                .map(|_| {
                    let (q, taken) = (q.clone(), taken.clone());
                    tokio::spawn(async move {
                        let mut got = Vec::new();
                        loop {
                            match q.get_async().await {
                                Ok(m) => {
                                    got.push(m);
                                    let all = taken.fetch_add(1, Ordering::SeqCst) + 1;
                                    if all == u64::from(PRODUCERS) * N {
                                        q.close(); // the others end with Closed
                                    }
                                }
                                Err(GetError::Closed) => return got,
                                Err(e) => panic!("get_async: {e:?}"),
                            }
                        }
                    })
                })
                .collect();
            let mut per_consumer = Vec::new();
            for t in tasks {
                per_consumer.push(t.await.unwrap());
            }
            ticker.abort();
            per_consumer
        });
        for child in &mut children {
            child.join().unwrap();
        }
        // Exactly once, and in order per producer within each consumer.
        let mut all = Vec::new();
        for got in &per_consumer {
            let mut last: HashMap<u32, u64> = HashMap::new();
            for &(id, i) in got {
                if let Some(prev) = last.insert(id, i) {
                    assert!(i > prev, "producer {id}: {i} after {prev}");
                }
            }
            all.extend_from_slice(got);
        }
        all.sort_unstable();
        let want: Vec<_> = (0..PRODUCERS)
            .flat_map(|id| (0..N).map(move |i| (id, i)))
            .collect();
        assert!(
            all == want,
            "{} messages taken of {}",
            all.len(),
            want.len()
        );
        assert!(
            ticks.load(Ordering::Relaxed) >= 5,
            "the runtime's other task starved"
        );
    });
}

#[test]
fn an_async_producer_here_waits_for_room_that_sync_consumers_in_children_make() {
    deadline(LIMIT, || {
        const CONSUMERS: usize = 2;
        const N: u64 = 5000;
        let q = Queue::<Option<u64>>::bounded(4).unwrap();
        let mut children: Vec<_> = (0..CONSUMERS)
            .map(|_| builder().spawn(consume, q.clone()).unwrap())
            .collect();
        let full_seen = runtime().block_on(async {
            let mut full_seen = 0;
            for i in 0..N {
                full_seen += usize::from(q.is_full());
                q.put_async(Some(i)).await.unwrap();
            }
            for _ in 0..CONSUMERS {
                q.put_async(None).await.unwrap();
            }
            full_seen
        });
        let (mut n, mut sum) = (0, 0);
        for child in &mut children {
            let (cn, csum) = child.join().unwrap();
            n += cn;
            sum += csum;
        }
        assert_eq!((n, sum), (N, N * (N - 1) / 2));
        assert!(full_seen > 0, "the producer never had to wait for room");
    });
}

#[test]
fn simple_and_joinable_queues_put_and_get_async() {
    deadline(LIMIT, || {
        let q = SimpleQueue::<u64>::new().unwrap();
        let jq = JoinableQueue::<Option<u32>>::new().unwrap();
        let mut worker = builder().spawn(work_slowly, jq.clone()).unwrap();
        runtime().block_on(async {
            q.put_async(5).await.unwrap();
            assert_eq!(q.get_async().await.unwrap(), 5);
            for i in 0..10 {
                jq.put_async(Some(i)).await.unwrap();
            }
            // The worker marks them done slowly: the join waits, woken by its last one.
            jq.join_async().await.unwrap();
            assert_eq!(jq.unfinished(), 0);
            jq.put_async(None).await.unwrap();
        });
        worker.join().unwrap();
    });
}

/// Nanoseconds since the epoch (wall clock: comparable across processes).
fn now_ns() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64
}

/// `rounds` times: sleeps `ms`, then puts the time of its put.
fn put_time_later((q, rounds, ms): (Queue<u64>, u32, u64)) {
    for _ in 0..rounds {
        std::thread::sleep(Duration::from_millis(ms));
        q.put(now_ns()).unwrap();
    }
}

#[test]
fn a_sleeping_get_async_is_woken_by_the_put_not_by_its_nap() {
    deadline(LIMIT, || {
        const ROUNDS: u32 = 15;
        let q = Queue::<u64>::new().unwrap();
        let mut child = builder()
            .spawn(put_time_later, (q.clone(), ROUNDS, 30))
            .unwrap();
        let mut late_ms: Vec<f64> = runtime().block_on(async {
            let mut late = Vec::new();
            for _ in 0..ROUNDS {
                // 30 ms without a message: far past the spin budget, so the wait sleeps.
                let put_at = q.get_async().await.unwrap();
                late.push(now_ns().saturating_sub(put_at) as f64 / 1e6);
            }
            late
        });
        child.join().unwrap();
        late_ms.sort_by(f64::total_cmp);
        // Woken only by its 100 ms nap, a get would be ~50 ms late on average.
        let median = late_ms[late_ms.len() / 2];
        assert!(median < 20.0, "woken {late_ms:?} ms after the put");
    });
}

// ---- cancellation ---------------------------------------------------------------------

#[test]
fn gets_dropped_midway_lose_nothing_and_the_queue_goes_on() {
    deadline(LIMIT, || {
        const N: u64 = 400;
        let q = Queue::<u64>::new().unwrap();
        // Every eighth message 6 ms after the one before: longer than any timeout.
        let mut child = builder()
            .spawn(trickle_then_close, (q.clone(), N, 300))
            .unwrap();
        let (got, dropped) = runtime().block_on(async {
            let (mut got, mut dropped) = (Vec::new(), 0u32);
            let mut budget = 1u64;
            loop {
                // Timeouts from 1 µs to ~1 ms (tokio's timer rounds them up to its 1 ms
                // tick): dropped while spinning, or while asleep.
                budget = budget * 7 % 1009;
                match tokio::time::timeout(Duration::from_micros(budget), q.get_async()).await {
                    Ok(Ok(v)) => got.push(v),
                    Ok(Err(GetError::Closed)) => return (got, dropped),
                    Ok(Err(e)) => panic!("get_async: {e:?}"),
                    Err(_) => dropped += 1,
                }
            }
        });
        child.join().unwrap();
        assert!(got == (0..N).collect::<Vec<_>>(), "took {got:?}");
        assert!(dropped > 0, "no get was dropped midway");
    });
}

#[test]
fn a_put_dropped_while_waiting_for_room_puts_nothing_and_the_queue_goes_on() {
    deadline(LIMIT, || {
        let q = Queue::<u8>::bounded(1).unwrap();
        runtime().block_on(async {
            q.put_async(1).await.unwrap();
            let waited = tokio::time::timeout(Duration::from_millis(150), q.put_async(2)).await;
            assert!(waited.is_err(), "a put into a full queue returned");
            assert_eq!(q.len(), 1);
            assert_eq!(q.get_async().await.unwrap(), 1);
            assert!(q.try_get().unwrap_err().is_empty());
            q.put_async(3).await.unwrap();
            assert_eq!(q.get_async().await.unwrap(), 3);
        });
    });
}

// ---- the other side dies --------------------------------------------------------------

#[test]
fn a_get_awaiting_while_its_only_producer_is_killed_says_disconnected_as_get_does() {
    deadline(LIMIT, || {
        let q = Queue::<u8>::new().unwrap();
        let mut child = builder().spawn(put_then_hold, (q.clone(), 1)).unwrap();
        let pid = child.pid();
        runtime().block_on(async {
            assert_eq!(q.get_async().await.unwrap(), 1);
            let waiting = {
                let q = q.clone();
                tokio::spawn(async move { q.get_async().await })
            };
            tokio::time::sleep(Duration::from_millis(300)).await;
            assert!(!waiting.is_finished(), "the get did not wait");
            nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid as i32),
                nix::sys::signal::Signal::SIGKILL,
            )
            .unwrap();
            let t0 = Instant::now();
            let err = waiting.await.unwrap().unwrap_err();
            assert!(matches!(err, GetError::Disconnected), "{err:?}");
            assert!(t0.elapsed() < Duration::from_secs(30));
        });
        let _ = child.join();
        // The blocking get says the same.
        assert!(matches!(q.get().unwrap_err(), GetError::Disconnected));
    });
}

#[test]
fn a_put_awaiting_room_while_its_only_consumer_is_killed_gets_its_value_back() {
    deadline(LIMIT, || {
        let q = Queue::<u8>::bounded(1).unwrap();
        let mut child = builder().spawn(take_one_then_hold, q.clone()).unwrap();
        let pid = child.pid();
        runtime().block_on(async {
            q.put_async(1).await.unwrap();
            while !q.is_empty() {
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
            q.put_async(2).await.unwrap(); // fills it
            let waiting = {
                let q = q.clone();
                tokio::spawn(async move { q.put_async(3).await })
            };
            tokio::time::sleep(Duration::from_millis(300)).await;
            assert!(!waiting.is_finished(), "the put did not wait");
            nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid as i32),
                nix::sys::signal::Signal::SIGKILL,
            )
            .unwrap();
            let err = waiting.await.unwrap().unwrap_err();
            assert!(err.is_disconnected(), "{err:?}");
            assert_eq!(err.into_inner(), 3);
        });
        let _ = child.join();
        assert!(q.put(4).unwrap_err().is_disconnected());
        assert_eq!(q.len(), 1);
    });
}

#[test]
fn a_join_async_with_work_left_and_its_worker_killed_says_disconnected_as_join_does() {
    deadline(LIMIT, || {
        let q = JoinableQueue::<u8>::new().unwrap();
        q.put(1).unwrap();
        q.put(2).unwrap();
        let mut child = builder().spawn(do_one_then_hold, q.clone()).unwrap();
        let pid = child.pid();
        runtime().block_on(async {
            while !q.is_empty() {
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
            let waiting = {
                let q = q.clone();
                tokio::spawn(async move { q.join_async().await })
            };
            tokio::time::sleep(Duration::from_millis(300)).await;
            assert!(!waiting.is_finished(), "the join did not wait");
            nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid as i32),
                nix::sys::signal::Signal::SIGKILL,
            )
            .unwrap();
            let err = waiting.await.unwrap().unwrap_err();
            assert_eq!(err.kind(), ErrorKind::Disconnected, "{err}");
        });
        let _ = child.join();
        assert_eq!(q.join().unwrap_err().kind(), ErrorKind::Disconnected);
        assert_eq!(q.unfinished(), 1);
    });
}

// ---- iterators and streams ------------------------------------------------------------

/// Collects a stream on the current runtime.
async fn collect<T>(stream: impl Stream<Item = Result<T, GetError>>) -> Vec<T> {
    let mut stream = pin!(stream);
    let mut out = Vec::new();
    while let Some(item) = poll_fn(|cx| stream.as_mut().poll_next(cx)).await {
        out.push(item.unwrap());
    }
    out
}

#[test]
fn the_iterator_and_the_stream_end_when_the_queue_is_closed_and_drained() {
    deadline(LIMIT, || {
        const N: u64 = 300;
        let q = Queue::<u64>::new().unwrap();
        let mut child = builder()
            .spawn(trickle_then_close, (q.clone(), N, 100))
            .unwrap();
        let got: Vec<u64> = q.iter().map(Result::unwrap).collect();
        child.join().unwrap();
        assert!(got == (0..N).collect::<Vec<_>>());
        assert!(
            q.iter().next().is_none(),
            "a closed, drained queue yields nothing"
        );

        let q = Queue::<u64>::new().unwrap();
        let mut child = builder()
            .spawn(trickle_then_close, (q.clone(), N, 100))
            .unwrap();
        let got = runtime().block_on(collect(q.stream()));
        child.join().unwrap();
        assert!(got == (0..N).collect::<Vec<_>>());
    });
}

#[test]
fn the_iterator_and_the_stream_end_when_the_producer_is_gone() {
    deadline(LIMIT, || {
        const N: u64 = 200;
        let q = Queue::<u64>::new().unwrap();
        let mut child = builder().spawn(put_and_leave, (q.clone(), N)).unwrap();
        let got: Vec<u64> = q.iter().map(Result::unwrap).collect();
        child.join().unwrap();
        assert!(got == (0..N).collect::<Vec<_>>());

        let q = Queue::<u64>::new().unwrap();
        let mut child = builder().spawn(put_and_leave, (q.clone(), N)).unwrap();
        let got = runtime().block_on(collect(q.stream()));
        child.join().unwrap();
        assert!(got == (0..N).collect::<Vec<_>>());
        assert!(q.get().unwrap_err().is_disconnected());
    });
}

#[test]
fn a_message_that_does_not_decode_is_an_err_item_and_the_stream_goes_on() {
    deadline(LIMIT, || {
        let q = Queue::<String>::new().unwrap();
        // The same queue seen with another type: a u8 put is no String.
        let raw: Queue<Vec<u8>> = mproc::wire::decode(mproc::wire::encode(&q).unwrap()).unwrap();
        raw.put(vec![0xff, 0xfe]).unwrap();
        q.put("after".into()).unwrap();
        q.close();
        let items: Vec<_> = q.iter().collect();
        assert_eq!(items.len(), 2);
        assert!(matches!(items[0], Err(GetError::Failed(_))), "{items:?}");
        assert_eq!(items[1].as_deref().unwrap(), "after");
    });
}

/// A queue built with `async_waits(false)` (no eventfd: one fd less per holder) works
/// blocking, here and in a child; an async call that must wait fails at once with `Io`
/// instead of hanging.
#[test]
fn a_queue_without_async_waits_refuses_them_at_once() {
    deadline(LIMIT, || {
        let q = mproc::queue::Builder::new()
            .async_waits(false)
            .build::<u64>()
            .unwrap();
        let back = Queue::<u64>::new().unwrap();
        let mut child = builder()
            .spawn(
                |(q, back): (Queue<u64>, Queue<u64>)| {
                    let v = q.get().unwrap();
                    back.put(v + 1).unwrap();
                },
                (q.clone(), back.clone()),
            )
            .unwrap();
        q.put(41).unwrap();
        assert_eq!(back.get().unwrap(), 42);
        child.join().unwrap();
        runtime().block_on(async {
            let e = q.get_async().await.unwrap_err();
            match e {
                GetError::Failed(e) => assert_eq!(e.kind(), ErrorKind::Io, "{e}"),
                other => panic!("not an Io error: {other:?}"),
            }
            // What needs no wait goes through.
            q.put_async(7).await.unwrap();
            assert_eq!(q.get_async().await.unwrap(), 7);
        });
    });
}
