//! `cargo xtask soak`: the long runs `cargo xtask test` leaves out, as a list of steps run
//! in order (the first failure stops the soak with its name). Add a step by adding a line
//! to `STEPS`.

use std::process::Command;

use crate::{METHODS, Result, cargo, models, run};

/// A step: what it does, and the function that does it.
type Step = (&'static str, fn() -> Result);

/// The soak's steps, in order.
const STEPS: &[Step] = &[
    (
        "the load and leak tests at the issue's sizes, under every start method",
        load_and_leaks,
    ),
    ("the loom models, explored deeper", || {
        models::run_models(true)
    }),
];

/// Runs every step of the soak.
pub(crate) fn soak() -> Result {
    for (what, step) in STEPS {
        eprintln!("\nsoak: {what}");
        step().map_err(|e| format!("{what}: {e}"))?;
    }
    Ok(())
}

/// `tests/tests/load.rs` and `leaks.rs` with `MPROC_LOAD_SCALE=1`: 10,000 cycles of every
/// handle type through the keeper (1,000 in `test`), 200 rounds over the 500 connections
/// (20 in `test`); the other sizes are the in both.
fn load_and_leaks() -> Result {
    for m in METHODS {
        let mut c: Command = cargo();
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
