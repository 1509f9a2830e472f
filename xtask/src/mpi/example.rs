//! The MPI example (`examples/mpi_pool.rs`): built with the examples' `mpi` feature and run
//! under `mpiexec -n 3` once per start method that applies, with its output checked.

use std::time::Duration;

use crate::{Result, cargo, run as run_step, target_dir};

/// The examples that run under `mpiexec` (not directly), with what each must print.
pub const EXAMPLES: &[(&str, &[&str])] = &[(
    "mpi_pool",
    &[
        "== MPI: 3 ranks (rank 0 on ",
        "and 2 worker ranks) ==",
        "primes below 100000: 9592",
        "ranks that ran tasks: [1, 2]",
        "the second task aborts its worker: [ok, WorkerDied, ok, ok]",
        "a task panics: Panicked at item Some(3) (13 is unlucky",
        "a task past its 2 s timeout: Timeout",
        "the pool goes on: [4, 8, 10]",
        "pool closed and joined; the worker ranks stop when rank 0 ends",
    ],
)];

/// The ranks of each run: rank 0 and two worker ranks (oversubscribed on 2 cores).
const RANKS: usize = 3;

/// A run's deadline: the example takes about 3 s; the whole job is killed past this.
const DEADLINE: Duration = Duration::from_secs(120);

/// The start methods the example runs under. A worker rank refuses fork once MPI is
/// initialised and starts its local pool by the forkserver method instead, so a run under
/// `fork` would repeat the `forkserver` run.
const METHODS: [&str; 2] = ["spawn", "forkserver"];

/// Builds the MPI examples (release, feature `mpi`) and runs each under `mpiexec -n 3` per
/// start method, checking that it succeeds and prints every line it must.
pub fn run_examples() -> Result {
    let mut c = cargo();
    c.args([
        "build",
        "--release",
        "--locked",
        "-p",
        "mproc-examples",
        "--features",
        "mpi",
    ]);
    for (example, _) in EXAMPLES {
        c.args(["--example", example]);
    }
    run_step(c)?;
    let dir = target_dir().join("release").join("examples");
    for (example, wants) in EXAMPLES {
        for m in METHODS {
            let out = super::run(
                &dir.join(example),
                &[],
                RANKS,
                DEADLINE,
                &[("MPROC_START_METHOD", m)],
            )?;
            let stdout = String::from_utf8_lossy(&out.stdout);
            if !out.status.success() {
                return Err(format!(
                    "example {example} ({m}) under mpiexec -n {RANKS}: {}\nstdout:\n{stdout}\nstderr:\n{}",
                    out.status,
                    String::from_utf8_lossy(&out.stderr)
                ));
            }
            if let Some(want) = wants.iter().find(|w| !stdout.contains(*w)) {
                return Err(format!(
                    "example {example} ({m}) under mpiexec did not print {want:?}; it printed:\n{stdout}"
                ));
            }
            eprintln!("  example {example} ({m}, mpiexec -n {RANKS}): output checked");
        }
    }
    Ok(())
}
