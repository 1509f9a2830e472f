//! Child processes: results, failures, signals, deadlines, daemons, zombies, fork safety and
//! large payloads, under the start method named by `MPROC_START_METHOD` (the suite runs once
//! per method). Every test runs inside a deadline that kills its children.

use std::io::Write;
use std::os::fd::AsFd;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use mproc::process::ErrorKind;
use mproc::{ExitStatus, StartMethod};
use mproc_tests::{
    builder, deadline, finish_helper, method, read_tagged_line, wait_gone, zombies_of,
};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

mproc::init_before_main!();

const LIMIT: Duration = Duration::from_secs(60);
const HELPER: &str = env!("CARGO_BIN_EXE_mproc-helper");

fn square(x: u64) -> u64 {
    x * x
}

fn boom(msg: String) -> u8 {
    panic!("boom: {msg}")
}

fn exit_with(code: i32) {
    std::process::exit(code)
}

fn sleep_ms(ms: u64) -> u64 {
    std::thread::sleep(Duration::from_millis(ms));
    ms
}

fn reverse(mut v: Vec<u8>) -> Vec<u8> {
    v.reverse();
    v
}

fn who_am_i(_: ()) -> (u32, String, bool, Option<(u32, String, bool)>) {
    let me = mproc::current_process();
    let parent = mproc::parent_process().map(|p| (p.pid(), p.name().to_string(), p.is_alive()));
    (me.pid(), me.name().to_string(), me.is_daemon(), parent)
}

fn read_env(key: String) -> Option<String> {
    std::env::var(&key).ok()
}

/// Runs in a child and starts a grandchild with the same method.
fn spawn_grandchild(x: u64) -> u64 {
    let mut g = mproc_tests::builder()
        .spawn(square, x)
        .expect("grandchild spawn");
    g.join().expect("grandchild join") + 1
}

#[test]
fn result_comes_back_typed() {
    deadline(LIMIT, || {
        let mut c = builder().spawn(square, 12).unwrap();
        assert_eq!(c.start_method(), method());
        assert_eq!(c.join().unwrap(), 144);
        assert_eq!(c.exit_status(), Some(ExitStatus::Code(0)));
        assert!(!c.is_alive());
    });
}

#[test]
fn non_capturing_closure_runs() {
    deadline(LIMIT, || {
        let mut c = builder()
            .spawn(
                |(a, b): (String, u32)| a.repeat(b as usize),
                ("ab".to_string(), 3),
            )
            .unwrap();
        assert_eq!(c.join().unwrap(), "ababab");
    });
}

#[test]
fn panic_comes_back_with_its_message() {
    deadline(LIMIT, || {
        let mut c = builder().spawn(boom, "kaput".to_string()).unwrap();
        let err = c.join().unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Panicked);
        let msg = err.panic_message().unwrap();
        assert!(msg.contains("boom: kaput"), "{msg}");
        assert!(msg.contains("process.rs"), "location in {msg}");
        assert_eq!(err.exit_status(), Some(ExitStatus::Code(1)));
        assert_eq!(c.exit_status(), Some(ExitStatus::Code(1)));
    });
}

#[test]
fn exit_code_comes_back_as_such() {
    deadline(LIMIT, || {
        let mut c = builder().spawn(exit_with, 3).unwrap();
        let err = c.join().unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Died);
        assert_eq!(err.exit_status(), Some(ExitStatus::Code(3)));
        assert_eq!(c.wait().unwrap(), ExitStatus::Code(3));
    });
}

#[test]
fn terminate_and_kill_come_back_as_signals() {
    deadline(LIMIT, || {
        for (sig, send) in [(15, true), (9, false)] {
            let mut c = builder().spawn(sleep_ms, 60_000).unwrap();
            assert!(c.is_alive());
            if send {
                c.terminate().unwrap()
            } else {
                c.kill().unwrap()
            }
            let err = c.join().unwrap_err();
            assert_eq!(err.kind(), ErrorKind::Died);
            assert_eq!(err.exit_status(), Some(ExitStatus::Signal(sig)));
            assert_eq!(c.exit_status().unwrap().python_exitcode(), -sig);
        }
    });
}

#[test]
fn join_timeout_leaves_the_child_joinable() {
    deadline(LIMIT, || {
        let mut c = builder().spawn(sleep_ms, 500).unwrap();
        let t0 = Instant::now();
        let err = c.join_timeout(Duration::from_millis(50)).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Timeout);
        assert!(t0.elapsed() >= Duration::from_millis(50));
        assert!(c.is_alive());
        assert!(c.try_join().unwrap().is_none());
        assert_eq!(c.exit_status(), None);
        assert_eq!(c.join().unwrap(), 500);
    });
}

#[test]
fn join_twice_and_wait_repeatedly() {
    deadline(LIMIT, || {
        let mut c = builder().spawn(square, 5).unwrap();
        assert_eq!(c.join().unwrap(), 25);
        assert_eq!(c.join().unwrap_err().kind(), ErrorKind::AlreadyJoined);
        assert_eq!(c.wait().unwrap(), ExitStatus::Code(0));
        assert_eq!(c.wait_timeout(Duration::ZERO).unwrap(), ExitStatus::Code(0));
    });
}

#[test]
fn kill_and_terminate_of_a_finished_child_are_harmless() {
    deadline(LIMIT, || {
        let mut c = builder().spawn(square, 2).unwrap();
        assert_eq!(c.join().unwrap(), 4);
        c.kill().unwrap();
        c.terminate().unwrap();
        assert_eq!(c.exit_status(), Some(ExitStatus::Code(0)));
    });
}

#[test]
fn sixteen_mib_argument_and_result_round_trip() {
    deadline(LIMIT, || {
        let big: Vec<u8> = (0..16u32 << 20).map(|i| (i % 253) as u8).collect();
        let mut c = builder().spawn(reverse, big.clone()).unwrap();
        let back = c.join().unwrap();
        assert_eq!(back.len(), big.len());
        assert!(back.iter().rev().eq(big.iter()));
    });
}

#[test]
fn a_large_result_does_not_keep_the_child_alive() {
    // The result travels in a memfd: the child exits without waiting for us to read.
    deadline(LIMIT, || {
        let mut c = builder().spawn(reverse, vec![1u8; 8 << 20]).unwrap();
        assert!(
            wait_gone(c.sentinel(), Duration::from_secs(30)),
            "child still alive with an unread result"
        );
        assert_eq!(c.join().unwrap().len(), 8 << 20);
    });
}

#[test]
fn names_identity_and_parent() {
    deadline(LIMIT, || {
        let mut c = builder()
            .name("worker-a")
            .daemon(true)
            .spawn(who_am_i, ())
            .unwrap();
        let pid = c.pid();
        let (child_pid, name, daemon, parent) = c.join().unwrap();
        assert_eq!(child_pid, pid);
        assert_eq!(name, "worker-a");
        assert!(daemon);
        let (ppid, pname, palive) = parent.unwrap();
        assert_eq!(ppid, std::process::id());
        assert_eq!(pname, "MainProcess");
        assert!(palive);
        let mut d = builder().spawn(who_am_i, ()).unwrap();
        assert!(d.name().starts_with("Process-"), "{}", d.name());
        assert_eq!(d.join().unwrap().1, d.name());
    });
}

#[test]
fn env_overrides_reach_the_child() {
    deadline(LIMIT, || {
        let mut c = builder()
            .env("MPROC_TEST_VAR", "set-by-builder")
            .spawn(read_env, "MPROC_TEST_VAR".into())
            .unwrap();
        assert_eq!(c.join().unwrap().as_deref(), Some("set-by-builder"));
        let mut c = builder()
            .env_remove("PATH")
            .spawn(read_env, "PATH".into())
            .unwrap();
        assert_eq!(c.join().unwrap(), None);
    });
}

#[test]
fn a_child_can_spawn_children() {
    deadline(LIMIT, || {
        let mut c = builder().spawn(spawn_grandchild, 6).unwrap();
        assert_eq!(c.join().unwrap(), 37);
    });
}

#[test]
fn active_children_and_wait_on_sentinels() {
    deadline(LIMIT, || {
        let mut slow = builder().spawn(sleep_ms, 60_000).unwrap();
        let mut fast = builder().spawn(sleep_ms, 10).unwrap();
        let ready = mproc::wait(
            &[&slow.sentinel(), &fast.sentinel()],
            Some(Duration::from_secs(30)),
        )
        .unwrap();
        assert_eq!(ready, [1]);
        assert!(
            mproc::active_children()
                .iter()
                .any(|p| p.pid() == slow.pid())
        );
        assert_eq!(
            mproc::wait(&[&slow.sentinel()], Some(Duration::from_millis(20))).unwrap(),
            Vec::<usize>::new()
        );
        slow.kill().unwrap();
        slow.wait().unwrap();
        fast.join().unwrap();
        assert!(
            !mproc::active_children()
                .iter()
                .any(|p| p.pid() == slow.pid() || p.pid() == fast.pid())
        );
    });
}

#[test]
fn five_hundred_spawns_leave_no_zombie() {
    deadline(Duration::from_secs(240), || {
        let mut pids = Vec::new();
        for i in 0..500u64 {
            let mut c = builder().spawn(square, i).unwrap();
            pids.push(c.pid());
            if i % 2 == 0 {
                assert_eq!(c.join().unwrap(), i * i);
            } // odd ones are dropped unjoined: detached, reaped in the background
        }
        // Everything we started ends; active_children() reaps what was detached.
        let t0 = Instant::now();
        while pids.iter().any(|p| {
            mproc_tests::proc_state(*p).is_some_and(|(s, pp)| s != 'Z' && pp == std::process::id())
        }) || !mproc::active_children().is_empty()
        {
            assert!(
                t0.elapsed() < Duration::from_secs(60),
                "children did not finish"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        mproc::active_children();
        assert_eq!(
            zombies_of(std::process::id()),
            0,
            "zombies left among our children"
        );
        if let Some(server) = mproc::process::fork_server_pid() {
            // Give the server a moment to reap the last ones it forked.
            let t0 = Instant::now();
            while zombies_of(server) > 0 && t0.elapsed() < Duration::from_secs(10) {
                std::thread::sleep(Duration::from_millis(20));
            }
            assert_eq!(zombies_of(server), 0, "zombies left under the fork server");
        }
    });
}

#[test]
fn a_child_reaped_behind_our_back_is_not_a_hang() {
    if method() == StartMethod::ForkServer {
        return; // the fork server's children are not ours to reap
    }
    deadline(LIMIT, || {
        let mut c = builder().spawn(square, 9).unwrap();
        // Reap it ourselves, as a `waitpid(-1)` elsewhere in the program would.
        assert_eq!(
            mproc_sys::wait_pid(c.pid(), true).unwrap(),
            Some(ExitStatus::Code(0))
        );
        assert_eq!(c.wait().unwrap_err().kind(), ErrorKind::StatusLost);
        // The result it sent is still there.
        assert_eq!(c.join().unwrap(), 81);
        assert!(!c.is_alive());
    });
}

#[test]
fn fork_is_refused_while_other_threads_run() {
    deadline(LIMIT, || {
        let (tx, rx) = std::sync::mpsc::channel::<()>();
        let t = std::thread::spawn(move || rx.recv());
        let err = mproc::Builder::new()
            .start_method(StartMethod::Fork)
            .spawn(square, 2)
            .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::ForkRefused);
        assert!(err.to_string().contains("threads"), "{err}");
        tx.send(()).unwrap();
        t.join().unwrap().unwrap();
    });
}

/// A type that serializes fine but refuses to deserialize (in the child).
#[derive(Debug)]
struct Undecodable;
impl Serialize for Undecodable {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u8(1)
    }
}
impl<'de> Deserialize<'de> for Undecodable {
    fn deserialize<D: Deserializer<'de>>(_: D) -> Result<Self, D::Error> {
        Err(serde::de::Error::custom("refuses to deserialize"))
    }
}

/// A type that refuses to serialize (as the child's result).
#[derive(Debug)]
struct Unencodable;
impl Serialize for Unencodable {
    fn serialize<S: Serializer>(&self, _: S) -> Result<S::Ok, S::Error> {
        Err(serde::ser::Error::custom("refuses to serialize"))
    }
}
impl<'de> Deserialize<'de> for Unencodable {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        u8::deserialize(d).map(|_| Unencodable)
    }
}

fn take_undecodable(_: Undecodable) -> u8 {
    0
}

fn make_unencodable(_: ()) -> Unencodable {
    Unencodable
}

#[test]
fn serialization_failures_are_errors_not_hangs() {
    deadline(LIMIT, || {
        let err = builder()
            .spawn(make_unencodable, ())
            .unwrap()
            .join()
            .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Encode, "{err}");
        if method() != StartMethod::Fork {
            // Fork hands the argument over in memory: there is nothing to deserialize.
            let err = builder()
                .spawn(take_undecodable, Undecodable)
                .unwrap()
                .join()
                .unwrap_err();
            assert_eq!(err.kind(), ErrorKind::Decode, "{err}");
        }
        // An argument that cannot be serialized fails in the parent, before any child,
        // under every method (fork hands it over in memory, but walks it as a message to
        // find the handles it holds).
        let spawned = builder().spawn(|_: Unencodable| (), Unencodable);
        assert_eq!(spawned.unwrap_err().kind(), ErrorKind::Encode);
    });
}

/// A result whose `Serialize` panics, and one whose `Drop` panics.
#[derive(Debug)]
struct PanicsOnSerialize;
impl Serialize for PanicsOnSerialize {
    fn serialize<S: Serializer>(&self, _: S) -> Result<S::Ok, S::Error> {
        panic!("serialize went bang")
    }
}
impl<'de> Deserialize<'de> for PanicsOnSerialize {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        u8::deserialize(d).map(|_| PanicsOnSerialize)
    }
}

#[derive(Debug, Serialize, Deserialize)]
struct PanicsOnDrop(u8);
impl Drop for PanicsOnDrop {
    fn drop(&mut self) {
        if mproc::parent_process().is_some() {
            panic!("drop went bang"); // only in the child
        }
    }
}

/// An argument whose `Deserialize` panics (in the child).
#[derive(Debug)]
struct PanicsOnDeserialize;
impl Serialize for PanicsOnDeserialize {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u8(0)
    }
}
impl<'de> Deserialize<'de> for PanicsOnDeserialize {
    fn deserialize<D: Deserializer<'de>>(_: D) -> Result<Self, D::Error> {
        panic!("deserialize went bang")
    }
}

#[test]
fn panics_in_user_serde_code_come_back_as_panics() {
    deadline(LIMIT, || {
        let server = mproc::process::fork_server_pid();
        let err = builder()
            .spawn(|_: ()| PanicsOnSerialize, ())
            .unwrap()
            .join()
            .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Panicked, "{err}");
        assert!(
            err.panic_message().unwrap().contains("serialize went bang"),
            "{err}"
        );
        let err = builder()
            .spawn(|_: ()| PanicsOnDrop(1), ())
            .unwrap()
            .join()
            .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Panicked, "{err}");
        assert!(
            err.panic_message().unwrap().contains("drop went bang"),
            "{err}"
        );
        if method() != StartMethod::Fork {
            let err = builder()
                .spawn(|_: PanicsOnDeserialize| 1u8, PanicsOnDeserialize)
                .unwrap()
                .join()
                .unwrap_err();
            assert_eq!(err.kind(), ErrorKind::Panicked, "{err}");
            assert!(
                err.panic_message()
                    .unwrap()
                    .contains("deserialize went bang"),
                "{err}"
            );
        }
        // None of it reached the fork server: it is the same one, still serving.
        if server.is_some() {
            assert_eq!(mproc::process::fork_server_pid(), server);
        }
        assert_eq!(builder().spawn(square, 3).unwrap().join().unwrap(), 9);
    });
}

/// Returns the fds open in the child, and whether fd `probe` is one of them.
fn open_fds(probe: i32) -> (usize, bool) {
    (
        mproc_sys::open_fd_count().unwrap(),
        mproc_sys::fd_kind(probe) != mproc_sys::FdKind::Closed,
    )
}

#[test]
fn spawned_children_inherit_no_stray_fds() {
    deadline(LIMIT, || {
        // An fd of ours without close-on-exec, as a careless library might leave one. Its
        // number must not be one the child uses itself (3 or 4), hence the padding.
        let _padding: Vec<_> = (0..3).map(|_| mproc_sys::socketpair().unwrap()).collect();
        let (a, _b) = mproc_sys::socketpair().unwrap();
        assert!(std::os::fd::AsRawFd::as_raw_fd(&a) > 4);
        mproc_sys::set_cloexec(a.as_fd(), false).unwrap();
        let raw = std::os::fd::AsRawFd::as_raw_fd(&a);
        let (count, has_probe) = builder().spawn(open_fds, raw).unwrap().join().unwrap();
        if method() == StartMethod::Fork {
            assert!(has_probe, "fork copies every fd: that is what fork is");
        } else {
            assert!(!has_probe, "fd {raw} leaked into the child");
            // stdin, stdout, stderr, the child's own socket and its pidfd of its parent
            // (for `parent_process()`): nothing of the parent's or of the fork server's.
            assert_eq!(count, 5, "the child has {count} open fds");
        }
    });
}

#[test]
fn fork_does_not_print_buffered_output_twice() {
    deadline(LIMIT, || {
        let out = run_helper(helper("flush-before-fork"));
        assert_eq!(out.matches("buffered-before-fork").count(), 1, "{out}");
        assert!(out.contains("joined 25"), "{out}");
    });
}

#[test]
fn a_child_of_another_build_is_refused() {
    deadline(LIMIT, || {
        // The helper binary calls mproc::init() but is another build: the handshake says so.
        let mut c = mproc::Builder::new()
            .start_method(StartMethod::Spawn)
            .executable(HELPER)
            .spawn(square, 2)
            .unwrap();
        let err = c.join().unwrap_err();
        assert_eq!(err.kind(), ErrorKind::BuildMismatch, "{err}");
    });
}

#[test]
fn a_copy_of_this_build_elsewhere_is_the_same_build() {
    deadline(LIMIT, || {
        // Another file (another inode and mtime, as a copy on another host would have) with
        // the same contents: the build fingerprint must still match. `cp` writes the copy in
        // its own process, so no fork of this test binary can hold it open for writing
        // (which would make its exec fail with ETXTBSY).
        let dir = std::env::temp_dir().join(format!(
            "mproc-copied-build-{}-{}",
            std::process::id(),
            method()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let copy = dir.join("copy");
        let me = std::env::current_exe().unwrap();
        let status = Command::new("cp").arg(&me).arg(&copy).status().unwrap();
        assert!(status.success(), "cp {} failed", me.display());
        let got = mproc::Builder::new()
            .start_method(StartMethod::Spawn)
            .executable(&copy)
            .spawn(square, 12)
            .unwrap()
            .join();
        let _ = std::fs::remove_dir_all(&dir);
        assert_eq!(got.unwrap(), 144);
    });
}

#[test]
fn a_child_that_dies_before_the_handshake_is_reported() {
    deadline(LIMIT, || {
        // /bin/false never reads its request and exits 1.
        let mut c = mproc::Builder::new()
            .start_method(StartMethod::Spawn)
            .executable("/bin/false")
            .spawn(square, 2)
            .unwrap();
        let err = c.join().unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Died);
        assert_eq!(err.exit_status(), Some(ExitStatus::Code(1)));
    });
}

#[test]
fn a_killed_fork_server_is_restarted() {
    if method() != StartMethod::ForkServer {
        return; // only the fork server method has a server
    }
    deadline(LIMIT, || {
        assert_eq!(builder().spawn(square, 3).unwrap().join().unwrap(), 9);
        let server = mproc::process::fork_server_pid().expect("a fork server runs");
        let pidfd = mproc_sys::pidfd_open(server).unwrap();
        mproc_sys::pidfd_send_signal(pidfd.as_fd(), mproc_sys::SIGKILL).unwrap();
        assert!(wait_gone(pidfd.as_fd(), Duration::from_secs(10)));
        assert_eq!(builder().spawn(square, 4).unwrap().join().unwrap(), 16);
        assert_ne!(mproc::process::fork_server_pid(), Some(server));
    });
}

#[test]
fn with_the_log_feature_env_logger_shows_a_childs_start_and_end() {
    deadline(LIMIT, || {
        let child = helper("log-child")
            .env("RUST_LOG", "debug")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let out = finish_helper(child, Duration::from_secs(30), "log helper overstayed");
        let stdout = String::from_utf8_lossy(&out.stdout);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stdout.contains("result 42"), "{stdout}");
        let started = format!("by {}", method().as_str());
        assert!(
            stderr.contains("started Process-") && stderr.contains(&started),
            "{stderr}"
        );
        assert!(stderr.contains(") ended: "), "{stderr}");
    });
}

fn helper(mode: &str) -> Command {
    let mut cmd = Command::new(HELPER);
    cmd.arg(mode).env("MPROC_START_METHOD", method().as_str());
    cmd
}

/// Runs a helper to completion with a deadline, killing it if it overstays.
fn run_helper(mut cmd: Command) -> String {
    let child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let out = finish_helper(
        child,
        Duration::from_secs(30),
        "helper overstayed its deadline",
    );
    String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr)
}

#[test]
fn spawning_without_init_says_to_add_it() {
    deadline(LIMIT, || {
        let out = run_helper(helper("no-init"));
        assert!(
            out.contains("error: mproc::init() was not called; make it the first line of main"),
            "{out}"
        );
    });
}

#[test]
fn output_printed_just_before_returning_is_not_lost() {
    deadline(LIMIT, || {
        let out = run_helper(helper("print-before-return"));
        assert!(out.contains("printed-by-child"), "{out}");
        assert!(out.contains("printed-by-child-on-stderr"), "{out}");
        assert!(out.contains("joined 16"), "{out}");
    });
}

#[test]
fn children_read_stdin_from_dev_null() {
    deadline(LIMIT, || {
        // The helper's stdin is a pipe that stays open and empty: only a child whose stdin
        // is /dev/null (as in Python) returns.
        let mut cmd = helper("child-reads-stdin");
        let mut child = cmd
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let _keep_open = child.stdin.take();
        let out = finish_helper(
            child,
            Duration::from_secs(30),
            "the child waited on the parent's stdin",
        );
        let out = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(out.contains("child read Ok(0)"), "{out}");
    });
}

#[test]
fn a_daemon_child_dies_when_its_parent_is_sigkilled() {
    deadline(LIMIT, || {
        let mut parent = helper("daemon-parent")
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let pid: u32 = read_tagged_line(&mut parent, "child ").parse().unwrap();
        let pidfd = mproc_sys::pidfd_open(pid).unwrap();
        assert!(
            !wait_gone(pidfd.as_fd(), Duration::ZERO),
            "daemon child alive before the kill"
        );
        parent.kill().unwrap(); // SIGKILL: no destructor, no atexit
        parent.wait().unwrap();
        assert!(
            wait_gone(pidfd.as_fd(), Duration::from_secs(20)),
            "daemon child {pid} survived its parent"
        );
    });
}

#[test]
fn replacing_the_executable_on_disk_does_not_break_spawn() {
    deadline(LIMIT, || {
        let dir = std::env::temp_dir().join(format!(
            "mproc-replaced-{}-{}",
            std::process::id(),
            method()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let exe = dir.join("helper");
        std::fs::copy(HELPER, &exe).unwrap();
        // A child forked meanwhile by another test's thread may still hold the copy's
        // write end for an instant (ETXTBSY): try again, as cargo does.
        let mut child = loop {
            match Command::new(&exe)
                .arg("spawn-on-line")
                .env("MPROC_START_METHOD", method().as_str())
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .spawn()
            {
                Err(e) if e.raw_os_error() == Some(26) => {
                    std::thread::sleep(Duration::from_millis(20));
                }
                r => break r.unwrap(),
            }
        };
        // Replace the file the running helper was started from, then let it spawn.
        let other = dir.join("other");
        std::fs::write(&other, b"#!/bin/sh\nexit 7\n").unwrap();
        std::fs::rename(&other, &exe).unwrap();
        child.stdin.take().unwrap().write_all(b"go\n").unwrap();
        let out = finish_helper(
            child,
            Duration::from_secs(30),
            "helper overstayed its deadline",
        );
        let out = String::from_utf8_lossy(&out.stdout).into_owned();
        let _ = std::fs::remove_dir_all(&dir);
        assert!(out.contains("result Ok(144)"), "{out}");
    });
}

#[test]
fn a_batch_starts_every_child_in_order_with_numbered_names() {
    deadline(LIMIT, || {
        let children = builder()
            .name("batch")
            .spawn_batch(who_am_i, [(), (), ()])
            .unwrap();
        assert_eq!(children.len(), 3);
        let mut pids = Vec::new();
        for (i, mut c) in children.into_iter().enumerate() {
            assert_eq!(c.name(), format!("batch-{}", i + 1));
            let (pid, name, _, _) = c.join().unwrap();
            assert_eq!((pid, name.as_str()), (c.pid(), c.name()));
            pids.push(pid);
        }
        pids.sort();
        pids.dedup();
        assert_eq!(pids.len(), 3);
        let squares: Vec<u64> = builder()
            .spawn_batch(square, 0..5)
            .unwrap()
            .into_iter()
            .map(|mut c| c.join().unwrap())
            .collect();
        assert_eq!(squares, [0, 1, 4, 9, 16]);
        assert!(
            builder()
                .spawn_batch(square, Vec::new())
                .unwrap()
                .is_empty()
        );
    });
}

#[test]
fn a_batch_of_large_and_small_requests_and_many_children_works() {
    deadline(LIMIT, || {
        // A request of some 5 KiB followed by small ones, sent together: the server's read
        // of the first may run into the next (timing decides), which must still be served.
        let args = vec![
            vec![7u8; 5000],
            vec![1],
            vec![2, 3],
            vec![9u8; 5000],
            vec![],
        ];
        let got: Vec<Vec<u8>> = builder()
            .spawn_batch(reverse, args.clone())
            .unwrap()
            .into_iter()
            .map(|mut c| c.join().unwrap())
            .collect();
        let want: Vec<Vec<u8>> = args
            .into_iter()
            .map(|mut v| {
                v.reverse();
                v
            })
            .collect();
        assert_eq!(got, want);
        // More children than a batch keeps unanswered at once.
        let squares: Vec<u64> = builder()
            .spawn_batch(square, 0..40)
            .unwrap()
            .into_iter()
            .map(|mut c| c.join().unwrap())
            .collect();
        assert_eq!(squares, (0..40).map(|x| x * x).collect::<Vec<u64>>());
    });
}

#[test]
fn a_child_starts_with_the_parents_environment_and_directory_of_the_moment() {
    deadline(LIMIT, || {
        let mut cmd = helper("env-cwd");
        cmd.env("MPROC_HELPER_GONE", "here")
            .env_remove("MPROC_HELPER_K")
            .current_dir("/");
        let out = run_helper(cmd);
        let line = |tag: &str| {
            out.lines()
                .find_map(|l| l.strip_prefix(tag))
                .unwrap_or_else(|| panic!("no {tag:?} line in:\n{out}"))
                .to_string()
        };
        let dir = line("dir ");
        assert_eq!(line("first "), "K=unset GONE=here cwd=/");
        assert_eq!(line("second "), format!("K=v GONE=unset cwd={dir}"));
        assert_eq!(line("third "), format!("K=override GONE=unset cwd={dir}"));
    });
}

#[test]
fn a_spawn_right_after_the_fork_server_is_killed_still_starts_its_child() {
    if method() != StartMethod::ForkServer {
        return; // only the fork server method has a server
    }
    deadline(LIMIT, || {
        // The kill races the next request: sometimes the server is gone before it is sent,
        // sometimes it dies with the request unread in its socket (ECONNRESET). Either way
        // the request goes to a fresh server. The delays vary from none to 300 µs.
        let mut seed = 0x2545_f491_4f6c_dd1du64;
        for round in 0..40u64 {
            assert_eq!(
                builder().spawn(square, round).unwrap().join().unwrap(),
                round * round
            );
            let server = mproc::process::fork_server_pid().expect("a fork server runs");
            mproc_sys::kill_pid(server, mproc_sys::SIGKILL).unwrap();
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            let delay = seed % 300;
            if delay > 0 {
                std::thread::sleep(Duration::from_micros(delay));
            }
            // Odd rounds ask for a batch: its first request is retried the same way.
            if round % 2 == 0 {
                let mut child = builder()
                    .spawn(square, round + 1)
                    .unwrap_or_else(|e| panic!("round {round}, {delay} µs after the kill: {e}"));
                assert_eq!(child.join().unwrap(), (round + 1) * (round + 1));
            } else {
                let children = builder()
                    .spawn_batch(square, [round, round + 1, round + 2])
                    .unwrap_or_else(|e| {
                        panic!("round {round}, batch, {delay} µs after the kill: {e}")
                    });
                for (i, mut child) in children.into_iter().enumerate() {
                    let x = round + i as u64;
                    assert_eq!(child.join().unwrap(), x * x);
                }
            }
            assert_ne!(mproc::process::fork_server_pid(), Some(server));
        }
    });
}

#[test]
fn the_exit_joins_children_terminates_daemonic_ones_and_lets_others_outlive_it() {
    deadline(LIMIT, || {
        let marker = std::env::temp_dir().join(format!(
            "mproc-exit-{}-{}",
            std::process::id(),
            method().as_str()
        ));
        let marker = marker.to_str().unwrap().to_string();
        let path = |what: &str| std::path::PathBuf::from(format!("{marker}.{what}"));
        for what in ["joined", "daemon", "outlived"] {
            let _ = std::fs::remove_file(path(what));
        }
        // Not through a pipe: the children would hold it open, and reading it to its end
        // would wait for them whatever the helper's exit does.
        let helper = helper("exit-joins")
            .arg(&marker)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let status = finish_helper(helper, Duration::from_secs(30), "the helper never ended");
        assert!(status.status.success());
        // The helper has ended: its exit waited for the plain child.
        assert!(
            path("joined").exists(),
            "the exit did not wait for the child"
        );
        // The child that may outlive it waited for its parent's end (`parent_process().join()`).
        let t0 = Instant::now();
        while !path("outlived").exists() {
            assert!(
                t0.elapsed() < Duration::from_secs(10),
                "the child meant to outlive its parent never saw it end"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
        // The daemonic child (a 200 ms nap, against the plain child's 1500 ms the exit
        // waited for) was terminated at the exit, before its nap ended.
        assert!(!path("daemon").exists(), "the daemonic child ran on");
        for what in ["joined", "outlived"] {
            let _ = std::fs::remove_file(path(what));
        }
    });
}

/// Naps `ms`, then leaves a file at `path`.
fn nap_then_mark((ms, path): (u64, String)) {
    std::thread::sleep(Duration::from_millis(ms));
    std::fs::write(path, b"done").unwrap();
}

/// Starts a grandchild that naps and leaves a file, and returns at once.
fn start_grandchild(path: String) {
    let _ = builder().spawn(nap_then_mark, (300, path)).unwrap();
}

#[test]
fn a_child_waits_for_its_own_children_before_it_ends() {
    deadline(LIMIT, || {
        let path = std::env::temp_dir().join(format!(
            "mproc-grandchild-{}-{}",
            std::process::id(),
            method().as_str()
        ));
        let _ = std::fs::remove_file(&path);
        let p = path.to_str().unwrap().to_string();
        builder()
            .spawn(start_grandchild, p)
            .unwrap()
            .join()
            .unwrap();
        // The child's end waited for the grandchild's, as Python's children do.
        assert!(path.exists(), "the child ended before its child");
        let _ = std::fs::remove_file(&path);
    });
}
