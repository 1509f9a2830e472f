//! Fork handlers: the arena's, the mapped-file registry's and the tracker's locks are held
//! across every `fork`, so a child never inherits one held by a thread that does not exist
//! there.

use std::cell::RefCell;
use std::sync::{Mutex, MutexGuard, Once};

/// The guards taken before a fork, released after it (on the forking thread, in the parent
/// and in the child).
struct Held {
    _guards: Vec<Box<dyn std::any::Any>>,
}

thread_local! {
    static HELD: RefCell<Option<Held>> = const { RefCell::new(None) };
}

fn take<T: 'static>(m: &'static Mutex<T>) -> Box<dyn std::any::Any> {
    let guard: MutexGuard<'static, T> = m.lock().unwrap_or_else(|e| e.into_inner());
    Box::new(guard)
}

extern "C" fn prepare() {
    // The order every other path takes them in: cursors, chunks, mapped files, tracker.
    let guards: Vec<Box<dyn std::any::Any>> = vec![
        take(&crate::arena::CURRENT),
        take(&crate::arena::CACHE),
        Box::new(mproc_sys::hold_mappings()),
        take(&crate::segment::TRACKING),
    ];
    HELD.with(|h| *h.borrow_mut() = Some(Held { _guards: guards }));
}

extern "C" fn release() {
    HELD.with(|h| drop(h.borrow_mut().take()));
}

/// Registers the handlers, once per process (before the first lock can be taken).
pub(crate) fn install() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let _ = mproc_sys::at_fork(prepare, release, release);
    });
}
