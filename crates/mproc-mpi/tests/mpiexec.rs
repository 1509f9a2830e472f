//! The MPI pool under `mpiexec -n 3`: this binary is both the harness (run by `cargo test`,
//! it starts `mpiexec -n 3 <itself>` once per scenario, under a deadline that kills the
//! whole job's process group) and the program the ranks run (`MPROC_MPI_SCENARIO` set).
//! Without `mpiexec` on the PATH it says so and runs nothing.

use std::io::Read;
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use mproc_mpi::MpiPool;
use mproc_pool::{Callbacks, ErrorKind};

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
            // Past the task timeout.
            let e = pool.apply(sleep_ms, 60_000).unwrap_err();
            assert_eq!(e.kind(), ErrorKind::Timeout, "{e}");
            // And the ranks serve on.
            assert_eq!(pool.map(square, 0..10).unwrap()[9], 81);
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

/// Runs `mpiexec -n 3` on a scenario; returns (exit code or None on a signal, stdout, time).
fn run(name: &str) -> (Option<i32>, String, Duration) {
    let dir = std::env::temp_dir().join(format!("mproc-mpi-{}-{name}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let start = Instant::now();
    let mut child = Command::new("mpiexec")
        .args(["-n", "3"])
        .arg(std::env::current_exe().unwrap())
        .env(SCENARIO, name)
        .env("MPROC_MPI_DIR", &dir)
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

fn harness() {
    let found = std::env::var_os("PATH")
        .is_some_and(|p| std::env::split_paths(&p).any(|d| d.join("mpiexec").is_file()));
    if !found {
        println!("SKIPPED: mpiexec is not on the PATH; install MPI (cargo xtask test does)");
        return;
    }
    for name in ["map", "callbacks", "failures", "fork_refused", "idle"] {
        let (code, out, took) = run(name);
        assert_eq!(code, Some(0), "scenario {name} failed:\n{out}");
        assert!(
            out.contains(&format!("SCENARIO_OK {name}")),
            "{name}:\n{out}"
        );
        if let Some(line) = out.lines().find(|l| l.starts_with("IDLE_CPU_TICKS")) {
            println!("{line} (rank 0, over one second)");
        }
        println!("scenario {name}: ok in {took:?}");
    }
    let (code, out, took) = run("kill_worker");
    assert_ne!(
        code,
        Some(0),
        "a killed worker rank must end the job:\n{out}"
    );
    println!("scenario kill_worker: the job ended with {code:?} in {took:?}, nothing left");
}
