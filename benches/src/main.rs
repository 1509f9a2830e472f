//! mproc's benchmarks: `cargo xtask bench [--vs-python] [--quick]`.
//!
//! Prints a table for people and, as its last line, one JSON object with the keys of
//! `shared/bench/METRICS.md`. Every `floor.*` figure is the raw OS operation, measured in the
//! same run, interleaved round by round with mproc's own figures, so that each goal is a
//! ratio taken side by side on this (shared, noisy) machine. Figures are medians.

use std::collections::BTreeMap;
use std::process::Command;
use std::time::Instant;

use mproc::{Builder, StartMethod};
use mproc_sys::{ForkOutcome, SpawnSelf};
use serde_json::{Value, json};

mod executor;
mod manager;
mod pool;
mod queue;
mod sync;

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
    /// The `[min, max]` of a figure's rounds (`null` when it was not measured).
    fn spread(&self, key: &str) -> Value {
        let v = self.0.get(key).map(Vec::as_slice).unwrap_or_default();
        let min = v.iter().copied().reduce(f64::min);
        let max = v.iter().copied().reduce(f64::max);
        match (min, max) {
            (Some(a), Some(b)) => json!([a.round(), b.round()]),
            _ => Value::Null,
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
    let st = mproc_sys::wait_pid(pid, true).expect("waitpid");
    assert_eq!(st, Some(mproc::ExitStatus::Code(0)));
}

/// The floor of fork: fork, `_exit(0)` in the child, waitpid in the parent.
fn fork_wait_floor() {
    match mproc_sys::fork(None).expect("fork") {
        ForkOutcome::Child => mproc_sys::exit_now(0),
        ForkOutcome::Parent(pid) => {
            mproc_sys::wait_pid(pid, true).expect("waitpid");
        }
    }
}

/// Pins the calling process to CPU `cpu` when the machine has more than one (round trips
/// cost very different times on one CPU and across two, so both sides of a comparison must
/// be placed alike). The machine's count, not the process's: a child forked from a parent
/// pinned to CPU 0 may run on one CPU only, and must still move to its own.
fn pin(cpu: usize) {
    if mproc::cpu_count() > 1 {
        mproc_sys::set_cpu_affinity(&[cpu]).expect("sched_setaffinity");
    }
}

/// The pipe round-trip child: answers each number with the next one, until `None`.
fn echo_next(mut conn: mproc::Connection<Option<u64>>) {
    pin(1);
    while let Ok(Some(x)) = conn.recv() {
        conn.send(&Some(x + 1)).expect("send");
    }
}

/// The pipe bandwidth child: sends `n + 1` messages of `size` bytes (the first is a warm-up).
fn stream_bytes((mut tx, n, size): (mproc::Sender<()>, usize, usize)) {
    pin(1);
    let payload = vec![0x5au8; size];
    for _ in 0..=n {
        tx.send_bytes(&payload).expect("send");
    }
}

/// Forks a child that runs `f` on one end of a raw socketpair; returns the other end.
fn fork_raw(f: fn(std::os::unix::net::UnixStream)) -> (std::os::unix::net::UnixStream, u32) {
    let (ours, theirs) = std::os::unix::net::UnixStream::pair().expect("socketpair");
    match mproc_sys::fork(None).expect("fork") {
        ForkOutcome::Child => {
            drop(ours);
            f(theirs);
            mproc_sys::exit_now(0)
        }
        ForkOutcome::Parent(pid) => (ours, pid),
    }
}

/// The raw round-trip floor's child: echoes 8-byte words until the stream ends.
fn raw_echo(mut s: std::os::unix::net::UnixStream) {
    use std::io::{Read, Write};
    pin(1);
    let mut w = [0u8; 8];
    while s.read_exact(&mut w).is_ok() {
        let x = u64::from_le_bytes(w) + 1;
        if s.write_all(&x.to_le_bytes()).is_err() {
            break;
        }
    }
}

const BW_SIZE: usize = 1 << 20;

/// The raw bandwidth floor's child: writes 1 MiB blocks until the reader goes away.
fn raw_stream(mut s: std::os::unix::net::UnixStream) {
    use std::io::Write;
    pin(1);
    let payload = vec![0x5au8; BW_SIZE];
    while s.write_all(&payload).is_ok() {}
}

/// Measures round trips on an mproc pipe and on a raw socketpair, interleaved; returns
/// (mproc samples, floor samples) in µs, and whether every answer was right.
fn pipe_rtt(rounds: usize, per_round: usize) -> (Vec<f64>, Vec<f64>, bool) {
    use std::io::{Read, Write};
    pin(0); // the parent on CPU 0, each echoing child on CPU 1
    let (mut conn, theirs) = mproc::pipe::<Option<u64>>().expect("pipe");
    let mut child = Builder::new()
        .start_method(StartMethod::Fork)
        .spawn(echo_next, theirs)
        .expect("spawn");
    let (mut raw, raw_pid) = fork_raw(raw_echo);
    let (mut ours, mut floor, mut ok) = (Vec::new(), Vec::new(), true);
    let mut w = [0u8; 8];
    for round in 0..=rounds {
        for i in 0..per_round as u64 {
            let t = time_us(|| {
                conn.send(&Some(i)).expect("send");
                ok &= conn.recv().expect("recv") == Some(i + 1);
            });
            let f = time_us(|| {
                raw.write_all(&i.to_le_bytes()).expect("write");
                raw.read_exact(&mut w).expect("read");
            });
            ok &= u64::from_le_bytes(w) == i + 1;
            if round > 0 {
                // round 0 warms up
                ours.push(t);
                floor.push(f);
            }
        }
    }
    conn.send(&None).expect("stop");
    child.join().expect("join");
    drop(raw);
    mproc_sys::wait_pid(raw_pid, true).expect("wait");
    mproc_sys::set_cpu_affinity(&[]).expect("unpin");
    (ours, floor, ok)
}

/// Measures 1 MiB messages child → parent, mproc's `recv_bytes` against raw reads into one
/// buffer; returns GB/s per round for each.
fn pipe_bandwidth(rounds: usize, messages: usize) -> (Vec<f64>, Vec<f64>, bool) {
    use std::io::Read;
    let (mut ours, mut floor, mut ok) = (Vec::new(), Vec::new(), true);
    let gbps = |bytes: usize, us: f64| bytes as f64 / (us * 1e3);
    pin(0); // the receiving parent on CPU 0, each sending child on CPU 1
    for _ in 0..rounds {
        let (tx, mut rx) = mproc::channel::<()>().expect("channel");
        let mut child = Builder::new()
            .start_method(StartMethod::Fork)
            .spawn(stream_bytes, (tx, messages, BW_SIZE))
            .expect("spawn");
        ok &= rx.recv_bytes().expect("warm-up").len() == BW_SIZE;
        let mut got = 0;
        let us = time_us(|| {
            for _ in 0..messages {
                got += rx.recv_bytes().expect("recv").len();
            }
        });
        ok &= got == messages * BW_SIZE;
        ours.push(gbps(got, us));
        child.join().expect("join");

        let (mut raw, pid) = fork_raw(raw_stream);
        let mut buf = vec![0u8; BW_SIZE];
        raw.read_exact(&mut buf).expect("warm-up");
        let us = time_us(|| {
            for _ in 0..messages {
                raw.read_exact(&mut buf).expect("read");
            }
        });
        floor.push(gbps(messages * BW_SIZE, us));
        drop(raw);
        mproc_sys::wait_pid(pid, true).expect("wait");
    }
    mproc_sys::set_cpu_affinity(&[]).expect("unpin");
    (ours, floor, ok)
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
    // `--only-sync`: just the lock and shared-memory figures (for working on them).
    let only_sync = args.iter().any(|a| a == "--only-sync");
    // `--only-queue`: just the queue figures (and the copy floor they need).
    let only_queue = args.iter().any(|a| a == "--only-queue");
    // `--only-pool`: just the pool figures (and the fork server's spawn they compare with).
    let only_pool = args.iter().any(|a| a == "--only-pool");
    // `--only-manager`: just the manager figures (and the pipe round trip they compare with).
    let only_manager = args.iter().any(|a| a == "--only-manager");
    let only_sync = only_sync || only_queue || only_pool || only_manager;
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
    for round in 0..if only_sync { 0 } else { rounds } {
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

    eprintln!("measuring pipes ...");
    let pipe_rounds = if only_sync && !only_manager {
        0
    } else if quick {
        3
    } else {
        10
    };
    let (rtt, rtt_floor, rtt_ok) = pipe_rtt(pipe_rounds, 2000);
    for (t, f) in rtt.iter().zip(&rtt_floor) {
        s.add("pipe_rtt_us", *t);
        s.add("floor.socketpair_rtt_us", *f);
    }
    let bw_rounds = if only_sync {
        0
    } else if quick {
        2
    } else {
        5
    };
    let (bw, bw_floor, bw_ok) = pipe_bandwidth(bw_rounds, if quick { 256 } else { 1024 });
    for (t, f) in bw.iter().zip(&bw_floor) {
        s.add("pipe_bytes_gbps", *t);
        s.add("floor.socketpair_bw_gbps", *f);
    }
    check_ok &= rtt_ok && bw_ok;

    eprintln!("measuring locks and shared memory ...");
    let lock_rounds = if only_queue || only_pool || only_manager {
        0
    } else {
        rounds
    };
    let (unc, unc_floor) =
        sync::lock_uncontended(lock_rounds, if quick { 200_000 } else { 1_000_000 });
    for (t, f) in unc.iter().zip(&unc_floor) {
        s.add("lock_uncontended_ns", *t);
        s.add("floor.futex_lock_ns", *f);
    }
    for _ in 0..(if only_queue || only_pool || only_manager {
        0
    } else if quick {
        5
    } else {
        15
    }) {
        let (ours, floor, ok) = sync::lock_value(50_000);
        s.add("lock_value_ops_per_s", ours);
        s.add("floor.futex_mutex_ops_per_s", floor);
        check_ok &= ok;
    }
    let mut shm_check_ok = true;
    for _ in 0..(if only_pool || only_manager {
        0
    } else if quick {
        2
    } else {
        5
    }) {
        let (f, ok) = sync::shm(256 << 20);
        s.add("shm_gbps", f.warm_fill);
        s.add("extra.shm_fresh_gbps", f.fresh_fill);
        s.add("extra.shm_copy_gbps", f.warm_copy);
        s.add("floor.fill_gbps", f.floor_fill);
        s.add("floor.copy_gbps", f.floor_copy);
        shm_check_ok &= ok;
    }

    eprintln!("measuring queues ...");
    let q_rounds = if only_pool || only_manager {
        0
    } else if quick {
        2
    } else {
        5
    };
    let n_small = if quick { 2_000_000 } else { 10_000_000 };
    for _ in 0..q_rounds {
        let (r, ok) = queue::msgs_per_s(1, 1, n_small);
        s.add("queue_msgs_per_s.1p1c", r);
        check_ok &= ok;
        s.add("floor.shm_ring_msgs_per_s", queue::ring_floor(10 * n_small));
        let (r, ok) = queue::msgs_per_s(2, 2, n_small);
        s.add("queue_msgs_per_s.2p2c", r);
        check_ok &= ok;
        let (g, ok) = queue::gbps_1mib(if quick { 500 } else { 2000 });
        s.add("queue_1mib_gbps", g);
        check_ok &= ok;
    }
    let queue_rtt_rounds = if only_pool || only_manager { 0 } else { rounds };
    let (rtt, ok) = queue::rtt_us(queue_rtt_rounds, 20_000);
    for t in rtt {
        s.add("queue_rtt_us", t);
    }
    check_ok &= ok;
    for t in queue::spin_rtt_floor(queue_rtt_rounds, 20_000) {
        s.add("floor.spin_rtt_us", t);
    }
    let notice_rounds = if only_pool || only_manager {
        0
    } else if quick {
        3
    } else {
        9
    };
    let (notice, ok) = queue::dead_peer_notice_ms(notice_rounds);
    for t in notice {
        s.add("dead_peer_notice_ms", t);
    }
    check_ok &= ok;

    eprintln!("measuring pools ...");
    let pool_rounds = if quick { 3 } else { 7 };
    let skip_pool = only_sync && !only_pool;
    if !skip_pool {
        let warm = pool::warm_pool();
        let n_executor = if quick { 10_000 } else { 20_000 };
        let warm_executor = executor::warm_executor(n_executor);
        for _ in 0..pool_rounds {
            let (r, ok) = pool::map_rate(&warm, 1_000_000, None);
            s.add("pool_map_tasks_per_s.trivial", r);
            check_ok &= ok;
            let (r, ok) = pool::map_rate(&warm, if quick { 10_000 } else { 20_000 }, Some(1));
            s.add("pool_map_tasks_per_s.chunksize1", r);
            check_ok &= ok;
            let (x, ok) = pool::cpu_speedup(&warm, if quick { 5_000_000 } else { 10_000_000 });
            s.add("pool_cpu_speedup", x);
            check_ok &= ok;
            // Beside the chunksize1 map, whose rate is the submit figure's goal.
            let (r, ok) = executor::submit_rate(&warm_executor, n_executor);
            s.add("executor_submit_per_s", r);
            check_ok &= ok;
            let (r, ok) = executor::as_completed_rate(&warm_executor, n_executor);
            s.add("executor_as_completed_per_s", r);
            check_ok &= ok;
        }
        drop(warm_executor);
        drop(warm);
        for _ in 0..pool_rounds * 4 {
            // The goal is a ratio to the fork server's spawn; the spawn is measured here
            // too, beside each pool, as floors are (minutes apart, this machine's speed
            // can differ by a third).
            s.add(
                "extra.spawn_join_forkserver_beside_pool_us",
                time_us(|| check_ok &= spawn_join(StartMethod::ForkServer, 3)),
            );
            let (us, ok) = pool::start_us();
            s.add("pool_start_us", us);
            check_ok &= ok;
        }
        for _ in 0..pool_rounds {
            let (ms, ok) = pool::recover_ms();
            s.add("pool_recover_ms", ms);
            check_ok &= ok;
        }
    }

    let mut manager_check_ok = true;
    if !only_sync || only_manager {
        eprintln!("measuring managers ...");
        let m = manager::start_pinned();
        manager::round(&m); // warm-up: the server's first objects and connections
        for _ in 0..if quick { 3 } else { 7 } {
            let (list, dict, ok) = manager::round(&m);
            s.add("manager_list_ops_per_s", list);
            s.add("manager_dict_ops_per_s", dict);
            manager_check_ok &= ok;
            // The goal is a ratio to `pipe_rtt_us`; the round trip is measured here too,
            // beside each round, to show how far the machine drifted since.
            let (rtt, _, ok) = pipe_rtt(1, 2000);
            for t in rtt {
                s.add("extra.pipe_rtt_beside_manager_us", t);
            }
            check_ok &= ok;
        }
        m.shutdown().expect("manager shutdown");
    }

    let python = match (arg_after("--python"), arg_after("--python-script")) {
        (Some(py), Some(script)) => run_python(&py, &script, quick, only_manager, only_pool),
        _ => None,
    };

    report(
        &s,
        Flags {
            check_ok,
            shm_check_ok,
            manager_check_ok,
        },
        python.as_ref(),
    );
}

fn run_python(
    python: &str,
    script: &str,
    quick: bool,
    only_manager: bool,
    only_pool: bool,
) -> Option<Value> {
    eprintln!("running Python's multiprocessing for comparison ({python} {script}) ...");
    let mut cmd = Command::new(python);
    cmd.arg(script);
    if quick {
        cmd.arg("--quick");
    }
    if only_manager {
        cmd.arg("--only-manager");
    }
    if only_pool {
        cmd.arg("--only-pool");
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

/// One line of the report: a figure, the floor it is compared with, and its goal.
struct Row {
    key: &'static str,
    ours: f64,
    floor: f64,
    /// Higher is better (bandwidth) rather than lower (latency).
    higher_is_better: bool,
    met: bool,
    goal: &'static str,
}

/// The correctness flags that ride along with the figures.
struct Flags {
    check_ok: bool,
    shm_check_ok: bool,
    manager_check_ok: bool,
}

fn report(s: &Samples, flags: Flags, python: Option<&Value>) {
    let Flags {
        check_ok,
        shm_check_ok,
        manager_check_ok,
    } = flags;
    let m = |k: &str| s.median(k);
    let py = |k: &str| python.and_then(|p| lookup(p, k));
    let exec_floor = m("floor.exec_self_us");
    let fork_floor = m("floor.fork_wait_us");
    let rtt_floor = m("floor.socketpair_rtt_us");
    let bw_floor = m("floor.socketpair_bw_gbps");
    let lock_floor = m("floor.futex_lock_ns");
    let mutex_floor = m("floor.futex_mutex_ops_per_s");
    let fill_floor = m("floor.fill_gbps");
    let ring_floor = m("floor.shm_ring_msgs_per_s");
    let spin_floor = m("floor.spin_rtt_us");
    let copy_floor = m("floor.copy_gbps");
    let forkserver = m("extra.spawn_join_forkserver_beside_pool_us");
    // An executor's task is a pool task with a handle: its rate is held to the chunksize1
    // map's of the same run, and its `as_completed` to Python's.
    let chunksize1 = m("pool_map_tasks_per_s.chunksize1");
    let py_as_completed = py("executor_as_completed_per_s");
    // A manager call is one round trip to the server: its floor is one pipe round trip
    // per call, and its goal a call of at most 1.3 of them (and 5 × Python's rate).
    let rtt = m("pipe_rtt_us");
    let call_floor = 1e6 / rtt;
    let manager_goal = |key: &'static str| {
        let python = py(key);
        move |v: f64| 1e6 / v <= 1.3 * rtt && python.is_none_or(|p| v >= 5.0 * p)
    };
    let row = |key, floor, higher_is_better, met: &dyn Fn(f64) -> bool, goal| {
        let ours = m(key);
        Row {
            key,
            ours,
            floor,
            higher_is_better,
            met: met(ours),
            goal,
        }
    };
    let rows = [
        row(
            "spawn_join_us.spawn",
            exec_floor,
            false,
            &|v| v <= 1.15 * exec_floor,
            "≤ 1.15 × floor.exec_self_us",
        ),
        row(
            "spawn_join_us.forkserver",
            fork_floor,
            false,
            &|v| v <= 300.0,
            "≤ 300 µs",
        ),
        row(
            "spawn_join_us.fork",
            fork_floor,
            false,
            &|v| v <= 1.5 * fork_floor,
            "≤ 1.5 × floor.fork_wait_us",
        ),
        row(
            "pipe_rtt_us",
            rtt_floor,
            false,
            &|v| v <= 1.1 * rtt_floor,
            "≤ 1.1 × floor.socketpair_rtt_us",
        ),
        row(
            "pipe_bytes_gbps",
            bw_floor,
            true,
            &|v| v >= 0.9 * bw_floor && v >= 6.4,
            "≥ 0.9 × floor.socketpair_bw_gbps, ≥ 6.4",
        ),
        row(
            "lock_uncontended_ns",
            lock_floor,
            false,
            &|v| v <= 12.0,
            "≤ 12 ns",
        ),
        row(
            "lock_value_ops_per_s",
            mutex_floor,
            true,
            &|v| v >= 10e6,
            "≥ 10M op/s",
        ),
        row(
            "shm_gbps",
            fill_floor,
            true,
            &|v| v >= 0.9 * fill_floor,
            "≥ 0.9 × floor.fill_gbps",
        ),
        row(
            "queue_msgs_per_s.1p1c",
            ring_floor,
            true,
            &|v| v >= 20e6,
            "≥ 20M msg/s",
        ),
        row(
            "queue_msgs_per_s.2p2c",
            ring_floor,
            true,
            &|v| v >= 10e6,
            "≥ 10M msg/s",
        ),
        row("queue_rtt_us", spin_floor, false, &|v| v <= 2.0, "≤ 2 µs"),
        row(
            "dead_peer_notice_ms",
            f64::NAN,
            false,
            &|v| v <= 150.0,
            "≤ 150 ms",
        ),
        row(
            "queue_1mib_gbps",
            copy_floor,
            true,
            &|v| v >= 10.0,
            "≥ 10 GB/s",
        ),
        row(
            "pool_map_tasks_per_s.trivial",
            f64::NAN,
            true,
            &|v| v >= 50e6,
            "≥ 50M task/s",
        ),
        row(
            "pool_map_tasks_per_s.chunksize1",
            f64::NAN,
            true,
            &|v| v >= 1e6,
            "≥ 1M task/s",
        ),
        row(
            "pool_cpu_speedup",
            2.0,
            true,
            &|v| v >= 1.9,
            "≥ 1.9 (2 cores)",
        ),
        row(
            "pool_start_us",
            forkserver,
            false,
            &|v| v <= 3.0 * forkserver,
            "≤ 3 × spawn_join_us.forkserver (beside)",
        ),
        row(
            "pool_recover_ms",
            f64::NAN,
            false,
            &|v| v <= 50.0,
            "≤ 50 ms",
        ),
        row(
            "executor_submit_per_s",
            chunksize1,
            true,
            &|v| v >= 0.8 * chunksize1,
            "≥ 0.8 × pool_map_tasks_per_s.chunksize1",
        ),
        row(
            "executor_as_completed_per_s",
            f64::NAN,
            true,
            &|v| py_as_completed.is_none_or(|p| v >= 20.0 * p),
            "≥ 20 × Python",
        ),
        row(
            "manager_list_ops_per_s",
            call_floor,
            true,
            &manager_goal("manager_list_ops_per_s"),
            "call ≤ 1.3 × pipe_rtt_us, ≥ 5 × Python",
        ),
        row(
            "manager_dict_ops_per_s",
            call_floor,
            true,
            &manager_goal("manager_dict_ops_per_s"),
            "call ≤ 1.3 × pipe_rtt_us, ≥ 5 × Python",
        ),
    ];
    println!("\nmproc benchmarks (medians; floors measured in the same run)\n");
    println!(
        "{:<32} {:>12} {:>12} {:>7} {:>12} {:>9}  {:<42} met",
        "key", "mproc", "floor", "×floor", "python", "vs py", "goal"
    );
    let mut vs_python = serde_json::Map::new();
    let mut vs_floor = serde_json::Map::new();
    let unit = |r: &Row| match r.key {
        "lock_uncontended_ns" => "ns",
        k if k == "lock_value_ops_per_s" || k.starts_with("manager_") => "op/s",
        k if k.starts_with("queue_msgs")
            || k.starts_with("pool_map")
            || k.starts_with("executor_") =>
        {
            "/s"
        }
        "pool_cpu_speedup" => "×",
        "pool_recover_ms" => "ms",
        _ if r.higher_is_better => "GB/s",
        _ => "µs",
    };
    for r in &rows {
        let py = py(r.key);
        let ratio_floor = r.ours / r.floor;
        if r.floor.is_finite() {
            vs_floor.insert(r.key.into(), json!((ratio_floor * 100.0).round() / 100.0));
        }
        // How many times better than Python: a speed-up for latency, a multiple for bandwidth.
        let better = py.map(|p| {
            if r.higher_is_better {
                r.ours / p
            } else {
                p / r.ours
            }
        });
        if let Some(b) = better {
            vs_python.insert(r.key.into(), json!(round1(b)));
        }
        println!(
            "{:<32} {:>8.2}{:>4} {:>12} {:>7} {:>12} {:>9}  {:<42} {}",
            r.key,
            r.ours,
            unit(r),
            if r.floor.is_finite() {
                format!("{:.2}{}", r.floor, unit(r))
            } else {
                "-".into()
            },
            if r.floor.is_finite() {
                format!("{ratio_floor:.2}")
            } else {
                "-".into()
            },
            py.map(|p| format!("{p:.2}{}", unit(r)))
                .unwrap_or_else(|| "-".into()),
            better
                .map(|b| format!("{b:.1}×"))
                .unwrap_or_else(|| "-".into()),
            r.goal,
            if r.met { "yes" } else { "NO" }
        );
    }
    for k in [
        "floor.exec_self_us",
        "floor.fork_wait_us",
        "floor.socketpair_rtt_us",
        "floor.socketpair_bw_gbps",
        "floor.futex_lock_ns",
        "floor.futex_mutex_ops_per_s",
        "floor.fill_gbps",
        "floor.copy_gbps",
        "floor.shm_ring_msgs_per_s",
        "floor.spin_rtt_us",
        "extra.shm_fresh_gbps",
        "extra.shm_copy_gbps",
        "extra.spawn_join_forkserver_beside_pool_us",
        "extra.pipe_rtt_beside_manager_us",
    ] {
        println!("{k:<28} {:>14.2}", m(k));
    }
    // A manager call in pipe round trips (goal ≤ 1.3), against this run's `pipe_rtt_us` and
    // against the one measured beside the manager's rounds.
    let beside = m("extra.pipe_rtt_beside_manager_us");
    let mut call_over_rtt = serde_json::Map::new();
    for (key, name) in [
        ("manager_list_ops_per_s", "list"),
        ("manager_dict_ops_per_s", "dict"),
    ] {
        let call_us = 1e6 / m(key);
        if call_us.is_finite() {
            println!(
                "manager {name} call: {call_us:.2} µs = {:.2} × pipe_rtt_us ({:.2} × the round trip beside it)",
                call_us / rtt,
                call_us / beside
            );
            call_over_rtt.insert(name.into(), json!((call_us / rtt * 100.0).round() / 100.0));
        }
    }
    println!(
        "check_ok: {check_ok}, shm_check_ok: {shm_check_ok}, manager_check_ok: {manager_check_ok}"
    );
    let mut out = json!({
        "spawn_join_us": {
            "spawn": round1(m("spawn_join_us.spawn")),
            "forkserver": round1(m("spawn_join_us.forkserver")),
            "fork": round1(m("spawn_join_us.fork")),
        },
        "pipe_rtt_us": (m("pipe_rtt_us") * 100.0).round() / 100.0,
        "pipe_bytes_gbps": (m("pipe_bytes_gbps") * 100.0).round() / 100.0,
        "lock_uncontended_ns": round1(m("lock_uncontended_ns")),
        "lock_value_ops_per_s": m("lock_value_ops_per_s").round(),
        "shm_gbps": (m("shm_gbps") * 100.0).round() / 100.0,
        "shm_check_ok": shm_check_ok,
        "queue_msgs_per_s": {
            "1p1c": m("queue_msgs_per_s.1p1c").round(),
            "2p2c": m("queue_msgs_per_s.2p2c").round(),
        },
        "queue_rtt_us": (m("queue_rtt_us") * 100.0).round() / 100.0,
        "queue_1mib_gbps": (m("queue_1mib_gbps") * 100.0).round() / 100.0,
        "dead_peer_notice_ms": round1(m("dead_peer_notice_ms")),
        "pool_map_tasks_per_s": {
            "trivial": m("pool_map_tasks_per_s.trivial").round(),
            "chunksize1": m("pool_map_tasks_per_s.chunksize1").round(),
        },
        "pool_cpu_speedup": (m("pool_cpu_speedup") * 100.0).round() / 100.0,
        "pool_start_us": round1(m("pool_start_us")),
        "pool_recover_ms": (m("pool_recover_ms") * 100.0).round() / 100.0,
        "executor_submit_per_s": m("executor_submit_per_s").round(),
        "executor_as_completed_per_s": m("executor_as_completed_per_s").round(),
        "manager_list_ops_per_s": m("manager_list_ops_per_s").round(),
        "manager_dict_ops_per_s": m("manager_dict_ops_per_s").round(),
        "manager_check_ok": manager_check_ok,
        "extra": {
            "manager_call_over_pipe_rtt": call_over_rtt,
            "pipe_rtt_beside_manager_us": (beside * 100.0).round() / 100.0,
            "spawn_join_forkserver_beside_pool_us": round1(forkserver),
            "shm_fresh_gbps": (m("extra.shm_fresh_gbps") * 100.0).round() / 100.0,
            "shm_copy_gbps": (m("extra.shm_copy_gbps") * 100.0).round() / 100.0,
        },
        "floor": {
            "exec_self_us": round1(exec_floor),
            "fork_wait_us": round1(fork_floor),
            "socketpair_rtt_us": (rtt_floor * 100.0).round() / 100.0,
            "socketpair_bw_gbps": (bw_floor * 100.0).round() / 100.0,
            "futex_lock_ns": round1(lock_floor),
            "futex_mutex_ops_per_s": mutex_floor.round(),
            "fill_gbps": (fill_floor * 100.0).round() / 100.0,
            "copy_gbps": (copy_floor * 100.0).round() / 100.0,
            "shm_ring_msgs_per_s": ring_floor.round(),
            "spin_rtt_us": (spin_floor * 1000.0).round() / 1000.0,
        },
        "ratio_to_floor": vs_floor,
        "spread": {
            "manager_list_ops_per_s": s.spread("manager_list_ops_per_s"),
            "manager_dict_ops_per_s": s.spread("manager_dict_ops_per_s"),
            "dead_peer_notice_ms": s.spread("dead_peer_notice_ms"),
            "queue_msgs_per_s.1p1c": s.spread("queue_msgs_per_s.1p1c"),
            "spawn_join_us.forkserver": s.spread("spawn_join_us.forkserver"),
            "pool_map_tasks_per_s.chunksize1": s.spread("pool_map_tasks_per_s.chunksize1"),
            "executor_submit_per_s": s.spread("executor_submit_per_s"),
            "executor_as_completed_per_s": s.spread("executor_as_completed_per_s"),
        },
        "check_ok": check_ok,
    });
    if let Some(p) = python {
        out["python"] = p.clone();
        out["times_better_than_python"] = Value::Object(vs_python);
    }
    println!("{out}");
}
