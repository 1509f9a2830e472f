//! The MPI pool's figures: the bench re-runs itself as `mpiexec -n 3 mproc-bench --mpi-job`
//! (rank 0 and two worker ranks), whose rank 0 measures `MpiPool`'s maps and a CPU-bound
//! map against a serial loop, and prints them as one JSON line the bench reads.

use std::io::Read;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use mproc::MpiPool;
use mproc::pool::Callbacks;
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use serde_json::{Value, json};

use crate::pool::{CPU_WORK, CPU_WORK_QUICK, cpu_task, speedup_over_serial};

/// The flag that makes the bench binary the MPI job's program.
pub const JOB_FLAG: &str = "--mpi-job";

/// The ranks of the job: rank 0 and two worker ranks, oversubscribing 2 cores.
const RANKS: usize = 3;

/// How long a map in the job may take, and the whole job (then it is killed).
const MAP_LIMIT: Duration = Duration::from_secs(120);
const JOB_LIMIT: Duration = Duration::from_secs(600);

fn ident(x: u64) -> u64 {
    x
}

/// The figures of one job, round by round.
#[derive(Debug, Default)]
pub struct Figures {
    pub trivial: Vec<f64>,
    pub chunksize1: Vec<f64>,
    pub cpu_speedup: Vec<f64>,
    /// Every result came back right.
    pub ok: bool,
}

/// Whether `mpiexec` is on the PATH.
pub fn available() -> bool {
    Command::new("mpiexec")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Runs `mpiexec -n 3 <this binary> --mpi-job` with `rounds` rounds and reads its JSON
/// line; `None` (said on stderr) when the job fails or passes its deadline, which kills it.
pub fn measure(rounds: usize, quick: bool) -> Option<Figures> {
    let exe = std::env::current_exe().ok()?;
    let mut cmd = Command::new("mpiexec");
    cmd.arg("-n")
        .arg(RANKS.to_string())
        .arg(exe)
        .args([JOB_FLAG, "--rounds", &rounds.to_string()]);
    if quick {
        cmd.arg("--quick");
    }
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .spawn()
        .map_err(|e| eprintln!("mpi: cannot start mpiexec: {e}"))
        .ok()?;
    let mut stdout = child.stdout.take()?;
    let reader = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = stdout.read_to_string(&mut text);
        text
    });
    let started = Instant::now();
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break Some(status),
            Ok(None) if started.elapsed() < JOB_LIMIT => {
                std::thread::sleep(Duration::from_millis(50))
            }
            _ => break None,
        }
    };
    let Some(status) = status else {
        // Hydra ends the job's ranks when mpiexec is interrupted; SIGKILL if it lingers.
        let pid = Pid::from_raw(child.id() as i32);
        let _ = kill(pid, Signal::SIGINT);
        let grace = Instant::now();
        while grace.elapsed() < Duration::from_secs(10) {
            if let Ok(Some(_)) = child.try_wait() {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = child.kill();
        let _ = child.wait();
        eprintln!("mpi: the job passed its deadline of {JOB_LIMIT:?} and was killed");
        return None;
    };
    let text = reader.join().unwrap_or_default();
    if !status.success() {
        eprintln!("mpi: the job ended with {status}; its output:\n{text}");
        return None;
    }
    let line: Value = text
        .lines()
        .rev()
        .find_map(|l| serde_json::from_str(l).ok())?;
    let list = |key: &str| -> Vec<f64> {
        line[key]
            .as_array()
            .map(|a| a.iter().filter_map(Value::as_f64).collect())
            .unwrap_or_default()
    };
    Some(Figures {
        trivial: list("trivial"),
        chunksize1: list("chunksize1"),
        cpu_speedup: list("cpu_speedup"),
        ok: line["ok"].as_bool().unwrap_or(false),
    })
}

/// The job's program, on every rank: the worker ranks serve inside `init`; rank 0 measures
/// and prints its figures as one JSON line.
pub fn job_main() {
    let args: Vec<String> = std::env::args().collect();
    let rounds: usize = args
        .iter()
        .position(|a| a == "--rounds")
        .and_then(|i| args.get(i + 1)?.parse().ok())
        .unwrap_or(3);
    let quick = args.iter().any(|a| a == "--quick");
    let mpi = mproc::mpi::init().expect("mproc_mpi::init");
    let pool = MpiPool::new(&mpi).expect("MpiPool::new (run under mpiexec -n 3)");
    let (n_trivial, n_single, cpu_work) = if quick {
        (1_000_000, 10_000, CPU_WORK_QUICK)
    } else {
        (1_000_000, 20_000, CPU_WORK)
    };
    // Warm: each rank's local worker started, its buffers grown, as the local pool's are.
    for _ in 0..2 {
        map_rate(&pool, n_trivial, None);
    }
    let mut figures = Figures {
        ok: true,
        ..Figures::default()
    };
    for _ in 0..rounds {
        let (r, ok) = map_rate(&pool, n_trivial, None);
        figures.trivial.push(r);
        figures.ok &= ok;
        let (r, ok) = map_rate(&pool, n_single, Some(1));
        figures.chunksize1.push(r);
        figures.ok &= ok;
        let (x, ok) = cpu_speedup(&pool, cpu_work);
        figures.cpu_speedup.push(x);
        figures.ok &= ok;
    }
    pool.close();
    pool.join().expect("join");
    println!(
        "{}",
        json!({
            "trivial": figures.trivial,
            "chunksize1": figures.chunksize1,
            "cpu_speedup": figures.cpu_speedup,
            "ok": figures.ok,
        })
    );
}

/// `pool.map(ident, 0..n)` (or with `chunksize` items per task): tasks per second, and
/// whether every result came back right.
fn map_rate(pool: &MpiPool, n: u64, chunksize: Option<usize>) -> (f64, bool) {
    let t0 = Instant::now();
    let out = pool
        .map_async_with(ident, 0..n, chunksize, Callbacks::new())
        .and_then(|r| r.get_timeout(MAP_LIMIT))
        .expect("map");
    let s = t0.elapsed().as_secs_f64();
    let ok = out.len() as u64 == n && out.iter().enumerate().all(|(i, &v)| v == i as u64);
    (n as f64 / s, ok)
}

/// The CPU-bound map (16 equal inputs) on the worker ranks against the same loop on rank 0,
/// measured as the local pool's is: the speed-up, and whether the results agree.
fn cpu_speedup(pool: &MpiPool, work: u64) -> (f64, bool) {
    speedup_over_serial(work, |inputs| {
        pool.map_async_with(cpu_task, inputs, None, Callbacks::new())
            .and_then(|r| r.get_timeout(MAP_LIMIT))
            .expect("map")
    })
}
