//! Queue roles: a producer killed mid-put and a consumer killed mid-get, with small and
//! large messages (in the producer's reused segments). A killed producer or consumer
//! loses at most the message it was moving. What was acknowledged arrives exactly once, in order.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use mproc::{Queue, SharedAtomic};
use mproc_tests::{builder, deadline};
use serde_bytes::ByteBuf;

use crate::harness::{PATIENCE, Rng, Role, kill_and_reap, limit, pause, wait_until};

/// A message: its sequence number and a payload whose bytes follow from it.
type Msg = (u64, ByteBuf);

/// The ring of every queue here: 64 KiB, so a message above 16 KiB takes the large path
/// (a segment its producer reuses once freed, with its side datagram): a producer is
/// killed mid-copy into a reused segment, a consumer mid-copy out of one.
const RING: usize = 64 << 10;

fn payload(seq: u64, len: usize) -> ByteBuf {
    ByteBuf::from(
        (0..len)
            .map(|i| (seq as u8).wrapping_add((i as u8).wrapping_mul(31)))
            .collect::<Vec<u8>>(),
    )
}

fn intact((seq, bytes): &Msg) -> bool {
    bytes
        .iter()
        .enumerate()
        .all(|(i, b)| *b == (*seq as u8).wrapping_add((i as u8).wrapping_mul(31)))
}

/// A message length: small ones in the ring, or (for `large`) a mix with most above a
/// quarter of the ring.
fn length(rng: &mut Rng, large: bool) -> usize {
    if large && !rng.one_in(4) {
        16 << 10 | rng.below(200 << 10) as usize
    } else {
        rng.below(3000) as usize
    }
}

fn queue(rng: &mut Rng) -> Queue<Msg> {
    // Sometimes a short queue, so that the producer is often killed waiting for room.
    let cap = if rng.one_in(2) { 4 } else { 1_000 };
    mproc::queue::Builder::new()
        .max_messages(cap)
        .max_bytes(RING)
        .build()
        .expect("queue")
}

/// Puts messages 0, 1, 2, ... and acknowledges each (`acked` = how many `put` returned
/// `Ok` for) until killed.
fn produce_acked((q, acked, seed, large): (Queue<Msg>, SharedAtomic<AtomicU64>, u64, bool)) {
    let mut rng = Rng::new(seed);
    for seq in 0.. {
        let len = length(&mut rng, large);
        if let Err(e) = q.put((seq, payload(seq, len))) {
            panic!("put {seq}: {e:?}");
        }
        acked.store(seq + 1, Ordering::SeqCst);
    }
}

/// Gets messages until killed, checking each, and acknowledges each (`taken` = its number
/// plus one).
fn consume_acked((q, taken): (Queue<Msg>, SharedAtomic<AtomicU64>)) {
    loop {
        let m = q.get().unwrap_or_else(|e| panic!("get: {e:?}"));
        assert!(intact(&m), "message {} arrived damaged", m.0);
        taken.store(m.0 + 1, Ordering::SeqCst);
    }
}

fn producer_killed_mid_put(name: &'static str, large: bool, rounds: u64) {
    let role = Role::start(name, rounds);
    deadline(limit(role.rounds), || {
        for round in 0..role.rounds {
            let at = role.at(round);
            let mut rng = role.rng(round);
            let q = queue(&mut rng);
            let acked = SharedAtomic::<AtomicU64>::new().unwrap();
            let mut victim = builder()
                .spawn(
                    produce_acked,
                    (q.clone(), acked.clone(), rng.next_u64(), large),
                )
                .unwrap();
            let slow_consumer = rng.one_in(3);
            let got = SharedAtomic::<AtomicU64>::new().unwrap();
            let consumer = {
                let (q, got, at) = (q.clone(), got.clone(), at.clone());
                std::thread::spawn(move || {
                    let mut seqs = Vec::new();
                    let end = loop {
                        match q.get_timeout(PATIENCE) {
                            Ok(m) => {
                                assert!(intact(&m), "{at}: message {} damaged", m.0);
                                seqs.push(m.0);
                                got.fetch_add(1, Ordering::SeqCst);
                                if slow_consumer {
                                    std::thread::sleep(Duration::from_micros(300));
                                }
                            }
                            Err(e) => break (e, Instant::now()),
                        }
                    };
                    (seqs, end)
                })
            };
            wait_until(&at, "the producer's first message", || {
                got.load(Ordering::SeqCst) > 0
            });
            pause(rng.delay(Duration::from_millis(20)));
            let killed = Instant::now();
            kill_and_reap(&at, &mut victim);
            let acked = acked.load(Ordering::SeqCst);
            let (seqs, (end, ended)) = consumer.join().expect("consumer thread");
            assert!(
                end.is_disconnected(),
                "{at}: the consumer's get ended with {end:?}, not Disconnected"
            );
            let n = seqs.len() as u64;
            assert!(
                seqs.iter().enumerate().all(|(i, s)| *s == i as u64),
                "{at}: messages lost, repeated or reordered: {:?}",
                gaps(&seqs)
            );
            assert!(
                n == acked || n == acked + 1,
                "{at}: {acked} puts acknowledged, {n} messages arrived"
            );
            // The queue goes on for the parties left.
            q.put((7, payload(7, 20_000))).unwrap();
            assert_eq!(q.try_get().map(|m| intact(&m)).ok(), Some(true), "{at}");
            eprintln!(
                "{at}: {n} arrived, {acked} acknowledged, Disconnected {:.1} ms after the kill",
                ended.duration_since(killed).as_secs_f64() * 1e3
            );
        }
    });
    role.finish();
}

fn consumer_killed_mid_get(name: &'static str, large: bool, rounds: u64) {
    let role = Role::start(name, rounds);
    deadline(limit(role.rounds), || {
        for round in 0..role.rounds {
            let at = role.at(round);
            let mut rng = role.rng(round);
            let q = queue(&mut rng);
            let taken = SharedAtomic::<AtomicU64>::new().unwrap();
            let mut victim = builder()
                .spawn(consume_acked, (q.clone(), taken.clone()))
                .unwrap();
            let producer = {
                let (q, at) = (q.clone(), at.clone());
                let mut rng = Rng::new(rng.next_u64());
                std::thread::spawn(move || {
                    for seq in 0.. {
                        let len = length(&mut rng, large);
                        if let Err(e) = q.put_timeout((seq, payload(seq, len)), PATIENCE) {
                            assert!(
                                e.is_disconnected(),
                                "{at}: put {seq} ended with {e:?}, not Disconnected"
                            );
                            return (seq, Instant::now());
                        }
                    }
                    unreachable!()
                })
            };
            wait_until(&at, "the consumer's first message", || {
                taken.load(Ordering::SeqCst) > 0
            });
            pause(rng.delay(Duration::from_millis(20)));
            let killed = Instant::now();
            kill_and_reap(&at, &mut victim);
            let taken = taken.load(Ordering::SeqCst);
            let (sent, noticed) = producer.join().expect("producer thread");
            let mut left = Vec::new();
            loop {
                match q.try_get() {
                    Ok(m) => {
                        assert!(intact(&m), "{at}: message {} damaged", m.0);
                        left.push(m.0);
                    }
                    Err(e) => {
                        assert!(e.is_empty(), "{at}: draining: {e:?}");
                        break;
                    }
                }
            }
            // What the victim did not take arrives, once, in order; at most the message it
            // was taking when killed is lost.
            let first = left.first().copied().unwrap_or(sent);
            assert!(
                first == taken || first == taken + 1,
                "{at}: the victim took up to {taken}, the next left is {first}"
            );
            assert!(
                left.iter().zip(first..).all(|(s, want)| *s == want),
                "{at}: messages lost, repeated or reordered after {first}: {:?}",
                gaps(&left)
            );
            assert_eq!(
                left.last().map_or(first, |l| l + 1),
                sent,
                "{at}: {sent} puts acknowledged"
            );
            eprintln!(
                "{at}: victim took {taken}, {} left, put Disconnected {:.1} ms after the kill",
                left.len(),
                noticed.duration_since(killed).as_secs_f64() * 1e3
            );
        }
    });
    role.finish();
}

/// Where a sequence of numbers is not consecutive (for a failure's message).
fn gaps(seqs: &[u64]) -> Vec<(usize, u64, u64)> {
    seqs.windows(2)
        .enumerate()
        .filter(|(_, w)| w[1] != w[0] + 1)
        .map(|(i, w)| (i, w[0], w[1]))
        .take(10)
        .collect()
}

#[test]
fn a_producer_killed_mid_put_of_small_messages() {
    producer_killed_mid_put("queue_producer_small", false, 24);
}

#[test]
fn a_producer_killed_mid_put_of_large_messages() {
    producer_killed_mid_put("queue_producer_large", true, 24);
}

#[test]
fn a_consumer_killed_mid_get_of_small_messages() {
    consumer_killed_mid_get("queue_consumer_small", false, 24);
}

#[test]
fn a_consumer_killed_mid_get_of_large_messages() {
    consumer_killed_mid_get("queue_consumer_large", true, 16);
}
