//! The fuzz targets in `fuzz/`: `cargo xtask fuzz` runs each for a while and reports
//! libFuzzer's figures as one JSON line; `cargo xtask test` replays the checked-in crash
//! inputs and gives each target a short pass.
//!
//! Targets are built by cargo-fuzz (installed when missing) with `--sanitizer none`, which
//! works on the stable toolchain, and with debug assertions (so overflow is a crash), in a
//! target directory of their own (the instrumentation changes every crate's build). Each
//! runs alone: the machine is shared.

use std::io::{BufRead, BufReader, Write};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Instant;

use crate::{Result, cargo, has_cargo_tool, root, run, target_dir};

/// Seconds per target when `--time` is not given.
const DEFAULT_SECONDS: u64 = 60;
/// Seconds per target of the short pass in `cargo xtask test`.
const SHORT_PASS_SECONDS: u64 = 5;
/// libFuzzer's limits: a single input running this long is a hang; a process holding this
/// much memory is a leak. (Without a sanitizer, `-malloc_limit_mb` sees nothing: the
/// targets cap the memory their Rust code holds themselves; see `fuzz/src/lib.rs`.)
const TIMEOUT_SECONDS: u64 = 10;
const RSS_LIMIT_MB: u64 = 2048;

/// The flags `cargo xtask fuzz` knows (each followed by its value).
const FLAGS: [&str; 3] = ["--time", "--inputs", "--only"];

/// How long each target runs.
#[derive(Debug, Default)]
struct Budget {
    /// Seconds per target.
    seconds: Option<u64>,
    /// Inputs per target (libFuzzer's `-runs`); the target stops at whichever comes first.
    inputs: Option<u64>,
}

/// What one target's run did, from libFuzzer's final statistics.
#[derive(Debug)]
struct Figures {
    inputs: u64,
    inputs_per_s: u64,
}

/// `cargo xtask fuzz [--time SECONDS] [--inputs N] [--only TARGET]`.
pub(crate) fn fuzz(args: &[String]) -> Result {
    let mut budget = Budget::default();
    let mut only = None;
    let mut args = args.iter();
    while let Some(flag) = args.next() {
        let (name, inline) = match flag.split_once('=') {
            Some((name, value)) => (name, Some(value.to_string())),
            None => (flag.as_str(), None),
        };
        if !FLAGS.contains(&name) {
            return Err(format!(
                "unknown flag {flag:?} for fuzz; known: {}",
                FLAGS.join(" ")
            ));
        }
        let value = inline
            .or_else(|| args.next().cloned())
            .ok_or_else(|| format!("{name} needs a value"))?;
        let number = || {
            value
                .parse::<u64>()
                .ok()
                .filter(|&n| n > 0)
                .ok_or_else(|| format!("{name} takes a positive whole number, not {value:?}"))
        };
        match name {
            "--time" => budget.seconds = Some(number()?),
            "--inputs" => budget.inputs = Some(number()?),
            _ => only = Some(value.clone()),
        }
    }
    if budget.seconds.is_none() && budget.inputs.is_none() {
        budget.seconds = Some(DEFAULT_SECONDS);
    }
    let mut targets = targets()?;
    if let Some(only) = only {
        if !targets.contains(&only) {
            return Err(format!(
                "no fuzz target {only:?}; there are: {}",
                targets.join(" ")
            ));
        }
        targets = vec![only];
    }
    build()?;
    replay_regressions(&targets)?;
    let mut figures = Vec::new();
    for target in &targets {
        figures.push((target.clone(), run_target(target, &budget)?));
    }
    for (target, f) in &figures {
        eprintln!(
            "  {target:<20} {:>12} inputs  {:>8} inputs/s",
            f.inputs, f.inputs_per_s
        );
    }
    println!("{}", json_line(&figures));
    Ok(())
}

/// The fuzz step of `cargo xtask test`: replays every checked-in crash input, then runs
/// each target for a few seconds from its seeds and corpus.
pub(crate) fn short_pass() -> Result {
    let started = Instant::now();
    let targets = targets()?;
    build()?;
    replay_regressions(&targets)?;
    let budget = Budget {
        seconds: Some(SHORT_PASS_SECONDS),
        inputs: None,
    };
    for target in &targets {
        let f = run_target(target, &budget)?;
        eprintln!(
            "  {target}: {} inputs, {} inputs/s",
            f.inputs, f.inputs_per_s
        );
    }
    eprintln!(
        "\n  fuzzing: {} targets, regressions replayed, {SHORT_PASS_SECONDS} s each, {:.0} s in all (build included)",
        targets.len(),
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

fn fuzz_dir() -> PathBuf {
    root().join("fuzz")
}

/// `cargo fuzz` with the target directory of the fuzz builds.
fn cargo_fuzz() -> Command {
    let mut c = cargo();
    c.arg("fuzz")
        .env("CARGO_TARGET_DIR", target_dir().join("fuzz"));
    c
}

/// The options every build and run of a target takes: no sanitizer (stable Rust), debug
/// assertions on.
const BUILD_FLAGS: [&str; 3] = ["--sanitizer", "none", "--debug-assertions"];

/// Installs cargo-fuzz if it is missing (once per machine), as `deny` installs cargo-deny.
fn install() -> Result {
    if !has_cargo_tool("fuzz") {
        eprintln!("\ncargo-fuzz is missing: installing it (once per machine)");
        let mut c = cargo();
        c.args(["install", "--locked", "cargo-fuzz"]);
        run(c)?;
    }
    Ok(())
}

/// The targets, as `fuzz/Cargo.toml` declares them.
fn targets() -> Result<Vec<String>> {
    let manifest = std::fs::read_to_string(fuzz_dir().join("Cargo.toml"))
        .map_err(|e| format!("reading fuzz/Cargo.toml: {e}"))?;
    let targets: Vec<String> = manifest
        .lines()
        .filter_map(|l| l.trim().strip_prefix("name = \""))
        .filter_map(|r| r.strip_suffix('"'))
        .filter(|name| *name != "mproc-fuzz")
        .map(str::to_string)
        .collect();
    if targets.is_empty() {
        return Err("fuzz/Cargo.toml declares no fuzz target".into());
    }
    Ok(targets)
}

/// Builds every target once (runs then find them built).
fn build() -> Result {
    install()?;
    let mut c = cargo_fuzz();
    c.arg("build").args(BUILD_FLAGS);
    run(c)
}

/// Runs each checked-in crash input (`fuzz/regressions/<target>/`) once.
fn replay_regressions(targets: &[String]) -> Result {
    for target in targets {
        let dir = fuzz_dir().join("regressions").join(target);
        let count = std::fs::read_dir(&dir).map(|d| d.count()).unwrap_or(0);
        if count == 0 {
            continue;
        }
        let mut c = cargo_fuzz();
        c.args(["run", target.as_str()])
            .args(BUILD_FLAGS)
            .arg(&dir)
            .args(["--", "-runs=0"])
            .arg(format!("-timeout={TIMEOUT_SECONDS}"))
            .arg(format!("-rss_limit_mb={RSS_LIMIT_MB}"));
        run(c).map_err(|e| format!("a regression input of {target} fails again: {e}"))?;
        eprintln!("  {target}: {count} regression inputs pass");
    }
    Ok(())
}

/// Fuzzes `target` within `budget`, from its seeds and corpus (new inputs join the corpus,
/// `fuzz/corpus/<target>`, which is not checked in), and returns libFuzzer's figures. The
/// whole output goes to `<target dir>/fuzz/logs/<target>.log`; its progress lines are
/// shown, and on a crash its last lines (the panic, and where the input was saved).
fn run_target(target: &str, budget: &Budget) -> Result<Figures> {
    let corpus = fuzz_dir().join("corpus").join(target);
    let seeds = fuzz_dir().join("seeds").join(target);
    std::fs::create_dir_all(&corpus).map_err(|e| format!("creating {}: {e}", corpus.display()))?;
    let logs = target_dir().join("fuzz").join("logs");
    std::fs::create_dir_all(&logs).map_err(|e| format!("creating {}: {e}", logs.display()))?;
    let log_path = logs.join(format!("{target}.log"));
    let mut c = cargo_fuzz();
    c.args(["run", target]).args(BUILD_FLAGS).arg(&corpus);
    if seeds.is_dir() {
        c.arg(&seeds);
    }
    c.args(["--", "-print_final_stats=1"])
        .arg(format!("-timeout={TIMEOUT_SECONDS}"))
        .arg(format!("-rss_limit_mb={RSS_LIMIT_MB}"));
    if let Some(s) = budget.seconds {
        c.arg(format!("-max_total_time={s}"));
    }
    if let Some(n) = budget.inputs {
        c.arg(format!("-runs={n}"));
    }
    let line = crate::show(&c);
    eprintln!("\n$ {line}\n  (output in {})", log_path.display());
    let started = Instant::now();
    let mut child = c
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("{line}: cannot start: {e}"))?;
    let mut log = std::fs::File::create(&log_path)
        .map_err(|e| format!("creating {}: {e}", log_path.display()))?;
    let mut tail: Vec<String> = Vec::new();
    let mut stats = Vec::new();
    let stderr = child.stderr.take().expect("piped");
    for text in BufReader::new(stderr).lines().map_while(|l| l.ok()) {
        let _ = writeln!(log, "{text}");
        if text.contains(" pulse ") || text.contains(" DONE ") {
            eprintln!("  {text}");
        }
        if text.starts_with("stat::") {
            stats.push(text.clone());
        }
        tail.push(text);
        if tail.len() > 80 {
            tail.remove(0);
        }
    }
    let status = child
        .wait()
        .map_err(|e| format!("{line}: cannot wait: {e}"))?;
    eprintln!("  ({:.1} s)", started.elapsed().as_secs_f64());
    if !status.success() {
        return Err(format!(
            "fuzz target {target} failed ({status}); the end of its output:\n{}\n\
             Reproduce the saved input with `cargo fuzz run {target} --sanitizer none -a <input>`; \
             fix the library, then move the input to fuzz/regressions/{target}/",
            tail.join("\n")
        ));
    }
    final_figures(&stats).ok_or_else(|| {
        format!(
            "fuzz target {target}: no final statistics in its output ({})",
            log_path.display()
        )
    })
}

/// Reads `stat::number_of_executed_units` and `stat::average_exec_per_sec` from
/// libFuzzer's final statistics.
fn final_figures(stats: &[String]) -> Option<Figures> {
    let stat = |name: &str| {
        stats.iter().find_map(|l| {
            l.strip_prefix("stat::")?
                .strip_prefix(name)?
                .trim_start_matches(':')
                .trim()
                .parse::<u64>()
                .ok()
        })
    };
    Some(Figures {
        inputs: stat("number_of_executed_units")?,
        inputs_per_s: stat("average_exec_per_sec")?,
    })
}

/// `{"fuzz": {"<target>": {"inputs": N, "inputs_per_s": X}, ...}}`.
fn json_line(figures: &[(String, Figures)]) -> String {
    let entries: Vec<String> = figures
        .iter()
        .map(|(t, f)| {
            format!(
                "\"{t}\": {{\"inputs\": {}, \"inputs_per_s\": {}}}",
                f.inputs, f.inputs_per_s
            )
        })
        .collect();
    format!("{{\"fuzz\": {{{}}}}}", entries.join(", "))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn final_statistics_are_read_and_the_line_is_json() {
        let stats: Vec<String> = [
            "stat::number_of_executed_units: 1234567",
            "stat::average_exec_per_sec:     20575",
            "stat::new_units_added:          10",
        ]
        .map(String::from)
        .to_vec();
        let f = final_figures(&stats).unwrap();
        assert_eq!((f.inputs, f.inputs_per_s), (1234567, 20575));
        assert!(final_figures(&stats[2..]).is_none());
        let line = json_line(&[
            ("a".into(), f),
            (
                "b".into(),
                Figures {
                    inputs: 1,
                    inputs_per_s: 2,
                },
            ),
        ]);
        assert_eq!(
            line,
            r#"{"fuzz": {"a": {"inputs": 1234567, "inputs_per_s": 20575}, "b": {"inputs": 1, "inputs_per_s": 2}}}"#
        );
    }
}
