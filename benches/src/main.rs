//! mproc's benchmarks: `cargo xtask bench [--vs-python] [--quick]`.
//!
//! Prints a table for people and, as its last line, one JSON object with the keys of
//! `shared/bench/METRICS.md`. Every `floor.*` figure is the raw OS operation, measured in the
//! same run, interleaved round by round with mproc's own figures, so that each goal is a
//! ratio taken side by side on this (shared, noisy) machine. Figures are medians.

use std::collections::BTreeMap;
use std::process::Command;
use std::time::Instant;

use mproc::sys::{ForkOutcome, SpawnSelf};
use mproc::{Builder, StartMethod};
use serde_json::{Value, json};

/// Set in the environment of the floor's child: it exits at the top of `main`.
const FLOOR_ENV: &str = "MPROC_BENCH_FLOOR";

fn ident(x: u64) -> u64 {
    x
}

struct Samples(BTreeMap<&'static str, Vec<f64>>);

impl Samples {
    fn add(&mut self, key: &'static str, us: f64) {
        self.0.entry(key).or_default().push(us);
    }
    fn median(&self, key: &str) -> f64 {
        let mut v = self.0.get(key).cloned().unwrap_or_default();
        v.sort_by(f64::total_cmp);
        if v.is_empty() {
            return f64::NAN;
        }
        let n = v.len();
        if n % 2 == 1 {
            v[n / 2]
        } else {
            (v[n / 2 - 1] + v[n / 2]) / 2.0
        }
    }
}

fn time_us(f: impl FnOnce()) -> f64 {
    let t0 = Instant::now();
    f();
    t0.elapsed().as_secs_f64() * 1e6
}

/// The floor of spawn: `posix_spawn` of our own executable, which exits at once, and wait.
fn exec_self_floor() {
    let pid = SpawnSelf::new()
        .env(FLOOR_ENV, "1")
        .spawn()
        .expect("posix_spawn");
    let st = mproc::sys::wait_pid(pid, true).expect("waitpid");
    assert_eq!(st, Some(mproc::ExitStatus::Code(0)));
}

/// The floor of fork: fork, `_exit(0)` in the child, waitpid in the parent.
fn fork_wait_floor() {
    match mproc::sys::fork(None).expect("fork") {
        ForkOutcome::Child => mproc::sys::exit_now(0),
        ForkOutcome::Parent(pid) => {
            mproc::sys::wait_pid(pid, true).expect("waitpid");
        }
    }
}

/// Starts a child with `method` running `ident`, joins it, checks the result.
fn spawn_join(method: StartMethod, x: u64) -> bool {
    let mut c = Builder::new()
        .start_method(method)
        .spawn(ident, x)
        .expect("spawn");
    c.join().expect("join") == x
}

fn main() {
    if std::env::var_os(FLOOR_ENV).is_some() {
        return;
    }
    mproc::init();
    let args: Vec<String> = std::env::args().collect();
    let quick = args.iter().any(|a| a == "--quick");
    let arg_after = |flag: &str| {
        args.iter()
            .position(|a| a == flag)
            .and_then(|i| args.get(i + 1))
            .cloned()
    };

    let rounds = if quick { 3 } else { 10 };
    let (n_exec, n_fork) = if quick { (10, 30) } else { (25, 60) };
    let mut s = Samples(BTreeMap::new());
    let mut check_ok = true;

    // Warm up: page cache, the fork server, lazily computed fingerprints.
    for m in StartMethod::all() {
        check_ok &= spawn_join(m, 1);
    }
    exec_self_floor();
    fork_wait_floor();

    eprintln!("measuring {rounds} rounds ...");
    for round in 0..rounds {
        for i in 0..n_exec {
            s.add("floor.exec_self_us", time_us(exec_self_floor));
            let mut ok = true;
            s.add(
                "spawn_join_us.spawn",
                time_us(|| ok = spawn_join(StartMethod::Spawn, i)),
            );
            check_ok &= ok;
        }
        for i in 0..n_fork {
            s.add("floor.fork_wait_us", time_us(fork_wait_floor));
            let mut ok = true;
            s.add(
                "spawn_join_us.fork",
                time_us(|| ok = spawn_join(StartMethod::Fork, i)),
            );
            s.add(
                "spawn_join_us.forkserver",
                time_us(|| ok &= spawn_join(StartMethod::ForkServer, i)),
            );
            check_ok &= ok;
        }
        eprintln!("  round {}/{rounds} done", round + 1);
    }

    let python = match (arg_after("--python"), arg_after("--python-script")) {
        (Some(py), Some(script)) => run_python(&py, &script, quick),
        _ => None,
    };

    report(&s, check_ok, python.as_ref());
}

fn run_python(python: &str, script: &str, quick: bool) -> Option<Value> {
    eprintln!("running Python's multiprocessing for comparison ({python} {script}) ...");
    let mut cmd = Command::new(python);
    cmd.arg(script);
    if quick {
        cmd.arg("--quick");
    }
    let out = cmd.output().ok()?;
    if !out.status.success() {
        eprintln!(
            "python comparison failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        return None;
    }
    let text = String::from_utf8_lossy(&out.stdout);
    serde_json::from_str(text.lines().last()?).ok()
}

fn lookup(v: &Value, dotted: &str) -> Option<f64> {
    dotted.split('.').try_fold(v, |v, k| v.get(k))?.as_f64()
}

fn round1(x: f64) -> f64 {
    (x * 10.0).round() / 10.0
}

fn report(s: &Samples, check_ok: bool, python: Option<&Value>) {
    let exec_floor = s.median("floor.exec_self_us");
    let fork_floor = s.median("floor.fork_wait_us");
    // (key, figure, floor it is compared with, goal as a bound in µs, goal text)
    let rows = [
        (
            "spawn_join_us.spawn",
            s.median("spawn_join_us.spawn"),
            Some(exec_floor),
            1.15 * exec_floor,
            "≤ 1.15 × floor.exec_self_us",
        ),
        (
            "spawn_join_us.forkserver",
            s.median("spawn_join_us.forkserver"),
            Some(fork_floor),
            300.0,
            "≤ 300 µs",
        ),
        (
            "spawn_join_us.fork",
            s.median("spawn_join_us.fork"),
            Some(fork_floor),
            1.5 * fork_floor,
            "≤ 1.5 × floor.fork_wait_us",
        ),
    ];
    println!("\nmproc benchmarks (medians; floors measured in the same run)\n");
    println!(
        "{:<28} {:>10} {:>10} {:>8} {:>10} {:>9}  {:<28} met",
        "key", "mproc", "floor", "×floor", "python", "py/mproc", "goal"
    );
    let mut vs_python = serde_json::Map::new();
    let mut vs_floor = serde_json::Map::new();
    for (key, ours, floor, bound, goal) in rows {
        let py = python.and_then(|p| lookup(p, key));
        let ratio_floor = floor.map(|f| ours / f);
        if let Some(r) = ratio_floor {
            vs_floor.insert(key.into(), json!((r * 100.0).round() / 100.0));
        }
        if let Some(p) = py {
            vs_python.insert(key.into(), json!(round1(p / ours)));
        }
        println!(
            "{:<28} {:>8.1}µs {:>8.1}µs {:>8.2} {:>10} {:>9}  {:<28} {}",
            key,
            ours,
            floor.unwrap_or(f64::NAN),
            ratio_floor.unwrap_or(f64::NAN),
            py.map(|p| format!("{p:.0}µs"))
                .unwrap_or_else(|| "-".into()),
            py.map(|p| format!("{:.1}×", p / ours))
                .unwrap_or_else(|| "-".into()),
            goal,
            if ours <= bound { "yes" } else { "NO" }
        );
    }
    println!("{:<28} {:>8.1}µs", "floor.exec_self_us", exec_floor);
    println!("{:<28} {:>8.1}µs", "floor.fork_wait_us", fork_floor);
    println!("check_ok: {check_ok}");
    let mut out = json!({
        "spawn_join_us": {
            "spawn": round1(s.median("spawn_join_us.spawn")),
            "forkserver": round1(s.median("spawn_join_us.forkserver")),
            "fork": round1(s.median("spawn_join_us.fork")),
        },
        "floor": { "exec_self_us": round1(exec_floor), "fork_wait_us": round1(fork_floor) },
        "ratio_to_floor": vs_floor,
        "check_ok": check_ok,
    });
    if let Some(p) = python {
        out["python"] = p.clone();
        out["python_over_mproc"] = Value::Object(vs_python);
    }
    println!("{out}");
}
