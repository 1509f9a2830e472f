//! The pipe benchmarks, each beside its floor: round trips on an mproc pipe against a raw
//! socketpair's, 1 MiB messages against raw reads into one buffer.

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

/// Measures round trips on an mproc pipe and on a raw socketpair, interleaved; returns
/// (mproc samples, floor samples) in µs, and whether every answer was right.
pub fn rtt_us(rounds: usize, per_round: usize) -> (Vec<f64>, Vec<f64>, bool) {
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
