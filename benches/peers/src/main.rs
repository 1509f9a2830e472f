//! `mproc-peers FIGURE ROUNDS N`: one figure of a Rust peer of mproc, measured the way
//! `mproc-bench` measures mproc's own figure of the same name, printed as one JSON line
//! `{"samples": [...], "ok": bool}` (a sample per round, or per operation for the round
//! trips and spawns, as the bench's own samples are).
//!
//! `mproc-bench --peers PATH` (from `cargo xtask bench --vs-peers`) runs it between its own
//! rounds, so that mproc's figures and the peers' alternate in one run. See
//! `benches/README.md` for what each figure measures.
//!
//! | FIGURE | peer | mirrors |
//! | --- | --- | --- |
//! | `ipc_channel.bytes_1mib_gbps` | ipc-channel's `bytes_channel` | `pipe_bytes_gbps` |
//! | `ipc_channel.msgs_per_s_1p1c` | ipc-channel's `channel::<u64>` | `queue_msgs_per_s.1p1c` |
//! | `ipc_channel.rtt_us` | two ipc-channel `channel::<Option<u64>>` | `pipe_rtt_us` |
//! | `interprocess.rtt_us` | an interprocess local socket | `pipe_rtt_us` |
//! | `procspawn.spawn_join_us` | `procspawn::spawn` + `join` | `spawn_join_us.spawn` |
//! | `procspawn.exec_self_floor_us` | an exec of this binary + wait | `floor.exec_self_us` |
//! | `procspawn.pool_map_tasks_per_s` | `procspawn::Pool::new(2)` | `pool_map_tasks_per_s.chunksize1` |

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use ipc_channel::ipc;
use mproc_sys::ForkOutcome;

/// The size of a message of the bandwidth figure (as the bench's `BW_SIZE`).
const BW_SIZE: usize = 1 << 20;

/// Set in the environment of the exec floor's child: it exits at the top of `main`.
const FLOOR_ENV: &str = "MPROC_PEERS_FLOOR";

fn main() {
    if std::env::var_os(FLOOR_ENV).is_some() {
        return;
    }
    // A child of procspawn re-executes this binary: it runs its function here and exits.
    procspawn::init();
    let args: Vec<String> = std::env::args().collect();
    let usage = "usage: mproc-peers FIGURE ROUNDS N";
    let (Some(figure), Some(rounds), Some(n)) = (args.get(1), args.get(2), args.get(3)) else {
        eprintln!("{usage}");
        std::process::exit(2);
    };
    let (Ok(rounds), Ok(n)) = (rounds.parse::<usize>(), n.parse::<usize>()) else {
        eprintln!("{usage}: ROUNDS and N are counts");
        std::process::exit(2);
    };
    let (samples, ok) = match figure.as_str() {
        "ipc_channel.bytes_1mib_gbps" => ipc_bytes_gbps(rounds, n),
        "ipc_channel.msgs_per_s_1p1c" => ipc_msgs_per_s(rounds, n),
        "ipc_channel.rtt_us" => ipc_rtt_us(rounds, n),
        "interprocess.rtt_us" => interprocess_rtt_us(rounds, n),
        "procspawn.spawn_join_us" => procspawn_spawn_join_us(rounds, n),
        "procspawn.exec_self_floor_us" => exec_self_floor_us(rounds, n),
        "procspawn.pool_map_tasks_per_s" => procspawn_pool_tasks_per_s(rounds, n),
        other => {
            eprintln!("{usage}: unknown figure {other:?}");
            std::process::exit(2);
        }
    };
    println!(
        "{}",
        serde_json::json!({ "figure": figure, "samples": samples, "ok": ok })
    );
}

fn time_us(f: impl FnOnce()) -> f64 {
    let t0 = Instant::now();
    f();
    t0.elapsed().as_secs_f64() * 1e6
}

/// Pins the calling process to CPU `cpu` when the machine has more than one, as the bench
/// does (the parent on CPU 0, the child on CPU 1).
fn pin(cpu: usize) {
    if machine_cpus() > 1 {
        mproc_sys::set_cpu_affinity(&[cpu]).expect("sched_setaffinity");
    }
}

/// The machine's online CPUs (not this process's, which a pinned parent narrows to one).
fn machine_cpus() -> usize {
    let count = |list: &str| -> Option<usize> {
        list.trim().split(',').try_fold(0, |n, part| {
            Some(
                n + match part.split_once('-') {
                    Some((a, b)) => b.parse::<usize>().ok()? + 1 - a.parse::<usize>().ok()?,
                    None => 1,
                },
            )
        })
    };
    std::fs::read_to_string("/sys/devices/system/cpu/online")
        .ok()
        .and_then(|s| count(&s))
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
}

/// Forks a child that runs `f` and exits; returns its pid.
fn fork_child(f: impl FnOnce()) -> mproc_sys::Pid {
    match mproc_sys::fork(None).expect("fork") {
        ForkOutcome::Child => {
            f();
            mproc_sys::exit_now(0)
        }
        ForkOutcome::Parent(pid) => pid,
    }
}

/// Waits for a child forked by [`fork_child`]; whether it exited with 0.
fn reap(pid: mproc_sys::Pid) -> bool {
    mproc_sys::wait_pid(pid, true).expect("wait") == Some(mproc_sys::ExitStatus::Code(0))
}

/// 1 MiB messages child → parent on ipc-channel's bytes channel, as `pipe_bytes_gbps`: per
/// round a fresh channel and a forked sender on CPU 1 that sends `messages + 1` messages (the
/// first a warm-up), the parent on CPU 0 timing `messages` receives. GB/s per round.
fn ipc_bytes_gbps(rounds: usize, messages: usize) -> (Vec<f64>, bool) {
    let (mut out, mut ok) = (Vec::new(), true);
    pin(0);
    for _ in 0..rounds {
        let (tx, rx) = ipc::bytes_channel().expect("bytes_channel");
        let pid = fork_child(move || {
            pin(1);
            let payload = vec![0x5au8; BW_SIZE];
            for _ in 0..=messages {
                tx.send(&payload).expect("send");
            }
        });
        ok &= rx.recv().expect("warm-up").len() == BW_SIZE;
        let mut got = 0;
        let us = time_us(|| {
            for _ in 0..messages {
                got += rx.recv().expect("recv").len();
            }
        });
        ok &= got == messages * BW_SIZE;
        out.push(got as f64 / (us * 1e3));
        ok &= reap(pid);
    }
    mproc_sys::set_cpu_affinity(&[]).expect("unpin");
    (out, ok)
}

fn wall_ns() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or(Duration::ZERO)
        .as_nanos()
}

/// Writes a child's span (and a value) to the parent.
fn report(mut to: &UnixStream, t0: u128, t1: u128, value: u64) {
    let mut w = Vec::with_capacity(40);
    w.extend_from_slice(&t0.to_le_bytes());
    w.extend_from_slice(&t1.to_le_bytes());
    w.extend_from_slice(&value.to_le_bytes());
    to.write_all(&w).expect("report");
}

/// Reads a child's report: its span and its value.
fn read_report(mut from: &UnixStream) -> (u128, u128, u64) {
    let mut r = [0u8; 40];
    from.read_exact(&mut r).expect("report");
    let t0 = u128::from_le_bytes(r[0..16].try_into().expect("16"));
    let t1 = u128::from_le_bytes(r[16..32].try_into().expect("16"));
    (t0, t1, u64::from_le_bytes(r[32..40].try_into().expect("8")))
}

/// Small messages (u64) from a producer process to a consumer process on one ipc-channel
/// channel, as `queue_msgs_per_s.1p1c`: both forked (not pinned), released together, the
/// rate taken over the span from the first one's start to the last one's end on their own
/// clocks. Messages per second per round.
fn ipc_msgs_per_s(rounds: usize, n: usize) -> (Vec<f64>, bool) {
    let (mut out, mut ok) = (Vec::new(), true);
    let n = n as u64;
    for _ in 0..rounds {
        let (tx, rx) = ipc::channel::<u64>().expect("channel");
        // The start barrier: each child waits for a byte of its own on `wait`.
        let (mut go, wait) = UnixStream::pair().expect("socketpair");
        let (reports, theirs) = UnixStream::pair().expect("socketpair");
        let start = |mut wait: &UnixStream| {
            wait.read_exact(&mut [0u8; 1]).expect("start");
        };
        let producer = fork_child(|| {
            start(&wait);
            let t0 = wall_ns();
            for i in 0..n {
                tx.send(i).expect("send");
            }
            report(&theirs, t0, wall_ns(), 0);
        });
        let consumer = fork_child(|| {
            start(&wait);
            let t0 = wall_ns();
            let mut sum = 0u64;
            for _ in 0..n {
                sum = sum.wrapping_add(rx.recv().expect("recv"));
            }
            report(&theirs, t0, wall_ns(), sum);
        });
        drop((tx, rx, wait, theirs));
        go.write_all(&[1, 1]).expect("go");
        let a = read_report(&reports);
        let b = read_report(&reports);
        let span = a.1.max(b.1).saturating_sub(a.0.min(b.0)).max(1);
        out.push(n as f64 / (span as f64 / 1e9));
        ok &= a.2.wrapping_add(b.2) == n * (n - 1) / 2;
        ok &= reap(producer) & reap(consumer);
    }
    (out, ok)
}

/// Round trips of a small typed message (`Option<u64>`, answered with the next number) on a
/// pair of ipc-channel channels (its channels go one way), as `pipe_rtt_us`: the parent on
/// CPU 0, the echoing child forked on CPU 1; round 0 warms up. µs per round trip.
fn ipc_rtt_us(rounds: usize, per_round: usize) -> (Vec<f64>, bool) {
    let (mut out, mut ok) = (Vec::new(), true);
    pin(0);
    let (to_child, child_rx) = ipc::channel::<Option<u64>>().expect("channel");
    let (child_tx, from_child) = ipc::channel::<Option<u64>>().expect("channel");
    let pid = fork_child(move || {
        pin(1);
        while let Ok(Some(x)) = child_rx.recv() {
            child_tx.send(Some(x + 1)).expect("send");
        }
    });
    for round in 0..=rounds {
        for i in 0..per_round as u64 {
            let t = time_us(|| {
                to_child.send(Some(i)).expect("send");
                ok &= from_child.recv().expect("recv") == Some(i + 1);
            });
            if round > 0 {
                out.push(t);
            }
        }
    }
    to_child.send(None).expect("stop");
    ok &= reap(pid);
    mproc_sys::set_cpu_affinity(&[]).expect("unpin");
    (out, ok)
}

/// Round trips of 8-byte words (answered with the next number) on an interprocess local
/// socket, as `pipe_rtt_us` (interprocess moves bytes, not values: this is its whole path):
/// the parent on CPU 0 accepts the connection of a child forked on CPU 1; round 0 warms up.
/// µs per round trip.
fn interprocess_rtt_us(rounds: usize, per_round: usize) -> (Vec<f64>, bool) {
    use interprocess::local_socket::{GenericNamespaced, ListenerOptions, Stream, prelude::*};
    let (mut out, mut ok) = (Vec::new(), true);
    pin(0);
    let printable = format!("mproc-peers-{}.sock", std::process::id());
    let name = printable
        .as_str()
        .to_ns_name::<GenericNamespaced>()
        .expect("name");
    let listener = ListenerOptions::new()
        .name(name.clone())
        .create_sync()
        .expect("listen");
    let pid = fork_child(|| {
        pin(1);
        let mut s = Stream::connect(name.clone()).expect("connect");
        let mut w = [0u8; 8];
        while s.read_exact(&mut w).is_ok() {
            let x = u64::from_le_bytes(w) + 1;
            if s.write_all(&x.to_le_bytes()).is_err() {
                break;
            }
        }
    });
    let mut s = listener.accept().expect("accept");
    let mut w = [0u8; 8];
    for round in 0..=rounds {
        for i in 0..per_round as u64 {
            let t = time_us(|| {
                s.write_all(&i.to_le_bytes()).expect("write");
                s.read_exact(&mut w).expect("read");
            });
            ok &= u64::from_le_bytes(w) == i + 1;
            if round > 0 {
                out.push(t);
            }
        }
    }
    drop(s);
    ok &= reap(pid);
    mproc_sys::set_cpu_affinity(&[]).expect("unpin");
    (out, ok)
}

fn ident(x: u64) -> u64 {
    x
}

/// A child started by procspawn (an exec of this binary) running `ident`, joined, its
/// result checked, as `spawn_join_us.spawn`; one spawn first warms up. µs per spawn.
fn procspawn_spawn_join_us(rounds: usize, n: usize) -> (Vec<f64>, bool) {
    let (mut out, mut ok) = (Vec::new(), true);
    ok &= procspawn::spawn(7u64, ident).join().expect("join") == 7;
    for _ in 0..rounds {
        for i in 0..n as u64 {
            out.push(time_us(|| {
                ok &= procspawn::spawn(i, ident).join().expect("join") == i;
            }));
        }
    }
    (out, ok)
}

/// At most this many of the pool's tasks are in flight at once: each holds two ipc-channel
/// channels (four fds) until it is joined, and 10k of them would pass the fd limit.
const POOL_WINDOW: usize = 1024;

/// The floor of procspawn's spawn: this binary started (`std::process::Command`, which
/// uses `posix_spawn` here), exiting at the top of `main`, and waited for, as
/// `floor.exec_self_us` is for the bench's binary (whose exec costs more: it is larger and
/// loads more shared libraries). One warm-up first. µs per exec.
fn exec_self_floor_us(rounds: usize, n: usize) -> (Vec<f64>, bool) {
    let exe = std::env::current_exe().expect("current_exe");
    let run = || {
        std::process::Command::new(&exe)
            .env(FLOOR_ENV, "1")
            .status()
            .is_ok_and(|s| s.success())
    };
    let mut ok = run();
    let mut out = Vec::new();
    for _ in 0..rounds * n {
        out.push(time_us(|| ok &= run()));
    }
    (out, ok)
}

/// `n` trivial tasks on procspawn's pool of 2 processes, each a `spawn` of its own (the
/// pool has no map; this is a map with one item per task), every handle joined in order and
/// checked, at most [`POOL_WINDOW`] in flight, as `pool_map_tasks_per_s.chunksize1`. The
/// pool is warm (one pass of `n` first). Tasks per second per round.
fn procspawn_pool_tasks_per_s(rounds: usize, n: usize) -> (Vec<f64>, bool) {
    let (mut out, mut ok) = (Vec::new(), true);
    let pool = procspawn::Pool::new(2).expect("pool");
    let pass = |ok: &mut bool| {
        let mut in_flight = std::collections::VecDeque::with_capacity(POOL_WINDOW);
        let mut next = 0u64;
        for i in 0..n as u64 {
            if in_flight.len() == POOL_WINDOW {
                let h: procspawn::JoinHandle<u64> = in_flight.pop_front().expect("in flight");
                *ok &= h.join().expect("join") == next;
                next += 1;
            }
            in_flight.push_back(pool.spawn(i, ident));
        }
        for h in in_flight {
            *ok &= h.join().expect("join") == next;
            next += 1;
        }
        *ok &= next == n as u64;
    };
    pass(&mut ok);
    for _ in 0..rounds {
        let t0 = Instant::now();
        pass(&mut ok);
        out.push(n as f64 / t0.elapsed().as_secs_f64());
    }
    pool.shutdown();
    (out, ok)
}
