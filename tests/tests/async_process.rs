//! Children awaited on tokio (`Child::join_async`, `Child::wait_async`), under the start
//! method named by `MPROC_START_METHOD`. Each test runs a runtime with a single thread
//! inside a deadline: a wait that blocked the thread would stall every other task (and
//! fail the test) rather than pass.

use std::os::fd::AsFd;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use mproc::process::{ErrorKind, ForkServer};
use mproc::{ExitStatus, ForkPermit};
use mproc_tests::{builder, deadline};
use serde_bytes::ByteBuf;

mproc::init_before_main!();

const LIMIT: Duration = Duration::from_secs(120);
/// A large result: it travels by memfd, read while other tasks run.
const LARGE: usize = 32 << 20;
/// The result of a child that lingers after its reply: large enough to go by memfd, small
/// enough that this unoptimised build encodes it well within the time the test gives it.
const LINGERING: usize = 4 << 20;

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

fn nap_then_square(x: u64) -> u64 {
    std::thread::sleep(Duration::from_millis(20 + x % 30));
    x * x
}

fn sleep_ms(ms: u64) -> u64 {
    std::thread::sleep(Duration::from_millis(ms));
    ms
}

/// A large result, every byte known from its index and `seed` (bytes, so that postcard
/// copies it whole rather than byte by byte in this unoptimised build).
fn pattern(seed: u8, len: usize) -> ByteBuf {
    let mut v = vec![0u8; len];
    for (i, chunk) in v.chunks_mut(251).enumerate() {
        chunk
            .iter_mut()
            .zip(0u8..)
            .for_each(|(b, j)| *b = j ^ seed ^ (i as u8));
    }
    ByteBuf::from(v)
}

fn large_after(ms: u64) -> ByteBuf {
    std::thread::sleep(Duration::from_millis(ms));
    pattern(ms as u8, LARGE)
}

/// Leaves a file at `started`, then naps until `release` exists (at most 60 s).
fn mark_then_wait((started, release): (String, String)) {
    std::fs::write(started, b"up").unwrap();
    let t0 = std::time::Instant::now();
    while !std::path::Path::new(&release).exists() && t0.elapsed() < Duration::from_secs(60) {
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Returns a large result once its own child has started, then (as a child joins its
/// children at its end) stays alive until the release file exists: its reply is all sent
/// while it still runs.
fn large_then_linger((started, release): (String, String)) -> ByteBuf {
    let result = pattern(7, LINGERING);
    // Dropped at once: the child still waits for it when its function has returned.
    let _ = builder()
        .spawn(mark_then_wait, (started.clone(), release))
        .unwrap();
    while !std::path::Path::new(&started).exists() {
        std::thread::sleep(Duration::from_millis(1));
    }
    result
}

fn boom(msg: String) -> u8 {
    panic!("boom: {msg}")
}

#[test]
fn a_hundred_children_joined_concurrently() {
    deadline(LIMIT, || {
        let children: Vec<_> = (0..100u64)
            .map(|i| builder().spawn(nap_then_square, i).unwrap())
            .collect();
        let results = runtime().block_on(async {
            let mut set = tokio::task::JoinSet::new();
            for (i, mut child) in children.into_iter().enumerate() {
                set.spawn(async move { (i as u64, child.join_async().await) });
            }
            let mut results = Vec::new();
            while let Some(done) = set.join_next().await {
                let (i, r) = done.unwrap();
                results.push((i, r.unwrap()));
            }
            results
        });
        assert_eq!(results.len(), 100);
        for (i, r) in results {
            assert_eq!(r, i * i, "child {i}");
        }
    });
}

#[test]
fn a_large_result_is_awaited_while_other_tasks_run() {
    deadline(LIMIT, || {
        let mut child = builder().spawn(large_after, 300).unwrap();
        let ticks = Arc::new(AtomicU64::new(0));
        let counted = ticks.clone();
        let (result, ticks_during) = runtime().block_on(async move {
            let ticker = tokio::spawn(async move {
                loop {
                    tokio::time::sleep(Duration::from_millis(1)).await;
                    counted.fetch_add(1, Ordering::Relaxed);
                }
            });
            let result = child.join_async().await;
            let during = ticks.load(Ordering::Relaxed);
            ticker.abort();
            (result, during)
        });
        assert!(
            result.unwrap() == pattern(44, LARGE),
            "the result came back changed"
        ); // 300 as u8
        // The child napped 300 ms before it answered: a join that held the only thread
        // would have let the ticker run not once in that time.
        assert!(
            ticks_during >= 10,
            "the runtime's thread was blocked: {ticks_during} ticks"
        );
    });
}

#[test]
fn a_dropped_join_leaves_the_child_joinable() {
    deadline(LIMIT, || {
        let rt = runtime();
        let wait = Duration::from_millis(10);
        // Joined again by a new future.
        let mut child = builder().spawn(sleep_ms, 300).unwrap();
        rt.block_on(async {
            let early = tokio::time::timeout(wait, child.join_async()).await;
            assert!(early.is_err(), "joined before the child's nap ended");
            let early = tokio::time::timeout(wait, child.wait_async()).await;
            assert!(early.is_err(), "waited before the child's nap ended");
            assert_eq!(child.join_async().await.unwrap(), 300);
        });
        assert_eq!(child.exit_status(), Some(ExitStatus::Code(0)));
        let again = rt.block_on(child.join_async()).unwrap_err();
        assert_eq!(again.kind(), ErrorKind::AlreadyJoined);
        // Joined by the blocking join.
        let mut child = builder().spawn(sleep_ms, 300).unwrap();
        let early = rt.block_on(async { tokio::time::timeout(wait, child.join_async()).await });
        assert!(early.is_err(), "joined before the child's nap ended");
        assert!(child.is_alive());
        assert_eq!(child.join().unwrap(), 300);
        assert_eq!(
            rt.block_on(child.wait_async()).unwrap(),
            ExitStatus::Code(0)
        );
    });
}

#[test]
fn a_join_dropped_while_a_large_result_arrives_loses_nothing() {
    deadline(LIMIT, || {
        let rt = runtime();
        for blocking in [false, true] {
            let file = |what: &str| {
                let path = std::env::temp_dir().join(format!(
                    "mproc-async-{what}-{}-{}-{blocking}",
                    std::process::id(),
                    mproc_tests::method().as_str()
                ));
                let _ = std::fs::remove_file(&path);
                path
            };
            let (started, release) = (file("started"), file("release"));
            let names = |p: &std::path::Path| p.to_str().unwrap().to_string();
            let mut child = builder()
                .spawn(large_then_linger, (names(&started), names(&release)))
                .unwrap();
            // Futures, each dropped after a while, until the child's own child has started
            // and a while after (the reply goes out then, under one of them); the child is
            // still there after each.
            rt.block_on(async {
                let mut after_start = 0;
                while after_start < 40 {
                    let early =
                        tokio::time::timeout(Duration::from_millis(25), child.join_async()).await;
                    assert!(early.is_err(), "the child ended before it was let go");
                    if started.exists() {
                        after_start += 1;
                    }
                }
            });
            assert!(child.is_alive());
            std::fs::write(&release, b"go").unwrap();
            let result = if blocking {
                child.join()
            } else {
                rt.block_on(child.join_async())
            };
            assert!(
                result.unwrap() == pattern(7, LINGERING),
                "the result came back changed"
            );
            assert_eq!(child.exit_status(), Some(ExitStatus::Code(0)));
            let _ = std::fs::remove_file(&started);
            let _ = std::fs::remove_file(&release);
        }
    });
}

#[test]
fn a_child_killed_while_awaited_fails_as_a_blocking_join_does() {
    deadline(LIMIT, || {
        let rt = runtime();
        let mut awaited = builder().spawn(sleep_ms, 30_000).unwrap();
        let pidfd = awaited.sentinel().try_clone_to_owned().unwrap();
        let (async_err, _) = rt.block_on(async {
            tokio::join!(awaited.join_async(), async {
                tokio::time::sleep(Duration::from_millis(50)).await;
                mproc_sys::pidfd_send_signal(pidfd.as_fd(), mproc_sys::SIGKILL).unwrap();
            })
        });
        let async_err = async_err.unwrap_err();

        let mut joined = builder().spawn(sleep_ms, 30_000).unwrap();
        joined.kill().unwrap();
        let blocking_err = joined.join().unwrap_err();

        assert_eq!(async_err.kind(), ErrorKind::Died);
        assert_eq!(async_err.kind(), blocking_err.kind());
        assert_eq!(async_err.exit_status(), Some(ExitStatus::Signal(9)));
        assert_eq!(async_err.exit_status(), blocking_err.exit_status());

        // `wait_async` of a killed child: its status.
        let mut waited = builder().spawn(sleep_ms, 30_000).unwrap();
        waited.kill().unwrap();
        assert_eq!(
            rt.block_on(waited.wait_async()).unwrap(),
            ExitStatus::Signal(9)
        );
    });
}

#[test]
fn a_child_that_panics_fails_as_a_blocking_join_does() {
    deadline(LIMIT, || {
        let rt = runtime();
        let mut awaited = builder().spawn(boom, "async".to_string()).unwrap();
        let async_err = rt.block_on(awaited.join_async()).unwrap_err();
        let mut joined = builder().spawn(boom, "async".to_string()).unwrap();
        let blocking_err = joined.join().unwrap_err();

        assert_eq!(async_err.kind(), ErrorKind::Panicked);
        assert_eq!(async_err.kind(), blocking_err.kind());
        assert!(async_err.panic_message().unwrap().contains("boom: async"));
        assert_eq!(async_err.panic_message(), blocking_err.panic_message());
        assert_eq!(async_err.exit_status(), Some(ExitStatus::Code(1)));
        assert_eq!(async_err.exit_status(), blocking_err.exit_status());
    });
}

/// A fork server of our own, killed while its child is awaited: the await goes on from the
/// server's status socket (closed by the server's death) to the child's pidfd, and ends as
/// the blocking join does.
#[test]
fn the_fork_server_killed_while_its_child_is_awaited() {
    deadline(LIMIT, || {
        let rt = runtime();
        let outcome = |awaited: bool| {
            // SAFETY: the other threads of the test binary are the harness's and the
            // watchdogs', idle as far as mproc's locks go (see `mproc_tests::builder`).
            let permit = unsafe { ForkPermit::other_threads_are_idle() };
            let server = Arc::new(ForkServer::start(Some(permit)).unwrap());
            let server_pid = server.pid().unwrap();
            let mut child = mproc::Builder::new()
                .fork_server(server.clone())
                .spawn(sleep_ms, 300)
                .unwrap();
            let killer = std::thread::spawn(move || {
                std::thread::sleep(Duration::from_millis(50));
                mproc_sys::kill_pid(server_pid, mproc_sys::SIGKILL).unwrap();
            });
            let joined = if awaited {
                rt.block_on(child.join_async())
            } else {
                child.join()
            };
            killer.join().unwrap();
            drop(server);
            let waited = if awaited {
                rt.block_on(child.wait_async())
            } else {
                child.wait()
            };
            (joined.map_err(|e| e.kind()), waited.map_err(|e| e.kind()))
        };
        let awaited = outcome(true);
        assert_eq!(awaited, outcome(false));
        // The child outlived its server: its result came, its status is lost.
        assert_eq!(awaited, (Ok(300), Err(ErrorKind::StatusLost)));
    });
}
