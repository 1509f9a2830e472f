//! [`init`], the first line of `main`: it readies this program to start children, or, in a
//! spawned child, serves the parent's request.

use std::sync::atomic::{AtomicBool, Ordering};

use crate::panic::install_panic_hook;
use crate::protocol::CHILD_ENV;
use crate::run::run_spawned_child;

static INITIALIZED: AtomicBool = AtomicBool::new(false);

/// Returns whether `init()` ran in this process (or in the parent this one was forked from).
pub(crate) fn initialized() -> bool {
    INITIALIZED.load(Ordering::Relaxed)
}

/// Runs the requested function when this process is an mproc child; returns at once
/// otherwise. Make it the first line of `main`.
///
/// In a child started by the spawn method, `init()` reads the request from the parent, runs
/// the function, sends back its result and exits: it never returns, and the rest of `main`
/// never runs. In any other process it only records that mproc is ready, so that
/// [`spawn`](crate::spawn) may be used; spawning from a program that never called it is an
/// [`ErrorKind::NotInitialized`](crate::ErrorKind::NotInitialized) error rather than a child
/// that runs `main` again.
///
/// For test binaries, whose `main` is not yours, use
/// [`init_before_main!`](crate::init_before_main) instead.
///
/// ```
/// // The first line of `main`:
/// mproc_process::init();
/// // ... the rest of the program, which may now spawn children.
/// assert!(mproc_process::parent_process().is_none());
/// ```
pub fn init() {
    INITIALIZED.store(true, Ordering::SeqCst);
    // Once, here, rather than in every forked child (where it would copy pages).
    install_panic_hook();
    if let Some(marker) = mproc_sys::take_inherited_socket(CHILD_ENV) {
        run_spawned_child(marker);
    }
}

/// Runs `mproc::init()` before `main`, from the executable's constructor section.
///
/// Write it once per test binary (an integration test file, or the crate root of unit
/// tests): children of the test binary then run their function and exit before the test
/// harness starts, so they never run the test suite. It works for any binary, and under
/// cargo-nextest too.
///
/// ```
/// // At the top of tests/my_test.rs:
/// mproc_process::init_before_main!();
///
/// fn double(x: u32) -> u32 { x * 2 }
///
/// // In a test file this function carries #[test].
/// fn doubles_in_a_child() {
///     assert_eq!(mproc_process::spawn(double, 21).unwrap().join().unwrap(), 42);
/// }
/// # doubles_in_a_child();
/// ```
#[macro_export]
macro_rules! init_before_main {
    () => {
        const _: () = {
            extern "C" fn __mproc_init_before_main() {
                $crate::__init_before_main();
            }
            // SAFETY: `.init_array` holds `extern "C" fn()` pointers that the C runtime calls
            // once before `main`; this static is exactly one such pointer.
            #[used]
            #[unsafe(link_section = ".init_array")]
            static __MPROC_INIT_BEFORE_MAIN: extern "C" fn() = __mproc_init_before_main;
        };
    };
}

static BEFORE_MAIN: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// What [`init_before_main!`] runs: [`init`], remembering that this program is a test
/// binary (its exit does not wait for its children).
#[doc(hidden)]
pub fn __init_before_main() {
    BEFORE_MAIN.store(true, std::sync::atomic::Ordering::Relaxed);
    init();
}

/// Whether this program was initialized by [`init_before_main!`].
pub(crate) fn initialized_before_main() -> bool {
    BEFORE_MAIN.load(std::sync::atomic::Ordering::Relaxed)
}
