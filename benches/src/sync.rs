//! The lock and shared-memory benchmarks, each beside its floor: a bare futex mutex (no
//! owner, no robust list) for the locks, `memset` of private memory for the segment.

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Instant;

use mproc::{Builder, Lock, RawValue, SharedAtomic, SharedMemory, StartMethod, Value};
use mproc_sys::{futex_wait, futex_wake};

/// Drepper's futex mutex (0 free, 1 held, 2 held with waiters), with the same spin as
/// mproc's lock (1000 spin-loop hints, looking at the word after 1, 2, 4, ... 64 of them):
/// the floor every lock figure is compared with.
#[derive(Clone, serde::Serialize, serde::Deserialize)]
pub struct FutexMutex(SharedAtomic<AtomicU32>);

impl FutexMutex {
    pub fn new() -> Self {
        FutexMutex(SharedAtomic::new().expect("shared atomic"))
    }

    #[inline]
    pub fn lock(&self) {
        let w = &*self.0;
        if w.compare_exchange(0, 1, Ordering::Acquire, Ordering::Relaxed)
            .is_ok()
        {
            return;
        }
        let (mut spins, mut backoff) = (0, 1);
        while spins < 1000 {
            if w.load(Ordering::Relaxed) == 0
                && w.compare_exchange(0, 1, Ordering::Acquire, Ordering::Relaxed)
                    .is_ok()
            {
                return;
            }
            let hints = backoff.min(1000 - spins);
            for _ in 0..hints {
                std::hint::spin_loop();
            }
            spins += hints;
            backoff = (backoff * 2).min(64);
        }
        while w.swap(2, Ordering::Acquire) != 0 {
            futex_wait(w, 2, None);
        }
    }

    #[inline]
    pub fn unlock(&self) {
        if self.0.swap(0, Ordering::Release) == 2 {
            futex_wake(&self.0, 1);
        }
    }
}

/// Median ns per lock + unlock of an uncontended mproc `Lock`, and of the floor, measured
/// in alternating batches.
pub fn lock_uncontended(rounds: usize, n: usize) -> (Vec<f64>, Vec<f64>) {
    let lock = Lock::new().expect("lock");
    let floor = FutexMutex::new();
    let (mut ours, mut raw) = (Vec::new(), Vec::new());
    for round in 0..=rounds {
        let t0 = Instant::now();
        for _ in 0..n {
            drop(std::hint::black_box(lock.lock().expect("lock")));
        }
        let t = t0.elapsed().as_nanos() as f64 / n as f64;
        let t0 = Instant::now();
        for _ in 0..n {
            floor.lock();
            std::hint::black_box(&floor);
            floor.unlock();
        }
        let f = t0.elapsed().as_nanos() as f64 / n as f64;
        if round > 0 {
            ours.push(t);
            raw.push(f);
        }
    }
    (ours, raw)
}

/// What one incrementing child saw: when it left the start gate and when it finished
/// (CLOCK_MONOTONIC ns, which every process reads alike), and the counter after its last
/// increment (every increment either process had made by then).
type Run = (u64, u64, u64);

/// Lets two children go together: each pins itself to its own CPU (where there are two),
/// announces itself and spins until the other has too, so both hammer the lock from their
/// first increment (a sleeping barrier let the first one woken run alone for ~2 ms, longer
/// than the floor's whole run).
fn start_gate(arrived: &SharedAtomic<AtomicU32>, cpu: usize) -> u64 {
    crate::pin(cpu);
    arrived.fetch_add(1, Ordering::AcqRel);
    let mut spins = 0u32;
    while arrived.load(Ordering::Acquire) < 2 {
        spins += 1;
        if spins.is_multiple_of(1024) {
            std::thread::yield_now(); // the other may need this CPU to get here
        } else {
            std::hint::spin_loop();
        }
    }
    mproc_sys::monotonic_ns()
}

fn incr_value((v, gate, cpu, n): (Value<u64>, SharedAtomic<AtomicU32>, usize, u64)) -> Run {
    let t0 = start_gate(&gate, cpu);
    let mut seen = 0;
    for _ in 0..n {
        let mut g = v.lock().expect("lock");
        *g += 1;
        seen = *g;
    }
    (t0, mproc_sys::monotonic_ns(), seen)
}

type FloorArgs = (
    FutexMutex,
    RawValue<u64>,
    SharedAtomic<AtomicU32>,
    usize,
    u64,
);

fn incr_floor((m, v, gate, cpu, n): FloorArgs) -> Run {
    let t0 = start_gate(&gate, cpu);
    let mut seen = 0;
    for _ in 0..n {
        m.lock();
        seen = v.get() + 1;
        v.set(seen);
        m.unlock();
    }
    (t0, mproc_sys::monotonic_ns(), seen)
}

fn fork() -> Builder {
    Builder::new().start_method(StartMethod::Fork)
}

/// Two processes, one per CPU, × `n` increments of a locked shared value: op/s for mproc's
/// `Value` and for the floor, and whether both counted right. Only the time both hammer
/// the lock counts: from the start gate to the first child's end, with the increments both
/// had made by then (what the first one to finish read last), so neither a late start nor
/// the other's uncontended tail enters the figure.
pub fn lock_value(n: u64) -> (f64, f64, bool) {
    let v = Value::new(0u64).expect("value");
    let ours = race(|gate, cpu| fork().spawn(incr_value, (v.clone(), gate.clone(), cpu, n)));
    let m = FutexMutex::new();
    let raw = RawValue::new(0u64).expect("raw value");
    let floor =
        race(|gate, cpu| fork().spawn(incr_floor, (m.clone(), raw.clone(), gate.clone(), cpu, n)));
    let ok = v.get().expect("get") == 2 * n && raw.get() == 2 * n;
    (ours, floor, ok)
}

/// Starts two incrementing children (on CPUs 0 and 1) and returns their contended op/s.
fn race(
    start: impl Fn(&SharedAtomic<AtomicU32>, usize) -> mproc::process::Result<mproc::Child<Run>>,
) -> f64 {
    let gate = SharedAtomic::new().expect("shared atomic");
    let mut kids: Vec<_> = (0..2)
        .map(|cpu| start(&gate, cpu).expect("spawn"))
        .collect();
    let runs: Vec<Run> = kids.iter_mut().map(|k| k.join().expect("join")).collect();
    let begin = runs.iter().map(|r| r.0).min().unwrap_or(0);
    let (end, done) = runs.iter().map(|r| (r.1, r.2)).min().unwrap_or((begin, 0));
    done as f64 / (end.saturating_sub(begin).max(1) as f64 / 1e9)
}

const MIB: usize = 1 << 20;

/// Figures of one shared-memory run, in GB/s.
pub struct ShmFigures {
    /// `fill` of the warm segment: the key `shm_gbps`.
    pub warm_fill: f64,
    /// `fill` of the fresh segment (its pages get allocated on the way).
    pub fresh_fill: f64,
    /// 1 MiB `write_at` copies into the warm segment (how Python's figure writes).
    pub warm_copy: f64,
    /// `memset` of warm private memory of the same size: `floor.fill_gbps`.
    pub floor_fill: f64,
    /// 1 MiB copies into warm private memory: `floor.copy_gbps`.
    pub floor_copy: f64,
}

/// In a child: the segment is written fresh once, then warm three times by `fill` and by
/// 1 MiB copies, each beside the same write to warm private memory (the floors), taking
/// turns at going first. Medians are kept. The last write (a copy) leaves 0xcd everywhere
/// for the parent to check.
fn shm_writer(shm: SharedMemory) -> (f64, f64, f64, f64, f64) {
    let size = shm.len();
    let gbps = |t: Instant| size as f64 / t.elapsed().as_nanos() as f64;
    let block = vec![0xcdu8; MIB];
    let t0 = Instant::now();
    shm.fill(0, size, 0xab).expect("fill");
    let fresh_fill = gbps(t0);
    let mut private = vec![0u8; size];
    private.fill(1); // touch every page first: the floors are warm too
    let mut figures = [vec![], vec![], vec![], vec![]]; // fill, copy, floor fill, floor copy
    for round in 0..3 {
        let shm_fill = || {
            let t0 = Instant::now();
            shm.fill(0, size, 0xee).expect("fill");
            gbps(t0)
        };
        let private_fill = |private: &mut Vec<u8>| {
            let t0 = Instant::now();
            std::hint::black_box(private).fill(0x11);
            gbps(t0)
        };
        if round % 2 == 0 {
            figures[0].push(shm_fill());
            figures[2].push(private_fill(&mut private));
        } else {
            figures[2].push(private_fill(&mut private));
            figures[0].push(shm_fill());
        }
        let t0 = Instant::now();
        for chunk in private.chunks_mut(MIB) {
            chunk.copy_from_slice(&block[..chunk.len()]);
        }
        std::hint::black_box(&private);
        figures[3].push(gbps(t0));
        let t0 = Instant::now();
        for off in (0..size).step_by(MIB) {
            shm.write_at(off, &block[..MIB.min(size - off)])
                .expect("write");
        }
        figures[1].push(gbps(t0));
    }
    let [fill, copy, floor_fill, floor_copy] = figures.map(|mut v| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    });
    (fill, fresh_fill, copy, floor_fill, floor_copy)
}

/// One run of the shared-memory benchmark on a fresh segment of `size` bytes, written by a
/// child; the parent then checks every byte. Returns the figures and whether the bytes were
/// right.
pub fn shm(size: usize) -> (ShmFigures, bool) {
    let shm = SharedMemory::create(size).expect("segment");
    let (warm_fill, fresh_fill, warm_copy, floor_fill, floor_copy) = fork()
        .spawn(shm_writer, shm.clone())
        .expect("spawn")
        .join()
        .expect("join");
    let mut buf = vec![0u8; MIB];
    let mut ok = true;
    for off in (0..size).step_by(MIB) {
        let n = MIB.min(size - off);
        shm.read_at(off, &mut buf[..n]).expect("read");
        ok &= buf[..n].iter().all(|&b| b == 0xcd);
    }
    let figures = ShmFigures {
        warm_fill,
        fresh_fill,
        warm_copy,
        floor_fill,
        floor_copy,
    };
    (figures, ok)
}
