//! Child roles: a child killed mid-send of large messages on a pipe, and a child killed
//! while it makes and sends its result.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use mproc::SharedAtomic;
use mproc::pipe::ErrorKind as PipeErrorKind;
use mproc::process::ErrorKind;
use mproc_tests::{builder, deadline};
use serde_bytes::ByteBuf;

use crate::harness::{PATIENCE, Rng, Role, kill_and_reap, limit, pause, wait_until};

type Msg = (u64, ByteBuf);

fn payload(seq: u64, len: usize) -> ByteBuf {
    ByteBuf::from(
        (0..len)
            .map(|i| (seq as u8) ^ (i as u8).wrapping_mul(7))
            .collect::<Vec<u8>>(),
    )
}

fn intact(seq: u64, bytes: &[u8]) -> bool {
    bytes
        .iter()
        .enumerate()
        .all(|(i, b)| *b == (seq as u8) ^ (i as u8).wrapping_mul(7))
}

/// Sends messages of 64 KiB to 4 MiB, acknowledging each once `send` returned, until
/// killed.
fn send_large((mut tx, acked, seed): (mproc::Sender<Msg>, SharedAtomic<AtomicU64>, u64)) {
    let mut rng = Rng::new(seed);
    for seq in 0.. {
        let len = (64 << 10) + rng.below(4 << 20) as usize;
        tx.send(&(seq, payload(seq, len)))
            .unwrap_or_else(|e| panic!("send {seq}: {e}"));
        acked.store(seq + 1, Ordering::SeqCst);
    }
}

#[test]
fn a_child_killed_mid_send_of_a_large_message() {
    let role = Role::start("child_send", 16);
    deadline(limit(role.rounds), || {
        for round in 0..role.rounds {
            let (at, mut rng) = (role.at(round), role.rng(round));
            let (tx, mut rx) = mproc::channel::<Msg>().unwrap();
            let acked = SharedAtomic::<AtomicU64>::new().unwrap();
            let mut victim = builder()
                .spawn(send_large, (tx, acked.clone(), rng.next_u64()))
                .unwrap();
            let got = AtomicU64::new(0);
            let (seqs, end) = std::thread::scope(|s| {
                let receiver = s.spawn(|| {
                    let mut seqs = Vec::new();
                    loop {
                        match rx.recv_timeout(PATIENCE) {
                            Ok((seq, bytes)) => {
                                assert!(intact(seq, &bytes), "{at}: message {seq} damaged");
                                seqs.push(seq);
                                got.fetch_add(1, Ordering::SeqCst);
                            }
                            Err(e) => return (seqs, e),
                        }
                    }
                });
                wait_until(&at, "the first message", || got.load(Ordering::SeqCst) > 0);
                pause(rng.delay(Duration::from_millis(30)));
                kill_and_reap(&at, &mut victim);
                receiver.join().expect("receiver")
            });
            let acked = acked.load(Ordering::SeqCst);
            assert_eq!(
                end.kind(),
                PipeErrorKind::Disconnected,
                "{at}: the receiver ended with {end}"
            );
            let n = seqs.len() as u64;
            assert!(
                seqs.iter().enumerate().all(|(i, s)| *s == i as u64),
                "{at}: messages out of order: {seqs:?}"
            );
            assert!(
                n == acked || n == acked + 1,
                "{at}: {acked} sends acknowledged, {n} messages arrived"
            );
        }
    });
    role.finish();
}

/// Makes a result of `len` bytes (inline, by memfd, large) and returns it.
fn reply_with((seq, len): (u64, usize)) -> ByteBuf {
    payload(seq, len)
}

/// The result sizes: small (inline in the reply), above the 32 KiB inline limit (by
/// memfd), and large.
const REPLY_LENGTHS: [usize; 3] = [100, 40 << 10, 2 << 20];

#[test]
fn a_child_killed_mid_reply() {
    let role = Role::start("child_reply", 30);
    deadline(limit(role.rounds), || {
        // How long a child of each size runs after `spawn` returns: the kill points spread
        // over that (and a little past it, so that some children finish first).
        let typical: Vec<Duration> = REPLY_LENGTHS
            .iter()
            .map(|len| {
                let mut c = builder().spawn(reply_with, (0, *len)).unwrap();
                let t0 = Instant::now();
                assert_eq!(c.join().unwrap().len(), *len);
                t0.elapsed()
            })
            .collect();
        let (mut finished, mut killed) = (0, 0);
        for round in 0..role.rounds {
            let (at, mut rng) = (role.at(round), role.rng(round));
            let which = rng.below(REPLY_LENGTHS.len() as u64) as usize;
            let len = REPLY_LENGTHS[which];
            let mut child = builder().spawn(reply_with, (round, len)).unwrap();
            pause(rng.delay(typical[which] * 6 / 5));
            let _ = child.kill(); // it may have ended already
            match child.join_timeout(PATIENCE) {
                Ok(bytes) => {
                    assert!(
                        bytes.len() == len && intact(round, &bytes),
                        "{at}: a wrong result of {} bytes",
                        bytes.len()
                    );
                    finished += 1;
                }
                Err(e) => {
                    assert_eq!(e.kind(), ErrorKind::Died, "{at}: {e}");
                    assert_eq!(
                        e.exit_status(),
                        Some(mproc::ExitStatus::Signal(mproc_sys::SIGKILL)),
                        "{at}: {e}"
                    );
                    killed += 1;
                }
            }
        }
        eprintln!("child_reply: {finished} finished before the kill, {killed} killed");
    });
    role.finish();
}
