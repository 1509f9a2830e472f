//! `cargo xtask soak [--rounds N] [--only STEP]`: the long runs that `cargo xtask test`
//! keeps short, one step after the other (add a step to `STEPS`).
//!
//! - `kill-matrix`: `tests/tests/kill_matrix.rs` under each start method with `N` rounds
//!   per role (300 by default; about half an hour in all on a 2-core machine). A failure
//!   names the seed to replay with `MPROC_KILL_SEED`; a seed set in the environment is
//!   used by every run.
//! - `load-and-leaks`: `tests/tests/load.rs` and `leaks.rs` at the sizes
//!   (`MPROC_LOAD_SCALE=1`) under each start method.
//! - `models`: the loom models explored deeper than `cargo xtask test` does (see
//!   `models.rs`; up to 300 s per model).

use crate::{METHODS, Result, cargo, run};

/// One long run.
struct Step {
    name: &'static str,
    run: fn(&Options) -> Result,
}

/// Every step, in the order they run.
const STEPS: &[Step] = &[
    Step {
        name: "kill-matrix",
        run: kill_matrix,
    },
    Step {
        name: "load-and-leaks",
        run: |_| load_and_leaks(),
    },
    Step {
        name: "models",
        run: |_| crate::models::run_models(true),
    },
];

/// What the command line asks for.
struct Options {
    /// Rounds per kill-matrix role.
    rounds: u64,
    /// Only the step of this name.
    only: Option<String>,
}

impl Options {
    fn parse(args: &[String]) -> Result<Options> {
        let mut opts = Options {
            rounds: 300,
            only: None,
        };
        let mut it = args.iter();
        while let Some(flag) = it.next() {
            let mut value = || {
                it.next()
                    .cloned()
                    .ok_or_else(|| format!("{flag} needs a value"))
            };
            match flag.as_str() {
                "--rounds" => {
                    let v = value()?;
                    opts.rounds = v
                        .parse()
                        .map_err(|_| format!("--rounds {v:?} is not a number"))?;
                }
                "--only" => {
                    let v = value()?;
                    if !STEPS.iter().any(|s| s.name == v) {
                        return Err(format!("no soak step {v:?}; steps: {}", names()));
                    }
                    opts.only = Some(v);
                }
                other => {
                    return Err(format!(
                        "unknown flag {other:?} for soak; known: --rounds N, --only STEP ({})",
                        names()
                    ));
                }
            }
        }
        Ok(opts)
    }
}

fn names() -> String {
    STEPS.iter().map(|s| s.name).collect::<Vec<_>>().join(", ")
}

/// Runs every step (or the one `--only` names).
pub(crate) fn soak(args: &[String]) -> Result {
    let opts = Options::parse(args)?;
    for step in STEPS {
        if opts.only.as_deref().is_none_or(|only| only == step.name) {
            eprintln!("\nsoak: {}", step.name);
            (step.run)(&opts)?;
        }
    }
    Ok(())
}

/// The kill matrix under each start method, with `rounds` rounds per role.
fn kill_matrix(opts: &Options) -> Result {
    for m in METHODS {
        let mut c = cargo();
        c.args([
            "test",
            "--locked",
            "-p",
            "mproc-tests",
            "--test",
            "kill_matrix",
            "--",
            // The roles take turns anyway (each holds a lock); under fork, one test at a
            // time is the suite's rule.
            "--test-threads=1",
        ])
        .env("MPROC_START_METHOD", m)
        .env("MPROC_KILL_ROUNDS", opts.rounds.to_string());
        run(c)?;
    }
    Ok(())
}

/// `tests/tests/load.rs` and `leaks.rs` with `MPROC_LOAD_SCALE=1`: 10,000 cycles of every
/// handle type through the keeper (1,000 in `test`), 200 rounds over the 500 connections
/// (20 in `test`); the other sizes are the in both.
fn load_and_leaks() -> Result {
    for m in METHODS {
        let mut c = cargo();
        c.args([
            "test",
            "--locked",
            "-p",
            "mproc-tests",
            "--test",
            "load",
            "--test",
            "leaks",
        ])
        .env("MPROC_START_METHOD", m)
        .env("MPROC_LOAD_SCALE", "1");
        c.args(["--", "--nocapture"]);
        if m == "fork" {
            c.arg("--test-threads=1");
        }
        run(c)?;
    }
    Ok(())
}
