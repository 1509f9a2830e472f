//! Level 8: a `Lock` protecting a shared counter. Four processes increment a counter that
//! has no lock of its own, holding the lock around each read-modify-write. Then a process
//! is killed while it holds the lock: in Python every other process would wait forever;
//! here the next one gets the lock with `OwnerDied`, repairs, and goes on. Last, the other
//! primitives across processes: `RLock`, `Semaphore`, `Condition` and `Barrier`.
//!
//! `cargo run --release --example level8_lock`

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use mproc::{Barrier, Condition, Event, Lock, RLock, RawValue, Semaphore, SharedAtomic};

const N: u64 = 25_000;

/// Runs in a child: `N` increments of the counter, each under the lock.
fn count((lock, counter): (Lock, RawValue<u64>)) {
    for _ in 0..N {
        let _held = lock.lock().expect("lock");
        counter.set(counter.get() + 1);
    }
}

/// Runs in a child: takes the lock, starts an update, and never finishes it.
fn die_holding((lock, counter, holding): (Lock, RawValue<u64>, Event)) {
    let _held = lock.lock().expect("lock");
    counter.set(u64::MAX); // half-way through an update
    holding.set();
    std::thread::sleep(Duration::from_secs(3600));
}

/// Runs in a child: takes the reentrant lock twice (as a recursive function would) and
/// returns how deep it holds it.
fn reenter(rlock: RLock) -> u32 {
    let _outer = rlock.lock().expect("lock");
    let _inner = rlock.lock().expect("the owner takes it again at once");
    rlock.count()
}

/// Runs in a child: works holding one of the semaphore's permits, counting how many
/// children are inside now (`counts[0]`) and the most there ever were (`counts[1]`).
fn take_a_permit((permits, counts): (Semaphore, SharedAtomic<[AtomicU32; 2]>)) {
    let _permit = permits.access();
    let inside = counts[0].fetch_add(1, Ordering::SeqCst) + 1;
    counts[1].fetch_max(inside, Ordering::SeqCst);
    std::thread::sleep(Duration::from_millis(5));
    counts[0].fetch_sub(1, Ordering::SeqCst);
}

/// Runs in a child: waits until the value is set (notified by the parent), returns it.
fn wait_for_value(cond: Condition<u32>) -> u32 {
    let guard = cond.lock().expect("lock");
    let (guard, _) = guard.wait_for(|v| *v != 0, None).expect("wait");
    *guard
}

/// Runs in a child: waits at the barrier for the other parties; returns its index.
fn meet(barrier: Barrier) -> u32 {
    barrier.wait().expect("the barrier")
}

/// Runs level 8 and checks what it shows.
pub fn run() -> mproc::Result<()> {
    mproc_examples::heading(8, "locks: Lock, RLock, Semaphore, Condition, Barrier");
    let lock = Lock::new()?;
    let counter = RawValue::new(0u64)?;
    let mut kids = Vec::new();
    for _ in 0..4 {
        kids.push(mproc::spawn(count, (lock.clone(), counter.clone()))?);
    }
    for k in &mut kids {
        k.join()?;
    }
    println!(
        "  4 processes x {N} locked increments: counter = {}",
        counter.get()
    );
    assert_eq!(counter.get(), 4 * N);

    let holding = Event::new()?;
    let child = mproc::spawn(
        die_holding,
        (lock.clone(), counter.clone(), holding.clone()),
    )?;
    assert!(
        holding.wait_timeout(Duration::from_secs(30)),
        "the child took the lock"
    );
    child.kill()?;
    println!("  a child took the lock and was killed with SIGKILL while holding it");
    let mut guard = match lock.lock_timeout(Duration::from_secs(30)) {
        Err(mproc::sync::TryLockError::OwnerDied(died)) => died.into_inner(),
        other => panic!("expected OwnerDied, got {other:?}"),
    };
    println!(
        "  the next lock() got OwnerDied instead of hanging; the counter reads {}: repairing",
        counter.get()
    );
    counter.set(4 * N);
    guard.mark_consistent();
    drop(guard);
    drop(lock.lock()?);
    println!(
        "  repaired: counter = {}, and the lock works as before",
        counter.get()
    );

    let rlock = RLock::new()?;
    let depth = mproc::spawn(reenter, rlock.clone())?.join()?;
    println!(
        "  RLock: a child took it twice without waiting (count {depth}), and it is free again"
    );
    assert_eq!(depth, 2);
    assert!(!rlock.is_locked());

    let permits = Semaphore::new(2)?;
    let counts = SharedAtomic::<[AtomicU32; 2]>::new()?;
    let mut kids = Vec::new();
    for _ in 0..6 {
        kids.push(mproc::spawn(
            take_a_permit,
            (permits.clone(), counts.clone()),
        )?);
    }
    for k in &mut kids {
        k.join()?;
    }
    let most = counts[1].load(Ordering::SeqCst);
    println!("  Semaphore(2): 6 children took turns, never more than 2 inside at once");
    assert!((1..=2).contains(&most) && permits.value() == 2);

    let value = Condition::new(0u32)?;
    let mut waiter = mproc::spawn(wait_for_value, value.clone())?;
    {
        let mut guard = value.lock()?;
        *guard = 42;
        guard.notify_all();
    }
    let seen = waiter.join()?;
    println!(
        "  Condition: a child waited until the parent set the value and notified; it saw {seen}"
    );
    assert_eq!(seen, 42);

    let barrier = Barrier::new(4)?;
    let mut kids = Vec::new();
    for _ in 0..3 {
        kids.push(mproc::spawn(meet, barrier.clone())?);
    }
    let mut indices = vec![barrier.wait()?];
    for k in &mut kids {
        indices.push(k.join()?);
    }
    indices.sort();
    println!("  Barrier: 3 children and the parent met; one index each: {indices:?}");
    assert_eq!(indices, [0, 1, 2, 3]);
    Ok(())
}

#[allow(dead_code)]
fn main() -> mproc::Result<()> {
    mproc::init();
    run()
}
