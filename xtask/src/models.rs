//! The model checks: the queue ring's protocol and the robust lock word's, under loom,
//! built with `--cfg loom` in a target directory of its own (the flag changes every
//! crate's build).

use crate::{Result, cargo, run, target_dir};

/// Each package's models and the preemption bound they are explored to: the bound of
/// `cargo xtask test` (each catches every bug its models were checked against: a Relaxed
/// publish and a waker without its fence for the ring at 1, a timed-out sleeper that
/// does not put the waiters bit back for the lock word only at 2), then the deeper one
/// of `cargo xtask soak`, which stops each model after `DEEP_SECONDS` (the lock word's
/// models at bound 3 run for more than 20 minutes: the soak explores as far as that
/// allows, in loom's order).
const MODELS: [(&str, u32, u32); 2] = [("mproc-queue", 1, 2), ("mproc-sys", 2, 3)];

/// How long the soak explores each model.
const DEEP_SECONDS: u32 = 300;

/// Runs every loom model, to the soak bounds when `deep`.
pub(crate) fn run_models(deep: bool) -> Result {
    for (package, bound, deep_bound) in MODELS {
        let mut c = cargo();
        c.args([
            "test",
            "--release",
            "--locked",
            "-p",
            package,
            "--lib",
            "loom_models",
        ])
        .env("RUSTFLAGS", "--cfg loom")
        .env("CARGO_TARGET_DIR", target_dir().join("loom"))
        .env(
            "LOOM_MAX_PREEMPTIONS",
            if deep { deep_bound } else { bound }.to_string(),
        );
        if deep {
            c.env("LOOM_MAX_DURATION", DEEP_SECONDS.to_string());
        }
        run(c)?;
    }
    Ok(())
}
