//! This thread's lock records: its kernel thread id, the robust list the kernel walks when
//! the thread dies, and the held set that proves ownership where there is no robust list.

use std::cell::Cell;
use std::sync::Once;

/// The kernel's `struct robust_list_head`, as glibc registers it for every thread.
#[repr(C)]
pub(crate) struct RobustHead {
    pub(crate) list: usize,
    futex_offset: libc::c_long,
    pub(crate) list_op_pending: usize,
}

/// A robust list head of our own, for a thread that has none registered (not the case
/// under glibc, which registers one per thread). The slot before the head is written when
/// an entry is inserted into an empty list, as glibc's own head has.
#[repr(C)]
struct OwnHead {
    prev_slot: usize,
    head: RobustHead,
}

/// The offset of a [`RawMutex`](crate::RawMutex)'s word from its list entry (the `next`
/// field): the value glibc uses for its own robust mutexes on 64-bit targets, so the two can
/// share one list.
pub(crate) const FUTEX_OFFSET: libc::c_long = -32;

#[derive(Clone, Copy)]
pub(crate) struct ThreadState {
    pub(crate) tid: u32,
    /// The registered robust list head, or 0 when this thread cannot have robust locks.
    pub(crate) head: usize,
}

thread_local! {
    pub(crate) static THREAD: Cell<ThreadState> = const { Cell::new(ThreadState { tid: 0, head: 0 }) };
}

/// The mutexes this thread holds (their list entries), so that ownership never rests on
/// the shared word alone: a peer that forges our thread id into a word it shares with us
/// does not make us "unlock" it through links we never set. Inline for the usual few.
const HELD_INLINE: usize = 16;

struct Held {
    len: Cell<usize>,
    inline: [Cell<usize>; HELD_INLINE],
}

thread_local! {
    static HELD: Held = const {
        Held { len: Cell::new(0), inline: [const { Cell::new(0) }; HELD_INLINE] }
    };
    static HELD_MORE: std::cell::RefCell<Vec<usize>> = const { std::cell::RefCell::new(Vec::new()) };
}

impl Held {
    fn at(&self, i: usize) -> usize {
        match self.inline.get(i) {
            Some(c) => c.get(),
            None => HELD_MORE.with(|m| m.borrow().get(i - HELD_INLINE).copied().unwrap_or(0)),
        }
    }

    fn set(&self, i: usize, entry: usize) {
        match self.inline.get(i) {
            Some(c) => c.set(entry),
            None => HELD_MORE.with(|m| {
                let mut m = m.borrow_mut();
                let k = i - HELD_INLINE;
                if k < m.len() {
                    m[k] = entry;
                } else {
                    m.push(entry);
                }
            }),
        }
    }

    #[cold]
    fn find(&self, entry: usize) -> Option<usize> {
        (0..self.len.get()).rev().find(|&i| self.at(i) == entry)
    }

    #[cold]
    fn take_slow(&self, entry: usize) -> bool {
        let Some(i) = self.find(entry) else {
            return false;
        };
        let n = self.len.get();
        self.set(i, self.at(n - 1));
        if n > HELD_INLINE {
            HELD_MORE.with(|m| m.borrow_mut().pop());
        }
        self.len.set(n - 1);
        true
    }
}

#[inline]
pub(crate) fn held_push(entry: usize) {
    HELD.with(|h| {
        let n = h.len.get();
        h.set(n, entry);
        h.len.set(n + 1);
    })
}

/// Removes `entry` from the held set; `false` if it is not there. Locks are usually
/// released newest first, so the fast path looks at the top only.
#[inline]
pub(crate) fn held_take(entry: usize) -> bool {
    HELD.with(|h| {
        let n = h.len.get();
        if (1..=HELD_INLINE).contains(&n) && h.inline[n - 1].get() == entry {
            h.len.set(n - 1);
            true
        } else {
            h.take_slow(entry)
        }
    })
}

#[inline]
pub(crate) fn held_contains(entry: usize) -> bool {
    HELD.with(|h| {
        let n = h.len.get();
        ((1..=HELD_INLINE).contains(&n) && h.inline[n - 1].get() == entry)
            || h.find(entry).is_some()
    })
}

extern "C" fn forget_thread_state() {
    // In a fork child, the one thread has a new tid (and glibc emptied its robust list);
    // it holds none of the locks its parent's thread held.
    let head = THREAD
        .with(|t| t.replace(ThreadState { tid: 0, head: 0 }))
        .head;
    if head != 0 {
        // SAFETY: the head registered for this thread (the fork child's copy of it, at the
        // same address); a lock may have left `list_op_pending` naming it.
        unsafe { (*(head as *mut RobustHead)).list_op_pending = 0 };
    }
    HELD.with(|h| h.len.set(0));
    HELD_MORE.with(|m| m.borrow_mut().clear());
}

#[cold]
fn init_thread_state() -> ThreadState {
    static ATFORK: Once = Once::new();
    ATFORK.call_once(|| {
        extern "C" fn nothing() {}
        // Without the handler (pthread_atfork is out of memory) a fork child would keep
        // its parent's thread id: nothing better can be done about it here.
        let _ = crate::at_fork(nothing, nothing, forget_thread_state);
    });
    // SAFETY: gettid has no preconditions.
    let tid = unsafe { libc::gettid() } as u32;
    let mut head: usize = 0;
    let mut len: libc::size_t = 0;
    // SAFETY: both out-pointers are valid; pid 0 asks about the calling thread.
    let r = unsafe {
        libc::syscall(
            libc::SYS_get_robust_list,
            0,
            &mut head as *mut usize,
            &mut len as *mut libc::size_t,
        )
    };
    let usable = if r != 0 {
        None // cannot tell whether a head is registered: do not replace it
    } else if head != 0 {
        // SAFETY: the kernel returned the address of this thread's registered head, which
        // glibc keeps alive in the thread's control block for the thread's lifetime.
        let offset = unsafe { (*(head as *const RobustHead)).futex_offset };
        (offset == FUTEX_OFFSET).then_some(head)
    } else {
        let own = Box::leak(Box::new(OwnHead {
            prev_slot: 0,
            head: RobustHead {
                list: 0,
                futex_offset: FUTEX_OFFSET,
                list_op_pending: 0,
            },
        }));
        own.head.list = &own.head as *const RobustHead as usize;
        let addr = &own.head as *const RobustHead as usize;
        // SAFETY: `addr` points to a leaked (so never freed) head of the kernel's layout.
        let r = unsafe {
            libc::syscall(
                libc::SYS_set_robust_list,
                addr,
                std::mem::size_of::<RobustHead>(),
            )
        };
        (r == 0).then_some(addr)
    };
    let state = ThreadState {
        tid,
        head: usable.unwrap_or(0),
    };
    THREAD.with(|t| t.set(state));
    state
}

#[inline]
pub(crate) fn thread_state() -> ThreadState {
    let s = THREAD.with(Cell::get);
    if s.tid != 0 { s } else { init_thread_state() }
}

/// Returns whether locks taken by this thread are robust: whether the kernel will mark a
/// [`RawMutex`](crate::RawMutex) this thread holds as `OWNER_DIED` if the thread dies.
///
/// True on Linux with glibc (or any libc that registers no robust list of its own).
///
/// ```
/// assert!(mproc_sys::robust_locks_supported());
/// ```
pub fn robust_locks_supported() -> bool {
    thread_state().head != 0
}

/// Returns the calling thread's kernel thread id (cached; refreshed after fork).
///
/// ```
/// assert!(mproc_sys::thread_id() > 0);
/// ```
pub fn thread_id() -> u32 {
    thread_state().tid
}
