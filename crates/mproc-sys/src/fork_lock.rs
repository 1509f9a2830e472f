//! `ForkLock`: a mutex that every `fork` of the process holds, so that a child never
//! inherits it locked by a thread that does not exist there.
//!
//! After `fork` only the forking thread exists in the child. A lock another thread held at
//! that moment would stay held for ever in the child, and what it protects half-changed. So
//! one process-wide `pthread_atfork` handler, registered when the first fork lock is first
//! locked, takes every fork lock the process has used before each fork, in the order of their
//! ranks ([`fork_order`](crate::fork_order)), and releases them all after it, in the parent
//! and in the child.

use std::any::Any;
use std::cell::RefCell;
use std::fmt;
use std::ops::{Deref, DerefMut};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, MutexGuard, Once};

/// A mutex held across every `fork` of the process: a fork waits until no other thread
/// holds it, and the child gets it unlocked, with what it protects in a consistent state.
///
/// Made as a `static`, with a rank from [`fork_order`](crate::fork_order): a fork takes the
/// fork locks lowest rank first, so a thread that holds two must have taken them in that
/// order. Nothing needs installing: the lock joins the fork handler the first time it is
/// locked. A lock poisoned by a panic is recovered (the next locker gets the data as the
/// panicking thread left it).
///
/// Do not fork while holding a guard: the fork would wait for it for ever.
///
/// ```
/// use mproc_sys::ForkLock;
/// static HITS: ForkLock<u32> = ForkLock::new(1000, 0);
/// *HITS.lock() += 1;
/// assert_eq!(*HITS.lock(), 1);
/// ```
pub struct ForkLock<T> {
    rank: u32,
    /// Whether this lock is in `REGISTERED` (set once, under that registry's lock).
    registered: AtomicBool,
    mutex: Mutex<T>,
}

impl<T> ForkLock<T> {
    /// Makes a lock of rank `rank` (see [`fork_order`](crate::fork_order)) holding `value`.
    pub const fn new(rank: u32, value: T) -> Self {
        ForkLock {
            rank,
            registered: AtomicBool::new(false),
            mutex: Mutex::new(value),
        }
    }
}

impl<T: Send + 'static> ForkLock<T> {
    /// Locks, waiting while another thread (or a fork in progress) holds the lock.
    ///
    /// ```
    /// use mproc_sys::ForkLock;
    /// static NAMES: ForkLock<Vec<String>> = ForkLock::new(1000, Vec::new());
    /// NAMES.lock().push("a".into());
    /// assert_eq!(NAMES.lock().len(), 1);
    /// ```
    pub fn lock(&'static self) -> ForkLockGuard<T> {
        if !self.registered.load(Ordering::Acquire) {
            register(self, &self.registered);
        }
        ForkLockGuard(self.mutex.lock().unwrap_or_else(|e| e.into_inner()))
    }
}

impl<T> fmt::Debug for ForkLock<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ForkLock")
            .field("rank", &self.rank)
            .finish_non_exhaustive()
    }
}

/// Access to what a [`ForkLock`] protects; the lock is released when this is dropped.
#[must_use = "the lock is released when this is dropped"]
pub struct ForkLockGuard<T: 'static>(MutexGuard<'static, T>);

impl<T: 'static> Deref for ForkLockGuard<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.0
    }
}

impl<T: 'static> DerefMut for ForkLockGuard<T> {
    fn deref_mut(&mut self) -> &mut T {
        &mut self.0
    }
}

impl<T: fmt::Debug + 'static> fmt::Debug for ForkLockGuard<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&**self, f)
    }
}

/// A fork lock of any type, as the fork handler sees it.
trait HeldAcrossFork: Sync {
    fn rank(&self) -> u32;
    /// Locks; the guard, type-erased, releases the lock when dropped.
    fn hold(&'static self) -> Box<dyn Any>;
}

impl<T: Send + 'static> HeldAcrossFork for ForkLock<T> {
    fn rank(&self) -> u32 {
        self.rank
    }

    fn hold(&'static self) -> Box<dyn Any> {
        Box::new(self.mutex.lock().unwrap_or_else(|e| e.into_inner()))
    }
}

/// Every fork lock locked at least once in this process, lowest rank first: the locks the
/// fork handler takes. It only grows.
static REGISTERED: Mutex<Vec<&'static dyn HeldAcrossFork>> = Mutex::new(Vec::new());

thread_local! {
    /// The guards the fork handler took before a fork, released after it (on the forking
    /// thread, in the parent and in the child).
    static HELD: RefCell<Vec<Box<dyn Any>>> = const { RefCell::new(Vec::new()) };
}

/// Adds `lock` to the locks every fork takes (once, whoever calls first), registering the
/// fork handler first if no lock has done so yet.
#[cold]
fn register(lock: &'static dyn HeldAcrossFork, registered: &AtomicBool) {
    static HANDLER: Once = Once::new();
    HANDLER.call_once(|| {
        // Without a handler (pthread_atfork is out of memory) forks go on as they did
        // before: there is nothing better to do.
        let _ = crate::at_fork(take_all, release_all, release_all);
    });
    let mut locks = lock_registered();
    if !registered.load(Ordering::Relaxed) {
        let at = locks.partition_point(|l| l.rank() <= lock.rank());
        locks.insert(at, lock);
        registered.store(true, Ordering::Release);
    }
}

fn lock_registered() -> MutexGuard<'static, Vec<&'static dyn HeldAcrossFork>> {
    REGISTERED.lock().unwrap_or_else(|e| e.into_inner())
}

/// Before a fork: takes every registered lock, lowest rank first, then the registry itself,
/// so that no lock can join (and be taken by another thread) until the fork is done.
extern "C" fn take_all() {
    let guards = loop {
        // The registry is not held while waiting for the locks: a thread that holds one
        // may be registering another.
        let locks = lock_registered().clone();
        let mut guards: Vec<Box<dyn Any>> = locks.iter().map(|l| l.hold()).collect();
        let registry = lock_registered();
        if registry.len() == locks.len() {
            guards.push(Box::new(registry));
            break guards;
        }
        // A lock joined meanwhile (its thread may hold it by now): start again, so that
        // all of them are taken in rank order.
        drop(registry);
        drop(guards);
    };
    HELD.with(|h| *h.borrow_mut() = guards);
}

/// After a fork, in the parent and in the child: releases what [`take_all`] took.
extern "C" fn release_all() {
    let guards = HELD.with(|h| std::mem::take(&mut *h.borrow_mut()));
    drop(guards);
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc;
    use std::time::{Duration, Instant};

    use crate::{ForkOutcome, ForkPermit, Pid};

    /// Forks from a thread of its own, so that a fork that never ends fails the test at a
    /// deadline instead of hanging it. The child runs `child` and exits with its code at
    /// once (`_exit`, without flushing: another test's thread may hold the standard
    /// streams' locks).
    fn fork_child(child: fn() -> i32) -> Pid {
        let (forked, when_forked) = mpsc::channel();
        std::thread::spawn(move || {
            // SAFETY: the other threads are this test's and the harness's; the child
            // touches nothing of theirs: it only takes fork locks (which the fork handler
            // released in it) and reads memory of its own, then exits at once.
            let permit = unsafe { ForkPermit::other_threads_are_idle() };
            match crate::fork(Some(permit)).expect("fork") {
                ForkOutcome::Child => {
                    let code = child();
                    // SAFETY: `_exit` has no preconditions; the child ends here.
                    unsafe { libc::_exit(code) }
                }
                ForkOutcome::Parent(pid) => {
                    let _ = forked.send(pid);
                }
            }
        });
        when_forked
            .recv_timeout(Duration::from_secs(30))
            .expect("the fork never happened")
    }

    /// Waits for the child `pid` until a deadline; kills it when the deadline passes.
    fn exit_code(pid: Pid) -> Option<i32> {
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            match crate::wait_pid(pid, false).expect("wait") {
                Some(crate::ExitStatus::Code(c)) => return Some(c),
                Some(crate::ExitStatus::Signal(_)) => return None,
                None => std::thread::sleep(Duration::from_millis(5)),
            }
        }
        let _ = crate::kill_pid(pid, crate::SIGKILL);
        let _ = crate::wait_pid(pid, true);
        None
    }

    #[test]
    fn a_fork_waits_for_the_lock_and_the_child_can_take_it() {
        static COUNT: ForkLock<u32> = ForkLock::new(1000, 0);
        static RELEASED: AtomicBool = AtomicBool::new(false);
        let (held, when_held) = mpsc::channel();
        let holder = std::thread::spawn(move || {
            let mut count = COUNT.lock();
            held.send(()).unwrap();
            std::thread::sleep(Duration::from_millis(200));
            *count += 1;
            RELEASED.store(true, Ordering::SeqCst);
        });
        when_held.recv().unwrap();
        // The fork must wait for the holder: the child sees the count it left.
        let pid = fork_child(|| {
            let released = RELEASED.load(Ordering::SeqCst);
            let count = *COUNT.lock();
            if released && count == 1 { 0 } else { 1 }
        });
        assert_eq!(
            exit_code(pid),
            Some(0),
            "the fork did not wait, or the lock stayed held"
        );
        holder.join().unwrap();
        *COUNT.lock() += 1; // released in the parent too
        assert_eq!(*COUNT.lock(), 2);
    }

    #[test]
    fn a_fork_takes_the_locks_in_rank_order() {
        static LOW: ForkLock<()> = ForkLock::new(1001, ());
        static HIGH: ForkLock<()> = ForkLock::new(1002, ());
        // Registered out of order: the handler still takes LOW first.
        drop(HIGH.lock());
        drop(LOW.lock());
        let ranks: Vec<u32> = lock_registered().iter().map(|l| l.rank()).collect();
        assert!(ranks.is_sorted(), "{ranks:?}");
        // A thread takes LOW then HIGH while a fork is under way. Had the fork taken HIGH
        // first, each would wait for the other for ever.
        let (held, when_held) = mpsc::channel();
        let holder = std::thread::spawn(move || {
            let low = LOW.lock();
            held.send(()).unwrap();
            std::thread::sleep(Duration::from_millis(100));
            let high = HIGH.lock();
            drop((high, low));
        });
        when_held.recv().unwrap();
        let pid = fork_child(|| {
            drop((LOW.lock(), HIGH.lock()));
            0
        });
        assert_eq!(exit_code(pid), Some(0));
        holder.join().unwrap();
    }
}
