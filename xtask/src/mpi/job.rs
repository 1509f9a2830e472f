//! Running a program under `mpiexec` with a deadline that leaves no process of the job behind.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Read;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use crate::{Result, show};

/// Runs `mpiexec -n <ranks> <binary> <args>` with `envs` added to the environment (hydra
/// passes it on to every rank) and returns its output, whatever its exit status (the
/// caller checks it).
///
/// When `deadline` passes first, every process of the job is killed (hydra puts each proxy
/// and rank in a session of its own, so a process group would not reach them: the job's
/// process tree is stopped, then killed) and it fails, saying so with the output so far.
pub fn run(
    binary: &Path,
    args: &[&str],
    ranks: usize,
    deadline: Duration,
    envs: &[(&str, &str)],
) -> Result<Output> {
    let mut cmd = Command::new("mpiexec");
    cmd.arg("-n").arg(ranks.to_string()).arg(binary).args(args);
    cmd.envs(envs.iter().copied());
    let line = show(&cmd);
    eprintln!("\n$ {line}");
    std::os::unix::process::CommandExt::process_group(&mut cmd, 0);
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("{line}: cannot start: {e}"))?;
    let readers = [
        child.stdout.take().map(read_all),
        child.stderr.take().map(read_all),
    ];
    let started = Instant::now();
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break Some(status),
            Ok(None) if started.elapsed() < deadline => {
                std::thread::sleep(Duration::from_millis(20))
            }
            Ok(None) => break None,
            Err(e) => return Err(format!("{line}: cannot wait: {e}")),
        }
    };
    let Some(status) = status else {
        let job = kill_tree(child.id());
        let _ = child.wait();
        let left = wait_all_gone(&job, Duration::from_secs(10));
        let [out, err] = readers.map(|r| r.and_then(|r| r.recv_timeout(OUTPUT_GRACE).ok()));
        let [out, err] = [out, err].map(Option::unwrap_or_default);
        let mut message = format!(
            "{line} passed its deadline of {:.0?}: killed its {} processes",
            deadline,
            job.len()
        );
        if !left.is_empty() {
            message += &format!("; still alive: {left:?}");
        }
        message += &format!(
            "\nstdout:\n{}\nstderr:\n{}",
            String::from_utf8_lossy(&out),
            String::from_utf8_lossy(&err)
        );
        return Err(message);
    };
    // mpiexec is reaped: its pid may already name another process, so nothing is killed
    // here. A rank that outlived it would hold the pipes open: wait for the output a while.
    let [stdout, stderr] = readers.map(|r| r.and_then(|r| r.recv_timeout(OUTPUT_GRACE).ok()));
    let (Some(stdout), Some(stderr)) = (stdout, stderr) else {
        return Err(format!(
            "{line} ended ({status}) but a process of its job kept its output open for {:.0?}",
            OUTPUT_GRACE
        ));
    };
    eprintln!("  ({:.1} s, {status})", started.elapsed().as_secs_f64());
    Ok(Output {
        status,
        stdout,
        stderr,
    })
}

/// How long the output may take to close once the job has ended or been killed.
const OUTPUT_GRACE: Duration = Duration::from_secs(10);

/// Reads `from` to its end on a thread; the bytes arrive on the returned channel.
fn read_all(mut from: impl Read + Send + 'static) -> mpsc::Receiver<Vec<u8>> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut bytes = Vec::new();
        let _ = from.read_to_end(&mut bytes);
        let _ = tx.send(bytes);
    });
    rx
}

/// A process as `/proc/<pid>/stat` shows it: its pid and start time (which tells a reused
/// pid from the process), and its parent.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct Proc {
    pid: i32,
    start: u64,
}

/// Reads `(process, parent pid, state)` from `/proc/<pid>/stat`.
fn stat(pid: i32) -> Option<(Proc, i32, char)> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name is in parentheses and may hold spaces or parentheses itself.
    let fields: Vec<&str> = text.get(text.rfind(')')? + 2..)?.split(' ').collect();
    let state = fields.first()?.chars().next()?;
    let ppid = fields.get(1)?.parse().ok()?;
    let start = fields.get(19)?.parse().ok()?;
    Some((Proc { pid, start }, ppid, state))
}

/// Returns `root` and every live process below it.
fn tree(root: i32) -> Vec<Proc> {
    let mut children: BTreeMap<i32, Vec<Proc>> = BTreeMap::new();
    let mut me = None;
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Some(pid) = entry.file_name().to_str().and_then(|n| n.parse().ok()) else {
            continue;
        };
        if let Some((p, ppid, _)) = stat(pid) {
            children.entry(ppid).or_default().push(p);
            if pid == root {
                me = Some(p);
            }
        }
    }
    let mut found: Vec<Proc> = me.into_iter().collect();
    let mut i = 0;
    while let Some(p) = found.get(i).copied() {
        found.extend(children.get(&p.pid).into_iter().flatten());
        i += 1;
    }
    found
}

/// Stops `root`'s whole tree (a stopped process cannot fork, so the tree stops growing),
/// then kills it; returns the processes it killed.
fn kill_tree(root: u32) -> Vec<Proc> {
    let Ok(root) = i32::try_from(root) else {
        return Vec::new();
    };
    let mut stopped = BTreeSet::new();
    loop {
        let new: Vec<Proc> = tree(root)
            .into_iter()
            .filter(|p| !stopped.contains(p))
            .collect();
        if new.is_empty() {
            break;
        }
        for p in new {
            let _ = kill(Pid::from_raw(p.pid), Signal::SIGSTOP);
            stopped.insert(p);
        }
    }
    for p in &stopped {
        if stat(p.pid).is_some_and(|(now, _, _)| now == *p) {
            let _ = kill(Pid::from_raw(p.pid), Signal::SIGKILL);
        }
    }
    stopped.into_iter().collect()
}

/// Whether `p` still runs (a zombie has ended; another process under its pid is not it).
fn alive(p: &Proc) -> bool {
    stat(p.pid).is_some_and(|(now, _, state)| now == *p && state != 'Z')
}

/// Waits up to `limit` for every process of `job` to end; returns those still alive.
fn wait_all_gone(job: &[Proc], limit: Duration) -> Vec<i32> {
    let started = Instant::now();
    loop {
        let left: Vec<i32> = job.iter().filter(|p| alive(p)).map(|p| p.pid).collect();
        if left.is_empty() || started.elapsed() > limit {
            return left;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_rank_runs_and_its_output_comes_back() {
        let out = run(Path::new("hostname"), &[], 3, Duration::from_secs(60), &[]).unwrap();
        assert!(out.status.success(), "{out:?}");
        let host = Command::new("hostname").output().unwrap().stdout;
        let host = String::from_utf8_lossy(&host);
        let text = String::from_utf8_lossy(&out.stdout);
        assert_eq!(text.lines().collect::<Vec<_>>(), [host.trim(); 3]);
    }

    #[test]
    fn a_job_past_its_deadline_is_killed_whole() {
        // A marker in the arguments finds the ranks in /proc afterwards, wherever they went.
        let marker = format!("{}.{}", 100, std::process::id());
        let started = Instant::now();
        let err = run(
            Path::new("sleep"),
            &[&marker],
            3,
            Duration::from_secs(2),
            &[],
        )
        .unwrap_err();
        assert!(started.elapsed() >= Duration::from_secs(2));
        assert!(err.contains("passed its deadline"), "{err}");
        assert!(!err.contains("still alive"), "{err}");
        // mpiexec, its proxy and the three ranks.
        assert!(err.contains("killed its 5 processes"), "{err}");
        let left: Vec<String> = std::fs::read_dir("/proc")
            .unwrap()
            .flatten()
            .filter_map(|e| {
                let cmdline = std::fs::read(e.path().join("cmdline")).ok()?;
                let pid = e.file_name().to_str()?.parse().ok()?;
                let live = stat(pid).is_some_and(|(_, _, state)| state != 'Z');
                let ours = String::from_utf8_lossy(&cmdline).contains(&marker);
                (live && ours).then(|| String::from_utf8_lossy(&cmdline).replace('\0', " "))
            })
            .collect();
        assert!(left.is_empty(), "left behind: {left:?}");
    }
}
