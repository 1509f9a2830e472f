//! The ring's protocol on ordinary memory: a second implementation of [`Shared`], with
//! std atomics, a lock whose holder can "die", and a condition variable for the futex, so
//! that tests (and a model checker) run the protocol without shared memory.

use std::sync::atomic::Ordering;
use std::time::Instant;

#[cfg(loom)]
use loom::sync::atomic::{AtomicU32, AtomicU64, fence};
#[cfg(loom)]
use loom::sync::{Arc, Condvar, Mutex, MutexGuard};
#[cfg(not(loom))]
use std::sync::atomic::{AtomicU32, AtomicU64, fence};
#[cfg(not(loom))]
use std::sync::{Arc, Condvar, Mutex, MutexGuard};

use mproc_sys::LockStatus;

use crate::error::Result;
use crate::ring::layout::{ConsumerLine, Header, JoinLine, ProducerLine};
use crate::ring::shared::{RobustLock, Shared};

/// A lock whose holder can be declared dead, like a robust mutex's.
pub(crate) struct HeapLock {
    /// (held, its holder died holding it)
    state: Mutex<(bool, bool)>,
    freed: Condvar,
}

fn guard<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl HeapLock {
    fn new() -> HeapLock {
        HeapLock {
            state: Mutex::new((false, false)),
            freed: Condvar::new(),
        }
    }

    /// Its holder dies: the lock is free, and the next locker hears `OwnerDied`.
    pub(crate) fn abandon(&self) {
        let mut s = guard(&self.state);
        *s = (false, true);
        self.freed.notify_all();
    }

    fn status(s: &mut (bool, bool)) -> LockStatus {
        s.0 = true;
        if std::mem::take(&mut s.1) {
            LockStatus::OwnerDied
        } else {
            LockStatus::Acquired
        }
    }
}

impl RobustLock for HeapLock {
    fn lock(&self, deadline: Option<Instant>) -> LockStatus {
        let mut s = guard(&self.state);
        while s.0 {
            s = match deadline {
                None => self.freed.wait(s).unwrap_or_else(|e| e.into_inner()),
                Some(d) => {
                    let left = d.saturating_duration_since(Instant::now());
                    if left.is_zero() {
                        return LockStatus::WouldBlock;
                    }
                    self.freed
                        .wait_timeout(s, left)
                        .unwrap_or_else(|e| e.into_inner())
                        .0
                }
            };
        }
        Self::status(&mut s)
    }

    fn try_lock(&self) -> LockStatus {
        let mut s = guard(&self.state);
        if s.0 {
            return LockStatus::WouldBlock;
        }
        Self::status(&mut s)
    }

    fn unlock(&self) {
        guard(&self.state).0 = false;
        self.freed.notify_all();
    }

    fn mark_consistent(&self) {}

    fn is_locked(&self) -> bool {
        guard(&self.state).0
    }
}

/// The queue's memory on the heap; clones share it (each "process" makes its own `Core`
/// over a clone, with caches of its own).
#[derive(Clone)]
pub(crate) struct Heap(Arc<HeapInner>);

pub(crate) struct HeapInner {
    pub(crate) header: Header<AtomicU32, AtomicU64>,
    pub(crate) producers: HeapLock,
    pub(crate) consumers: HeapLock,
    /// The ring's bytes, eight to a word (a model checker then has a word, not eight
    /// bytes, to explore per access; records are 8-aligned).
    words: Vec<AtomicU64>,
    /// Stands for the kernel's futex table: every wake notifies every sleeper.
    futex: (Mutex<()>, Condvar),
    /// Stands for the queue's eventfd: the signals sent to async waiters.
    signals: AtomicU32,
}

impl Heap {
    /// A ring of `len` bytes (a power of two, at least 8).
    pub(crate) fn new(len: usize) -> Heap {
        let w = || AtomicU32::new(0);
        Heap(Arc::new(HeapInner {
            header: Header {
                producer: ProducerLine {
                    tail: AtomicU64::new(0),
                    flags: w(),
                    consumer_wake: w(),
                    side_seq: w(),
                    tail_laps: w(),
                },
                consumer: ConsumerLine {
                    head: AtomicU64::new(0),
                    flags: w(),
                    producer_wake: w(),
                    head_laps: w(),
                },
                join: JoinLine {
                    unfinished: w(),
                    wake: w(),
                    flags: w(),
                    target: w(),
                },
            },
            producers: HeapLock::new(),
            consumers: HeapLock::new(),
            words: (0..len / 8).map(|_| AtomicU64::new(0)).collect(),
            futex: (Mutex::new(()), Condvar::new()),
            signals: AtomicU32::new(0),
        }))
    }

    pub(crate) fn inner(&self) -> &HeapInner {
        &self.0
    }

    /// The signals sent to async waiters so far (an eventfd's edges, counted).
    #[cfg(loom)]
    fn signals(&self) -> u32 {
        self.0.signals.load(Ordering::SeqCst)
    }

    /// Waits for a signal after the `seen`-th, as an async waiter's reactor does.
    #[cfg(loom)]
    fn wait_signal(&self, seen: u32) {
        let (m, cv) = &self.0.futex;
        let mut g = guard(m);
        while self.signals() == seen {
            g = cv.wait(g).unwrap_or_else(|e| e.into_inner());
        }
    }
}

impl Shared for Heap {
    /// Under a model checker, waiters go straight to sleep (see `Shared::SPINS`).
    const SPINS: bool = !cfg!(loom);

    type U32 = AtomicU32;
    type U64 = AtomicU64;
    type Lock = HeapLock;

    fn header(&self) -> &Header<AtomicU32, AtomicU64> {
        &self.0.header
    }

    fn producers(&self) -> &HeapLock {
        &self.0.producers
    }

    fn consumers(&self) -> &HeapLock {
        &self.0.consumers
    }

    fn ring_len(&self) -> usize {
        self.0.words.len() * 8
    }

    fn write(&self, off: usize, data: &[u8]) -> Result<()> {
        let mut done = 0;
        while done < data.len() {
            let at = off + done;
            let (word, from) = (&self.0.words[at / 8], at % 8);
            let n = (8 - from).min(data.len() - done);
            // Only the writer (a producer, under its lock) touches the bytes past the
            // tail, so a partial word's load and store need not be one operation.
            let mut bytes = word.load(Ordering::Relaxed).to_le_bytes();
            bytes[from..from + n].copy_from_slice(&data[done..done + n]);
            word.store(u64::from_le_bytes(bytes), Ordering::Relaxed);
            done += n;
        }
        Ok(())
    }

    fn read(&self, off: usize, buf: &mut [u8]) -> Result<()> {
        let mut done = 0;
        while done < buf.len() {
            let at = off + done;
            let (word, from) = (&self.0.words[at / 8], at % 8);
            let n = (8 - from).min(buf.len() - done);
            let bytes = word.load(Ordering::Relaxed).to_le_bytes();
            buf[done..done + n].copy_from_slice(&bytes[from..from + n]);
            done += n;
        }
        Ok(())
    }

    fn read_u64(&self, off: usize) -> Result<u64> {
        Ok(u64::from_le(self.0.words[off / 8].load(Ordering::Relaxed)))
    }

    fn futex_wait(&self, word: &AtomicU32, expected: u32, until: Option<Instant>) -> bool {
        let (m, cv) = &self.0.futex;
        let g = guard(m);
        if word.load(Ordering::SeqCst) != expected {
            return false;
        }
        match until {
            None => {
                drop(cv.wait(g).unwrap_or_else(|e| e.into_inner()));
                false
            }
            // A model checker's condition variable never times out: a sleeper nobody
            // wakes is a deadlock it reports.
            Some(d) => {
                let left = d.saturating_duration_since(Instant::now());
                cv.wait_timeout(g, left)
                    .unwrap_or_else(|e| e.into_inner())
                    .1
                    .timed_out()
            }
        }
    }

    fn futex_wake_all(&self, _word: &AtomicU32) {
        let _g = guard(&self.0.futex.0);
        self.0.futex.1.notify_all();
    }

    fn signal_async(&self) {
        self.0.signals.fetch_add(1, Ordering::SeqCst);
        let _g = guard(&self.0.futex.0);
        self.0.futex.1.notify_all();
    }

    fn others_gone(&self) -> bool {
        false
    }

    /// The portable fence (the x86 shortcut relies on the hardware, which a model lacks).
    fn full_fence_after_rmw(&self) {
        fence(Ordering::SeqCst);
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use crate::ring::layout::{REC_HEADER, RecordHeader, kind};
    use crate::ring::protocol::Core;
    use crate::ring::{Refused, Waited};
    use std::time::Duration;

    fn put(
        core: &Core<Heap>,
        payload: &[u8],
        deadline: Option<Instant>,
    ) -> std::result::Result<(), Refused> {
        let mut record = vec![0u8; REC_HEADER];
        record.extend_from_slice(payload);
        let room = core.reserve(crate::ring::layout::pad8(record.len()), deadline)?;
        room.publish(
            &mut record,
            RecordHeader::new(payload.len() as u32, kind::INLINE, 0),
        )?;
        Ok(())
    }

    fn get(core: &Core<Heap>, deadline: Option<Instant>) -> std::result::Result<Vec<u8>, Refused> {
        let taken = core.take(deadline)?;
        let mut buf = vec![0u8; taken.header().len as usize];
        taken.read_payload(&mut buf)?;
        taken.free();
        Ok(buf)
    }

    fn soon() -> Option<Instant> {
        Some(Instant::now() + Duration::from_secs(60))
    }

    #[test]
    fn producers_and_consumers_with_caches_of_their_own_lose_and_repeat_nothing() {
        const PER_PRODUCER: u32 = 20_000;
        let heap = Heap::new(4096);
        let got = Arc::new(Mutex::new(Vec::new()));
        let mut threads = Vec::new();
        for p in 0..2u32 {
            let core = Core::new(heap.clone(), u32::MAX >> 1, false);
            threads.push(std::thread::spawn(move || {
                for i in 0..PER_PRODUCER {
                    // Lengths vary, so records wrap the ring at every offset.
                    let len = 4 + (i % 61) as usize;
                    let mut m = vec![0u8; len];
                    m[..4].copy_from_slice(&(p << 24 | i).to_le_bytes());
                    assert!(put(&core, &m, soon()).is_ok());
                }
            }));
        }
        for _ in 0..2 {
            let core = Core::new(heap.clone(), u32::MAX >> 1, false);
            let got = Arc::clone(&got);
            threads.push(std::thread::spawn(move || {
                let mut mine = Vec::new();
                while let Ok(m) = get(&core, Some(Instant::now() + Duration::from_millis(500))) {
                    assert_eq!(
                        m.len(),
                        4 + (u32::from_le_bytes(m[..4].try_into().unwrap()) & 0xff_ffff) as usize
                            % 61
                    );
                    mine.push(u32::from_le_bytes(m[..4].try_into().unwrap()));
                }
                // Each consumer sees each producer's messages in order.
                for p in 0..2u32 {
                    let seq: Vec<_> = mine.iter().filter(|m| *m >> 24 == p).collect();
                    assert!(seq.windows(2).all(|w| w[0] < w[1]));
                }
                got.lock().unwrap().extend(mine);
            }));
        }
        for t in threads {
            t.join().unwrap();
        }
        let mut all = std::mem::take(&mut *got.lock().unwrap());
        all.sort_unstable();
        let want: Vec<u32> = (0..2u32)
            .flat_map(|p| (0..PER_PRODUCER).map(move |i| p << 24 | i))
            .collect();
        assert!(all == want, "lost or repeated messages");
    }

    #[test]
    fn a_producer_that_dies_holding_the_lock_costs_only_its_own_message() {
        let heap = Heap::new(4096);
        let core = Core::new(heap.clone(), 100, true);
        assert!(put(&core, b"before", None).is_ok());
        // A producer counts its item and dies before publishing.
        let room = core.reserve(16, None).ok().unwrap();
        core.count_pending(12345);
        std::mem::forget(room);
        heap.inner().producers.abandon();
        assert_eq!(core.unfinished(), 2);
        assert!(put(&core, b"after", None).is_ok());
        assert_eq!(core.unfinished(), 2, "the dead producer's count was undone");
        assert_eq!(get(&core, None).ok().as_deref(), Some(&b"before"[..]));
        assert_eq!(get(&core, None).ok().as_deref(), Some(&b"after"[..]));
        core.task_done().unwrap();
        core.task_done().unwrap();
        assert_eq!(core.join(soon()), Waited::Ready);
    }

    #[test]
    fn a_sleeping_consumer_is_woken_by_a_put() {
        let heap = Heap::new(4096);
        let consumer = Core::new(heap.clone(), 100, false);
        let t = std::thread::spawn(move || get(&consumer, soon()).ok());
        let p = &heap.inner().header.producer;
        while p.flags.load(Ordering::SeqCst) & crate::ring::layout::CONSUMERS_ASLEEP == 0 {
            std::thread::sleep(Duration::from_millis(1));
        }
        let producer = Core::new(heap.clone(), 100, false);
        assert!(put(&producer, b"wake", None).is_ok());
        assert_eq!(
            p.consumer_wake.load(Ordering::SeqCst),
            1,
            "the put woke the sleeper"
        );
        assert_eq!(t.join().unwrap().as_deref(), Some(&b"wake"[..]));
    }
}

/// The ring's protocol under the loom model checker: every interleaving of two or three
/// "processes" (threads with caches of their own) up to a preemption bound
/// (`LOOM_MAX_PREEMPTIONS`, 2 unless set), with waiters that sleep at once and a futex
/// that never times out, so that a lost wake-up shows as a deadlock. A death is a thread
/// that stops at a chosen step, leaving its lock to the next locker as `OwnerDied`.
///
/// Run with `RUSTFLAGS="--cfg loom" cargo test -p mproc-queue --release --lib loom`
/// (`cargo xtask test` does, in a target directory of its own).
#[cfg(all(test, loom))]
mod loom_models {
    use super::*;
    use crate::ring::Refused;
    use crate::ring::layout::{REC_HEADER, RecordHeader, kind, pad8};
    use crate::ring::protocol::Core;

    fn model(f: impl Fn() + Sync + Send + 'static) {
        let mut b = loom::model::Builder::new();
        if b.preemption_bound.is_none() {
            b.preemption_bound = Some(2);
        }
        b.check(f);
    }

    fn record(payload: &[u8]) -> Vec<u8> {
        let mut r = vec![0u8; REC_HEADER];
        r.extend_from_slice(payload);
        r
    }

    fn header(payload: &[u8]) -> RecordHeader {
        RecordHeader::new(payload.len() as u32, kind::INLINE, 0)
    }

    fn put(core: &Core<Heap>, payload: &[u8]) {
        let mut r = record(payload);
        let room = core.reserve(pad8(r.len()), None).ok().unwrap();
        room.publish(&mut r, header(payload)).unwrap();
    }

    fn get(core: &Core<Heap>) -> std::result::Result<Vec<u8>, Refused> {
        let taken = core.take(None)?;
        let mut buf = vec![0u8; taken.header().len as usize];
        taken.read_payload(&mut buf)?;
        taken.free();
        Ok(buf)
    }

    /// One look, no wait: `None` when the ring is empty.
    fn try_get(core: &Core<Heap>) -> Option<Vec<u8>> {
        let taken = core.take(Some(Instant::now())).ok()?;
        let mut buf = vec![0u8; taken.header().len as usize];
        taken.read_payload(&mut buf).unwrap();
        taken.free();
        Some(buf)
    }

    /// Publishing: a consumer that sees the tail move sees the whole record (a record
    /// spanning three words, so a torn read would show), and a sleeping consumer is woken.
    #[test]
    fn a_published_record_is_seen_whole_and_wakes_its_consumer() {
        model(|| {
            let heap = Heap::new(64);
            let producer = Core::new(heap.clone(), 8, false);
            let consumer = Core::new(heap, 8, false);
            let t = loom::thread::spawn(move || {
                put(&producer, &[1, 2, 3, 4, 5, 6, 7, 8, 9]);
                put(&producer, &[10]);
            });
            assert_eq!(get(&consumer).ok().unwrap(), [1, 2, 3, 4, 5, 6, 7, 8, 9]);
            assert_eq!(get(&consumer).ok().unwrap(), [10]);
            t.join().unwrap();
        });
    }

    /// Freeing: a producer waiting for room (one message at most) is woken by the get
    /// that frees it, and the ring wraps (three 24-byte records in 32 bytes).
    #[test]
    fn a_producer_waiting_for_room_is_woken_by_a_get() {
        model(|| {
            let heap = Heap::new(32);
            let producer = Core::new(heap.clone(), 1, false);
            let consumer = Core::new(heap, 1, false);
            let t = loom::thread::spawn(move || {
                for i in 0..3u8 {
                    put(&producer, &[i; 9]);
                }
            });
            for i in 0..3u8 {
                assert_eq!(get(&consumer).ok().unwrap(), [i; 9]);
            }
            t.join().unwrap();
        });
    }

    /// Two producers, two consumers: every message once, each producer's in order.
    #[test]
    fn two_producers_and_two_consumers_lose_and_repeat_nothing() {
        model(|| {
            let heap = Heap::new(64);
            let producers: Vec<_> = (0..2u8)
                .map(|p| {
                    let core = Core::new(heap.clone(), 8, false);
                    loom::thread::spawn(move || put(&core, &[p]))
                })
                .collect();
            let other = Core::new(heap.clone(), 8, false);
            let t = loom::thread::spawn(move || get(&other).ok().unwrap());
            let mine = get(&Core::new(heap, 8, false)).ok().unwrap();
            let theirs = t.join().unwrap();
            for p in producers {
                p.join().unwrap();
            }
            let mut all = [mine[0], theirs[0]];
            all.sort_unstable();
            assert_eq!(all, [0, 1]);
        });
    }

    /// An async consumer (the steps of `wait_async`: note the signals seen, as clearing
    /// its readiness does; raise the await flag and fence; look; wait for a later signal) is
    /// woken by a put that comes at any point of those steps: the eventfd's edge is never
    /// lost.
    #[test]
    fn an_async_consumer_is_signalled_by_a_put() {
        use crate::ring::layout::CONSUMERS_AWAIT;
        model(|| {
            let heap = Heap::new(64);
            let producer = Core::new(heap.clone(), 8, false);
            let consumer = Core::new(heap.clone(), 8, false);
            let t = loom::thread::spawn(move || put(&producer, &[7]));
            let got = loop {
                let seen = heap.signals();
                let flags = &heap.inner().header.producer.flags;
                flags.fetch_or(CONSUMERS_AWAIT, Ordering::SeqCst);
                consumer.shared.full_fence_after_rmw();
                if let Some(m) = try_get(&consumer) {
                    break m;
                }
                heap.wait_signal(seen);
            };
            assert_eq!(got, [7]);
            t.join().unwrap();
        });
    }

    /// Closing wakes a consumer asleep on an empty ring, which then hears `Closed`.
    #[test]
    fn close_wakes_a_sleeping_consumer() {
        model(|| {
            let heap = Heap::new(32);
            let closer = Core::new(heap.clone(), 8, false);
            let t = loom::thread::spawn(move || closer.close());
            let consumer = Core::new(heap, 8, false);
            assert!(matches!(get(&consumer), Err(Refused::Closed)));
            t.join().unwrap();
        });
    }

    /// Where a producer dies.
    #[derive(Clone, Copy, Debug)]
    enum Death {
        /// Holding the lock, before writing.
        Reserved,
        /// After writing its record, before publishing it.
        Written,
        /// After publishing (the tail stored), before unlocking and waking.
        Published,
    }

    /// A producer killed at each step costs at most its own message: another producer's
    /// put goes through (repairing the join count), and a joinable queue counts exactly
    /// the messages delivered.
    #[test]
    fn a_producer_killed_at_any_step_costs_at_most_its_own_message() {
        for death in [Death::Reserved, Death::Written, Death::Published] {
            model(move || {
                let heap = Heap::new(64);
                let dying = Core::new(heap.clone(), 8, true);
                let h = heap.clone();
                let d = loom::thread::spawn(move || {
                    let mut r = record(b"dead");
                    let room = dying.reserve(pad8(r.len()), None).ok().unwrap();
                    match death {
                        Death::Reserved => std::mem::forget(room),
                        Death::Written => {
                            std::mem::forget(room.write(&mut r, header(b"dead")).unwrap())
                        }
                        Death::Published => {
                            let written = room.write(&mut r, header(b"dead")).unwrap();
                            written.store_tail();
                            std::mem::forget(written);
                        }
                    }
                    h.inner().producers.abandon();
                });
                let other = Core::new(heap.clone(), 8, true);
                let p = loom::thread::spawn(move || put(&other, b"alive"));
                d.join().unwrap();
                p.join().unwrap();
                let consumer = Core::new(heap, 8, true);
                let mut got = Vec::new();
                while let Some(m) = try_get(&consumer) {
                    got.push(m);
                }
                got.sort_unstable();
                let want: &[&[u8]] = match death {
                    Death::Published => &[b"alive", b"dead"],
                    _ => &[b"alive"],
                };
                assert_eq!(got, want, "{death:?}");
                assert_eq!(consumer.unfinished(), want.len(), "{death:?}");
            });
        }
    }

    /// A consumer killed after taking a record, before freeing it, leaves the record to
    /// the next consumer.
    #[test]
    fn a_consumer_killed_before_freeing_leaves_its_record() {
        model(|| {
            let heap = Heap::new(64);
            let producer = Core::new(heap.clone(), 8, false);
            put(&producer, b"kept");
            let dying = Core::new(heap.clone(), 8, false);
            let h = heap.clone();
            let d = loom::thread::spawn(move || {
                let taken = dying.take(None).ok().unwrap();
                std::mem::forget(taken);
                h.inner().consumers.abandon();
            });
            let p = loom::thread::spawn(move || put(&producer, b"next"));
            let consumer = Core::new(heap, 8, false);
            d.join().unwrap();
            assert_eq!(get(&consumer).ok().unwrap(), b"kept");
            assert_eq!(get(&consumer).ok().unwrap(), b"next");
            p.join().unwrap();
        });
    }

    /// `join` is woken by the `task_done` that brings the count to zero.
    #[test]
    fn join_is_woken_by_the_last_task_done() {
        model(|| {
            let heap = Heap::new(32);
            let producer = Core::new(heap.clone(), 8, true);
            put(&producer, b"job");
            let worker = Core::new(heap.clone(), 8, true);
            let t = loom::thread::spawn(move || {
                get(&worker).ok().unwrap();
                worker.task_done().unwrap();
            });
            assert_eq!(
                Core::new(heap, 8, true).join(None),
                crate::ring::Waited::Ready
            );
            t.join().unwrap();
        });
    }
}
