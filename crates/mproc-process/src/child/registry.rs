//! The registry of this process's children (Python's `_children`): what
//! `active_children()` lists, what is joined at exit.

use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::proc::Proc;
use crate::info::ProcessInfo;

/// Every child this process started and has not yet forgotten: Python's `_children`.
static REGISTRY: Mutex<Vec<(Arc<Proc>, bool)>> = Mutex::new(Vec::new());

/// Locks the registry (held across a fork, so that the child's copy is consistent).
pub(crate) fn lock_registry() -> std::sync::MutexGuard<'static, Vec<(Arc<Proc>, bool)>> {
    REGISTRY.lock().unwrap_or_else(|p| p.into_inner())
}

/// The registry entries, type-erased for `ForkGuards`.
pub(crate) type Registry = Vec<(Arc<Proc>, bool)>;

pub(crate) fn register(proc: &Arc<Proc>) {
    reap_detached();
    join_at_exit();
    REGISTRY
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .push((proc.clone(), false));
}

/// Reaps children whose `Child` was dropped before they ended, so no zombie accumulates.
pub(crate) fn reap_detached() {
    let mut reg = REGISTRY.lock().unwrap_or_else(|p| p.into_inner());
    reg.retain(|(p, detached)| !(*detached && p.is_over()));
}

/// Forgets a child whose `Child` is dropped once nothing is left to wait for, closing its
/// fds; one still running stays until a later `reap_detached` finds it ended. A fork
/// server's child that has ended counts as over although the server's report of its status
/// may still be on its way: kept for that report, its fds would stay open until the next
/// spawn (a pool's workers, dropped as soon as they end, left two each).
pub(super) fn detach(proc: &Arc<Proc>) {
    let mut reg = REGISTRY.lock().unwrap_or_else(|p| p.into_inner());
    let finished = proc.is_over();
    reg.retain_mut(|(p, detached)| {
        if Arc::ptr_eq(p, proc) {
            *detached = true;
            !finished
        } else {
            true
        }
    });
}

/// Makes this process, when it exits, terminate its daemonic children and wait for the
/// others, as Python does at interpreter exit (installed with the first child).
fn join_at_exit() {
    static INSTALLED: std::sync::Once = std::sync::Once::new();
    INSTALLED.call_once(|| {
        if let Err(e) = mproc_sys::at_exit(join_children) {
            crate::diag::warning!("children will not be joined at exit: {e}");
        }
    });
}

/// The exit handler: Python's `_exit_function`. Daemonic children get SIGTERM (they die with
/// this process anyway); every other child is waited for, unless it was started with
/// `Builder::join_at_exit(false)` or its `Child` was dropped by a panic. A test binary
/// (initialized by `init_before_main!`) waits for none: a failed test must end its run, not
/// hang it on a child that waits for what the test would have given it.
extern "C" fn join_children() {
    if crate::init::initialized_before_main() {
        return;
    }
    join_children_now();
}

/// What the exit handler does; also run by a child when its function has returned, before
/// it exits (as Python's children run `_exit_function` too).
pub(crate) fn join_children_now() {
    // Another thread may hold the registry as `exit` runs: give it a moment, never hang.
    // The clock is read only then: in a freshly forked child the first read of the clock
    // faults in the vDSO's data page, a cost every child would pay for nothing.
    let mut give_up = None;
    let me = std::process::id();
    let ours = |reg: &Registry| -> Vec<Arc<Proc>> {
        reg.iter()
            .filter(|(p, _)| p.by == me)
            .map(|(p, _)| p.clone())
            .collect()
    };
    let procs = loop {
        match REGISTRY.try_lock() {
            Ok(reg) => break ours(&reg),
            Err(std::sync::TryLockError::Poisoned(p)) => break ours(&p.into_inner()),
            Err(std::sync::TryLockError::WouldBlock) => {
                let give_up =
                    *give_up.get_or_insert_with(|| Instant::now() + Duration::from_secs(1));
                if Instant::now() >= give_up {
                    return;
                }
                std::thread::sleep(Duration::from_millis(1));
            }
        }
    };
    for p in procs.iter().filter(|p| p.info.daemon) {
        let _ = p.signal(mproc_sys::SIGTERM);
    }
    for p in procs.iter().filter(|p| !p.info.daemon) {
        if !p.outlives.load(Ordering::Relaxed) {
            let _ = p.status_until(None);
        }
    }
}

/// Returns the children of this process that are still running, reaping finished ones:
/// Python's `multiprocessing.active_children()`.
///
/// ```
/// assert!(mproc_process::active_children().is_empty());
/// ```
pub fn active_children() -> Vec<ProcessInfo> {
    reap_detached();
    let reg = REGISTRY.lock().unwrap_or_else(|p| p.into_inner());
    reg.iter()
        .filter(|(p, _)| p.try_status().is_none())
        .map(|(p, _)| p.info.clone())
        .collect()
}

/// Sends SIGKILL to every running child of this process: a last resort for test harnesses
/// and watchdogs. Returns how many were signalled.
///
/// ```
/// assert_eq!(mproc_process::kill_all_children(), 0);
/// ```
pub fn kill_all_children() -> usize {
    let reg = REGISTRY.lock().unwrap_or_else(|p| p.into_inner());
    reg.iter()
        .filter(|(p, _)| p.signal(mproc_sys::SIGKILL).is_ok() && p.try_status().is_none())
        .count()
}
