//! Panics as values: [`catch_panic`], with the hook that records where a panic happened.

use std::cell::RefCell;
use std::panic::{self, AssertUnwindSafe};

/// Runs `f` and returns its result, or the message of its panic (with where it panicked)
/// instead of unwinding: how a long-lived child, such as a pool's worker, runs one piece of
/// the user's code after another and reports each panic as a value.
///
/// The panic is still printed on standard error by the panic hook, as in any child.
///
/// ```
/// let ok = mproc_process::catch_panic(|| 6 * 7);
/// assert_eq!(ok, Ok(42));
/// let err = mproc_process::catch_panic(|| -> u32 { panic!("no answer") }).unwrap_err();
/// assert!(err.starts_with("no answer (at "));
/// ```
pub fn catch_panic<T>(f: impl FnOnce() -> T) -> Result<T, String> {
    install_panic_hook();
    panic::catch_unwind(AssertUnwindSafe(f)).map_err(|payload| {
        let text = panic_text(&*payload);
        // Dropping a payload runs the user's code once more, which could panic again.
        std::mem::forget(payload);
        text
    })
}

thread_local! {
    static LAST_PANIC_AT: RefCell<Option<String>> = const { RefCell::new(None) };
}

/// Installs, once per process, the hook that records where each panic happened (for
/// [`panic_text`]), then runs the hook that was there before.
pub(crate) fn install_panic_hook() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let previous = panic::take_hook();
        panic::set_hook(Box::new(move |info| {
            if let Some(loc) = info.location() {
                LAST_PANIC_AT.with(|l| *l.borrow_mut() = Some(loc.to_string()));
            }
            previous(info);
        }));
    });
}

/// The message of a panic, with where it happened when the hook saw it.
pub(crate) fn panic_text(payload: &(dyn std::any::Any + Send)) -> String {
    let msg = payload
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic with a non-string payload".to_string());
    match LAST_PANIC_AT.with(|l| l.borrow_mut().take()) {
        Some(at) => format!("{msg} (at {at})"),
        None => msg,
    }
}
