//! The pipe benchmarks, each beside its floor: round trips on an mproc pipe against a raw
//! socketpair's (and awaited on tokio against the blocking ones), 1 MiB messages against raw
//! reads into one buffer.

use mproc::{Builder, StartMethod};
use mproc_sys::ForkOutcome;

use crate::{pin, time_us};

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

/// Round-trip samples in µs, one of each per message, interleaved.
pub struct Rtt {
    /// `send` then `recv` on an mproc pipe (blocking).
    pub ours: Vec<f64>,
    /// 8-byte words on a raw socketpair.
    pub floor: Vec<f64>,
    /// `send_async` then `recv_async` on an mproc pipe, awaited on a current-thread tokio
    /// runtime (empty unless asked for).
    pub awaited: Vec<f64>,
    /// Every answer was right.
    pub ok: bool,
}

/// Measures round trips on an mproc pipe and on a raw socketpair, interleaved; returns
/// (mproc samples, floor samples) in µs, and whether every answer was right.
pub fn rtt_us(rounds: usize, per_round: usize) -> (Vec<f64>, Vec<f64>, bool) {
    let r = rtt(rounds, per_round, false);
    (r.ours, r.floor, r.ok)
}

/// Measures round trips on an mproc pipe (blocking), on a raw socketpair, and on an mproc
/// pipe awaited on a current-thread tokio runtime, interleaved message by message, each
/// against its own echoing child.
pub fn rtt(rounds: usize, per_round: usize, with_async: bool) -> Rtt {
    use std::io::{Read, Write};
    pin(0); // the parent on CPU 0, each echoing child on CPU 1
    let (mut conn, theirs) = mproc::pipe::<Option<u64>>().expect("pipe");
    let mut child = Builder::new()
        .start_method(StartMethod::Fork)
        .spawn(echo_next, theirs)
        .expect("spawn");
    let (mut raw, raw_pid) = fork_raw(raw_echo);
    let mut awaited_child = None;
    let awaited_end = if with_async {
        let (ours, theirs) = mproc::pipe::<Option<u64>>().expect("pipe");
        let child = Builder::new()
            .start_method(StartMethod::Fork)
            .spawn(echo_next, theirs)
            .expect("spawn");
        awaited_child = Some(child);
        Some(ours)
    } else {
        None
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let mut out = Rtt {
        ours: Vec::new(),
        floor: Vec::new(),
        awaited: Vec::new(),
        ok: true,
    };
    // One runtime and one task for the whole run; the blocking calls run inside it too,
    // so the three figures are taken in the same conditions, message by message.
    let awaited_end = rt.block_on(async {
        let mut awaited_end = awaited_end.map(|c| c.into_async().expect("into_async"));
        let mut w = [0u8; 8];
        for round in 0..=rounds {
            for i in 0..per_round as u64 {
                let t = time_us(|| {
                    conn.send(&Some(i)).expect("send");
                    out.ok &= conn.recv().expect("recv") == Some(i + 1);
                });
                let f = time_us(|| {
                    raw.write_all(&i.to_le_bytes()).expect("write");
                    raw.read_exact(&mut w).expect("read");
                });
                out.ok &= u64::from_le_bytes(w) == i + 1;
                let a = match awaited_end.as_mut() {
                    Some(c) => {
                        let t0 = std::time::Instant::now();
                        c.send_async(&Some(i)).await.expect("send_async");
                        out.ok &= c.recv_async().await.expect("recv_async") == Some(i + 1);
                        Some(t0.elapsed().as_secs_f64() * 1e6)
                    }
                    None => None,
                };
                if round > 0 {
                    // round 0 warms up
                    out.ours.push(t);
                    out.floor.push(f);
                    out.awaited.extend(a);
                }
            }
        }
        awaited_end.map(|c| c.into_inner())
    });
    conn.send(&None).expect("stop");
    child.join().expect("join");
    if let (Some(mut end), Some(mut child)) = (awaited_end, awaited_child) {
        end.send(&None).expect("stop");
        child.join().expect("join");
    }
    drop(raw);
    mproc_sys::wait_pid(raw_pid, true).expect("wait");
    mproc_sys::set_cpu_affinity(&[]).expect("unpin");
    out
}

/// Measures 1 MiB messages child → parent, mproc's `recv_bytes` against raw reads into one
/// buffer; returns GB/s per round for each.
pub fn bandwidth_gbps(rounds: usize, messages: usize) -> (Vec<f64>, Vec<f64>, bool) {
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
