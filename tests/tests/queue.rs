//! Queues between processes, under the start method named by `MPROC_START_METHOD`. Every
//! test runs inside a deadline that kills its children.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use mproc::queue::ErrorKind;
use mproc::{Connection, GetError, JoinableQueue, Queue, SharedAtomic, SimpleQueue};
use mproc_tests::{builder, deadline};
use serde_bytes::ByteBuf;

mproc::init_before_main!();

const LIMIT: Duration = Duration::from_secs(120);
const MIB: usize = 1 << 20;

// ---- children -------------------------------------------------------------------------

/// Puts `(id, 0..n)`.
fn produce((q, id, n): (Queue<(u32, u64)>, u32, u64)) {
    for i in 0..n {
        q.put((id, i)).unwrap();
    }
}

/// Gets `n` values; returns (count, sum, sum of squares) and checks FIFO per producer.
fn consume_checked((q, n): (Queue<(u32, u64)>, u64)) -> (u64, u64, u64, bool) {
    let mut last = std::collections::HashMap::new();
    let (mut sum, mut squares, mut in_order) = (0u64, 0u64, true);
    for _ in 0..n {
        let (id, i) = q.get().unwrap();
        if let Some(prev) = last.insert(id, i) {
            in_order &= i > prev;
        }
        let v = (u64::from(id) << 32) | i;
        sum = sum.wrapping_add(v);
        squares = squares.wrapping_add(v.wrapping_mul(v));
    }
    (n, sum, squares, in_order)
}

fn get_after_timeout((q, ms): (Queue<u8>, u64)) -> (bool, u128) {
    let t0 = Instant::now();
    let empty = q
        .get_timeout(Duration::from_millis(ms))
        .unwrap_err()
        .is_empty();
    (empty, t0.elapsed().as_millis())
}

fn drain_until_closed(q: Queue<u32>) -> (Vec<u32>, bool) {
    let mut got = Vec::new();
    loop {
        match q.get() {
            Ok(v) => got.push(v),
            Err(e) => return (got, e.is_closed()),
        }
    }
}

fn echo_big((inbox, outbox): (Queue<ByteBuf>, Queue<ByteBuf>)) {
    let m = inbox.get().unwrap();
    outbox.put(m).unwrap();
}

fn put_gib(q: Queue<ByteBuf>) {
    let mut v = vec![0u8; 1 << 30];
    for (i, chunk) in v.chunks_mut(4096).enumerate() {
        chunk[0] = i as u8;
    }
    q.put(ByteBuf::from(v)).unwrap();
}

fn work_on((q, results): (JoinableQueue<u64>, Queue<u64>)) {
    while let Ok(job) = q.get() {
        results.put(job * 2).unwrap();
        q.task_done().unwrap();
    }
}

/// Puts `(id, 0..)` forever (until killed), with a payload large enough that the kill
/// often lands inside `put`.
fn produce_forever((q, id): (Queue<(u32, u64, ByteBuf)>, u32)) {
    let pad = ByteBuf::from(vec![7u8; 3000]);
    for i in 0.. {
        q.put((id, i, pad.clone())).unwrap();
    }
}

/// Gets forever (until killed), recording how many it took and the last value.
fn consume_forever(
    (q, count, last): (Queue<u64>, SharedAtomic<AtomicU64>, SharedAtomic<AtomicU64>),
) {
    loop {
        let v = q.get().unwrap();
        last.store(v, Ordering::SeqCst);
        count.fetch_add(1, Ordering::SeqCst);
    }
}

fn send_through_received_pipe(q: Queue<Connection<String>>) -> bool {
    let mut conn = q.get().unwrap();
    conn.send(&"through a queue".to_string()).is_ok()
}

fn take_one(q: SimpleQueue<String>) -> String {
    q.get().unwrap()
}

// ---- tests ----------------------------------------------------------------------------

#[test]
fn each_producer_s_messages_arrive_in_order() {
    deadline(LIMIT, || {
        let q = Queue::<(u32, u64)>::bounded(64).unwrap();
        let n = 5_000;
        let mut kids: Vec<_> = (0..3)
            .map(|id| builder().spawn(produce, (q.clone(), id, n)).unwrap())
            .collect();
        let (count, _, _, in_order) = consume_checked((q.clone(), 3 * n));
        for k in &mut kids {
            k.join().unwrap();
        }
        assert_eq!(count, 3 * n);
        assert!(in_order, "a producer's messages were reordered");
        assert!(q.is_empty());
    });
}

#[test]
fn timeouts_return_empty_and_full_after_about_the_timeout() {
    deadline(LIMIT, || {
        let q = Queue::<u8>::bounded(2).unwrap();
        // A child waiting on an empty queue gives up after its timeout (not before).
        let (empty, ms) = builder()
            .spawn(get_after_timeout, (q.clone(), 200))
            .unwrap()
            .join()
            .unwrap();
        assert!(empty);
        assert!(ms >= 200, "gave up after {ms} ms");
        assert!(q.try_get().unwrap_err().is_empty());
        // Full: the value comes back. (A queue never shared: `q`'s other holder has ended,
        // so a wait on `q` longer than a nap would end in `Disconnected`.)
        let q = Queue::<u8>::bounded(2).unwrap();
        q.put(1).unwrap();
        q.put(2).unwrap();
        assert!(q.is_full());
        assert_eq!(q.len(), 2);
        let t0 = Instant::now();
        let err = q.put_timeout(3, Duration::from_millis(150)).unwrap_err();
        assert!(err.is_full());
        assert_eq!(err.into_inner(), 3);
        assert!(t0.elapsed() >= Duration::from_millis(150));
        assert_eq!(q.try_put(4).unwrap_err().into_inner(), 4);
        // Room made by a consumer lets a waiting put through.
        assert_eq!(q.get().unwrap(), 1);
        q.put_timeout(5, Duration::from_secs(10)).unwrap();
        assert_eq!((q.get().unwrap(), q.get().unwrap()), (2, 5));
    });
}

#[test]
fn close_fails_later_puts_and_lets_consumers_drain_then_stop() {
    deadline(LIMIT, || {
        let q = Queue::<u32>::new().unwrap();
        // A consumer blocked on the empty queue is woken by the close.
        let mut waiting = builder().spawn(drain_until_closed, q.clone()).unwrap();
        std::thread::sleep(Duration::from_millis(100));
        for i in 0..3 {
            q.put(i).unwrap();
        }
        q.close();
        assert!(q.is_closed());
        let err = q.put(9).unwrap_err();
        assert!(err.is_closed());
        assert_eq!(err.into_inner(), 9);
        let (got, closed) = waiting.join().unwrap();
        assert!(closed);
        assert_eq!(got, [0, 1, 2]);
        assert!(q.get().unwrap_err().is_closed());
    });
}

#[test]
fn messages_of_16_mib_travel_both_ways() {
    deadline(LIMIT, || {
        let (there, back) = (Queue::<ByteBuf>::new().unwrap(), Queue::new().unwrap());
        let mut child = builder()
            .spawn(echo_big, (there.clone(), back.clone()))
            .unwrap();
        let payload: Vec<u8> = (0..16 * MIB).map(|i| (i % 251) as u8).collect();
        there.put(ByteBuf::from(payload.clone())).unwrap();
        let echoed = back.get().unwrap();
        child.join().unwrap();
        assert!(
            echoed.as_slice() == payload.as_slice(),
            "16 MiB changed on the way"
        );
    });
}

/// Puts one buffer of each length `n` times by `put_ref`, changing one byte between puts,
/// and returns the buffers it kept.
fn put_borrowed((q, lens, n): (Queue<ByteBuf>, Vec<usize>, u8)) -> Vec<usize> {
    let mut kept = Vec::new();
    for len in lens {
        let mut buf = ByteBuf::from(vec![0xa5u8; len]);
        for i in 0..n {
            buf[len / 2] = i;
            q.put_ref(&buf).unwrap();
        }
        kept.push(buf.len());
    }
    kept
}

#[test]
fn put_ref_sends_a_borrowed_value_many_times_and_reports_full_and_closed() {
    deadline(LIMIT, || {
        // Inline, inline and large (spilled to a segment), from another process.
        let lens = vec![100, MIB, 16 * MIB];
        let n = 3u8;
        let q = Queue::<ByteBuf>::new().unwrap();
        let mut child = builder()
            .spawn(put_borrowed, (q.clone(), lens.clone(), n))
            .unwrap();
        for &len in &lens {
            for i in 0..n {
                let m = q.get().unwrap();
                assert_eq!(m.len(), len);
                assert_eq!(m[len / 2], i, "put {i} of {len} bytes");
                assert!(
                    m[..len / 2]
                        .iter()
                        .chain(&m[len / 2 + 1..])
                        .all(|&b| b == 0xa5)
                );
            }
        }
        assert_eq!(child.join().unwrap(), lens);

        // Refused: full, then closed; the caller keeps its value.
        let q = Queue::<String>::bounded(1).unwrap();
        let v = String::from("kept");
        q.put_ref(&v).unwrap();
        let full = q
            .put_ref_timeout(&v, Duration::from_millis(20))
            .unwrap_err();
        assert!(full.is_full());
        q.close();
        assert!(q.put_ref(&v).unwrap_err().is_closed());
        assert_eq!(q.get().unwrap(), "kept");

        // A joinable queue counts what put_ref puts.
        let jq = JoinableQueue::<u32>::new().unwrap();
        jq.put_ref(&5).unwrap();
        assert_eq!(jq.unfinished(), 1);
        assert_eq!(jq.get().unwrap(), 5);
        jq.task_done().unwrap();
        jq.join_timeout(Duration::from_secs(5)).unwrap();
    });
}

/// Puts `n` messages of `len` bytes, each filled from its number, one per `put`.
fn put_numbered_big((q, n, len): (Queue<(u64, ByteBuf)>, u64, usize)) {
    for seq in 0..n {
        q.put((seq, numbered(seq, len))).unwrap();
    }
}

fn numbered(seq: u64, len: usize) -> ByteBuf {
    ByteBuf::from(
        (0..len)
            .map(|i| (seq as u8).wrapping_mul(7) ^ (i as u8))
            .collect::<Vec<u8>>(),
    )
}

#[test]
fn large_messages_in_reused_segments_arrive_each_whole_and_in_order() {
    deadline(LIMIT, || {
        // Many more messages than a producer's segments, of sizes that make it replace
        // small ones with larger: a segment rewritten while read would show.
        let q = Queue::<(u64, ByteBuf)>::bounded(3).unwrap();
        let (n, len) = (40u64, 3 * MIB);
        let mut child = builder()
            .spawn(put_numbered_big, (q.clone(), n, len))
            .unwrap();
        for seq in 0..n {
            let (got, bytes) = q.get().unwrap();
            assert_eq!(got, seq);
            assert!(
                bytes == numbered(seq, len),
                "message {seq} changed on the way"
            );
        }
        child.join().unwrap();
        assert!(q.is_empty());
    });
}

/// A message of the batch test: its number, bytes that follow from it, and sometimes a
/// pipe end.
type Mixed = (u64, ByteBuf, Option<Connection<u64>>);

/// Puts `0..n` in batches of up to 64 values (a few large, a few carrying a pipe end),
/// through `put_many`.
fn put_many_mixed((q, n): (Queue<Mixed>, u64)) {
    let mut seq = 0;
    while seq < n {
        let batch: Vec<_> = (seq..(seq + 64).min(n))
            .map(|i| {
                let big = if i % 97 == 5 {
                    3 * MIB
                } else {
                    (i % 40) as usize
                };
                let pipe = (i % 101 == 7).then(|| {
                    let (a, mut b) = mproc::pipe::<u64>().unwrap();
                    b.send(&i).unwrap();
                    a
                });
                (i, numbered(i, big), pipe)
            })
            .collect();
        seq += batch.len() as u64;
        q.put_many(batch).unwrap();
    }
}

#[test]
fn batches_keep_order_with_large_messages_and_handles_among_them() {
    deadline(LIMIT, || {
        // A small bound: batches are cut by room as well as by size.
        let q = Queue::bounded(50).unwrap();
        let n = 20_000u64;
        let mut child = builder().spawn(put_many_mixed, (q.clone(), n)).unwrap();
        let mut next = 0u64;
        while next < n {
            let got = q.get_many(64).unwrap();
            assert!(!got.is_empty() && got.len() <= 64);
            for (i, bytes, pipe) in got {
                assert_eq!(i, next);
                assert!(bytes == numbered(i, bytes.len()), "message {i} changed");
                if let Some(mut pipe) = pipe {
                    assert_eq!(pipe.recv().unwrap(), i);
                }
                next += 1;
            }
        }
        child.join().unwrap();
        assert!(q.try_get_many(64).unwrap_err().is_empty());
    });
}

#[test]
fn a_batch_gives_back_what_it_could_not_put_and_a_bad_message_ends_a_batch() {
    deadline(LIMIT, || {
        let q = Queue::<u32>::bounded(10).unwrap();
        let rest = q.try_put_many(0..25).unwrap_err();
        assert!(rest.is_full());
        assert_eq!(rest.into_inner(), (10..25).collect::<Vec<_>>());
        assert_eq!(q.get_many(4).unwrap(), [0, 1, 2, 3]);
        q.close();
        assert!(q.put_many([1]).unwrap_err().is_closed());
        assert_eq!(q.get_many(100).unwrap(), [4, 5, 6, 7, 8, 9]);
        assert!(q.get_many(100).unwrap_err().is_closed());
        // A message that is not a `u32` (from a handle of another type) ends the batch
        // before it, then comes back as the next batch's error; nothing else is lost.
        let q = Queue::<u32>::new().unwrap();
        let wrong: Queue<String> = mproc::wire::decode(mproc::wire::encode(&q).unwrap()).unwrap();
        q.put_many([1, 2]).unwrap();
        wrong
            .put("not a number, and long enough not to decode".into())
            .unwrap();
        q.put(3).unwrap();
        assert_eq!(q.get_many(10).unwrap(), [1, 2]);
        assert!(matches!(q.get_many(10), Err(GetError::Failed(_))));
        assert_eq!(q.get_many(10).unwrap(), [3]);
    });
}

#[test]
fn a_1_gib_message_arrives_whole() {
    deadline(LIMIT, || {
        let q = Queue::<ByteBuf>::new().unwrap();
        let mut child = builder().spawn(put_gib, q.clone()).unwrap();
        let m = q.get().unwrap();
        child.join().unwrap();
        assert_eq!(m.len(), 1 << 30);
        let marks_ok = m
            .chunks(4096)
            .enumerate()
            .all(|(i, c)| c[0] == i as u8 && c[1] == 0 && c[4095] == 0);
        assert!(marks_ok, "the 1 GiB message changed on the way");
    });
}

#[test]
fn a_joinable_queue_counts_work_until_done() {
    deadline(LIMIT, || {
        let q = JoinableQueue::<u64>::bounded(16).unwrap();
        let results = Queue::<u64>::new().unwrap();
        let mut workers: Vec<_> = (0..2)
            .map(|_| {
                builder()
                    .spawn(work_on, (q.clone(), results.clone()))
                    .unwrap()
            })
            .collect();
        for job in 0..200 {
            q.put(job).unwrap();
        }
        q.join_timeout(LIMIT).unwrap();
        assert_eq!(q.unfinished(), 0);
        let mut doubled: Vec<u64> = (0..200).map(|_| results.get().unwrap()).collect();
        doubled.sort_unstable();
        assert_eq!(doubled, (0..200).map(|j| j * 2).collect::<Vec<_>>());
        let err = q.task_done().unwrap_err();
        assert_eq!(err.kind(), ErrorKind::TooManyTaskDone);
        // Unfinished work makes join_timeout fail, not hang.
        q.close();
        for w in &mut workers {
            w.join().unwrap();
        }
        let q = JoinableQueue::<u64>::new().unwrap();
        q.put(1).unwrap();
        let err = q.join_timeout(Duration::from_millis(50)).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Timeout);
    });
}

#[test]
fn four_producers_and_four_consumers_lose_and_duplicate_nothing() {
    deadline(Duration::from_secs(600), || {
        let q = Queue::<(u32, u64)>::bounded(1024).unwrap();
        let n = 250_000u64;
        let mut producers: Vec<_> = (0..4)
            .map(|id| builder().spawn(produce, (q.clone(), id, n)).unwrap())
            .collect();
        let mut consumers: Vec<_> = (0..4)
            .map(|_| builder().spawn(consume_checked, (q.clone(), n)).unwrap())
            .collect();
        for p in &mut producers {
            p.join().unwrap();
        }
        let (mut count, mut sum, mut squares) = (0u64, 0u64, 0u64);
        for c in &mut consumers {
            let (k, s, sq, in_order) = c.join().unwrap();
            assert!(
                in_order,
                "a consumer saw a producer's messages out of order"
            );
            count += k;
            sum = sum.wrapping_add(s);
            squares = squares.wrapping_add(sq);
        }
        let (mut want_sum, mut want_squares) = (0u64, 0u64);
        for id in 0..4u64 {
            for i in 0..n {
                let v = (id << 32) | i;
                want_sum = want_sum.wrapping_add(v);
                want_squares = want_squares.wrapping_add(v.wrapping_mul(v));
            }
        }
        assert_eq!(count, 4 * n);
        assert_eq!(
            (sum, squares),
            (want_sum, want_squares),
            "lost or duplicated"
        );
        assert!(q.is_empty());
    });
}

#[test]
fn a_producer_killed_mid_put_loses_at_most_its_message_in_flight() {
    deadline(LIMIT, || {
        let q = Queue::<(u32, u64, ByteBuf)>::bounded(32).unwrap();
        for round in 0..4u32 {
            let mut victim = builder()
                .spawn(produce_forever, (q.clone(), round))
                .unwrap();
            // Let it fill the queue and block, take some, and kill it while it puts.
            let mut expect = 0;
            for _ in 0..(200 + 37 * round) {
                let (id, i, pad) = q.get_timeout(LIMIT).unwrap();
                assert_eq!((id, i, pad.len()), (round, expect, 3000));
                expect += 1;
            }
            victim.kill().unwrap();
            let _ = victim.join();
            // What it had put arrives, in order, and nothing after a gap.
            while let Ok((id, i, _)) = q.get_timeout(Duration::from_millis(300)) {
                assert_eq!((id, i), (round, expect));
                expect += 1;
            }
            // The queue goes on: another producer's puts all arrive.
            q.put((99, 0, ByteBuf::new())).unwrap();
            assert_eq!(q.get().unwrap().0, 99);
        }
    });
}

#[test]
fn a_consumer_killed_mid_get_loses_at_most_its_message_in_flight() {
    deadline(LIMIT, || {
        for round in 0..4u64 {
            let q = Queue::<u64>::bounded(100_000).unwrap();
            let n = 50_000u64;
            for i in 0..n {
                q.put(i).unwrap();
            }
            let count = SharedAtomic::<AtomicU64>::new().unwrap();
            let last = SharedAtomic::<AtomicU64>::new().unwrap();
            let mut victim = builder()
                .spawn(consume_forever, (q.clone(), count.clone(), last.clone()))
                .unwrap();
            let t0 = Instant::now();
            while count.load(Ordering::SeqCst) < 1000 + round * 3000 && t0.elapsed() < LIMIT {
                std::thread::yield_now();
            }
            victim.kill().unwrap();
            let _ = victim.join();
            let taken = count.load(Ordering::SeqCst);
            // The rest arrive here in order, starting at most one past what it recorded.
            let first = q.get().unwrap();
            assert!(
                first == taken || first == taken + 1,
                "after {taken} taken by the victim, the next is {first}"
            );
            let mut expect = first + 1;
            while expect < n {
                assert_eq!(q.get().unwrap(), expect);
                expect += 1;
            }
            assert!(q.try_get().unwrap_err().is_empty());
        }
    });
}

#[test]
fn handles_inside_messages_arrive_working() {
    deadline(LIMIT, || {
        let q = Queue::<Connection<String>>::new().unwrap();
        let (a, mut b) = mproc::pipe::<String>().unwrap();
        let mut child = builder()
            .spawn(send_through_received_pipe, q.clone())
            .unwrap();
        q.put(a).unwrap();
        assert_eq!(b.recv().unwrap(), "through a queue");
        assert!(child.join().unwrap());
    });
}

#[test]
fn a_simple_queue_travels_and_works() {
    deadline(LIMIT, || {
        let q = SimpleQueue::<String>::new().unwrap();
        let mut child = builder().spawn(take_one, q.clone()).unwrap();
        q.put("simple".to_string()).unwrap();
        assert_eq!(child.join().unwrap(), "simple");
        assert!(q.is_empty());
        assert!(matches!(
            q.get_timeout(Duration::from_millis(10)),
            Err(GetError::Empty)
        ));
    });
}

// ---- a queue whose other side is gone -------------------------------------------------

/// Puts `first`, then holds the queue until killed.
fn put_then_hold((q, first): (Queue<u8>, u8)) {
    q.put(first).unwrap();
    std::thread::sleep(Duration::from_secs(600));
}

/// Takes one item and marks it done, then ends with the other one unfinished.
fn do_one_of_two(q: JoinableQueue<u8>) {
    q.get().unwrap();
    q.task_done().unwrap();
    q.get().unwrap();
}

/// Receives a queue through a pipe after `ms`, then puts 7 on it.
fn receive_queue_late((mut rx, ms): (mproc::Receiver<Queue<u8>>, u64)) {
    std::thread::sleep(Duration::from_millis(ms));
    let q = rx.recv().unwrap();
    q.put(7).unwrap();
}

/// Ends after `ms`, leaving what was sent to it unread.
fn read_nothing((_rx, ms): (mproc::Receiver<Queue<u8>>, u64)) {
    std::thread::sleep(Duration::from_millis(ms));
}

/// Takes until the queue says nobody is left; returns what it took and how it ended.
fn drain_until_disconnected(q: Queue<u32>) -> (Vec<u32>, bool) {
    let mut got = Vec::new();
    loop {
        match q.get() {
            Ok(v) => got.push(v),
            Err(e) => return (got, e.is_disconnected()),
        }
    }
}

#[test]
fn a_get_whose_only_producer_was_killed_says_disconnected_after_the_messages() {
    deadline(LIMIT, || {
        let q = Queue::<u8>::new().unwrap();
        let mut child = builder().spawn(put_then_hold, (q.clone(), 1)).unwrap();
        // What it put before dying is delivered; then, nobody is left.
        assert_eq!(q.get().unwrap(), 1);
        child.kill().unwrap();
        let t0 = Instant::now();
        let err = q.get_timeout(Duration::from_secs(60)).unwrap_err();
        assert!(err.is_disconnected(), "{err:?}");
        assert!(t0.elapsed() < Duration::from_secs(60));
        // The untimed get says so too, and so does a put waiting for room.
        assert!(q.get().unwrap_err().is_disconnected());
        let _ = child.join();
    });
}

/// Takes its time to arrive: deserializing it (spawn, fork server) or taking it over in
/// a fork child (its handover walk) sleeps, so a child killed meanwhile has not yet taken
/// the queue that comes after it in its argument.
struct SlowToArrive;

impl serde::Serialize for SlowToArrive {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        if mproc::wire::handing_over() == Some(mproc::wire::Handover::Child) {
            std::thread::sleep(Duration::from_secs(30));
        }
        s.serialize_unit()
    }
}

impl<'de> serde::Deserialize<'de> for SlowToArrive {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        <()>::deserialize(d)?;
        std::thread::sleep(Duration::from_secs(30));
        Ok(SlowToArrive)
    }
}

fn hold_forever((_slow, _q): (SlowToArrive, Queue<u8>)) {
    std::thread::sleep(Duration::from_secs(600));
}

#[test]
fn a_get_whose_only_child_was_killed_before_taking_the_queue_says_disconnected() {
    deadline(LIMIT, || {
        let q = Queue::<u8>::new().unwrap();
        let mut child = builder()
            .spawn(hold_forever, (SlowToArrive, q.clone()))
            .unwrap();
        child.kill().unwrap();
        let _ = child.join();
        // The child never registered, yet the queue is shared: nobody is left.
        assert!(q.get().unwrap_err().is_disconnected());
    });
}

#[test]
fn a_put_waiting_for_room_whose_consumers_are_gone_gets_its_value_back() {
    deadline(LIMIT, || {
        let q = Queue::<u8>::bounded(1).unwrap();
        let mut child = builder().spawn(put_then_hold, (q.clone(), 1)).unwrap();
        while q.is_empty() {
            std::thread::sleep(Duration::from_millis(1));
        }
        child.kill().unwrap();
        let err = q.put(2).unwrap_err();
        assert!(err.is_disconnected(), "{err:?}");
        assert_eq!(err.into_inner(), 2);
        let _ = child.join();
    });
}

/// Takes one message, then holds the queue until killed.
fn take_one_then_hold(q: Queue<ByteBuf>) {
    q.get().unwrap();
    std::thread::sleep(Duration::from_secs(600));
}

#[test]
fn a_put_waiting_for_room_in_the_side_socket_whose_consumers_are_gone_says_disconnected() {
    // Large messages travel as sealed memfds over the side socket: with nobody taking
    // them, the socket fills long before the ring or the count bound does, and a put
    // waits there. Once the last consumer is killed it must hear so (it waited out its
    // whole timeout, and an untimed put waited for ever).
    deadline(LIMIT, || {
        let q = mproc::queue::Builder::new()
            .max_bytes(64 << 10)
            .build::<ByteBuf>()
            .unwrap();
        let mut child = builder().spawn(take_one_then_hold, q.clone()).unwrap();
        q.put(ByteBuf::from(vec![1u8; 100])).unwrap();
        while !q.is_empty() {
            std::thread::sleep(Duration::from_millis(1));
        }
        let blocked = loop {
            let t0 = Instant::now();
            match q.put_timeout(
                ByteBuf::from(vec![2u8; 100_000]),
                Duration::from_millis(300),
            ) {
                Ok(()) => assert!(q.len() < 100_000, "the side socket never fills"),
                Err(e) => {
                    assert!(e.is_full(), "{e:?}");
                    assert!(t0.elapsed() >= Duration::from_millis(300));
                    break q.len();
                }
            }
        };
        child.kill().unwrap();
        let _ = child.wait();
        let t0 = Instant::now();
        let err = q
            .put_timeout(ByteBuf::from(vec![3u8; 100_000]), Duration::from_secs(30))
            .unwrap_err();
        assert!(
            err.is_disconnected(),
            "after {blocked} messages and {:?}: {err:?}",
            t0.elapsed()
        );
        assert_eq!(err.into_inner().len(), 100_000, "the value comes back");
        assert!(
            q.put(ByteBuf::from(vec![4u8; 100_000]))
                .unwrap_err()
                .is_disconnected()
        );
        // What was put before is all there.
        assert_eq!(q.len(), blocked);
    });
}

#[test]
fn a_join_with_work_left_and_no_worker_says_disconnected() {
    deadline(LIMIT, || {
        let q = JoinableQueue::<u8>::new().unwrap();
        q.put(1).unwrap();
        q.put(2).unwrap();
        let mut child = builder().spawn(do_one_of_two, q.clone()).unwrap();
        child.join().unwrap();
        let err = q.join().unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Disconnected);
        assert_eq!(q.unfinished(), 1);
        let err = q.join_timeout(Duration::from_secs(60)).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Disconnected);
    });
}

#[test]
fn a_handle_in_flight_counts_as_held_until_received_or_destroyed() {
    deadline(LIMIT, || {
        // Received late: the wait goes on while the handle sits in the pipe.
        let q = Queue::<u8>::new().unwrap();
        let (mut tx, rx) = mproc::channel::<Queue<u8>>().unwrap();
        let mut child = builder().spawn(receive_queue_late, (rx, 400)).unwrap();
        tx.send(&q).unwrap();
        assert_eq!(q.get_timeout(Duration::from_secs(60)).unwrap(), 7);
        child.join().unwrap();
        // Never received: the message dies with the reader's end, and so does the wait.
        // (The queue was shared once, with a child that has ended: a queue never held by
        // another process waits as before, whatever was sent.)
        let q = Queue::<u8>::new().unwrap();
        builder()
            .spawn(drop::<Queue<u8>>, q.clone())
            .unwrap()
            .join()
            .unwrap();
        let (mut tx, rx) = mproc::channel::<Queue<u8>>().unwrap();
        let mut child = builder().spawn(read_nothing, (rx, 300)).unwrap();
        tx.send(&q).unwrap();
        drop(tx);
        let err = q.get_timeout(Duration::from_secs(60)).unwrap_err();
        assert!(err.is_disconnected(), "{err:?}");
        child.join().unwrap();
    });
}

#[test]
fn a_queue_never_shared_or_unwatched_waits_out_its_timeout() {
    deadline(LIMIT, || {
        let q = Queue::<u8>::new().unwrap();
        let t0 = Instant::now();
        assert!(
            q.get_timeout(Duration::from_millis(300))
                .unwrap_err()
                .is_empty()
        );
        assert!(t0.elapsed() >= Duration::from_millis(300));
        let q = mproc::queue::Builder::new()
            .watch_peers(false)
            .build::<u8>()
            .unwrap();
        let mut child = builder().spawn(put_then_hold, (q.clone(), 1)).unwrap();
        assert_eq!(q.get().unwrap(), 1);
        child.kill().unwrap();
        let _ = child.join();
        let t0 = Instant::now();
        assert!(
            q.get_timeout(Duration::from_millis(300))
                .unwrap_err()
                .is_empty()
        );
        assert!(t0.elapsed() >= Duration::from_millis(300));
    });
}

#[test]
fn a_child_drains_a_queue_its_parent_dropped_and_hears_nobody_is_left() {
    deadline(LIMIT, || {
        let q = Queue::<u32>::new().unwrap();
        let mut child = builder()
            .spawn(drain_until_disconnected, q.clone())
            .unwrap();
        for i in 0..3 {
            q.put(i).unwrap();
        }
        drop(q);
        assert_eq!(child.join().unwrap(), (vec![0, 1, 2], true));
    });
}

/// A string that deserializes only from a borrowed `&str`, as some zero-copy types do: a
/// large message, decoded straight out of shared memory, cannot lend one.
#[derive(Debug, PartialEq, serde::Serialize)]
struct BorrowedOnly(String);

impl<'de> serde::Deserialize<'de> for BorrowedOnly {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Borrowed;
        impl<'de> serde::de::Visitor<'de> for Borrowed {
            type Value = BorrowedOnly;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a borrowed string")
            }
            fn visit_borrowed_str<E: serde::de::Error>(
                self,
                s: &'de str,
            ) -> Result<Self::Value, E> {
                Ok(BorrowedOnly(s.to_owned()))
            }
        }
        d.deserialize_str(Borrowed)
    }
}

/// Gets one `BorrowedOnly` and returns its length.
fn take_borrowed_only(q: Queue<BorrowedOnly>) -> usize {
    q.get().map(|v| v.0.len()).unwrap_or(0)
}

#[test]
fn a_value_that_decodes_only_from_borrowed_bytes_arrives_small_or_large() {
    deadline(LIMIT, || {
        // 10 bytes go in the ring; 6 MiB in a segment of the producer's.
        for n in [10, 6 * MIB] {
            let q = Queue::<BorrowedOnly>::new().unwrap();
            let mut child = builder().spawn(take_borrowed_only, q.clone()).unwrap();
            q.put(BorrowedOnly("x".repeat(n))).unwrap();
            assert_eq!(child.join().unwrap(), n);
        }
    });
}
