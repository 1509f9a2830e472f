//! The ring's protocol on ordinary memory: a second implementation of [`Shared`], with
//! std atomics, a lock whose holder can "die", and a condition variable for the futex, so
//! that tests (and a model checker) run the protocol without shared memory.

use std::sync::atomic::{AtomicU8, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::Instant;

use mproc_sys::LockStatus;

use crate::error::Result;
use crate::ring::layout::{ConsumerLine, Header, JoinLine, ProducerLine};
use crate::ring::shared::{RobustLock, Shared, Word};

/// A lock whose holder can be declared dead, like a robust mutex's.
#[derive(Default)]
pub(crate) struct HeapLock {
    /// (held, its holder died holding it)
    state: Mutex<(bool, bool)>,
    freed: Condvar,
}

fn guard<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl HeapLock {
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
}

/// The queue's memory on the heap; clones share it (each "process" makes its own `Core`
/// over a clone, with caches of its own).
#[derive(Clone)]
pub(crate) struct Heap(Arc<HeapInner>);

pub(crate) struct HeapInner {
    pub(crate) header: Header<AtomicU32, AtomicU64>,
    pub(crate) producers: HeapLock,
    pub(crate) consumers: HeapLock,
    bytes: Vec<AtomicU8>,
    /// Stands for the kernel's futex table: every wake notifies every sleeper.
    futex: (Mutex<()>, Condvar),
}

impl Heap {
    /// A ring of `len` bytes (a power of two).
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
            producers: HeapLock::default(),
            consumers: HeapLock::default(),
            bytes: (0..len).map(|_| AtomicU8::new(0)).collect(),
            futex: (Mutex::new(()), Condvar::new()),
        }))
    }

    pub(crate) fn inner(&self) -> &HeapInner {
        &self.0
    }
}

impl Shared for Heap {
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
        self.0.bytes.len()
    }

    fn write(&self, off: usize, data: &[u8]) -> Result<()> {
        for (b, &v) in self.0.bytes[off..off + data.len()].iter().zip(data) {
            b.store(v, Ordering::Relaxed);
        }
        Ok(())
    }

    fn read(&self, off: usize, buf: &mut [u8]) -> Result<()> {
        let len = buf.len();
        for (v, b) in buf.iter_mut().zip(&self.0.bytes[off..off + len]) {
            *v = b.load(Ordering::Relaxed);
        }
        Ok(())
    }

    fn read_u64(&self, off: usize) -> Result<u64> {
        let mut b = [0u8; 8];
        self.read(off, &mut b)?;
        Ok(u64::from_ne_bytes(b))
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
            Some(d) => {
                let left = d.saturating_duration_since(Instant::now());
                cv.wait_timeout(g, left)
                    .unwrap_or_else(|e| e.into_inner())
                    .1
                    .timed_out()
            }
        }
    }

    fn futex_wake_all(&self, word: &AtomicU32) {
        let _ = Word::load(word, Ordering::Relaxed);
        let _g = guard(&self.0.futex.0);
        self.0.futex.1.notify_all();
    }

    fn others_gone(&self) -> bool {
        false
    }

    fn full_fence_after_rmw(&self) {
        std::sync::atomic::fence(Ordering::SeqCst);
    }
}

#[cfg(test)]
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
