//! The queue benchmarks, each beside its floor: a bare single-producer single-consumer
//! ring of u64 in shared memory (no lock, no serialization) for the message rate, two
//! spinning atomics for the round trip, and 1 MiB `memcpy` for the bandwidth.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use mproc::{Barrier, Builder, Queue, SharedMemory, StartMethod};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_bytes::ByteBuf;

pub(crate) fn wall_ns() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or(Duration::ZERO)
        .as_nanos()
}

fn fork() -> Builder {
    Builder::new().start_method(StartMethod::Fork)
}

/// A child's own start (after the start barrier) and end, in wall-clock ns.
pub(crate) type Span = (u128, u128);

/// Forks a producer and a consumer process, each given `(shared, barrier, n)`, releases
/// them together, and returns both spans and what the consumer reported.
pub(crate) fn producer_consumer<S, R>(
    shared: S,
    n: u64,
    producer: fn((S, Barrier, u64)) -> Span,
    consumer: fn((S, Barrier, u64)) -> (Span, R),
) -> ([Span; 2], R)
where
    S: Clone + Serialize + DeserializeOwned,
    R: Serialize + DeserializeOwned,
{
    let barrier = Barrier::new(3).expect("barrier");
    let mut p = fork()
        .spawn(producer, (shared.clone(), barrier.clone(), n))
        .expect("spawn");
    let mut c = fork()
        .spawn(consumer, (shared, barrier.clone(), n))
        .expect("spawn");
    barrier.wait().expect("barrier");
    let ps = p.join().expect("producer");
    let (cs, report) = c.join().expect("consumer");
    ([ps, cs], report)
}

fn producer((q, barrier, n): (Queue<u64>, Barrier, u64)) -> Span {
    barrier.wait().expect("barrier");
    let t0 = wall_ns();
    for i in 0..n {
        q.put(i).expect("put");
    }
    (t0, wall_ns())
}

fn consumer((q, barrier, n): (Queue<u64>, Barrier, u64)) -> (Span, u64) {
    barrier.wait().expect("barrier");
    let t0 = wall_ns();
    let mut sum = 0u64;
    for _ in 0..n {
        sum = sum.wrapping_add(q.get().expect("get"));
    }
    ((t0, wall_ns()), sum)
}

/// Messages per second over the span from the first child's start (after the start
/// barrier) to the last child's end. The children's own clocks are used, not the
/// parent's: on two cores the parent may not run again before they are done.
pub(crate) fn rate(messages: u64, spans: &[Span]) -> f64 {
    let start = spans.iter().map(|s| s.0).min().unwrap_or(0);
    let end = spans.iter().map(|s| s.1).max().unwrap_or(0);
    messages as f64 / (end.saturating_sub(start).max(1) as f64 / 1e9)
}

/// `p` producer and `c` consumer processes move `total` u64 messages through one queue:
/// messages per second (see [`rate`]), and whether every message arrived once.
pub fn msgs_per_s(p: u64, c: u64, total: u64) -> (f64, bool) {
    let q = Queue::<u64>::new().expect("queue");
    let barrier = Barrier::new((p + c + 1) as u32).expect("barrier");
    let (per_p, per_c) = (total / p, total / c);
    let mut producers: Vec<_> = (0..p)
        .map(|_| {
            fork()
                .spawn(producer, (q.clone(), barrier.clone(), per_p))
                .expect("spawn")
        })
        .collect();
    let mut consumers: Vec<_> = (0..c)
        .map(|_| {
            fork()
                .spawn(consumer, (q.clone(), barrier.clone(), per_c))
                .expect("spawn")
        })
        .collect();
    barrier.wait().expect("barrier");
    let mut spans: Vec<_> = producers
        .iter_mut()
        .map(|k| k.join().expect("producer"))
        .collect();
    let mut sum = 0u64;
    for k in &mut consumers {
        let (span, s) = k.join().expect("consumer");
        spans.push(span);
        sum = sum.wrapping_add(s);
    }
    let expected = p * (per_p * (per_p - 1) / 2);
    let rate = rate(total, &spans);
    (rate, sum == expected && q.is_empty())
}

/// Messages per batch of `queue_msgs_per_s.batch_1p1c`.
const BATCH: u64 = 64;

fn batch_producer((q, barrier, n): (Queue<u64>, Barrier, u64)) -> Span {
    barrier.wait().expect("barrier");
    let t0 = wall_ns();
    let mut i = 0;
    while i < n {
        let end = (i + BATCH).min(n);
        q.put_many(i..end).expect("put_many");
        i = end;
    }
    (t0, wall_ns())
}

fn batch_consumer((q, barrier, n): (Queue<u64>, Barrier, u64)) -> (Span, u64) {
    barrier.wait().expect("barrier");
    let t0 = wall_ns();
    let (mut got, mut sum) = (0, 0u64);
    while got < n {
        for v in q.get_many(BATCH as usize).expect("get_many") {
            sum = sum.wrapping_add(v);
            got += 1;
        }
    }
    ((t0, wall_ns()), sum)
}

/// `queue_msgs_per_s.batch_1p1c`: `n` u64 messages from a producer process to a consumer
/// process, put with `put_many` in batches of 64 and taken with `get_many(64)`: messages
/// per second (timed as `msgs_per_s`), and whether every message arrived once.
pub fn batch_msgs_per_s(n: u64) -> (f64, bool) {
    let q = Queue::<u64>::new().expect("queue");
    let (spans, sum) = producer_consumer(q.clone(), n, batch_producer, batch_consumer);
    (rate(n, &spans), sum == n * (n - 1) / 2 && q.is_empty())
}

/// The floor ring: `SLOTS` u64 slots, the tail on one line and the head on another.
const SLOTS: usize = 4096;
const TAIL: usize = 0;
const HEAD: usize = 16; // 128 bytes on (u64 units)
const DATA: usize = 32;

fn ring_producer((shm, barrier, n): (SharedMemory, Barrier, u64)) -> Span {
    let a = shm.atomics::<AtomicU64>(0, DATA + SLOTS).expect("atomics");
    barrier.wait().expect("barrier");
    let t0 = wall_ns();
    let mut head = 0;
    for i in 0..n {
        while i - head == SLOTS as u64 {
            head = a[HEAD].load(Ordering::Acquire);
            std::hint::spin_loop();
        }
        a[DATA + (i as usize % SLOTS)].store(i, Ordering::Relaxed);
        a[TAIL].store(i + 1, Ordering::Release);
    }
    (t0, wall_ns())
}

fn ring_consumer((shm, barrier, n): (SharedMemory, Barrier, u64)) -> (Span, u64) {
    let a = shm.atomics::<AtomicU64>(0, DATA + SLOTS).expect("atomics");
    barrier.wait().expect("barrier");
    let t0 = wall_ns();
    let (mut tail, mut sum) = (0, 0u64);
    for i in 0..n {
        while i == tail {
            tail = a[TAIL].load(Ordering::Acquire);
            std::hint::spin_loop();
        }
        sum = sum.wrapping_add(a[DATA + (i as usize % SLOTS)].load(Ordering::Relaxed));
        a[HEAD].store(i + 1, Ordering::Release);
    }
    ((t0, wall_ns()), sum)
}

/// The floor of `queue_msgs_per_s.1p1c`: `n` u64 through the bare ring, one producer
/// process and one consumer process, timed the same way.
pub fn ring_floor(n: u64) -> f64 {
    let shm = SharedMemory::create((DATA + SLOTS) * 8).expect("segment");
    let (spans, sum) = producer_consumer(shm, n, ring_producer, ring_consumer);
    assert_eq!(sum, n * (n - 1) / 2, "the floor ring lost messages");
    rate(n, &spans)
}

fn echo((ping, pong): (Queue<Option<u64>>, Queue<Option<u64>>)) {
    while let Ok(Some(x)) = ping.get() {
        pong.put(Some(x + 1)).expect("put");
    }
}

/// Median µs of a round trip through two queues (parent puts on one, a child answers on
/// the other), over `rounds` batches of `n`; and whether every answer was right.
pub fn rtt_us(rounds: usize, n: u64) -> (Vec<f64>, bool) {
    let ping = Queue::<Option<u64>>::new().expect("queue");
    let pong = Queue::<Option<u64>>::new().expect("queue");
    let mut child = fork()
        .spawn(echo, (ping.clone(), pong.clone()))
        .expect("spawn");
    let mut ok = true;
    let mut out = Vec::new();
    for round in 0..=rounds {
        let t0 = Instant::now();
        for i in 0..n {
            ping.put(Some(i)).expect("put");
            ok &= pong.get().expect("get") == Some(i + 1);
        }
        if round > 0 {
            out.push(t0.elapsed().as_nanos() as f64 / n as f64 / 1e3);
        }
    }
    ping.put(None).expect("put");
    child.join().expect("echo child");
    (out, ok)
}

/// `async_queue_rtt_us`: the round trip of [`rtt_us`] (the same sync echo child), awaited
/// on our side: `put_async` then `get_async` on a current-thread tokio runtime.
pub fn async_rtt_us(rounds: usize, n: u64) -> (Vec<f64>, bool) {
    let ping = Queue::<Option<u64>>::new().expect("queue");
    let pong = Queue::<Option<u64>>::new().expect("queue");
    let mut child = fork()
        .spawn(echo, (ping.clone(), pong.clone()))
        .expect("spawn");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let (out, ok) = rt.block_on(async {
        let mut ok = true;
        let mut out = Vec::new();
        for round in 0..=rounds {
            let t0 = Instant::now();
            for i in 0..n {
                ping.put_async(Some(i)).await.expect("put");
                ok &= pong.get_async().await.expect("get") == Some(i + 1);
            }
            if round > 0 {
                out.push(t0.elapsed().as_nanos() as f64 / n as f64 / 1e3);
            }
        }
        ping.put_async(None).await.expect("put");
        (out, ok)
    });
    child.join().expect("echo child");
    (out, ok)
}

fn spin_echo((shm, n): (SharedMemory, u64)) {
    let a = shm.atomics::<AtomicU64>(0, 32).expect("atomics");
    for i in 0..n {
        while a[0].load(Ordering::Acquire) != i + 1 {
            std::hint::spin_loop();
        }
        a[16].store(i + 1, Ordering::Release);
    }
}

/// The floor of `queue_rtt_us`: a round trip of two processes spinning on two shared
/// atomics (µs, median of `rounds` batches of `n`).
pub fn spin_rtt_floor(rounds: usize, n: u64) -> Vec<f64> {
    let shm = SharedMemory::create(256).expect("segment");
    let total = n * (rounds as u64 + 1);
    let mut child = fork()
        .spawn(spin_echo, (shm.clone(), total))
        .expect("spawn");
    let a = shm.atomics::<AtomicU64>(0, 32).expect("atomics");
    let mut out = Vec::new();
    let mut i = 0;
    for round in 0..=rounds {
        let t0 = Instant::now();
        for _ in 0..n {
            a[0].store(i + 1, Ordering::Release);
            while a[16].load(Ordering::Acquire) != i + 1 {
                std::hint::spin_loop();
            }
            i += 1;
        }
        if round > 0 {
            out.push(t0.elapsed().as_nanos() as f64 / n as f64 / 1e3);
        }
    }
    child.join().expect("spin child");
    out
}

const MIB: usize = 1 << 20;

fn big_producer(
    ((q, size, cloned), barrier, n): ((Queue<ByteBuf>, usize, bool), Barrier, u64),
) -> Span {
    let payload = ByteBuf::from(vec![0x5au8; size]);
    barrier.wait().expect("barrier");
    let t0 = wall_ns();
    for _ in 0..n {
        if cloned {
            q.put(payload.clone()).expect("put");
        } else {
            q.put_ref(&payload).expect("put_ref");
        }
    }
    (t0, wall_ns())
}

fn big_consumer(
    ((q, size, _), barrier, n): ((Queue<ByteBuf>, usize, bool), Barrier, u64),
) -> (Span, bool) {
    barrier.wait().expect("barrier");
    let t0 = wall_ns();
    let mut ok = true;
    for _ in 0..n {
        let m = q.get().expect("get");
        ok &= m.len() == size && m[size / 2] == 0x5a && m[size - 1] == 0x5a;
    }
    ((t0, wall_ns()), ok)
}

/// `n` messages of `size` bytes (`serde_bytes::ByteBuf`) from a producer process to a
/// consumer process through a default queue (8 MiB ring: up to 2 MiB inline, larger ones
/// spilled): GB/s, timed as the message rate is; and whether every message arrived whole.
/// The producer puts one buffer by `put_ref`, as Python's `put(payload)` pickles the
/// caller's object without copying it first.
pub fn gbps(size: usize, n: u64) -> (f64, bool) {
    gbps_with(size, n, false)
}

/// [`gbps`] with a clone of the payload moved into each `put` (the owned put: the clone is
/// a copy of its own, which the producer pays for before the queue's).
pub fn gbps_cloned(size: usize, n: u64) -> (f64, bool) {
    gbps_with(size, n, true)
}

fn gbps_with(size: usize, n: u64, cloned: bool) -> (f64, bool) {
    let q = Queue::<ByteBuf>::new().expect("queue");
    let (spans, ok) = producer_consumer((q, size, cloned), n, big_producer, big_consumer);
    // Bytes per second over the span, in GB/s.
    (rate(n * size as u64, &spans) / 1e9, ok)
}

/// [`gbps`] of 1 MiB messages: the key `queue_1mib_gbps`.
pub fn gbps_1mib(n: u64) -> (f64, bool) {
    gbps(MIB, n)
}

/// The message sizes of `queue_gbps.<name>`: two inline in the default ring, two spilled.
pub const GBPS_SIZES: [(&str, usize); 4] = [
    ("queue_gbps.64kib", 64 << 10),
    ("queue_gbps.256kib", 256 << 10),
    ("queue_gbps.4mib", 4 * MIB),
    ("queue_gbps.16mib", 16 * MIB),
];

/// Says it is ready (one item), then holds the queue until killed.
fn hold_until_killed(q: Queue<u8>) {
    q.put(0).expect("put");
    std::thread::sleep(Duration::from_secs(600));
}

/// Milliseconds from the SIGKILL of a queue's last other holder to a `get` waiting on the
/// empty queue (in a thread of this process, asleep by then) returning `Disconnected`, over
/// `rounds` kills at spread-out moments of the waiter's 100 ms naps; and whether every wait
/// ended in `Disconnected`.
pub fn dead_peer_notice_ms(rounds: usize) -> (Vec<f64>, bool) {
    let mut out = Vec::new();
    let mut ok = true;
    for round in 0..rounds {
        let q = Queue::<u8>::new().expect("queue");
        let mut child = fork().spawn(hold_until_killed, q.clone()).expect("spawn");
        ok &= q.get().expect("ready") == 0;
        let waiter = {
            let q = q.clone();
            std::thread::spawn(move || {
                let r = q.get();
                (Instant::now(), r.is_err_and(|e| e.is_disconnected()))
            })
        };
        // Asleep for a while, killed at a different point of a nap each round.
        std::thread::sleep(Duration::from_millis(250 + (round as u64 * 37) % 100));
        let t0 = Instant::now();
        child.kill().expect("kill");
        let (t1, disconnected) = waiter.join().expect("waiter");
        ok &= disconnected;
        out.push(t1.saturating_duration_since(t0).as_secs_f64() * 1e3);
        let _ = child.join();
    }
    (out, ok)
}
