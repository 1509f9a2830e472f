//! Level 8: a `Lock` protecting a shared counter. Four processes increment a counter that
//! has no lock of its own, holding the lock around each read-modify-write. Then a process
//! is killed while it holds the lock: in Python every other process would wait forever;
//! here the next one gets the lock with `OwnerDied`, repairs, and goes on.
//!
//! `cargo run --release --example level8_lock`

use std::time::Duration;

use mproc::{Event, Lock, RawValue};

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

/// Runs level 8 and checks what it shows.
pub fn run() -> mproc::Result<()> {
    mproc_examples::heading(8, "a lock protecting a shared counter");
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
    let _again = lock.lock()?;
    println!(
        "  repaired: counter = {}, and the lock works as before",
        counter.get()
    );
    Ok(())
}

#[allow(dead_code)]
fn main() -> mproc::Result<()> {
    mproc::init();
    run()
}
