//! `cargo xtask`: the project's automation in plain Rust (std, and nix's safe signals to
//! end an MPI job).
//!
//! - `cargo xtask test`  — every check CI runs (see `test` below for the list).
//! - `cargo xtask bench [--vs-python] [--vs-peers] [--quick] [--only-<part>]
//!   [--instructions] [--plot FILE.svg]` — the benchmark table and its JSON line
//!   (`--only-sync`, `--only-queue`, `--only-pool`, `--only-manager`, `--only-kill`,
//!   `--only-pipe`, `--only-spawn`, `--only-instructions`: one part; `--vs-peers`: the Rust peers of
//!   `benches/peers/` too, built here and measured in the same run; `--instructions`: the
//!   hot paths' instruction counts under callgrind too; `--plot`: the run's ratios drawn as
//!   a chart).
//! - `cargo xtask fuzz [--time SECONDS] [--inputs N] [--only TARGET]` — every fuzz target
//!   (or one) for SECONDS each (default 60) or N inputs each, then one JSON line of figures
//!   (installs cargo-fuzz).
//! - `cargo xtask soak [--rounds N] [--only STEP]` — the long runs (see `soak.rs`).
//! - `cargo xtask deny`  — `cargo deny check bans licenses sources` (installs cargo-deny).
//! - `cargo xtask ci`    — the same as `test`.
//!
//! Each step prints the command it runs; the first failure stops the run with its name.

mod fuzz;
mod models;
mod mpi;
mod soak;

use std::env;
use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::time::Instant;

type Result<T = ()> = std::result::Result<T, String>;

const METHODS: [&str; 3] = ["forkserver", "spawn", "fork"];

/// Targets of other supported platforms, checked when their standard library is installed.
const OTHER_TARGETS: [&str; 3] = [
    "aarch64-unknown-linux-gnu",
    "i686-unknown-linux-gnu",
    "x86_64-unknown-linux-musl",
];

fn main() -> ExitCode {
    let args: Vec<String> = env::args().skip(1).collect();
    let started = Instant::now();
    let result = match args.first().map(String::as_str) {
        Some("test") | Some("ci") | Some("deny") if args.len() > 1 => {
            Err(format!("{} takes no flags; got {:?}", args[0], &args[1..]))
        }
        Some("test") | Some("ci") => test(),
        Some("bench") => bench(&args[1..]),
        Some("soak") => soak::soak(&args[1..]),
        Some("deny") => deny(),
        Some("fuzz") => fuzz::fuzz(&args[1..]),
        _ => Err(
            "usage: cargo xtask <test|bench [--vs-python] [--vs-peers] [--quick] [--only-<part>] \
             [--instructions] [--plot FILE.svg]\
             |fuzz [--time SECONDS] [--inputs N] [--only TARGET]\
             |soak [--rounds N] [--only STEP]|deny|ci>"
                .to_string(),
        ),
    };
    match result {
        Ok(()) => {
            eprintln!("xtask: done in {:.0} s", started.elapsed().as_secs_f64());
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("xtask: FAILED: {e}");
            ExitCode::FAILURE
        }
    }
}

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask lives in the workspace")
        .to_path_buf()
}

fn cargo() -> Command {
    let mut cmd = Command::new(env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
    cmd.current_dir(root());
    cmd
}

fn show(cmd: &Command) -> String {
    let envs: Vec<String> = cmd
        .get_envs()
        .filter_map(|(k, v)| Some(format!("{}={}", k.to_string_lossy(), v?.to_string_lossy())))
        .collect();
    let args: Vec<String> = cmd
        .get_args()
        .map(|a| a.to_string_lossy().into_owned())
        .collect();
    let prog = Path::new(cmd.get_program())
        .file_name()
        .unwrap_or(OsStr::new("?"))
        .to_string_lossy()
        .into_owned();
    [envs.join(" "), prog, args.join(" ")]
        .iter()
        .filter(|s| !s.is_empty())
        .cloned()
        .collect::<Vec<_>>()
        .join(" ")
}

/// Runs a command, streaming its output, and fails with its description if it fails.
fn run(mut cmd: Command) -> Result {
    let line = show(&cmd);
    eprintln!("\n$ {line}");
    let t0 = Instant::now();
    let status = cmd
        .status()
        .map_err(|e| format!("{line}: cannot start: {e}"))?;
    eprintln!("  ({:.1} s)", t0.elapsed().as_secs_f64());
    if status.success() {
        Ok(())
    } else {
        Err(format!("{line}: {status}"))
    }
}

/// Runs a command and returns its stdout (stderr passes through).
fn output(mut cmd: Command) -> Result<String> {
    let line = show(&cmd);
    eprintln!("\n$ {line}");
    let out = cmd
        .stderr(Stdio::inherit())
        .output()
        .map_err(|e| format!("{line}: cannot start: {e}"))?;
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    if out.status.success() {
        Ok(text)
    } else {
        Err(format!("{line}: {}\n{text}", out.status))
    }
}

fn test() -> Result {
    // 0. Library files stay small enough to read; MPI is installed before anything builds
    // (the workspace's MPI crate needs it).
    files_stay_small()?;
    mpi::ensure_installed()?;

    // 1. Formatting and lints.
    let mut c = cargo();
    c.args(["fmt", "--all", "--", "--check"]);
    run(c)?;
    // With the examples' `mpi` feature: the MPI example and the facade's `mpi` part too.
    let mut c = cargo();
    c.args([
        "clippy",
        "--workspace",
        "--all-targets",
        "--locked",
        "--features",
        "mproc-examples/mpi",
        "--",
        "-D",
        "warnings",
    ]);
    run(c)?;

    // 2. Unit and doc tests of every crate (the integration package runs below, per method).
    let mut c = cargo();
    c.args([
        "test",
        "--workspace",
        "--locked",
        "--exclude",
        "mproc-tests",
    ]);
    run(c)?;

    // 3. The integration suite once per start method.
    for m in METHODS {
        let mut c = cargo();
        c.args(["test", "--locked", "-p", "mproc-tests"])
            .env("MPROC_START_METHOD", m);
        if m == "fork" {
            // A forked child no longer keeps the mproc handles of other tests (it closes
            // those not in its argument), but it still copies everything else other
            // tests' threads hold at the fork: a file being written (ETXTBSY for the
            // test that runs it), std's locks, a pool's threads mid-operation (one
            // parallel run of six hung in a pool test). One test at a time under fork.
            c.args(["--", "--test-threads=1"]);
        }
        run(c)?;
    }
    // ... and once under cargo-nextest (one process per test), where it is installed.
    if has_cargo_tool("nextest") {
        let mut c = cargo();
        c.args([
            "nextest",
            "run",
            "--locked",
            "-p",
            "mproc-tests",
            "--no-fail-fast",
        ]);
        run(c)?;
    } else {
        eprintln!("\nskipped: cargo-nextest is not installed (the suite ran under cargo test)");
    }

    // 4. Every example, under every start method, with its output checked.
    examples()?;

    // 4b. The queue ring's protocol, model-checked (bounded; `soak` explores further).
    models::run_models(false)?;

    // 4c. Every fuzz target: its checked-in crash inputs replayed, then a short pass
    // (`cargo xtask fuzz` runs them longer).
    fuzz::short_pass()?;

    // 5. Documentation without warnings, and the facade's Python table as one table.
    let mut c = cargo();
    c.args(["doc", "--workspace", "--no-deps", "--locked"])
        .args(["--features", "mproc/mpi"])
        .env("RUSTDOCFLAGS", "-D warnings");
    run(c)?;
    python_table_is_whole()?;

    // 5b. The facade with each feature alone (and none): its tests, doctests and lints.
    features_alone()?;

    // 5c. Every publishable crate packaged and built from its package, as the registry
    // would: a crate that would not publish fails here.
    // Cargo treats a registry dependency as immutable: built once for a version, never
    // rebuilt. The packages it verifies come from a temporary registry under the same
    // version every run, so both their unpacked sources and what was built from them must
    // go first, or this run's packages would be checked against last run's.
    forget_packaged_sources();
    let verify_dir = target_dir().join("package-verify");
    let _ = std::fs::remove_dir_all(&verify_dir);
    let mut c = cargo();
    c.args(["package", "--workspace", "--locked", "--allow-dirty"])
        .arg("--target-dir")
        .arg(&verify_dir);
    for unpublished in ["mproc-benches", "mproc-examples", "mproc-tests", "xtask"] {
        c.args(["--exclude", unpublished]);
    }
    run(c)?;

    // 6. Licenses, bans and sources.
    deny()?;

    // 7. Other platforms' targets, where installed.
    other_targets()
}

/// The most lines a library source file may have before its tests.
const MAX_FILE_LINES: usize = 700;

/// Checks that no library source file in `crates/` is longer than `MAX_FILE_LINES` lines
/// before its `#[cfg(test)]` module: a longer one has more than one job to split out.
fn files_stay_small() -> Result {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
            let path = entry.path();
            if path.is_dir() {
                walk(&path, out);
            } else if path.extension().is_some_and(|e| e == "rs") {
                out.push(path);
            }
        }
    }
    let mut files = Vec::new();
    for krate in std::fs::read_dir(root().join("crates"))
        .into_iter()
        .flatten()
        .flatten()
    {
        walk(&krate.path().join("src"), &mut files);
    }
    files.sort();
    let mut long = Vec::new();
    for f in &files {
        let text = std::fs::read_to_string(f).map_err(|e| format!("{}: {e}", f.display()))?;
        // Up to the test module: a `#[cfg(test)]` line followed by `mod tests` (other
        // test-only items, such as a helper module declared at the top, do not end it).
        let lines: Vec<&str> = text.lines().collect();
        let before_tests = lines
            .windows(2)
            .position(|w| w[0].starts_with("#[cfg(test)]") && w[1].starts_with("mod tests"))
            .unwrap_or(lines.len());
        if before_tests > MAX_FILE_LINES {
            long.push(format!("{} ({before_tests} lines)", f.display()));
        }
    }
    if long.is_empty() {
        eprintln!(
            "\n{} library files, none longer than {MAX_FILE_LINES} lines before its tests",
            files.len()
        );
        Ok(())
    } else {
        Err(format!(
            "library files longer than {MAX_FILE_LINES} lines before their tests (split them by job):\n  {}",
            long.join("\n  ")
        ))
    }
}

/// Removes cargo's unpacked copies of our packages from an earlier `cargo package`: cargo
/// unpacks the packages it verifies into a registry cache keyed by the path of its
/// temporary registry (the same for every run in one target directory) and would build the
/// next run's dependents against the old copies of the same version.
fn forget_packaged_sources() {
    let home = env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| env::var_os("HOME").map(|h| PathBuf::from(h).join(".cargo")));
    let Some(src) = home.map(|h| h.join("registry").join("src")) else {
        return;
    };
    let Ok(registries) = std::fs::read_dir(src) else {
        return;
    };
    for registry in registries.flatten() {
        // Local registries are named by a bare hash, "-<hash>"; crates.io's by its host.
        if !registry.file_name().to_string_lossy().starts_with('-') {
            continue;
        }
        for unpacked in std::fs::read_dir(registry.path())
            .into_iter()
            .flatten()
            .flatten()
        {
            if unpacked.file_name().to_string_lossy().starts_with("mproc") {
                let _ = std::fs::remove_dir_all(unpacked.path());
            }
        }
    }
}

/// The facade's features, each of which must build, test and lint alone.
const FEATURES: [&str; 11] = [
    "process",
    "pipe",
    "wire",
    "shm",
    "sync",
    "queue",
    "pool",
    "manager",
    "mpi",
    "unstable-sys",
    "log",
];

fn features_alone() -> Result {
    for feature in std::iter::once(None).chain(FEATURES.map(Some)) {
        for what in ["test", "clippy"] {
            let mut c = cargo();
            c.args([what, "-p", "mproc", "--locked", "--no-default-features"]);
            if let Some(f) = feature {
                c.args(["--features", f]);
            }
            if what == "clippy" {
                c.args(["--all-targets", "--", "-D", "warnings"]);
            }
            run(c)?;
        }
    }
    Ok(())
}

/// Checks the generated front page of the facade: the Python-to-Rust table is one table
/// (a blank `//!` line inside it once ended it and turned the rest into a paragraph of `|`).
fn python_table_is_whole() -> Result {
    let page = target_dir().join("doc").join("mproc").join("index.html");
    let html = std::fs::read_to_string(&page)
        .map_err(|e| format!("cannot read {}: {e}", page.display()))?;
    // The table whose first row is Python's `__main__` guard (the README's crate table is
    // on the same page).
    let table = html
        .split("<table>")
        .find(|t| t.contains("__main__"))
        .and_then(|t| t.split("</table>").next())
        .unwrap_or("");
    let rows = table.matches("<tr>").count();
    eprintln!("\n  the facade's front page: the Python table has {rows} rows");
    if rows < 80 {
        return Err(format!(
            "the facade's Python-to-Rust table is broken: {rows} rows in one table in {} \
             (at least 80 expected)",
            page.display()
        ));
    }
    if html.contains("<p>| ") {
        return Err("a table row renders as a paragraph on the facade's front page".into());
    }
    Ok(())
}

/// Whether the cargo subcommand `tool` (`nextest`, `deny`) is installed.
fn has_cargo_tool(tool: &str) -> bool {
    cargo()
        .args([tool, "--version"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Every example, in the order they run, with what each must print (every line must
/// appear): one list, so that an example cannot run unchecked (those run under `mpiexec`
/// are in `mpi::EXAMPLES`).
const EXAMPLES: &[(&str, &[&str])] = &[
    (
        "level1_process",
        &["== level 1:", "parent: joined; the child returned its pid"],
    ),
    (
        "level2_parallel",
        &["== level 2:", "squares [1, 4, 9, 16] in"],
    ),
    (
        "level3_pool",
        &[
            "== level 3:",
            "primes below 100000: 9592",
            "the second task aborts its worker: [ok, WorkerDied, ok, ok]",
            "the pool goes on: [4, 8, 10]",
            "pool closed and joined: every worker ended",
            "as_completed yields [20, 150, 600]",
            "a task whose worker aborts fails alone (WorkerDied); the next submit returns 1",
            "executor.map keeps the order: [30, 10, 20]",
            "async: an AsyncResult is a Future; see `cargo run --example async_pool`",
        ],
    ),
    (
        "pool_progress",
        &[
            "400 items in",
            "sum of squares 21247471, 1 failed",
            "failed: the task panicked (item 77): item 77 is malformed",
        ],
    ),
    (
        "async_pool",
        &[
            "a tokio server (one runtime thread) on 127.0.0.1:",
            "  client 0: primes below 50000: 5133",
            "  client 3: primes below 215000: ",
            "served 12 requests from 4 clients in",
            "meanwhile the runtime's only thread stayed free: the heartbeat ticked",
            "every answer matches the serial count: true",
        ],
    ),
    (
        "level4_pipe",
        &[
            "== level 4:",
            "parent: got Number(144)",
            "parent: got Text(\"HELLO PIPE!\")",
            "receiving now says Disconnected",
            "Listener/Client: a wrong key is refused (Authentication)",
            "a child with the key connects by name and gets \"welcome, ",
            "mproc::wait([pipe, idle pipe, child's sentinel]) = [0]: the child said \"hello\"",
            "mproc::wait([idle pipe, child's sentinel]) = [1]: the child ended",
        ],
    ),
    (
        "level5_queue",
        &[
            "== level 5:",
            "producer put 1000 jobs and closed the queue; consumer did 1000 and saw it closed",
            "results: 1000 answers, total text length 13890",
            "the queue now: 0 waiting, closed = true",
            "the next get says \"the queue is empty and no other process holds it any more\"",
            "SimpleQueue: a child put [\"one\", \"two\", \"three\"]; empty now = true",
            "JoinableQueue: join() returned once a worker marked all 10 jobs done",
            "(0 unfinished, sum 55)",
        ],
    ),
    (
        "level6_manager",
        &[
            "== level 6:",
            "4 children pushed 250 each while the parent popped: 1000 popped, 1000 distinct, 0 left",
            "4 processes x 500 atomic updates of one key: total = 2000",
            "after shutdown, a call says Disconnected at once",
        ],
    ),
    (
        "manager_remote",
        &[
            "server: a client with a wrong key is refused: Authentication",
            "connected with the key, squared 10 jobs",
            "server: 10 jobs done by another program over TCP",
        ],
    ),
    (
        "level7_shared_memory",
        &[
            "== level 7:",
            "bytes the child wrote: \"hello from child",
            "under the lock: counter = 200000 (4 x N = 200000)",
            "like Python's `v.value += 1`: counter =",
            "an Array filled by a child: [0, 1, 4, 9, 16, 25, 36, 49]",
            "a ShareableList updated by a child: [Str(\"HOWDY\"), Int(42), Float(2.5)]",
            "layout \"8sqd\"; a string too long for its slot refused: true",
        ],
    ),
    (
        "level8_lock",
        &[
            "== level 8:",
            "4 processes x 25000 locked increments: counter = 100000",
            "the next lock() got OwnerDied instead of hanging",
            "repaired: counter = 100000, and the lock works as before",
            "RLock: a child took it twice without waiting (count 2), and it is free again",
            "Semaphore(2): 6 children took turns, never more than 2 inside at once",
            "Condition: a child waited until the parent set the value and notified; it saw 42",
            "Barrier: 3 children and the parent met; one index each: [0, 1, 2, 3]",
        ],
    ),
    (
        "tour",
        &[
            "== level 1:",
            "== level 2:",
            "squares [1, 4, 9, 16]",
            "== level 3:",
            "the second task aborts its worker: [ok, WorkerDied, ok, ok]",
            "== level 4:",
            "receiving now says Disconnected",
            "Listener/Client: a wrong key is refused (Authentication)",
            "mproc::wait([pipe, idle pipe, child's sentinel]) = [0]",
            "mproc::wait([idle pipe, child's sentinel]) = [1]",
            "== level 5:",
            "consumer did 1000 and saw it closed",
            "SimpleQueue: a child put [\"one\", \"two\", \"three\"]",
            "JoinableQueue: join() returned once a worker marked all 10 jobs done",
            "== level 6:",
            "1000 popped, 1000 distinct, 0 left",
            "total = 2000",
            "== level 7:",
            "under the lock: counter = 200000",
            "a ShareableList updated by a child: [Str(\"HOWDY\"), Int(42), Float(2.5)]",
            "== level 8:",
            "the next lock() got OwnerDied instead of hanging",
            "RLock: a child took it twice without waiting (count 2)",
            "Semaphore(2): 6 children took turns, never more than 2 inside at once",
            "Condition: a child waited until the parent set the value and notified; it saw 42",
            "Barrier: 3 children and the parent met; one index each: [0, 1, 2, 3]",
            "tour complete",
        ],
    ),
];

fn examples() -> Result {
    let mut c = cargo();
    c.args([
        "build",
        "--release",
        "--locked",
        "-p",
        "mproc-examples",
        "--examples",
    ]);
    run(c)?;
    // Every example the package declares is in the list (and so run and checked).
    let manifest = std::fs::read_to_string(root().join("examples").join("Cargo.toml"))
        .map_err(|e| format!("reading examples/Cargo.toml: {e}"))?;
    for line in manifest.lines() {
        if let Some(name) = line
            .trim()
            .strip_prefix("name = \"")
            .and_then(|r| r.strip_suffix('"'))
            && name != "mproc-examples"
            && !EXAMPLES
                .iter()
                .chain(mpi::EXAMPLES)
                .any(|(e, _)| *e == name)
        {
            return Err(format!(
                "example {name} is not in xtask's EXAMPLES: add it with what it must print"
            ));
        }
    }
    let dir = target_dir().join("release").join("examples");
    for (example, wants) in EXAMPLES {
        for m in METHODS {
            let mut c = Command::new(dir.join(example));
            c.env("MPROC_START_METHOD", m);
            let out = output(c)?;
            for want in wants.iter() {
                if !out.contains(want) {
                    return Err(format!(
                        "example {example} ({m}) did not print {want:?}; it printed:\n{out}"
                    ));
                }
            }
            eprintln!("  example {example} ({m}): output checked");
        }
    }
    // The MPI examples, under `mpiexec -n 3`.
    mpi::run_examples()
}

fn target_dir() -> PathBuf {
    env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root().join("target"))
}

fn deny() -> Result {
    if !has_cargo_tool("deny") {
        eprintln!("\ncargo-deny is missing: installing it (once per machine)");
        let mut c = cargo();
        c.args(["install", "--locked", "cargo-deny"]);
        run(c)?;
    }
    // The advisory database cannot be fetched here (no network but the registries), so the
    // advisories check is not run; see deny.toml.
    let mut c = cargo();
    c.args(["deny", "--locked", "check", "bans", "licenses", "sources"]);
    run(c)
}

fn other_targets() -> Result {
    let installed = Command::new("rustup")
        .args(["target", "list", "--installed"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default();
    for t in OTHER_TARGETS {
        if installed.lines().any(|l| l.trim() == t) {
            let mut c = cargo();
            c.args(["check", "--workspace", "--locked", "--target", t]);
            run(c)?;
        } else {
            eprintln!(
                "skipped: cargo check --target {t} (the target's standard library is not installed)"
            );
        }
    }
    eprintln!("not checked: macOS and Windows (mproc supports Linux only so far; see the README)");
    Ok(())
}

/// The flags `cargo xtask bench` knows: anything else is refused, so that a typo
/// (`--quik`) does not silently run the full bench. `--plot` takes a file after it.
const BENCH_FLAGS: [&str; 13] = [
    "--vs-python",
    "--vs-peers",
    "--only-pipe",
    "--instructions",
    "--only-instructions",
    "--plot",
    "--quick",
    "--only-sync",
    "--only-queue",
    "--only-pool",
    "--only-manager",
    "--only-kill",
    "--only-spawn",
];

fn bench(args: &[String]) -> Result {
    // `--plot FILE`: the file, made absolute (the bench runs at the workspace's root).
    let plot_at = args.iter().position(|a| a == "--plot");
    let plot = match plot_at.map(|i| args.get(i + 1)) {
        None => None,
        Some(Some(file)) if !file.starts_with("--") => Some(
            env::current_dir()
                .map_err(|e| format!("the current directory: {e}"))?
                .join(file),
        ),
        Some(_) => return Err("--plot needs a file: --plot FILE.svg".into()),
    };
    let args: Vec<String> = args
        .iter()
        .enumerate()
        .filter(|(i, _)| plot_at.is_none_or(|p| *i != p + 1))
        .map(|(_, a)| a.clone())
        .collect();
    if let Some(bad) = args.iter().find(|a| !BENCH_FLAGS.contains(&a.as_str())) {
        return Err(format!(
            "unknown flag {bad:?} for bench; known: {}",
            BENCH_FLAGS.join(" ")
        ));
    }
    let vs_python = args.iter().any(|a| a == "--vs-python");
    let quick = args.iter().any(|a| a == "--quick");
    let vs_peers = args.iter().any(|a| a == "--vs-peers");
    mpi::ensure_installed()?;
    // The peers (ipc-channel, interprocess, procspawn) are a package of their own, outside
    // the workspace and its dependency graph, with its own lock file: built here, in the
    // same target directory.
    let peers = if vs_peers {
        let mut c = cargo();
        c.args(["build", "--release", "--locked", "--manifest-path"])
            .arg(root().join("benches").join("peers").join("Cargo.toml"))
            .arg("--target-dir")
            .arg(target_dir());
        run(c)?;
        Some(target_dir().join("release").join("mproc-peers"))
    } else {
        None
    };
    let mut c = cargo();
    c.args([
        "run",
        "--release",
        "--locked",
        "-p",
        "mproc-benches",
        // The MPI pool's figures (MPI is installed above).
        "--features",
        "mpi",
        "--bin",
        "mproc-bench",
        "--",
    ]);
    if quick {
        c.arg("--quick");
    }
    // `--only-sync`, `--only-queue`, `--only-pool`, `--only-manager`, `--only-kill`,
    // `--only-pipe`, `--only-instructions`, `--only-spawn`: one part's figures
    // (`--only-pool`: the local and the MPI pool's).
    c.args(args.iter().filter(|a| a.starts_with("--only-")));
    if let Some(p) = peers {
        c.arg("--peers").arg(p);
    }
    // `--instructions`: the hot paths' instruction counts under callgrind, too.
    if args.iter().any(|a| a == "--instructions") {
        c.arg("--instructions");
    }
    if let Some(file) = &plot {
        c.arg("--plot").arg(file);
    }
    if vs_python {
        let python = ["python3", "python"].into_iter().find(|p| {
            Command::new(p)
                .arg("--version")
                .stdout(Stdio::null())
                .status()
                .is_ok_and(|s| s.success())
        });
        match python {
            Some(p) => {
                c.args(["--python", p, "--python-script"])
                    .arg(root().join("benches").join("python_compare.py"));
            }
            None => eprintln!("skipped: --vs-python (no python3 on this machine)"),
        }
    }
    run(c)
}
