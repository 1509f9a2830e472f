//! The MPI pool under `mpiexec -n 3`: this binary is both the harness (run by `cargo test`,
//! it starts `mpiexec -n 3 <itself>` once per scenario, under a deadline that kills the
//! whole job's process group) and the program the ranks run (`MPROC_MPI_SCENARIO` set).
//! Without `mpiexec` on the PATH it says so and runs nothing.

use std::cell::Cell;
use std::ffi::OsString;
use std::future::Future;
use std::io::Read;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::{Arc, mpsc};
use std::task::{Context, Poll, Wake, Waker};
use std::time::{Duration, Instant};

use mproc_mpi::MpiPool;
use mproc_pool::{Callbacks, ErrorKind, ReturnWhen, TaskPool};

const SCENARIO: &str = "MPROC_MPI_SCENARIO";
const LIMIT: Duration = Duration::from_secs(120);

fn square(x: u64) -> u64 {
    x * x
}
fn boom(x: u32) -> u32 {
    assert!(x != 1, "one is not allowed");
    x
}
fn abort(_: ()) {
    std::process::abort()
}
fn sleep_ms(ms: u64) -> u64 {
    std::thread::sleep(Duration::from_millis(ms));
    ms
}
fn add(a: u32, b: u32) -> u32 {
    a + b
}
/// A real SIGSEGV: raised until it ends the process (Rust's runtime handles the first one
/// of a thread that has its stack-overflow handler: it restores the default and returns).
/// The same helper as `tests/tests/executor.rs`'s.
fn segfault(_: ()) -> u32 {
    loop {
        let _ = mproc_sys::kill_pid(std::process::id(), 11);
        std::thread::sleep(Duration::from_millis(5));
    }
}
/// The pid of the local worker that runs the task, and of its parent.
fn whoami(_: ()) -> (u32, u32) {
    (std::process::id(), std::os::unix::process::parent_id())
}

/// One function over any pool: the harness runs it on a local `Pool`, the `generic`
/// scenario on an `MpiPool`, unchanged. Returns the sum of squares below 200.
fn exercise(pool: &impl TaskPool) -> u64 {
    let n = 200u64;
    let squares: Vec<u64> = (0..n).map(square).collect();
    assert_eq!(pool.map(square, 0..n).unwrap(), squares);
    assert_eq!(pool.map_chunked(square, 0..n, 7).unwrap(), squares);
    assert_eq!(
        pool.map_async(square, 0..n).unwrap().get().unwrap(),
        squares
    );
    assert_eq!(pool.apply(square, 12).unwrap(), 144);
    assert_eq!(pool.apply_async(square, 5).unwrap().get().unwrap(), 25);
    assert_eq!(pool.starmap(add, [(1, 2), (3, 4)]).unwrap(), [3, 7]);
    let ordered: Vec<u64> = pool.imap(square, 0..n).map(Result::unwrap).collect();
    assert_eq!(ordered, squares);
    let mut unordered: Vec<u64> = pool
        .imap_unordered(square, 0..n)
        .map(Result::unwrap)
        .collect();
    unordered.sort();
    assert_eq!(unordered, squares);
    let tasks: Vec<_> = (0..10).map(|x| pool.submit(square, x).unwrap()).collect();
    let waited = mproc_pool::wait(&tasks, Some(LIMIT), ReturnWhen::AllCompleted);
    assert_eq!((waited.done.len(), waited.not_done.len()), (10, 0));
    let mut completed: Vec<u64> = mproc_pool::as_completed(&tasks, Some(LIMIT))
        .map(|t| t.unwrap().result().unwrap())
        .collect();
    completed.sort();
    assert_eq!(completed, squares[..10]);
    let e = pool.apply(boom, 1).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Panicked);
    assert!(pool.processes() >= 1);
    pool.close();
    pool.join_timeout(LIMIT).unwrap();
    assert_eq!(pool.apply(square, 1).unwrap_err().kind(), ErrorKind::Closed);
    squares.iter().sum()
}

/// Polls `f` on this thread, parking between polls: an executor of a few lines, to show an
/// `MpiPool`'s results need no runtime (its relay thread wakes the waker).
fn block_on<F: Future>(f: F) -> F::Output {
    struct Unpark(std::thread::Thread);
    impl Wake for Unpark {
        fn wake(self: Arc<Self>) {
            self.0.unpark();
        }
    }
    let mut f = std::pin::pin!(f);
    let waker = Waker::from(Arc::new(Unpark(std::thread::current())));
    let mut cx = Context::from_waker(&waker);
    loop {
        if let Poll::Ready(v) = f.as_mut().poll(&mut cx) {
            return v;
        }
        std::thread::park();
    }
}

fn main() {
    mproc_process::init();
    match std::env::var(SCENARIO) {
        Ok(name) => scenario(&name),
        Err(_) => harness(),
    }
}

// ---- the program of the ranks -------------------------------------------------------------

fn scenario(name: &str) {
    // Code before init runs on every rank: each rank notes its pid for the kill scenario.
    if let (Ok(dir), Ok(rank)) = (std::env::var("MPROC_MPI_DIR"), std::env::var("PMI_RANK")) {
        let _ = std::fs::write(format!("{dir}/rank-{rank}"), std::process::id().to_string());
    }
    if name == "mismatch" {
        // Rank 2 runs a copy whose build-id differs: rank 0 gets the typed error.
        let e = mproc_mpi::init().unwrap_err();
        assert_eq!(e.kind(), mproc_mpi::ErrorKind::BuildMismatch, "{e}");
        println!("MISMATCH rank={:?} host={:?} ({e})", e.rank(), e.host());
        println!("SCENARIO_OK {name}");
        return;
    }
    let mpi = mproc_mpi::init().expect("init");
    let pool = || {
        MpiPool::builder()
            .task_timeout(Duration::from_secs(3))
            .build(&mpi)
            .expect("pool")
    };
    match name {
        "map" => {
            let pool = pool();
            let n = 100_000u64;
            let out = pool.map_chunked(square, 0..n, 1000).unwrap();
            assert_eq!(out, (0..n).map(square).collect::<Vec<_>>());
            let out = pool.map(square, 0..1000).unwrap();
            assert_eq!(out[999], 999 * 999);
            assert_eq!(pool.starmap(add, [(1, 2), (3, 4)]).unwrap(), [3, 7]);
            // Awaited: the results come back through the relay, which wakes the futures.
            let (one, many, task, failed) = block_on(async {
                (
                    pool.apply_async(square, 9).unwrap().await.unwrap(),
                    pool.map_async(square, 0..100).unwrap().await.unwrap(),
                    pool.submit(square, 3).unwrap().await.unwrap(),
                    pool.map_async(boom, 0..4).unwrap().await.unwrap_err(),
                )
            });
            assert_eq!((one, task), (81, 9));
            assert_eq!(many, (0..100).map(square).collect::<Vec<_>>());
            assert_eq!(
                (failed.kind(), failed.index()),
                (ErrorKind::Panicked, Some(1))
            );
            pool.close();
            pool.join_timeout(LIMIT).unwrap();
        }
        "callbacks" => {
            let pool = pool();
            let (tx, rx) = mpsc::channel();
            let tx2 = tx.clone();
            let ok = Callbacks::new().on_success(move |v: &u32| tx.send(Ok(*v)).unwrap());
            let bad = Callbacks::new()
                .on_error(move |e: &mproc_pool::Error| tx2.send(Err(e.kind())).unwrap());
            let a = pool.apply_async_with(boom, 7, ok).unwrap();
            let b = pool.apply_async_with(boom, 1, bad).unwrap();
            assert_eq!(a.get_timeout(LIMIT).unwrap(), 7);
            assert_eq!(
                b.get_timeout(LIMIT).unwrap_err().kind(),
                ErrorKind::Panicked
            );
            let mut got = vec![
                rx.recv_timeout(LIMIT).unwrap(),
                rx.recv_timeout(LIMIT).unwrap(),
            ];
            got.sort_by_key(|r| r.is_err());
            assert_eq!(got, [Ok(7), Err(ErrorKind::Panicked)]);
            // Callbacks run on the MPI thread: a join there fails at once instead of
            // waiting for that thread, a terminate there returns at once and the work
            // still outstanding fails once the callback has returned.
            let pool = std::sync::Arc::new(pool);
            let (tx, rx) = mpsc::channel();
            let own = pool.clone();
            let stop = Callbacks::new().on_success(move |_: &u32| {
                own.close();
                let joined = own.join().map_err(|e| e.kind());
                own.terminate();
                tx.send(joined).unwrap();
            });
            let slow = pool.apply_async(sleep_ms, 60_000).unwrap();
            pool.apply_async_with(boom, 3, stop).unwrap();
            assert_eq!(
                rx.recv_timeout(LIMIT).unwrap(),
                Err(ErrorKind::InvalidState)
            );
            assert_eq!(
                slow.get_timeout(LIMIT).unwrap_err().kind(),
                ErrorKind::Terminated
            );
            pool.join_timeout(LIMIT).unwrap();
        }
        "failures" => {
            let pool = pool();
            // A panic fails its item, with the message and index.
            let e = pool.map_chunked(boom, 0..4, 1).unwrap_err();
            assert_eq!((e.kind(), e.index()), (ErrorKind::Panicked, Some(1)));
            assert!(e.panic_message().unwrap().contains("one is not allowed"));
            // An abort kills the local worker: the task fails alone, the rank serves on.
            let e = pool.apply(abort, ()).unwrap_err();
            assert_eq!(e.kind(), ErrorKind::WorkerDied, "{e}");
            assert_eq!(e.exit_status(), Some(mproc_sys::ExitStatus::Signal(6)));
            // A real segfault kills the local worker alone too.
            let e = pool.apply(segfault, ()).unwrap_err();
            assert_eq!(e.kind(), ErrorKind::WorkerDied, "{e}");
            assert_eq!(e.exit_status(), Some(mproc_sys::ExitStatus::Signal(11)));
            // Past the task timeout.
            let e = pool.apply(sleep_ms, 60_000).unwrap_err();
            assert_eq!(e.kind(), ErrorKind::Timeout, "{e}");
            // And the ranks serve on.
            assert_eq!(pool.map(square, 0..10).unwrap()[9], 81);
        }
        "imap" => {
            let pool = pool();
            // An endless input: only a bounded window beyond what is taken is read.
            let pulled = Cell::new(0usize);
            let endless = (0u64..).inspect(|_| pulled.set(pulled.get() + 1));
            let firsts: Vec<u64> = pool
                .imap(square, endless)
                .take(50)
                .map(Result::unwrap)
                .collect();
            assert_eq!(firsts, (0..50).map(square).collect::<Vec<_>>());
            // The window: 32 chunks per local worker process.
            let window = 32 * pool.processes();
            assert!(pulled.get() <= 50 + window, "read {} items", pulled.get());
            let pulled = Cell::new(0usize);
            let endless = (0u64..).inspect(|_| pulled.set(pulled.get() + 1));
            let many: u64 = pool
                .imap_chunked(square, endless, 10)
                .take(2000)
                .map(Result::unwrap)
                .sum();
            assert_eq!(many, (0..2000).map(square).sum::<u64>());
            assert!(
                pulled.get() <= 2000 + 10 * window,
                "read {} items",
                pulled.get()
            );
            // An item's error is yielded with its index, and the iteration goes on.
            let got: Vec<_> = pool
                .imap(boom, 0..4)
                .map(|r| r.map_err(|e| (e.kind(), e.index())))
                .collect();
            assert_eq!(
                got,
                [Ok(0), Err((ErrorKind::Panicked, Some(1))), Ok(2), Ok(3)]
            );
            // A result not there in time is a Timeout; the iterator can be used again.
            let mut slow = pool.imap(sleep_ms, [500]);
            let early = slow.next_timeout(Duration::from_millis(1)).unwrap();
            assert_eq!(early.unwrap_err().kind(), ErrorKind::Timeout);
            assert_eq!(slow.next_timeout(LIMIT).unwrap().unwrap(), 500);
            assert!(slow.next().is_none());
        }
        "imap_unordered" => {
            let pool = pool();
            let n = 5000u64;
            let mut got: Vec<u64> = pool
                .imap_unordered_chunked(square, 0..n, 16)
                .map(Result::unwrap)
                .collect();
            got.sort();
            assert_eq!(got, (0..n).map(square).collect::<Vec<_>>());
            let (ok, failed): (Vec<_>, Vec<_>) =
                pool.imap_unordered(boom, 0..20).partition(Result::is_ok);
            let mut ok: Vec<u32> = ok.into_iter().map(Result::unwrap).collect();
            ok.sort();
            assert_eq!(ok, (0..20).filter(|x| *x != 1).collect::<Vec<_>>());
            let failed: Vec<_> = failed.into_iter().map(|r| r.unwrap_err().index()).collect();
            assert_eq!(failed, [Some(1)]);
        }
        "executor" => {
            // No task timeout: the naps below outlive it.
            let pool = MpiPool::new(&mpi).unwrap();
            let tasks: Vec<_> = (0..20).map(|x| pool.submit(square, x).unwrap()).collect();
            let first = mproc_pool::wait(&tasks, Some(LIMIT), ReturnWhen::FirstCompleted);
            assert!(!first.done.is_empty());
            let sum: u64 = mproc_pool::as_completed(&tasks, Some(LIMIT))
                .map(|t| t.unwrap().result().unwrap())
                .sum();
            assert_eq!(sum, (0..20).map(square).sum::<u64>());
            // A worker rank holds at most 8 tasks per local process (2 ranks, 1 process
            // each: 16): the naps past the sixteenth wait on rank 0, where they can be
            // cancelled; a task sent to a rank cannot.
            let naps: Vec<_> = (0..20)
                .map(|_| pool.submit(sleep_ms, 60_000).unwrap())
                .collect();
            assert!(naps[19].cancel());
            assert_eq!(naps[19].result().unwrap_err().kind(), ErrorKind::Cancelled);
            let deadline = Instant::now() + LIMIT;
            while !naps[0].running() {
                assert!(Instant::now() < deadline, "the first task was never sent");
                std::thread::sleep(Duration::from_millis(5));
            }
            assert!(!naps[0].cancel());
            // shutdown(cancel_futures) cancels what still waits on rank 0, at once.
            pool.shutdown(false, true).unwrap();
            for nap in &naps[16..19] {
                assert_eq!(nap.result().unwrap_err().kind(), ErrorKind::Cancelled);
            }
            let e = pool.submit(square, 1).unwrap_err();
            assert_eq!(e.kind(), ErrorKind::Closed);
            pool.terminate();
            assert_eq!(naps[0].result().unwrap_err().kind(), ErrorKind::Terminated);
            // shutdown(wait) lets submitted tasks finish.
            let pool = MpiPool::new(&mpi).unwrap();
            let task = pool.submit(square, 5).unwrap();
            pool.shutdown(true, false).unwrap();
            assert_eq!(task.result().unwrap(), 25);
        }
        "generic" => {
            let pool = pool();
            assert_eq!(pool.processes(), 2, "two worker ranks of one process each");
            assert_eq!(exercise(&pool), (0..200).map(square).sum::<u64>());
        }
        "method" => {
            // Which start method the worker ranks' local pools use: under spawn a local
            // worker is a child of its rank; under forkserver (and fork, which falls back
            // to it after MPI init) a child of the fork server started before MPI.
            let pool = MpiPool::builder()
                .processes_per_rank(2)
                .build(&mpi)
                .unwrap();
            assert_eq!(pool.processes(), 4);
            let dir = std::env::var("MPROC_MPI_DIR").unwrap();
            let rank_pid = |r: u32| -> u32 {
                std::fs::read_to_string(format!("{dir}/rank-{r}"))
                    .unwrap()
                    .parse()
                    .unwrap()
            };
            let ranks = [rank_pid(1), rank_pid(2)];
            let parents: Vec<bool> = pool
                .map_chunked(whoami, vec![(); 40], 1)
                .unwrap()
                .into_iter()
                .map(|(pid, ppid)| {
                    assert!(!ranks.contains(&pid), "a task ran in a rank itself");
                    ranks.contains(&ppid)
                })
                .collect();
            let method = std::env::var("MPROC_START_METHOD").unwrap_or_default();
            let spawned = method == "spawn";
            assert!(
                parents.iter().all(|p| *p == spawned),
                "method {method}: child of its rank: {parents:?}"
            );
            println!("METHOD {method}: local workers are children of their rank: {spawned}");
        }
        "dropped_mpi" => {
            // `Mpi` dropped while another thread keeps handing the pool work: every call
            // made meanwhile gets its answer (its result, or `Terminated`), none hangs.
            let pool = std::sync::Arc::new(pool());
            let user = {
                let pool = pool.clone();
                std::thread::spawn(move || {
                    let (mut answered, mut terminated) = (0u32, 0u32);
                    for x in 0.. {
                        let outcome = pool
                            .apply_async(square, x)
                            .and_then(|r| r.get_timeout(Duration::from_secs(30)));
                        match outcome {
                            Ok(y) => {
                                assert_eq!(y, x * x);
                                answered += 1;
                            }
                            Err(e) => {
                                assert!(
                                    matches!(
                                        e.kind(),
                                        mproc_pool::ErrorKind::Terminated
                                            | mproc_pool::ErrorKind::Closed
                                    ),
                                    "call {x} after the drop: {e:?}"
                                );
                                terminated += 1;
                                if terminated == 20 {
                                    return answered;
                                }
                            }
                        }
                    }
                    unreachable!()
                })
            };
            std::thread::sleep(Duration::from_millis(200));
            drop(mpi);
            let answered = user.join().expect("the user thread");
            assert!(answered > 0, "no call was answered before the drop");
            println!("DROPPED_MPI {answered} answered before the drop, then Terminated");
        }
        "fork_refused" => {
            fn nothing(_: ()) {}
            let e = mproc_process::Builder::new()
                .start_method(mproc_process::StartMethod::Fork)
                .spawn(nothing, ())
                .unwrap_err();
            assert_eq!(e.kind(), mproc_process::ErrorKind::ForkRefused);
            assert!(e.to_string().contains("MPI"), "{e}");
        }
        "kill_worker" => {
            let pool = pool();
            let _running = pool.apply_async(sleep_ms, 2_000).unwrap();
            std::thread::sleep(Duration::from_millis(300));
            let dir = std::env::var("MPROC_MPI_DIR").unwrap();
            let pid: i32 = std::fs::read_to_string(format!("{dir}/rank-1"))
                .unwrap()
                .parse()
                .unwrap();
            nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGKILL,
            )
            .unwrap();
            // MPI's launcher ends the job (rank 0 included); wait for it without end.
            loop {
                std::thread::sleep(Duration::from_secs(1));
            }
        }
        "kill_root" => {
            let _pool = pool();
            // Rank 0 dies while the worker ranks wait for work: the launcher ends them.
            nix::sys::signal::raise(nix::sys::signal::Signal::SIGKILL).unwrap();
        }
        "idle" => {
            let _pool = pool();
            let before = cpu_ticks();
            std::thread::sleep(Duration::from_secs(1));
            println!("IDLE_CPU_TICKS {}", cpu_ticks() - before);
        }
        other => panic!("no scenario {other}"),
    }
    println!("SCENARIO_OK {name}");
}

/// This process's user + system CPU time, in clock ticks (/proc/self/stat).
fn cpu_ticks() -> u64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap();
    let after = &stat[stat.rfind(')').unwrap() + 2..];
    let fields: Vec<&str> = after.split_whitespace().collect();
    fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap()
}

// ---- the harness ---------------------------------------------------------------------------

/// Runs `mpiexec -n 3` on a scenario under the start method `method` (the worker ranks'
/// local pools use it); returns (exit code or None on a signal, stdout, time).
fn run(name: &str, method: &str) -> (Option<i32>, String, Duration) {
    let exe = std::env::current_exe().unwrap();
    run_job(name, method, &["-n".into(), "3".into(), exe.into()])
}

/// Runs `mpiexec <args>` on a scenario, under a deadline that kills the job's process
/// group, and checks that no process of the job is left.
fn run_job(name: &str, method: &str, args: &[OsString]) -> (Option<i32>, String, Duration) {
    let dir =
        std::env::temp_dir().join(format!("mproc-mpi-{}-{name}-{method}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let start = Instant::now();
    let mut child = Command::new("mpiexec")
        .args(args)
        .env(SCENARIO, name)
        .env("MPROC_MPI_DIR", &dir)
        .env("MPROC_START_METHOD", method)
        .stdout(Stdio::piped())
        .process_group(0)
        .spawn()
        .expect("mpiexec");
    let pgid = nix::unistd::Pid::from_raw(child.id() as i32);
    let mut out = String::new();
    let mut stdout = child.stdout.take().unwrap();
    let reader = std::thread::spawn(move || {
        let _ = stdout.read_to_string(&mut out);
        out
    });
    let status = loop {
        if let Some(st) = child.try_wait().unwrap() {
            break st;
        }
        if start.elapsed() > LIMIT {
            let _ = nix::sys::signal::killpg(pgid, nix::sys::signal::Signal::SIGKILL);
            let _ = child.wait();
            panic!("scenario {name}: the MPI job passed its deadline and was killed");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let took = start.elapsed();
    let out = reader.join().unwrap();
    // No process of the job may be left: its process group is empty.
    let deadline = Instant::now() + Duration::from_secs(10);
    while nix::sys::signal::killpg(pgid, None).is_ok() {
        if Instant::now() > deadline {
            let _ = nix::sys::signal::killpg(pgid, nix::sys::signal::Signal::SIGKILL);
            panic!("scenario {name}: processes of the job were left behind");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = std::fs::remove_dir_all(&dir);
    (status.code(), out, took)
}

/// Copies this binary to `dir` with one byte of its ELF build-id note changed: another
/// build as far as the ranks' check can tell (the code is the same, so it still runs).
fn other_build(dir: &Path) -> std::path::PathBuf {
    let mut bytes = std::fs::read(std::env::current_exe().unwrap()).unwrap();
    // The note's header: name size 4, descriptor size 20 (SHA-1), NT_GNU_BUILD_ID, "GNU\0".
    let header: Vec<u8> = [4u32, 20, 3]
        .iter()
        .flat_map(|n| n.to_le_bytes())
        .chain(*b"GNU\0")
        .collect();
    let at = bytes
        .windows(header.len())
        .position(|w| w == header.as_slice())
        .expect("the test binary has a 20-byte GNU build-id note");
    bytes[at + header.len()] ^= 0xff;
    let path = dir.join("mpiexec-other-build");
    std::fs::write(&path, bytes).unwrap();
    let mut perms = std::fs::metadata(&path).unwrap().permissions();
    std::os::unix::fs::PermissionsExt::set_mode(&mut perms, 0o755);
    std::fs::set_permissions(&path, perms).unwrap();
    path
}

fn check(name: &str, method: &str, (code, out, took): (Option<i32>, String, Duration)) -> String {
    assert_eq!(code, Some(0), "scenario {name} ({method}) failed:\n{out}");
    assert!(
        out.contains(&format!("SCENARIO_OK {name}")),
        "{name} ({method}):\n{out}"
    );
    println!("scenario {name} ({method}): ok in {took:?}");
    out
}

fn harness() {
    let found = std::env::var_os("PATH")
        .is_some_and(|p| std::env::split_paths(&p).any(|d| d.join("mpiexec").is_file()));
    if !found {
        println!("SKIPPED: mpiexec is not on the PATH; install MPI (cargo xtask test does)");
        return;
    }
    // The generic function on a local pool here; the `generic` scenario runs it on MPI.
    let local = mproc_pool::Pool::new(2).unwrap();
    assert_eq!(exercise(&local), (0..200).map(square).sum::<u64>());
    println!("exercise on a local Pool: ok");
    let started = Instant::now();
    // Every scenario under both methods a worker rank's local pool can use (fork is
    // refused after MPI init: `method` under fork checks the documented fall-back).
    for method in ["forkserver", "spawn"] {
        for name in [
            "map",
            "callbacks",
            "failures",
            "imap",
            "imap_unordered",
            "executor",
            "generic",
            "method",
        ] {
            check(name, method, run(name, method));
        }
    }
    check("method", "fork", run("method", "fork"));
    for (name, method) in [
        ("fork_refused", "forkserver"),
        ("idle", "forkserver"),
        ("dropped_mpi", "forkserver"),
    ] {
        let out = check(name, method, run(name, method));
        if let Some(line) = out.lines().find(|l| l.starts_with("IDLE_CPU_TICKS")) {
            println!("{line} (rank 0, over one second)");
            // A rank 0 that busy-polled would use the whole second (100 ticks); its own
            // CPU time does not grow with the machine's load.
            let ticks: u64 = line["IDLE_CPU_TICKS ".len()..].trim().parse().unwrap();
            assert!(
                ticks <= 30,
                "an idle rank 0 used {ticks} ticks of 100: it polls"
            );
        }
    }
    // A different build on rank 2 (MPMD: two ranks of this binary, one of the copy).
    let dir = std::env::temp_dir().join(format!("mproc-mpi-{}-build", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let other = other_build(&dir);
    let exe = std::env::current_exe().unwrap();
    let args: Vec<OsString> = vec![
        "-n".into(),
        "2".into(),
        exe.into(),
        ":".into(),
        "-n".into(),
        "1".into(),
        other.into(),
    ];
    let out = check(
        "mismatch",
        "forkserver",
        run_job("mismatch", "forkserver", &args),
    );
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap();
    let expected = format!("MISMATCH rank=Some(2) host=Some({:?})", host.trim());
    assert!(out.contains(&expected), "wanted {expected}:\n{out}");
    let _ = std::fs::remove_dir_all(&dir);
    let (code, out, took) = run("kill_worker", "forkserver");
    assert_ne!(
        code,
        Some(0),
        "a killed worker rank must end the job:\n{out}"
    );
    println!("scenario kill_worker: the job ended with {code:?} in {took:?}, nothing left");
    let (code, out, took) = run("kill_root", "forkserver");
    assert_ne!(code, Some(0), "a killed rank 0 must end the job:\n{out}");
    assert!(
        took < Duration::from_secs(10),
        "the job took {took:?} to end"
    );
    println!("scenario kill_root: the job ended with {code:?} in {took:?}, nothing left");
    println!("every scenario: {:?}", started.elapsed());
}
