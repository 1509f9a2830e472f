//! The creator of named segments killed at random points of `create_named` (of a
//! `SharedMemory` or a `ShareableList`) and `unlink`: no name of it, temporary or final,
//! outlives its tree.

use std::os::fd::{AsFd, OwnedFd};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use mproc::{ShareableList, SharedAtomic, SharedMemory};
use mproc_tests::{builder, children_of, deadline, wait_gone};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use crate::harness::{
    PATIENCE, Role, kill_and_reap, limit, pause, shm_name, shm_names, wait_until,
};

/// Creates named segments `<prefix><i>` one after another, a `SharedMemory` or a
/// `ShareableList` in turn, and unlinks three in four (the fourth stays linked, held);
/// counts in `made` (1 once it runs, then one more per segment) until killed.
fn create_and_unlink((prefix, made): (String, SharedAtomic<AtomicU64>)) {
    made.store(1, Ordering::SeqCst);
    let mut held = Vec::new();
    for i in 0u64.. {
        let name = format!("{prefix}{i}");
        let shm = if i % 2 == 0 {
            SharedMemory::create_named(&name, 4096).expect("create_named")
        } else {
            let list = ShareableList::create_named(&name, ["an item"; 4]).expect("list");
            list.shm().clone()
        };
        if i % 4 == 3 {
            held.push(shm);
        } else {
            shm.unlink().expect("unlink");
        }
        made.fetch_add(1, Ordering::SeqCst);
    }
}

/// Stops process `pid` (SIGSTOP) and waits until every thread of it has stopped, so that
/// the processes it has started are all there to be seen, and it starts no more.
fn stop(at: &str, pid: u32) {
    kill(Pid::from_raw(pid as i32), Signal::SIGSTOP).unwrap_or_else(|e| panic!("{at}: {e}"));
    let all_stopped = || {
        let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
            return true; // gone
        };
        tasks.filter_map(|t| t.ok()).all(|t| {
            let stat = std::fs::read_to_string(t.path().join("stat")).unwrap_or_default();
            stat.rfind(')')
                .and_then(|i| stat[i + 2..].chars().next())
                .is_none_or(|s| s == 'T' || s == 't' || s == 'Z' || s == 'X')
        })
    };
    let t0 = Instant::now();
    while !all_stopped() {
        assert!(t0.elapsed() < PATIENCE, "{at}: the creator did not stop");
        std::thread::sleep(Duration::from_micros(100));
    }
}

#[test]
fn the_creator_of_named_segments_killed_mid_creation() {
    let role = Role::start("segment_creator", 100);
    deadline(limit(role.rounds), || {
        let (mut made_total, mut held_at_kill, mut mid_creation) = (0, 0, 0);
        let mut leaks = Vec::new();
        for round in 0..role.rounds {
            let (at, mut rng) = (role.at(round), role.rng(round));
            // The separator keeps round 3's prefix from matching round 31's names.
            let prefix = format!("{}-", shm_name("created"));
            let made = SharedAtomic::<AtomicU64>::new().unwrap();
            let mut creator = builder()
                .spawn(create_and_unlink, (prefix.clone(), made.clone()))
                .unwrap();
            wait_until(&at, "the creator running", || {
                made.load(Ordering::SeqCst) > 0
            });
            // Up to 4 ms: the first creation (which starts the tracker) and a few dozen
            // more.
            pause(rng.delay(Duration::from_millis(4)));
            stop(&at, creator.pid());
            // Its trackers (its only children) must end once it is killed.
            let trackers: Vec<(u32, OwnedFd)> = children_of(creator.pid())
                .into_iter()
                .filter_map(|(p, _)| Some((p, mproc_sys::pidfd_open(p).ok()?)))
                .collect();
            let present: Vec<String> = ours(&prefix);
            held_at_kill += present.len();
            mid_creation += usize::from(present.iter().any(|n| n.contains(".mproc-tmp-")));
            kill_and_reap(&at, &mut creator);
            made_total += made.load(Ordering::SeqCst) - 1;
            for (pid, pidfd) in &trackers {
                assert!(
                    wait_gone(pidfd.as_fd(), PATIENCE),
                    "{at}: tracker {pid} outlived its creator"
                );
            }
            // A tracker started after the stop cannot be, but one missed by the listing
            // would still be unlinking: give what is left a moment before counting it.
            let mut left = ours(&prefix);
            let t0 = Instant::now();
            while !left.is_empty() && trackers.is_empty() && t0.elapsed() < PATIENCE {
                std::thread::sleep(Duration::from_millis(20));
                left = ours(&prefix);
            }
            if !left.is_empty() {
                for name in &left {
                    let _ = mproc_sys::shm_unlink(name);
                }
                leaks.push((round, left));
            }
        }
        eprintln!(
            "segment_creator: {made_total} segments created, {held_at_kill} names in \
             /dev/shm at the kills, {mid_creation} of {} kills with a temporary name there",
            role.rounds
        );
        assert!(
            leaks.is_empty(),
            "{}: {} of {} rounds left names of a killed creator: {leaks:?}",
            role.at(role.rounds),
            leaks.len(),
            role.rounds
        );
    });
    role.finish();
}

/// The names in `/dev/shm` under `prefix` (final and temporary).
fn ours(prefix: &str) -> Vec<String> {
    shm_names()
        .into_iter()
        .filter(|n| n.starts_with(prefix))
        .collect()
}
