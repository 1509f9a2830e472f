//! Lock roles: a `Lock` holder, an `RLock` holder at depth 3, a `Condition` waiter and a
//! notifier, a `Barrier` party, a `Semaphore` holder, each killed mid-operation.

use std::sync::Barrier as ThreadBarrier;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use mproc::sync::{ErrorKind, TryLockError};
use mproc::{
    Barrier, BoundedSemaphore, Child, Condition, Lock, RLock, RawValue, Semaphore, SharedAtomic,
};
use mproc_tests::{builder, deadline};

use crate::harness::{PATIENCE, Rng, Role, kill_and_reap, limit, pause, wait_until};

/// Two counters a locker moves one after the other: equal whenever the lock is free and
/// its holder finished; `a == b + 1` when one died between the two writes.
type Pair = RawValue<[u64; 2]>;

/// One locked update, with a seeded pause between its two halves.
fn update(pair: &Pair, rng: &mut Rng) {
    let [a, _] = pair.get();
    pair.set([a + 1, a]);
    pause(Duration::from_micros(rng.below(30)));
    pair.set([a + 1, a + 1]);
}

/// What a locker checks on taking the lock: a clean hand-over shows an untorn pair, and a
/// hand-over from a dead holder (`died`) shows it at most half-way through, which it
/// repairs.
fn check_and_repair(at: &str, pair: &Pair, died: bool) {
    let [a, b] = pair.get();
    if died {
        assert!(a == b || a == b + 1, "{at}: a dead holder left {a}, {b}");
        pair.set([a, a]);
    } else {
        assert_eq!(
            a, b,
            "{at}: a torn update was handed over without OwnerDied"
        );
    }
}

/// Takes the lock, moves the pair, and lets go, again and again until killed.
fn lock_loop((lock, pair, seed): (Lock, Pair, u64)) {
    let mut rng = Rng::new(seed);
    loop {
        let g = lock.lock().expect("only the victim dies");
        update(&pair, &mut rng);
        drop(g);
        pause(Duration::from_micros(rng.below(20)));
    }
}

/// As `lock_loop`, taking the `RLock` three levels deep for each update.
fn rlock_loop((lock, pair, seed): (RLock, Pair, u64)) {
    let mut rng = Rng::new(seed);
    loop {
        let g1 = lock.lock().expect("only the victim dies");
        let [a, _] = pair.get();
        pair.set([a + 1, a]);
        let g2 = lock.lock().expect("re-entry");
        pause(Duration::from_micros(rng.below(20)));
        let g3 = lock.lock().expect("re-entry");
        assert_eq!(lock.count(), 3);
        pair.set([a + 1, a + 1]);
        drop((g3, g2, g1));
        pause(Duration::from_micros(rng.below(20)));
    }
}

/// How a contender in this process saw the victim's death.
struct Contended {
    rounds: u64,
    owner_died: u64,
    /// When the contender got `OwnerDied`.
    noticed: Option<Instant>,
}

/// Contends for `lock_once` (which returns whether it got the lock from a dead holder)
/// until `stop`, then returns what it saw.
fn contend(stop: &AtomicBool, mut lock_once: impl FnMut() -> bool) -> Contended {
    let mut seen = Contended {
        rounds: 0,
        owner_died: 0,
        noticed: None,
    };
    while !stop.load(Ordering::SeqCst) {
        if lock_once() {
            seen.owner_died += 1;
            seen.noticed.get_or_insert_with(Instant::now);
        }
        seen.rounds += 1;
    }
    seen
}

/// One round of a lock role. `start_victim` (given a seed) starts a process that locks and
/// updates `pair` until killed; a contender thread runs `lock_once` (which returns whether
/// it took the lock from a dead holder) while the victim is killed at a seeded moment, and
/// goes on until it has updated the pair twice after the death. At most one `OwnerDied`.
fn holder_killed_round(
    at: &str,
    rng: &mut Rng,
    pair: &Pair,
    start_victim: impl FnOnce(u64) -> Child<()>,
    mut lock_once: impl FnMut(&mut Rng) -> bool + Send,
) -> Contended {
    let mut victim = start_victim(rng.next_u64());
    let stop = AtomicBool::new(false);
    let thread_seed = rng.next_u64();
    let seen = std::thread::scope(|s| {
        let contender = s.spawn(|| {
            let mut rng = Rng::new(thread_seed);
            contend(&stop, || lock_once(&mut rng))
        });
        wait_until(at, "the victim's first update", || pair.get()[0] > 2);
        pause(rng.delay(Duration::from_millis(5)));
        kill_and_reap(at, &mut victim);
        // Let the contender take the lock after the death before it stops.
        let done = pair.get()[0] + 2;
        wait_until(at, "the contender's next updates", || pair.get()[0] >= done);
        stop.store(true, Ordering::SeqCst);
        contender.join().expect("contender")
    });
    assert!(
        seen.owner_died <= 1,
        "{at}: OwnerDied {} times",
        seen.owner_died
    );
    assert!(seen.rounds > 0, "{at}");
    eprintln!(
        "{at}: {} lockings, OwnerDied {}",
        seen.rounds, seen.owner_died
    );
    seen
}

#[test]
fn a_lock_holder_killed_mid_update() {
    let role = Role::start("lock_holder", 100);
    deadline(limit(role.rounds), || {
        for round in 0..role.rounds {
            let (at, mut rng) = (role.at(round), role.rng(round));
            let lock = Lock::new().unwrap();
            let pair = Pair::new([0, 0]).unwrap();
            let victim = |seed| {
                builder()
                    .spawn(lock_loop, (lock.clone(), pair.clone(), seed))
                    .unwrap()
            };
            holder_killed_round(&at, &mut rng, &pair, victim, |rng| {
                match lock.lock_timeout(PATIENCE) {
                    Ok(_g) => {
                        check_and_repair(&at, &pair, false);
                        update(&pair, rng);
                        false
                    }
                    Err(TryLockError::OwnerDied(died)) => {
                        let mut g = died.into_inner();
                        check_and_repair(&at, &pair, true);
                        g.mark_consistent();
                        true
                    }
                    Err(TryLockError::WouldBlock) => {
                        panic!("{at}: the lock was not handed over within {PATIENCE:?}")
                    }
                }
            });
            let g = lock.try_lock().unwrap_or_else(|e| panic!("{at}: {e:?}"));
            check_and_repair(&at, &pair, false);
            drop(g);
        }
    });
    role.finish();
}

#[test]
fn an_rlock_holder_killed_at_depth_three() {
    let role = Role::start("rlock_holder", 100);
    deadline(limit(role.rounds), || {
        for round in 0..role.rounds {
            let (at, mut rng) = (role.at(round), role.rng(round));
            let lock = RLock::new().unwrap();
            let pair = Pair::new([0, 0]).unwrap();
            let victim = |seed| {
                builder()
                    .spawn(rlock_loop, (lock.clone(), pair.clone(), seed))
                    .unwrap()
            };
            holder_killed_round(&at, &mut rng, &pair, victim, |rng| {
                let (mut g, died) = match lock.lock_timeout(PATIENCE) {
                    Ok(g) => (g, false),
                    Err(TryLockError::OwnerDied(died)) => (died.into_inner(), true),
                    Err(TryLockError::WouldBlock) => {
                        panic!("{at}: the lock was not handed over within {PATIENCE:?}")
                    }
                };
                // The dead holder's depth does not carry over.
                assert_eq!(lock.count(), 1, "{at}: the count after OwnerDied");
                check_and_repair(&at, &pair, died);
                if died {
                    g.mark_consistent();
                }
                let deeper = (lock.lock().unwrap(), lock.lock().unwrap());
                assert_eq!(lock.count(), 3, "{at}");
                update(&pair, rng);
                drop((deeper, g));
                died
            });
            assert!(!lock.is_locked(), "{at}: still locked");
        }
    });
    role.finish();
}

// ---- conditions ---------------------------------------------------------------------------

/// The condition's value: `[generation, acknowledgements]`.
type Cond = Condition<[u64; 2]>;

/// Takes a guard whatever the previous holder did (repairing after a death: the value is
/// a plain counter, whole in either case).
fn lock_cond<'a>(at: &str, cond: &'a Cond) -> mproc::sync::ConditionGuard<'a, [u64; 2]> {
    match cond.lock_timeout(PATIENCE) {
        Ok(g) => g,
        Err(TryLockError::OwnerDied(died)) => {
            let mut g = died.into_inner();
            g.mark_consistent();
            g
        }
        Err(TryLockError::WouldBlock) => panic!("{at}: condition lock not free in {PATIENCE:?}"),
    }
}

/// Waits for each new generation and acknowledges it, until killed.
fn cond_waiter(cond: Cond) {
    loop {
        let g = lock_cond("victim", &cond);
        let generation = g[0];
        let waited = g.wait_for(|v| v[0] != generation, Some(Duration::from_millis(50)));
        let mut g = waited.map(|(g, _)| g).unwrap_or_else(|died| {
            let (mut g, _) = died.into_inner();
            g.mark_consistent();
            g
        });
        g[1] += 1;
    }
}

/// Starts a generation and notifies (one waiter or all), until killed.
fn cond_notifier((cond, seed): (Cond, u64)) {
    let mut rng = Rng::new(seed);
    loop {
        let mut g = lock_cond("victim", &cond);
        g[0] += 1;
        if rng.one_in(2) {
            g.notify_all();
        } else {
            g.notify(1);
        }
        drop(g);
        pause(Duration::from_micros(rng.below(200)));
    }
}

/// One wait of a live waiter: marks itself waiting in the value (so that a notifier that
/// takes the lock afterwards knows it is counted), waits at most `timeout`; returns
/// whether it was notified.
fn wait_once(at: &str, cond: &Cond, timeout: Duration) -> bool {
    let mut g = lock_cond(at, cond);
    g[1] += 1;
    match g.wait_timeout(timeout) {
        Ok((_, notified)) => notified,
        Err(died) => {
            let (mut g, notified) = died.into_inner();
            g.mark_consistent();
            notified
        }
    }
}

/// After the victim's death: one live waiter, counted, is woken by the first `notify(1)`
/// (a dead waiter's count takes nothing from it), and `notify_all` wakes it too.
fn live_waiter_is_notified(at: &str, cond: &Cond) {
    for notify_all in [false, true] {
        std::thread::scope(|s| {
            let before = lock_cond(at, cond)[1];
            let waiter = s.spawn(|| wait_once(at, cond, PATIENCE));
            wait_until(at, "the live waiter", || lock_cond(at, cond)[1] > before);
            let mut g = lock_cond(at, cond);
            g[0] += 1;
            if notify_all {
                g.notify_all();
            } else {
                g.notify(1);
            }
            drop(g);
            assert!(
                waiter.join().expect("waiter"),
                "{at}: a live waiter was not woken by {}",
                if notify_all {
                    "notify_all"
                } else {
                    "notify(1)"
                }
            );
        });
    }
}

#[test]
fn a_condition_waiter_killed_mid_wait() {
    let role = Role::start("condition_waiter", 40);
    deadline(limit(role.rounds), || {
        for round in 0..role.rounds {
            let (at, mut rng) = (role.at(round), role.rng(round));
            let cond = Cond::new([0, 0]).unwrap();
            let mut victim = builder().spawn(cond_waiter, cond.clone()).unwrap();
            let stop = AtomicBool::new(false);
            let thread_seed = rng.next_u64();
            std::thread::scope(|s| {
                // A notifier and another waiter in this process.
                s.spawn(|| {
                    let mut rng = Rng::new(thread_seed);
                    while !stop.load(Ordering::SeqCst) {
                        let mut g = lock_cond(&at, &cond);
                        g[0] += 1;
                        if rng.one_in(2) {
                            g.notify(1);
                        } else {
                            g.notify_all();
                        }
                        drop(g);
                        pause(Duration::from_micros(rng.below(300)));
                    }
                });
                s.spawn(|| {
                    while !stop.load(Ordering::SeqCst) {
                        wait_once(&at, &cond, Duration::from_millis(50));
                    }
                });
                wait_until(&at, "the victim's first wake-up", || {
                    lock_cond(&at, &cond)[1] > 2
                });
                pause(rng.delay(Duration::from_millis(5)));
                kill_and_reap(&at, &mut victim);
                stop.store(true, Ordering::SeqCst);
            });
            live_waiter_is_notified(&at, &cond);
        }
    });
    role.finish();
}

#[test]
fn a_condition_notifier_killed_mid_notify() {
    let role = Role::start("condition_notifier", 40);
    deadline(limit(role.rounds), || {
        for round in 0..role.rounds {
            let (at, mut rng) = (role.at(round), role.rng(round));
            let cond = Cond::new([0, 0]).unwrap();
            let mut victim = builder()
                .spawn(cond_notifier, (cond.clone(), rng.next_u64()))
                .unwrap();
            let stop = AtomicBool::new(false);
            let woken = AtomicU64::new(0);
            std::thread::scope(|s| {
                for _ in 0..2 {
                    s.spawn(|| {
                        while !stop.load(Ordering::SeqCst) {
                            if wait_once(&at, &cond, Duration::from_millis(50)) {
                                woken.fetch_add(1, Ordering::SeqCst);
                            }
                        }
                    });
                }
                wait_until(&at, "a first notification", || {
                    woken.load(Ordering::SeqCst) > 2
                });
                pause(rng.delay(Duration::from_millis(5)));
                kill_and_reap(&at, &mut victim);
                stop.store(true, Ordering::SeqCst);
            });
            live_waiter_is_notified(&at, &cond);
        }
    });
    role.finish();
}

// ---- barriers and semaphores ----------------------------------------------------------

/// How long a barrier party waits for the others: a party that died while waiting still
/// counts as waiting (documented), so the others learn of it by this timeout.
const BARRIER_WAIT: Duration = Duration::from_millis(300);

/// Waits at the barrier, generation after generation, until killed (or, once it is
/// broken, sleeps until killed).
fn barrier_party(barrier: Barrier) {
    while barrier.wait_timeout(BARRIER_WAIT).is_ok() {}
    std::thread::sleep(Duration::from_secs(3600));
}

#[test]
fn a_barrier_party_killed_mid_wait() {
    let role = Role::start("barrier_party", 12);
    deadline(limit(role.rounds), || {
        for round in 0..role.rounds {
            let (at, mut rng) = (role.at(round), role.rng(round));
            let barrier = Barrier::new(3).unwrap();
            let mut victim = builder().spawn(barrier_party, barrier.clone()).unwrap();
            let passed = AtomicU64::new(0);
            let parties: Vec<(Vec<u32>, mproc::sync::Error, Instant)> = std::thread::scope(|s| {
                let parties: Vec<_> = (0..2)
                    .map(|_| {
                        s.spawn(|| {
                            let mut indices = Vec::new();
                            loop {
                                match barrier.wait_timeout(BARRIER_WAIT) {
                                    Ok(i) => {
                                        indices.push(i);
                                        passed.fetch_add(1, Ordering::SeqCst);
                                    }
                                    Err(e) => return (indices, e, Instant::now()),
                                }
                            }
                        })
                    })
                    .collect();
                wait_until(&at, "a first generation", || {
                    passed.load(Ordering::SeqCst) >= 2
                });
                pause(rng.delay(Duration::from_millis(10)));
                kill_and_reap(&at, &mut victim);
                parties.into_iter().map(|p| p.join().unwrap()).collect()
            });
            // Both live parties were released by the same generations, then both were
            // told the barrier broke.
            let (a, b) = (&parties[0], &parties[1]);
            assert_eq!(a.0.len(), b.0.len(), "{at}: the parties disagree");
            for (generation, (i, j)) in a.0.iter().zip(&b.0).enumerate() {
                assert!(
                    i != j && *i < 3 && *j < 3,
                    "{at}: generation {generation}: {i}, {j}"
                );
            }
            for (_, e, _) in &parties {
                assert_eq!(e.kind(), ErrorKind::BrokenBarrier, "{at}: {e}");
            }
            assert!(barrier.is_broken(), "{at}");
            // Reset, it serves a full set of live parties again.
            barrier.reset();
            let go = ThreadBarrier::new(3);
            let mut indices: Vec<u32> = std::thread::scope(|s| {
                let all: Vec<_> = (0..3)
                    .map(|_| {
                        s.spawn(|| {
                            go.wait();
                            barrier.wait_timeout(PATIENCE)
                        })
                    })
                    .collect();
                all.into_iter()
                    .map(|t| t.join().unwrap().unwrap_or_else(|e| panic!("{at}: {e}")))
                    .collect()
            });
            indices.sort();
            assert_eq!(indices, [0, 1, 2], "{at}");
        }
    });
    role.finish();
}

/// What both semaphores offer the role.
trait Permits: Send + Sync {
    fn acquire_timeout(&self, t: Duration) -> bool;
    fn try_acquire(&self) -> bool;
    fn release(&self);
    fn value(&self) -> u32;
}

macro_rules! permits {
    ($t:ty) => {
        impl Permits for $t {
            fn acquire_timeout(&self, t: Duration) -> bool {
                <$t>::acquire_timeout(self, t)
            }
            fn try_acquire(&self) -> bool {
                <$t>::try_acquire(self)
            }
            fn release(&self) {
                <$t>::release(self).expect("release")
            }
            fn value(&self) -> u32 {
                <$t>::value(self)
            }
        }
    };
}
permits!(Semaphore);
permits!(BoundedSemaphore);

/// The permits of every semaphore here.
const PERMITS: u32 = 2;

/// Takes a permit, counts itself inside (never more than `PERMITS` at once), and gives it
/// back.
fn hold_permit(sem: &dyn Permits, inside: &SharedAtomic<AtomicU64>, rng: &mut Rng) {
    assert!(
        sem.acquire_timeout(PATIENCE),
        "no permit within {PATIENCE:?}"
    );
    let n = inside.fetch_add(1, Ordering::SeqCst) + 1;
    assert!(
        n <= u64::from(PERMITS),
        "{n} inside a semaphore of {PERMITS}"
    );
    pause(Duration::from_micros(rng.below(50)));
    inside.fetch_sub(1, Ordering::SeqCst);
    sem.release();
}

/// The semaphore of a round: plain or bounded, by the seed.
fn pick(seed: u64, sem: &Semaphore, bounded: &BoundedSemaphore) -> Box<dyn Permits> {
    if seed.is_multiple_of(2) {
        Box::new(sem.clone())
    } else {
        Box::new(bounded.clone())
    }
}

/// Holds a permit again and again until killed.
fn semaphore_victim(
    (sem, bounded, inside, seed): (Semaphore, BoundedSemaphore, SharedAtomic<AtomicU64>, u64),
) {
    let mut rng = Rng::new(seed);
    let sem = pick(seed, &sem, &bounded);
    loop {
        hold_permit(&*sem, &inside, &mut rng);
    }
}

#[test]
fn a_semaphore_holder_killed_mid_hold() {
    let role = Role::start("semaphore_holder", 100);
    deadline(limit(role.rounds), || {
        for round in 0..role.rounds {
            let (at, mut rng) = (role.at(round), role.rng(round));
            let sem = Semaphore::new(PERMITS).unwrap();
            let bounded = BoundedSemaphore::new(PERMITS).unwrap();
            let inside = SharedAtomic::<AtomicU64>::new().unwrap();
            let seed = rng.next_u64();
            let mut victim = builder()
                .spawn(
                    semaphore_victim,
                    (sem.clone(), bounded.clone(), inside.clone(), seed),
                )
                .unwrap();
            let p = pick(seed, &sem, &bounded);
            let stop = AtomicBool::new(false);
            let thread_seed = rng.next_u64();
            std::thread::scope(|s| {
                s.spawn(|| {
                    let mut rng = Rng::new(thread_seed);
                    while !stop.load(Ordering::SeqCst) {
                        hold_permit(&*p, &inside, &mut rng);
                    }
                });
                wait_until(&at, "the victim's first permits", || p.value() < PERMITS);
                pause(rng.delay(Duration::from_millis(5)));
                kill_and_reap(&at, &mut victim);
                stop.store(true, Ordering::SeqCst);
            });
            // Documented: a dead holder's permit is not given back. At most one is lost,
            // and none is ever made up.
            let held_by_dead = inside.load(Ordering::SeqCst);
            let value = p.value();
            assert!(
                held_by_dead <= 1,
                "{at}: {held_by_dead} inside after the death"
            );
            assert!(
                value == PERMITS || value == PERMITS - 1,
                "{at}: {value} permits left of {PERMITS}"
            );
            if held_by_dead == 1 {
                assert_eq!(
                    value,
                    PERMITS - 1,
                    "{at}: the dead holder's permit came back"
                );
            }
            // What is left can be taken, and no more.
            for i in 0..value {
                assert!(p.try_acquire(), "{at}: permit {i} of {value} not free");
            }
            assert!(!p.try_acquire(), "{at}: more permits than the value said");
        }
    });
    role.finish();
}
