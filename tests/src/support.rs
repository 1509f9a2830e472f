//! Support for mproc's integration tests: the start method under test, deadlines that kill
//! children instead of hanging, and small process helpers.
//!
//! The suite runs once per start method: `MPROC_START_METHOD=fork|spawn|forkserver`.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use mproc::{Builder, ForkPermit, StartMethod};
use nix::errno::Errno;

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

/// Returns a manager builder for the method under test (with a fork permit for fork, as
/// [`builder`] has).
pub fn manager_builder() -> mproc::manager::Builder {
    let b = mproc::Manager::builder().start_method(method());
    if method() == StartMethod::Fork {
        // SAFETY: as in `builder`: the forked server runs only the manager's code.
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
    let (started, running) = std::sync::mpsc::channel();
    let watchdog = std::thread::spawn(move || {
        let _ = started.send(());
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
    // The body starts once the watchdog runs: a thread sets itself up (its signal stack, a
    // mapping) when it first runs, which a leak test's counts must not see half-way.
    let _ = running.recv();
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

/// Counts the zombie processes whose parent is `parent` and that stay zombies.
///
/// The tests of one binary run in parallel in one process, so a sibling test's child can be
/// a zombie for the moment between its exit and its reaping. A zombie that is left behind
/// stays one: this takes the zombies seen now and waits up to 5 s for them to be reaped,
/// returning how many were not.
pub fn zombies_of(parent: u32) -> usize {
    let zombies_now = || -> Vec<u32> {
        std::fs::read_dir("/proc")
            .map(|d| {
                d.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
                    .filter(|pid| proc_state(*pid).is_some_and(|(s, pp)| s == 'Z' && pp == parent))
                    .collect()
            })
            .unwrap_or_default()
    };
    let mut lasting = zombies_now();
    let t0 = Instant::now();
    while !lasting.is_empty() && t0.elapsed() < Duration::from_secs(5) {
        std::thread::sleep(Duration::from_millis(10));
        let now = zombies_now();
        lasting.retain(|pid| now.contains(pid));
    }
    lasting.len()
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

/// Returns a size for a load or leak test: `default` normally, or `full` (the size the
/// issue asks for) scaled by `MPROC_LOAD_SCALE` when that is set (`1` runs `full`, `0.1`
/// a tenth of it; `cargo xtask soak` sets `1`). Never less than `min`.
///
/// # Panics
///
/// When `MPROC_LOAD_SCALE` is set but is not a positive number.
pub fn load_size(default: usize, full: usize, min: usize) -> usize {
    let Some(scale) = std::env::var_os("MPROC_LOAD_SCALE") else {
        return default.max(min);
    };
    let scale: f64 = scale
        .to_str()
        .and_then(|s| s.trim().parse().ok())
        .filter(|s: &f64| s.is_finite() && *s > 0.0)
        .unwrap_or_else(|| panic!("MPROC_LOAD_SCALE must be a positive number, got {scale:?}"));
    ((full as f64 * scale).round() as usize).max(min)
}

/// What a process holds of the resources a leak would pile up, counted from `/proc`:
/// compare one taken before a run with one taken after.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Census {
    /// Open fds (`/proc/self/fd`).
    pub fds: usize,
    /// Mappings of files or shared memory (lines of `/proc/self/maps` with a path, or
    /// shared): private anonymous memory is the allocator's arenas and threads' stacks,
    /// which come and go with malloc's choices (threads are counted apart).
    pub mappings: usize,
    /// KiB mapped shared (`s` in the permissions: memfds, `/dev/shm` segments).
    pub shared_kib: u64,
    /// Entries in `/dev/shm` whose name starts with the prefix the census was taken for.
    pub shm_names: usize,
    /// Processes whose parent is this process, running or not.
    pub children: usize,
    /// Zombies among them, and among the children of this process's fork server.
    pub zombies: usize,
    /// Threads of this process (`/proc/self/task`).
    pub threads: usize,
}

impl Census {
    /// Counts this process's resources; `shm_prefix` selects the `/dev/shm` names that
    /// count (a test's own, so that other programs' segments do not disturb it).
    ///
    /// # Panics
    ///
    /// When `/proc` cannot be read.
    pub fn take(shm_prefix: &str) -> Census {
        let me = std::process::id();
        let maps = std::fs::read_to_string("/proc/self/maps").expect("/proc/self/maps");
        let shared_kib = maps
            .lines()
            .filter(|l| {
                l.split(' ')
                    .nth(1)
                    .is_some_and(|perms| perms.ends_with('s'))
            })
            .filter_map(|l| {
                let (start, end) = l.split(' ').next()?.split_once('-')?;
                let len =
                    u64::from_str_radix(end, 16).ok()? - u64::from_str_radix(start, 16).ok()?;
                Some(len / 1024)
            })
            .sum();
        let server = mproc::process::fork_server_pid();
        let kids = children_of(me);
        Census {
            fds: mproc_sys::open_fd_count().expect("/proc/self/fd"),
            mappings: maps.lines().filter(|l| maps_file_or_shared(l)).count(),
            shared_kib,
            shm_names: shm_names(shm_prefix).len(),
            children: kids.len(),
            zombies: kids.iter().filter(|(_, s)| *s == 'Z').count() + server.map_or(0, zombies_of),
            threads: std::fs::read_dir("/proc/self/task")
                .expect("/proc/self/task")
                .count(),
        }
    }

    /// Returns the census without what other tests' threads change when they run beside
    /// this one in the same process: the thread count. Mappings, fds, names and processes
    /// stay.
    pub fn ignoring_threads(&self) -> Census {
        Census {
            threads: 0,
            ..self.clone()
        }
    }

    /// Takes censuses until one equals `start` or `limit` passes, and returns the last:
    /// what a dying process gives back (its zombie reaped, a tracker's unlink) takes a
    /// moment after the call that caused it returns.
    pub fn settle(start: &Census, shm_prefix: &str, limit: Duration) -> Census {
        Census::settle_by(start, shm_prefix, limit, Census::clone)
    }

    /// Like [`settle`](Census::settle), comparing what `view` keeps of each census.
    pub fn settle_by(
        start: &Census,
        shm_prefix: &str,
        limit: Duration,
        view: impl Fn(&Census) -> Census,
    ) -> Census {
        let t0 = Instant::now();
        loop {
            let now = Census::take(shm_prefix);
            if view(&now) == view(start) || t0.elapsed() > limit {
                return now;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// Whether a line of `/proc/self/maps` maps a file or shared memory (a memfd, a segment).
fn maps_file_or_shared(line: &str) -> bool {
    let mut fields = line.split_whitespace();
    let shared = fields.nth(1).is_some_and(|perms| perms.ends_with('s'));
    let path = fields.nth(3);
    shared || path.is_some_and(|p| !p.starts_with('['))
}

/// The pids and state letters of the processes whose parent is `parent`.
pub fn children_of(parent: u32) -> Vec<(u32, char)> {
    std::fs::read_dir("/proc")
        .map(|d| {
            d.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
                .filter_map(|pid| match proc_state(pid) {
                    Some((s, pp)) if pp == parent => Some((pid, s)),
                    _ => None,
                })
                .collect()
        })
        .unwrap_or_default()
}

/// The names in `/dev/shm` that start with `prefix`.
pub fn shm_names(prefix: &str) -> Vec<String> {
    std::fs::read_dir("/dev/shm")
        .map(|d| {
            d.filter_map(|e| e.ok()?.file_name().into_string().ok())
                .filter(|n| n.starts_with(prefix))
                .collect()
        })
        .unwrap_or_default()
}

/// Whether `e` or one of its causes is the OS saying a process or the system has no fd
/// left (`EMFILE`, `ENFILE`).
pub fn caused_by_fd_exhaustion(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(c) = cause {
        if let Some(io) = c.downcast_ref::<std::io::Error>()
            && io
                .raw_os_error()
                .is_some_and(|n| n == Errno::EMFILE as i32 || n == Errno::ENFILE as i32)
        {
            return true;
        }
        cause = c.source();
    }
    false
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

    /// Makes one of each thing a census counts and returns what the census saw go up, in a
    /// child: other tests of this binary open and close fds and start children meanwhile.
    fn census_sees(prefix: String) -> Vec<String> {
        use super::Census;
        use std::time::{Duration, Instant};
        let mut seen = Vec::new();
        let before = Census::take(&prefix);
        let shm = mproc::SharedMemory::create_named(&format!("{prefix}-a"), 8192).unwrap();
        let with_shm = Census::take(&prefix);
        for (what, up) in [
            ("a name", with_shm.shm_names > before.shm_names),
            ("an fd", with_shm.fds > before.fds),
            ("a mapping", with_shm.mappings > before.mappings),
            (
                "shared memory",
                with_shm.shared_kib >= before.shared_kib + 8,
            ),
        ] {
            if up {
                seen.push(what.to_string());
            }
        }
        shm.unlink().unwrap();
        drop(shm);
        let mut exited = std::process::Command::new("true").spawn().unwrap();
        let start = Instant::now();
        while Census::take(&prefix).zombies == before.zombies
            && start.elapsed() < Duration::from_secs(30)
        {
            std::thread::sleep(Duration::from_millis(10));
        }
        if Census::take(&prefix).zombies > before.zombies {
            seen.push("a zombie".to_string());
        }
        exited.wait().unwrap();
        let worker = std::thread::spawn(|| std::thread::sleep(Duration::from_millis(300)));
        if Census::take(&prefix).threads > before.threads {
            seen.push("a thread".to_string());
        }
        worker.join().unwrap();
        seen
    }

    /// The census sees each kind of leak it is there to catch (the leak tests rely on it).
    #[test]
    fn a_census_sees_each_thing_it_counts() {
        super::deadline(std::time::Duration::from_secs(60), || {
            let prefix = format!("mproc-census-{}", std::process::id());
            let seen = super::builder().spawn(census_sees, prefix).unwrap().join();
            assert_eq!(
                seen.unwrap(),
                [
                    "a name",
                    "an fd",
                    "a mapping",
                    "shared memory",
                    "a zombie",
                    "a thread"
                ]
            );
        });
    }

    #[test]
    fn proc_state_reads_our_own_entry() {
        let (state, ppid) = super::proc_state(std::process::id()).unwrap();
        assert!(matches!(state, 'R' | 'S'), "{state}");
        assert_eq!(ppid, std::os::unix::process::parent_id());
    }
}
