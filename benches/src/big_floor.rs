//! The floors of `queue_gbps.16mib`, below the in-cache `floor.copy_gbps`: one cold 16 MiB
//! `memcpy` in one process, and two processes handing 16 MiB over through two shared slots
//! (each message copied in once and out once: what a queue that copies cannot beat).

use std::hint::black_box;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use mproc::{Barrier, SharedMemory};

use crate::queue::{Span, producer_consumer, rate, wall_ns};

/// The message size of these floors.
pub const BIG: usize = 16 << 20;

/// The pipeline's slots: double buffering (the producer fills one while the consumer
/// empties the other).
const SLOTS: usize = 2;
/// The counters, as `AtomicU64` indices: messages published, on one line, and messages
/// taken (their slots free again), on another.
const PRODUCED: usize = 0;
const CONSUMED: usize = 16; // 128 bytes on
const COUNTERS: usize = 32;
/// Where the slots start: a page past the counters.
const SLOTS_AT: usize = 4096;

fn slot_at(i: u64) -> usize {
    SLOTS_AT + (i as usize % SLOTS) * BIG
}

fn pipeline_producer((shm, barrier, n): (SharedMemory, Barrier, u64)) -> Span {
    let counters = shm.atomics::<AtomicU64>(0, COUNTERS).expect("atomics");
    let payload = vec![0x5au8; BIG];
    // Both slots in this process's page tables before the clock starts.
    for i in 0..SLOTS as u64 {
        shm.write_at(slot_at(i), &payload).expect("write");
    }
    barrier.wait().expect("barrier");
    let t0 = wall_ns();
    let mut consumed = 0;
    for i in 0..n {
        while i - consumed == SLOTS as u64 {
            consumed = counters[CONSUMED].load(Ordering::Acquire);
            std::hint::spin_loop();
        }
        shm.write_at(slot_at(i), &payload).expect("write");
        counters[PRODUCED].store(i + 1, Ordering::Release);
    }
    (t0, wall_ns())
}

fn pipeline_consumer((shm, barrier, n): (SharedMemory, Barrier, u64)) -> (Span, bool) {
    let counters = shm.atomics::<AtomicU64>(0, COUNTERS).expect("atomics");
    // Reused for every message, and warm (touched by the reads) before the clock starts.
    let mut mine = vec![0u8; BIG];
    for i in 0..SLOTS as u64 {
        shm.read_at(slot_at(i), &mut mine).expect("read");
    }
    barrier.wait().expect("barrier");
    let t0 = wall_ns();
    let (mut produced, mut ok) = (0, true);
    for i in 0..n {
        while i == produced {
            produced = counters[PRODUCED].load(Ordering::Acquire);
            std::hint::spin_loop();
        }
        shm.read_at(slot_at(i), &mut mine).expect("read");
        counters[CONSUMED].store(i + 1, Ordering::Release);
        ok &= mine[BIG / 2] == 0x5a && mine[BIG - 1] == 0x5a;
    }
    ((t0, wall_ns()), ok)
}

/// `floor.pipeline_gbps.16mib`: `n` messages of 16 MiB from a producer process to a
/// consumer process through a pre-faulted shared mapping of two slots, handed over by two
/// spinning counters; the producer copies a warm private buffer into a free slot, the
/// consumer copies the slot into a private buffer of its own that it reuses. GB/s, timed as
/// the queue's `gbps` is; and whether every message arrived.
pub fn pipeline_gbps(n: u64) -> (f64, bool) {
    let shm = SharedMemory::create(SLOTS_AT + SLOTS * BIG).expect("segment");
    let (spans, ok) = producer_consumer(shm, n, pipeline_producer, pipeline_consumer);
    (rate(n * BIG as u64, &spans) / 1e9, ok)
}

/// `floor.cold_copy_gbps.16mib`: `copies` 16 MiB `memcpy`s in this process, each between
/// two private buffers that no cache holds (four pairs in turn, 128 MiB, four times the
/// largest cache of the machines measured), after a pass over them all. GB/s.
pub fn cold_copy_gbps(copies: usize) -> f64 {
    const PAIRS: usize = 4;
    // Written (not calloc'd), so every page is there before the clock starts.
    let sources: Vec<Vec<u8>> = (0..PAIRS).map(|i| vec![i as u8 + 1; BIG]).collect();
    let mut targets: Vec<Vec<u8>> = (0..PAIRS).map(|_| vec![0xffu8; BIG]).collect();
    for (to, from) in targets.iter_mut().zip(&sources) {
        to.copy_from_slice(from);
    }
    let t0 = Instant::now();
    for i in 0..copies {
        targets[i % PAIRS].copy_from_slice(black_box(&sources[i % PAIRS]));
        black_box(&targets[i % PAIRS]);
    }
    (copies * BIG) as f64 / t0.elapsed().as_nanos() as f64
}
