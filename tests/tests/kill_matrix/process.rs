//! Process roles: the fork server killed mid-fork, the segment tracker killed while
//! segments are created, and the parent of a three-level tree killed while it grows.

use std::os::fd::{AsFd, OwnedFd};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use mproc::process::{ErrorKind, ForkServer};
use mproc::{ForkPermit, RawArray, SharedAtomic, SharedMemory, StartMethod};
use mproc_tests::{builder, deadline, method, wait_gone};

use crate::harness::{
    PATIENCE, Role, kill_and_reap, limit, pause, shm_name, shm_names, wait_until,
};

fn square(x: u64) -> u64 {
    x * x
}

/// The fork server used by the role: the default one under the fork server method (it is
/// replaced after its death), a private one (`ForkServer::start`, never replaced) under
/// the others.
enum Server {
    Default,
    Private(Arc<ForkServer>),
}

impl Server {
    fn start() -> Server {
        if method() == StartMethod::ForkServer {
            Server::Default
        } else {
            // SAFETY: the other threads of the test binary are the harness's and the
            // watchdogs', idle as far as mproc's locks go (see `mproc_tests::builder`).
            let permit = unsafe { ForkPermit::other_threads_are_idle() };
            Server::Private(Arc::new(
                ForkServer::start(Some(permit)).expect("fork server"),
            ))
        }
    }

    fn pid(&self) -> Option<u32> {
        match self {
            Server::Default => mproc::process::fork_server_pid(),
            Server::Private(s) => s.pid(),
        }
    }

    fn builder(&self) -> mproc::Builder {
        match self {
            Server::Default => builder(),
            Server::Private(s) => mproc::Builder::new().fork_server(s.clone()),
        }
    }
}

#[test]
fn the_fork_server_killed_mid_fork() {
    let role = Role::start("fork_server", 60);
    deadline(limit(role.rounds), || {
        let (mut ok, mut failed) = (0, 0);
        for round in 0..role.rounds {
            let (at, mut rng) = (role.at(round), role.rng(round));
            let server = Server::start();
            // Warm: the server runs.
            assert_eq!(
                server.builder().spawn(square, 3).unwrap().join().unwrap(),
                9
            );
            let pid = server.pid().expect("a running fork server");
            let stop = AtomicBool::new(false);
            let spawned = AtomicU64::new(0);
            std::thread::scope(|s| {
                let spawner = s.spawn(|| {
                    let mut outcomes = Vec::new();
                    for i in 0.. {
                        if stop.load(Ordering::SeqCst) {
                            break;
                        }
                        let t0 = Instant::now();
                        let outcome = server.builder().spawn(square, i).map(|mut c| {
                            let r = c.join_timeout(PATIENCE);
                            (r, c.is_alive())
                        });
                        assert!(
                            t0.elapsed() < PATIENCE,
                            "{at}: a spawn took {:?}",
                            t0.elapsed()
                        );
                        spawned.fetch_add(1, Ordering::SeqCst);
                        outcomes.push((i, outcome));
                    }
                    outcomes
                });
                wait_until(&at, "a first spawn", || spawned.load(Ordering::SeqCst) > 0);
                pause(rng.delay(Duration::from_millis(3)));
                mproc_sys::kill_pid(pid, mproc_sys::SIGKILL).unwrap();
                let after = spawned.load(Ordering::SeqCst) + 3;
                wait_until(&at, "spawns after the kill", || {
                    spawned.load(Ordering::SeqCst) >= after
                });
                stop.store(true, Ordering::SeqCst);
                for (i, outcome) in spawner.join().expect("spawner") {
                    match outcome {
                        // A child started: its result is right, or it reports how it ended.
                        Ok((Ok(v), _)) => {
                            assert_eq!(v, i * i, "{at}");
                            ok += 1;
                        }
                        Ok((Err(e), alive)) => {
                            assert!(
                                matches!(e.kind(), ErrorKind::StatusLost | ErrorKind::Died),
                                "{at}: spawn {i}: {e}"
                            );
                            assert!(!alive, "{at}: spawn {i}: {e}, still alive");
                            failed += 1;
                        }
                        // No child: the spawn says why.
                        Err(e) => {
                            assert!(
                                matches!(e.kind(), ErrorKind::ForkServer | ErrorKind::Io),
                                "{at}: spawn {i}: {e}"
                            );
                            failed += 1;
                        }
                    }
                }
            });
            // The default server is replaced; a private one stays dead.
            match &server {
                Server::Default => {
                    let mut c = server.builder().spawn(square, 12).unwrap();
                    assert_eq!(c.join().unwrap(), 144, "{at}");
                    assert_ne!(server.pid(), Some(pid), "{at}: the dead server serves");
                }
                Server::Private(_) => {
                    let e = server.builder().spawn(square, 12).unwrap_err();
                    assert_eq!(e.kind(), ErrorKind::ForkServer, "{at}: {e}");
                }
            }
        }
        eprintln!("fork_server: {ok} spawns served, {failed} failed with a typed error");
    });
    role.finish();
}

// ---- the segment tracker --------------------------------------------------------------------

/// How many named segments the creator makes per round.
const SEGMENTS: u64 = 40;

/// Tries to create `SEGMENTS` named segments, 200 µs apart, recording in `made` which
/// ones it did (1) or was refused with a typed error (2: it may be refused when tracker
/// after tracker is killed under it). Once `kills_over` is set, creates one more (which
/// hands every name to a live tracker: a tracker killed after the last registration
/// leaves the names untracked until the next one, as documented), and holds them all
/// until killed.
fn create_segments((prefix, made, kills_over): (String, RawArray<u32>, SharedAtomic<AtomicU64>)) {
    let mut kept = Vec::new();
    for i in 0..=SEGMENTS as usize {
        while i == SEGMENTS as usize && kills_over.load(Ordering::SeqCst) == 0 {
            std::thread::sleep(Duration::from_millis(1));
        }
        match SharedMemory::create_named(&format!("{prefix}{i}"), 4096) {
            Ok(s) => {
                kept.push(s);
                made.set(i, 1).expect("slot");
            }
            Err(e) => {
                assert_eq!(e.kind(), mproc::shm::ErrorKind::Io, "{e}");
                made.set(i, 2).expect("slot");
            }
        }
        pause(Duration::from_micros(200));
    }
    std::thread::sleep(Duration::from_secs(3600));
}

/// The children of process `pid` (of all its threads).
fn children_of(pid: u32) -> Vec<u32> {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return Vec::new();
    };
    tasks
        .filter_map(|t| {
            let t = t.ok()?;
            std::fs::read_to_string(t.path().join("children")).ok()
        })
        .flat_map(|c| {
            c.split_whitespace()
                .filter_map(|p| p.parse().ok())
                .collect::<Vec<u32>>()
        })
        .collect()
}

#[test]
fn the_segment_tracker_killed_while_segments_are_created() {
    let role = Role::start("segment_tracker", 30);
    deadline(limit(role.rounds), || {
        let (mut kills, mut refused) = (0, 0);
        for round in 0..role.rounds {
            let (at, mut rng) = (role.at(round), role.rng(round));
            let prefix = shm_name("tracked");
            let made = RawArray::<u32>::zeroed(SEGMENTS as usize + 1).unwrap();
            let kills_over = SharedAtomic::<AtomicU64>::new().unwrap();
            let mut creator = builder()
                .spawn(
                    create_segments,
                    (prefix.clone(), made.clone(), kills_over.clone()),
                )
                .unwrap();
            // Kill its tracker (its only child) again and again while it creates.
            while made.get(SEGMENTS as usize - 1) == Some(0) {
                pause(rng.delay(Duration::from_millis(10)));
                for tracker in children_of(creator.pid()) {
                    if mproc_sys::kill_pid(tracker, mproc_sys::SIGKILL).is_ok() {
                        kills += 1;
                    }
                }
                assert!(
                    creator.is_alive(),
                    "{at}: the creator died: {:?}",
                    creator.join()
                );
            }
            kills_over.store(1, Ordering::SeqCst);
            wait_until(&at, "the last segment", || {
                made.get(SEGMENTS as usize) != Some(0)
            });
            assert_eq!(
                made.get(SEGMENTS as usize),
                Some(1),
                "{at}: refused with no kills"
            );
            // Every segment it made is still there (none was unlinked early), and none it
            // was refused...
            let made = made.to_vec();
            refused += made.iter().filter(|m| **m == 2).count();
            let mut want: Vec<String> = (0..made.len())
                .filter(|i| made[*i] == 1)
                .map(|i| format!("{prefix}{i}"))
                .collect();
            let mut ours: Vec<String> = shm_names()
                .into_iter()
                .filter(|n| n.starts_with(&prefix))
                .collect();
            want.sort();
            ours.sort();
            assert_eq!(
                ours, want,
                "{at}: the names in /dev/shm are not those created"
            );
            // ... and all go with their creator, although trackers were killed.
            kill_and_reap(&at, &mut creator);
            let left = segments_left(&prefix, PATIENCE);
            assert!(left.is_empty(), "{at}: names left untracked: {left:?}");
        }
        eprintln!("segment_tracker: {kills} trackers killed, {refused} creations refused");
    });
    role.finish();
}

// ---- the parent of a three-level tree -------------------------------------------------------

/// The processes of a tree: its root, two children, four grandchildren.
const NODES: usize = 7;

/// A node of the tree: records its pid, makes a named segment (and records that it did), a
/// queue and a lock (held), starts its two daemonic children (above the grandchildren's
/// level), and waits to die. `pids` holds each node's pid, then each node's segment flag.
fn tree_node((slot, prefix, pids): (usize, String, RawArray<u32>)) {
    pids.set(slot, std::process::id()).expect("slot");
    let _segment = SharedMemory::create_named(&format!("{prefix}{slot}"), 4096).expect("segment");
    pids.set(NODES + slot, 1).expect("slot");
    let _queue = mproc::Queue::<u64>::new().expect("queue");
    let lock = mproc::Lock::new().expect("lock");
    let _held = lock.lock().expect("lock");
    let mut children = Vec::new();
    for child in [2 * slot + 1, 2 * slot + 2] {
        if child < NODES {
            children.push(
                builder()
                    .daemon(true)
                    .spawn(tree_node, (child, prefix.clone(), pids.clone()))
                    .expect("spawn"),
            );
        }
    }
    std::thread::sleep(Duration::from_secs(3600));
}

/// The names under `prefix` still in `/dev/shm` once their trackers had `time` to
/// unlink them.
fn segments_left(prefix: &str, time: Duration) -> Vec<String> {
    let t0 = Instant::now();
    loop {
        let left: Vec<String> = shm_names()
            .into_iter()
            .filter(|n| n.starts_with(prefix))
            .collect();
        if left.is_empty() || t0.elapsed() >= time {
            return left;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Every process below `root` now (children of each thread, recursively).
fn descendants(root: u32) -> Vec<u32> {
    let mut found = Vec::new();
    let mut next = vec![root];
    while let Some(p) = next.pop() {
        for c in children_of(p) {
            found.push(c);
            next.push(c);
        }
    }
    found
}

#[test]
fn the_parent_of_a_three_level_tree_killed_while_it_grows() {
    let role = Role::start("tree_parent", 60);
    deadline(limit(role.rounds), || {
        let (mut seen, mut complete) = (0, 0);
        for round in 0..role.rounds {
            let (at, mut rng) = (role.at(round), role.rng(round));
            let prefix = shm_name("tree");
            let pids = RawArray::<u32>::zeroed(2 * NODES).unwrap();
            let mut root = builder()
                .spawn(tree_node, (0, prefix.clone(), pids.clone()))
                .unwrap();
            pause(rng.delay(Duration::from_millis(20)));
            // Every process below the root as it is killed: grandchildren, fork servers,
            // segment trackers. Each must end.
            let below: Vec<(u32, OwnedFd)> = descendants(root.pid())
                .into_iter()
                .filter_map(|p| Some((p, mproc_sys::pidfd_open(p).ok()?)))
                .collect();
            kill_and_reap(&at, &mut root);
            seen += below.len();
            complete += usize::from(pids.to_vec().iter().all(|p| *p != 0));
            let nodes = &pids.to_vec()[..NODES];
            for (pid, pidfd) in &below {
                assert!(
                    wait_gone(pidfd.as_fd(), PATIENCE),
                    "{at}: process {pid} below the killed root is still alive: {:?}",
                    std::fs::read_to_string(format!("/proc/{pid}/cmdline"))
                );
            }
            // Nodes that recorded themselves (perhaps after the walk) are gone too.
            for pid in nodes.iter().copied().filter(|p| *p != 0) {
                if let Ok(pidfd) = mproc_sys::pidfd_open(pid) {
                    assert!(
                        wait_gone(pidfd.as_fd(), PATIENCE),
                        "{at}: tree node {pid} outlived the root"
                    );
                }
            }
            // Every segment goes with the tree, also one whose node was killed inside
            // `create_named`.
            let left = segments_left(&prefix, PATIENCE);
            assert!(
                left.is_empty(),
                "{at}: segments outlived the tree: {left:?}"
            );
        }
        eprintln!(
            "tree_parent: {seen} processes below the killed roots, {complete} of {} trees \
             complete",
            role.rounds
        );
    });
    role.finish();
}
