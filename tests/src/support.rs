//! Support for mproc's integration tests: the start method under test, deadlines that kill
//! children instead of hanging, and small process helpers.
//!
//! The suite runs once per start method: `MPROC_START_METHOD=fork|spawn|forkserver`.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use mproc::{Builder, ForkPermit, StartMethod};

/// Returns the start method under test (from `MPROC_START_METHOD`; forkserver by default).
pub fn method() -> StartMethod {
    mproc::get_start_method()
}

/// Returns a builder for the method under test.
///
/// For fork it carries a permit: the other threads of a test binary are the harness's and
/// the watchdogs', which do not hold mproc's locks (mproc holds its own across fork) and
/// whose state the child never touches.
pub fn builder() -> Builder {
    let b = Builder::new().start_method(method());
    if method() == StartMethod::Fork {
        // SAFETY: see above; the forked child only runs the test's function.
        b.fork_permit(unsafe { ForkPermit::other_threads_are_idle() })
    } else {
        b
    }
}

/// Returns a pool builder of `n` workers for the method under test (with a fork permit for
/// fork, as [`builder`] has).
pub fn pool_builder(n: usize) -> mproc::pool::Builder {
    let b = mproc::pool::Builder::new()
        .processes(n)
        .start_method(method());
    if method() == StartMethod::Fork {
        // SAFETY: as in `builder`: the fork server forked here runs only the pool's code.
        b.fork_permit(unsafe { ForkPermit::other_threads_are_idle() })
    } else {
        b
    }
}

/// Returns an executor builder of up to `n` workers for the method under test (with a fork
/// permit for fork, as [`pool_builder`] has).
pub fn executor_builder(n: usize) -> mproc::pool::executor::Builder {
    let b = mproc::pool::executor::Builder::new()
        .max_workers(n)
        .start_method(method());
    if method() == StartMethod::Fork {
        // SAFETY: as in `pool_builder`: the executor's fork server runs only the pool's code.
        b.fork_permit(unsafe { ForkPermit::other_threads_are_idle() })
    } else {
        b
    }
}

/// Runs `body`, and if it has not finished after `limit`, kills every child of this process
/// (which unblocks any join) and, if that does not help within five seconds, aborts the
/// process with a message. A test never hangs.
pub fn deadline<T>(limit: Duration, body: impl FnOnce() -> T) -> T {
    let done = Arc::new(AtomicBool::new(false));
    let flag = done.clone();
    let name = std::thread::current().name().unwrap_or("test").to_string();
    let watchdog = std::thread::spawn(move || {
        let start = Instant::now();
        while !flag.load(Ordering::SeqCst) {
            if start.elapsed() > limit {
                eprintln!("{name}: deadline of {limit:?} passed; killing children");
                mproc::process::kill_all_children();
                let grace = Instant::now();
                while !flag.load(Ordering::SeqCst) {
                    if grace.elapsed() > Duration::from_secs(5) {
                        eprintln!("{name}: still stuck after killing children; aborting");
                        std::process::abort();
                    }
                    std::thread::sleep(Duration::from_millis(20));
                }
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    });
    let out = body();
    done.store(true, Ordering::SeqCst);
    let _ = watchdog.join();
    out
}

/// Waits until process `pid` has ended (or `limit` passes); returns whether it ended.
pub fn wait_gone(pidfd: std::os::fd::BorrowedFd<'_>, limit: Duration) -> bool {
    mproc_sys::wait_readable(pidfd, Some(Instant::now() + limit)).unwrap_or(false)
}

/// Returns the state letter of `/proc/<pid>/stat` (`Z` for a zombie) and the parent pid.
pub fn proc_state(pid: u32) -> Option<(char, u32)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after = &stat[stat.rfind(')')? + 2..];
    let mut it = after.split(' ');
    let state = it.next()?.chars().next()?;
    let ppid = it.next()?.parse().ok()?;
    Some((state, ppid))
}

/// Counts zombie processes whose parent is `parent`.
pub fn zombies_of(parent: u32) -> usize {
    std::fs::read_dir("/proc")
        .map(|d| {
            d.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
                .filter(|pid| proc_state(*pid).is_some_and(|(s, pp)| s == 'Z' && pp == parent))
                .count()
        })
        .unwrap_or(0)
}

/// Waits up to `limit` for a helper process to end, killing it and failing with `why` if it
/// does not, and returns what it printed.
pub fn finish_helper(
    mut child: std::process::Child,
    limit: Duration,
    why: &str,
) -> std::process::Output {
    let t0 = Instant::now();
    while child.try_wait().unwrap().is_none() {
        if t0.elapsed() > limit {
            let _ = child.kill();
            panic!("{why}");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    child.wait_with_output().unwrap()
}

/// Reads a helper's first line of output, which must start with `tag` (`"child 1234"`
/// with the tag `"child "`), and returns the rest of it.
pub fn read_tagged_line(child: &mut std::process::Child, tag: &str) -> String {
    use std::io::BufRead;
    let mut line = String::new();
    let out = child.stdout.as_mut().expect("the helper's stdout is piped");
    std::io::BufReader::new(out).read_line(&mut line).unwrap();
    line.trim()
        .strip_prefix(tag.trim_end())
        .unwrap_or_else(|| panic!("no {tag:?} line: {line:?}"))
        .trim()
        .to_string()
}

#[cfg(test)]
mod tests {
    // Unit tests of a library crate need the same one line as an integration test file.
    mproc::init_before_main!();

    fn triple(x: i64) -> i64 {
        x * 3
    }

    #[test]
    fn spawn_works_from_unit_tests() {
        super::deadline(std::time::Duration::from_secs(60), || {
            let mut c = super::builder().spawn(triple, -7).unwrap();
            assert_eq!(c.join().unwrap(), -21);
        });
    }

    #[test]
    fn proc_state_reads_our_own_entry() {
        let (state, ppid) = super::proc_state(std::process::id()).unwrap();
        assert!(matches!(state, 'R' | 'S'), "{state}");
        assert_eq!(ppid, std::os::unix::process::parent_id());
    }
}
