//! The model checks: the queue ring's protocol and the robust lock word's, under loom,
//! built with `--cfg loom` in a target directory of its own (the flag changes every
//! crate's build).

use crate::{Result, cargo, run, target_dir};

/// Runs every loom model, exploring interleavings up to `preemptions` preemptions (the
/// models' own default, 2, when `None`).
pub(crate) fn run_models(preemptions: Option<u32>) -> Result {
    let mut c = cargo();
    c.args([
        "test",
        "--release",
        "--locked",
        "-p",
        "mproc-queue",
        "-p",
        "mproc-sys",
        "--lib",
        "loom_models",
    ])
    .env("RUSTFLAGS", "--cfg loom")
    .env("CARGO_TARGET_DIR", target_dir().join("loom"));
    if let Some(n) = preemptions {
        c.env("LOOM_MAX_PREEMPTIONS", n.to_string());
    }
    run(c)
}
