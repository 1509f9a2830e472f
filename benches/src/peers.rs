//! The Rust peers, measured in the bench's own run (`--peers PATH`, given by
//! `cargo xtask bench --vs-peers`): the binary of `benches/peers/` (a package outside the
//! workspace) measures one figure of a peer per call, the way this bench measures mproc's
//! figure of the same name; the bench calls it between its own rounds, so that each of
//! mproc's figures and its peer's alternate round by round.

use std::path::PathBuf;
use std::process::Command;

use serde_json::{Value, json};

use crate::Samples;

/// A peer figure: its key (`peers.<peer>.<figure>`, the peers binary's figure name after
/// `peers.`), mproc's figure it is compared with, and whether higher is better.
pub struct PeerFigure {
    pub key: &'static str,
    pub ours: &'static str,
    pub higher_is_better: bool,
    pub unit: &'static str,
}

/// The key under which a figure sampled per operation (a round trip, a spawn) keeps the
/// median of each of its rounds, for its spread: the min and max of its rounds, not of
/// single operations (one round trip in thousands meets a preempted CPU).
pub fn round_key(key: &str) -> Option<&'static str> {
    Some(match key {
        IPC_RTT => "round.peers.ipc_channel.rtt_us",
        INTERPROCESS_RTT => "round.peers.interprocess.rtt_us",
        PROCSPAWN_SPAWN => "round.peers.procspawn.spawn_join_us",
        PROCSPAWN_FLOOR => "round.peers.procspawn.exec_self_floor_us",
        "floor.exec_self_us" => "round.floor.exec_self_us",
        "pipe_rtt_us" => "round.pipe_rtt_us",
        "async_pipe_rtt_us" => "round.async_pipe_rtt_us",
        "spawn_join_us.spawn" => "round.spawn_join_us.spawn",
        _ => return None,
    })
}

/// Adds the median of the samples of `key` from index `from` on (the round just measured)
/// as a round of `key`'s [`round_key`].
pub fn note_round(s: &mut Samples, key: &str, from: usize) {
    let Some(round) = round_key(key) else {
        return;
    };
    let mut v =
        s.0.get(key)
            .map(|v| v[from.min(v.len())..].to_vec())
            .unwrap_or_default();
    if v.is_empty() {
        return;
    }
    v.sort_by(f64::total_cmp);
    let n = v.len();
    let median = if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    };
    s.add(round, median);
}

/// The number of samples of `key` so far (where the next round's start).
pub fn count(s: &Samples, key: &str) -> usize {
    s.0.get(key).map_or(0, Vec::len)
}

/// The `[min, max]` of `key`'s rounds: of its round medians for a figure sampled per
/// operation, of its samples otherwise.
fn round_range(s: &Samples, key: &str) -> Option<(f64, f64)> {
    let k = round_key(key).filter(|r| measured(s, r)).unwrap_or(key);
    let v = s.0.get(k).map(Vec::as_slice).unwrap_or_default();
    v.iter()
        .copied()
        .reduce(f64::min)
        .zip(v.iter().copied().reduce(f64::max))
}

/// Every peer figure, in the order of the table.
pub const FIGURES: [PeerFigure; 7] = [
    PeerFigure {
        key: IPC_BYTES,
        ours: "pipe_bytes_gbps",
        higher_is_better: true,
        unit: "GB/s",
    },
    PeerFigure {
        key: IPC_MSGS,
        ours: "queue_msgs_per_s.1p1c",
        higher_is_better: true,
        unit: "/s",
    },
    PeerFigure {
        key: IPC_RTT,
        ours: "pipe_rtt_us",
        higher_is_better: false,
        unit: "µs",
    },
    PeerFigure {
        key: INTERPROCESS_RTT,
        ours: "pipe_rtt_us",
        higher_is_better: false,
        unit: "µs",
    },
    PeerFigure {
        key: PROCSPAWN_SPAWN,
        ours: "spawn_join_us.spawn",
        higher_is_better: false,
        unit: "µs",
    },
    PeerFigure {
        key: PROCSPAWN_FLOOR,
        ours: "floor.exec_self_us",
        higher_is_better: false,
        unit: "µs",
    },
    PeerFigure {
        key: PROCSPAWN_POOL,
        ours: "pool_map_tasks_per_s.chunksize1",
        higher_is_better: true,
        unit: "/s",
    },
];

pub const IPC_BYTES: &str = "peers.ipc_channel.bytes_1mib_gbps";
pub const IPC_MSGS: &str = "peers.ipc_channel.msgs_per_s_1p1c";
pub const IPC_RTT: &str = "peers.ipc_channel.rtt_us";
pub const INTERPROCESS_RTT: &str = "peers.interprocess.rtt_us";
pub const PROCSPAWN_SPAWN: &str = "peers.procspawn.spawn_join_us";
/// procspawn's floor: an exec of the peers binary and a wait, beside the bench binary's
/// (`floor.exec_self_us`): the two binaries differ in size and shared libraries, so the
/// spawns compare through their floors.
pub const PROCSPAWN_FLOOR: &str = "peers.procspawn.exec_self_floor_us";
pub const PROCSPAWN_POOL: &str = "peers.procspawn.pool_map_tasks_per_s";

/// The peers binary.
#[derive(Debug)]
pub struct Peers {
    path: PathBuf,
}

impl Peers {
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Self { path: path.into() }
    }

    /// Measures `rounds` rounds of `key` with size or count `n` (as the figure's function
    /// in the peers binary reads it) and adds its samples to `s`; false when the peer's
    /// answers were wrong or the binary failed (the figure then has no sample from it).
    pub fn measure(&self, s: &mut Samples, key: &'static str, rounds: usize, n: usize) -> bool {
        let figure = key.strip_prefix("peers.").unwrap_or(key);
        let out = Command::new(&self.path)
            .args([figure, &rounds.to_string(), &n.to_string()])
            .output();
        let out = match out {
            Ok(o) if o.status.success() => o,
            Ok(o) => {
                eprintln!(
                    "peer figure {figure} failed ({}): {}",
                    o.status,
                    String::from_utf8_lossy(&o.stderr)
                );
                return false;
            }
            Err(e) => {
                eprintln!("cannot run the peers binary {}: {e}", self.path.display());
                return false;
            }
        };
        let from = count(s, key);
        let text = String::from_utf8_lossy(&out.stdout);
        let Some(v) = text
            .lines()
            .last()
            .and_then(|l| serde_json::from_str::<Value>(l).ok())
        else {
            eprintln!("peer figure {figure}: no JSON line in its output");
            return false;
        };
        for x in v["samples"].as_array().into_iter().flatten() {
            if let Some(x) = x.as_f64() {
                s.add(key, x);
            }
        }
        note_round(s, key, from);
        v["ok"].as_bool().unwrap_or(false)
    }
}

/// mproc's figure over its peer's, turned so that above 1 means mproc does better (a
/// rate over the peer's rate, the peer's time over mproc's time).
fn times_better(f: &PeerFigure, ours: f64, peer: f64) -> f64 {
    if f.higher_is_better {
        ours / peer
    } else {
        peer / ours
    }
}

fn measured(s: &Samples, key: &str) -> bool {
    s.0.get(key).is_some_and(|v| !v.is_empty())
}

/// Prints the peers' table: each peer figure beside mproc's of the same run, the ratio
/// (above 1: mproc does better) and both spreads.
pub fn print_table(s: &Samples) {
    if !FIGURES.iter().any(|f| measured(s, f.key)) {
        return;
    }
    println!("\nRust peers, measured in the same run, interleaved round by round (medians)");
    println!(
        "×better: mproc's figure over the peer's, turned so that > 1 means mproc does better\n"
    );
    println!(
        "{:<38} {:<32} {:>12} {:>12} {:>8}  {:<22} {:<22}",
        "peer key", "mproc key", "mproc", "peer", "×better", "mproc [min, max]", "peer [min, max]"
    );
    for f in FIGURES.iter().filter(|f| measured(s, f.key)) {
        let (ours, peer) = (s.median(f.ours), s.median(f.key));
        let range = |k: &str| match round_range(s, k) {
            Some((a, b)) => format!("[{}, {}]", short(a), short(b)),
            None => "-".into(),
        };
        println!(
            "{:<38} {:<32} {:>8}{:>4} {:>8}{:>4} {:>8.2}  {:<22} {:<22}",
            f.key,
            f.ours,
            short(ours),
            f.unit,
            short(peer),
            f.unit,
            times_better(f, ours, peer),
            range(f.ours),
            range(f.key),
        );
    }
    if measured(s, PROCSPAWN_SPAWN) && measured(s, PROCSPAWN_FLOOR) {
        println!(
            "a spawn over an exec of its own binary: mproc {:.2} × floor.exec_self_us, \
             procspawn {:.2} × {PROCSPAWN_FLOOR}",
            s.median("spawn_join_us.spawn") / s.median("floor.exec_self_us"),
            s.median(PROCSPAWN_SPAWN) / s.median(PROCSPAWN_FLOOR),
        );
    }
}

/// A figure to about three significant digits (rates in the millions stay readable).
fn short(x: f64) -> String {
    if !x.is_finite() {
        "-".into()
    } else if x.abs() >= 1e6 {
        format!("{:.2}M", x / 1e6)
    } else if x.abs() >= 1e4 {
        format!("{:.1}k", x / 1e3)
    } else if x.abs() >= 100.0 {
        format!("{x:.0}")
    } else {
        format!("{x:.2}")
    }
}

/// `spread.<key>` entries: a key and its `[min, max]`.
pub type Spreads = Vec<(&'static str, Value)>;

/// The JSON line's peer parts, when any peer was measured: `peers` (`{"ipc_channel":
/// {"bytes_1mib_gbps": ...}, ...}`), `times_better_than_peers` (per peer key, as the table's
/// ratio) and the spreads of the peer figures and of mproc's figures they are compared with
/// (`[min, max]` to two decimals).
pub fn json_parts(s: &Samples) -> Option<(Value, Value, Spreads)> {
    if !FIGURES.iter().any(|f| measured(s, f.key)) {
        return None;
    }
    let round2 = |x: f64| (x * 100.0).round() / 100.0;
    let mut peers = json!({});
    let mut better = json!({});
    let mut spreads = Vec::new();
    for f in FIGURES.iter().filter(|f| measured(s, f.key)) {
        let mut path = f.key.split('.').skip(1);
        let (Some(peer), Some(figure)) = (path.next(), path.next()) else {
            continue;
        };
        let median = s.median(f.key);
        peers[peer][figure] = json!(if median.abs() >= 1e4 {
            median.round()
        } else {
            round2(median)
        });
        better[f.key] = json!(round2(times_better(f, s.median(f.ours), median)));
        for k in [f.key, f.ours] {
            if let Some((a, b)) = round_range(s, k) {
                spreads.push((k, json!([round2(a), round2(b)])));
            }
        }
    }
    Some((peers, better, spreads))
}
