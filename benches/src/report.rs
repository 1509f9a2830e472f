//! The report: a table for people, then one JSON line with the keys of
//! `shared/bench/METRICS.md`.

use serde_json::{Value, json};

use crate::{Flags, Samples};

/// Prints the table (each figure beside its floor, Python's figure and its goal), the floors
/// on their own, a manager call in pipe round trips, the correctness flags, then the JSON
/// line, which it returns.
pub fn report(s: &Samples, flags: Flags, python: Option<&Value>) -> Value {
    let figures = Figures { s, python };
    let rows = rows(&figures);
    print_table(&rows);
    crate::peers::print_table(s);
    print_floors(s);
    print_manager_calls(s);
    print_big_message(s);
    print_instructions(s);
    print_flags(&flags);
    let line = json_line(s, &flags, &rows, python);
    println!("{line}");
    line
}

/// What a row reads: this run's medians, Python's figures when it ran.
struct Figures<'a> {
    s: &'a Samples,
    python: Option<&'a Value>,
}

impl Figures<'_> {
    fn median(&self, key: &str) -> f64 {
        self.s.median(key)
    }

    fn python(&self, key: &str) -> Option<f64> {
        self.python.and_then(|p| lookup(p, key))
    }

    /// The row of `key`: its median, compared with `floor`, `met` when `goal_met` holds.
    fn row(
        &self,
        key: &'static str,
        floor: f64,
        higher_is_better: bool,
        goal_met: impl Fn(f64) -> bool,
        goal: &'static str,
    ) -> Row {
        let ours = self.median(key);
        Row {
            key,
            ours,
            spread: self.s.min_max(key),
            floor,
            python: self.python(key),
            higher_is_better,
            met: goal_met(ours),
            goal,
        }
    }
}

/// One line of the report: a figure, the floor it is compared with, and its goal.
struct Row {
    key: &'static str,
    ours: f64,
    /// The min and max of its rounds.
    spread: Option<(f64, f64)>,
    floor: f64,
    /// Python's figure, when it ran.
    python: Option<f64>,
    /// Higher is better (bandwidth) rather than lower (latency).
    higher_is_better: bool,
    met: bool,
    goal: &'static str,
}

impl Row {
    /// The unit the figure is printed in.
    fn unit(&self) -> &'static str {
        match self.key {
            "lock_uncontended_ns" => "ns",
            k if k == "lock_value_ops_per_s" || k.starts_with("manager_") => "op/s",
            k if k.starts_with("queue_msgs")
                || k.starts_with("pool_map")
                || k.starts_with("mpi_pool_tasks")
                || k.starts_with("executor_")
                || k == "async_pool_apply_per_s" =>
            {
                "/s"
            }
            "pool_cpu_speedup" | "mpi_pool_cpu_speedup" => "×",
            k if k.ends_with("_ms") || k.starts_with("kill_notice_ms.") => "ms",
            _ if self.higher_is_better => "GB/s",
            _ => "µs",
        }
    }

    /// The figure over its floor, when it has one.
    fn ratio_to_floor(&self) -> Option<f64> {
        self.floor.is_finite().then(|| self.ours / self.floor)
    }

    /// How many times better than Python: a speed-up for latency, a multiple for bandwidth.
    fn times_better_than_python(&self) -> Option<f64> {
        self.python.map(|p| {
            if self.higher_is_better {
                self.ours / p
            } else {
                p / self.ours
            }
        })
    }
}

/// The table's rows, section by section.
fn rows(f: &Figures<'_>) -> Vec<Row> {
    [
        spawn_rows(f),
        pipe_rows(f),
        sync_rows(f),
        queue_rows(f),
        pool_rows(f),
        mpi_pool_rows(f),
        executor_rows(f),
        manager_rows(f),
        kill_rows(f),
    ]
    .into_iter()
    .flatten()
    .collect()
}

fn spawn_rows(f: &Figures<'_>) -> Vec<Row> {
    let exec_floor = f.median("floor.exec_self_us");
    let fork_floor = f.median("floor.fork_wait_us");
    vec![
        f.row(
            "spawn_join_us.spawn",
            exec_floor,
            false,
            |v| v <= 1.05 * exec_floor,
            "≤ 1.05 × floor.exec_self_us",
        ),
        f.row(
            "spawn_join_us.forkserver",
            fork_floor,
            false,
            |v| v <= 1.5 * fork_floor,
            "≤ 1.5 × floor.fork_wait_us",
        ),
        f.row(
            "spawn_join_us.fork",
            fork_floor,
            false,
            |v| v <= 1.5 * fork_floor,
            "≤ 1.5 × floor.fork_wait_us",
        ),
    ]
}

fn pipe_rows(f: &Figures<'_>) -> Vec<Row> {
    let rtt_floor = f.median("floor.socketpair_rtt_us");
    let bw_floor = f.median("floor.socketpair_bw_gbps");
    vec![
        f.row(
            "pipe_rtt_us",
            rtt_floor,
            false,
            |v| v <= 1.1 * rtt_floor,
            "≤ 1.1 × floor.socketpair_rtt_us",
        ),
        // Issue 21: awaited on tokio, against the blocking round trip of the same run.
        f.row(
            "async_pipe_rtt_us",
            f.median("pipe_rtt_us"),
            false,
            |v| v <= 1.5 * f.median("pipe_rtt_us"),
            "≤ 1.5 × pipe_rtt_us",
        ),
        f.row(
            "pipe_bytes_gbps",
            bw_floor,
            true,
            // Issue 20's goal, against the peer of the same run (`--vs-peers`); without
            // it, the socketpair floor's share of METRICS.md.
            |v| match f.median(crate::peers::IPC_BYTES) {
                peer if peer.is_finite() => v >= peer,
                _ => v >= 0.9 * bw_floor,
            },
            "≥ 1.0 × peers.ipc_channel.bytes_1mib_gbps (else ≥ 0.9 × floor)",
        ),
    ]
}

fn sync_rows(f: &Figures<'_>) -> Vec<Row> {
    let fill_floor = f.median("floor.fill_gbps");
    let lock_floor = f.median("floor.futex_lock_ns");
    let mutex_floor = f.median("floor.futex_mutex_ops_per_s");
    vec![
        f.row(
            "lock_uncontended_ns",
            lock_floor,
            false,
            |v| v <= 1.25 * lock_floor,
            "≤ 1.25 × floor.futex_lock_ns",
        ),
        f.row(
            "lock_value_ops_per_s",
            mutex_floor,
            true,
            |v| v >= 0.9 * mutex_floor,
            "≥ 0.9 × floor.futex_mutex_ops_per_s",
        ),
        f.row(
            "shm_gbps",
            fill_floor,
            true,
            |v| v >= 0.9 * fill_floor,
            "≥ 0.9 × floor.fill_gbps",
        ),
    ]
}

fn queue_rows(f: &Figures<'_>) -> Vec<Row> {
    let ring_floor = f.median("floor.shm_ring_msgs_per_s");
    vec![
        f.row(
            "queue_msgs_per_s.1p1c",
            ring_floor,
            true,
            |v| v >= 20e6,
            "≥ 20M msg/s",
        ),
        f.row(
            "queue_msgs_per_s.2p2c",
            ring_floor,
            true,
            |v| v >= 10e6,
            "≥ 10M msg/s",
        ),
        f.row(
            "queue_msgs_per_s.batch_1p1c",
            ring_floor,
            true,
            |v| v >= 0.25 * ring_floor,
            "≥ 0.25 × floor.shm_ring_msgs_per_s",
        ),
        f.row(
            "queue_rtt_us",
            f.median("floor.spin_rtt_us"),
            false,
            |v| v <= 2.0,
            "≤ 2 µs",
        ),
        f.row(
            "async_queue_rtt_us",
            f.median("queue_rtt_us"),
            false,
            |v| v <= 1.5 * f.median("queue_rtt_us"),
            "≤ 1.5 × queue_rtt_us",
        ),
        f.row(
            "dead_peer_notice_ms",
            f64::NAN,
            false,
            |v| v <= 150.0,
            "≤ 150 ms",
        ),
        f.row(
            "queue_1mib_gbps",
            f.median("floor.copy_gbps"),
            true,
            |v| v >= 0.8 * f.median("floor.copy_gbps"),
            "≥ 0.8 × floor.copy_gbps",
        ),
        queue_gbps_row(f, "queue_gbps.64kib"),
        queue_gbps_row(f, "queue_gbps.256kib"),
        queue_gbps_row(f, "queue_gbps.4mib"),
        queue_gbps_row(f, "queue_gbps.16mib"),
    ]
}

/// A `queue_gbps.<size>` row: at least half the copy floor.
fn queue_gbps_row(f: &Figures<'_>, key: &'static str) -> Row {
    let copy = f.median("floor.copy_gbps");
    f.row(
        key,
        copy,
        true,
        |v| v >= 0.5 * copy,
        "≥ 0.5 × floor.copy_gbps",
    )
}

fn pool_rows(f: &Figures<'_>) -> Vec<Row> {
    let forkserver = f.median("extra.spawn_join_forkserver_beside_pool_us");
    vec![
        f.row(
            "pool_map_tasks_per_s.trivial",
            f64::NAN,
            true,
            |v| v >= 50e6,
            "≥ 50M task/s",
        ),
        f.row(
            "pool_map_tasks_per_s.chunksize1",
            f64::NAN,
            true,
            |v| v >= 1e6,
            "≥ 1M task/s",
        ),
        f.row(
            "pool_cpu_speedup",
            2.0,
            true,
            |v| v >= 1.9,
            "≥ 1.9 (2 cores)",
        ),
        f.row(
            "pool_start_us",
            forkserver,
            false,
            |v| v <= 3.0 * forkserver,
            "≤ 3 × spawn_join_us.forkserver (beside)",
        ),
        f.row("pool_recover_ms", f64::NAN, false, |v| v <= 50.0, "≤ 50 ms"),
        async_pool_row(f),
    ]
}

/// Results awaited at once from one task, held to the same tasks taken by a blocking `get`
/// in the same round: issue 21's "async ≤ 1.5 × blocking", as a rate.
fn async_pool_row(f: &Figures<'_>) -> Row {
    let blocking = f.median("extra.pool_apply_get_per_s");
    f.row(
        "async_pool_apply_per_s",
        blocking,
        true,
        |v| v >= blocking / 1.5,
        "≥ 0.67 × extra.pool_apply_get_per_s",
    )
}

/// The MPI pool (rank 0 and two worker ranks on this machine), held to the local pool's
/// figures of the same run: its floor is the local pool's figure.
fn mpi_pool_rows(f: &Figures<'_>) -> Vec<Row> {
    let trivial = f.median("pool_map_tasks_per_s.trivial");
    vec![
        f.row(
            "mpi_pool_tasks_per_s.trivial",
            trivial,
            true,
            |v| v >= 0.5 * trivial,
            "≥ 0.5 × pool_map_tasks_per_s.trivial",
        ),
        f.row(
            "mpi_pool_tasks_per_s.chunksize1",
            f.median("pool_map_tasks_per_s.chunksize1"),
            true,
            f64::is_finite,
            "reported (floor: the local pool's)",
        ),
        f.row(
            "mpi_pool_cpu_speedup",
            2.0,
            true,
            |v| v >= 1.7,
            "≥ 1.7 (mpiexec -n 3 on 2 cores)",
        ),
    ]
}

/// An executor's task is a pool task with a handle: its rate is held to the chunksize1
/// map's of the same run, and its `as_completed` to Python's.
fn executor_rows(f: &Figures<'_>) -> Vec<Row> {
    let chunksize1 = f.median("pool_map_tasks_per_s.chunksize1");
    let py_as_completed = f.python("executor_as_completed_per_s");
    vec![
        f.row(
            "executor_submit_per_s",
            chunksize1,
            true,
            |v| v >= 0.8 * chunksize1,
            "≥ 0.8 × pool_map_tasks_per_s.chunksize1",
        ),
        f.row(
            "executor_as_completed_per_s",
            f64::NAN,
            true,
            |v| py_as_completed.is_none_or(|p| v >= 20.0 * p),
            "≥ 20 × Python",
        ),
    ]
}

/// A manager call is one round trip to the server: its floor is one pipe round trip per
/// call, and its goal a call of at most 1.3 of them (and 5 × Python's rate).
fn manager_rows(f: &Figures<'_>) -> Vec<Row> {
    let rtt = f.median("pipe_rtt_us");
    let call_floor = 1e6 / rtt;
    let manager_goal = |key: &'static str| {
        let python = f.python(key);
        move |v: f64| 1e6 / v <= 1.3 * rtt && python.is_none_or(|p| v >= 5.0 * p)
    };
    vec![
        f.row(
            "manager_list_ops_per_s",
            call_floor,
            true,
            manager_goal("manager_list_ops_per_s"),
            "call ≤ 1.3 × pipe_rtt_us, ≥ 5 × Python",
        ),
        f.row(
            "manager_dict_ops_per_s",
            call_floor,
            true,
            manager_goal("manager_dict_ops_per_s"),
            "call ≤ 1.3 × pipe_rtt_us, ≥ 5 × Python",
        ),
    ]
}

/// How soon a SIGKILLed role's other party hears of it: reported, with no goal (a figure
/// that was not measured, or whose notices were not all the typed ones, is not met).
fn kill_rows(f: &Figures<'_>) -> Vec<Row> {
    crate::kill::ROLES
        .iter()
        .map(|(_, key)| f.row(key, f64::NAN, false, f64::is_finite, "reported"))
        .collect()
}

/// Prints the table: a heading, then one line per row.
fn print_table(rows: &[Row]) {
    println!("\nmproc benchmarks (medians; floors measured in the same run)\n");
    println!(
        "{:<32} {:>12} {:>19} {:>12} {:>7} {:>12} {:>9}  {:<42} met",
        "key", "mproc", "min–max", "floor", "×floor", "python", "vs py", "goal"
    );
    for r in rows {
        let unit = r.unit();
        println!(
            "{:<32} {:>8.2}{:>4} {:>19} {:>12} {:>7} {:>12} {:>9}  {:<42} {}",
            r.key,
            r.ours,
            unit,
            min_max_text(r.spread),
            if r.floor.is_finite() {
                format!("{:.2}{}", r.floor, unit)
            } else {
                "-".into()
            },
            r.ratio_to_floor()
                .map(|x| format!("{x:.2}"))
                .unwrap_or_else(|| "-".into()),
            r.python
                .map(|p| format!("{p:.2}{unit}"))
                .unwrap_or_else(|| "-".into()),
            r.times_better_than_python()
                .map(|b| format!("{b:.1}×"))
                .unwrap_or_else(|| "-".into()),
            r.goal,
            if r.met { "yes" } else { "NO" }
        );
    }
}

/// Prints the floors and the extra figures, one per line.
fn print_floors(s: &Samples) {
    for k in [
        "floor.exec_self_us",
        "floor.fork_wait_us",
        "floor.forkserver_us",
        "floor.socketpair_rtt_us",
        "floor.socketpair_bw_gbps",
        "floor.futex_lock_ns",
        "floor.futex_mutex_ops_per_s",
        "floor.fill_gbps",
        "floor.copy_gbps",
        "floor.shm_ring_msgs_per_s",
        "floor.spin_rtt_us",
        "floor.cold_copy_gbps.16mib",
        "floor.pipeline_gbps.16mib",
        "extra.shm_fresh_gbps",
        "extra.shm_copy_gbps",
        "extra.spawn_join_forkserver_beside_pool_us",
        "extra.pipe_rtt_beside_manager_us",
        "extra.queue_gbps_cloned.16mib",
    ] {
        println!(
            "{k:<44} {:>14.2} {:>19}",
            s.median(k),
            min_max_text(s.min_max(k))
        );
    }
}

/// A figure's `min–max`, to three significant digits, millions as `M` (`-` when it was not
/// measured).
fn min_max_text(spread: Option<(f64, f64)>) -> String {
    let sig3 = |x: f64| {
        let (x, suffix) = if x.abs() >= 1e6 {
            (x / 1e6, "M")
        } else {
            (x, "")
        };
        let decimals = (2 - x.abs().max(1e-9).log10().floor() as i32).clamp(0, 6) as usize;
        format!("{x:.decimals$}{suffix}")
    };
    spread.map_or_else(|| "-".into(), |(a, b)| format!("{}–{}", sig3(a), sig3(b)))
}

/// Prints the instruction counts per operation (`--instructions`), each hot path beside
/// the bare futex mutex's where it is a lock.
fn print_instructions(s: &Samples) {
    let counts: Vec<(&str, f64)> = crate::instructions::KEYS
        .iter()
        .map(|k| (*k, s.median(k)))
        .filter(|(_, c)| c.is_finite())
        .collect();
    if counts.is_empty() {
        return;
    }
    let floor = s.median("instructions.floor_futex_lock_unlock");
    println!("\ninstructions per operation (callgrind; user space only, the same every run)\n");
    for (key, count) in counts {
        let beside = if key.contains("lock_unlock") && !key.contains("floor") {
            format!(
                "  ({:.2} × instructions.floor_futex_lock_unlock)",
                count / floor
            )
        } else {
            String::new()
        };
        println!("{key:<44} {count:>10.0}{beside}");
    }
}

/// A manager call's time in µs, per proxy type that was measured.
fn manager_calls(s: &Samples) -> Vec<(&'static str, f64)> {
    [
        ("manager_list_ops_per_s", "list"),
        ("manager_dict_ops_per_s", "dict"),
    ]
    .into_iter()
    .map(|(key, name)| (name, 1e6 / s.median(key)))
    .filter(|(_, call_us)| call_us.is_finite())
    .collect()
}

/// Prints a manager call in pipe round trips (goal ≤ 1.3), against this run's `pipe_rtt_us`
/// and against the one measured beside the manager's rounds.
fn print_manager_calls(s: &Samples) {
    let rtt = s.median("pipe_rtt_us");
    let beside = s.median("extra.pipe_rtt_beside_manager_us");
    for (name, call_us) in manager_calls(s) {
        println!(
            "manager {name} call: {call_us:.2} µs = {:.2} × pipe_rtt_us ({:.2} × the round trip beside it)",
            call_us / rtt,
            call_us / beside
        );
    }
}

/// `queue_gbps.16mib` over each of its floors: the in-cache copy (its goal's), one cold
/// copy, and the two-process pipeline of a copy in and a copy out (see `big_floor`).
fn big_message_ratios(s: &Samples) -> [(&'static str, f64); 3] {
    let queue = s.median("queue_gbps.16mib");
    [
        "floor.copy_gbps",
        "floor.cold_copy_gbps.16mib",
        "floor.pipeline_gbps.16mib",
    ]
    .map(|floor| (floor, queue / s.median(floor)))
}

/// Prints `queue_gbps.16mib` as a share of each of its floors, when it was measured.
fn print_big_message(s: &Samples) {
    let queue = s.median("queue_gbps.16mib");
    if !queue.is_finite() {
        return;
    }
    let shares: Vec<String> = big_message_ratios(s)
        .iter()
        .map(|(floor, r)| format!("{r:.2} × {floor}"))
        .collect();
    println!("queue_gbps.16mib: {queue:.2} GB/s = {}", shares.join(", "));
}

fn print_flags(flags: &Flags) {
    let Flags {
        check_ok,
        shm_check_ok,
        manager_check_ok,
    } = flags;
    println!(
        "check_ok: {check_ok}, shm_check_ok: {shm_check_ok}, manager_check_ok: {manager_check_ok}"
    );
}

/// The JSON line: every figure under its key in `shared/bench/METRICS.md`, the floors, the
/// ratios, the spreads, the flags, and Python's figures when it ran.
fn json_line(s: &Samples, flags: &Flags, rows: &[Row], python: Option<&Value>) -> Value {
    let m = |k: &str| s.median(k);
    let round2 = |x: f64| (x * 100.0).round() / 100.0;
    let rtt = m("pipe_rtt_us");
    let beside = m("extra.pipe_rtt_beside_manager_us");
    let forkserver = m("extra.spawn_join_forkserver_beside_pool_us");
    let call_over_rtt: serde_json::Map<String, Value> = manager_calls(s)
        .into_iter()
        .map(|(name, call_us)| (name.into(), json!(round2(call_us / rtt))))
        .collect();
    let ratio_to_floor: serde_json::Map<String, Value> = rows
        .iter()
        .filter_map(|r| Some((r.key.into(), json!(round2(r.ratio_to_floor()?)))))
        .collect();
    let times_better_than_python: serde_json::Map<String, Value> = rows
        .iter()
        .filter_map(|r| Some((r.key.into(), json!(round1(r.times_better_than_python()?)))))
        .collect();
    let kill_notice: serde_json::Map<String, Value> = crate::kill::ROLES
        .iter()
        .map(|(role, key)| ((*role).into(), json!(round1(m(key)))))
        .collect();
    let mut spread = json!({
        "manager_list_ops_per_s": s.spread("manager_list_ops_per_s"),
        "manager_dict_ops_per_s": s.spread("manager_dict_ops_per_s"),
        "dead_peer_notice_ms": s.spread("dead_peer_notice_ms"),
        "queue_msgs_per_s.1p1c": s.spread("queue_msgs_per_s.1p1c"),
        "queue_msgs_per_s.batch_1p1c": s.spread("queue_msgs_per_s.batch_1p1c"),
        "queue_1mib_gbps": spread2(s, "queue_1mib_gbps"),
        "queue_gbps.64kib": spread2(s, "queue_gbps.64kib"),
        "queue_gbps.256kib": spread2(s, "queue_gbps.256kib"),
        "queue_gbps.4mib": spread2(s, "queue_gbps.4mib"),
        "queue_gbps.16mib": spread2(s, "queue_gbps.16mib"),
        "spawn_join_us.forkserver": s.spread("spawn_join_us.forkserver"),
        "pool_map_tasks_per_s.chunksize1": s.spread("pool_map_tasks_per_s.chunksize1"),
        "executor_submit_per_s": s.spread("executor_submit_per_s"),
        "pool_map_tasks_per_s.trivial": s.spread("pool_map_tasks_per_s.trivial"),
        "pool_cpu_speedup": spread2(s, "pool_cpu_speedup"),
        "mpi_pool_tasks_per_s.trivial": s.spread("mpi_pool_tasks_per_s.trivial"),
        "mpi_pool_tasks_per_s.chunksize1": s.spread("mpi_pool_tasks_per_s.chunksize1"),
        "mpi_pool_cpu_speedup": spread2(s, "mpi_pool_cpu_speedup"),
        "executor_as_completed_per_s": s.spread("executor_as_completed_per_s"),
    });
    for (_, key) in crate::kill::ROLES {
        spread[key] = s.spread(key);
    }
    // Every other timed figure, floors and extra.* included, to three significant digits
    // (instruction counts are not timed: one figure, no rounds; `round.<key>` holds the
    // round medians of a figure sampled per operation, its spread's source).
    for key in
        s.0.keys()
            .filter(|k| !k.starts_with("instructions.") && !k.starts_with("round."))
    {
        if spread.get(*key).is_none() {
            spread[*key] = s
                .min_max(key)
                .map_or(Value::Null, |(a, b)| json!([sig3(a), sig3(b)]));
        }
    }
    let mut out = json!({
        "spawn_join_us": {
            "spawn": round1(m("spawn_join_us.spawn")),
            "forkserver": round1(m("spawn_join_us.forkserver")),
            "fork": round1(m("spawn_join_us.fork")),
        },
        "pipe_rtt_us": round2(m("pipe_rtt_us")),
        "async_pipe_rtt_us": round2(m("async_pipe_rtt_us")),
        "pipe_bytes_gbps": round2(m("pipe_bytes_gbps")),
        "lock_uncontended_ns": round1(m("lock_uncontended_ns")),
        "lock_value_ops_per_s": m("lock_value_ops_per_s").round(),
        "shm_gbps": round2(m("shm_gbps")),
        "shm_check_ok": flags.shm_check_ok,
        "queue_msgs_per_s": {
            "1p1c": m("queue_msgs_per_s.1p1c").round(),
            "2p2c": m("queue_msgs_per_s.2p2c").round(),
            "batch_1p1c": m("queue_msgs_per_s.batch_1p1c").round(),
        },
        "queue_rtt_us": round2(m("queue_rtt_us")),
        "async_queue_rtt_us": round2(m("async_queue_rtt_us")),
        "queue_1mib_gbps": round2(m("queue_1mib_gbps")),
        "queue_gbps": {
            "64kib": round2(m("queue_gbps.64kib")),
            "256kib": round2(m("queue_gbps.256kib")),
            "4mib": round2(m("queue_gbps.4mib")),
            "16mib": round2(m("queue_gbps.16mib")),
        },
        "dead_peer_notice_ms": round1(m("dead_peer_notice_ms")),
        "pool_map_tasks_per_s": {
            "trivial": m("pool_map_tasks_per_s.trivial").round(),
            "chunksize1": m("pool_map_tasks_per_s.chunksize1").round(),
        },
        "pool_cpu_speedup": round2(m("pool_cpu_speedup")),
        "pool_start_us": round1(m("pool_start_us")),
        "pool_recover_ms": round2(m("pool_recover_ms")),
        "mpi_pool_tasks_per_s": {
            "trivial": m("mpi_pool_tasks_per_s.trivial").round(),
            "chunksize1": m("mpi_pool_tasks_per_s.chunksize1").round(),
        },
        "mpi_pool_cpu_speedup": round2(m("mpi_pool_cpu_speedup")),
        "executor_submit_per_s": m("executor_submit_per_s").round(),
        "executor_as_completed_per_s": m("executor_as_completed_per_s").round(),
        "manager_list_ops_per_s": m("manager_list_ops_per_s").round(),
        "manager_dict_ops_per_s": m("manager_dict_ops_per_s").round(),
        "manager_check_ok": flags.manager_check_ok,
        "kill_notice_ms": kill_notice,
        "extra": {
            "manager_call_over_pipe_rtt": call_over_rtt,
            "pipe_rtt_beside_manager_us": round2(beside),
            "spawn_join_forkserver_beside_pool_us": round1(forkserver),
            "shm_fresh_gbps": round2(m("extra.shm_fresh_gbps")),
            "shm_copy_gbps": round2(m("extra.shm_copy_gbps")),
        },
        "floor": {
            "exec_self_us": round1(m("floor.exec_self_us")),
            "fork_wait_us": round1(m("floor.fork_wait_us")),
            "socketpair_rtt_us": round2(m("floor.socketpair_rtt_us")),
            "socketpair_bw_gbps": round2(m("floor.socketpair_bw_gbps")),
            "futex_lock_ns": round1(m("floor.futex_lock_ns")),
            "futex_mutex_ops_per_s": m("floor.futex_mutex_ops_per_s").round(),
            "fill_gbps": round2(m("floor.fill_gbps")),
            "copy_gbps": round2(m("floor.copy_gbps")),
            "shm_ring_msgs_per_s": m("floor.shm_ring_msgs_per_s").round(),
            "spin_rtt_us": (m("floor.spin_rtt_us") * 1000.0).round() / 1000.0,
            "cold_copy_gbps": {"16mib": round2(m("floor.cold_copy_gbps.16mib"))},
            "pipeline_gbps": {"16mib": round2(m("floor.pipeline_gbps.16mib"))},
        },
        "ratio_to_floor": ratio_to_floor,
        "spread": spread,
        "check_ok": flags.check_ok,
    });
    out["floor"]["forkserver_us"] = json!(round1(m("floor.forkserver_us")));
    // The fork server beside the floor of any fork server (a request, a fork, an exit, the
    // answer), as `spawn_join_us.fork` stands beside `floor.fork_wait_us`.
    out["ratio_to_floor"]["spawn_join_us.forkserver_to_floor.forkserver_us"] = json!(round2(
        m("spawn_join_us.forkserver") / m("floor.forkserver_us")
    ));
    // `queue_gbps.16mib` over each of its floors (the goal's is `ratio_to_floor`'s).
    out["ratio_to_big_floors"] = json!({
        "queue_gbps.16mib": big_message_ratios(s)
            .iter()
            .map(|(floor, r)| ((*floor).to_string(), json!(round2(*r))))
            .collect::<serde_json::Map<_, _>>()
    });
    out["async_pool_apply_per_s"] = json!(m("async_pool_apply_per_s").round());
    out["extra"]["queue_gbps_cloned"] =
        json!({"16mib": round2(m("extra.queue_gbps_cloned.16mib"))});
    out["extra"]["pool_apply_get_per_s"] = json!(m("extra.pool_apply_get_per_s").round());
    out["spread"]["async_pool_apply_per_s"] = s.spread("async_pool_apply_per_s");
    out["spread"]["extra.pool_apply_get_per_s"] = s.spread("extra.pool_apply_get_per_s");
    if let Some((peers, better, spreads)) = crate::peers::json_parts(s) {
        out["peers"] = peers;
        out["times_better_than_peers"] = better;
        for (k, v) in spreads {
            if out["spread"].get(k).is_none_or(Value::is_null) {
                out["spread"][k] = v;
            }
        }
    }
    let instructions: serde_json::Map<String, Value> = crate::instructions::KEYS
        .iter()
        .filter(|k| s.median(k).is_finite())
        .map(|k| {
            (
                k.trim_start_matches("instructions.").into(),
                json!(m(k).round()),
            )
        })
        .collect();
    if !instructions.is_empty() {
        out["instructions"] = Value::Object(instructions);
    }
    if let Some(p) = python {
        out["python"] = p.clone();
        out["times_better_than_python"] = Value::Object(times_better_than_python);
    }
    out
}

/// The figure at a dotted path of Python's JSON (`pool_map_tasks_per_s.chunksize1`).
fn lookup(v: &Value, dotted: &str) -> Option<f64> {
    dotted.split('.').try_fold(v, |v, k| v.get(k))?.as_f64()
}

/// The `[min, max]` of a figure's rounds to two decimals (a speed-up's spread).
fn spread2(s: &Samples, key: &str) -> Value {
    let v = s.0.get(key).map(Vec::as_slice).unwrap_or_default();
    let round2 = |x: f64| (x * 100.0).round() / 100.0;
    match (
        v.iter().copied().reduce(f64::min),
        v.iter().copied().reduce(f64::max),
    ) {
        (Some(a), Some(b)) => json!([round2(a), round2(b)]),
        _ => Value::Null,
    }
}

/// `x` rounded to three significant digits (a spread's bound).
fn sig3(x: f64) -> f64 {
    if x == 0.0 || !x.is_finite() {
        return x;
    }
    // Powers of ten are exact: multiply or divide by one, never by its inverse.
    match 2 - x.abs().log10().floor() as i32 {
        e if e >= 0 => (x * 10f64.powi(e)).round() / 10f64.powi(e),
        e => (x / 10f64.powi(-e)).round() * 10f64.powi(-e),
    }
}

fn round1(x: f64) -> f64 {
    (x * 10.0).round() / 10.0
}
