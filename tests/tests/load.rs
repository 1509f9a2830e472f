//! Load: many children at once, a queue crowded by 32 processes, hundreds of connections
//! served by one `mproc::wait` loop, every kind of handle made with the fd table full, and
//! a manager whose server runs out of fds.
//!
//! Sizes: the (1,000 children, 200 at once; 2 million messages; 500 connections),
//! which take a few seconds here; the connections exchange 20 rounds of requests, 200 with
//! `MPROC_LOAD_SCALE=1` (`cargo xtask soak`; a scale makes every size the times
//! it). Bounds on time are liveness deadlines, never speed requirements; each test prints
//! what it measured.

use std::error::Error as StdError;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use mproc::pipe::Waitable;
use mproc::{
    Connection, Event, JoinableQueue, Listener, Lock, Queue, ShareableList, SharedAtomic,
    SharedMemory, SimpleQueue, Value,
};
use mproc_tests::{
    Census, builder, caused_by_fd_exhaustion, deadline, load_size, manager_builder, method,
    pool_builder, zombies_of,
};
use serde::{Deserialize, Serialize};

mproc::init_before_main!();

/// The tests count what the process holds (fds, children) and load a 2-core machine:
/// one at a time.
static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn alone() -> std::sync::MutexGuard<'static, ()> {
    ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner())
}

/// A liveness bound for one step (a reply, a child's start), not a speed requirement.
const STEP: Duration = Duration::from_secs(120);
const KEY: &[u8] = b"mproc load tests";

/// Starts a child and makes shared objects once, before a test counts what this process
/// holds: what they keep for good (a fork server, the arena's current chunk) is then there
/// from the start.
fn warm_up() {
    builder().spawn(|x: u64| x, 0).unwrap().join().unwrap();
    drop((SharedAtomic::<AtomicU64>::new(), Event::new()));
}

// ---- many children --------------------------------------------------------------------

/// Says it is running, then waits for the word to end.
fn wait_for_word((arrived, go, index): (SharedAtomic<AtomicU64>, Event, u64)) -> u64 {
    arrived.fetch_add(1, Ordering::SeqCst);
    assert!(go.wait_timeout(STEP), "the word never came");
    index
}

/// 1,000 children, in waves of 200 alive at once: each
/// wave is started, every child of it is seen running at the same time, then all end and
/// are joined. Every child's result comes back once; no zombie, fd or child is left.
#[test]
fn a_thousand_children_two_hundred_at_a_time() {
    let _alone = alone();
    let total = load_size(1_000, 1_000, 2);
    let at_once = load_size(200, 200, 2).min(total);
    deadline(Duration::from_secs(900), || {
        warm_up();
        let before = Census::take("mproc-load-children");
        let t0 = Instant::now();
        let mut seen = vec![false; total];
        let mut most_alive = 0;
        for (wave, first) in (0..total).step_by(at_once).enumerate() {
            let indices = first as u64..(first + at_once).min(total) as u64;
            let arrived = SharedAtomic::<AtomicU64>::new().unwrap();
            let go = Event::new().unwrap();
            let args = indices.map(|i| (arrived.clone(), go.clone(), i));
            // One wave by `spawn`, the next by `spawn_batch` (pipelined to a fork server).
            let mut children = if wave % 2 == 0 {
                args.map(|a| builder().spawn(wait_for_word, a).unwrap())
                    .collect::<Vec<_>>()
            } else {
                builder().spawn_batch(wait_for_word, args).unwrap()
            };
            let n = children.len() as u64;
            let wait = Instant::now();
            while arrived.load(Ordering::SeqCst) < n {
                assert!(
                    wait.elapsed() < STEP,
                    "only {arrived:?} of {n} children started"
                );
                std::thread::sleep(Duration::from_millis(5));
            }
            let alive = children.iter().filter(|c| c.is_alive()).count();
            assert_eq!(alive as u64, n, "every child of the wave runs at once");
            most_alive = most_alive.max(alive);
            go.set();
            for c in &mut children {
                let i = c.join().unwrap() as usize;
                assert!(!seen[i], "child {i} answered twice");
                seen[i] = true;
            }
        }
        let took = t0.elapsed();
        assert!(seen.iter().all(|s| *s), "every child answered");
        let after = Census::settle_by(
            &before,
            "mproc-load-children",
            Duration::from_secs(20),
            Census::ignoring_threads,
        );
        eprintln!(
            "{total} children ({most_alive} alive at once) by {:?} in {:.1} s ({:.2} ms each)",
            method(),
            took.as_secs_f64(),
            took.as_secs_f64() * 1e3 / total as f64
        );
        assert_eq!(
            after.ignoring_threads(),
            before.ignoring_threads(),
            "what this process holds after {total} children"
        );
        assert_eq!(zombies_of(std::process::id()), 0);
    });
}

// ---- a crowded queue ------------------------------------------------------------------

/// How many producers and consumers share the queue.
const PRODUCERS: u64 = 16;
const CONSUMERS: u64 = 16;
/// What a consumer reads as "no more".
const STOP: u64 = u64::MAX;

/// Puts `(id << 32) | seq` for `seq` in `0..per`.
fn produce((q, id, per): (Queue<u64>, u64, u64)) {
    for seq in 0..per {
        q.put((id << 32) | seq).unwrap();
    }
}

/// What a consumer took: a bit per message (its index `id * per + seq`), and how many it
/// took twice.
#[derive(Serialize, Deserialize)]
struct Taken {
    bits: Vec<u64>,
    count: u64,
    twice: u64,
}

/// Gets until [`STOP`], marking each message's bit.
fn consume((q, per): (Queue<u64>, u64)) -> Taken {
    let total = PRODUCERS * per;
    let mut taken = Taken {
        bits: vec![0; total.div_ceil(64) as usize],
        count: 0,
        twice: 0,
    };
    loop {
        let m = q.get_timeout(STEP).expect("a message or the stop");
        if m == STOP {
            return taken;
        }
        let (id, seq) = (m >> 32, m & 0xffff_ffff);
        assert!(id < PRODUCERS && seq < per, "a message nobody sent: {m:#x}");
        let index = id * per + seq;
        let (word, bit) = ((index / 64) as usize, 1u64 << (index % 64));
        if taken.bits[word] & bit != 0 {
            taken.twice += 1;
        }
        taken.bits[word] |= bit;
        taken.count += 1;
    }
}

/// 16 producer and 16 consumer processes move 2 million messages through one queue; every
/// message arrives exactly once.
#[test]
fn sixteen_producers_and_sixteen_consumers_lose_and_double_nothing() {
    let _alone = alone();
    let total = load_size(2_000_000, 2_000_000, PRODUCERS as usize) as u64;
    let per = total / PRODUCERS;
    let total = per * PRODUCERS;
    deadline(Duration::from_secs(1200), || {
        let q = Queue::<u64>::new().unwrap();
        let t0 = Instant::now();
        let consumers: Vec<_> = (0..CONSUMERS)
            .map(|_| builder().spawn(consume, (q.clone(), per)).unwrap())
            .collect();
        let producers: Vec<_> = (0..PRODUCERS)
            .map(|id| builder().spawn(produce, (q.clone(), id, per)).unwrap())
            .collect();
        for mut p in producers {
            p.join().unwrap();
        }
        // Every message is in the queue before the stops: each consumer takes one and ends.
        for _ in 0..CONSUMERS {
            q.put(STOP).unwrap();
        }
        let mut seen = vec![0u64; total.div_ceil(64) as usize];
        let (mut count, mut doubled, mut busiest, mut idlest) = (0, 0, 0, u64::MAX);
        for mut c in consumers {
            let taken = c.join().unwrap();
            count += taken.count;
            doubled += taken.twice;
            busiest = busiest.max(taken.count);
            idlest = idlest.min(taken.count);
            for (all, mine) in seen.iter_mut().zip(&taken.bits) {
                doubled += u64::from((*all & mine).count_ones());
                *all |= mine;
            }
        }
        let took = t0.elapsed();
        let arrived: u64 = seen.iter().map(|w| u64::from(w.count_ones())).sum();
        eprintln!(
            "{total} messages, {PRODUCERS} producers x {CONSUMERS} consumers, by {:?}: \
             {:.1} s ({:.2} M msg/s); consumers took {idlest} to {busiest} each",
            method(),
            took.as_secs_f64(),
            total as f64 / took.as_secs_f64() / 1e6
        );
        assert_eq!(doubled, 0, "messages delivered twice");
        assert_eq!(
            arrived,
            total,
            "distinct messages delivered ({} lost)",
            total - arrived
        );
        assert_eq!(count, total, "messages taken");
        assert!(q.is_empty());
    });
}

// ---- one wait loop, many connections --------------------------------------------------

/// Connects `conns` clients to `address`, then for `rounds` rounds sends a number on every
/// connection before reading every answer; returns the answers that were right.
fn client((address, id, conns, rounds): (String, u64, u64, u64)) -> u64 {
    let address = address.parse().unwrap();
    let mut ends: Vec<Connection<u64, u64>> = (0..conns)
        .map(|_| mproc::Client::connect_timeout(&address, KEY, STEP).expect("connecting"))
        .collect();
    let mut right = 0;
    for round in 0..rounds {
        let token = |c: u64| (id << 40) | (c << 20) | round;
        for (c, end) in ends.iter_mut().enumerate() {
            end.send(&token(c as u64)).unwrap();
        }
        for (c, end) in ends.iter_mut().enumerate() {
            right += u64::from(end.recv_timeout(STEP).unwrap() == 2 * token(c as u64) + 1);
        }
    }
    for end in ends.drain(..) {
        end.close().unwrap();
    }
    right
}

/// 500 authenticated connections (from 10 client processes) served by one loop of
/// `mproc::wait` over the listener and every connection, accepting with
/// `accept_timeout(0)` (so that handshakes advance inside the loop too): every request is
/// answered, every end of stream seen, and nothing is left open.
#[test]
fn five_hundred_connections_served_by_one_wait_loop() {
    let _alone = alone();
    const CLIENTS: u64 = 10;
    let conns_each = (load_size(500, 500, CLIENTS as usize) as u64).div_ceil(CLIENTS);
    let rounds = load_size(20, 200, 1) as u64;
    let total = conns_each * CLIENTS;
    deadline(Duration::from_secs(900), || {
        warm_up();
        let before = Census::take("mproc-load-wait");
        let address = format!("mproc-load-wait-{}", std::process::id());
        let mut listener = Listener::bind(address.parse().unwrap(), KEY).unwrap();
        let t0 = Instant::now();
        let clients: Vec<_> = (0..CLIENTS)
            .map(|id| {
                builder()
                    .spawn(client, (address.clone(), id, conns_each, rounds))
                    .unwrap()
            })
            .collect();
        let mut conns: Vec<Connection<u64, u64>> = Vec::new();
        let (mut accepted, mut answered, mut ended, mut most_open) = (0, 0, 0, 0);
        let mut waits = 0u64;
        while ended < total {
            let mut items: Vec<&dyn Waitable> = vec![&listener];
            items.extend(conns.iter().map(|c| c as &dyn Waitable));
            let ready = mproc::wait(&items, Some(STEP)).unwrap();
            waits += 1;
            assert!(!ready.is_empty(), "nothing happened for {STEP:?}");
            // Connections first, from the last (removing one moves none before it).
            for &i in ready.iter().rev().filter(|&&i| i > 0) {
                let conn = &mut conns[i - 1];
                match conn.recv_timeout(STEP) {
                    Ok(token) => {
                        conn.send(&(2 * token + 1)).unwrap();
                        answered += 1;
                    }
                    Err(e) if e.kind() == mproc::pipe::ErrorKind::Disconnected => {
                        conns.swap_remove(i - 1);
                        ended += 1;
                    }
                    Err(e) => panic!("serving a connection: {e}"),
                }
            }
            if ready.first() == Some(&0) {
                loop {
                    match listener.accept_timeout::<u64, u64>(Duration::ZERO) {
                        Ok(c) => {
                            conns.push(c);
                            accepted += 1;
                        }
                        Err(e) if e.kind() == mproc::pipe::ErrorKind::Timeout => break,
                        Err(e) => panic!("accepting: {e}"),
                    }
                }
                most_open = most_open.max(conns.len());
            }
        }
        let right: u64 = clients.into_iter().map(|mut c| c.join().unwrap()).sum();
        let took = t0.elapsed();
        drop(listener);
        eprintln!(
            "{total} connections ({most_open} open at once), {answered} requests, by {:?}: \
             {:.1} s, {waits} waits ({:.1} µs a request)",
            method(),
            took.as_secs_f64(),
            took.as_secs_f64() * 1e6 / answered.max(1) as f64
        );
        assert_eq!(accepted, total, "connections accepted");
        assert_eq!(answered, total * rounds, "requests answered");
        assert_eq!(right, total * rounds, "answers the clients found right");
        let after = Census::settle_by(
            &before,
            "mproc-load-wait",
            Duration::from_secs(20),
            Census::ignoring_threads,
        );
        assert_eq!(
            after.ignoring_threads(),
            before.ignoring_threads(),
            "what this process holds afterwards"
        );
    });
}

// ---- out of fds -----------------------------------------------------------------------

/// Operations that take fds, each tried with the fd table full.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
enum Op {
    Pipe,
    ListenerAndClient,
    Queue,
    SimpleQueue,
    JoinableQueue,
    AnonymousShm,
    NamedShm,
    ShareableList,
    Value,
    Lock,
    Spawn,
    /// Sending a handle through a pipe and receiving it (its fds travel beside the bytes).
    SendHandle,
    /// Receiving a handle that another process sends through a pipe.
    ReceiveHandle,
    /// Getting a handle that another process put on a queue.
    GetHandle,
    /// A pool of two workers, used once.
    Pool,
    /// A manager, and a proxy to one of its objects.
    Manager,
}

const OPS: [Op; 16] = [
    Op::Pipe,
    Op::ListenerAndClient,
    Op::Queue,
    Op::SimpleQueue,
    Op::JoinableQueue,
    Op::AnonymousShm,
    Op::NamedShm,
    Op::ShareableList,
    Op::Value,
    Op::Lock,
    Op::Spawn,
    Op::SendHandle,
    Op::ReceiveHandle,
    Op::GetHandle,
    Op::Pool,
    Op::Manager,
];

type BoxError = Box<dyn StdError + Send + Sync>;

/// What an operation needs that is made before the limit is lowered.
struct Bench {
    /// A pipe whose ends stay open across attempts (for `SendHandle`).
    pipe: (Connection<SharedMemory>, Connection<SharedMemory>),
    shm: SharedMemory,
    /// A process that answers a number with a segment holding it, through the pipe or the
    /// queue (for `ReceiveHandle` and `GetHandle`).
    sender: Option<Sender>,
    prefix: String,
    attempts: u64,
}

/// The other end of `ReceiveHandle` and `GetHandle`.
struct Sender {
    conn: Connection<(u64, bool), SharedMemory>,
    queue: Queue<SharedMemory>,
    _child: mproc::Child<()>,
}

/// Answers each number with a segment holding it, on the queue when asked to, else through
/// the pipe, until the other end goes.
fn send_handles((mut conn, queue): (Connection<SharedMemory, (u64, bool)>, Queue<SharedMemory>)) {
    let shm = SharedMemory::create(64).unwrap();
    while let Ok((n, by_queue)) = conn.recv() {
        shm.write(0, n).unwrap();
        let sent = if by_queue {
            queue.put(shm.clone()).is_ok()
        } else {
            conn.send(&shm).is_ok()
        };
        if !sent {
            return;
        }
    }
}

/// Does `op` once and returns what it made (dropping it undoes it).
fn attempt(op: Op, bench: &mut Bench) -> Result<Box<dyn std::any::Any>, BoxError> {
    bench.attempts += 1;
    let n = bench.attempts;
    Ok(match op {
        Op::Pipe => {
            let (mut a, mut b) = mproc::pipe::<u64>()?;
            a.send(&n)?;
            assert_eq!(b.recv()?, n);
            Box::new((a, b))
        }
        Op::ListenerAndClient => {
            let address = format!("{}-{n}", bench.prefix);
            let mut listener = Listener::bind(address.parse()?, KEY)?;
            let dialer = std::thread::spawn(move || -> Result<Connection<u64, u64>, BoxError> {
                let to = address.parse()?;
                let mut c = mproc::Client::connect_timeout(&to, KEY, Duration::from_secs(10))?;
                c.send(&n)?;
                Ok(c)
            });
            // Accepts until the client is in, or has given up.
            let started = Instant::now();
            let accepted = loop {
                match listener.accept_timeout::<u64, u64>(Duration::from_millis(20)) {
                    Err(e)
                        if e.kind() == mproc::pipe::ErrorKind::Timeout
                            && !dialer.is_finished()
                            && started.elapsed() < STEP => {}
                    other => break other,
                }
            };
            let mut server = match accepted {
                Ok(server) => server,
                Err(e) => {
                    // The client waiting for its challenge learns at once that none will
                    // come; the side that ran out of fds first is the one to report.
                    drop(listener);
                    return Err(match dialer.join().expect("the dialing thread") {
                        Err(theirs) if !caused_by_fd_exhaustion(&e) => theirs,
                        _ => e.into(),
                    });
                }
            };
            let client = dialer.join().expect("the dialing thread")?;
            assert_eq!(server.recv()?, n);
            Box::new((listener, server, client))
        }
        Op::Queue => {
            let q = Queue::new()?;
            q.put(n)?;
            assert_eq!(q.get()?, n);
            Box::new(q)
        }
        Op::SimpleQueue => {
            let q = SimpleQueue::new()?;
            q.put(n)?;
            assert_eq!(q.get()?, n);
            Box::new(q)
        }
        Op::JoinableQueue => {
            let q = JoinableQueue::new()?;
            q.put(n)?;
            assert_eq!(q.get()?, n);
            q.task_done()?;
            Box::new(q)
        }
        Op::AnonymousShm => {
            let shm = SharedMemory::create(4096)?;
            shm.write(0, n)?;
            Box::new(shm)
        }
        Op::NamedShm => {
            let shm = SharedMemory::create_named(&format!("{}-{n}", bench.prefix), 4096)?;
            shm.write(0, n)?;
            // Unlinked at once: what is kept is the mapping and the fd.
            shm.unlink()?;
            Box::new(shm)
        }
        Op::ShareableList => Box::new(ShareableList::new([n as i64, 2, 3])?),
        Op::Value => Box::new(Value::new(n)?),
        Op::Lock => {
            let lock = Lock::new()?;
            drop(lock.lock());
            Box::new(lock)
        }
        Op::Spawn => {
            let mut child = builder().spawn(|x: u64| x + 1, n)?;
            assert_eq!(child.join()?, n + 1);
            Box::new(child)
        }
        Op::SendHandle => {
            let (a, b) = &mut bench.pipe;
            bench.shm.write(0, n)?;
            a.send(&bench.shm)?;
            let got = b.recv()?;
            assert_eq!(got.read::<u64>(0)?, n);
            Box::new(got)
        }
        Op::ReceiveHandle => {
            let sender = bench.sender.as_mut().expect("a sender");
            sender.conn.send(&(n, false))?;
            let got = sender.conn.recv_timeout(STEP)?;
            assert_eq!(got.read::<u64>(0)?, n);
            Box::new(got)
        }
        Op::Pool => {
            let pool = pool_builder(2).build()?;
            assert_eq!(pool.map(|x: u64| x + 1, [n, n + 1])?, [n + 1, n + 2]);
            Box::new(pool)
        }
        Op::Manager => {
            let manager = manager_builder().start()?;
            let value = manager.value(n)?;
            assert_eq!(value.get()?, n);
            Box::new((value, manager))
        }
        Op::GetHandle => {
            let sender = bench.sender.as_mut().expect("a sender");
            sender.conn.send(&(n, true))?;
            let got = sender.queue.get_timeout(STEP)?;
            assert_eq!(got.read::<u64>(0)?, n);
            Box::new(got)
        }
    })
}

/// How one attempt went.
#[derive(Debug, Serialize, Deserialize)]
struct Attempt {
    /// Free fd slots below the limit when it was made.
    free: u64,
    /// The error, with its causes, if it failed.
    error: Option<String>,
    /// Whether the error was caused by the fd limit (EMFILE/ENFILE in its chain).
    exhausted: bool,
    /// Open fds after the attempt, less those before (once what it made was dropped).
    left_open: i64,
}

/// What happened to one operation.
#[derive(Debug, Serialize, Deserialize)]
struct Findings {
    op: Op,
    /// The fds what it made holds.
    keeps: i64,
    /// One attempt at each number of free slots, from none up.
    attempts: Vec<Attempt>,
    /// Holding what it made until it failed: how many it made, and the failure.
    held: u64,
    hold_error: Option<String>,
    hold_exhausted: bool,
    /// Whether it worked again once half of what was held was dropped.
    recovered: Result<(), String>,
    /// Open fds at the end less those before the first attempt.
    left_open: i64,
}

/// Sets the soft limit on open fds (the hard one stays, so it can be raised again).
fn set_fd_limit(soft: u64) {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    let (_, hard) = getrlimit(Resource::RLIMIT_NOFILE).unwrap();
    setrlimit(Resource::RLIMIT_NOFILE, soft.min(hard), hard).unwrap();
}

fn open_fds() -> i64 {
    mproc_sys::open_fd_count().unwrap() as i64
}

/// The open fds (without the one that lists them).
fn open_fd_numbers() -> Vec<i32> {
    let listed: Vec<i32> = std::fs::read_dir("/proc/self/fd")
        .unwrap()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse().ok())
        .collect();
    // The directory's own fd is closed by now.
    listed
        .into_iter()
        .filter(|&fd| mproc_sys::fd_kind(fd) != mproc_sys::FdKind::Closed)
        .collect()
}

/// In a child (the test's own limit stays): lowers the fd limit to leave `free` slots, for
/// `free` from 0 up, and tries `op` once at each; then holds what `op` makes until it
/// fails, drops half, and tries again.
fn exhaust(op: Op) -> Findings {
    use nix::sys::resource::{Resource, getrlimit};
    let (normal, _) = getrlimit(Resource::RLIMIT_NOFILE).unwrap();
    let mut bench = Bench {
        pipe: mproc::pipe().unwrap(),
        shm: SharedMemory::create(64).unwrap(),
        sender: matches!(op, Op::ReceiveHandle | Op::GetHandle).then(|| {
            let (conn, theirs) = mproc::duplex().unwrap();
            let queue = Queue::new().unwrap();
            let child = builder()
                .daemon(true)
                .spawn(send_handles, (theirs, queue.clone()))
                .unwrap();
            Sender {
                conn,
                queue,
                _child: child,
            }
        }),
        prefix: format!("mproc-load-fds-{}-{op:?}", std::process::id()),
        attempts: 0,
    };
    // Once at the normal limit: what the operation keeps for good (a fork server, the
    // tracker, the arena's current chunk) exists before counting.
    drop(attempt(op, &mut bench).expect("the operation works at the normal limit"));
    let start = open_fds();
    let made = attempt(op, &mut bench).expect("the operation works at the normal limit");
    let keeps = open_fds() - start;
    drop(made);
    let mut findings = Findings {
        op,
        keeps,
        attempts: Vec::new(),
        held: 0,
        hold_error: None,
        hold_exhausted: false,
        recovered: Ok(()),
        left_open: 0,
    };
    // Fill the holes below the highest open fd, so that the free slots under a limit are
    // exactly `limit - open`.
    let null = std::fs::File::open("/dev/null").unwrap();
    let open = open_fd_numbers();
    let ceiling = open.iter().max().map_or(0, |&fd| fd + 1);
    let fillers: Vec<_> = (open.len() as i32..ceiling)
        .map(|_| null.try_clone().unwrap())
        .collect();
    let base = ceiling as u64;
    assert_eq!(open_fds() as u64, base, "the fds are dense");
    let mut successes = 0;
    for free in 0..128 {
        let before = open_fds();
        set_fd_limit(base + free);
        let outcome = attempt(op, &mut bench).map(drop);
        set_fd_limit(normal);
        findings.attempts.push(Attempt {
            free,
            exhausted: outcome
                .as_ref()
                .err()
                .is_some_and(|e| caused_by_fd_exhaustion(e.as_ref())),
            error: outcome.err().map(|e| mproc_sys::with_causes(e.as_ref())),
            left_open: open_fds() - before,
        });
        successes = if findings.attempts.last().unwrap().error.is_none() {
            successes + 1
        } else {
            0
        };
        if successes == 3 {
            break;
        }
    }
    // Hold until it fails (at most 200,000: a lock takes an fd per 1,024), with room for
    // a few of what it makes.
    let room = findings
        .attempts
        .iter()
        .find(|a| a.error.is_none())
        .map_or(16, |a| (3 * a.free).max(16));
    let mut held = Vec::new();
    set_fd_limit(base + room);
    while held.len() < 200_000 {
        match attempt(op, &mut bench) {
            Ok(h) => held.push(h),
            Err(e) => {
                findings.hold_exhausted = caused_by_fd_exhaustion(e.as_ref());
                findings.hold_error = Some(mproc_sys::with_causes(e.as_ref()));
                break;
            }
        }
    }
    findings.held = held.len() as u64;
    held.truncate(held.len() / 2);
    findings.recovered = attempt(op, &mut bench)
        .map(drop)
        .map_err(|e| mproc_sys::with_causes(e.as_ref()));
    drop(held);
    set_fd_limit(normal);
    drop((fillers, null));
    findings.left_open = open_fds() - start;
    findings
}

/// With the fd limit lowered (in a child), every operation that needs fds fails with an
/// error caused by the limit (no panic, no hang, nothing left open by the failure), and
/// works again once fds are free.
#[test]
fn running_out_of_fds_fails_cleanly_and_recovers() {
    let _alone = alone();
    deadline(Duration::from_secs(600), || {
        let mut wrong = Vec::new();
        for op in OPS {
            // Daemonic: a child the deadline killed the parent of must not live on.
            let mut child = builder().daemon(true).spawn(exhaust, op).unwrap();
            let t0 = Instant::now();
            let f = match child.join() {
                Ok(f) => f,
                Err(e) => {
                    wrong.push(format!(
                        "{op:?}: the child failed: {}",
                        mproc_sys::with_causes(&e)
                    ));
                    continue;
                }
            };
            let failures: Vec<&Attempt> = f.attempts.iter().filter(|a| a.error.is_some()).collect();
            let worked_at = f
                .attempts
                .iter()
                .find(|a| a.error.is_none())
                .map(|a| a.free);
            eprintln!(
                "{op:?} ({:?}, {:.1} s): keeps {} fds; fails with {} free, works from \
                 {worked_at:?}; held {} before: {}",
                method(),
                t0.elapsed().as_secs_f64(),
                f.keeps,
                failures
                    .iter()
                    .map(|a| a.free.to_string())
                    .collect::<Vec<_>>()
                    .join(","),
                f.held,
                f.hold_error.as_deref().unwrap_or("(no failure)")
            );
            for a in &f.attempts {
                if let Some(e) = &a.error {
                    eprintln!("    {} free: {e}", a.free);
                }
                if a.error.is_some() && !a.exhausted {
                    wrong.push(format!(
                        "{op:?} with {} free fds: not an fd error: {:?}",
                        a.free, a.error
                    ));
                }
                if a.left_open != 0 {
                    wrong.push(format!(
                        "{op:?} with {} free fds: {} fds left open ({:?})",
                        a.free, a.left_open, a.error
                    ));
                }
            }
            // Values and locks take an fd only for a new arena chunk (one per 1,024 locks):
            // they fail when holding many, below.
            if failures.is_empty() && !matches!(op, Op::Value | Op::Lock) {
                wrong.push(format!("{op:?}: never failed, even with no fd free"));
            }
            if f.hold_error.is_none() || !f.hold_exhausted {
                wrong.push(format!(
                    "{op:?}: holding {} did not end in an fd error: {:?}",
                    f.held, f.hold_error
                ));
            }
            // A listener, the client's socket and the accepted one: an accept that took
            // the last free fd must not fail for the next connection it looked for.
            if op == Op::ListenerAndClient && worked_at.is_none_or(|w| w > 3) {
                wrong.push(format!(
                    "{op:?}: needs more than 3 free fds ({worked_at:?})"
                ));
            }
            if let Err(e) = &f.recovered {
                wrong.push(format!(
                    "{op:?}: did not work again once fds were free: {e}"
                ));
            }
            if f.left_open != 0 {
                wrong.push(format!("{op:?}: {} fds left open in all", f.left_open));
            }
        }
        assert!(wrong.is_empty(), "out of fds:\n{}", wrong.join("\n"));
    });
}

// ---- a manager out of fds -------------------------------------------------------------

/// The key of the flooded manager.
const MANAGER_KEY: &[u8] = b"mproc load tests' manager";

/// What a flood of connections did to a manager whose server has few fds.
#[derive(Debug, Serialize, Deserialize)]
struct Flood {
    /// Connections the server authenticated, and the errors of those it could not take.
    connected: usize,
    refused: Vec<String>,
    /// Whether every refusal was a timeout (the server could not accept in time) or a
    /// refusal it sent, rather than something else.
    refusals_clear: bool,
    /// A call through a proxy once the flood was gone.
    after: Result<u64, String>,
}

/// Starts a manager whose server may hold `fds` more fds than it starts with (the fd limit
/// it inherits), opens `flood` connections to it, drops them, and calls it again.
fn flood_manager((fds, flood): (u64, usize)) -> Flood {
    use nix::sys::resource::{Resource, getrlimit};
    let (normal, _) = getrlimit(Resource::RLIMIT_NOFILE).unwrap();
    // The server (and the fork server that starts it) inherits the lowered limit.
    set_fd_limit(open_fds() as u64 + fds);
    let manager = manager_builder().authkey(MANAGER_KEY).start();
    set_fd_limit(normal);
    let manager = manager.expect("a manager with room for a few connections");
    let value = manager.value(7u64).unwrap();
    let address = manager.address().clone();
    let mut held = Vec::new();
    let mut refused = Vec::new();
    for _ in 0..flood {
        match mproc::Client::connect_timeout::<u64, u64>(
            &address,
            MANAGER_KEY,
            Duration::from_millis(200),
        ) {
            Ok(c) => held.push(c),
            Err(e) => refused.push(e),
        }
    }
    let refusals_clear = refused
        .iter()
        .all(|e| e.kind() == mproc::pipe::ErrorKind::Timeout);
    let connected = held.len();
    drop(held);
    // The server notices the ends of the flood's connections, and takes calls again.
    let started = Instant::now();
    let after = loop {
        match value.get() {
            Ok(v) => break Ok(v),
            Err(e) if started.elapsed() > Duration::from_secs(30) => {
                break Err(mproc_sys::with_causes(&e));
            }
            Err(_) => std::thread::sleep(Duration::from_millis(50)),
        }
    };
    Flood {
        connected,
        refused: refused.iter().map(|e| mproc_sys::with_causes(e)).collect(),
        refusals_clear,
        after,
    }
}

/// A manager whose server runs out of fds under a flood of connections makes the extra
/// clients time out (none hangs), and serves again once the flood is gone.
#[test]
fn a_manager_out_of_fds_serves_again_once_the_flood_is_gone() {
    let _alone = alone();
    deadline(Duration::from_secs(300), || {
        let f = builder()
            .daemon(true)
            .spawn(flood_manager, (32, 45))
            .unwrap()
            .join()
            .unwrap();
        eprintln!(
            "a manager with 32 fds to spare ({:?}): {} connected, {} refused ({:?}); \
             afterwards {:?}",
            method(),
            f.connected,
            f.refused.len(),
            f.refused.first(),
            f.after
        );
        assert!(
            !f.refused.is_empty(),
            "the flood did not exhaust the server"
        );
        assert!(f.refusals_clear, "refusals: {:?}", f.refused);
        assert_eq!(f.after, Ok(7));
    });
}
