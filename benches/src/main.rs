//! mproc's benchmarks: `cargo xtask bench [--vs-python] [--quick]`.
//!
//! Prints a table for people and, as its last line, one JSON object with the keys of
//! `shared/bench/METRICS.md`. Every `floor.*` figure is the raw OS operation, measured in the
//! same run, interleaved round by round with mproc's own figures, so that each goal is a
//! ratio taken side by side on this (shared, noisy) machine. Figures are medians.

use std::collections::BTreeMap;
use std::process::Command;
use std::time::Instant;

use mproc::StartMethod;
use serde_json::{Value, json};

mod big_floor;
mod executor;
mod instructions;
mod kill;
mod manager;
#[cfg(feature = "mpi")]
mod mpi;
mod peers;
mod pipe;
mod plot;
mod pool;
mod pool_async;
mod queue;
mod report;
mod spawn;
mod sync;

use spawn::{FLOOR_ENV, ForkServerFloor, exec_self_floor, fork_wait_floor, spawn_join};

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
    /// The min and max of a figure's rounds, when it was measured: of the round medians
    /// kept under `round.<key>` for a figure sampled per operation, when there are any.
    fn min_max(&self, key: &str) -> Option<(f64, f64)> {
        let rounds = self.0.get(format!("round.{key}").as_str());
        let v = rounds
            .filter(|r| !r.is_empty())
            .or_else(|| self.0.get(key))?;
        let min = v.iter().copied().reduce(f64::min)?;
        Some((min, v.iter().copied().fold(min, f64::max)))
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

/// The correctness flags that ride along with the figures.
struct Flags {
    check_ok: bool,
    shm_check_ok: bool,
    manager_check_ok: bool,
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

/// What the command line asks for.
struct Options {
    /// `--quick`: fewer rounds, smaller counts.
    quick: bool,
    /// `--only-sync` (just the lock and shared-memory figures, for working on them), or any
    /// other `--only-*` flag: only the figures a flag names are measured.
    only_sync: bool,
    /// `--only-queue`: just the queue figures (and the copy floor they need).
    only_queue: bool,
    /// `--only-pool`: just the pool figures (and the fork server's spawn they compare with).
    only_pool: bool,
    /// `--only-manager`: just the manager figures (and the pipe round trip they compare with).
    only_manager: bool,
    /// `--only-kill`: just the `kill_notice_ms.<role>` figures.
    only_kill: bool,
    /// `--only-pipe`: just the pipe figures (and their peers' with `--peers`).
    only_pipe: bool,
    /// `--peers <binary>`: the Rust peers' figures too, from the binary of `benches/peers/`,
    /// each between mproc's own rounds of the figure it is compared with.
    peers: Option<peers::Peers>,
    /// `--only-spawn`: just the `spawn_join_us.*` figures and their floors.
    only_spawn: bool,
    /// `--python <interpreter> --python-script <script>`: the comparison to run.
    python: Option<(String, String)>,
    /// `--instructions`: the hot paths' instruction counts under callgrind, too;
    /// `--only-instructions`: those alone.
    instructions: bool,
    only_instructions: bool,
    /// `--plot FILE`: the run's ratios drawn as an SVG chart into FILE; with
    /// `--plot-from SAVED.json`, those of a saved JSON line, without measuring.
    plot: Option<String>,
    plot_from: Option<String>,
}

impl Options {
    fn parse() -> Self {
        let args: Vec<String> = std::env::args().collect();
        let flag = |name: &str| args.iter().any(|a| a == name);
        let arg_after = |flag: &str| {
            args.iter()
                .position(|a| a == flag)
                .and_then(|i| args.get(i + 1))
                .cloned()
        };
        let only_sync = flag("--only-sync");
        let only_queue = flag("--only-queue");
        let only_pool = flag("--only-pool");
        let only_manager = flag("--only-manager");
        let only_kill = flag("--only-kill");
        let only_pipe = flag("--only-pipe");
        Options {
            quick: flag("--quick"),
            only_sync: only_sync
                || only_queue
                || only_pool
                || only_manager
                || only_kill
                || only_pipe,
            only_queue,
            only_pool,
            only_manager,
            only_kill,
            only_pipe,
            peers: arg_after("--peers").map(peers::Peers::new),
            only_spawn: flag("--only-spawn"),
            python: arg_after("--python").zip(arg_after("--python-script")),
            instructions: flag("--instructions") || flag("--only-instructions"),
            only_instructions: flag("--only-instructions"),
            plot: arg_after("--plot"),
            plot_from: arg_after("--plot-from"),
        }
    }

    /// The rounds of the figures measured round by round beside their floors.
    fn rounds(&self) -> usize {
        if self.quick { 3 } else { 10 }
    }
}

fn main() {
    if std::env::var_os(FLOOR_ENV).is_some() {
        return;
    }
    mproc::init();
    #[cfg(feature = "mpi")]
    if std::env::args().any(|a| a == mpi::JOB_FLAG) {
        // A rank of the MPI pool's job (`measure_mpi_pools`), not the bench.
        mpi::job_main();
        return;
    }
    if std::env::args().nth(1).as_deref() == Some(instructions::FLAG) {
        // A hot path run under callgrind (`measure_instructions`), not the bench.
        let args: Vec<String> = std::env::args().collect();
        std::process::exit(if instructions::child_main(&args) {
            0
        } else {
            1
        });
    }
    let opts = Options::parse();
    if let (Some(saved), Some(file)) = (&opts.plot_from, &opts.plot) {
        if let Err(e) = plot::redraw(saved, file) {
            eprintln!("cannot draw {saved} into {file}: {e}");
            std::process::exit(1);
        }
        return;
    }
    let mut s = Samples(BTreeMap::new());
    let mut flags = Flags {
        check_ok: true,
        shm_check_ok: true,
        manager_check_ok: true,
    };
    if opts.instructions {
        measure_instructions(&mut s, &mut flags);
        if opts.only_instructions {
            report::report(&s, flags, None);
            return;
        }
    }
    warm_up(&mut flags);
    if opts.only_spawn {
        measure_spawns(&opts, &mut s, &mut flags);
    } else if !opts.only_kill {
        measure_spawns(&opts, &mut s, &mut flags);
        measure_pipes(&opts, &mut s, &mut flags);
        measure_locks(&opts, &mut s, &mut flags);
        measure_queues(&opts, &mut s, &mut flags);
        measure_pools(&opts, &mut s, &mut flags);
        measure_mpi_pools(&opts, &mut s, &mut flags);
        measure_managers(&opts, &mut s, &mut flags);
    }
    measure_kills(&opts, &mut s, &mut flags);
    let python = opts.python.as_ref().and_then(|(py, script)| {
        run_python(py, script, opts.quick, opts.only_manager, opts.only_pool)
    });
    let json = report::report(&s, flags, python.as_ref());
    if let Some(file) = &opts.plot {
        match plot::write_svg(&json, file) {
            Ok(()) => eprintln!("wrote the chart to {file}"),
            Err(e) => eprintln!("cannot write the chart to {file}: {e}"),
        }
    }
}

/// Warms up the page cache, the fork server, lazily computed fingerprints.
fn warm_up(flags: &mut Flags) {
    for m in StartMethod::all() {
        flags.check_ok &= spawn_join(m, 1);
    }
    exec_self_floor();
    fork_wait_floor();
}

/// A child started and joined under each start method, beside its floor.
fn measure_spawns(opts: &Options, s: &mut Samples, flags: &mut Flags) {
    let rounds = opts.rounds();
    let (n_exec, n_fork) = if opts.quick { (10, 30) } else { (25, 60) };
    eprintln!("measuring {rounds} rounds ...");
    // Forked now, while this process has one thread, as mproc's fork server is forked
    // from a copy of this binary.
    let mut server_floor = (!opts.only_sync).then(ForkServerFloor::start);
    for round in 0..if opts.only_sync { 0 } else { rounds } {
        let from = peers::count(s, "spawn_join_us.spawn");
        let from_floor = peers::count(s, "floor.exec_self_us");
        for i in 0..n_exec {
            s.add("floor.exec_self_us", time_us(exec_self_floor));
            let mut ok = true;
            s.add(
                "spawn_join_us.spawn",
                time_us(|| ok = spawn_join(StartMethod::Spawn, i)),
            );
            flags.check_ok &= ok;
        }
        for i in 0..n_fork {
            s.add("floor.fork_wait_us", time_us(fork_wait_floor));
            if let Some(f) = &mut server_floor {
                s.add("floor.forkserver_us", time_us(|| f.round()));
            }
            let mut ok = true;
            s.add(
                "spawn_join_us.fork",
                time_us(|| ok = spawn_join(StartMethod::Fork, i)),
            );
            s.add(
                "spawn_join_us.forkserver",
                time_us(|| ok &= spawn_join(StartMethod::ForkServer, i)),
            );
            flags.check_ok &= ok;
        }
        peers::note_round(s, "spawn_join_us.spawn", from);
        peers::note_round(s, "floor.exec_self_us", from_floor);
        if let Some(p) = &opts.peers {
            flags.check_ok &= p.measure(s, peers::PROCSPAWN_FLOOR, 1, n_exec as usize);
            flags.check_ok &= p.measure(s, peers::PROCSPAWN_SPAWN, 1, n_exec as usize);
        }
        eprintln!("  round {}/{rounds} done", round + 1);
    }
}

/// Pipe round trips and bandwidth, beside a raw socketpair's.
fn measure_pipes(opts: &Options, s: &mut Samples, flags: &mut Flags) {
    let quick = opts.quick;
    eprintln!("measuring pipes ...");
    let pipe_rounds = if opts.only_sync && !opts.only_manager && !opts.only_pipe {
        0
    } else if quick {
        3
    } else {
        10
    };
    // A round each (its own echoing child, warmed up), then the peers' round trips.
    for _ in 0..pipe_rounds {
        let rtt = pipe::rtt(1, 2000, true);
        let from = peers::count(s, "pipe_rtt_us");
        let from_async = peers::count(s, "async_pipe_rtt_us");
        for (t, f) in rtt.ours.iter().zip(&rtt.floor) {
            s.add("pipe_rtt_us", *t);
            s.add("floor.socketpair_rtt_us", *f);
        }
        for a in &rtt.awaited {
            s.add("async_pipe_rtt_us", *a);
        }
        peers::note_round(s, "pipe_rtt_us", from);
        peers::note_round(s, "async_pipe_rtt_us", from_async);
        flags.check_ok &= rtt.ok;
        if let Some(p) = &opts.peers {
            flags.check_ok &= p.measure(s, peers::IPC_RTT, 1, 2000);
            flags.check_ok &= p.measure(s, peers::INTERPROCESS_RTT, 1, 2000);
        }
    }
    let bw_rounds = if opts.only_sync && !opts.only_pipe {
        0
    } else if quick {
        2
    } else {
        5
    };
    let messages = if quick { 256 } else { 1024 };
    for _ in 0..bw_rounds {
        let (bw, bw_floor, bw_ok) = pipe::bandwidth_gbps(1, messages);
        for (t, f) in bw.iter().zip(&bw_floor) {
            s.add("pipe_bytes_gbps", *t);
            s.add("floor.socketpair_bw_gbps", *f);
        }
        flags.check_ok &= bw_ok;
        if let Some(p) = &opts.peers {
            flags.check_ok &= p.measure(s, peers::IPC_BYTES, 1, messages);
        }
    }
}

/// Locks, a locked value and shared memory, beside a bare futex and `memset`/`memcpy`.
fn measure_locks(opts: &Options, s: &mut Samples, flags: &mut Flags) {
    let quick = opts.quick;
    let (only_queue, only_pool, only_manager) =
        (opts.only_queue, opts.only_pool, opts.only_manager);
    eprintln!("measuring locks and shared memory ...");
    let skip = only_queue || only_pool || only_manager || opts.only_pipe;
    let lock_rounds = if skip { 0 } else { opts.rounds() };
    let (unc, unc_floor) =
        sync::lock_uncontended(lock_rounds, if quick { 200_000 } else { 1_000_000 });
    for (t, f) in unc.iter().zip(&unc_floor) {
        s.add("lock_uncontended_ns", *t);
        s.add("floor.futex_lock_ns", *f);
    }
    for _ in 0..(if skip {
        0
    } else if quick {
        5
    } else {
        15
    }) {
        let (ours, floor, ok) = sync::lock_value(if quick { 100_000 } else { 500_000 });
        s.add("lock_value_ops_per_s", ours);
        s.add("floor.futex_mutex_ops_per_s", floor);
        flags.check_ok &= ok;
    }
    for _ in 0..(if only_pool || only_manager || opts.only_pipe {
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
        flags.shm_check_ok &= ok;
    }
}

/// Queue rates, round trips, 1 MiB items and a dead peer's notice, beside their floors.
fn measure_queues(opts: &Options, s: &mut Samples, flags: &mut Flags) {
    let quick = opts.quick;
    let skip = opts.only_pool || opts.only_manager || opts.only_pipe;
    eprintln!("measuring queues ...");
    let q_rounds = if skip {
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
        flags.check_ok &= ok;
        if let Some(p) = &opts.peers {
            // A tenth of the count: at the peer's rate (a syscall per message) the queue's
            // would take tens of seconds a round, and a rate over 1M is past its warm-up.
            flags.check_ok &= p.measure(s, peers::IPC_MSGS, 1, (n_small / 10) as usize);
        }
        s.add("floor.shm_ring_msgs_per_s", queue::ring_floor(10 * n_small));
        let (r, ok) = queue::batch_msgs_per_s(n_small);
        s.add("queue_msgs_per_s.batch_1p1c", r);
        flags.check_ok &= ok;
        let (r, ok) = queue::msgs_per_s(2, 2, n_small);
        s.add("queue_msgs_per_s.2p2c", r);
        flags.check_ok &= ok;
        let (g, ok) = queue::gbps_1mib(if quick { 500 } else { 2000 });
        s.add("queue_1mib_gbps", g);
        flags.check_ok &= ok;
        for (key, size) in queue::GBPS_SIZES {
            let total: usize = if quick { 256 << 20 } else { 1 << 30 };
            let (g, ok) = queue::gbps(size, (total / size) as u64);
            s.add(key, g);
            flags.check_ok &= ok;
        }
        // The 16 MiB figure's floors, beside it: two processes handing 16 MiB over through
        // two shared slots (a copy in, a copy out), and one cold 16 MiB copy.
        let (g, ok) = big_floor::pipeline_gbps(if quick { 16 } else { 64 });
        s.add("floor.pipeline_gbps.16mib", g);
        flags.check_ok &= ok;
        let copies = if quick { 8 } else { 32 };
        s.add(
            "floor.cold_copy_gbps.16mib",
            big_floor::cold_copy_gbps(copies),
        );
        // The largest size once more with an owned put of a clone: what the clone costs.
        let (g, ok) = queue::gbps_cloned(16 << 20, if quick { 16 } else { 64 });
        s.add("extra.queue_gbps_cloned.16mib", g);
        flags.check_ok &= ok;
    }
    let queue_rtt_rounds = if skip { 0 } else { opts.rounds() };
    let (rtt, ok) = queue::rtt_us(queue_rtt_rounds, 20_000);
    for t in rtt {
        s.add("queue_rtt_us", t);
    }
    flags.check_ok &= ok;
    // The same round trip awaited on a current-thread runtime, right after: same run.
    let (rtt, ok) = queue::async_rtt_us(queue_rtt_rounds, 20_000);
    for t in rtt {
        s.add("async_queue_rtt_us", t);
    }
    flags.check_ok &= ok;
    for t in queue::spin_rtt_floor(queue_rtt_rounds, 20_000) {
        s.add("floor.spin_rtt_us", t);
    }
    let notice_rounds = if skip {
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
    flags.check_ok &= ok;
}

/// Pool and executor rates, a pool's start beside the fork server's spawn, its recovery.
fn measure_pools(opts: &Options, s: &mut Samples, flags: &mut Flags) {
    let quick = opts.quick;
    eprintln!("measuring pools ...");
    let pool_rounds = if quick { 3 } else { 7 };
    let skip_pool = opts.only_sync && !opts.only_pool;
    if skip_pool {
        return;
    }
    let warm = pool::warm_pool();
    let n_executor = if quick { 10_000 } else { 20_000 };
    let warm_executor = executor::warm_executor(n_executor);
    // The async figure and its blocking sibling: 10,000 trivial tasks each, a warm-up
    // round of both first (their first results touch fresh pages of the pool's rings).
    let n_apply = 10_000;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("tokio runtime");
    pool_async::apply_get_rate(&warm, n_apply);
    pool_async::async_apply_rate(&runtime, &warm, n_apply);
    for _ in 0..pool_rounds {
        let (r, ok) = pool::map_rate(&warm, 1_000_000, None);
        s.add("pool_map_tasks_per_s.trivial", r);
        flags.check_ok &= ok;
        let (r, ok) = pool::map_rate(&warm, if quick { 10_000 } else { 20_000 }, Some(1));
        s.add("pool_map_tasks_per_s.chunksize1", r);
        flags.check_ok &= ok;
        if let Some(p) = &opts.peers {
            flags.check_ok &= p.measure(s, peers::PROCSPAWN_POOL, 1, 10_000);
        }
        let (x, ok) = pool::cpu_speedup(
            &warm,
            if quick {
                pool::CPU_WORK_QUICK
            } else {
                pool::CPU_WORK
            },
        );
        s.add("pool_cpu_speedup", x);
        flags.check_ok &= ok;
        // Beside the chunksize1 map, whose rate is the submit figure's goal.
        let (r, ok) = executor::submit_rate(&warm_executor, n_executor);
        s.add("executor_submit_per_s", r);
        flags.check_ok &= ok;
        let (r, ok) = executor::as_completed_rate(&warm_executor, n_executor);
        s.add("executor_as_completed_per_s", r);
        flags.check_ok &= ok;
        let (r, ok) = pool_async::apply_get_rate(&warm, n_apply);
        s.add("extra.pool_apply_get_per_s", r);
        flags.check_ok &= ok;
        let (r, ok) = pool_async::async_apply_rate(&runtime, &warm, n_apply);
        s.add("async_pool_apply_per_s", r);
        flags.check_ok &= ok;
    }
    drop(warm_executor);
    drop(warm);
    for _ in 0..pool_rounds * 4 {
        // The goal is a ratio to the fork server's spawn; the spawn is measured here
        // too, beside each pool, as floors are (minutes apart, this machine's speed
        // can differ by a third).
        s.add(
            "extra.spawn_join_forkserver_beside_pool_us",
            time_us(|| flags.check_ok &= spawn_join(StartMethod::ForkServer, 3)),
        );
        let (us, ok) = pool::start_us();
        s.add("pool_start_us", us);
        flags.check_ok &= ok;
    }
    for _ in 0..pool_rounds {
        let (ms, ok) = pool::recover_ms();
        s.add("pool_recover_ms", ms);
        flags.check_ok &= ok;
    }
}

/// The MPI pool's maps and CPU speed-up, from a job of `mpiexec -n 3` run after the local
/// pool's figures (with the feature `mpi` and `mpiexec` on the PATH; `--only-pool` too).
fn measure_mpi_pools(opts: &Options, s: &mut Samples, flags: &mut Flags) {
    if opts.only_sync && !opts.only_pool {
        return;
    }
    #[cfg(feature = "mpi")]
    {
        if !mpi::available() {
            eprintln!("skipped: the MPI pool's figures (mpiexec is not on the PATH)");
            return;
        }
        eprintln!("measuring the MPI pool (mpiexec -n 3) ...");
        let Some(f) = mpi::measure(if opts.quick { 3 } else { 7 }, opts.quick) else {
            flags.check_ok = false;
            return;
        };
        for r in f.trivial {
            s.add("mpi_pool_tasks_per_s.trivial", r);
        }
        for r in f.chunksize1 {
            s.add("mpi_pool_tasks_per_s.chunksize1", r);
        }
        for x in f.cpu_speedup {
            s.add("mpi_pool_cpu_speedup", x);
        }
        flags.check_ok &= f.ok;
    }
    #[cfg(not(feature = "mpi"))]
    {
        let _ = (s, flags);
        eprintln!("skipped: the MPI pool's figures (built without the feature mpi)");
    }
}

/// Manager calls from a child, with a pipe round trip beside each round.
fn measure_managers(opts: &Options, s: &mut Samples, flags: &mut Flags) {
    if opts.only_sync && !opts.only_manager {
        return;
    }
    eprintln!("measuring managers ...");
    let m = manager::start_pinned();
    manager::round(&m); // warm-up: the server's first objects and connections
    for _ in 0..if opts.quick { 3 } else { 7 } {
        let (list, dict, ok) = manager::round(&m);
        s.add("manager_list_ops_per_s", list);
        s.add("manager_dict_ops_per_s", dict);
        flags.manager_check_ok &= ok;
        // The goal is a ratio to `pipe_rtt_us`; the round trip is measured here too,
        // beside each round, to show how far the machine drifted since.
        let (rtt, _, ok) = pipe::rtt_us(1, 2000);
        for t in rtt {
            s.add("extra.pipe_rtt_beside_manager_us", t);
        }
        flags.check_ok &= ok;
    }
    m.shutdown().expect("manager shutdown");
}

/// The hot paths' instructions per operation under callgrind (`instructions.<path>`): one
/// figure each, the same from run to run.
fn measure_instructions(s: &mut Samples, flags: &mut Flags) {
    if !instructions::available() {
        eprintln!("skipped: the instruction counts (valgrind is not on the PATH)");
        return;
    }
    eprintln!("counting instructions under callgrind ...");
    for (key, count) in instructions::measure() {
        match count {
            Some(c) => s.add(key, c),
            None => flags.check_ok = false,
        }
    }
}

/// How soon a SIGKILLed role's other party hears of it, per role.
fn measure_kills(opts: &Options, s: &mut Samples, flags: &mut Flags) {
    if opts.only_spawn || (opts.only_sync && !opts.only_kill) {
        return;
    }
    eprintln!("measuring how soon a kill is noticed ...");
    let rounds = if opts.quick { 3 } else { 9 };
    for (role, key) in kill::ROLES {
        let (notice, ok) = kill::notice_ms(role, rounds);
        for t in notice {
            s.add(key, t);
        }
        flags.check_ok &= ok;
    }
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
