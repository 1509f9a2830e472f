//! The lock and shared-memory benchmarks, each beside its floor: a bare futex mutex (no
//! owner, no robust list) for the locks, `memset` of private memory for the segment.

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use mproc::{Barrier, Builder, Lock, RawValue, SharedAtomic, SharedMemory, StartMethod, Value};
use mproc_sys::{futex_wait, futex_wake};

/// Drepper's futex mutex (0 free, 1 held, 2 held with waiters), with the same short spin
/// as mproc's lock: the floor every lock figure is compared with.
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
        for _ in 0..100 {
            if w.load(Ordering::Relaxed) == 0
                && w.compare_exchange(0, 1, Ordering::Acquire, Ordering::Relaxed)
                    .is_ok()
            {
                return;
            }
            std::hint::spin_loop();
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

fn wall_ns() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or(Duration::ZERO)
        .as_nanos()
}

fn incr_value((v, barrier, n): (Value<u64>, Barrier, u64)) -> u128 {
    barrier.wait().expect("barrier");
    for _ in 0..n {
        *v.lock().expect("lock") += 1;
    }
    wall_ns()
}

fn incr_floor((m, v, barrier, n): (FutexMutex, RawValue<u64>, Barrier, u64)) -> u128 {
    barrier.wait().expect("barrier");
    for _ in 0..n {
        m.lock();
        v.set(v.get() + 1);
        m.unlock();
    }
    wall_ns()
}

fn fork() -> Builder {
    Builder::new().start_method(StartMethod::Fork)
}

/// Two processes × `n` increments of a locked shared value: op/s for mproc's `Value` and
/// for the floor, and whether both counted right. Timed as Python's figure is: from the
/// parent leaving the start barrier to the last child finishing (wall clock, which every
/// process reads alike).
pub fn lock_value(n: u64) -> (f64, f64, bool) {
    let barrier = Barrier::new(3).expect("barrier");
    let v = Value::new(0u64).expect("value");
    let ours = race(&barrier, n, || {
        fork().spawn(incr_value, (v.clone(), barrier.clone(), n))
    });
    let m = FutexMutex::new();
    let raw = RawValue::new(0u64).expect("raw value");
    let floor = race(&barrier, n, || {
        fork().spawn(incr_floor, (m.clone(), raw.clone(), barrier.clone(), n))
    });
    let ok = v.get().expect("get") == 2 * n && raw.get() == 2 * n;
    (ours, floor, ok)
}

/// Starts two incrementing children, releases them through `barrier`, and returns op/s
/// from the parent's release to the later child's end.
fn race(
    barrier: &Barrier,
    n: u64,
    start: impl Fn() -> mproc::process::Result<mproc::Child<u128>>,
) -> f64 {
    let mut kids: Vec<_> = (0..2).map(|_| start().expect("spawn")).collect();
    barrier.wait().expect("barrier");
    let t0 = wall_ns();
    let end = kids
        .iter_mut()
        .map(|k| k.join().expect("join"))
        .max()
        .unwrap_or(t0);
    (2 * n) as f64 / ((end.saturating_sub(t0)).max(1) as f64 / 1e9)
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
