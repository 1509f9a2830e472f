//! Shared memory and robust locks between processes, under the start method named by
//! `MPROC_START_METHOD`. Every test runs inside a deadline that kills its children.
//!
//! This test binary never creates a named segment itself (only its children do): under
//! fork, children share their parent's segment tracker, and the tests of tracking need the
//! child to be the root of its own tree.

use std::os::fd::{AsFd, OwnedFd};
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use mproc::shm::ErrorKind as ShmErrorKind;
use mproc::sync::{ErrorKind, TryLockError};
use mproc::{
    Array, Barrier, BoundedSemaphore, Condition, Event, Lock, RLock, Semaphore, ShareableList,
    SharedAtomic, SharedMemory, Value,
};
use mproc_tests::{builder, deadline};

mproc::init_before_main!();

const LIMIT: Duration = Duration::from_secs(60);
const READY: Duration = Duration::from_secs(30);

fn unique(tag: &str) -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    format!(
        "mproc-test-{tag}-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

// ---- children -------------------------------------------------------------------------

fn add_locked((v, n): (Value<u64>, u64)) {
    for _ in 0..n {
        *v.lock().unwrap() += 1;
    }
}

fn hold_lock((lock, ready): (Lock, Event)) {
    let _held = lock.lock().unwrap();
    ready.set();
    std::thread::sleep(Duration::from_secs(3600));
}

fn hold_rlock((lock, ready): (RLock, Event)) {
    let _a = lock.lock().unwrap();
    let _b = lock.lock().unwrap();
    ready.set();
    std::thread::sleep(Duration::from_secs(3600));
}

fn hold_condition((cond, ready): (Condition<u32>, Event)) {
    let mut g = cond.lock().unwrap();
    *g = 7; // half-way through an update when killed
    std::mem::forget(g);
    ready.set();
    std::thread::sleep(Duration::from_secs(3600));
}

fn hold_value((v, ready): (Value<u64>, Event)) {
    let mut g = v.lock().unwrap();
    *g = 99;
    std::mem::forget(g);
    ready.set();
    std::thread::sleep(Duration::from_secs(3600));
}

fn release_foreign_rlock(lock: RLock) -> String {
    format!("{:?}", lock.release().unwrap_err().kind())
}

fn take_permit((sem, taken): (Semaphore, Event)) -> bool {
    sem.acquire();
    taken.set();
    true
}

fn wait_notified((cond, woken): (Condition<u32>, SharedAtomic<AtomicU32>)) -> bool {
    let g = cond.lock().unwrap();
    let (_g, notified) = g.wait_timeout(Duration::from_secs(40)).unwrap();
    if notified {
        woken.fetch_add(1, Ordering::SeqCst);
    }
    notified
}

fn wait_event((event, timeout_ms): (Event, u64)) -> bool {
    event.wait_timeout(Duration::from_millis(timeout_ms))
}

fn barrier_party((barrier, timeout_ms): (Barrier, u64)) -> Result<u32, String> {
    barrier
        .wait_timeout(Duration::from_millis(timeout_ms))
        .map_err(|e| format!("{:?}", e.kind()))
}

fn write_shm(shm: SharedMemory) -> usize {
    let len = shm.len();
    shm.fill(0, len, 0xcd).unwrap();
    shm.write_at(0, b"from the child").unwrap();
    len
}

fn hold_named((name, ready): (String, Event)) {
    let shm = SharedMemory::create_named(&name, 4096).unwrap();
    shm.write_at(0, b"mine").unwrap();
    ready.set();
    std::thread::sleep(Duration::from_secs(3600));
}

fn create_named_and_return(name: String) {
    SharedMemory::create_named(&name, 4096).unwrap();
}

fn create_named_untracked(name: String) {
    SharedMemory::create_named(&name, 4096).unwrap().untrack();
}

/// Creates `mine`, then is refused (`AlreadyExists`) at `mine` and at `theirs` (another
/// program's segment), as a segment and as a list; returns holding `mine` once `go` is set.
fn refused_at_existing_names((mine, theirs, ready, go): (String, String, Event, Event)) {
    let _mine = SharedMemory::create_named(&mine, 4096).unwrap();
    for name in [&mine, &theirs] {
        let e = SharedMemory::create_named(name, 64).unwrap_err();
        assert_eq!(e.kind(), ShmErrorKind::AlreadyExists, "{e}");
        let e = ShareableList::create_named(name, [1i64]).unwrap_err();
        assert_eq!(e.kind(), ShmErrorKind::AlreadyExists, "{e}");
    }
    ready.set();
    assert!(go.wait_timeout(READY));
}

fn open_named_and_return(name: String) -> u64 {
    SharedMemory::open(&name).unwrap().len() as u64
}

fn churn(n: u32) -> (usize, usize, usize, usize) {
    let maps = || {
        std::fs::read_to_string("/proc/self/maps")
            .unwrap()
            .lines()
            .count()
    };
    // One of each first, so that the arena's current chunks (one for locks, one for data)
    // exist before we count: they are the chunks the arena keeps; every other is unmapped
    // when its last block goes.
    drop((
        Lock::new().unwrap(),
        Value::new(0u32).unwrap(),
        SharedMemory::create(4096).unwrap(),
    ));
    let (fds, mappings) = (mproc_sys::open_fd_count().unwrap(), maps());
    for i in 0..n {
        let shm = SharedMemory::create(4096).unwrap();
        shm.write::<u32>(0, i).unwrap();
        let lock = Lock::new().unwrap();
        drop(lock.lock().unwrap());
        let v = Value::new(i).unwrap();
        *v.lock().unwrap() += 1;
        let e = Event::new().unwrap();
        e.set();
    }
    (fds, mproc_sys::open_fd_count().unwrap(), mappings, maps())
}

/// Receives shared objects through a pipe and uses them: the lock, the value, the list.
fn use_received(
    mut conn: mproc::Connection<u64, (Lock, Value<u64>, mproc::ShareableList, SharedMemory)>,
) {
    let (lock, v, list, shm) = conn.recv().unwrap();
    {
        let _held = lock.lock().unwrap();
        *v.lock().unwrap() += 41;
    }
    list.set(0, "seen").unwrap();
    shm.write::<u64>(0, 7).unwrap();
    conn.send(&v.get().unwrap()).unwrap();
}

static INHERITED: std::sync::OnceLock<Value<u64>> = std::sync::OnceLock::new();

fn bump_inherited(_: ()) -> u64 {
    let v = INHERITED.get().expect("inherited by fork");
    *v.lock().unwrap() += 1;
    v.get().unwrap()
}

// ---- locks ----------------------------------------------------------------------------

#[test]
fn a_value_incremented_by_four_processes_under_its_lock_loses_nothing() {
    deadline(LIMIT, || {
        let v = Value::new(0u64).unwrap();
        let n = 20_000;
        let mut kids: Vec<_> = (0..4)
            .map(|_| builder().spawn(add_locked, (v.clone(), n)).unwrap())
            .collect();
        for k in &mut kids {
            k.join().unwrap();
        }
        assert_eq!(v.get().unwrap(), 4 * n);
    });
}

#[test]
fn a_lock_holder_sigkilled_hands_the_lock_over_with_owner_died() {
    deadline(LIMIT, || {
        let lock = Lock::new().unwrap();
        let ready = Event::new().unwrap();
        let child = builder()
            .spawn(hold_lock, (lock.clone(), ready.clone()))
            .unwrap();
        assert!(ready.wait_timeout(READY));
        assert!(lock.is_locked());
        let t0 = Instant::now();
        assert!(matches!(
            lock.lock_timeout(Duration::from_millis(50)),
            Err(TryLockError::WouldBlock)
        ));
        assert!(t0.elapsed() >= Duration::from_millis(50));
        // A waiter already asleep when the holder dies is woken with the lock.
        std::thread::scope(|s| {
            let waiter = s.spawn(|| match lock.lock() {
                Err(died) => {
                    let mut g = died.into_inner();
                    g.mark_consistent();
                    true
                }
                Ok(_) => false,
            });
            std::thread::sleep(Duration::from_millis(50));
            child.kill().unwrap();
            assert!(waiter.join().unwrap(), "the waiter got OwnerDied");
        });
        assert!(lock.lock().is_ok(), "consistent again after repair");
    });
}

#[test]
fn an_rlock_holder_sigkilled_at_depth_two_hands_it_over() {
    deadline(LIMIT, || {
        let lock = RLock::new().unwrap();
        let ready = Event::new().unwrap();
        let mut child = builder()
            .spawn(hold_rlock, (lock.clone(), ready.clone()))
            .unwrap();
        assert!(ready.wait_timeout(READY));
        assert_eq!(lock.count(), 0, "held, but not by us");
        child.kill().unwrap();
        let _ = child.wait();
        let mut g = match lock.lock_timeout(READY) {
            Err(TryLockError::OwnerDied(died)) => died.into_inner(),
            other => panic!("expected OwnerDied, got {other:?}"),
        };
        g.mark_consistent();
        assert_eq!(lock.count(), 1, "the recursion count starts afresh");
        drop(g);
        assert!(!lock.is_locked());
    });
}

#[test]
fn a_condition_or_value_holder_sigkilled_mid_update_is_reported_with_the_data() {
    deadline(LIMIT, || {
        let cond = Condition::new(1u32).unwrap();
        let ready = Event::new().unwrap();
        let child = builder()
            .spawn(hold_condition, (cond.clone(), ready.clone()))
            .unwrap();
        assert!(ready.wait_timeout(READY));
        child.kill().unwrap();
        let died = cond.lock().unwrap_err();
        // The guard's copy was never written back: the value is what it was.
        assert_eq!(**died.get_ref(), 1);
        drop(died);

        let v = Value::new(5u64).unwrap();
        let ready = Event::new().unwrap();
        let child = builder()
            .spawn(hold_value, (v.clone(), ready.clone()))
            .unwrap();
        assert!(ready.wait_timeout(READY));
        child.kill().unwrap();
        let died = v.get().unwrap_err();
        assert_eq!(died.into_inner(), 5);
        let mut g = v.lock().unwrap_err().into_inner(); // not repaired yet: told again
        *g = 6;
        g.mark_consistent();
        drop(g);
        assert_eq!(v.get().unwrap(), 6);
    });
}

#[test]
fn rlock_recursion_and_a_release_by_another_process_is_an_error() {
    deadline(LIMIT, || {
        let lock = RLock::new().unwrap();
        assert!(lock.acquire());
        assert!(lock.acquire());
        assert_eq!(lock.count(), 2);
        let mut c = builder()
            .spawn(release_foreign_rlock, lock.clone())
            .unwrap();
        assert_eq!(c.join().unwrap(), "NotOwner");
        lock.release().unwrap();
        lock.release().unwrap();
        assert_eq!(lock.release().unwrap_err().kind(), ErrorKind::NotOwner);
    });
}

// ---- semaphores, events, conditions, barriers -----------------------------------------

#[test]
fn semaphores_count_across_processes_and_a_bounded_one_refuses_over_release() {
    deadline(LIMIT, || {
        let sem = Semaphore::new(0).unwrap();
        let taken = Event::new().unwrap();
        let mut c = builder()
            .spawn(take_permit, (sem.clone(), taken.clone()))
            .unwrap();
        assert!(
            !taken.wait_timeout(Duration::from_millis(50)),
            "no permit yet"
        );
        sem.release().unwrap();
        assert!(c.join().unwrap());
        assert_eq!(sem.value(), 0);
        let t0 = Instant::now();
        assert!(!sem.acquire_timeout(Duration::from_millis(50)));
        assert!(t0.elapsed() >= Duration::from_millis(50));

        let bounded = BoundedSemaphore::new(2).unwrap();
        bounded.acquire();
        bounded.release().unwrap();
        assert_eq!(
            bounded.release().unwrap_err().kind(),
            ErrorKind::TooManyReleases
        );
        assert_eq!(bounded.value(), 2);
    });
}

#[test]
fn notify_wakes_exactly_n_waiting_processes() {
    deadline(LIMIT, || {
        let cond = Condition::new(0u32).unwrap();
        let woken = SharedAtomic::<AtomicU32>::new().unwrap();
        let mut kids: Vec<_> = (0..3)
            .map(|_| {
                builder()
                    .spawn(wait_notified, (cond.clone(), woken.clone()))
                    .unwrap()
            })
            .collect();
        let t0 = Instant::now();
        while cond.waiting() < 3 {
            assert!(t0.elapsed() < READY, "children never waited");
            std::thread::sleep(Duration::from_millis(5));
        }
        cond.lock().unwrap().notify(2);
        let t0 = Instant::now();
        while woken.load(Ordering::SeqCst) < 2 {
            assert!(t0.elapsed() < READY, "notify(2) woke fewer than 2");
            std::thread::sleep(Duration::from_millis(5));
        }
        std::thread::sleep(Duration::from_millis(300));
        assert_eq!(
            woken.load(Ordering::SeqCst),
            2,
            "notify(2) woke more than 2"
        );
        assert_eq!(cond.waiting(), 1);
        cond.lock().unwrap().notify_all();
        let notified: Vec<bool> = kids.iter_mut().map(|k| k.join().unwrap()).collect();
        assert_eq!(notified, vec![true; 3]);
        // Nobody waits now: a notify is a no-op, and a wait times out.
        cond.lock().unwrap().notify_all();
        let t0 = Instant::now();
        let (_g, notified) = cond
            .lock()
            .unwrap()
            .wait_timeout(Duration::from_millis(50))
            .unwrap();
        assert!(!notified && t0.elapsed() >= Duration::from_millis(50));
    });
}

#[test]
fn an_event_set_in_one_process_wakes_another_and_timeouts_return_false() {
    deadline(LIMIT, || {
        let event = Event::new().unwrap();
        let mut c = builder()
            .spawn(wait_event, (event.clone(), 40_000))
            .unwrap();
        std::thread::sleep(Duration::from_millis(50));
        event.set();
        assert!(c.join().unwrap());
        event.clear();
        let mut c = builder().spawn(wait_event, (event.clone(), 50)).unwrap();
        assert!(!c.join().unwrap());
    });
}

#[test]
fn a_barrier_releases_its_parties_and_breaks_on_timeout_abort_and_reset() {
    deadline(LIMIT, || {
        let barrier = Barrier::new(3).unwrap();
        let mut kids: Vec<_> = (0..2)
            .map(|_| {
                builder()
                    .spawn(barrier_party, (barrier.clone(), 40_000))
                    .unwrap()
            })
            .collect();
        let mut indices = vec![barrier.wait().unwrap()];
        for k in &mut kids {
            indices.push(k.join().unwrap().unwrap());
        }
        indices.sort();
        assert_eq!(indices, vec![0, 1, 2]);

        // One party times out: it and the other waiter see a broken barrier.
        let mut other = builder()
            .spawn(barrier_party, (barrier.clone(), 40_000))
            .unwrap();
        let t0 = Instant::now();
        while barrier.n_waiting() < 1 {
            assert!(t0.elapsed() < READY);
            std::thread::sleep(Duration::from_millis(5));
        }
        let e = barrier.wait_timeout(Duration::from_millis(50)).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::BrokenBarrier);
        assert_eq!(other.join().unwrap().unwrap_err(), "BrokenBarrier");
        assert!(barrier.is_broken());
        assert_eq!(barrier.wait().unwrap_err().kind(), ErrorKind::BrokenBarrier);

        // reset makes it usable; abort breaks it for a waiter in another process.
        barrier.reset();
        assert!(!barrier.is_broken());
        let mut waiter = builder()
            .spawn(barrier_party, (barrier.clone(), 40_000))
            .unwrap();
        while barrier.n_waiting() < 1 {
            std::thread::sleep(Duration::from_millis(5));
        }
        barrier.abort();
        assert_eq!(waiter.join().unwrap().unwrap_err(), "BrokenBarrier");
        barrier.reset();
        let one = Barrier::new(1).unwrap();
        assert_eq!((one.wait().unwrap(), one.wait().unwrap()), (0, 0));
        let mut ran = false;
        one.wait_with(|| ran = true).unwrap();
        assert!(ran);
    });
}

// ---- shared memory --------------------------------------------------------------------

#[test]
fn shared_memory_written_by_a_child_is_read_by_the_parent() {
    deadline(LIMIT, || {
        let shm = SharedMemory::create(1 << 20).unwrap();
        let mut c = builder().spawn(write_shm, shm.clone()).unwrap();
        assert_eq!(c.join().unwrap(), 1 << 20);
        let mut buf = [0u8; 14];
        shm.read_at(0, &mut buf).unwrap();
        assert_eq!(&buf, b"from the child");
        assert_eq!(shm.read::<u8>((1 << 20) - 1).unwrap(), 0xcd);
        let a = Array::from_slice(&[1i32, 2, 3]).unwrap();
        let raw = mproc::RawArray::from_slice(&[4u16, 5]).unwrap();
        let back: (Array<i32>, mproc::RawArray<u16>) =
            mproc::wire::decode(mproc::wire::encode(&(a.clone(), raw)).unwrap()).unwrap();
        back.0.set(0, 10).unwrap();
        assert_eq!(a.to_vec().unwrap(), vec![10, 2, 3]);
        assert_eq!(back.1.to_vec(), vec![4, 5]);
    });
}

#[test]
fn a_named_segment_is_unlinked_when_its_creator_is_sigkilled() {
    deadline(LIMIT, || {
        let name = unique("killed");
        let ready = Event::new().unwrap();
        let child = builder()
            .spawn(hold_named, (name.clone(), ready.clone()))
            .unwrap();
        assert!(ready.wait_timeout(READY));
        let seen = SharedMemory::open(&name).unwrap();
        let mut buf = [0u8; 4];
        seen.read_at(0, &mut buf).unwrap();
        assert_eq!(&buf, b"mine");
        child.kill().unwrap();
        assert!(
            gone(&name),
            "{name} still in /dev/shm after its creator was killed"
        );
        // Our mapping stays valid after the unlink.
        seen.read_at(0, &mut buf).unwrap();
        assert_eq!(&buf, b"mine");
    });
}

#[test]
fn a_named_segment_outlives_its_openers_and_goes_with_its_creator_unless_untracked() {
    deadline(LIMIT, || {
        let name = unique("returned");
        builder()
            .spawn(create_named_and_return, name.clone())
            .unwrap()
            .join()
            .unwrap();
        assert!(
            gone(&name),
            "a creator that returns without unlinking leaves nothing"
        );

        let kept = unique("kept");
        builder()
            .spawn(create_named_untracked, kept.clone())
            .unwrap()
            .join()
            .unwrap();
        let mut c = builder()
            .spawn(open_named_and_return, kept.clone())
            .unwrap();
        assert_eq!(c.join().unwrap(), 4096);
        std::thread::sleep(Duration::from_millis(100));
        let shm = SharedMemory::open(&kept).expect("untracked, opened elsewhere: still there");
        shm.unlink().unwrap();
        assert_eq!(shm.unlink().unwrap_err().kind(), ShmErrorKind::NotFound);
        assert_eq!(
            SharedMemory::open(&kept).unwrap_err().kind(),
            ShmErrorKind::NotFound
        );
    });
}

#[test]
fn a_refused_create_named_leaves_the_existing_segment_and_its_tracking_alone() {
    deadline(LIMIT, || {
        let (mine, theirs) = (unique("mine"), unique("theirs"));
        // Another program's segment, which no tracker of ours holds.
        let theirs_fd = mproc_sys::shm_create(&theirs, 64).unwrap();
        let (ready, go) = (Event::new().unwrap(), Event::new().unwrap());
        let mut child = builder()
            .spawn(
                refused_at_existing_names,
                (mine.clone(), theirs.clone(), ready.clone(), go.clone()),
            )
            .unwrap();
        assert!(ready.wait_timeout(READY));
        // Its tracker (its only child) unlinks what it holds once the child has ended.
        let trackers: Vec<OwnedFd> = mproc_tests::children_of(child.pid())
            .into_iter()
            .filter_map(|(pid, _)| mproc_sys::pidfd_open(pid).ok())
            .collect();
        assert!(!trackers.is_empty(), "the creator has no tracker");
        go.set();
        child.join().unwrap();
        for tracker in &trackers {
            assert!(mproc_tests::wait_gone(tracker.as_fd(), READY));
        }
        // `mine` was still tracked after the refusals; `theirs` was never unlinked.
        assert_eq!(
            SharedMemory::open(&mine).unwrap_err().kind(),
            ShmErrorKind::NotFound,
            "refused creations untracked the creator's own segment"
        );
        let now = mproc_sys::shm_open_existing(&theirs).expect("another program's segment");
        assert_eq!(
            mproc_sys::file_identity(now.as_fd()).unwrap(),
            mproc_sys::file_identity(theirs_fd.as_fd()).unwrap()
        );
        mproc_sys::shm_unlink(&theirs).unwrap();
    });
}

/// Waits (with a deadline) until the segment `name` no longer exists.
fn gone(name: &str) -> bool {
    let t0 = Instant::now();
    while t0.elapsed() < READY {
        match SharedMemory::open(name) {
            Err(e) if e.kind() == ShmErrorKind::NotFound => return true,
            _ => std::thread::sleep(Duration::from_millis(5)),
        }
    }
    false
}

#[test]
fn ten_thousand_create_drop_cycles_leak_no_fd_and_no_mapping() {
    deadline(LIMIT, || {
        // In a fresh child, so that nothing else in this test binary opens fds meanwhile.
        let (fds_before, fds_after, maps_before, maps_after) =
            builder().spawn(churn, 10_000).unwrap().join().unwrap();
        assert_eq!(fds_before, fds_after);
        assert_eq!(maps_before, maps_after);
    });
}

#[test]
fn shared_objects_travel_through_a_pipe_and_by_fork_inheritance() {
    deadline(LIMIT, || {
        let (mut ours, theirs) =
            mproc::duplex::<(Lock, Value<u64>, mproc::ShareableList, SharedMemory), u64>().unwrap();
        let mut c = builder().spawn(use_received, theirs).unwrap();
        let lock = Lock::new().unwrap();
        let v = Value::new(1u64).unwrap();
        let list = mproc::ShareableList::new([mproc::Item::None]).unwrap();
        let shm = SharedMemory::create(64).unwrap();
        ours.send(&(lock.clone(), v.clone(), list.clone(), shm.clone()))
            .unwrap();
        assert_eq!(ours.recv().unwrap(), 42);
        c.join().unwrap();
        assert_eq!(v.get().unwrap(), 42);
        assert_eq!(list.get(0).unwrap(), mproc::Item::Str("seen".into()));
        assert_eq!(shm.read::<u64>(0).unwrap(), 7);
        assert!(!lock.is_locked());

        if mproc_tests::method() == mproc::StartMethod::Fork {
            // A global is simply inherited by a forked child: the same shared value.
            let v = INHERITED.get_or_init(|| Value::new(10u64).unwrap());
            let mut c = builder().spawn(bump_inherited, ()).unwrap();
            assert_eq!(c.join().unwrap(), 11);
            assert_eq!(v.get().unwrap(), 11);
        }
    });
}

fn allocate_one(_: ()) -> u32 {
    let lock = Lock::new().unwrap();
    drop(lock.lock().unwrap());
    Value::new(7u32).unwrap().get().unwrap()
}

#[test]
fn forking_while_another_thread_allocates_never_deadlocks_the_child() {
    // A child forked while another thread holds the arena's lock would wait for it forever,
    // were the lock not held across the fork by mproc-shm's fork handlers.
    deadline(LIMIT, || {
        let stop = std::sync::atomic::AtomicBool::new(false);
        std::thread::scope(|s| {
            s.spawn(|| {
                while !stop.load(Ordering::Relaxed) {
                    drop((Lock::new().unwrap(), Value::new(1u8).unwrap()));
                }
            });
            for _ in 0..40 {
                assert_eq!(
                    builder().spawn(allocate_one, ()).unwrap().join().unwrap(),
                    7
                );
            }
            stop.store(true, Ordering::Relaxed);
        });
    });
}

#[test]
fn counters_need_no_lock_when_atomic() {
    deadline(LIMIT, || {
        let hits = SharedAtomic::<AtomicU64>::new().unwrap();
        fn bump((h, n): (SharedAtomic<AtomicU64>, u64)) {
            for _ in 0..n {
                h.fetch_add(1, Ordering::Relaxed);
            }
        }
        let mut kids: Vec<_> = (0..3)
            .map(|_| builder().spawn(bump, (hits.clone(), 10_000)).unwrap())
            .collect();
        for k in &mut kids {
            k.join().unwrap();
        }
        assert_eq!(hits.load(Ordering::Relaxed), 30_000);
    });
}

#[test]
fn named_segments_stay_tracked_while_their_tracker_is_killed_again_and_again() {
    use std::io::BufRead;
    deadline(LIMIT, || {
        let tag = unique("tracker-kills");
        let mut helper = std::process::Command::new(env!("CARGO_BIN_EXE_mproc-helper"))
            .args(["tracker-kills", &tag])
            .env("MPROC_START_METHOD", mproc::get_start_method().as_str())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let mut names = Vec::new();
        let out = std::io::BufReader::new(helper.stdout.take().unwrap());
        for line in out.lines() {
            let line = line.unwrap();
            if line == "done" {
                break;
            }
            names.push(line);
        }
        assert_eq!(names.len(), 24);
        helper.kill().unwrap();
        helper.wait().unwrap();
        for name in &names {
            assert!(
                gone(name),
                "{name} still in /dev/shm: its registration was lost"
            );
        }
    });
}

#[test]
fn a_process_s_first_named_segment_appears_with_its_tracker_running() {
    // Starting the tracker takes a millisecond or so; done after the name exists, it left
    // a creator killed meanwhile with a name nobody would unlink (the kill matrix's tree
    // hit it about once in a hundred nodes).
    deadline(LIMIT, || {
        let name = unique("first");
        let out = mproc_tests::finish_helper(
            std::process::Command::new(env!("CARGO_BIN_EXE_mproc-helper"))
                .args(["first-segment-tracker", &name])
                .env("MPROC_START_METHOD", mproc::get_start_method().as_str())
                .stdout(std::process::Stdio::piped())
                .spawn()
                .unwrap(),
            READY,
            "the helper overstayed",
        );
        let out = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.contains("trackers-when-it-appeared 1"),
            "the name existed before its tracker ran: {out}"
        );
    });
}

#[test]
fn named_segments_stay_tracked_when_the_replacement_tracker_is_killed_too() {
    // The tracker is killed, and so is its replacement while every name is registered
    // with it again: the names must neither be dropped from the process's table (they
    // were, with the registration that failed) nor be left with a dead tracker.
    use std::io::BufRead;
    deadline(LIMIT, || {
        let tag = unique("tracker-twice");
        let mut helper = std::process::Command::new(env!("CARGO_BIN_EXE_mproc-helper"))
            .args(["tracker-killed-while-registering", &tag])
            .env("MPROC_START_METHOD", mproc::get_start_method().as_str())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let mut names = Vec::new();
        let out = std::io::BufReader::new(helper.stdout.take().unwrap());
        for line in out.lines() {
            let line = line.unwrap();
            if line == "done" {
                break;
            }
            names.push(line);
        }
        assert!(names.len() >= 51, "{names:?}");
        helper.kill().unwrap();
        helper.wait().unwrap();
        let exists = |n: &&String| !matches!(SharedMemory::open(n), Err(e) if e.kind() == ShmErrorKind::NotFound);
        let t0 = Instant::now();
        let mut left: Vec<_> = names.iter().filter(exists).collect();
        while !left.is_empty() && t0.elapsed() < READY {
            std::thread::sleep(Duration::from_millis(20));
            left.retain(exists);
        }
        for name in &left {
            let _ = SharedMemory::open(name).and_then(|s| s.unlink());
        }
        assert!(
            left.is_empty(),
            "still in /dev/shm, their registration lost: {left:?}"
        );
    });
}

// ---- plain data of the user's own, with no unsafe --------------------------------------

/// A user's own plain-data struct: derives bytemuck's traits, no `unsafe` anywhere.
#[derive(Clone, Copy, Debug, PartialEq, bytemuck::AnyBitPattern, bytemuck::NoUninit)]
#[repr(C)]
struct Particle {
    x: f64,
    y: f64,
    hits: u64,
    id: [u32; 2],
}

/// Moves the particle and counts a hit, under the value's lock; writes the raw array too.
fn nudge((v, raw): (mproc::Value<Particle>, mproc::RawArray<Particle>)) {
    let mut p = v.lock().unwrap();
    p.x += 1.0;
    p.hits += 1;
    raw.set(1, *p).unwrap();
}

#[test]
fn a_users_own_struct_lives_in_shared_memory_without_unsafe() {
    deadline(LIMIT, || {
        let start = Particle {
            x: 0.5,
            y: -2.0,
            hits: 0,
            id: [7, 9],
        };
        let v = mproc::Value::new(start).unwrap();
        let raw = mproc::RawArray::from_slice(&[start, start]).unwrap();
        for _ in 0..3 {
            builder()
                .spawn(nudge, (v.clone(), raw.clone()))
                .unwrap()
                .join()
                .unwrap();
        }
        let end = v.get().unwrap();
        assert_eq!(
            end,
            Particle {
                x: 3.5,
                y: -2.0,
                hits: 3,
                id: [7, 9]
            }
        );
        assert_eq!(raw.get(1).unwrap(), end);
        assert_eq!(raw.get(0).unwrap(), start);
    });
}
