//! Helper binary for the integration tests: small programs whose behaviour a test watches
//! from outside (stdout, a SIGKILL from the test, a replaced executable).
//!
//! `mproc-helper <mode>`; the start method comes from `MPROC_START_METHOD`.

use std::io::{BufRead, Write};
use std::time::Duration;

fn sleep_secs(s: u64) -> u64 {
    std::thread::sleep(Duration::from_secs(s));
    s
}

fn print_then_return(text: String) -> usize {
    // No newline, no flush: mproc must not lose it when the child exits.
    print!("{text}");
    eprint!("{text}-on-stderr");
    text.len()
}

fn nap_pid(ms: u64) -> u32 {
    std::thread::sleep(Duration::from_millis(ms));
    std::process::id()
}

fn square(x: u64) -> u64 {
    x * x
}

/// Naps `ms`, then leaves a file at `path`.
fn nap_then_touch((ms, path): (u64, String)) {
    std::thread::sleep(Duration::from_millis(ms));
    std::fs::write(path, b"done").expect("marker");
}

/// Waits for the parent to end, then leaves a file at `path`.
fn touch_after_parent(path: String) {
    let parent = mproc::parent_process().expect("a parent");
    parent.join();
    assert!(!parent.is_alive());
    std::fs::write(path, b"done").expect("marker");
}

/// The pids of this (single-threaded) process's children.
fn our_children() -> Vec<u32> {
    let me = std::process::id();
    std::fs::read_to_string(format!("/proc/{me}/task/{me}/children"))
        .unwrap_or_default()
        .split_whitespace()
        .filter_map(|p| p.parse().ok())
        .collect()
}

/// What a child sees of its environment and working directory.
fn env_and_cwd(_: ()) -> String {
    let var = |k: &str| std::env::var(k).unwrap_or_else(|_| "unset".into());
    let cwd = std::env::current_dir().map(|d| d.display().to_string());
    format!(
        "K={} GONE={} cwd={}",
        var("MPROC_HELPER_K"),
        var("MPROC_HELPER_GONE"),
        cwd.unwrap_or_else(|e| e.to_string())
    )
}

/// Reads standard input to its end: returns at once when it is /dev/null.
fn read_stdin(_: ()) -> usize {
    let mut s = Vec::new();
    std::io::Read::read_to_end(&mut std::io::stdin(), &mut s).unwrap_or(0)
}

/// `manager-remote ADDRESS KEY`: a separately started program that reaches a manager
/// served on TCP, prints what each call gave (one line each), and exits holding the
/// published lock (the server must release it).
fn manager_remote() {
    use mproc::manager::{Dict, List, Lock, Manager, Queue};
    let args: Vec<String> = std::env::args().collect();
    let (address, key) = (&args[2], args[3].as_bytes());
    let kind = |e: mproc::manager::Error| e.kind();
    let wrong = Manager::connect(address, b"not the key")
        .map(drop)
        .map_err(kind);
    println!("wrong-key {wrong:?}");
    let manager = Manager::connect(address, key).expect("connect");
    let numbers = manager.lookup::<List<u32>>("numbers").expect("numbers");
    for i in 0..100 {
        numbers.push(i).expect("push");
    }
    let hits = manager.lookup::<Dict<String, u64>>("hits").expect("hits");
    let n = hits
        .update(&"remote".to_string(), |n| n.unwrap_or(0) + 1)
        .expect("update");
    println!("hits {n}");
    let jobs = manager.lookup::<Queue<u64>>("jobs").expect("jobs");
    let squares = manager
        .lookup::<Dict<u64, u64>>("squares")
        .expect("squares");
    let mut done = 0;
    while let Some(job) = jobs.try_get().expect("try_get") {
        squares.insert(job, job * job).expect("insert");
        done += 1;
    }
    println!("jobs {done}");
    let wrong_type = manager
        .lookup::<List<String>>("numbers")
        .map(drop)
        .map_err(kind);
    println!("wrong-type {wrong_type:?}");
    let unknown = manager
        .lookup::<List<u32>>("nothing here")
        .map(drop)
        .map_err(kind);
    println!("unknown {unknown:?}");
    println!("shutdown {:?}", manager.shutdown().map_err(kind));
    let lock = manager.lookup::<Lock>("lock").expect("lock");
    lock.acquire().expect("acquire");
    println!("holding the lock");
    std::io::stdout().flush().unwrap();
    // Exit without releasing it.
}

/// `manager-fork-then-die ADDRESS KEY`: holds the published lock, waits in a `get` of the
/// published queue in a thread, forks a child that never uses the manager, reports the
/// child's pid, and waits to be SIGKILLed (the child lives on: it is not daemonic).
fn manager_fork_then_die() {
    use mproc::manager::{Lock, Manager, Queue};
    let args: Vec<String> = std::env::args().collect();
    let manager = Manager::connect(&args[2], args[3].as_bytes()).expect("connect");
    let lock = manager.lookup::<Lock>("lock").expect("lock");
    let q = manager.lookup::<Queue<u32>>("queue").expect("queue");
    lock.acquire().expect("acquire");
    std::thread::spawn(move || q.get());
    std::thread::sleep(Duration::from_millis(300));
    // SAFETY: the other thread waits in a manager call, holding none of mproc's locks.
    let permit = unsafe { mproc::ForkPermit::other_threads_are_idle() };
    let child = mproc::Builder::new()
        .start_method(mproc::StartMethod::Fork)
        .fork_permit(permit)
        .spawn(sleep_secs, 60)
        .expect("spawn");
    println!("child {}", child.pid());
    std::io::stdout().flush().unwrap();
    std::thread::sleep(Duration::from_secs(60));
}

fn double_it(x: u64) -> u64 {
    x * 2
}

fn main() {
    let mode = std::env::args().nth(1).unwrap_or_default();
    if mode == "pool-no-init" {
        // Deliberately no mproc::init(): building a pool must fail with a clear error,
        // and return.
        match mproc::Pool::new(2) {
            Ok(_) => println!("unexpected: a pool without init"),
            Err(e) => println!("pool error: {e}"),
        }
        return;
    }
    if mode == "no-init" {
        // Deliberately no mproc::init(): spawning must fail with a clear error.
        match mproc::spawn(square, 3) {
            Ok(_) => println!("unexpected: spawned without init"),
            Err(e) => println!("error: {e}"),
        }
        return;
    }
    mproc::init();
    match mode.as_str() {
        "daemon-parent" => {
            // Start a daemonic child that would sleep for a minute, report its pid, and
            // wait to be SIGKILLed by the test.
            let child = mproc::Builder::new()
                .daemon(true)
                .spawn(sleep_secs, 60)
                .expect("spawn");
            println!("child {}", child.pid());
            std::io::stdout().flush().unwrap();
            std::thread::sleep(Duration::from_secs(60));
        }
        "pool-parent" => {
            // Start a pool, report its two workers' pids, and wait to be SIGKILLed.
            let mut builder = mproc::pool::Builder::new().processes(2);
            if std::env::var("MPROC_START_METHOD").as_deref() == Ok("fork") {
                builder = builder.start_method(mproc::StartMethod::Fork);
            }
            let pool = builder.build().expect("pool");
            let naps: Vec<_> = (0..2)
                .map(|_| pool.apply_async(nap_pid, 300).expect("apply_async"))
                .collect();
            let pids: Vec<String> = naps
                .iter()
                .map(|r| r.get().expect("pid").to_string())
                .collect();
            println!("workers {}", pids.join(" "));
            std::io::stdout().flush().unwrap();
            std::thread::sleep(Duration::from_secs(60));
        }
        "print-before-return" => {
            let mut child =
                mproc::spawn(print_then_return, "printed-by-child".to_string()).expect("spawn");
            let n = child.join().expect("join");
            println!("\njoined {n}");
        }
        "flush-before-fork" => {
            // Text still in our stdout buffer when the child is forked must not come out
            // twice (once from the child's copy of the buffer).
            print!("buffered-before-fork ");
            let mut child = mproc::Builder::new()
                .start_method(mproc::StartMethod::Fork)
                .spawn(square, 5)
                .expect("spawn");
            let v = child.join().expect("join");
            println!("joined {v}");
        }
        "child-reads-stdin" => {
            // Our stdin is a pipe nobody writes to: a child that inherited it would block.
            let r = mproc::spawn(read_stdin, ()).and_then(|mut c| c.join());
            println!("child read {r:?}");
        }
        "spawn-on-line" => {
            // Wait for a line on stdin (the test replaces our executable meanwhile), then spawn.
            let mut line = String::new();
            std::io::stdin().lock().read_line(&mut line).unwrap();
            let r = mproc::spawn(square, 12).and_then(|mut c| c.join());
            println!("result {r:?}");
        }
        "manager-owner" => {
            // Start a manager (its server is our daemonic child), report the server's pid,
            // and wait to be SIGKILLed by the test.
            let manager = mproc::Manager::start().expect("manager");
            let list = manager.list::<u32>().expect("list");
            list.push(1).expect("push");
            println!("server {}", manager.pid().expect("the owner knows the pid"));
            std::io::stdout().flush().unwrap();
            std::thread::sleep(Duration::from_secs(60));
        }
        "env-cwd" => {
            // A first child (under forkserver, it starts the fork server); then this process
            // changes its environment and working directory; a second child must see the
            // change, under every start method, and a third the Builder's override on top.
            let see = |b: mproc::Builder| b.spawn(env_and_cwd, ()).and_then(|mut c| c.join());
            println!("first {}", see(mproc::Builder::new()).expect("first"));
            let set = |k: &str, v: Option<&str>| {
                let v = v.map(std::ffi::OsStr::new);
                mproc_sys::set_env_var(std::ffi::OsStr::new(k), v).expect("set_env_var")
            };
            set("MPROC_HELPER_K", Some("v"));
            set("MPROC_HELPER_GONE", None);
            let dir = std::env::temp_dir().canonicalize().expect("temp dir");
            std::env::set_current_dir(&dir).expect("chdir");
            println!("dir {}", dir.display());
            println!("second {}", see(mproc::Builder::new()).expect("second"));
            let over = mproc::Builder::new().env("MPROC_HELPER_K", "override");
            println!("third {}", see(over).expect("third"));
        }
        "log-child" => {
            // Python's `log_to_stderr(logging.DEBUG)`: env_logger, then a child.
            env_logger::Builder::from_env(env_logger::Env::default()).init();
            let mut child = mproc::spawn(double_it, 21).expect("spawn");
            println!("result {}", child.join().expect("join"));
        }
        "exit-joins" => {
            // Three children, then `main` returns at once: the exit waits for the plain
            // one, terminates the daemonic one, and leaves the one that may outlive us.
            let marker = std::env::args().nth(2).expect("a marker prefix");
            let joined = (1500, format!("{marker}.joined"));
            let _ = mproc::spawn(nap_then_touch, joined).expect("spawn");
            let daemonic = (200, format!("{marker}.daemon"));
            let _ = mproc::Builder::new()
                .daemon(true)
                .spawn(nap_then_touch, daemonic)
                .expect("spawn");
            let _ = mproc::Builder::new()
                .join_at_exit(false)
                .spawn(touch_after_parent, format!("{marker}.outlived"))
                .expect("spawn");
            println!("started");
        }
        "tracker-kills" => {
            // Named segments, created while their tracker (our only child) is SIGKILLed
            // again and again at varying moments: each must still be tracked, which the
            // test checks by SIGKILLing us and waiting for every name to be unlinked.
            let tag = std::env::args().nth(2).expect("a name tag");
            let mut segments = Vec::new();
            for i in 0..24u64 {
                // From the first segment on, a tracker runs: kill it, then wait 0 to 60 µs
                // (the last time not at all) and register the next name.
                let tracker = our_children();
                assert!(i == 0 || !tracker.is_empty(), "no tracker found to kill");
                for pid in tracker {
                    let _ = mproc_sys::kill_pid(pid, mproc_sys::SIGKILL);
                }
                let delay = if i == 23 { 0 } else { (i % 4) * 20 };
                if delay > 0 {
                    std::thread::sleep(Duration::from_micros(delay));
                }
                let name = format!("{tag}-{i}");
                segments.push(mproc::SharedMemory::create_named(&name, 4096).expect("create"));
                println!("{name}");
            }
            println!("done");
            std::io::stdout().flush().unwrap();
            std::thread::sleep(Duration::from_secs(60));
        }
        "first-segment-tracker" => {
            // Creates this process's first named segment while a thread watches for its
            // name to appear in /dev/shm, and reports how many children (trackers) this
            // process had at that moment: a name that exists before its tracker runs is
            // leaked if we are killed meanwhile. 64 MiB, so that reserving its pages (before
            // the registration) takes a while.
            let name = std::env::args().nth(2).expect("a name");
            let path = format!("/dev/shm/{name}");
            let watcher = std::thread::spawn(move || {
                while std::fs::metadata(&path).is_err() {
                    std::hint::spin_loop();
                }
                our_children().len()
            });
            std::thread::sleep(Duration::from_millis(50));
            let segment = mproc::SharedMemory::create_named(&name, 64 << 20).expect("create");
            println!(
                "trackers-when-it-appeared {}",
                watcher.join().expect("watcher")
            );
            segment.unlink().expect("unlink");
        }
        "tracker-killed-while-registering" => {
            // 50 named segments with a first tracker; then a thread kills that tracker
            // and, as soon as it appears, the one started to replace it (while the 50
            // names are registered with it again); then two more segments. Every name
            // printed was created and must stay tracked: the test SIGKILLs us and waits
            // for each to be unlinked.
            let tag = std::env::args().nth(2).expect("a name tag");
            let create = |i: u32| {
                let name = format!("{tag}-{i}");
                match mproc::SharedMemory::create_named(&name, 4096) {
                    Ok(s) => {
                        println!("{name}");
                        Some(s)
                    }
                    Err(e) => {
                        eprintln!("{name}: {e}");
                        None
                    }
                }
            };
            let mut segments: Vec<_> = (0..50).map(create).collect();
            let killed = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
            let killer = {
                let killed = killed.clone();
                std::thread::spawn(move || {
                    let mut seen = std::collections::HashSet::new();
                    while seen.len() < 2 {
                        for pid in our_children() {
                            if seen.insert(pid) {
                                let _ = mproc_sys::kill_pid(pid, mproc_sys::SIGKILL);
                                killed.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                            }
                        }
                    }
                })
            };
            while killed.load(std::sync::atomic::Ordering::SeqCst) == 0 {
                std::thread::yield_now();
            }
            segments.push(create(50));
            killer.join().expect("killer");
            segments.push(create(51));
            println!("done");
            std::io::stdout().flush().unwrap();
            std::thread::sleep(Duration::from_secs(60));
        }
        "manager-remote" => manager_remote(),
        "manager-fork-then-die" => manager_fork_then_die(),
        other => {
            eprintln!("unknown mode {other:?}");
            std::process::exit(2);
        }
    }
}
